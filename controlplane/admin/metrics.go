package admin

import "github.com/prometheus/client_golang/prometheus"

// authMetrics are the admin API's authentication counters.
type authMetrics struct {
	failures *prometheus.CounterVec
}

// newAuthMetrics registers on reg; a nil reg registers nowhere.
func newAuthMetrics(reg prometheus.Registerer) *authMetrics {
	m := &authMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_admin_auth_failures_total",
			Help: "Admin API requests refused, by reason: missing (no token), invalid (token not accepted), forbidden (not allowed), error (authenticator failed).",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonMissing, ReasonInvalid, ReasonForbidden, ReasonError} {
		m.failures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.failures)
	}
	return m
}
