package redis

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// Bounds of the texts Deny copies into its reply, in bytes.
const (
	maxDenyName   = l7.MaxVerb // command name, and sub-command
	maxDenyReason = 128

	maxDenyReply = len("-ERR bulkhead: command '") + 2*maxDenyName + len("|' is not allowed (") +
		maxDenyReason + len(")\r\n")
)

// Deny appends to dst the reply that stands in for a denied request's: a
// Redis error, which every client surfaces and after which the connection
// stays usable, e.g.
//
//	-ERR bulkhead: command 'config|set' is not allowed (no rule allows it)\r\n
//
// The command and sub-command are lower-cased as redis-server writes them
// in its own NOPERM errors; without a command the text reads "request is
// not allowed". Only printable ASCII of the command names and of reason is
// kept (no CR, LF or other control bytes), each bounded in length, so the
// reply is always one line. Deny allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	dst = append(dst, "-ERR bulkhead: "...)
	var verb, sub []byte
	if f != nil {
		verb, sub = f.Verb, f.Sub
	}
	if l7.HasPrintable(verb) {
		dst = append(dst, "command '"...)
		dst = appendClean(dst, verb, maxDenyName, true)
		if l7.HasPrintable(sub) {
			dst = append(dst, '|')
			dst = appendClean(dst, sub, maxDenyName, true)
		}
		dst = append(dst, "' is not allowed"...)
	} else {
		dst = append(dst, "request is not allowed"...)
	}
	if l7.HasPrintable(reason) {
		dst = append(dst, " ("...)
		dst = appendClean(dst, reason, maxDenyReason, false)
		dst = append(dst, ')')
	}
	return append(dst, "\r\n"...)
}

// appendClean appends the printable ASCII bytes (space to '~') of s, at
// most max of them, lower-cased when lower.
func appendClean[S ~string | ~[]byte](dst []byte, s S, max int, lower bool) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			continue
		}
		if lower && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		n++
	}
	return dst
}
