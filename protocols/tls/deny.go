package tls

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// Alert values (RFC 8446 6).
const (
	alertLevelFatal    = 2
	alertAccessDenied  = 49
	defaultDenyVersion = 0x0303
)

// DenyLen is the length of every reply Deny appends: one alert record.
const DenyLen = recordHeaderLen + 2

// Deny appends to dst the reply that stands in for the server's answer to a
// denied ClientHello: one plaintext alert record, level fatal, description
// access_denied (49), e.g. 15 03 03 00 02 02 31. The proxy closes the
// connection after it (Protocol().CloseOnDeny): a TLS connection cannot go
// on past a fatal alert.
//
// The record version is the ClientHello's legacy_version, which the parser
// puts in f.Args: 0x0303 for TLS 1.2 and 1.3 clients, 0x0301 or 0x0302 for
// clients that offer at most TLS 1.0 or 1.1, as a server that negotiated
// with them would write it. Without a frame, or with a value outside
// 0x0300–0x0303, it is 0x0303.
//
// access_denied rather than unrecognized_name: the alert says that policy
// refused the connection ("when access control was applied, the sender
// decided not to proceed", RFC 8446 6.2), which holds whether the name, the
// ALPN protocol or the missing name was refused; unrecognized_name would
// tell the client the server lacks the name, and some clients answer it by
// retrying without SNI. reason is not sent: an alert carries no text. Deny
// allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	v := defaultDenyVersion
	if f != nil && f.Args >= 0x0300 && f.Args <= 0x0303 {
		v = f.Args
	}
	return append(dst, typeAlert, byte(v>>8), byte(v), 0, 2, alertLevelFatal, alertAccessDenied)
}
