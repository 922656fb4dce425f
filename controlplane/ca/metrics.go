package ca

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	issued *prometheus.CounterVec
}

// newMetrics builds the Server's metrics and registers them on reg (when
// not nil).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_ca_issue_requests_total",
			Help: "Certificate requests, by result (ok, denied, invalid, limited).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "denied", "invalid", "limited"} {
		m.issued.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.issued)
	}
	return m
}
