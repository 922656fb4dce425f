package enforce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// reference judges a request by scanning every rule in name order, the
// obvious and slow way. TestAgainstReference checks the compiled matchers
// against it on random policies.
func reference(pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity, peer netip.Addr, port uint16, verb, sub string) (rule string, reason Reason) {
	peer = peer.Unmap()
	var seg, ns string
	for _, id := range ids {
		for _, s := range id.Ips {
			if netip.MustParseAddr(s).Unmap() == peer {
				seg, ns = id.Segment, id.Namespace
			}
		}
	}
	rules := slices.Clone(pp.Ingress)
	slices.SortFunc(rules, func(a, b *bulkheadv1.Rule) int { return strings.Compare(a.Name, b.Name) })
	admitted := false
	for _, r := range rules {
		ok := len(r.Peers) == 0
		for _, p := range r.Peers {
			switch v := p.Peer.(type) {
			case *bulkheadv1.Peer_Segment:
				ok = ok || (seg != "" && v.Segment == seg)
			case *bulkheadv1.Peer_Namespace:
				ok = ok || (ns != "" && v.Namespace == ns)
			case *bulkheadv1.Peer_Cidr:
				ok = ok || netip.MustParsePrefix(v.Cidr).Contains(peer)
			}
		}
		if !ok {
			continue
		}
		var rp *bulkheadv1.Port
		for _, p := range r.Ports {
			if uint16(p.Port) == port {
				rp = p
			}
		}
		if rp == nil {
			continue
		}
		admitted = true
		if r.Redis == nil || rp.Protocol != "redis" {
			return r.Name, None
		}
		for _, c := range r.Redis.Commands {
			v, s, hasSub := strings.Cut(c, "|")
			if strings.EqualFold(v, verb) && (!hasSub || (sub != "" && strings.EqualFold(s, sub))) {
				return r.Name, None
			}
		}
	}
	if admitted {
		return "", L7
	}
	return "", NoRule
}

func TestAgainstReference(t *testing.T) {
	verbs := []string{"get", "SET", "Config", "client", "ping"}
	subs := []string{"", "get", "SET", "list"}
	segs := []string{"a/x", "a/y", "b/x", "b/z"}
	prefixes := []string{"198.18.0.0/16", "198.18.1.0/24", "198.18.1.128/25", "198.18.2.7/32", "198.19.0.0/15", "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "::/0"}
	addrs := []string{"198.18.0.1", "198.18.1.1", "198.18.1.200", "198.18.2.7", "198.18.2.8", "198.19.3.3", "10.0.0.1", "255.255.255.255", "0.0.0.0", "2001:db8::5", "2001:db8:1::5", "2001:db9::1", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
	ports := []uint16{6379, 6380, 7000}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }

	for round := range 200 {
		pp := &bulkheadv1.ProxyPolicy{Segment: "self", Namespace: "a", Mode: bulkheadv1.Mode_MODE_PROTECT}
		for i := range 1 + rng.IntN(12) {
			r := &bulkheadv1.Rule{Name: fmt.Sprintf("a/self/r%02d", rng.IntN(100)*100+i)}
			for range rng.IntN(3) {
				switch rng.IntN(3) {
				case 0:
					r.Peers = append(r.Peers, segPeer(pick(segs)))
				case 1:
					r.Peers = append(r.Peers, nsPeer(pick([]string{"a", "b", "c"})))
				default:
					r.Peers = append(r.Peers, cidrPeer(pick(prefixes)))
				}
			}
			hasRedis := false
			for _, p := range ports {
				if rng.IntN(2) == 0 {
					proto := pick([]string{"redis", "redis", "tcp"})
					hasRedis = hasRedis || proto == "redis"
					r.Ports = append(r.Ports, port(uint32(p), proto))
				}
			}
			if len(r.Ports) == 0 {
				r.Ports = append(r.Ports, port(6379, "redis"))
				hasRedis = true
			}
			if hasRedis && rng.IntN(3) > 0 {
				r.Redis = &bulkheadv1.RedisMatch{}
				for range 1 + rng.IntN(3) {
					c := pick(verbs)
					if s := pick(subs); s != "" && rng.IntN(2) == 0 {
						c += "|" + s
					}
					r.Redis.Commands = append(r.Redis.Commands, c)
				}
			}
			pp.Ingress = append(pp.Ingress, r)
		}
		var ids []*bulkheadv1.Identity
		for i, a := range addrs {
			if rng.IntN(2) == 0 {
				seg := pick(segs)
				ns, _, _ := strings.Cut(seg, "/")
				ids = append(ids, &bulkheadv1.Identity{Workload: fmt.Sprint("w", i), Namespace: ns, Segment: seg, Ips: []string{a}})
			}
		}
		p, err := Compile(pp, ids)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, a := range addrs {
			peer := netip.MustParseAddr(a)
			for _, port := range ports {
				c := p.Inbound(peer, port)
				for _, v := range verbs {
					for _, s := range subs {
						rule, reason := reference(pp, ids, peer, port, v, s)
						got := c.Message(&l7.Frame{Verb: []byte(v), Sub: []byte(s)})
						if w := want(Protect, rule, reason); got != w {
							t.Fatalf("round %d: %s:%d %q %q: got %+v, want %+v\npolicy: %v\nids: %v", round, a, port, v, s, got, w, pp, ids)
						}
					}
				}
			}
		}
	}
}
