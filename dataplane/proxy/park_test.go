package proxy_test

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

// waitGoroutinesAtMost waits until at most n goroutines run in the test
// process (the proxy's and the test's own), failing after 5s with what.
func waitGoroutinesAtMost(t *testing.T, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines, want at most %d", what, runtime.NumGoroutine(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// baseGoroutines returns how many goroutines run once the harness's proxy
// has started its own.
func baseGoroutines() int {
	time.Sleep(100 * time.Millisecond)
	return runtime.NumGoroutine()
}

// dialIdle dials n connections through h, each after a PING, and returns
// them with their reply readers.
func dialIdle(t *testing.T, h *harness, n int) ([]*net.TCPConn, []*replyReader) {
	t.Helper()
	cs := make([]*net.TCPConn, n)
	rs := make([]*replyReader, n)
	for i := range cs {
		cs[i] = h.dial(netip.Addr{})
		rs[i] = newReplyReader(cs[i])
		if got := roundTrip(t, cs[i], rs[i], cmd("PING")); got != "+PONG\r\n" {
			t.Fatalf("PING on connection %d: %q", i, got)
		}
	}
	return cs, rs
}

// TestIdleConnectionHoldsNoGoroutine: once silent for a little more than
// a second, an L7 connection keeps no goroutine in the proxy (both sides
// park); a request then gets its reply, and the connection parks again;
// denials and flows work as before parking.
func TestIdleConnectionHoldsNoGoroutine(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	base := baseGoroutines()
	const conns = 20
	cs, rs := dialIdle(t, h, conns)
	if busy := runtime.NumGoroutine(); busy <= base {
		t.Fatalf("%d goroutines just after %d round trips, %d before: want more", busy, conns, base)
	}
	waitGoroutinesAtMost(t, base, fmt.Sprintf("%d idle connections", conns))
	for round := range 2 {
		for i := range cs {
			want := strconv.Itoa(100*round + i)
			if got := roundTrip(t, cs[i], rs[i], cmd("ECHO", want)); got != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
				t.Fatalf("ECHO %s on connection %d after parking: %q", want, i, got)
			}
		}
		waitGoroutinesAtMost(t, base, fmt.Sprintf("%d connections idle again", conns))
	}
	if got := h.counter("bulkhead_proxy_active_connections"); got != conns {
		t.Errorf("active connections %v, want %d", got, conns)
	}
	// A denial after parking is answered, and the flows of the messages
	// after parking carry the connection's fields (the flow key is given
	// back while parked and filled again).
	if got := roundTrip(t, cs[0], rs[0], cmd("FLUSHALL")); !isDeny(got) {
		t.Fatalf("FLUSHALL after parking: %q", got)
	}
	flows := h.flows()
	echo := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "ECHO" })
	if echo == nil || echo.GetCount() != 2*conns || echo.GetVerdict() != bulkheadv1.Verdict_VERDICT_ALLOW ||
		echo.GetRule() != "demo/redis/from-cart" || echo.GetProtocol() != "redis" || echo.GetSrcIp() != cartIP.String() ||
		echo.GetDstPort() != uint32(h.redis.Port()) || echo.GetMode() != bulkheadv1.Mode_MODE_PROTECT {
		t.Errorf("ECHO flow: %v; all flows:%s", echo, flowString(flows))
	}
	deny := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "FLUSHALL" })
	if deny == nil || deny.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || deny.GetProtocol() != "redis" || deny.GetSrcIp() != cartIP.String() {
		t.Errorf("FLUSHALL flow: %v; all flows:%s", deny, flowString(flows))
	}
}

// TestParkedSubscriberGetsMessages: a subscribed client whose connection is
// parked on both sides gets what the server pushes (the workload's side
// resumes alone), and its next request works (the client's side resumes).
func TestParkedSubscriberGetsMessages(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	base := baseGoroutines()
	sub := h.dial(netip.Addr{})
	sr := newReplyReader(sub)
	if got := roundTrip(t, sub, sr, cmd("SUBSCRIBE", "news")); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	waitGoroutinesAtMost(t, base, "an idle subscriber")
	// The publisher talks to redis directly: it is not a proxied connection.
	pub, err := net.Dial("tcp", h.redis.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pr := newReplyReader(pub)
	for i := range 3 {
		msg := "message-" + strconv.Itoa(i)
		if got := roundTrip(t, pub, pr, cmd("PUBLISH", "news", msg)); got != ":1\r\n" {
			t.Fatalf("PUBLISH: %q", got)
		}
		if got := sr.mustNext(t); !strings.Contains(got, msg) {
			t.Fatalf("pushed %q, want %s", got, msg)
		}
		waitGoroutinesAtMost(t, base, "a subscriber idle again")
	}
	if got := roundTrip(t, sub, sr, cmd("PING")); !strings.Contains(got, "pong") {
		t.Fatalf("PING while subscribed: %q", got)
	}
}

// TestParkedConnectionEnds: the end of a connection parked on both sides
// reaches the other peer and ends the session, whoever ends it: the server
// (killed client), the client (close, reset, or half-close after a
// request).
func TestParkedConnectionEnds(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	base := baseGoroutines()
	cs, _ := dialIdle(t, h, 3)
	waitGoroutinesAtMost(t, base, "3 idle connections")

	// The server closes: CLIENT KILL from a direct connection (which it
	// skips) kills the proxy's three upstream connections.
	admin, err := net.Dial("tcp", h.redis.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if got := roundTrip(t, admin, newReplyReader(admin), cmd("CLIENT", "KILL", "TYPE", "normal")); got != ":3\r\n" {
		t.Fatalf("CLIENT KILL: %q, want 3 killed", got)
	}
	for _, c := range cs {
		waitClosed(t, c)
	}
	waitActive(t, h, 0)
	waitGoroutinesAtMost(t, base, "after the server closed")

	// The client closes, or resets.
	cs, rs := dialIdle(t, h, 3)
	waitGoroutinesAtMost(t, base, "3 idle connections")
	_ = cs[0].Close()
	waitActive(t, h, 2)
	_ = cs[2].SetLinger(0)
	_ = cs[2].Close()
	waitActive(t, h, 1)
	// The client half-closes after a request: the reply and the end of
	// the stream still arrive.
	if _, err := cs[1].Write(cmd("ECHO", "last")); err != nil {
		t.Fatal(err)
	}
	if err := cs[1].CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := rs[1].mustNext(t); got != "$4\r\nlast\r\n" {
		t.Fatalf("ECHO before the half-close: %q", got)
	}
	if got, err := rs[1].next(); err == nil {
		t.Errorf("after the half-close: %q, want the end of the stream", got)
	}
	waitActive(t, h, 0)
	waitGoroutinesAtMost(t, base, "after the clients closed")
}

// TestParkedConnectionIdleTimeout: a connection parked on both sides is
// still closed at Limits.IdleTimeout, and counted.
func TestParkedConnectionIdleTimeout(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.IdleTimeout = 2500 * time.Millisecond })
	base := baseGoroutines()
	cs, _ := dialIdle(t, h, 1)
	start := time.Now()
	waitGoroutinesAtMost(t, base, "an idle connection")
	waitClosed(t, cs[0])
	if d := time.Since(start); d < 2*time.Second || d > 7*time.Second {
		t.Errorf("closed after %v of silence, want about 2.5s", d)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "idle_timeout"); got != 1 {
		t.Errorf("idle_timeout limits %v, want 1", got)
	}
	waitActive(t, h, 0)
}

// TestShutdownClosesParkedConnections: Start's shutdown closes connections
// parked on both sides after the drain timeout, counts them closed and
// leaves no goroutine (goleak in TestMain checks the rest).
func TestShutdownClosesParkedConnections(t *testing.T) {
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.DrainTimeout = 200 * time.Millisecond })
	base := baseGoroutines()
	const conns = 100
	cs, _ := dialIdle(t, h, conns)
	waitGoroutinesAtMost(t, base, fmt.Sprintf("%d idle connections", conns))
	if got := h.counter("bulkhead_proxy_active_connections"); got != conns {
		t.Fatalf("active connections %v, want %d", got, conns)
	}
	start := time.Now()
	h.stop()
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("Start returned after %v, want just after the 200ms drain timeout", d)
	}
	for _, c := range cs {
		waitClosed(t, c)
	}
	if got := h.counter("bulkhead_proxy_active_connections"); got != 0 {
		t.Errorf("active connections after shutdown %v, want 0", got)
	}
}

// waitActive waits until the proxy counts n active connections.
func waitActive(t *testing.T, h *harness, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.counter("bulkhead_proxy_active_connections") != n {
		if time.Now().After(deadline) {
			t.Fatalf("active connections %v, want %v", h.counter("bulkhead_proxy_active_connections"), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
