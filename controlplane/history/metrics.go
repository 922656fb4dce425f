package history

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	written      prometheus.Counter
	exportErrors prometheus.Counter
	compactions  prometheus.Counter
	expired      *prometheus.CounterVec
}

// newMetrics builds the history's metrics, and its size read at scrape
// time, and registers them on reg (when not nil).
func newMetrics(reg prometheus.Registerer, h *History) *metrics {
	m := &metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_history_records_written_total",
			Help: "Aggregated flow records written to the flow history.",
		}),
		exportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_history_export_errors_total",
			Help: "Windows an exporter failed to ship.",
		}),
		compactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_history_compactions_total",
			Help: "History files rewritten aggregated.",
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_history_files_expired_total",
			Help: "History files deleted, by why (age, size).",
		}, []string{"why"}),
	}
	if reg != nil {
		size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bulkhead_history_bytes",
			Help: "Bytes of the flow history on disk.",
		}, func() float64 { return float64(h.Stats().Bytes) })
		reg.MustRegister(m.written, m.exportErrors, m.compactions, m.expired, size)
	}
	return m
}
