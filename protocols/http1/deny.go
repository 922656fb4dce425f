package http1

import (
	"strconv"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// maxDenyReason bounds the reason Deny copies into its reply, in bytes.
const maxDenyReason = 128

// Deny texts.
const (
	denyHead = "HTTP/1.1 403 Forbidden\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: "
	denyTail   = "\r\nConnection: keep-alive\r\n\r\n"
	denyBody   = "bulkhead: request denied by policy"
	maxDenyLen = len(denyHead) + 3 + len(denyTail) + len(denyBody) + len(" ()\n") + maxDenyReason
)

// Deny appends to dst the response that stands in for a denied request's:
//
//	HTTP/1.1 403 Forbidden\r\n
//	Content-Type: text/plain\r\n
//	Content-Length: 52\r\n
//	Connection: keep-alive\r\n
//	\r\n
//	bulkhead: request denied by policy (l7_not_allowed)\n
//
// The connection stays usable: the proxy drops the denied request's body
// (the OpSkip bytes after its frame). A denied HEAD request gets the head
// alone, as HTTP requires (a body would be read as the next response).
// Only printable ASCII of reason is kept, at most 128 bytes; without one
// the parenthesis is left out. Deny allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	r := 0 // bytes of reason kept
	for i := 0; i < len(reason) && r < maxDenyReason; i++ {
		if c := reason[i]; c >= ' ' && c < 0x7f {
			r++
		}
	}
	if !l7.HasPrintable(reason) {
		r = 0
	}
	n := len(denyBody) + 1 // "\n"
	if r > 0 {
		n += len(" ()") + r
	}
	dst = append(dst, denyHead...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, denyTail...)
	if f != nil && string(f.Verb) == "HEAD" {
		return dst
	}
	dst = append(dst, denyBody...)
	if r > 0 {
		dst = append(dst, " ("...)
		for i, k := 0, 0; i < len(reason) && k < r; i++ {
			if c := reason[i]; c >= ' ' && c < 0x7f {
				dst = append(dst, c)
				k++
			}
		}
		dst = append(dst, ')')
	}
	return append(dst, '\n')
}
