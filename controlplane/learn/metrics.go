package learn

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// RefusedStoreFull counts rules not learned because the store holds
// store.MaxLearnedPolicies policies and the flow named a new segment.
const RefusedStoreFull = "store_full"

// metrics are the Learner's counters.
type metrics struct {
	refused *prometheus.CounterVec
}

// newMetrics registers on reg; a nil reg registers nowhere.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_learn_refused_total",
			Help: "Flows a policy's learning bounds (spec.learning) refused to learn from, by reason: window, peer_learning, peer_unknown; and rules of new segments not learned because the store is full (store_full).",
		}, []string{"reason"}),
	}
	for _, r := range []string{v1alpha1.RefusedWindow, v1alpha1.RefusedPeerLearns, v1alpha1.RefusedPeerUnknown, RefusedStoreFull} {
		m.refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.refused)
	}
	return m
}
