package memcached

import (
	"encoding/binary"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// DenyStatus is the status of a binary deny response: 0x0020,
// PROTOCOL_BINARY_RESPONSE_AUTH_ERROR in memcached's protocol_binary.h.
// memcached itself answers with it whatever it refuses to do for the
// client: a command before SASL authentication, flush when flush_all is
// disabled (-F). 0x0024 (EACCESS, "No access") exists only in Couchbase's
// extension of the protocol; memcached and libmemcached do not know it.
const DenyStatus = 0x0020

// denyText is the start of every text deny reply, and the body of a
// binary one.
const denyText = "access denied"

// Bounds of the texts Deny copies into its reply, in bytes.
const (
	maxDenyReason = 128
	maxDenyReply  = headerLen + len("SERVER_ERROR ") + len(denyText) + len(" ()\r\n") + maxDenyReason
)

// Deny appends to dst the reply that stands in for a denied request's:
//
//   - text and meta commands: SERVER_ERROR access denied (reason)\r\n,
//     the line memcached uses for what it will not do, after which the
//     connection stays usable. A text command sent with noreply (and quit)
//     gets nothing: its client reads no reply, and memcached itself
//     suppresses even errors for it. A quiet meta command (q flag) gets
//     the error, as memcached's own errors are never suppressed.
//   - binary requests: a response with the request's opcode and opaque,
//     status DenyStatus and the text "access denied (reason)" as its body
//     (memcached's error responses carry such a text), quiet opcodes
//     included: memcached answers their errors too.
//
// Only printable ASCII of reason is kept, at most 128 bytes, so a text
// reply is always one line. f may be nil (a text reply). Deny allocates
// nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	if f != nil && f.Args&argsBinary != 0 {
		op, opaque := byte(f.Args>>32), uint32(f.Args)
		start := len(dst)
		dst = append(dst, magicResponse, op, 0, 0, 0, 0, byte(DenyStatus>>8), byte(DenyStatus&0xff),
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(dst[start+12:], opaque)
		dst = append(dst, denyText...)
		dst = appendReason(dst, reason)
		binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-headerLen))
		return dst
	}
	if f != nil && f.NoReply && !isMeta(f.Verb) {
		return dst
	}
	dst = append(dst, "SERVER_ERROR "+denyText...)
	dst = appendReason(dst, reason)
	return append(dst, "\r\n"...)
}

// isMeta reports whether verb is a meta command name (mg, ms, md, ma, mn,
// me).
func isMeta(verb []byte) bool {
	return len(verb) == 2 && verb[0] == 'm'
}

// appendReason appends " (reason)" when reason holds a printable
// character: its printable ASCII bytes, at most maxDenyReason of them.
func appendReason(dst []byte, reason string) []byte {
	if !l7.HasPrintable(reason) {
		return dst
	}
	dst = append(dst, " ("...)
	dst = l7.AppendPrintable(dst, reason, maxDenyReason)
	return append(dst, ')')
}
