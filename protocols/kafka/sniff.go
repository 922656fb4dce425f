package kafka

import "encoding/binary"

// sniffVersionSlack is how far above the highest version this package
// knows a first request's version may be: a newer client may know newer
// versions (its first request is ApiVersions at its own highest version).
const sniffVersionSlack = 4

// Sniff reports whether a client's first bytes look like a Kafka request:
// a size between the smallest request and MaxRequest, an API key of the
// table, a version no more than a little above the highest known, and a
// client id whose length fits the size and whose bytes (those present)
// are printable ASCII. It needs the first 14 bytes (size and header up to
// the client id's length) and allocates nothing.
//
// PostgreSQL's startup packet (length, then protocol 3.0 = 00 03 00 00)
// reads as Metadata v0, which no client of the last decade sends first: it
// is refused. Redis, HTTP, TLS, memcached and MongoDB's first bytes give
// sizes beyond MaxRequest or impossible headers.
func Sniff(first []byte) bool {
	if len(first) < minRequest {
		return false
	}
	size := int32(binary.BigEndian.Uint32(first))
	key := int16(binary.BigEndian.Uint16(first[4:]))
	ver := int16(binary.BigEndian.Uint16(first[6:]))
	idLen := int(int16(binary.BigEndian.Uint16(first[12:])))
	switch {
	case size < minRequest-4 || size > MaxRequest:
		return false
	case !known(key) || ver < 0 || ver > apis[key].maxVersion+sniffVersionSlack:
		return false
	case key == keyMetadata && ver == 0, key == keyControlledShutdown && ver == 0, key == keySaslHandshake && ver == 0:
		return false
	case idLen < -1 || idLen > int(size)-(minRequest-4):
		return false
	}
	for _, c := range first[minRequest:min(len(first), minRequest+max(idLen, 0))] {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return true
}
