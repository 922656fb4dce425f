package proxy_test

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// allowed is what demo/cart may run in most tests.
var allowed = []string{"GET", "SET", "PING", "ECHO", "INCR", "DEL", "SUBSCRIBE", "PUBLISH", "COMMAND", "HELLO"}

func protect(cmds ...string) policyFn {
	return withMode(bulkheadv1.Mode_MODE_PROTECT, cmds...)
}

func withMode(mode bulkheadv1.Mode, cmds ...string) policyFn {
	return func(t testing.TB, r netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: mode, port: r.Port(), commands: cmds})
	}
}

func TestAllowedCommandsPass(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	for _, tc := range []struct {
		req  []byte
		want string
	}{
		{cmd("SET", "k", "v"), "+OK\r\n"},
		{cmd("GET", "k"), "$1\r\nv\r\n"},
		{cmd("INCR", "n"), ":1\r\n"},
		{cmd("INCR", "n"), ":2\r\n"},
		{cmd("GET", "missing"), "$-1\r\n"},
		{cmd("PING"), "+PONG\r\n"},
	} {
		if got := roundTrip(t, c, r, tc.req); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}
	// The allowed messages are reported under their rule.
	flows := h.flows()
	get := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "GET" })
	if get == nil || get.GetCount() != 2 || get.GetVerdict() != bulkheadv1.Verdict_VERDICT_ALLOW ||
		get.GetRule() != "demo/redis/from-cart" || get.GetProtocol() != "redis" || get.GetSrcIp() != cartIP.String() ||
		get.GetDstPort() != uint32(h.redis.Port()) || get.GetMode() != bulkheadv1.Mode_MODE_PROTECT {
		t.Errorf("GET flow: %v; all flows:%s", get, flowString(flows))
	}
	conn := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetConnection() })
	if conn == nil || conn.GetVerdict() != bulkheadv1.Verdict_VERDICT_ALLOW || conn.GetCount() != 1 {
		t.Errorf("connection flow: %v", conn)
	}
	if got := h.counter("bulkhead_proxy_messages_total", "protocol", "redis", "verdict", "allow"); got != 6 {
		t.Errorf("allowed messages counted %v, want 6", got)
	}
	if got := h.counter("bulkhead_proxy_bytes_total", "direction", "in"); got == 0 {
		t.Errorf("bytes in not counted")
	}
}

func TestDeniedCommandKeepsConnection(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	if got := roundTrip(t, c, r, cmd("SET", "k", "v")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	got := roundTrip(t, c, r, cmd("FLUSHALL"))
	want := "-ERR bulkhead: command 'flushall' is not allowed (l7_not_allowed)\r\n"
	if got != want {
		t.Fatalf("FLUSHALL: got %q, want %q", got, want)
	}
	if got := roundTrip(t, c, r, cmd("GET", "k")); got != "$1\r\nv\r\n" {
		t.Fatalf("GET after the denial: %q (FLUSHALL must not have reached redis)", got)
	}
	got = roundTrip(t, c, r, cmd("CONFIG", "SET", "maxmemory", "1"))
	if want := "-ERR bulkhead: command 'config|set' is not allowed (l7_not_allowed)\r\n"; got != want {
		t.Fatalf("CONFIG SET: got %q, want %q", got, want)
	}
	flows := h.flows()
	f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "FLUSHALL" })
	if f == nil || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || f.GetReason() != "l7_not_allowed" || f.GetRule() != "" {
		t.Errorf("FLUSHALL flow: %v", f)
	}
	f = findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "CONFIG" })
	if f == nil || f.GetSub() != "SET" || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY {
		t.Errorf("CONFIG flow: %v", f)
	}
	if got := h.counter("bulkhead_proxy_denials_total", "protocol", "redis", "reason", "l7_not_allowed"); got != 2 {
		t.Errorf("denials counted %v, want 2", got)
	}
}

func TestRedisCLI(t *testing.T) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli not installed (apt-get install redis-tools)")
	}
	h := newHarness(t, protect(allowed...))
	host, port, _ := net.SplitHostPort(h.addr)
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := cli("SET", "greeting", "hello"); got != "OK" {
		t.Errorf("SET: %q", got)
	}
	if got := cli("GET", "greeting"); got != "hello" {
		t.Errorf("GET: %q", got)
	}
	if got := cli("FLUSHALL"); !strings.Contains(got, "bulkhead: command 'flushall' is not allowed") {
		t.Errorf("FLUSHALL: %q", got)
	}
	if got := cli("GET", "greeting"); got != "hello" {
		t.Errorf("GET after FLUSHALL: %q", got)
	}
	// One redis-cli session: a denied command, then an allowed one.
	in := "SET a 1\nKEYS *\nGET a\n"
	c := exec.Command("redis-cli", "-h", host, "-p", port)
	c.Stdin = strings.NewReader(in)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli session: %v: %s", err, out)
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 || lines[0] != "OK" || !strings.Contains(lines[1], "command 'keys' is not allowed") || lines[2] != "1" {
		t.Errorf("redis-cli session output:\n%s", out)
	}
}

func TestPipelineKeepsOrder(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)

	// A short one, in one write: the denial sits between two replies.
	var batch []byte
	batch = append(batch, cmd("SET", "a", "1")...)
	batch = append(batch, cmd("INCR", "a")...)
	batch = append(batch, cmd("FLUSHALL")...)
	batch = append(batch, cmd("GET", "a")...)
	batch = append(batch, cmd("PING")...)
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	want := []string{"+OK\r\n", ":2\r\n", "-ERR bulkhead: command 'flushall' is not allowed (l7_not_allowed)\r\n", "$1\r\n2\r\n", "+PONG\r\n"}
	for i, w := range want {
		if got := r.mustNext(t); got != w {
			t.Errorf("reply %d: got %q, want %q", i, got, w)
		}
	}

	// A long one: every seventh command denied, each reply checked in
	// place (ECHO answers its own index). Written from another goroutine
	// so that the proxy sees it in many reads.
	const n = 3000
	batch = batch[:0]
	for i := range n {
		switch {
		case i%7 == 0:
			batch = append(batch, cmd("KEYS", fmt.Sprint(i))...)
		case i%11 == 0:
			batch = append(batch, cmd("DEBUG", "SLEEP", "0")...)
		default:
			batch = append(batch, cmd("ECHO", fmt.Sprint(i))...)
		}
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(batch)
		werr <- err
	}()
	for i := range n {
		got := r.mustNext(t)
		switch {
		case i%7 == 0 || i%11 == 0:
			if !isDeny(got) {
				t.Fatalf("reply %d: got %q, want a denial", i, got)
			}
		default:
			if w := fmt.Sprintf("$%d\r\n%d\r\n", len(fmt.Sprint(i)), i); got != w {
				t.Fatalf("reply %d: got %q, want %q", i, got, w)
			}
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

func TestDeniedOneByteAtATime(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	req := append(cmd("SET", "k", "v"), cmd("FLUSHALL")...)
	req = append(req, cmd("GET", "k")...)
	for i := range req {
		if _, err := c.Write(req[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i, want := range []string{"+OK\r\n", "-ERR bulkhead: command 'flushall' is not allowed (l7_not_allowed)\r\n", "$1\r\nv\r\n"} {
		if got := r.mustNext(t); got != want {
			t.Errorf("reply %d: got %q, want %q", i, got, want)
		}
	}
}

func TestMixedCaseAndInline(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	for _, tc := range []struct {
		name string
		req  []byte
		want string // "" for a denial
	}{
		{"mixed case allowed", cmd("sEt", "k", "v"), "+OK\r\n"},
		{"mixed case denied", cmd("fLuShAlL"), ""},
		{"lower case allowed", cmd("get", "k"), "$1\r\nv\r\n"},
		{"inline allowed", []byte("PING\r\n"), "+PONG\r\n"},
		{"inline set", []byte("set k2 \"two words\"\r\n"), "+OK\r\n"},
		{"inline denied", []byte("FlushAll\r\n"), ""},
		{"inline denied sub-command", []byte("config set maxmemory 1\r\n"), ""},
		{"inline get", []byte("get k2\n"), "$9\r\ntwo words\r\n"},
		{"multibulk after inline", cmd("GET", "k"), "$1\r\nv\r\n"},
	} {
		got := roundTrip(t, c, r, tc.req)
		if tc.want == "" && !isDeny(got) || tc.want != "" && got != tc.want {
			t.Errorf("%s: got %q, want %q (empty: a denial)", tc.name, got, tc.want)
		}
	}
}

func TestMalformedClosesOnlyThatConnection(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	good := h.dial(netip.Addr{})
	gr := newReplyReader(good)
	if got := roundTrip(t, good, gr, cmd("SET", "k", "v")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}

	bad := h.dial(netip.Addr{})
	br := newReplyReader(bad)
	if got := roundTrip(t, bad, br, cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	if _, err := bad.Write([]byte("*2\r\n$3\r\nGET\r\n$x\r\n")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, bad)

	if got := roundTrip(t, good, gr, cmd("GET", "k")); got != "$1\r\nv\r\n" {
		t.Fatalf("GET on the other connection: %q", got)
	}
	again := h.dial(netip.Addr{})
	if got := roundTrip(t, again, newReplyReader(again), cmd("GET", "k")); got != "$1\r\nv\r\n" {
		t.Fatalf("GET on a new connection: %q", got)
	}
	if got := h.counter("bulkhead_proxy_malformed_total", "protocol", "redis"); got != 1 {
		t.Errorf("malformed counted %v, want 1", got)
	}
	flows := h.flows()
	f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetReason() == "malformed" })
	if f == nil || f.GetConnection() || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY {
		t.Errorf("malformed flow: %v; all:%s", f, flowString(flows))
	}
}

func TestOversizedRequestCloses(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.MaxMessage = 64 << 10 })
	c := h.dial(netip.Addr{})
	// Announces a 1 MiB value: over the limit before it arrives.
	if _, err := c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	flows := h.flows()
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetReason() == "limit" }); f == nil {
		t.Errorf("no limit flow:%s", flowString(flows))
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "message_size"); got != 1 {
		t.Errorf("message_size limits %v, want 1", got)
	}
	// A value under the limit passes.
	c = h.dial(netip.Addr{})
	val := strings.Repeat("x", 32<<10)
	if got := roundTrip(t, c, newReplyReader(c), cmd("SET", "k", val)); got != "+OK\r\n" {
		t.Errorf("SET of 32 KiB: %q", got)
	}
}

func TestPeerRefusedInProtect(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	h.expectRefused(strangeIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "deny"); got != 1 {
		t.Errorf("denied connections %v, want 1", got)
	}
	if got := h.counter("bulkhead_proxy_denials_total", "protocol", "redis", "reason", "no_rule"); got != 1 {
		t.Errorf("connection denials %v, want 1", got)
	}
	flows := h.flows()
	f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetConnection() })
	if f == nil || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || f.GetReason() != "no_rule" ||
		f.GetSrcIp() != strangeIP.String() || f.GetProtocol() != "redis" {
		t.Errorf("connection flow: %v; all:%s", f, flowString(flows))
	}
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return !f.GetConnection() }); f != nil {
		t.Errorf("a message was judged on a refused connection: %v", f)
	}
	// The known peer still gets in.
	ok := h.dial(netip.Addr{})
	if got := roundTrip(t, ok, newReplyReader(ok), cmd("PING")); got != "+PONG\r\n" {
		t.Errorf("PING from cart: %q", got)
	}
}

func TestMonitorAllowsAndReports(t *testing.T) {
	h := newHarness(t, withMode(bulkheadv1.Mode_MODE_MONITOR, allowed...))
	stranger := h.dial(strangeIP)
	if got := roundTrip(t, stranger, newReplyReader(stranger), cmd("PING")); got != "+PONG\r\n" {
		t.Errorf("PING from an unknown peer in monitor: %q", got)
	}
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	if got := roundTrip(t, c, r, cmd("SET", "k", "v")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := roundTrip(t, c, r, cmd("FLUSHALL")); got != "+OK\r\n" {
		t.Fatalf("FLUSHALL in monitor: %q, want redis's own +OK", got)
	}
	if got := roundTrip(t, c, r, cmd("GET", "k")); got != "$-1\r\n" {
		t.Fatalf("GET after FLUSHALL: %q", got)
	}
	flows := h.flows()
	f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "FLUSHALL" })
	if f == nil || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_VIOLATION || f.GetReason() != "l7_not_allowed" ||
		f.GetMode() != bulkheadv1.Mode_MODE_MONITOR {
		t.Errorf("FLUSHALL flow: %v", f)
	}
	f = findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetConnection() && f.GetSrcIp() == strangeIP.String() })
	if f == nil || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_VIOLATION || f.GetReason() != "no_rule" {
		t.Errorf("unknown peer's connection flow: %v", f)
	}
	if got := h.counter("bulkhead_proxy_messages_total", "protocol", "redis", "verdict", "violation"); got != 2 {
		t.Errorf("violations counted %v, want 2 (stranger's PING, FLUSHALL)", got)
	}
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "violation"); got != 1 {
		t.Errorf("violating connections %v, want 1", got)
	}
}

func TestPolicySwitchReachesOpenConnection(t *testing.T) {
	h := newHarness(t, withMode(bulkheadv1.Mode_MODE_MONITOR, allowed...))
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	if got := roundTrip(t, c, r, cmd("DBSIZE")); got != ":0\r\n" {
		t.Fatalf("DBSIZE in monitor: %q", got)
	}
	h.engine.Store(compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: h.redis.Port(), commands: allowed}))
	if got := roundTrip(t, c, r, cmd("DBSIZE")); !isDeny(got) {
		t.Fatalf("DBSIZE after the switch to protect: %q, want a denial", got)
	}
	if got := roundTrip(t, c, r, cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	// A new rule reaches the open connection too.
	h.engine.Store(compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: h.redis.Port(), commands: append([]string{"DBSIZE"}, allowed...)}))
	if got := roundTrip(t, c, r, cmd("DBSIZE")); got != ":0\r\n" {
		t.Fatalf("DBSIZE after it was allowed: %q", got)
	}
	flows := h.flows()
	var modes []string
	for _, f := range flows {
		if f.GetVerb() == "DBSIZE" {
			modes = append(modes, f.GetMode().String()+"/"+f.GetVerdict().String())
		}
	}
	slices.Sort(modes)
	want := "MODE_MONITOR/VERDICT_VIOLATION MODE_PROTECT/VERDICT_ALLOW MODE_PROTECT/VERDICT_DENY"
	if got := strings.Join(modes, " "); got != want {
		t.Errorf("DBSIZE flows: %s, want %s", got, want)
	}
}

func TestNoPolicyFailsClosed(t *testing.T) {
	h := newHarness(t, nil)
	h.expectRefused(cartIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "no_policy"); got != 1 {
		t.Errorf("no_policy connections %v, want 1", got)
	}
	// The first policy opens it.
	h.engine.Store(compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: h.redis.Port(), commands: allowed}))
	c := h.dial(netip.Addr{})
	if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
		t.Errorf("PING: %q", got)
	}
}

func TestNotRedirectedIsClosed(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) {
		c.OriginalDst = func(tc *net.TCPConn) (netip.AddrPort, error) {
			return tc.LocalAddr().(*net.TCPAddr).AddrPort(), nil
		}
	})
	h.expectRefused(cartIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "loop"); got != 1 {
		t.Errorf("loop connections %v, want 1", got)
	}
}

func TestUndeclaredPortIsSniffed(t *testing.T) {
	h := newHarness(t, func(t testing.TB, r netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: r.Port(), commands: allowed, undeclared: true})
	})
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	if got := roundTrip(t, c, r, cmd("SET", "k", "v")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := roundTrip(t, c, r, cmd("FLUSHALL")); !isDeny(got) {
		t.Fatalf("FLUSHALL on a sniffed Redis port: %q, want a denial", got)
	}
	if got := roundTrip(t, c, r, cmd("GET", "k")); got != "$1\r\nv\r\n" {
		t.Fatalf("GET: %q", got)
	}
	// A client that says nothing first is forwarded at L4 after the sniff
	// timeout, and still works.
	quiet := h.dial(netip.Addr{})
	time.Sleep(300 * time.Millisecond)
	if got := roundTrip(t, quiet, newReplyReader(quiet), cmd("GET", "k")); got != "$1\r\nv\r\n" {
		t.Fatalf("GET after a quiet start: %q", got)
	}
	// The connection flows name the protocol sniffed: a "tcp" one would
	// teach discover mode an L4 rule that allows every message on the
	// port. Only the quiet connection, forwarded at L4, is "tcp".
	flows := h.flows()
	conns := map[string]uint64{}
	for _, f := range flows {
		if f.GetConnection() {
			conns[f.GetProtocol()] += f.GetCount()
		}
	}
	if want := map[string]uint64{"redis": 1, "tcp": 1}; !maps.Equal(conns, want) {
		t.Errorf("connection flows by protocol %v, want %v:%s", conns, want, flowString(flows))
	}
}

func TestTCPPortIsSpliced(t *testing.T) {
	h := newHarness(t, func(t testing.TB, r netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: r.Port(), protocol: "tcp"})
	})
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	// Judged at L4 only: every command passes.
	if got := roundTrip(t, c, r, cmd("SET", "k", "v")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := roundTrip(t, c, r, cmd("FLUSHALL")); got != "+OK\r\n" {
		t.Fatalf("FLUSHALL on a tcp port: %q", got)
	}
	// The client's half-close reaches redis, which then closes.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	h.expectRefused(strangeIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "deny"); got != 1 {
		t.Errorf("denied connections %v, want 1", got)
	}
	if got := h.counter("bulkhead_proxy_messages_total", "protocol", "redis", "verdict", "allow"); got != 0 {
		t.Errorf("messages judged on an L4 port: %v", got)
	}
}

func TestSubscribeDenialsStayBetweenReplies(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	sub := h.dial(netip.Addr{})
	sr := newReplyReader(sub)
	if got := roundTrip(t, sub, sr, cmd("SUBSCRIBE", "news")); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	// In subscribed mode messages arrive unasked; a denial is answered at
	// once and never splits a message.
	pub := h.dial(netip.Addr{})
	pr := newReplyReader(pub)
	if got := roundTrip(t, pub, pr, cmd("PUBLISH", "news", "one")); got != ":1\r\n" {
		t.Fatalf("PUBLISH: %q", got)
	}
	if got := sr.mustNext(t); !strings.Contains(got, "one") {
		t.Fatalf("message: %q", got)
	}
	if got := roundTrip(t, sub, sr, cmd("PSUBSCRIBE", "x*")); !isDeny(got) {
		t.Fatalf("PSUBSCRIBE (not allowed): %q", got)
	}
	if got := roundTrip(t, pub, pr, cmd("PUBLISH", "news", "two")); got != ":1\r\n" {
		t.Fatalf("PUBLISH: %q", got)
	}
	if got := sr.mustNext(t); !strings.Contains(got, "two") {
		t.Fatalf("message: %q", got)
	}
}

func TestShutdownClosesIdleConnections(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.DrainTimeout = 200 * time.Millisecond })
	c := h.dial(netip.Addr{})
	if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	if got := h.counter("bulkhead_proxy_active_connections"); got != 1 {
		t.Errorf("active connections %v, want 1", got)
	}
	// The client stays idle: Start must close it after the drain timeout
	// and return; goleak (TestMain) checks that no goroutine is left.
	start := time.Now()
	h.stop()
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("Start returned after %v, want just after the 200ms drain timeout", d)
	}
	waitClosed(t, c)
	if got := h.counter("bulkhead_proxy_active_connections"); got != 0 {
		t.Errorf("active connections after shutdown %v, want 0", got)
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.IdleTimeout = 600 * time.Millisecond })
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	// Activity keeps it open past the timeout (150ms pauses leave a loaded
	// machine room for each round trip)...
	for range 6 {
		if got := roundTrip(t, c, r, cmd("PING")); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		time.Sleep(150 * time.Millisecond)
	}
	// ...silence closes it.
	start := time.Now()
	waitClosed(t, c)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v of silence, want about 600ms", d)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "idle_timeout"); got != 1 {
		t.Errorf("idle_timeout limits %v, want 1", got)
	}
}

func TestConnectionLimit(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.MaxConns = 1 })
	c := h.dial(netip.Addr{})
	if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	h.expectRefused(cartIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "overload"); got != 1 {
		t.Errorf("overload connections %v, want 1", got)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "max_conns"); got != 1 {
		t.Errorf("max_conns limits %v, want 1", got)
	}
	// The first connection is unaffected.
	if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
}

func TestUnreachableDestinationIsReset(t *testing.T) {
	dead := netip.AddrPortFrom(cartIP, uint16(freePort(t)))
	h := newHarness(t, func(t testing.TB, _ netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: dead.Port(), commands: allowed})
	}, func(c *proxy.Config) {
		c.OriginalDst = func(*net.TCPConn) (netip.AddrPort, error) { return dead, nil }
	})
	h.expectRefused(cartIP)
	if got := h.counter("bulkhead_proxy_connections_total", "verdict", "dial_error"); got != 1 {
		t.Errorf("dial errors %v, want 1", got)
	}
}

// TestMalformedReplyCloses: a server that answers with bytes that are not
// RESP (no real redis does) gets the connection closed.
func TestMalformedReplyCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte("?garbage\r\n"))
			_, _ = c.Read(buf) // until the proxy closes
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
	})
	bogus := ln.Addr().(*net.TCPAddr).AddrPort()
	h := newHarness(t, func(t testing.TB, _ netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: bogus.Port(), commands: allowed})
	}, func(c *proxy.Config) {
		c.OriginalDst = func(*net.TCPConn) (netip.AddrPort, error) { return bogus, nil }
	})
	c := h.dial(netip.Addr{})
	if _, err := c.Write(cmd("PING")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	if got := h.counter("bulkhead_proxy_malformed_total", "protocol", "redis"); got != 1 {
		t.Errorf("malformed counted %v, want 1", got)
	}
}
