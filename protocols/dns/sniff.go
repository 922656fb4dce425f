package dns

// maxSniffQuery bounds the length prefix Sniff accepts: queries are small
// (a name, an OPT record with a cookie, perhaps a TSIG), and a bound this
// low makes the first byte 0x00-0x10, which no text protocol starts with.
const maxSniffQuery = 4096

// Sniff reports whether a client's first bytes look like DNS over TCP: a
// length prefix from 17 to 4096, then a standard query header (QR=0,
// opcode QUERY, AA, TC, RA, Z and RCODE clear; RD, AD and CD may be set)
// with one question, no answers, at most one authority record (IXFR) and
// at most two additional records (OPT, TSIG), and a whole plausible
// question: an uncompressed name whose labels hold only letters, digits,
// '-', '_', '*' or '/', a type other than 0 and class IN, CH, HS or ANY,
// within the announced length. It allocates nothing.
//
// The question must be in first: a client that sends its length prefix
// alone in a first segment is not recognised (declare such ports).
func Sniff(first []byte) bool {
	if len(first) < prefixLen+minQuery {
		return false
	}
	l := int(be16(first))
	if l < minQuery || l > maxSniffQuery {
		return false
	}
	h := first[prefixLen:]
	if h[2]&^0x01 != 0 || h[3]&0xcf != 0 {
		return false // QR, opcode, AA, TC; RA, Z, RCODE
	}
	if be16(h[4:]) != 1 || be16(h[6:]) != 0 || be16(h[8:]) > 1 || be16(h[10:]) > 2 {
		return false
	}
	i := headerLen
	end := min(len(h), l)
	for {
		if i >= end {
			return false
		}
		n := int(h[i])
		i++
		if n == 0 {
			break
		}
		if n > 63 || i+n > end || i-headerLen+n > 254 {
			return false
		}
		for _, c := range h[i : i+n] {
			if !labelByte(c) {
				return false
			}
		}
		i += n
	}
	if i+4 > end {
		return false
	}
	switch be16(h[i+2:]) {
	case 1, 3, 4, 255:
	default:
		return false
	}
	return be16(h[i:]) != 0
}

func labelByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
		c == '-' || c == '_' || c == '*' || c == '/'
}
