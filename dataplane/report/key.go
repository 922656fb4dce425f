package report

import (
	"bytes"
	"cmp"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Bounds of the L7 detail of a flow, as in bulkheadv1.Flow. A longer field
// is cut and reported with Truncated at its end, within the bound.
const (
	// MaxResource bounds Flow.resource and each of Flow.more_resources in
	// bytes.
	MaxResource = 256
	// MaxAux bounds Flow.aux in bytes.
	MaxAux = 128
	// MaxMore bounds the entries of Flow.more_resources. When a message
	// names more (or l7.Frame.Overflow is set), the first MaxMore-1 are
	// reported and the last entry is Truncated.
	MaxMore = l7.MaxResources - 1
)

// Truncated marks a reported field that was cut: it ends a verb,
// sub-command, resource or aux cut at its bound (the result stays within
// the bound), and is the last entry of Flow.more_resources when the message
// named more resources than reported.
const Truncated = "..."

// Key identifies one kind of flow within a window, and carries the L7
// detail of the record being added.
//
// The part that identifies the flow is packed and pointer-free, with no
// padding, so that the Aggregator's map hashes it as one block of memory:
// direction, addresses, destination port, protocol, verb and sub-command,
// verdict, mode, reason, rule, Connection, and a 64-bit hash of the L7
// detail (resource, aux, further resources) that Add computes with the
// Aggregator's seed. The detail itself is held as views into the caller's
// buffers (SetL7, SetFrame) and copied only when Add meets a new key.
//
// The zero Key is usable. Fill it with SetConn (or SetAddrs and the exported
// fields), SetVerb or SetFrame, and SetDecision (or use AddDecision); copy
// it freely. Keys are not safe for concurrent modification.
type Key struct {
	packed

	// The L7 detail of the next record: views set by SetL7, cleared by
	// SetVerb, each already cut to its bound.
	res, aux []byte
	more     [MaxMore][]byte
	nMore    uint8
	cut      uint32 // cutRes, cutAux, cutMore0<<i for more[i], cutList

	// The DNS name of the destination (SetDstName): per connection, not
	// cleared by SetVerb. name[:nameLen] is used.
	name    [bulkheadv1.MaxDstName]byte
	nameLen uint8
}

// packed is the map key: pointer-free, no padding.
type packed struct {
	src  [16]byte // IPv4 as IPv4-mapped IPv6
	dst  [16]byte
	verb [l7.MaxVerb]byte // upper case; verbLen bytes used, the rest zero
	sub  [l7.MaxVerb]byte
	l7h  [8]byte // hash of the L7 detail; zero when there is none

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

const (
	cutRes   = 1 << 0
	cutAux   = 1 << 1
	cutList  = 1 << 2 // more resources than MaxMore
	cutMore0 = 1 << 3 // more[i] was cut: cutMore0 << i
)

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
// touch Proto, the verb, the L7 detail, the decision or Connection.
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

// SetVerb starts a new record: it sets the verb and sub-command,
// upper-casing ASCII letters, and clears the L7 detail (call SetL7 after
// it, or use SetFrame). A field longer than l7.MaxVerb bytes is cut and
// reported ending with Truncated; SetVerb then returns false. It allocates
// nothing.
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
	k.clearL7()
	return k.long == 0
}

func (k *Key) clearL7() {
	clear(k.more[:k.nMore])
	k.res, k.aux, k.nMore, k.cut = nil, nil, 0, 0
	k.l7h = [8]byte{}
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

// SetL7 sets the L7 detail of the record: the message's first resource,
// its aux field and its further resources. The caller decides what may be
// reported: the proxy never passes Redis keys, which may hold personal
// data. The slices are kept as views (more is not kept, its elements are)
// and must stay valid and unchanged until the Add or AddDecision of the
// record returns; Add copies them only for a key new in the window. SetVerb
// clears them.
//
// Fields over their bound (MaxResource, MaxAux, MaxMore entries) are cut
// and reported with Truncated; SetL7 then returns false. Records whose
// detail differs are distinct flows (up to a 64-bit hash collision, in
// which case one record's detail stands for both). It allocates nothing.
func (k *Key) SetL7(resource, aux []byte, more [][]byte) (ok bool) {
	return k.setL7(resource, aux, more, false)
}

// SetFrame starts a new record from a request frame: SetVerb(f.Verb, f.Sub)
// and, when reportResources, SetL7(f.Resource, f.Aux, f.More[:f.NMore]),
// with f.Overflow marked as a cut list. Pass reportResources false for
// protocols whose resources must not leave the node (Redis keys). It
// returns false when a field was cut, and allocates nothing. The views
// follow SetL7's rules: f's buffers must not change before the Add.
func (k *Key) SetFrame(f *l7.Frame, reportResources bool) (ok bool) {
	ok = k.SetVerb(f.Verb, f.Sub)
	if reportResources {
		n := min(max(f.NMore, 0), len(f.More))
		ok = k.setL7(f.Resource, f.Aux, f.More[:n], f.Overflow) && ok
	}
	return ok
}

func (k *Key) setL7(resource, aux []byte, more [][]byte, overflow bool) bool {
	k.clearL7()
	k.res = cutBytes(resource, MaxResource, &k.cut, cutRes)
	k.aux = cutBytes(aux, MaxAux, &k.cut, cutAux)
	n := min(len(more), MaxMore)
	if len(more) > MaxMore || overflow {
		k.cut |= cutList
	}
	for i, m := range more[:n] {
		k.more[i] = cutBytes(m, MaxResource, &k.cut, cutMore0<<i)
	}
	k.nMore = uint8(n)
	return k.cut == 0
}

func cutBytes(b []byte, n int, cut *uint32, flag uint32) []byte {
	if len(b) > n {
		*cut |= flag
		return b[:n]
	}
	return b
}

// hasL7 reports whether the record carries L7 detail or a destination
// name.
func (k *Key) hasL7() bool {
	return len(k.res) > 0 || len(k.aux) > 0 || k.nMore > 0 || k.cut != 0 || k.nameLen > 0
}

// SetDstName sets the DNS name the destination address was resolved from
// (Flow.dst_name), for every record of the connection that follows: SetVerb
// and SetFrame keep it; "" clears it. Call it once per connection, not per
// message. The name is copied into the Key's own fixed buffer, lower-cased
// (ASCII) and without a final dot; a name that is then not valid
// (bulkheadv1.ValidDstName: over MaxDstName bytes, a bad label) is not
// kept, the name is cleared and SetDstName returns false. Records that
// differ only by their name are distinct flows (the name is part of the
// key's L7 hash). It allocates nothing.
func (k *Key) SetDstName(name string) (ok bool) {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	k.nameLen = 0
	if name == "" {
		return true
	}
	if len(name) > len(k.name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k.name[i] = c
	}
	if !bulkheadv1.ValidDstName(k.name[:len(name)]) {
		return false
	}
	k.nameLen = uint8(len(name))
	return true
}

// DstName returns the destination's DNS name as it will be reported, ""
// when none.
func (k *Key) DstName() string { return string(k.name[:k.nameLen]) }

// Verb returns the verb as it will be reported: valid UTF-8, at most
// l7.MaxVerb bytes, ending with Truncated when it was cut.
func (k *Key) Verb() string { return k.verbString() }

// Sub returns the sub-command as it will be reported.
func (k *Key) Sub() string { return k.subString() }

func (k *packed) verbString() string {
	return field(k.verb[:k.verbLen], k.long&longVerb != 0, l7.MaxVerb)
}

func (k *packed) subString() string {
	return field(k.sub[:k.subLen], k.long&longSub != 0, l7.MaxVerb)
}

// field is the reported form of b: valid UTF-8 (invalid bytes become
// U+FFFD), at most limit bytes; when b was cut (long) or the form is
// longer, it is cut at a character boundary and ends with Truncated.
func field(b []byte, long bool, limit int) string {
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if !long && len(s) <= limit {
		return s
	}
	n := min(len(s), limit-len(Truncated))
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Truncated
}

// SetDecision sets the verdict, the reason and the rule (its id from
// Aggregator.Intern(d.Rule), 0 when d.Rule is "").
func (k *Key) SetDecision(d enforce.Decision, rule uint16) {
	k.Verdict = d.Verdict
	k.Reason = d.Reason
	k.Rule = rule
}

// compareKeys orders keys for deterministic reports; keys that differ only
// in their L7 hash compare equal (the caller orders them by their detail).
func compareKeys(a, b *packed) int {
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
