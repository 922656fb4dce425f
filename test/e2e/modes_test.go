package e2e

import (
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/demo"
)

// TestProtect: after discovery and `bulkhead mode set redis protect`,
// commands no rule allows get Bulkhead's -ERR and never reach redis, the
// connection stays usable, the allowed ones work, the intruder cannot even
// connect, and `bulkhead violations` lists the denials with the intruder's
// address.
func TestProtect(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 2)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)

	// redis-cli: FLUSHALL, CONFIG SET, EVAL, KEYS denied; GET allowed;
	// the intruder refused; FLUSHALL then GET on one connection.
	res, err := e.RunAttacks(ctx, demo.Attacks(key))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.OK() {
			t.Errorf("%s: observed %s, want %s; redis-cli said %q", r.Action, r.Observed, r.Expect, r.Output)
		}
		if r.Expect == demo.Denied && !strings.Contains(r.Output, "bulkhead") {
			t.Errorf("%s: the error does not mention bulkhead: %q", r.Action, r.Output)
		}
	}

	// The same on one raw connection, byte for byte: FLUSHALL denied, the
	// next GET on the same connection answered by redis.
	c := dialRaw(t, ctx, e.Host("cart"), e.ServerAddr())
	rep, err := c.do("FLUSHALL")
	checkDenied(t, "FLUSHALL", rep, err, "flushall")
	rep, err = c.do("GET", key)
	checkReply(t, "GET after the denied FLUSHALL", rep, err, valueRep)
	// HELLO was not learned: switching to RESP3 is denied like any other
	// command, and the connection goes on in RESP2.
	rep, err = c.do("HELLO", "3")
	checkDenied(t, "HELLO 3", rep, err, "hello")
	rep, err = c.do("GET", "cart:none")
	checkReply(t, "GET of a missing key after the denied HELLO", rep, err, nilRep)

	// FLUSHALL never ran: the key is still there.
	out, err := e.RedisCLI(ctx, "cart", "", "GET", key)
	if err != nil || strings.TrimSpace(out) != value {
		t.Errorf("GET %s after the attacks = %q, %v; want %q (did a FLUSHALL pass?)", key, out, err, value)
	}

	intruder := e.Host("intruder").Addr().String()
	v := waitViolation(t, ctx, e, "from the intruder", func(r cli.FlowRecord) bool {
		return r.SrcIP == intruder && r.Verdict == "deny"
	})
	if v.DstSegment != e.Namespace+"/"+e.Server || v.DstPort != demo.RedisPort || v.Mode != "protect" {
		t.Errorf("the intruder's violation: %s", recordsString([]cli.FlowRecord{v}))
	}
	// The table too: the intruder's address is listed.
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !strings.Contains(table, intruder) {
		t.Errorf("bulkhead violations does not list the intruder %s: %v\n%s", intruder, err, table)
	}
	cart := e.Host("cart").Addr().String()
	for _, verb := range []string{"flushall", "config", "eval", "keys", "hello"} {
		waitViolation(t, ctx, e, verb+" from cart", func(r cli.FlowRecord) bool {
			return r.SrcIP == cart && strings.EqualFold(r.Verb, verb) && r.Verdict == "deny" && r.Mode == "protect"
		})
	}
}

// TestMonitor: in monitor mode the attacks protect denies all pass, and each
// is listed by `bulkhead violations` with verdict violation.
func TestMonitor(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 3)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeMonitor)

	res, err := e.RunAttacks(ctx, demo.Monitor(demo.Attacks(key)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.OK() {
			t.Errorf("%s: observed %s, want %s; redis-cli said %q", r.Action, r.Observed, r.Expect, r.Output)
		}
	}
	// FLUSHALL really ran.
	out, err := e.RedisCLI(ctx, "cart", "", "DBSIZE")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("DBSIZE after FLUSHALL in monitor = %q, %v; want 0", out, err)
	}

	cart := e.Host("cart").Addr().String()
	for _, verb := range []string{"flushall", "config", "eval", "keys"} {
		waitViolation(t, ctx, e, verb+" from cart", func(r cli.FlowRecord) bool {
			return r.SrcIP == cart && strings.EqualFold(r.Verb, verb) && r.Verdict == "violation" && r.Mode == "monitor"
		})
	}
	intruder := e.Host("intruder").Addr().String()
	waitViolation(t, ctx, e, "from the intruder", func(r cli.FlowRecord) bool {
		return r.SrcIP == intruder && r.Verdict == "violation"
	})
	recs, err := violations(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Verdict == "deny" {
			t.Errorf("a deny in monitor mode: %s", recordsString([]cli.FlowRecord{r}))
		}
		if r.SrcIP == cart && r.Verb != "" && isLearned(r.Verb) {
			t.Errorf("an allowed command listed as a violation: %s", recordsString([]cli.FlowRecord{r}))
		}
	}
}

func isLearned(verb string) bool {
	for _, c := range discoveryLearned {
		if strings.EqualFold(c, verb) {
			return true
		}
	}
	return false
}
