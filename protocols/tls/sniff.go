package tls

// Sniff reports whether a client's first bytes look like the start of a TLS
// ClientHello: a handshake record (0x16), version 3.0 to 3.4 (0x03 0x00–0x04)
// and, as far as the bytes go, a record length of 1 to MaxRecord, handshake
// type ClientHello (0x01), a ClientHello length that the parser accepts and
// that the record does not exceed, and a legacy_version of 3.x. It needs at
// least the first three bytes and allocates nothing.
//
// No other protocol Bulkhead parses starts like this: Redis, memcached and
// HTTP clients send printable text, PostgreSQL and Kafka clients a
// big-endian length whose first byte is 0 for any message under 16 MiB,
// memcached's binary protocol 0x80, MySQL's server speaks first. An SSLv2-
// compatible ClientHello (first byte with its top bit set) is not TLS here.
func Sniff(first []byte) bool {
	if len(first) < 3 || first[0] != typeHandshake || first[1] != 3 || first[2] > 4 {
		return false
	}
	if len(first) < recordHeaderLen {
		return true
	}
	l := int(first[3])<<8 | int(first[4])
	if l == 0 || l > MaxRecord {
		return false
	}
	if len(first) < 6 {
		return true
	}
	if first[5] != typeClientHello {
		return false
	}
	// The handshake header and legacy_version, where the first record
	// holds them (a client may send records of one byte).
	if len(first) < 9 || l < handshakeHeaderLen {
		return true
	}
	hl := int(first[6])<<16 | int(first[7])<<8 | int(first[8])
	if hl < minHelloBody || hl > MaxHandshake || handshakeHeaderLen+hl < l {
		return false
	}
	return len(first) < 10 || l < handshakeHeaderLen+1 || first[9] == 3
}
