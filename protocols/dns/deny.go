package dns

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// Deny reply constants.
const (
	// rcodeRefused is the RCODE of a deny reply (RFC 1035 4.1.1).
	rcodeRefused = 5
	// edeBlocked is the Extended DNS Error info-code "Blocked" (RFC 8914
	// 4.16): the server blocked the query by an administrative policy.
	edeBlocked = 15
	// optionEDE is the EDNS option code of Extended DNS Errors.
	optionEDE = 15
	// denyUDPSize is the UDP payload size the deny's OPT record
	// advertises: the DNS Flag Day 2020 default.
	denyUDPSize = 1232
	// maxDenyReason bounds the reason Deny copies into the EDE text.
	maxDenyReason = 128

	edePrefix = "bulkhead"
	// maxDenyReply bounds a deny reply without the TCP prefix: header,
	// question (255-byte name), OPT record with the EDE option.
	maxDenyReply = headerLen + 255 + 4 + 11 + 4 + 2 + len(edePrefix) + 2 + maxDenyReason
)

// Deny appends to dst the DNS-over-TCP reply that stands in for the
// server's answer to a denied query: DenyDatagram's message preceded by
// its 2-byte length.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	start := len(dst)
	dst = DenyDatagram(append(dst, 0, 0), f, reason)
	n := len(dst) - start - prefixLen
	dst[start], dst[start+1] = byte(n>>8), byte(n)
	return dst
}

// DenyDatagram appends to dst the response to the denied query of f (a
// request frame from Parse or ParseDatagram) as it goes in a UDP datagram:
// the query's ID, QR=1, its opcode, RD and CD copied, RA=1, RCODE REFUSED,
// the question echoed (its name as Frame.Resource holds it: lower case),
// no records — and, when the query carried EDNS, an OPT record (UDP size
// 1232, the query's DO bit) with the Extended DNS Error 15 "Blocked" and
// the text "bulkhead: <reason>" (RFC 8914; printable ASCII of reason,
// at most 128 bytes). A query without EDNS gets a plain REFUSED, never an
// OPT record (RFC 6891 7). The reply fits in 512 bytes.
//
// The ID, flags, type, class and EDNS come from f.Args (QueryOf). A frame
// without them (nil, or made by hand) gets a REFUSED with ID 0, no EDNS,
// and the question rebuilt from Verb (a type name or TYPEn) and Aux (the
// class, IN when empty) when Verb names a type. A Resource that is not a
// valid name is not echoed: the reply then has no question. It allocates
// nothing when dst has room.
func DenyDatagram(dst []byte, f *l7.Frame, reason string) []byte {
	q, echo := denyQuery(f)
	flags := uint16(bitQR) | uint16(q.OpCode&0xF)<<11 | bitRA | rcodeRefused
	if q.RD {
		flags |= bitRD
	}
	if q.CD {
		flags |= bitCD
	}
	qd, ar := 0, 0
	if echo {
		qd = 1
	}
	if q.EDNS {
		ar = 1
	}
	dst = append(dst, byte(q.ID>>8), byte(q.ID), byte(flags>>8), byte(flags),
		0, byte(qd), 0, 0, 0, 0, 0, byte(ar))
	if qd == 1 {
		dst = appendWireName(dst, f.Resource)
		dst = append(dst, byte(q.Type>>8), byte(q.Type), byte(q.Class>>8), byte(q.Class))
	}
	if !q.EDNS {
		return dst
	}
	var do byte
	if q.DO {
		do = 0x80
	}
	text := len(edePrefix)
	if l7.HasPrintable(reason) {
		text += 2 + l7.PrintableLen(reason, maxDenyReason)
	}
	opt := 4 + 2 + text // option code, length; info-code; text
	dst = append(dst,
		0,     // owner: the root
		0, 41, // type OPT
		denyUDPSize>>8, denyUDPSize&0xff, // class: UDP payload size
		0, 0, do, 0, // TTL: extended RCODE, version 0, DO, Z
		byte(opt>>8), byte(opt),
		0, optionEDE, byte((opt-4)>>8), byte(opt-4),
		0, edeBlocked)
	dst = append(dst, edePrefix...)
	if l7.HasPrintable(reason) {
		dst = append(dst, ": "...)
		dst = l7.AppendPrintable(dst, reason, maxDenyReason)
	}
	return dst
}

// denyQuery returns the query a deny answers and whether its question can
// be echoed.
func denyQuery(f *l7.Frame) (q Query, echo bool) {
	if f == nil {
		return Query{}, false
	}
	if q, ok := QueryOf(f); ok {
		return q, validName(f.Resource)
	}
	t, ok := typeOf(f.Verb)
	if !ok {
		return Query{}, false
	}
	c, ok := classOf(f.Aux)
	if !ok {
		return Query{}, false
	}
	return Query{Type: t, Class: c}, validName(f.Resource)
}

// knownTypes lists the types typeName names.
var knownTypes = [...]uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
	21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
	45, 46, 47, 48, 49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 99, 100,
	101, 102, 103, 104, 105, 106, 107, 108, 109, 249, 250, 251, 252, 253, 254, 255, 256, 257, 258,
	259, 260, 261, 32768, 32769}

// typeOf reads a type name (any case) or TYPEn.
func typeOf(verb []byte) (uint16, bool) {
	for _, t := range knownTypes {
		if equalFold(verb, []byte(typeName(t))) {
			return t, true
		}
	}
	return numbered(verb, "TYPE")
}

// classOf reads a class name (any case) or CLASSn; empty is IN.
func classOf(aux []byte) (uint16, bool) {
	if len(aux) == 0 {
		return 1, true
	}
	for _, c := range [...]uint16{1, 3, 4, 254, 255} {
		if equalFold(aux, []byte(className(c))) {
			return c, true
		}
	}
	return numbered(aux, "CLASS")
}

// numbered reads prefix followed by a decimal number below 65536.
func numbered(b []byte, prefix string) (uint16, bool) {
	if len(b) <= len(prefix) || len(b) > len(prefix)+5 || !equalFold(b[:len(prefix)], []byte(prefix)) {
		return 0, false
	}
	v := 0
	for _, c := range b[len(prefix):] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return uint16(v), v <= 0xffff
}

// validName reports whether name (dotted, without the final dot; empty for
// the root) can be written as a wire name: labels of 1 to 63 bytes, 255
// bytes in all.
func validName(name []byte) bool {
	if len(name) == 0 {
		return true
	}
	if len(name)+2 > 255 {
		return false
	}
	label := 0
	for _, c := range name {
		if c == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// appendWireName appends a name validName accepted in wire form.
func appendWireName(dst []byte, name []byte) []byte {
	for len(name) > 0 {
		i := 0
		for i < len(name) && name[i] != '.' {
			i++
		}
		dst = append(dst, byte(i))
		dst = append(dst, name[:i]...)
		if i == len(name) {
			break
		}
		name = name[i+1:]
	}
	return append(dst, 0)
}
