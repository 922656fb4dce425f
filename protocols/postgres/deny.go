package postgres

import (
	"strconv"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// SQLState is the SQLSTATE of Bulkhead's refusals: 42501,
// insufficient_privilege, the server's own code for a denied privilege.
const SQLState = "42501"

// Bounds of the texts Deny copies into its reply, in bytes.
const (
	maxDenyVerb   = l7.MaxVerb
	maxDenyTable  = 128
	maxDenyReason = 128
)

// tlsAccessDenied is a TLS alert record: fatal (2), access_denied (49).
var tlsAccessDenied = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49}

// Deny appends to dst what the client gets instead of the server's answer
// to the denied request frame f:
//
//   - Query ('Q') and FunctionCall ('F'), whose answer ends with
//     ReadyForQuery: an ErrorResponse (severity ERROR, SQLSTATE 42501,
//     message "bulkhead: <verb> on <table> denied by policy (<reason>)")
//     and a ReadyForQuery carrying the session's transaction status as the
//     server last reported it (f.Args: 'I', 'T' or 'E'; idle if unknown).
//     The server never sees the statement, so its transaction is
//     unchanged and the client's view agrees with it: inside a
//     transaction block the client stays in it.
//   - Parse ('P') and Execute ('E') (NoReply frames): the ErrorResponse
//     only. The client's Sync, which the proxy forwards, brings the
//     server's ReadyForQuery; the parser skips what comes between (see
//     Denied).
//   - SSLRequest and GSSENCRequest: 'N', "not supported"; the client goes
//     on unencrypted or gives up, as its sslmode says.
//   - A TLS ClientHello sent directly: a fatal TLS access_denied alert.
//   - CancelRequest: an ErrorResponse with severity FATAL (the server
//     would just close; a client waiting for that reads this instead).
//
// Only printable ASCII of the verb, the first table and reason is kept,
// each bounded in length. A nil f is answered like a Query. Deny allocates
// nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	if f != nil && f.Args == 0 {
		// Startup-phase frames; typed messages carry the status in Args.
		switch string(f.Verb) {
		case "SSL":
			if f.NoReply {
				return append(dst, tlsAccessDenied...)
			}
			return append(dst, 'N')
		case "GSSENC":
			return append(dst, 'N')
		case "CANCEL":
			return appendError(dst, "FATAL", f, reason)
		}
	}
	dst = appendError(dst, "ERROR", f, reason)
	if f == nil || !f.NoReply {
		status := byte('I')
		if f != nil && (f.Args == 'T' || f.Args == 'E') {
			status = byte(f.Args)
		}
		dst = append(dst, 'Z', 0, 0, 0, 5, status)
	}
	return dst
}

// appendError appends an ErrorResponse: fields S and V (severity), C
// (SQLSTATE), M (message), then the terminating NUL.
func appendError(dst []byte, severity string, f *l7.Frame, reason string) []byte {
	start := len(dst)
	dst = append(dst, 'E', 0, 0, 0, 0)
	dst = append(dst, 'S')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'V')
	dst = append(dst, severity...)
	dst = append(dst, 0, 'C')
	dst = append(dst, SQLState...)
	dst = append(dst, 0, 'M')
	dst = append(dst, "bulkhead: "...)
	switch {
	case f == nil || !l7.HasPrintable(f.Verb):
		dst = append(dst, "statement"...)
	case f.Args == 0 && string(f.Verb) == "CANCEL":
		dst = append(dst, "cancel request"...)
	default:
		dst = l7.AppendPrintable(dst, f.Verb, maxDenyVerb)
		if l7.HasPrintable(f.Sub) {
			dst = append(dst, " ("...)
			dst = l7.AppendPrintable(dst, f.Sub, maxDenyVerb)
			dst = append(dst, ')')
		}
		if l7.HasPrintable(f.Resource) {
			dst = append(dst, " on "...)
			dst = l7.AppendPrintable(dst, f.Resource, maxDenyTable)
			if more := f.NMore; more > 0 || f.Overflow {
				dst = append(dst, " and "...)
				if f.Overflow {
					dst = append(dst, "more"...)
				} else {
					dst = strconv.AppendInt(dst, int64(more), 10)
					dst = append(dst, " more"...)
				}
			}
		}
	}
	dst = append(dst, " denied by policy"...)
	if l7.HasPrintable(reason) {
		dst = append(dst, " ("...)
		dst = l7.AppendPrintable(dst, reason, maxDenyReason)
		dst = append(dst, ')')
	}
	dst = append(dst, 0, 0)
	n := len(dst) - start - 1
	dst[start+1], dst[start+2], dst[start+3], dst[start+4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return dst
}
