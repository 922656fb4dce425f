package dns

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// fastQuery decodes the query shape that nearly every client sends — one
// question whose name has no compression pointer, no answer or authority
// records, and at most one additional record, an OPT owned by the root —
// straight from the bytes, without dnsmessage's copies of names and
// headers. For such a query it fills f exactly as slowQuery would and
// returns true; for anything else (including every malformed query) it
// returns false without touching f, and slowQuery decides. FuzzFastQuery
// checks the two against each other.
func (p *Parser) fastQuery(msg []byte, f *l7.Frame) bool {
	if len(msg) < headerLen {
		return false
	}
	bits := be16(msg[2:])
	op := uint8(bits>>11) & 0xF
	if bits&bitQR != 0 || op == opDSO || be16(msg[4:]) != 1 || be16(msg[6:]) != 0 || be16(msg[8:]) != 0 {
		return false
	}
	ar := be16(msg[10:])
	if ar > 1 {
		return false
	}
	// The question's name, lower-cased into p.name with dots between the
	// labels, under dnsmessage's rules: labels without dots, the name
	// (with a dot after each label) shorter than 254 bytes.
	i, n := headerLen, 0
	for {
		if i >= len(msg) {
			return false
		}
		l := int(msg[i])
		i++
		if l == 0 {
			break
		}
		if l&0xC0 != 0 || i+l > len(msg) {
			return false
		}
		dm := 0 // dnsmessage's length of the name so far
		if n > 0 {
			dm = n + 1
			p.name[n] = '.'
			n++
		}
		if dm+l >= 254 {
			return false
		}
		for _, c := range msg[i : i+l] {
			if c == '.' {
				return false
			}
			p.name[n] = lower[c]
			n++
		}
		i += l
	}
	if i+4 > len(msg) {
		return false
	}
	q := Query{
		ID:     be16(msg),
		OpCode: op,
		RD:     bits&bitRD != 0,
		CD:     bits&bitCD != 0,
		Type:   be16(msg[i:]),
		Class:  be16(msg[i+2:]),
	}
	i += 4
	if ar == 1 {
		// Root name (0), type OPT (41), class, TTL, RDLENGTH, RDATA.
		if i+11 > len(msg) || msg[i] != 0 || be16(msg[i+1:]) != 41 {
			return false
		}
		if i+11+int(be16(msg[i+9:])) > len(msg) {
			return false
		}
		q.EDNS = true
		q.DO = be16(msg[i+7:])&0x8000 != 0 // the low half of the TTL
	}
	p.fillQuery(f, q, n)
	return true
}

// lower maps ASCII upper case to lower case, other bytes to themselves.
var lower = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()
