package proxy

import (
	"context"
	"net"
	"time"
)

// TCP keep-alive on the proxy's sockets is armed late: not when a
// connection is accepted or dialled, but when it is spliced (L4: no idle
// timeout of its own, TCP finds a dead peer) or when an L7 connection
// first falls silent (its reply side parks: parker.park). A connection
// that never parks (HTTP/2, or one that is never silent for parkAfter) is
// bound by Limits.IdleTimeout instead. Keep-alive probes
// are sent only after keepAliveIdle of silence anyway, so a busy
// connection behaves the same; a short-lived one (one request per
// connection, the churn the benchmark measures) no longer pays four
// setsockopt calls on each of its two sockets, a quarter of the system
// calls a proxied connection costs. Listeners (Listen) and the dialer are
// therefore configured with keep-alive off (KeepAlive: -1).

// Keep-alive settings once armed: the first probe after keepAliveIdle of
// silence, then every keepAliveInterval, the peer declared dead after
// keepAliveCount unanswered probes (about 2.5 minutes in all; Go's own
// defaults for net.Dialer and net.ListenConfig).
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// keepAliveConfig is what armKeepAlive sets.
var keepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount}

// Listen opens a TCP listener on addr as the proxy wants it for
// Config.Listener: keep-alive off on accepted sockets until the proxy arms
// it (see above). Start uses it when Config.Listener is nil.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// armKeepAlive turns TCP keep-alive on for c. Errors are ignored: the
// socket may already be closed, and keep-alive only speeds up noticing a
// dead peer.
func armKeepAlive(c *net.TCPConn) {
	if c != nil {
		_ = c.SetKeepAliveConfig(keepAliveConfig)
	}
}
