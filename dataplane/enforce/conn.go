package enforce

import (
	"encoding/binary"
	"net/netip"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Conn is the view of a Policy for one connection: the peer, the port and
// the matcher of the rules that admit this peer on this port. It is a small
// value; keep one per connection (it is not safe for concurrent use) and
// call Refresh with the engine's current Policy before each batch of
// messages.
//
// The zero Conn, and a Conn derived from a nil *Policy, deny everything
// (fail closed).
type Conn struct {
	policy    *Policy
	m         *matcher // nil: no rule admits the peer on this port
	peer      netip.Addr
	segment   string // the peer's segment key, "" when unknown
	namespace string // the peer's namespace, "" when unknown
	port      uint16
	dir       Direction

	// FQDN peers (OutboundNamed): the names the destination stood for in
	// the Names table when the connection opened.
	nnames uint8
	names  [MaxNamesPerAddr]string

	// The matchers of the rules admitting the peer, derived once (conn,
	// matchNames) so that Message does not gather them per message: m
	// when not nil, then the distinct matchers of the rules whose FQDN
	// peers the names match (usually none). open is the lowest of their
	// ranks of rules without an L7 matcher (noRank: none), parsed whether
	// any of them has one.
	nms    uint8
	parsed bool
	open   int32
	ms     [1 + MaxNamesPerAddr]*matcher
}

// Inbound derives the Conn of a connection from src to the proxied
// workload's port, judged by the ingress rules. An address not in the
// identity table can only match CIDR peers and rules with no peers. It
// allocates nothing.
func (p *Policy) Inbound(src netip.Addr, port uint16) Conn {
	return p.conn(Ingress, src, port)
}

// Outbound derives the Conn of a connection from the proxied workload to
// dst:port, judged by the egress rules under the same mode. FQDN peers
// match nothing: use OutboundNamed.
func (p *Policy) Outbound(dst netip.Addr, port uint16) Conn {
	return p.conn(Egress, dst, port)
}

// OutboundNamed is Outbound for a proxy that learns names: an egress rule
// with an FQDN peer also admits dst when one of the names dst stands for in
// names (unexpired, as the connection opens) matches the peer. The Conn
// keeps those names for its life: a Refresh to a new Policy matches them
// against its FQDN peers again, even after they expired in the table, so a
// policy change does not cut open connections. A nil names is Outbound. It
// allocates nothing.
func (p *Policy) OutboundNamed(dst netip.Addr, port uint16, names *Names) Conn {
	c := p.conn(Egress, dst, port)
	if c.policy != nil && names != nil {
		c.nnames = uint8(names.Lookup(c.peer.Unmap().WithZone(""), c.names[:]))
		c.matchNames()
	}
	return c
}

// matchNames adds to c.ms the matchers of c.policy's FQDN peers on
// c.port that c.names match; c.ms holds c.m only (derive ran).
func (c *Conn) matchNames() {
	t := c.policy.dirs[Egress-1].fqdn
	if t == nil || c.nnames == 0 {
		return
	}
	byPat := t.ports[c.port]
	if byPat == nil {
		return
	}
	defer c.derive()
next:
	for _, name := range c.names[:c.nnames] {
		id := t.pattern(name)
		if id < 0 || byPat[id] == nil {
			continue
		}
		m := byPat[id]
		if m == c.m {
			continue // the class admits the same rules already
		}
		for _, have := range c.ms[:c.nms] {
			if have == m {
				continue next
			}
		}
		c.ms[c.nms] = m
		c.nms++
	}
}

// derive sets c.open and c.parsed from c.ms[:c.nms].
func (c *Conn) derive() {
	c.open, c.parsed = noRank, false
	for _, m := range c.ms[:c.nms] {
		if m.open >= 0 && m.open < c.open {
			c.open = m.open
		}
		c.parsed = c.parsed || m.verbs != nil || m.l7 != nil
	}
}

func (p *Policy) conn(d Direction, peer netip.Addr, port uint16) Conn {
	c := Conn{policy: p, peer: peer, port: port, dir: d}
	if p == nil || (d != Ingress && d != Egress) {
		c.policy = nil
		return c
	}
	peer = peer.Unmap().WithZone("")
	t := &p.dirs[d-1]
	var class int32
	if id, ok := p.ids[peer]; ok {
		c.segment, c.namespace = id.segment, id.namespace
		class = id.class[d-1]
	} else {
		class = t.class(peer)
	}
	if byClass, ok := t.ports[port]; ok {
		c.m = byClass[class]
	}
	if c.m != nil {
		c.ms[0], c.nms = c.m, 1
	}
	c.derive()
	return c
}

// Refresh re-derives c from p when p is not the Policy c was derived from;
// when it is, Refresh is one pointer comparison. A nil p leaves c as it is:
// the proxy never stores a nil Policy after the first one, and open
// connections keep the last Policy they saw.
func (c *Conn) Refresh(p *Policy) {
	if p == nil || p == c.policy || c.dir == 0 {
		return
	}
	names, n := c.names, c.nnames
	*c = p.conn(c.dir, c.peer, c.port)
	if n > 0 && c.policy != nil {
		c.names, c.nnames = names, n
		c.matchNames()
	}
}

// Connect judges the connection itself (L4): allowed when some rule admits
// the peer on the port, even if that rule's matcher may still deny
// messages. Otherwise, with Reason NoRule: Deny and Enforced in protect mode
// (refuse the connection), Violation in monitor mode, Allow in discover mode.
// It allocates nothing.
func (c *Conn) Connect() Decision {
	if c.policy == nil {
		return Protect.judge(NoRule)
	}
	var m *matcher
	for _, f := range c.ms[:c.nms] {
		if m == nil || f.first < m.first {
			m = f
		}
	}
	if m == nil {
		return c.policy.mode.judge(NoRule)
	}
	return Decision{Verdict: Allow, Rule: m.names[m.first]}
}

// Message judges one request frame (L7); f must not be nil. Replies
// (f.Dir != DirRequest) are not judged: they get Allow with no rule. A
// request is allowed by the first rule, in name order, that admits the peer
// on the port and either has no matcher for the port's protocol or whose
// matcher allows it:
//
//   - Redis (Rule.redis): command names and sub-commands compare
//     case-insensitively; "CONFIG" allows every CONFIG sub-command,
//     "CONFIG|GET" only CONFIG GET.
//   - Other parsed protocols (Rule.l7): each resource the message names
//     (Resource, then More[:NMore]; a message naming none counts as one
//     resource that only L7Rules without resource patterns cover) must be
//     covered by an L7Rule of the admitting rules whose verbs list the
//     message's verb (case-insensitively; "VERB|SUB" as for Redis) or are
//     empty, whose aux patterns match Aux or are empty, and whose resource
//     patterns match the resource or are empty. With Overflow, only an
//     L7Rule without resource patterns covers the message. The rule
//     reported is the lowest that covers the first resource.
//
// When no rule allows it, the mode decides as for Connect, with Reason
// NoRule (no rule admits the peer on the port) or L7 (rules do, but none
// allows this message). It allocates nothing: a few probes of hash tables
// built at compile time (the value hashed and, for fold_case patterns,
// folded on the fly), bounded by the message's resources and the patterns'
// distinct lengths, never a scan over rules.
func (c *Conn) Message(f *l7.Frame) Decision {
	if c.policy == nil {
		return Protect.judge(NoRule)
	}
	if f.Dir != l7.DirRequest {
		return Decision{Verdict: Allow}
	}
	// The class's matcher and those of FQDN peers (usually none): the
	// rules admitting the peer are their union.
	ms := c.ms[:c.nms]
	if len(ms) == 0 {
		return c.policy.mode.judge(NoRule)
	}
	best := c.open
	if c.parsed {
		var vb [l7.MaxVerb]byte
		verb := upperVerb(&vb, f.Verb)
		var sub []byte
		if len(f.Sub) > 0 {
			var sb [l7.MaxVerb]byte
			sub = upperVerb(&sb, f.Sub)
		}
		var xsBuf [1 + MaxNamesPerAddr]*l7Index
		xs := xsBuf[:0]
		for _, m := range ms {
			if m.verbs != nil && verb != nil {
				if e, ok := m.verbs[string(verb)]; ok {
					r := e.any
					if e.subs != nil && sub != nil {
						if s, ok := e.subs[string(sub)]; ok && (r < 0 || s < r) {
							r = s
						}
					}
					if r >= 0 && r < best {
						best = r
					}
				}
			}
			if m.l7 != nil {
				xs = append(xs, m.l7)
			}
		}
		if len(xs) > 0 {
			best = judgeL7(xs, f, verb, sub, best)
		}
	}
	if best < noRank {
		return Decision{Verdict: Allow, Rule: ms[0].names[best]}
	}
	return c.policy.mode.judge(L7)
}

// Judge is the decision, under the connection's mode, for something the
// proxy rejects on its own (Reason Malformed or Limit): Deny and Enforced in
// protect mode, Violation in monitor mode, Allow in discover mode. With no
// Policy it denies.
func (c *Conn) Judge(r Reason) Decision {
	if c.policy == nil {
		return Protect.judge(r)
	}
	return c.policy.mode.judge(r)
}

// Policy is the Policy c was derived from (nil for the zero Conn).
func (c *Conn) Policy() *Policy { return c.policy }

// Mode is the mode c is judged under (0 without a Policy).
func (c *Conn) Mode() Mode {
	if c.policy == nil {
		return 0
	}
	return c.policy.mode
}

// Direction is Ingress (from Inbound) or Egress (from Outbound).
func (c *Conn) Direction() Direction { return c.dir }

// Peer is the address of the other end, as given to Inbound or Outbound.
func (c *Conn) Peer() netip.Addr { return c.peer }

// Port is the destination port.
func (c *Conn) Port() uint16 { return c.port }

// PeerSegment is the peer's segment key ("ns/segment") and namespace from
// the identity table, or "" when the peer is not a known workload.
func (c *Conn) PeerSegment() (segment, namespace string) { return c.segment, c.namespace }

// upperVerb writes v upper-cased (ASCII) to dst and returns that; nil when
// v is empty or longer than l7.MaxVerb. A verb of up to 8 bytes (most)
// is upper-cased as one word.
func upperVerb(dst *[l7.MaxVerb]byte, v []byte) []byte {
	n := len(v)
	switch {
	case n == 0 || n > l7.MaxVerb:
		return nil
	case n <= 8:
		binary.LittleEndian.PutUint64(dst[:8], upper8(keyWord(v)))
		return dst[:n]
	}
	return dst[:upperInto(dst[:], v)]
}
