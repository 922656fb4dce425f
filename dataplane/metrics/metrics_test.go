package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisteredNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	p := m.Protocol("redis")
	p.Allow.Inc()
	p.Denials("l7_not_allowed").Inc()
	p.Malformed.Inc()
	m.Connection(ConnDeny)
	m.Active().Inc()
	m.PolicySwap()
	m.XDSNack()
	m.BytesIn().Add(10)
	m.BytesOut().Add(20)
	m.Limit(LimitMessageTimeout).Inc()

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bulkhead_proxy_bytes_total", []string{"direction", "in"}, 10},
		{"bulkhead_proxy_bytes_total", []string{"direction", "out"}, 20},
		{"bulkhead_proxy_denials_total", []string{"protocol", "redis", "reason", "l7_not_allowed"}, 1},
		{"bulkhead_proxy_malformed_total", []string{"protocol", "redis"}, 1},
		{"bulkhead_proxy_messages_total", []string{"protocol", "redis", "verdict", "allow"}, 1},
		{"bulkhead_proxy_messages_total", []string{"protocol", "redis", "verdict", "deny"}, 0},
		{"bulkhead_proxy_connections_total", []string{"verdict", "deny"}, 1},
		{"bulkhead_proxy_connections_total", []string{"verdict", "no_policy"}, 0},
		{"bulkhead_proxy_policy_swaps_total", nil, 1},
		{"bulkhead_proxy_xds_nacks_total", nil, 1},
		{"bulkhead_proxy_active_connections", nil, 1},
		{"bulkhead_proxy_limit_total", []string{"limit", "message_timeout"}, 1},
		{"bulkhead_proxy_limit_total", []string{"limit", "max_conns"}, 0},
	} {
		got, ok := value(t, reg, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "bulkhead_proxy_connections_total" && len(mf.GetMetric()) != 8 {
			t.Errorf("connection outcome series: %d, want all 8 from the start", len(mf.GetMetric()))
		}
	}
	if m.Protocol("redis") != p {
		t.Error("Protocol does not cache")
	}
}

func TestNilRegisterer(t *testing.T) {
	m := New(nil)
	m.Protocol("tcp").Deny.Inc()
	// A second set on its own registry does not collide with the first.
	New(prometheus.NewRegistry())
	New(prometheus.NewRegistry())
}

// TestResolvedCountersDoNotAllocate: the per-message increments.
func TestResolvedCountersDoNotAllocate(t *testing.T) {
	m := New(prometheus.NewRegistry())
	p := m.Protocol("redis")
	p.Denials("l7_not_allowed")
	in := m.BytesIn()
	allocs := testing.AllocsPerRun(1000, func() {
		p.Allow.Inc()
		p.Violation.Inc()
		p.Deny.Inc()
		p.Denials("l7_not_allowed").Inc()
		in.Add(42)
		m.Limit(LimitIdle).Inc()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}

// value finds a gathered counter or gauge by name and label pairs.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels)/2 {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
