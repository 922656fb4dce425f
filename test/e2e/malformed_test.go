package e2e

import (
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// TestMalformedRESP: a connection that sends bytes that are not RESP is
// closed without a reply (nothing reaches redis), the violation is reported
// with reason malformed, the proxy lives on, and a connection opened before
// it keeps working.
func TestMalformedRESP(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 8)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)
	cart := e.Host("cart")

	before := dialRaw(t, ctx, cart, e.ServerAddr())
	rep, err := before.do("GET", key)
	checkReply(t, "GET before", rep, err, valueRep)

	for _, bad := range []struct{ name, bytes string }{
		{"negative bulk length", "*2\r\n$3\r\nGET\r\n$-5\r\n"},
		{"bulk string overrun", "*1\r\n$3\r\nGE\xff\xfe\x00garbage\r\n"},
	} {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		if err := c.send([]byte(bad.bytes)); err != nil {
			t.Fatalf("%s: %v", bad.name, err)
		}
		if err := c.closedByPeer(5 * time.Second); err != nil {
			t.Errorf("%s: %v", bad.name, err)
		}
		if err := e.Proxy.Err(); err != nil {
			t.Fatalf("%s: the proxy died: %v", bad.name, err)
		}
		rep, err := before.do("GET", key)
		checkReply(t, bad.name+": GET on the connection opened before", rep, err, valueRep)
	}
	// And a new connection works too.
	after := dialRaw(t, ctx, cart, e.ServerAddr())
	rep, err = after.do("GET", key)
	checkReply(t, "GET on a new connection", rep, err, valueRep)

	src := cart.Addr().String()
	v := waitViolation(t, ctx, e, "with reason malformed", func(r cli.FlowRecord) bool {
		return r.SrcIP == src && r.Reason == "malformed"
	})
	if v.Verdict != "deny" || v.DstSegment != e.Namespace+"/"+e.Server {
		t.Errorf("the malformed violation: %s", recordsString([]cli.FlowRecord{v}))
	}
}
