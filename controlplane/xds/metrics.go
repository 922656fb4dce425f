package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	envoyRejected prometheus.Counter
	nacks         *prometheus.CounterVec
	streams       *prometheus.GaugeVec
	pushes        *prometheus.CounterVec
	resources     *prometheus.GaugeVec
	refused       *prometheus.CounterVec
}

// newMetrics builds the package's metrics and registers them on reg (when
// not nil).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_xds_nacks_total",
			Help: "Configurations rejected by xDS clients, by resource type.",
		}, []string{"type"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulkhead_xds_streams",
			Help: "Open ADS streams, by kind (sotw, delta).",
		}, []string{"kind"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_xds_resource_changes_total",
			Help: "Resources added, changed or removed in the xDS caches, by resource type.",
		}, []string{"type"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulkhead_xds_resources",
			Help: "Resources served, by resource type.",
		}, []string{"type"}),
	}
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulkhead_xds_refused_total",
		Help: "ADS streams refused by the node binding, by reason (unauthenticated, node_mismatch, foreign_resource).",
	}, []string{"reason"})
	for _, r := range []string{refusedUnauthenticated, refusedNode, refusedResource} {
		m.refused.WithLabelValues(r)
	}
	m.envoyRejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulkhead_xds_envoy_rejected_total",
		Help: "Envoy node configurations the control plane refused to publish (invalid or dangling references); the node keeps its last good one.",
	})
	if reg != nil {
		reg.MustRegister(m.nacks, m.streams, m.pushes, m.resources, m.envoyRejected, m.refused)
	}
	return m
}
