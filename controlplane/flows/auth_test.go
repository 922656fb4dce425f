package flows

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// table is an Endpoints of fixed workloads.
type table map[string]struct {
	seg string
	ips []netip.Addr
}

func (tb table) Node(node string) (string, []netip.Addr, bool) {
	w, ok := tb[node]
	return w.seg, w.ips, ok
}

func (tb table) Segment(ip netip.Addr) string {
	for _, w := range tb {
		for _, a := range w.ips {
			if a == ip {
				return w.seg
			}
		}
	}
	return ""
}

var workloads = table{
	"redis.demo": {"demo/redis", []netip.Addr{netip.MustParseAddr("198.18.9.20")}},
	"cart.demo":  {"demo/cart", []netip.Addr{netip.MustParseAddr("198.18.9.10")}},
	"web.demo":   {"demo/web", []netip.Addr{netip.MustParseAddr("198.18.9.30")}},
}

func ingress(src, srcSeg, dst, dstSeg string) *bulkheadv1.Flow {
	return &bulkheadv1.Flow{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: src, SrcSegment: srcSeg, DstIp: dst, DstSegment: dstSeg,
		DstPort: 6379, Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW,
		Mode: bulkheadv1.Mode_MODE_DISCOVER, Count: 1,
	}
}

func TestEndpointOf(t *testing.T) {
	egress := func(f *bulkheadv1.Flow) *bulkheadv1.Flow {
		f.Direction = bulkheadv1.Direction_DIRECTION_EGRESS
		return f
	}
	for _, tc := range []struct {
		name, node string
		f          *bulkheadv1.Flow
		want       string
	}{
		{"own ingress", "redis.demo", ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/redis"), ""},
		{"unknown peer", "redis.demo", ingress("203.0.113.9", "", "198.18.9.20", "demo/redis"), ""},
		{"between two others", "redis.demo", ingress("198.18.9.30", "demo/web", "198.18.9.10", "demo/cart"), RefusedNotEndpoint},
		{"own address, other segment", "redis.demo", ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/cart"), RefusedSegment},
		{"peer named wrongly", "redis.demo", ingress("198.18.9.30", "demo/cart", "198.18.9.20", "demo/redis"), RefusedSegment},
		{"unknown node", "ghost.demo", ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/redis"), RefusedUnknownNode},
		{"own egress", "cart.demo", egress(ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/redis")), ""},
		{"egress from another", "web.demo", egress(ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/redis")), RefusedNotEndpoint},
		{"egress from loopback", "cart.demo", egress(ingress("127.0.0.1", "demo/cart", "198.18.9.53", "")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := endpointOf(workloads, tc.node, tc.f); got != tc.want {
				t.Errorf("endpointOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEndpointsAndRate: refused flows are neither recorded nor observed
// (learned) and are counted by reason; beyond a node's token bucket the
// excess is refused as rate_limited, and the bucket refills with time.
func TestEndpointsAndRate(t *testing.T) {
	now := time.Unix(1000, 0)
	e := newEnv(t, ServerOptions{Endpoints: workloads, FlowRate: 2, FlowBurst: 3, Now: func() time.Time { return now }})
	send := func(fs ...*bulkheadv1.Flow) *bulkheadv1.ReportSummary {
		t.Helper()
		s, err := e.client.Report(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&bulkheadv1.FlowBatch{Node: "redis.demo", Flows: fs}); err != nil {
			t.Fatal(err)
		}
		sum, err := s.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	own := ingress("198.18.9.10", "demo/cart", "198.18.9.20", "demo/redis")
	forged := ingress("198.18.9.30", "demo/web", "198.18.9.10", "demo/cart")
	sum := send(forged, own, own, own, own)
	if sum.GetAccepted() != 3 || sum.GetRejected() != 2 {
		t.Errorf("summary %v, want 3 accepted (the burst), 1 forged and 1 over the rate refused", sum)
	}
	if got := len(e.rec.Flows(Filter{Segment: "demo/cart"})); got != 1 { // the accepted cart → redis record
		t.Errorf("records touching demo/cart: %d, want only cart → redis", got)
	}
	for _, r := range e.rec.Flows(Filter{}) {
		if r.DstIP == "198.18.9.10" {
			t.Errorf("the forged flow was recorded: %+v", r)
		}
	}
	if e.obs.flows != 3 {
		t.Errorf("observed %d flows, want 3", e.obs.flows)
	}
	if got := counter(t, e.reg, "bulkhead_flows_refused_total", RefusedNotEndpoint); got != 1 {
		t.Errorf("not_endpoint refusals %v", got)
	}
	if got := counter(t, e.reg, "bulkhead_flows_refused_total", RefusedRate); got != 1 {
		t.Errorf("rate_limited refusals %v", got)
	}
	if sum := send(own); sum.GetAccepted() != 0 {
		t.Errorf("an empty bucket accepted %v", sum)
	}
	now = now.Add(time.Second) // two tokens
	if sum := send(own, own, own); sum.GetAccepted() != 2 || sum.GetRejected() != 1 {
		t.Errorf("after 1s at 2/s: %v, want 2 accepted", sum)
	}
}
