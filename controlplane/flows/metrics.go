package flows

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	received   prometheus.Counter
	rejected   prometheus.Counter
	dropped    prometheus.Counter
	violations *prometheus.CounterVec
	refused    *prometheus.CounterVec
}

// newMetrics builds the Server's metrics, and the Recorder's sizes and
// evictions read at scrape time, and registers them on reg (when not nil).
func newMetrics(reg prometheus.Registerer, rec *Recorder) *metrics {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_flows_received_total",
			Help: "Flows accepted from proxies' reports.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_flows_rejected_total",
			Help: "Flows refused as invalid or in oversized batches.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_flows_proxy_dropped_total",
			Help: "Flows the proxies could not aggregate because their tables were full, as they reported.",
		}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_violations_total",
			Help: "Messages or connections no rule allowed, by verdict (violation, deny) and mode.",
		}, []string{"verdict", "mode"}),
	}
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulkhead_flows_refused_total",
		Help: "Flows refused from a reporter that may not report them, by reason (node_mismatch, unknown_node, not_endpoint, segment, rate_limited); neither recorded nor learned.",
	}, []string{"reason"})
	for _, r := range []string{RefusedNode, RefusedUnknownNode, RefusedNotEndpoint, RefusedSegment, RefusedRate} {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.received, m.rejected, m.dropped, m.violations, m.refused)
	if rec != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "bulkhead_flows_records",
				Help: "Aggregated flow records held.",
			}, func() float64 { return float64(rec.Stats().Flows) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "bulkhead_flows_evictions_total",
				Help: "Aggregated flow records evicted to stay within the table's bound.",
			}, func() float64 { return float64(rec.Stats().FlowEvictions) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "bulkhead_flows_violation_evictions_total",
				Help: "Violation records overwritten in the ring of recent violations.",
			}, func() float64 { return float64(rec.Stats().ViolationEvictions) }),
		)
	}
	return m
}
