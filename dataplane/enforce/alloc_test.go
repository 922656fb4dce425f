package enforce

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts are not meaningful under -cover or -race")
	}
	p := mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	other := mustCompile(t, fixture(bulkheadv1.Mode_MODE_MONITOR), identities())
	frames := []*l7.Frame{req("get", ""), req("CONFIG", "get"), req("config", "SET"), req("FLUSHALL", ""), req("client", "list"), {Dir: l7.DirReply}}
	peers := []netip.Addr{ipCart, ipAdmin, ipExt, ipExt6, ipUnknown, ipCartV6}
	c := p.Inbound(ipCart, 6379)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Message", func() {
			for _, f := range frames {
				_ = c.Message(f)
			}
		}},
		{"Connect", func() { _ = c.Connect() }},
		{"Inbound", func() {
			for _, a := range peers {
				cc := p.Inbound(a, 6379)
				_ = cc.Message(frames[0])
			}
		}},
		{"Refresh same policy", func() { c.Refresh(p) }},
		{"Refresh new policy", func() { c.Refresh(other); c.Refresh(p) }},
		{"Identity", func() { _, _, _ = p.Identity(ipWeb) }},
		{"Protocol", func() { _ = p.Protocol(6379) }},
	} {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
		}
	}
}

// TestConcurrentSwap swaps policies while connections refresh and judge;
// run it with -race.
func TestConcurrentSwap(t *testing.T) {
	protect := mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	monitor := mustCompile(t, fixture(bulkheadv1.Mode_MODE_MONITOR), identities())
	var e Engine
	e.Store(protect)
	stop := make(chan struct{})
	var swapper, workers sync.WaitGroup
	swapper.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				e.Store(monitor)
			} else {
				// A freshly compiled policy: a new pointer each time.
				e.Store(mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities()))
			}
		}
	})
	errs := make(chan error, 4)
	for w := range 4 {
		workers.Go(func() {
			c := e.Load().Inbound(ipCart, 6379)
			allowed, denied := req("GET", ""), req("FLUSHALL", "")
			for i := range 20000 {
				if i%16 == 0 {
					c.Refresh(e.Load())
				}
				if d := c.Message(allowed); d != (Decision{Verdict: Allow, Rule: "demo/redis/a-cart-readonly"}) {
					errs <- fmt.Errorf("worker %d: allowed command: %+v", w, d)
					return
				}
				d := c.Message(denied)
				if exp := want(c.Mode(), "", L7); d != exp {
					errs <- fmt.Errorf("worker %d: denied command under %v: %+v, want %+v", w, c.Mode(), d, exp)
					return
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	swapper.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
