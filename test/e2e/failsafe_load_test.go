package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// TestControlPlaneKilledUnderLoad: clients keep a protect-mode proxy busy
// while its control plane is killed (SIGKILL, no goodbye on the xDS stream)
// and started again. The control connection carries no data traffic, so
// every allowed request must succeed and every denied one be denied, before,
// during and after — not one exception — and the proxy must reconnect and
// take the next policy change.
func TestControlPlaneKilledUnderLoad(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 13)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)

	// Load: workers on their own connections, each alternating allowed
	// GETs with a denied FLUSHALL, until stop is closed; bounded by
	// maxOps per worker and by the test's context.
	const (
		workers = 8
		maxOps  = 200000
	)
	var (
		allowed, denied atomic.Int64
		mu              sync.Mutex
		failures        []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		c := dialRaw(t, ctx, e.Host("cart"), e.ServerAddr())
		wg.Go(func() {
			for i := 0; i < maxOps && ctx.Err() == nil; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%4 == 3 {
					rep, err := c.do("FLUSHALL")
					if err != nil || !isDenied(rep, "flushall") {
						fail("worker %d op %d: FLUSHALL: %q %v", w, i, rep, err)
						return
					}
					denied.Add(1)
					continue
				}
				rep, err := c.do("GET", key)
				if err != nil || rep != valueRep {
					fail("worker %d op %d: GET: %q %v", w, i, rep, err)
					return
				}
				allowed.Add(1)
			}
		})
	}
	// progress waits until the load made n more allowed requests.
	progress := func(what string, n int64) {
		t.Helper()
		from := allowed.Load()
		err := poll(ctx, 20*time.Second, func(context.Context) (bool, error) {
			return allowed.Load() >= from+n, nil
		})
		if err != nil {
			t.Fatalf("%s: the load stalled at %d allowed requests: %v", what, allowed.Load(), err)
		}
	}
	progress("before the kill", 500)

	// Kill the control plane hard and keep it down for a while.
	cp := e.ControlPlane
	e.ControlPlane = nil // Env.Poll fails on an exited process of the Env
	if err := syscall.Kill(cp.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-cp.Done()
	killedAt := allowed.Load()
	time.Sleep(2 * time.Second)
	progress("control plane down", 500)
	downOps := allowed.Load() - killedAt

	if err := e.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	waitProxyPolicy(t, ctx, e.Host(e.Server), func(s policySummary) bool { return s.Connected && s.Mode == "protect" })
	progress("control plane back", 500)

	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d allowed and %d denied requests went as expected, then:\n%s",
			allowed.Load(), denied.Load(), strings.Join(failures, "\n"))
	}
	t.Logf("%d allowed GETs and %d denied FLUSHALLs, %d allowed while the control plane was down, no failure",
		allowed.Load(), denied.Load(), downOps)

	// The proxy follows the restarted control plane.
	setModeAndWait(t, ctx, e, v1alpha1.ModeMonitor)
}
