package run

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	runs     *prometheus.CounterVec
	duration prometheus.Histogram
}

// newMetrics builds the compile loop's metrics and registers them on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_compile_runs_total",
			Help: "Compilations of the store and workloads, by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulkhead_compile_duration_seconds",
			Help:    "Time to compile the store and workloads.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	reg.MustRegister(m.runs, m.duration)
	return m
}
