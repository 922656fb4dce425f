package mysql

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// Error codes of the deny reply, as mysqld uses them for privileges it
// refuses; the SQL state of all three is 42000.
const (
	ErrDBAccessDenied       = 1044 // ER_DBACCESS_DENIED_ERROR: USE, COM_INIT_DB
	ErrTableAccessDenied    = 1142 // ER_TABLEACCESS_DENIED_ERROR: statements with tables
	ErrSpecificAccessDenied = 1227 // ER_SPECIFIC_ACCESS_DENIED_ERROR: the others
)

// Bounds of the texts Deny copies into its reply, in bytes.
const (
	maxDenyVerb     = l7.MaxVerb
	maxDenyResource = 128
	maxDenyReason   = 128
)

// Deny appends to dst the reply that stands in for a denied request's: an
// ERR packet, after which the session goes on, e.g.
//
//	ERROR 1142 (42000): bulkhead: SELECT on table 'shop.items' denied by policy (no rule allows it)
//
// The code is ErrTableAccessDenied for a statement with tables,
// ErrDBAccessDenied for USE and COM_INIT_DB, ErrSpecificAccessDenied
// otherwise. The packet's sequence id is 1, the reply to a command (which
// starts at 0); 2 for the SSL and COMPRESS frames, which answer the
// client's first packet (sequence 1). A command the server would not
// answer (f.NoReply: COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)
// gets no reply: Deny appends nothing; SSL and COMPRESS, NoReply too, get
// the ERR packet, after which the client gives up. Only printable ASCII of the verb,
// the first resource and reason is kept, each bounded in length. Deny
// allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	var verb, res []byte
	more := 0
	seq := byte(1)
	if f != nil {
		verb, res, more = f.Verb, f.Resource, f.NMore
		switch {
		case string(verb) == "SSL" || string(verb) == "COMPRESS":
			seq = 2 // the answer to the client's first packet
		case f.NoReply:
			return dst
		}
	}
	code := ErrSpecificAccessDenied
	what := " on table '"
	switch {
	case string(verb) == "USE":
		code, what = ErrDBAccessDenied, " on database '"
	case string(verb) == "CHANGE_USER":
		what = " to user '"
	case res != nil:
		code = ErrTableAccessDenied
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, seq, markERR, byte(code), byte(code>>8), '#', '4', '2', '0', '0', '0')
	dst = append(dst, "bulkhead: "...)
	if l7.HasPrintable(verb) {
		dst = appendClean(dst, verb, maxDenyVerb)
	} else {
		dst = append(dst, "request"...)
	}
	if l7.HasPrintable(res) {
		dst = append(dst, what...)
		dst = appendClean(dst, res, maxDenyResource)
		dst = append(dst, '\'')
		if more > 0 {
			dst = append(dst, " and others"...)
		}
	}
	dst = append(dst, " denied by policy"...)
	if l7.HasPrintable(reason) {
		dst = append(dst, " ("...)
		dst = appendClean(dst, reason, maxDenyReason)
		dst = append(dst, ')')
	}
	l := len(dst) - start - headerLen
	dst[start], dst[start+1], dst[start+2] = byte(l), byte(l>>8), byte(l>>16)
	return dst
}

// appendClean appends the printable ASCII bytes (space to '~') of s, at
// most max of them; a quote becomes '"' so that names cannot end the
// quoted text early.
func appendClean[S ~string | ~[]byte](dst []byte, s S, max int) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			continue
		}
		if c == '\'' {
			c = '"'
		}
		dst = append(dst, c)
		n++
	}
	return dst
}
