package enforce

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
)

// Policy is a compiled ProxyPolicy with its identity table. It is immutable
// after Compile and safe for concurrent use; swap it with an Engine.
type Policy struct {
	mode      Mode
	revision  string
	segment   string // "ns/segment" of the proxied workload
	namespace string
	ports     []Port // declared, by port number
	protocols map[uint16]string
	ids       map[netip.Addr]ident
	dirs      [2]dirTable // by Direction-1
	// egressProtos: per port named by an egress rule, the protocol the
	// rules give it ("" when several).
	egressProtos map[uint16]string
}

// Port is a declared inbound port and the protocol spoken on it.
type Port struct {
	Port     uint16
	Protocol string // "tcp" or a name of protocols/all
}

// Mode is the mode the proxied segment is judged under.
func (p *Policy) Mode() Mode { return p.mode }

// Revision is ProxyPolicy.revision, the control plane's content hash.
func (p *Policy) Revision() string { return p.revision }

// Segment is the proxied workload's segment key ("ns/segment").
func (p *Policy) Segment() string { return p.segment }

// Namespace is the proxied workload's namespace.
func (p *Policy) Namespace() string { return p.namespace }

// Protocol is the protocol declared for an inbound port ("tcp", "redis"), or
// "" when the port is not declared (the proxy sniffs it).
func (p *Policy) Protocol(port uint16) string { return p.protocols[port] }

// EgressProtocol is the protocol the egress rules give port ("tcp", "tls"),
// or "" when no egress rule names the port or rules give it different
// protocols (the proxy then sniffs outbound connections to it).
func (p *Policy) EgressProtocol(port uint16) string { return p.egressProtos[port] }

// Ports returns the declared inbound ports, sorted by number, in a new slice.
func (p *Policy) Ports() []Port { return slices.Clone(p.ports) }

// Identity looks an address up in the identity table: its segment key
// ("ns/segment") and namespace. ok is false for addresses of no known
// workload. It allocates nothing.
func (p *Policy) Identity(ip netip.Addr) (segment, namespace string, ok bool) {
	id, ok := p.ids[ip.Unmap().WithZone("")]
	return id.segment, id.namespace, ok
}

// RuleNames returns the names of the rules of one direction, sorted, in a new
// slice.
func (p *Policy) RuleNames(d Direction) []string {
	if d != Ingress && d != Egress {
		return nil
	}
	return slices.Clone(p.dirs[d-1].names)
}

// dirTable is the compiled form of the rules of one direction.
type dirTable struct {
	names []string              // rule names; a rule's index is its rank
	ports map[uint16][]*matcher // per port named by a rule: matcher by peer class (nil: no rule)
	v4    ranges                // unknown IPv4 peers
	v6    ranges                // unknown IPv6 peers
	none  int32                 // class of a peer with no address (rules with no peers)
	fqdn  *fqdnTable            // FQDN peers (egress); nil: none
}

// class returns the peer class of an address not in the identity table.
func (t *dirTable) class(a netip.Addr) int32 {
	switch {
	case a.Is4():
		return t.v4.class[t.v4.find(a)]
	case a.Is6():
		return t.v6.class[t.v6.find(a)]
	}
	return t.none
}

// ranges cuts one address family into disjoint ranges at every CIDR
// boundary; within a range every address lies in the same CIDRs.
type ranges struct {
	start []netip.Addr // sorted; start[0] is the family's lowest address
	cidr  []int32      // per range: id of the set of rules whose CIDRs contain it
	class []int32      // per range: peer class of an unknown address in it
}

// find returns the index of the range that holds a (same family).
func (r *ranges) find(a netip.Addr) int {
	lo, hi := 0, len(r.start) // start[lo] <= a < start[hi]
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if r.start[mid].Compare(a) <= 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// matcher is what applies to one (peer class, port): the union of the rules
// that admit the class on the port. Rule indices are ranks by name; -1 is
// "none".
type matcher struct {
	names []string // the direction's rule names
	first int32    // lowest rule: the one reported for the connection
	open  int32    // lowest rule without an L7 matcher on this port
	verbs map[string]verbRule
	l7    *l7Index // the generic matchers (Rule.l7) of the rules; nil: none
}

// portState is what judges one rule's messages on one port.
type portState int8

const (
	stateAbsent portState = iota // the rule does not name the port
	stateOpen                    // no matcher applies: every message
	stateRedis                   // its Redis matcher
	stateL7                      // its generic matcher
)

// verbRule is the lowest rule allowing a command, with any sub-command (any)
// or a given one (subs, upper case).
type verbRule struct {
	any  int32
	subs map[string]int32
}

// sets interns sorted sets of rule indices.
type sets struct {
	byKey map[string]int32
	list  [][]int32
}

func newSets() *sets { return &sets{byKey: map[string]int32{}} }

// id normalises s (sort, dedup; s is modified) and returns its id.
func (s *sets) id(set []int32) int32 {
	slices.Sort(set)
	set = slices.Compact(set)
	k := setKey(set)
	if id, ok := s.byKey[k]; ok {
		return id
	}
	id := int32(len(s.list))
	s.byKey[k] = id
	s.list = append(s.list, set)
	return id
}

func setKey(set []int32) string {
	b := make([]byte, 0, 4*len(set))
	for _, v := range set {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return string(b)
}

type cidrRule struct {
	pfx  netip.Prefix
	rule int32
}

// buildDir indexes the rules of direction d and records the peer class of
// every identity address in ids.
func buildDir(rules []*rule, ids map[netip.Addr]ident, d Direction) dirTable {
	slices.SortFunc(rules, func(a, b *rule) int { return strings.Compare(a.name, b.name) })
	t := dirTable{names: make([]string, len(rules)), ports: map[uint16][]*matcher{}}
	bySeg := map[string][]int32{}
	byNS := map[string][]int32{}
	var anyPeer []int32
	var cidr4, cidr6 []cidrRule
	for i, r := range rules {
		ri := int32(i)
		t.names[i] = r.name
		if r.any {
			anyPeer = append(anyPeer, ri)
		}
		for _, s := range r.segs {
			bySeg[s] = append(bySeg[s], ri)
		}
		for _, ns := range r.nss {
			byNS[ns] = append(byNS[ns], ri)
		}
		for _, p := range r.cidrs {
			if p.Addr().Is4() {
				cidr4 = append(cidr4, cidrRule{p, ri})
			} else {
				cidr6 = append(cidr6, cidrRule{p, ri})
			}
		}
	}

	// Peer classes: the distinct sets of rules admitting some address.
	classes := newSets()
	cidrSets := newSets()
	union := func(parts ...[]int32) []int32 {
		var u []int32
		for _, p := range parts {
			u = append(u, p...)
		}
		return u
	}
	t.none = classes.id(union(anyPeer))
	build := func(cs []cidrRule, lowest netip.Addr) ranges {
		starts, members := cutRanges(cs, lowest)
		r := ranges{}
		for i, st := range starts {
			cid := cidrSets.id(members[i])
			cl := classes.id(union(anyPeer, cidrSets.list[cid]))
			if n := len(r.start); n > 0 && r.cidr[n-1] == cid {
				continue // same CIDRs as the range before: merge
			}
			r.start = append(r.start, st)
			r.cidr = append(r.cidr, cid)
			r.class = append(r.class, cl)
		}
		return r
	}
	t.v4 = build(cidr4, netip.IPv4Unspecified())
	t.v6 = build(cidr6, netip.IPv6Unspecified())

	type known struct {
		segment string
		cidr    int32
	}
	memo := map[known]int32{}
	for a, id := range ids {
		rg := &t.v6
		if a.Is4() {
			rg = &t.v4
		}
		k := known{id.segment, rg.cidr[rg.find(a)]}
		cl, ok := memo[k]
		if !ok {
			cl = classes.id(union(anyPeer, bySeg[id.segment], byNS[id.namespace], cidrSets.list[k.cidr]))
			memo[k] = cl
		}
		id.class[d-1] = cl
		ids[a] = id
	}

	// FQDN peers are not part of the classes: a Conn adds the matchers of
	// its destination's names to its class's (see fqdn.go).
	fp := collectFQDN(rules)
	t.fqdn = newFQDNTable(fp)

	// Per port: the matcher of every class, shared among equal rule sets.
	onPort := map[uint16][]int32{}
	for i, r := range rules {
		for _, p := range r.ports {
			onPort[p.port] = append(onPort[p.port], int32(i))
		}
	}
	state := make([]portState, len(rules)) // per rule on the current port
	for port, list := range onPort {
		clear(state)
		for _, ri := range list {
			for _, p := range rules[ri].ports {
				if p.port == port {
					state[ri] = rules[ri].judge(p.kind)
				}
			}
		}
		byClass := make([]*matcher, len(classes.list))
		shared := map[string]*matcher{}
		for c, set := range classes.list {
			var cand []int32
			for _, ri := range set {
				if state[ri] != stateAbsent {
					cand = append(cand, ri)
				}
			}
			if len(cand) == 0 {
				continue
			}
			k := setKey(cand)
			m, ok := shared[k]
			if !ok {
				m = newMatcher(t.names, rules, cand, state)
				shared[k] = m
			}
			byClass[c] = m
		}
		t.ports[port] = byClass
		if fp == nil {
			continue
		}
		byPat := make([]*matcher, len(fp.closure))
		for id, set := range fp.closure {
			var cand []int32
			for _, ri := range set {
				if state[ri] != stateAbsent {
					cand = append(cand, ri)
				}
			}
			if len(cand) == 0 {
				continue
			}
			k := setKey(cand)
			m, ok := shared[k]
			if !ok {
				m = newMatcher(t.names, rules, cand, state)
				shared[k] = m
			}
			byPat[id] = m
		}
		t.fqdn.ports[port] = byPat
	}
	return t
}

// newMatcher builds the matcher of the candidate rules cand (sorted).
func newMatcher(names []string, rules []*rule, cand []int32, state []portState) *matcher {
	m := &matcher{names: names, first: cand[0], open: -1}
	var gen l7Builder
	for _, ri := range cand {
		switch state[ri] {
		case stateOpen:
			if m.open < 0 {
				m.open = ri
			}
			continue
		case stateL7:
			for _, lr := range rules[ri].l7 {
				gen.add(lr, ri)
			}
			continue
		}
		if m.verbs == nil {
			m.verbs = map[string]verbRule{}
		}
		for _, c := range rules[ri].cmds {
			e, ok := m.verbs[c.verb]
			if !ok {
				e.any = -1
			}
			if c.sub == "" {
				if e.any < 0 {
					e.any = ri
				}
			} else {
				if e.subs == nil {
					e.subs = map[string]int32{}
				}
				if _, ok := e.subs[c.sub]; !ok {
					e.subs[c.sub] = ri
				}
			}
			m.verbs[c.verb] = e
		}
	}
	m.l7 = gen.build()
	return m
}

// cutRanges cuts an address family (starting at lowest) at the boundaries of
// the given CIDRs. It returns the start of every range and, per range, the
// rules whose CIDRs contain it.
func cutRanges(cs []cidrRule, lowest netip.Addr) ([]netip.Addr, [][]int32) {
	starts := []netip.Addr{lowest}
	for _, c := range cs {
		starts = append(starts, c.pfx.Addr())
		if end := lastAddr(c.pfx).Next(); end.IsValid() {
			starts = append(starts, end)
		}
	}
	slices.SortFunc(starts, netip.Addr.Compare)
	starts = slices.Compact(starts)
	members := make([][]int32, len(starts))
	for _, c := range cs {
		i0, _ := slices.BinarySearchFunc(starts, c.pfx.Addr(), netip.Addr.Compare)
		i1 := len(starts)
		if end := lastAddr(c.pfx).Next(); end.IsValid() {
			i1, _ = slices.BinarySearchFunc(starts, end, netip.Addr.Compare)
		}
		for i := i0; i < i1; i++ {
			members[i] = append(members[i], c.rule)
		}
	}
	return starts, members
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 1 << (7 - i%8)
		}
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom16(b)
}
