package proxy_test

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

// TestSlowMessageIsClosed: a request dribbled a byte at a time (slowloris)
// is cut at MessageTimeout, reported as a limit denial and counted; a long
// request streamed at a fair rate, and a request split across reads, pass.
func TestSlowMessageIsClosed(t *testing.T) {
	const timeout = 500 * time.Millisecond
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) {
		c.Limits.MessageTimeout = timeout
		c.Limits.MessageMinRate = 16 << 10
	})

	// A request that begins and never completes: closed after the timeout.
	slow := h.dial(netip.Addr{})
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range []byte("*2\r\n$4\r\nECHO\r\n$100\r\n" + strings.Repeat("x", 100)) {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	waitClosed(t, slow)
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Errorf("slow request closed after %v, want about %v", d, timeout)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "message_timeout"); got != 1 {
		t.Errorf("message_timeout limits %v, want 1", got)
	}
	flows := h.flows()
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetReason() == "limit" }); f == nil ||
		f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY {
		t.Errorf("no limit denial flow: %v; all:%s", f, flowString(flows))
	}

	// 256 KiB in 8 chunks over about 0.8s: longer than the timeout, but
	// at 320 KiB/s, well over the minimum rate of 16 KiB/s.
	fair := h.dial(netip.Addr{})
	val := strings.Repeat("v", 256<<10)
	req := cmd("SET", "k", val)
	chunk := len(req)/8 + 1
	for i := 0; i < len(req); i += chunk {
		if _, err := fair.Write(req[i:min(i+chunk, len(req))]); err != nil {
			t.Fatalf("fair write: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := newReplyReader(fair)
	if got := r.mustNext(t); got != "+OK\r\n" {
		t.Fatalf("SET streamed at a fair rate: %q", got)
	}
	// The connection then stays usable past the timeout.
	time.Sleep(timeout + 200*time.Millisecond)
	if got := roundTrip(t, fair, r, cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING after a pause: %q", got)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "message_timeout"); got != 1 {
		t.Errorf("message_timeout limits %v after the fair client, want 1", got)
	}
}

// TestFirstMessageTimeout: a client that sends nothing after connecting is
// closed at FirstMessageTimeout and counted; one that spoke at once stays
// open past it.
func TestFirstMessageTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	h := newHarness(t, protect(allowed...), func(c *proxy.Config) { c.Limits.FirstMessageTimeout = timeout })
	mute := h.dial(netip.Addr{})
	talker := h.dial(netip.Addr{})
	r := newReplyReader(talker)
	if got := roundTrip(t, talker, r, cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	start := time.Now()
	waitClosed(t, mute)
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Errorf("silent client closed after %v, want about %v", d, timeout)
	}
	if got := h.counter("bulkhead_proxy_limit_total", "limit", "first_message_timeout"); got != 1 {
		t.Errorf("first_message_timeout limits %v, want 1", got)
	}
	time.Sleep(timeout)
	if got := roundTrip(t, talker, r, cmd("PING")); got != "+PONG\r\n" {
		t.Fatalf("PING after the timeout: %q", got)
	}
}

// TestIdleConnectionParks: an L7 connection silent for more than a second
// keeps no goroutine (both sides park); a request then gets its reply (the
// sides resume), also when the client half-closes right after it (the
// client side takes the workload side over).
func TestIdleConnectionParks(t *testing.T) {
	h := newHarness(t, protect(allowed...))
	base := baseGoroutines()
	const conns = 20
	cs := make([]*net.TCPConn, conns)
	rs := make([]*replyReader, conns)
	for i := range cs {
		cs[i] = h.dial(netip.Addr{})
		rs[i] = newReplyReader(cs[i])
		if got := roundTrip(t, cs[i], rs[i], cmd("PING")); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
	}
	parked := func() {
		t.Helper()
		waitGoroutinesAtMost(t, base, fmt.Sprintf("%d idle connections", conns))
	}
	parked()
	for i := range cs {
		if got := roundTrip(t, cs[i], rs[i], cmd("ECHO", strconv.Itoa(i))); got != fmt.Sprintf("$%d\r\n%d\r\n", len(strconv.Itoa(i)), i) {
			t.Fatalf("ECHO on connection %d after parking: %q", i, got)
		}
	}
	parked()
	// A request and the end of the client's stream at once.
	if _, err := cs[0].Write(cmd("PING")); err != nil {
		t.Fatal(err)
	}
	if err := cs[0].CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := rs[0].mustNext(t); got != "+PONG\r\n" {
		t.Fatalf("PING before the half-close: %q", got)
	}
	if got, err := rs[0].next(); err == nil {
		t.Errorf("after the half-close: %q, want the end of the stream", got)
	}
}
