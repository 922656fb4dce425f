package dns

import (
	"bytes"

	"golang.org/x/net/dns/dnsmessage"
)

// The record sections of a response that is not part of a zone transfer
// are checked straight from the bytes (fastRecords) rather than through
// dnsmessage, whose AnswerHeader and AdditionalHeader copy each owner
// name into a 255-byte array: the same acceptance, the same errors and
// the same findings, with dnsmessage's rules for names (Name.unpack for
// answers and additionals, skipName for authorities). FuzzFastReply checks
// the two against each other.

// nameMax is dnsmessage's bound on an unpacked name, with a dot after each
// label (nonEncodedNameMax): a name reaching it is refused.
const nameMax = 254

// maxPtrs is how many compression pointers dnsmessage follows in a name.
const maxPtrs = 10

// unpackName checks the name at off as dnsmessage's Name.unpack does and
// returns the offset after it and whether it is the root; ok is false
// where unpack fails.
func unpackName(msg []byte, off int) (next int, root, ok bool) {
	cur, next, ptrs, n := off, -1, 0, 0
	for {
		if cur >= len(msg) {
			return 0, false, false
		}
		c := int(msg[cur])
		cur++
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				if next < 0 {
					next = cur
				}
				return next, n == 0, true
			}
			end := cur + c
			if end > len(msg) || bytes.IndexByte(msg[cur:end], '.') >= 0 || n+c >= nameMax {
				return 0, false, false
			}
			n += c + 1
			cur = end
		case 0xC0:
			if cur >= len(msg) {
				return 0, false, false
			}
			c1 := int(msg[cur])
			cur++
			if next < 0 {
				next = cur
			}
			if ptrs++; ptrs > maxPtrs {
				return 0, false, false
			}
			cur = (c^0xC0)<<8 | c1
		default:
			return 0, false, false
		}
	}
}

// skipName steps over the name at off as dnsmessage's skipName does
// (pointers are not followed); ok is false where it fails.
func skipName(msg []byte, off int) (next int, ok bool) {
	for {
		if off >= len(msg) {
			return 0, false
		}
		c := int(msg[off])
		off++
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off, true
			}
			off += c
			if off > len(msg) {
				return 0, false
			}
		case 0xC0:
			return off + 1, true
		default:
			return 0, false
		}
	}
}

// recordHeaderLen is the fixed part of a resource record after its name:
// type, class, TTL and data length.
const recordHeaderLen = 10

// fastRecords checks the answer, authority and additional sections of msg
// from off, the end of the question section, as parseResponse does through
// dnsmessage for a response outside a zone transfer (AnswerHeader and
// SkipAnswer for each answer, SkipAllAuthorities, then additionals). It
// returns whether an answer is a CNAME and the extended RCODE bits of the
// OPT record, or the error parseResponse would.
func fastRecords(msg []byte, off int) (cnames bool, ext uint8, err error) {
	for range be16(msg[6:]) {
		next, _, ok := unpackName(msg, off)
		if !ok || next+recordHeaderLen > len(msg) {
			return false, 0, errRecord
		}
		cnames = cnames || be16(msg[next:]) == 5 // CNAME
		off = next + recordHeaderLen + int(be16(msg[next+8:]))
		if off > len(msg) {
			return false, 0, errRecord
		}
	}
	for range be16(msg[8:]) {
		next, ok := skipName(msg, off)
		if !ok || next+recordHeaderLen > len(msg) {
			return false, 0, errRecord
		}
		off = next + recordHeaderLen + int(be16(msg[next+8:]))
		if off > len(msg) {
			return false, 0, errRecord
		}
	}
	edns := false
	for range be16(msg[10:]) {
		next, root, ok := unpackName(msg, off)
		if !ok || next+recordHeaderLen > len(msg) {
			return false, 0, errRecord
		}
		if be16(msg[next:]) == 41 { // OPT
			if edns || !root {
				return false, 0, errOPT
			}
			edns = true
			ext = msg[next+4] // the TTL's top byte
		}
		off = next + recordHeaderLen + int(be16(msg[next+8:]))
		if off > len(msg) {
			return false, 0, errRecord
		}
	}
	return cnames, ext, nil
}

// nameInto writes the name at off to n as dnsmessage's Name.unpack does
// (each label followed by a dot; "." for the root), for a name that
// unpackName accepted; false where it would fail.
func nameInto(n *dnsmessage.Name, msg []byte, off int) bool {
	cur, ptrs, l := off, 0, 0
	for {
		if cur >= len(msg) {
			return false
		}
		c := int(msg[cur])
		cur++
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				if l == 0 {
					n.Data[0], l = '.', 1
				}
				n.Length = uint8(l)
				return true
			}
			end := cur + c
			if end > len(msg) || l+c >= nameMax {
				return false
			}
			l += copy(n.Data[l:], msg[cur:end])
			n.Data[l] = '.'
			l++
			cur = end
		case 0xC0:
			if cur >= len(msg) {
				return false
			}
			if ptrs++; ptrs > maxPtrs {
				return false
			}
			cur = (c^0xC0)<<8 | int(msg[cur])
		default:
			return false
		}
	}
}
