package run

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/promote"
)

// PromotionConfig tunes automatic promotion (controlplane/promote), which
// runs for the segments whose policy sets spec.promotion.enabled.
type PromotionConfig struct {
	// Interval is how often segments are checked. Zero: 10s.
	Interval time.Duration
}

// newPromoter returns the promoter of st's segments. In a cluster only the
// leader promotes.
func newPromoter(cfg Config, st promote.Store, log *slog.Logger) *promote.Promoter {
	if cs, ok := st.(*clusterStore); ok {
		st = leaderWrites{cs}
	}
	return promote.New(st, log.With("component", "promote"), promote.Options{Interval: cfg.Promotion.Interval})
}

// withPromotions serves GET /v1/promotions and the veto endpoint next to
// the admin API, and vetoes promotion when a person sets a segment's mode.
func withPromotions(next http.Handler, p *promote.Promoter, log *slog.Logger) http.Handler {
	return admin.WithPromotions(next, p, log.With("component", "admin"))
}
