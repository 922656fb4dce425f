package enforce

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// refPolicy judges requests by scanning every rule in name order and every
// pattern, the obvious and slow way, straight from the proto's comments.
// TestAgainstReference and TestGenericAgainstReference check the compiled
// matchers against it on random policies and frames.
type refPolicy struct {
	rules []*bulkheadv1.Rule // ingress, sorted by name
	ids   []*bulkheadv1.Identity
	// names are the DNS names of addresses, for FQDN peers (egress).
	names map[netip.Addr][]string
}

func newRef(pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) *refPolicy {
	rules := slices.Clone(pp.Ingress)
	slices.SortFunc(rules, func(a, b *bulkheadv1.Rule) int { return strings.Compare(a.Name, b.Name) })
	return &refPolicy{rules: rules, ids: ids}
}

func (rp *refPolicy) judge(peer netip.Addr, port uint16, f *l7.Frame) (rule string, reason Reason) {
	peer = peer.Unmap()
	var seg, ns string
	for _, id := range rp.ids {
		for _, s := range id.Ips {
			if netip.MustParseAddr(s).Unmap() == peer {
				seg, ns = id.Segment, id.Namespace
			}
		}
	}
	// The message's resources; a message naming none has one "nil" resource.
	res := [][]byte{nil}
	if f.Resource != nil {
		res = append([][]byte{f.Resource}, f.More[:f.NMore]...)
	}
	covered := make([]bool, len(res))
	anyCovered := false // some rule covers any resource (for Overflow)
	first := ""         // the lowest rule covering res[0]
	admitted := false
	for _, r := range rp.rules {
		ok := len(r.Peers) == 0
		for _, p := range r.Peers {
			switch v := p.Peer.(type) {
			case *bulkheadv1.Peer_Segment:
				ok = ok || (seg != "" && v.Segment == seg)
			case *bulkheadv1.Peer_Namespace:
				ok = ok || (ns != "" && v.Namespace == ns)
			case *bulkheadv1.Peer_Cidr:
				ok = ok || netip.MustParsePrefix(v.Cidr).Contains(peer)
			case *bulkheadv1.Peer_Fqdn:
				for _, n := range rp.names[peer] {
					if dom, wild := strings.CutPrefix(v.Fqdn, "*."); wild {
						ok = ok || strings.HasSuffix(n, "."+dom) && len(n) > len(dom)+1
					} else {
						ok = ok || n == v.Fqdn
					}
				}
			}
		}
		if !ok {
			continue
		}
		var pt *bulkheadv1.Port
		for _, p := range r.Ports {
			if uint16(p.Port) == port {
				pt = p
			}
		}
		if pt == nil {
			continue
		}
		admitted = true
		all := false
		switch pt.Protocol {
		case "", "tcp":
			all = true
		case "redis":
			all = r.Redis == nil || refRedis(r.Redis, f)
		default:
			all = len(r.L7) == 0
			for _, lr := range r.L7 {
				if !refVerb(lr.Verbs, f) || (len(lr.Aux) > 0 && !refAny(lr.Aux, f.Aux)) {
					continue
				}
				if len(lr.Resources) == 0 {
					all = true
					continue
				}
				for i, x := range res {
					if x != nil && refAny(lr.Resources, x) {
						covered[i] = true
						if i == 0 && first == "" {
							first = r.Name
						}
					}
				}
			}
		}
		if all {
			anyCovered = true
			for i := range covered {
				covered[i] = true
			}
			if first == "" {
				first = r.Name
			}
		}
	}
	switch {
	case !admitted:
		return "", NoRule
	case first == "":
		return "", L7
	case f.Overflow && !anyCovered:
		return "", L7
	case !f.Overflow && slices.Contains(covered, false):
		return "", L7
	}
	return first, None
}

func refRedis(m *bulkheadv1.RedisMatch, f *l7.Frame) bool {
	for _, c := range m.Commands {
		v, s, hasSub := strings.Cut(c, "|")
		if asciiFold(v, string(f.Verb)) && (!hasSub || (len(f.Sub) > 0 && asciiFold(s, string(f.Sub)))) {
			return true
		}
	}
	return false
}

func refVerb(verbs []string, f *l7.Frame) bool {
	if len(verbs) == 0 {
		return true
	}
	return refRedis(&bulkheadv1.RedisMatch{Commands: verbs}, f)
}

func refAny(ps []*bulkheadv1.Pattern, v []byte) bool {
	for _, p := range ps {
		if refMatch(p, string(v)) {
			return true
		}
	}
	return false
}

func refMatch(p *bulkheadv1.Pattern, v string) bool {
	norm := func(s string) string {
		if p.FoldCase {
			return string(bytes.Map(func(r rune) rune {
				if 'A' <= r && r <= 'Z' {
					return r + 'a' - 'A'
				}
				return r
			}, []byte(s)))
		}
		return s
	}
	v = norm(v)
	switch k := p.Kind.(type) {
	case *bulkheadv1.Pattern_Exact:
		return v == norm(k.Exact)
	case *bulkheadv1.Pattern_Prefix:
		return strings.HasPrefix(v, norm(k.Prefix))
	case *bulkheadv1.Pattern_Suffix:
		return strings.HasSuffix(v, norm(k.Suffix))
	case *bulkheadv1.Pattern_Template:
		ts, vs := strings.Split(norm(k.Template), "/"), strings.Split(v, "/")
		for i, t := range ts {
			switch {
			case t == "{*}":
				return i < len(vs) && strings.Join(vs[i:], "/") != ""
			case i >= len(vs):
				return false
			case strings.HasPrefix(t, "{"):
				if vs[i] == "" {
					return false
				}
			case t != vs[i]:
				return false
			}
		}
		return len(vs) == len(ts)
	}
	return false
}

// asciiFold compares ASCII case-insensitively (unlike strings.EqualFold,
// which folds Unicode too).
func asciiFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

var (
	refSegs     = []string{"a/x", "a/y", "b/x", "b/z"}
	refPrefixes = []string{"198.18.0.0/16", "198.18.1.0/24", "198.18.1.128/25", "198.18.2.7/32", "198.19.0.0/15", "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "::/0"}
	refAddrs    = []string{"198.18.0.1", "198.18.1.1", "198.18.1.200", "198.18.2.7", "198.18.2.8", "198.19.3.3", "10.0.0.1", "255.255.255.255", "0.0.0.0", "2001:db8::5", "2001:db8:1::5", "2001:db9::1", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
)

// randomRule returns a rule with random peers and, per port, a protocol
// from protos (or none when the rule names no port).
func randomRule(rng *rand.Rand, name string, ports []uint16, protos []string) *bulkheadv1.Rule {
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	r := &bulkheadv1.Rule{Name: name}
	for range rng.IntN(3) {
		switch rng.IntN(3) {
		case 0:
			r.Peers = append(r.Peers, segPeer(pick(refSegs)))
		case 1:
			r.Peers = append(r.Peers, nsPeer(pick([]string{"a", "b", "c"})))
		default:
			r.Peers = append(r.Peers, cidrPeer(pick(refPrefixes)))
		}
	}
	for _, p := range ports {
		if rng.IntN(2) == 0 {
			r.Ports = append(r.Ports, port(uint32(p), pick(protos)))
		}
	}
	if len(r.Ports) == 0 {
		r.Ports = append(r.Ports, port(uint32(ports[0]), protos[0]))
	}
	return r
}

func randomIdentities(rng *rand.Rand) []*bulkheadv1.Identity {
	var ids []*bulkheadv1.Identity
	for i, a := range refAddrs {
		if rng.IntN(2) == 0 {
			seg := refSegs[rng.IntN(len(refSegs))]
			ns, _, _ := strings.Cut(seg, "/")
			ids = append(ids, &bulkheadv1.Identity{Workload: fmt.Sprint("w", i), Namespace: ns, Segment: seg, Ips: []string{a}})
		}
	}
	return ids
}

func hasProto(r *bulkheadv1.Rule, match func(string) bool) bool {
	return slices.ContainsFunc(r.Ports, func(p *bulkheadv1.Port) bool { return match(p.Protocol) })
}

func TestAgainstReference(t *testing.T) {
	verbs := []string{"get", "SET", "Config", "client", "ping"}
	subs := []string{"", "get", "SET", "list"}
	ports := []uint16{6379, 6380, 7000}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }

	for round := range 200 {
		pp := &bulkheadv1.ProxyPolicy{Segment: "self", Namespace: "a", Mode: bulkheadv1.Mode_MODE_PROTECT}
		for i := range 1 + rng.IntN(12) {
			r := randomRule(rng, fmt.Sprintf("a/self/r%02d", rng.IntN(100)*100+i), ports, []string{"redis", "redis", "tcp"})
			if hasProto(r, func(p string) bool { return p == "redis" }) && rng.IntN(3) > 0 {
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
		ids := randomIdentities(rng)
		p, err := Compile(pp, ids)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ref := newRef(pp, ids)
		for _, a := range refAddrs {
			peer := netip.MustParseAddr(a)
			for _, port := range ports {
				c := p.Inbound(peer, port)
				for _, v := range verbs {
					for _, s := range subs {
						f := req(v, s)
						rule, reason := ref.judge(peer, port, f)
						got := c.Message(f)
						if w := want(Protect, rule, reason); got != w {
							t.Fatalf("round %d: %s:%d %q %q: got %+v, want %+v\npolicy: %v\nids: %v", round, a, port, v, s, got, w, pp, ids)
						}
					}
				}
			}
		}
	}
}

// TestGenericAgainstReference checks generic (and mixed Redis and L4)
// matchers against the reference on random policies and frames: random
// verbs, resources (none, several, Overflow), aux, and patterns of every
// kind, folded or not, including values and patterns around MaxPatternLen.
func TestGenericAgainstReference(t *testing.T) {
	longPath := "/static/" + strings.Repeat("ab", 300)
	longName := strings.Repeat("Q", 600) + ".Example.com"
	values := []string{"/users/42", "/users/42/orders", "/USERS/42", "/users//orders", "/users/", "/static/a.js", "/static",
		"/files/a/b", "/files/", "/", "", "users", "Users", "orders", "www.example.com", "WWW.EXAMPLE.COM", "example.com",
		"badexample.com", "orders.eu", "a/b", longPath, longName, longPath + "/x"}
	patterns := []*bulkheadv1.Pattern{
		exact("/users/42"), exact("users"), exact("Users"), exact("example.com"), exact("/"), exact("orders.eu"),
		prefix("/users/"), prefix("/static/"), prefix("/"), prefix("orders."), prefix("/STATIC/"), prefix("www."),
		prefix("/static/" + strings.Repeat("ab", (MaxPatternLen-8)/2)),
		suffix(".example.com"), suffix(".EXAMPLE.com"), suffix("com"), suffix("/orders"), suffix("s"),
		suffix(strings.Repeat("q", MaxPatternLen-len(".example.com")) + ".example.com"),
		tmpl("/users/{id}"), tmpl("/users/{id}/orders"), tmpl("/{a}/{b}"), tmpl("{*}"), tmpl("/files/{*}"), tmpl("/{x}/{*}"),
		tmpl("/USERS/{id}"), tmpl("users"), tmpl("/static/{f}"), tmpl("/"), tmpl("{x}"), tmpl("/static/{f}/{*}"),
	}
	auxValues := []string{"", "shop", "SHOP", "billing", "api.example.com"}
	auxPatterns := []*bulkheadv1.Pattern{exact("shop"), exact("SHOP"), suffix(".example.com"), prefix("bill"), tmpl("{db}")}
	policyVerbs := []string{"GET", "post", "SELECT", "GET|X", "produce|v2", "Produce"}
	frameVerbs := []string{"get", "GET", "Post", "select", "PRODUCE", "DELETE", "", strings.Repeat("G", l7.MaxVerb+1)}
	frameSubs := []string{"", "x", "V2", "y"}
	ports := []uint16{80, 6379, 7000}
	protos := []string{"http", "mysql", "redis", "tcp", "http"}
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	pickPattern := func(list []*bulkheadv1.Pattern) *bulkheadv1.Pattern {
		p := &bulkheadv1.Pattern{Kind: list[rng.IntN(len(list))].Kind, FoldCase: rng.IntN(3) == 0}
		return p
	}

	for round := range 200 {
		pp := &bulkheadv1.ProxyPolicy{Segment: "self", Namespace: "a", Mode: bulkheadv1.Mode_MODE_PROTECT}
		for i := range 1 + rng.IntN(8) {
			r := randomRule(rng, fmt.Sprintf("a/self/r%02d", rng.IntN(100)*100+i), ports, protos)
			if hasProto(r, func(p string) bool { return p == "redis" }) && rng.IntN(2) == 0 {
				r.Redis = redis(pick(policyVerbs))
			}
			if hasProto(r, func(p string) bool { return p == "http" || p == "mysql" }) && rng.IntN(5) > 0 {
				for range 1 + rng.IntN(3) {
					lr := &bulkheadv1.L7Rule{}
					for range rng.IntN(3) {
						lr.Verbs = append(lr.Verbs, pick(policyVerbs))
					}
					for range rng.IntN(4) {
						lr.Resources = append(lr.Resources, pickPattern(patterns))
					}
					if rng.IntN(3) == 0 {
						for range 1 + rng.IntN(2) {
							lr.Aux = append(lr.Aux, pickPattern(auxPatterns))
						}
					}
					r.L7 = append(r.L7, lr)
				}
			}
			pp.Ingress = append(pp.Ingress, r)
		}
		ids := randomIdentities(rng)
		p, err := compile(pp, ids, testParsed)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ref := newRef(pp, ids)
		var frames []*l7.Frame
		for range 40 {
			f := &l7.Frame{Dir: l7.DirRequest, Verb: []byte(pick(frameVerbs)), Sub: []byte(pick(frameSubs)), Aux: []byte(pick(auxValues))}
			for range rng.IntN(4) {
				f.AddResource([]byte(pick(values)))
			}
			if f.Resource != nil && rng.IntN(8) == 0 {
				for !f.Overflow {
					f.AddResource([]byte(pick(values)))
				}
			}
			frames = append(frames, f)
		}
		for _, a := range refAddrs {
			peer := netip.MustParseAddr(a)
			for _, port := range ports {
				c := p.Inbound(peer, port)
				for _, f := range frames {
					rule, reason := ref.judge(peer, port, f)
					got := c.Message(f)
					if w := want(Protect, rule, reason); got != w {
						var res []string
						f.Resources(func(r []byte) bool { res = append(res, string(r)); return true })
						t.Fatalf("round %d: %s:%d verb %q sub %q resources %q overflow %v aux %q: got %+v, want %+v\npolicy: %v\nids: %v",
							round, a, port, f.Verb, f.Sub, res, f.Overflow, f.Aux, got, w, pp, ids)
					}
				}
			}
		}
	}
}
