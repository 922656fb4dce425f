package report

import (
	"bytes"
	"cmp"
	"net/netip"
	"strings"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Key identifies one kind of flow within a window. It is pointer-free and
// has no padding, so it hashes as one block of memory; the zero Key is
// usable. Fill it with SetConn (or SetAddrs and the exported fields),
// SetVerb and SetDecision; copy it freely. Keys are not safe for concurrent
// modification.
type Key struct {
	src  [16]byte // IPv4 as IPv4-mapped IPv6
	dst  [16]byte
	verb [l7.MaxVerb]byte // upper case; verbLen bytes used, the rest zero
	sub  [l7.MaxVerb]byte

	// DstPort is the destination port.
	DstPort uint16
	// Proto is the protocol name's id from Aggregator.Intern ("tcp",
	// "redis"); 0 is "".
	Proto uint16
	// Rule is the allowing rule's name's id from Aggregator.Intern; 0 when
	// no rule allowed it. SetDecision and AddDecision set it.
	Rule uint16

	Dir     enforce.Direction
	Mode    enforce.Mode
	Verdict enforce.Verdict
	Reason  enforce.Reason
	// Connection is true for a connection (L4) record, false for a
	// message (L7) record.
	Connection bool

	verbLen, subLen uint8
	long            uint8 // longVerb, longSub: the field was cut at l7.MaxVerb bytes
}

const (
	longVerb = 1 << iota
	longSub
)

// Truncated is appended to a verb or sub-command cut at l7.MaxVerb bytes
// when it is reported, so that truncation is never silent.
const Truncated = "..."

// SetAddrs sets the source and destination addresses. IPv4 and IPv4-mapped
// IPv6 addresses are the same key and are reported as IPv4.
func (k *Key) SetAddrs(src, dst netip.Addr) {
	k.src = src.As16()
	k.dst = dst.As16()
}

// Src returns the source address (IPv4 unmapped).
func (k *Key) Src() netip.Addr { return netip.AddrFrom16(k.src).Unmap() }

// Dst returns the destination address (IPv4 unmapped).
func (k *Key) Dst() netip.Addr { return netip.AddrFrom16(k.dst).Unmap() }

// SetConn sets the per-connection fields from an enforce.Conn and the
// address of the proxied workload (local): direction, addresses (peer → local
// for Ingress, local → peer for Egress), destination port and mode. Call it
// again after Conn.Refresh, whose Policy may have another mode. It does not
// touch Proto, the verb, the decision or Connection.
func (k *Key) SetConn(c *enforce.Conn, local netip.Addr) {
	k.Dir = c.Direction()
	if k.Dir == enforce.Egress {
		k.SetAddrs(local, c.Peer())
	} else {
		k.SetAddrs(c.Peer(), local)
	}
	k.DstPort = c.Port()
	k.Mode = c.Mode()
}

// SetVerb sets the verb and sub-command, upper-casing ASCII letters. A field
// longer than l7.MaxVerb bytes is cut there and reported with Truncated
// appended; SetVerb then returns false. It allocates nothing.
func (k *Key) SetVerb(verb, sub []byte) (ok bool) {
	k.long = 0
	k.verbLen = setField(&k.verb, verb)
	if len(verb) > l7.MaxVerb {
		k.long |= longVerb
	}
	k.subLen = setField(&k.sub, sub)
	if len(sub) > l7.MaxVerb {
		k.long |= longSub
	}
	return k.long == 0
}

func setField(dst *[l7.MaxVerb]byte, src []byte) uint8 {
	n := min(len(src), l7.MaxVerb)
	for i, c := range src[:n] {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst[i] = c
	}
	clear(dst[n:])
	return uint8(n)
}

// Verb returns the verb as it will be reported (valid UTF-8; Truncated
// appended when it was cut).
func (k *Key) Verb() string { return field(k.verb[:k.verbLen], k.long&longVerb != 0) }

// Sub returns the sub-command as it will be reported.
func (k *Key) Sub() string { return field(k.sub[:k.subLen], k.long&longSub != 0) }

func field(b []byte, long bool) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if long {
		s += Truncated
	}
	return s
}

// SetDecision sets the verdict, the reason and the rule (its id from
// Aggregator.Intern(d.Rule), 0 when d.Rule is "").
func (k *Key) SetDecision(d enforce.Decision, rule uint16) {
	k.Verdict = d.Verdict
	k.Reason = d.Reason
	k.Rule = rule
}

// compareKeys orders keys for deterministic reports.
func compareKeys(a, b *Key) int {
	return cmp.Or(
		cmp.Compare(a.Dir, b.Dir),
		bytes.Compare(a.src[:], b.src[:]),
		bytes.Compare(a.dst[:], b.dst[:]),
		cmp.Compare(a.DstPort, b.DstPort),
		cmp.Compare(a.Proto, b.Proto),
		-boolCompare(a.Connection, b.Connection), // connection records first
		bytes.Compare(a.verb[:a.verbLen], b.verb[:b.verbLen]),
		bytes.Compare(a.sub[:a.subLen], b.sub[:b.subLen]),
		cmp.Compare(a.long, b.long),
		cmp.Compare(a.Verdict, b.Verdict),
		cmp.Compare(a.Mode, b.Mode),
		cmp.Compare(a.Reason, b.Reason),
		cmp.Compare(a.Rule, b.Rule),
	)
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
