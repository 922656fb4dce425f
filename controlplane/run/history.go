package run

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
)

// HistoryConfig configures the flow history (controlplane/history): every
// batch of flow reports is also aggregated into it, and the admin server
// serves /v1/history, /v1/explain, /v1/replay and /v1/drift from it.
type HistoryConfig struct {
	// Dir is the history's folder. Empty: <StateDir>/history.
	Dir string
	// Options bound and tune it (zero: 7 days, 256 MiB; see
	// history.Options). Registerer is set by Run.
	Options history.Options
}

// openHistory opens the flow history of cfg.
func openHistory(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*history.History, error) {
	dir := cfg.History.Dir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "history")
	}
	o := cfg.History.Options
	o.Registerer = reg
	h, err := history.Open(dir, o, log)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return h, nil
}

// withOperator serves the operator endpoints (admin.WithOperator) next to
// the admin API; peers are resolved with the latest good compilation's
// identities.
func withOperator(next http.Handler, st admin.PolicySource, h *history.History, c *compiler, log *slog.Logger) http.Handler {
	return admin.WithOperator(next, admin.OperatorDeps{
		Store:   st,
		History: h,
		Resolve: c.resolve,
		Log:     log.With("component", "admin"),
	})
}

// resolve maps an address to its segment in the latest good compilation.
func (c *compiler) resolve(a netip.Addr) (string, bool) {
	out := c.latest.Load()
	if out == nil {
		return "", false
	}
	s := a.String()
	for _, id := range out.Identities {
		for _, ip := range id.GetIps() {
			if ip == s {
				return id.GetSegment(), true
			}
		}
	}
	return "", false
}
