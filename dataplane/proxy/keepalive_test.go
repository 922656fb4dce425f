package proxy_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

// keepAliveTimer reports whether the established socket from local to peer
// has TCP keep-alive armed, as the kernel shows it (ss -o: a socket with
// keep-alive on and nothing in flight carries timer:(keepalive,…)).
func keepAliveTimer(t *testing.T, local, peer string) bool {
	t.Helper()
	out, err := exec.Command("ss", "-tnoH", "state", "established", "src", local, "dst", peer).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		t.Fatalf("ss: no established socket %s → %s", local, peer)
	}
	return strings.Contains(s, "timer:(keepalive")
}

// upstreamOf returns the local address of the proxy's socket to the
// server at srv (the only connection to it in these tests).
func upstreamOf(t *testing.T, srv netip.AddrPort) string {
	t.Helper()
	out, err := exec.Command("ss", "-tnH", "state", "established", "dst", srv.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("want one connection to %s, ss shows %q", srv, out)
	}
	f := strings.Fields(lines[0])
	return f[len(f)-2]
}

// TestKeepAliveArmedLate: proxy.Listen and the proxy's dialer leave TCP
// keep-alive off, so that a short L7 connection costs no setsockopt calls
// for it; an L7 connection gets it on both sockets once it falls silent
// (parks), a spliced (L4) connection at once.
func TestKeepAliveArmedLate(t *testing.T) {
	for _, tc := range []struct {
		name, protocol string
		want           bool
	}{
		{"l7", "redis", false},
		{"l4", "tcp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := proxy.Listen(context.Background(), "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, func(t testing.TB, r netip.AddrPort) *enforce.Policy {
				sp := spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: r.Port(), protocol: tc.protocol}
				if tc.protocol == "redis" {
					sp.commands = []string{"PING"}
				}
				return compile(t, sp)
			}, func(c *proxy.Config) {
				_ = c.Listener.Close()
				c.Listener = ln
			})
			h.addr = ln.Addr().String()
			c := h.dial(netip.Addr{})
			if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
				t.Fatalf("PING answered %q", got)
			}
			accepted := keepAliveTimer(t, h.addr, c.LocalAddr().String())
			up := keepAliveTimer(t, upstreamOf(t, h.redis), h.redis.String())
			if accepted != tc.want || up != tc.want {
				t.Errorf("keep-alive on the accepted socket %v, on the upstream socket %v; want %v on both", accepted, up, tc.want)
			}
			if tc.want {
				return
			}
			// Silent for longer than parkAfter (1 s): the connection
			// parks, and from then on TCP watches it.
			deadline := time.Now().Add(5 * time.Second)
			for {
				accepted = keepAliveTimer(t, h.addr, c.LocalAddr().String())
				up = keepAliveTimer(t, upstreamOf(t, h.redis), h.redis.String())
				if accepted && up {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("5 s after the last message: keep-alive on the accepted socket %v, on the upstream socket %v; want both", accepted, up)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// Still carried after parking.
			if got := roundTrip(t, c, newReplyReader(c), cmd("PING")); got != "+PONG\r\n" {
				t.Fatalf("PING after parking answered %q", got)
			}
		})
	}
}
