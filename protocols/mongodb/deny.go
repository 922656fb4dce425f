package mongodb

import (
	"encoding/binary"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Bounds of the texts Deny copies into its reply, in bytes.
const (
	maxDenyName   = l7.MaxVerb
	maxDenyReason = 128

	// DenyCode is the error code of the deny reply: 13, Unauthorized, what
	// mongod answers a command the user may not run.
	DenyCode = 13

	maxDenyReply = headerLen + replyPrefix + 4 + 1 + 256 + maxDenyName + maxDenyReason
)

// Deny appends to dst the reply that stands in for a denied request's
// (f is the request frame; its Args carry the request id, see RequestID):
//
//	OP_MSG, responseTo = the request's id, flagBits 0, one body section:
//	{ok: 0.0, errmsg: "bulkhead: <cmd> denied by policy (<reason>)",
//	 code: 13, codeName: "Unauthorized"}
//
// For an OP_QUERY request (Args has ArgsOpQuery) the same document comes in
// an OP_REPLY. Drivers surface it as a command error with code 13 and keep
// the connection. A request flagged moreToCome (f.NoReply) gets no reply:
// Deny appends nothing. Only printable ASCII of the command name and of
// reason is kept, each bounded. Deny allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	var verb []byte
	var args int
	if f != nil {
		if f.NoReply {
			return dst
		}
		verb, args = f.Verb, f.Args
	}
	start := len(dst)
	opQuery := args&ArgsOpQuery != 0
	// Header: messageLength patched below, requestID 0, responseTo.
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(args))
	if opQuery {
		dst = binary.LittleEndian.AppendUint32(dst, OpReply)
		// responseFlags, cursorID, startingFrom, numberReturned = 1.
		dst = binary.LittleEndian.AppendUint32(dst, 0)
		dst = binary.LittleEndian.AppendUint64(dst, 0)
		dst = binary.LittleEndian.AppendUint32(dst, 0)
		dst = binary.LittleEndian.AppendUint32(dst, 1)
	} else {
		dst = binary.LittleEndian.AppendUint32(dst, OpMsg)
		dst = binary.LittleEndian.AppendUint32(dst, 0) // flagBits
		dst = append(dst, 0)                           // kind 0
	}
	doc := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // document size
	dst = append(dst, typeDouble)
	dst = append(dst, "ok\x00"...)
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	dst = append(dst, typeString)
	dst = append(dst, "errmsg\x00"...)
	str := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // string size
	dst = append(dst, "bulkhead: "...)
	if l7.HasPrintable(verb) {
		dst = l7.AppendPrintable(dst, verb, maxDenyName)
	} else {
		dst = append(dst, "request"...)
	}
	dst = append(dst, " denied by policy"...)
	if l7.HasPrintable(reason) {
		dst = append(dst, " ("...)
		dst = l7.AppendPrintable(dst, reason, maxDenyReason)
		dst = append(dst, ')')
	}
	dst = append(dst, 0)
	binary.LittleEndian.PutUint32(dst[str:], uint32(len(dst)-str-4))
	dst = append(dst, typeInt32)
	dst = append(dst, "code\x00"...)
	dst = binary.LittleEndian.AppendUint32(dst, DenyCode)
	dst = append(dst, typeString)
	dst = append(dst, "codeName\x00"...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len("Unauthorized")+1))
	dst = append(dst, "Unauthorized\x00"...)
	dst = append(dst, 0)
	binary.LittleEndian.PutUint32(dst[doc:], uint32(len(dst)-doc))
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}
