package postgres

// Sniff reports whether a client's first bytes look like PostgreSQL: an
// SSLRequest or GSSENCRequest (length 8 and its code), a CancelRequest
// (length 16 and its code), or a StartupMessage: a length of at most
// MaxStartup, protocol 3.0 to 3.15, and a first parameter name of
// identifier characters ended by a NUL. It allocates nothing.
//
// A startup packet begins with 0x00 (its length is below 16 MiB), which
// no text protocol, TLS record or MongoDB message (little-endian length)
// does; a Kafka request has the same length-prefixed shape, and a
// Metadata v0 request even carries 0x00030000 where the version is, so the
// parameter name that must follow is what sets them apart.
func Sniff(first []byte) bool {
	if len(first) < 8 {
		return false
	}
	length, code := be32(first), be32(first[4:])
	switch code {
	case sslCode, gssCode:
		return length == 8
	case cancelCode:
		return length == 16
	}
	if code>>16 != protoMajor3 || code&0xffff > 15 || length < 9 || length > MaxStartup {
		return false
	}
	i := 8
	for ; i < len(first) && i < 8+MaxName && first[i] != 0; i++ {
		c := first[i]
		if !(c == '_' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 8 && '0' <= c && c <= '9')) {
			return false
		}
	}
	return i > 8 && i < len(first) && first[i] == 0 && first[8] != '.'
}
