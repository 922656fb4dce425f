package enforce

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// bigPolicy has n ingress rules, one per peer segment s000…, each allowing
// a few commands on 6379, and n identities.
func bigPolicy(n int) (*bulkheadv1.ProxyPolicy, []*bulkheadv1.Identity) {
	pp := &bulkheadv1.ProxyPolicy{Segment: "redis", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ports: []*bulkheadv1.Port{port(6379, "redis")}}
	var ids []*bulkheadv1.Identity
	for i := range n {
		seg := fmt.Sprintf("demo/s%03d", i)
		pp.Ingress = append(pp.Ingress, &bulkheadv1.Rule{Name: fmt.Sprintf("demo/redis/from-s%03d", i),
			Peers: []*bulkheadv1.Peer{segPeer(seg)}, Ports: []*bulkheadv1.Port{port(6379, "redis")},
			Redis: redis("GET", "SET", "HGETALL", "CONFIG|GET", fmt.Sprintf("CMD%d", i))})
		ids = append(ids, &bulkheadv1.Identity{Workload: fmt.Sprint("w", i), Namespace: "demo", Segment: seg,
			Ips: []string{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()}})
	}
	return pp, ids
}

func BenchmarkMessage(b *testing.B) {
	pp, ids := bigPolicy(500)
	p := mustCompile(b, pp, ids)
	for _, tc := range []struct {
		name string
		f    *l7.Frame
	}{
		{"allowed", req("get", "")},
		{"allowed-sub", req("config", "get")},
		{"denied", req("FLUSHALL", "")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 6379)
			b.ReportAllocs()
			for b.Loop() {
				c.Refresh(p)
				_ = c.Message(tc.f)
			}
		})
	}
}

func BenchmarkConnect(b *testing.B) {
	pp, ids := bigPolicy(500)
	p := mustCompile(b, pp, ids)
	b.ReportAllocs()
	for b.Loop() {
		c := p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 6379)
		_ = c.Connect()
	}
}

func BenchmarkCompile(b *testing.B) {
	pp, ids := bigPolicy(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(pp, ids); err != nil {
			b.Fatal(err)
		}
	}
}
