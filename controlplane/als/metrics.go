package als

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	streams prometheus.Gauge
	entries *prometheus.CounterVec
	flows   prometheus.Counter
}

// newMetrics builds the package's metrics and registers them on reg (when
// not nil).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulkhead_als_streams",
			Help: "Open access log streams from Envoy sidecars.",
		}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_als_entries_total",
			Help: "Access log entries received, by result (accepted, rejected, skipped).",
		}, []string{"result"}),
		flows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_als_flows_total",
			Help: "Flow records made from access log entries and accepted by the flows server.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.entries, m.flows)
	}
	return m
}
