package tls

import (
	"encoding/binary"
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "tls"

// Verb is Frame.Verb of every ClientHello frame.
const Verb = "CLIENT_HELLO"

// Limits. Each bounds a length read from the wire before it is trusted; a
// ClientHello over one makes Parse return an error wrapping l7.ErrTooLong.
const (
	// MaxRecord bounds the fragment of one record: 2^14 + 2048 bytes, the
	// largest record any TLS version allows (TLSCiphertext). A ClientHello
	// travels in plaintext records, which RFC 8446 bounds at 2^14; the
	// slack costs nothing, since the server rejects what it does not take.
	MaxRecord = 1<<14 + 2048
	// MaxHandshake bounds the ClientHello's length (its handshake header's
	// 24-bit length): 64 KiB, Go crypto/tls's bound on any handshake
	// message. Real ClientHellos hold 0.2–2 KiB, post-quantum key shares
	// included.
	MaxHandshake = 1 << 16
	// MaxMessage bounds the bytes on the wire of the records that carry the
	// ClientHello, record headers included: 128 KiB. A client may split
	// its ClientHello into records as small as one byte; this bounds what
	// the proxy buffers whatever the split. Protocol().MaxMessage is this.
	MaxMessage = 1 << 17
	// MaxServerName bounds the server name without a final dot: 253 bytes,
	// the longest DNS name.
	MaxServerName = 253
	// MaxSessionID bounds legacy_session_id: 32 bytes (RFC 8446 4.1.2).
	MaxSessionID = 32
	// MaxALPN is the longest ALPN protocol name: 255 bytes, what its
	// one-byte length can say (RFC 7301).
	MaxALPN = 255
)

// Wire constants.
const (
	recordHeaderLen    = 5  // type, version, length
	handshakeHeaderLen = 4  // type, 24-bit length
	minHelloBody       = 41 // version, random, empty session id, one suite, one compression method

	typeAlert       = 21
	typeHandshake   = 22
	typeClientHello = 1

	extServerName = 0
	extALPN       = 16
)

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir         = fmt.Errorf("tls: unknown direction: %w", l7.ErrMalformed)
	errSSLv2          = fmt.Errorf("tls: SSLv2-compatible ClientHello: %w", l7.ErrMalformed)
	errNotHandshake   = fmt.Errorf("tls: record is not a handshake record: %w", l7.ErrMalformed)
	errRecordVersion  = fmt.Errorf("tls: record version is not 3.0 to 3.4: %w", l7.ErrMalformed)
	errEmptyRecord    = fmt.Errorf("tls: empty handshake record: %w", l7.ErrMalformed)
	errNotClientHello = fmt.Errorf("tls: first handshake message is not a ClientHello: %w", l7.ErrMalformed)
	errShortHello     = fmt.Errorf("tls: ClientHello shorter than its fixed fields: %w", l7.ErrMalformed)
	errTrailing       = fmt.Errorf("tls: record holds bytes after the ClientHello: %w", l7.ErrMalformed)
	errTruncated      = fmt.Errorf("tls: ClientHello field runs past the message: %w", l7.ErrMalformed)
	errLegacyVersion  = fmt.Errorf("tls: ClientHello legacy_version is not 3.x: %w", l7.ErrMalformed)
	errSessionID      = fmt.Errorf("tls: session id longer than 32 bytes: %w", l7.ErrMalformed)
	errCipherSuites   = fmt.Errorf("tls: cipher suites list empty or of odd length: %w", l7.ErrMalformed)
	errCompression    = fmt.Errorf("tls: compression methods list empty: %w", l7.ErrMalformed)
	errExtensions     = fmt.Errorf("tls: extension lengths do not add up: %w", l7.ErrMalformed)
	errDuplicate      = fmt.Errorf("tls: server_name or ALPN extension sent twice: %w", l7.ErrMalformed)
	errServerName     = fmt.Errorf("tls: malformed server_name extension: %w", l7.ErrMalformed)
	errHostName       = fmt.Errorf("tls: server name is not a DNS name: %w", l7.ErrMalformed)
	errALPN           = fmt.Errorf("tls: malformed ALPN extension: %w", l7.ErrMalformed)
	errReplyNotTLS    = fmt.Errorf("tls: server's first bytes are not a TLS record: %w", l7.ErrMalformed)

	errRecordTooLong   = fmt.Errorf("tls: record longer than 2^14+2048 bytes: %w", l7.ErrTooLong)
	errHelloTooLong    = fmt.Errorf("tls: ClientHello longer than 64 KiB: %w", l7.ErrTooLong)
	errMessageTooLong  = fmt.Errorf("tls: ClientHello records span more than 128 KiB: %w", l7.ErrTooLong)
	errHostNameTooLong = fmt.Errorf("tls: server name longer than 253 bytes: %w", l7.ErrTooLong)
)

// verb backs Frame.Verb; capacity-limited, so that appending to the view
// cannot change it.
var verb = []byte(Verb)[:len(Verb):len(Verb)]

// Parser decodes the ClientHello of one TLS connection. It is not safe for
// concurrent use. The zero value is ready to use.
//
// Parse keeps its place inside the ClientHello between calls: after OpMore
// the caller passes the same bytes again, extended (the buffer may have
// moved). An input shorter than the previous one starts over.
type Parser struct {
	req reqState
	// passed is set once the ClientHello was framed: every later call, in
	// either direction, answers OpPass.
	passed bool
	// sni and alpn hold Frame.Resource and Frame.Aux: the server name is
	// lower-cased, and both may straddle records.
	sni  [MaxServerName + 1]byte
	alpn [MaxALPN]byte
	// scratch receives the fields when Parse is given no Frame.
	scratch l7.Frame
}

var _ l7.Parser = (*Parser)(nil)

// NewParser returns a parser for one connection.
func NewParser() *Parser { return &Parser{} }

// Protocol describes TLS to the data plane: after a deny the connection is
// closed (a TLS connection cannot go on past a fatal alert), and one
// ClientHello may take at most MaxMessage bytes of records.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:        Name,
		New:         func() l7.Parser { return NewParser() },
		Sniff:       Sniff,
		Deny:        Deny,
		CloseOnDeny: true,
		MaxMessage:  MaxMessage,
	}
}

// Parse decodes the front of data; see l7.Parser.
//
// Requests (l7.DirRequest): OpFrame for the ClientHello, n covering every
// record that carries it, with Verb "CLIENT_HELLO", Resource the server name
// (lower case, no final dot; nil without SNI), Aux the first ALPN protocol
// (nil without ALPN) and Args the legacy_version (0x0303 for TLS 1.2 and
// 1.3 clients). Resource and Aux point into the Parser and are valid until
// the next Parse call.
//
// After that frame every call, in either direction, returns OpPass with n
// = 0: the rest of the connection is not parsed. Before it, in the reply
// direction, Parse returns OpPass once the server's first bytes are a TLS
// record header (content type 20 to 23, version 3.x) and ErrMalformed when
// they are not: a TLS server never speaks first.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if f == nil {
		f = &p.scratch
	}
	switch dir {
	case l7.DirRequest:
		if p.passed {
			return l7.OpPass, 0, nil
		}
		return p.parseHello(data, f)
	case l7.DirReply:
		if p.passed {
			return l7.OpPass, 0, nil
		}
		return parseReply(data)
	}
	return l7.OpMore, 0, errBadDir
}

// parseReply checks that data starts like a TLS record: content type
// change_cipher_spec, alert, handshake or application_data, major version 3.
func parseReply(data []byte) (l7.Op, int, error) {
	if len(data) == 0 {
		return l7.OpMore, 2, nil
	}
	if t := data[0]; t < 20 || t > 23 {
		return l7.OpMore, 0, errReplyNotTLS
	}
	if len(data) < 2 {
		return l7.OpMore, 1, nil
	}
	if data[1] != 3 {
		return l7.OpMore, 0, errReplyNotTLS
	}
	return l7.OpPass, 0, nil
}

// reqState is the parser's place inside the ClientHello between calls: the
// records before pos are complete and checked.
type reqState struct {
	active bool
	seen   int    // len(data) at the last OpMore
	pos    int    // offset of the next record header
	got    int    // handshake bytes in the records before pos
	hdr    uint32 // the handshake header, its first min(got, 4) bytes, big endian
	total  int    // handshake header + ClientHello length; 0 until known
}

// parseHello frames the records that carry the ClientHello, then decodes it.
// The checks run in the order of the bytes they look at, so that a prefix
// of the input never gives another error than the whole.
//
// The place is kept in locals and written to p.req only before OpMore:
// kept in the struct, every step was a store and a load, and the load
// after the struct was zeroed stalled.
func (p *Parser) parseHello(data []byte, f *l7.Frame) (l7.Op, int, error) {
	var (
		pos, got, total int
		hdr             uint32
	)
	if st := &p.req; st.active && len(data) >= st.seen {
		pos, got, total, hdr = st.pos, st.got, st.total, st.hdr
	}
	for {
		if total > 0 && got == total {
			return p.hello(data, f, pos, total)
		}
		// At least this many handshake bytes are still to come.
		least := total
		if least == 0 {
			least = handshakeHeaderLen + minHelloBody
		}
		least -= got

		// The record header.
		i := pos
		have := len(data) - i
		if have < 1 {
			return p.more(data, recordHeaderLen+least, pos, got, total, hdr)
		}
		if c := data[i]; c != typeHandshake {
			if i == 0 && c&0x80 != 0 {
				// SSLv2's two-byte record length with its top bit set.
				return p.fail(errSSLv2)
			}
			return p.fail(errNotHandshake)
		}
		if have < 2 {
			return p.more(data, recordHeaderLen-1+least, pos, got, total, hdr)
		}
		if data[i+1] != 3 {
			return p.fail(errRecordVersion)
		}
		if have < 3 {
			return p.more(data, recordHeaderLen-2+least, pos, got, total, hdr)
		}
		if data[i+2] > 4 {
			return p.fail(errRecordVersion)
		}
		if have < recordHeaderLen {
			return p.more(data, recordHeaderLen-have+least, pos, got, total, hdr)
		}
		l := int(data[i+3])<<8 | int(data[i+4])
		end := i + recordHeaderLen + l
		switch {
		case l == 0:
			return p.fail(errEmptyRecord)
		case l > MaxRecord:
			return p.fail(errRecordTooLong)
		case end > MaxMessage:
			return p.fail(errMessageTooLong)
		case total > 0 && got+l > total:
			return p.fail(errTrailing)
		}

		// The handshake header, where it lies in this record.
		h, t := hdr, total
		frag := data[i+recordHeaderLen : min(end, len(data))]
		if got == 0 && len(frag) >= handshakeHeaderLen {
			// The whole header in the first record, as nearly always:
			// the loop below's checks, in its order, in one step.
			h = binary.BigEndian.Uint32(frag)
			frag = nil // read
			if h>>24 != typeClientHello {
				return p.fail(errNotClientHello)
			}
			switch hl := int(h & 0xffffff); {
			case hl > MaxHandshake:
				return p.fail(errHelloTooLong)
			case hl < minHelloBody:
				return p.fail(errShortHello)
			default:
				t = handshakeHeaderLen + hl
			}
			if l > t {
				return p.fail(errTrailing)
			}
		}
		for k, hn := 0, got; hn < handshakeHeaderLen && k < len(frag); k, hn = k+1, hn+1 {
			h |= uint32(frag[k]) << (24 - 8*hn)
			if hn == 0 && h>>24 != typeClientHello {
				return p.fail(errNotClientHello)
			}
			if hn == handshakeHeaderLen-1 {
				hl := int(h & 0xffffff)
				switch {
				case hl > MaxHandshake:
					return p.fail(errHelloTooLong)
				case hl < minHelloBody:
					return p.fail(errShortHello)
				}
				t = handshakeHeaderLen + hl
				if got+l > t {
					return p.fail(errTrailing)
				}
			}
		}

		if end > len(data) {
			need := end - len(data)
			if t > 0 {
				least = t
			} else {
				least = handshakeHeaderLen + minHelloBody
			}
			if after := least - got - l; after > 0 {
				need += recordHeaderLen + after
			}
			return p.more(data, need, pos, got, total, hdr)
		}
		pos, got, hdr, total = end, got+l, h, t
	}
}

// more records the place the records before pos left (see reqState) and
// asks for n more bytes.
func (p *Parser) more(data []byte, n, pos, got, total int, hdr uint32) (l7.Op, int, error) {
	p.req = reqState{active: true, seen: len(data), pos: pos, got: got, hdr: hdr, total: total}
	return l7.OpMore, max(n, 1), nil
}

func (p *Parser) fail(err error) (l7.Op, int, error) {
	p.req = reqState{}
	return l7.OpMore, 0, err
}

// fields is what the ClientHello says that the frame reports.
type fields struct {
	version   int
	sni, alpn []byte
}

// hello decodes the complete ClientHello carried by data[:n], total bytes
// of handshake header and message.
func (p *Parser) hello(data []byte, f *l7.Frame, n, total int) (l7.Op, int, error) {
	var h fields
	if first := int(data[3])<<8 | int(data[4]); first == total {
		// The whole hello in the first record, as nearly always. (The
		// cursor is built only when needed: the copy of its literal
		// stalled on the stores that had just built it.)
		if err := p.decodeFlat(data[recordHeaderLen+handshakeHeaderLen:n], &h); err != nil {
			return p.fail(err)
		}
	} else {
		c := cursor{data: data[:n], off: recordHeaderLen, left: first, rem: total}
		c.skip(handshakeHeaderLen)
		if err := p.decode(&c, &h); err != nil {
			return p.fail(err)
		}
	}
	p.req = reqState{}
	p.passed = true
	f.Reset(l7.DirRequest)
	f.Verb = verb
	f.Resource = h.sni
	f.Aux = h.alpn
	f.Args = h.version
	return l7.OpFrame, n, nil
}

// decode reads the ClientHello body (RFC 8446 4.1.2; earlier versions have
// the same layout, extensions optional):
//
//	legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
//	compression_methods<1..2^8-1> [extensions<0..2^16-1>]
func (p *Parser) decode(c *cursor, h *fields) error {
	if c.left >= c.rem {
		// The whole hello is in the current record (the common case):
		// read up to the extensions in place.
		if err := decodeHead(c.data[c.off:c.off+c.rem], c, h); err != nil {
			return err
		}
	} else if err := decodeHeadSplit(c, h); err != nil {
		return err
	}
	if c.rem == 0 {
		return nil // no extensions (TLS 1.2 and earlier allow it)
	}
	el, ok := c.u16()
	if !ok || el != c.rem {
		return errExtensions
	}
	if c.left >= c.rem {
		// The extensions are all in the current record (the common
		// case): walk them in place.
		return p.extensionsFlat(c.data[c.off:c.off+c.rem], h)
	}
	return p.extensions(c, h)
}

// decodeFlat is decode over b, the ClientHello body, held whole in the
// first record: the same checks and errors in the same order.
func (p *Parser) decodeFlat(b []byte, h *fields) error {
	i, err := decodeHeadFlat(b, h)
	if err != nil {
		return err
	}
	b = b[i:]
	if len(b) == 0 {
		return nil // no extensions (TLS 1.2 and earlier allow it)
	}
	if len(b) < 2 || int(b[0])<<8|int(b[1]) != len(b)-2 {
		return errExtensions
	}
	return p.extensionsFlat(b[2:], h)
}

// extensionsFlat is extensions over b, the rest of the hello, held in one
// record: the same checks and errors in the same order, with the offsets
// in locals rather than in a cursor.
func (p *Parser) extensionsFlat(b []byte, h *fields) error {
	var seenSNI, seenALPN bool
	for i := 0; i < len(b); {
		if len(b)-i < 4 {
			return errExtensions
		}
		// One load for the type and the length: the loop's chain of
		// dependent loads is its cost.
		tl := binary.BigEndian.Uint32(b[i:])
		typ, l := int(tl>>16), int(tl&0xffff)
		i += 4
		if l > len(b)-i {
			return errExtensions
		}
		switch typ {
		case extServerName:
			if seenSNI {
				return errDuplicate
			}
			seenSNI = true
			if err := p.serverNameFlat(b[i:i+l], h); err != nil {
				return err
			}
		case extALPN:
			if seenALPN {
				return errDuplicate
			}
			seenALPN = true
			if err := p.protocolsFlat(b[i:i+l], h); err != nil {
				return err
			}
		}
		i += l
	}
	return nil
}

// serverNameFlat is serverName over the extension's bytes b.
func (p *Parser) serverNameFlat(b []byte, h *fields) error {
	if len(b) < 2 {
		return errServerName
	}
	ll := int(b[0])<<8 | int(b[1])
	b = b[2:]
	if ll != len(b) || ll == 0 {
		return errServerName
	}
	for len(b) > 0 {
		if len(b) < 3 {
			return errServerName
		}
		t, nl := b[0], int(b[1])<<8|int(b[2])
		b = b[3:]
		if nl == 0 || nl > len(b) {
			return errServerName
		}
		entry := b[:nl]
		b = b[nl:]
		if t != 0 {
			continue
		}
		if h.sni != nil {
			return errServerName
		}
		if nl > MaxServerName+1 { // a final dot is dropped
			return errHostNameTooLong
		}
		name, err := hostName(p.sni[:nl], entry) // copied as it is checked
		if err != nil {
			return err
		}
		h.sni = name
	}
	return nil
}

// protocolsFlat is protocols over the extension's bytes b.
func (p *Parser) protocolsFlat(b []byte, h *fields) error {
	if len(b) < 2 {
		return errALPN
	}
	ll := int(b[0])<<8 | int(b[1])
	b = b[2:]
	if ll != len(b) || ll == 0 {
		return errALPN
	}
	for len(b) > 0 {
		pl := int(b[0])
		b = b[1:]
		if pl == 0 || pl > len(b) {
			return errALPN
		}
		if h.alpn == nil {
			name := p.alpn[:pl:pl]
			copy(name, b)
			h.alpn = name
		}
		b = b[pl:]
	}
	return nil
}

// decodeHead reads the ClientHello up to its extensions from b, the rest
// of the hello, all in the current record of c, and advances c past what
// it read; decodeHeadSplit does the same through c when the hello spans
// records. Both give the same errors in the same order.
func decodeHead(b []byte, c *cursor, h *fields) error {
	i, err := decodeHeadFlat(b, h)
	if err != nil {
		return err
	}
	c.off, c.left, c.rem = c.off+i, c.left-i, c.rem-i
	return nil
}

// decodeHeadFlat is decodeHead without a cursor: it returns the offset in
// b of the extensions.
func decodeHeadFlat(b []byte, h *fields) (int, error) {
	v := int(b[0])<<8 | int(b[1]) // the framing guarantees minHelloBody bytes
	if v>>8 != 3 {
		return 0, errLegacyVersion
	}
	h.version = v
	i := 2 + 32 // random
	sid := int(b[i])
	i++
	if sid > MaxSessionID {
		return 0, errSessionID
	}
	if sid > len(b)-i {
		return 0, errTruncated
	}
	i += sid
	if len(b)-i < 2 {
		return 0, errTruncated
	}
	cs := int(b[i])<<8 | int(b[i+1])
	i += 2
	if cs == 0 || cs%2 != 0 {
		return 0, errCipherSuites
	}
	if cs > len(b)-i {
		return 0, errTruncated
	}
	i += cs
	if len(b)-i < 1 {
		return 0, errTruncated
	}
	cm := int(b[i])
	i++
	if cm == 0 {
		return 0, errCompression
	}
	if cm > len(b)-i {
		return 0, errTruncated
	}
	i += cm
	return i, nil
}

// decodeHeadSplit is decodeHead through the cursor.
func decodeHeadSplit(c *cursor, h *fields) error {
	v, _ := c.u16() // the framing guarantees minHelloBody bytes
	if v>>8 != 3 {
		return errLegacyVersion
	}
	h.version = v
	c.skip(32) // random
	sid, _ := c.u8()
	if sid > MaxSessionID {
		return errSessionID
	}
	if !c.skip(sid) {
		return errTruncated
	}
	cs, ok := c.u16()
	if !ok {
		return errTruncated
	}
	if cs == 0 || cs%2 != 0 {
		return errCipherSuites
	}
	if !c.skip(cs) {
		return errTruncated
	}
	cm, ok := c.u8()
	if !ok {
		return errTruncated
	}
	if cm == 0 {
		return errCompression
	}
	if !c.skip(cm) {
		return errTruncated
	}
	return nil
}

// extensions reads the extensions, the rest of the hello.
func (p *Parser) extensions(c *cursor, h *fields) error {
	var seenSNI, seenALPN bool
	for c.rem > 0 {
		var typ, l int
		if c.rem >= 4 && c.left >= c.rem {
			// The rest is in the current record (the common case): read
			// the extension header in place rather than through two u16
			// calls.
			b := c.data[c.off : c.off+4]
			typ, l = int(b[0])<<8|int(b[1]), int(b[2])<<8|int(b[3])
			c.off, c.left, c.rem = c.off+4, c.left-4, c.rem-4
		} else {
			t, ok1 := c.u16()
			n, ok2 := c.u16()
			if !ok1 || !ok2 {
				return errExtensions
			}
			typ, l = t, n
		}
		if l > c.rem {
			return errExtensions
		}
		switch typ {
		case extServerName:
			if seenSNI {
				return errDuplicate
			}
			seenSNI = true
			s := c.sub(l)
			if err := p.serverName(&s, h); err != nil {
				return err
			}
			c.join(&s, l)
		case extALPN:
			if seenALPN {
				return errDuplicate
			}
			seenALPN = true
			s := c.sub(l)
			if err := p.protocols(&s, h); err != nil {
				return err
			}
			c.join(&s, l)
		default:
			// GREASE, key shares, padding, ECH and the rest carry
			// nothing to judge.
			if l <= c.left {
				c.off, c.left, c.rem = c.off+l, c.left-l, c.rem-l
			} else {
				c.skip(l)
			}
		}
	}
	return nil
}

// serverName reads a server_name extension (RFC 6066 3): a list of
// (name_type, name) entries of which the host_name one (type 0) counts.
// Other name types are skipped, as Go's crypto/tls does; a second host_name
// is refused, as every server does.
func (p *Parser) serverName(s *cursor, h *fields) error {
	ll, ok := s.u16()
	if !ok || ll != s.rem || ll == 0 {
		return errServerName
	}
	for s.rem > 0 {
		t, ok1 := s.u8()
		nl, ok2 := s.u16()
		if !ok1 || !ok2 || nl == 0 || nl > s.rem {
			return errServerName
		}
		if t != 0 {
			s.skip(nl)
			continue
		}
		if h.sni != nil {
			return errServerName
		}
		if nl > MaxServerName+1 { // a final dot is dropped
			return errHostNameTooLong
		}
		name := p.sni[:nl]
		s.read(name)
		name, err := hostName(name, name)
		if err != nil {
			return err
		}
		h.sni = name
	}
	return nil
}

// hostName writes name, lower-cased, to dst (at least as long; it may be
// name itself) and checks that it is a DNS name: labels of 1 to 63
// letters, digits, '-' or '_' separated by single dots, at most one final
// dot, which is dropped. It returns the name in dst, at most
// MaxServerName bytes, capacity-limited.
func hostName(dst, name []byte) ([]byte, error) {
	if n := len(name); name[n-1] == '.' {
		name = name[:n-1]
	}
	if len(name) == 0 {
		return nil, errHostName
	}
	dst = dst[:len(name)]
	label := 0
	for i, c := range name {
		if c == '.' {
			if label == 0 {
				return nil, errHostName
			}
			label = 0
			dst[i] = c
			continue
		}
		l := labelByte[c]
		if l == 0 || label == 63 {
			return nil, errHostName
		}
		dst[i] = l
		label++
	}
	name = dst
	if label == 0 {
		return nil, errHostName
	}
	if len(name) > MaxServerName {
		return nil, errHostNameTooLong
	}
	return name[:len(name):len(name)], nil
}

// labelByte maps the bytes a label may hold (letters, digits, '-', '_')
// to their lower case, and every other byte to 0.
var labelByte = func() (t [256]byte) {
	for c := range t {
		b := byte(c)
		switch {
		case 'A' <= b && b <= 'Z':
			t[c] = b + 'a' - 'A'
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '_':
			t[c] = b
		}
	}
	return t
}()

// protocols reads an ALPN extension (RFC 7301 3.1): a non-empty list of
// non-empty protocol names, the first of which counts.
func (p *Parser) protocols(s *cursor, h *fields) error {
	ll, ok := s.u16()
	if !ok || ll != s.rem || ll == 0 {
		return errALPN
	}
	for s.rem > 0 {
		pl, ok := s.u8()
		if !ok || pl == 0 || pl > s.rem {
			return errALPN
		}
		if h.alpn != nil {
			s.skip(pl)
			continue
		}
		name := p.alpn[:pl:pl]
		s.read(name)
		h.alpn = name
	}
	return nil
}

// cursor reads the handshake bytes carried by consecutive, already checked
// records, stepping over record headers. It never reads more than rem
// bytes; the framing guarantees that the records hold them.
type cursor struct {
	data []byte
	off  int // the next byte
	left int // bytes of the current fragment from off
	rem  int // bytes this cursor may still read
}

// next steps over the record header at off; left is 0 and rem > 0.
func (c *cursor) next() {
	h := c.off
	c.left = int(c.data[h+3])<<8 | int(c.data[h+4])
	c.off = h + recordHeaderLen
}

func (c *cursor) u8() (int, bool) {
	if c.rem < 1 {
		return 0, false
	}
	if c.left == 0 {
		c.next()
	}
	v := c.data[c.off]
	c.off++
	c.left--
	c.rem--
	return int(v), true
}

func (c *cursor) u16() (int, bool) {
	if c.rem < 2 {
		return 0, false
	}
	if c.left >= 2 {
		v := int(c.data[c.off])<<8 | int(c.data[c.off+1])
		c.off += 2
		c.left -= 2
		c.rem -= 2
		return v, true
	}
	hi, _ := c.u8()
	lo, _ := c.u8()
	return hi<<8 | lo, true
}

// skip steps over n bytes; false (and nothing skipped) when fewer remain.
func (c *cursor) skip(n int) bool {
	if n > c.rem {
		return false
	}
	c.rem -= n
	for n > 0 {
		if c.left == 0 {
			c.next()
		}
		k := min(n, c.left)
		c.off += k
		c.left -= k
		n -= k
	}
	return true
}

// read copies the next len(dst) bytes into dst; false (and nothing read)
// when fewer remain.
func (c *cursor) read(dst []byte) bool {
	if len(dst) > c.rem {
		return false
	}
	c.rem -= len(dst)
	for k := 0; k < len(dst); {
		if c.left == 0 {
			c.next()
		}
		m := copy(dst[k:], c.data[c.off:c.off+min(c.left, len(dst)-k)])
		c.off += m
		c.left -= m
		k += m
	}
	return true
}

// sub returns a cursor over the next n bytes (n <= c.rem); join moves c
// past them once s has read them.
func (c *cursor) sub(n int) cursor {
	s := *c
	s.rem = n
	return s
}

func (c *cursor) join(s *cursor, n int) {
	c.off, c.left = s.off, s.left
	c.rem -= n
}
