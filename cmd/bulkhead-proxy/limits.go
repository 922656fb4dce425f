package main

import (
	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

// limitFlags binds, on c, the proxy's per-connection limits (proxy.Limits) to
// flags; 0 keeps the proxy's default.
func limitFlags(c *cobra.Command, l *proxy.Limits) {
	f := c.Flags()
	f.IntVar(&l.MaxMessage, "max-message", 0, "largest L7 message, in bytes, a connection may hold per direction (0: the proxy's default, 64 MiB)")
	f.DurationVar(&l.IdleTimeout, "idle-timeout", 0, "close an L7 connection silent on both sides for this long (0: the proxy's default, 1h; negative: never)")
	f.DurationVar(&l.MessageTimeout, "message-timeout", 0, "a request that has begun must complete within this, plus 1s per --message-min-rate bytes (0: the proxy's default, 10s; negative: never)")
	f.IntVar(&l.MessageMinRate, "message-min-rate", 0, "bytes per second that earn a long request more time (0: the proxy's default, 1024)")
	f.DurationVar(&l.FirstMessageTimeout, "first-message-timeout", 0, "close an L7 connection whose client says nothing this long after connecting (0: the proxy's default, 30s; negative: never)")
}
