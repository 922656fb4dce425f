package http2

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/http1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "http2"

// Limits. Every length on the wire is bounded by one of them.
const (
	// MaxFrameSize bounds one frame's payload in either direction, on top
	// of the SETTINGS_MAX_FRAME_SIZE the receiver advertised (16 KiB
	// unless it said more; Go's server says 1 MiB). Reply frames are
	// buffered whole, so this is also about what the proxy buffers.
	MaxFrameSize = 1 << 20
	// MaxHeaderBlock bounds a header block: a HEADERS or PUSH_PROMISE
	// frame with its CONTINUATION frames, headers included.
	MaxHeaderBlock = 256 << 10
	// MaxTableSize caps the HPACK dynamic table the parser keeps for the
	// client's encoder (the server's SETTINGS_HEADER_TABLE_SIZE, 4096 by
	// default). A table size update above it is ErrTooLong.
	MaxTableSize = 64 << 10
	// MaxField bounds one decoded header field that the parser keeps
	// (name and value of a field added to the dynamic table, or of
	// :method, :path, :authority, content-type). A field added to the
	// table that is longer only empties the table, as HPACK says, unless
	// the table itself may be larger (ErrTooLong).
	MaxField = 16 << 10
	// MaxHost bounds the host (Frame.Aux).
	MaxHost = 255
	// MaxPath bounds the raw and the normalised :path (http1.MaxPath).
	MaxPath = http1.MaxPath
)

// maxPrevPath bounds the raw path whose normal form the parser reuses;
// maxPrevAuth the raw authority whose host it reuses.
const (
	maxPrevPath = 256
	maxPrevAuth = 64
)

// ArgsGRPC is set in Frame.Args on a gRPC request (content-type
// application/grpc…); the low 32 bits of Args are the stream id.
const ArgsGRPC = 1 << 32

// StreamID returns the stream id of request frame f.
func StreamID(f *l7.Frame) uint32 { return uint32(f.Args) }

// IsGRPC reports whether request frame f is a gRPC call.
func IsGRPC(f *l7.Frame) bool { return f.Args&ArgsGRPC != 0 }

// Wire constants (RFC 9113).
const (
	preface          = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frameHeaderLen   = 9
	defaultFrameSize = 16384
	defaultTableSize = 4096

	typeData         = 0x0
	typeHeaders      = 0x1
	typeRSTStream    = 0x3
	typeSettings     = 0x4
	typePushPromise  = 0x5
	typeWindowUpdate = 0x8
	typeContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize = 0x1
	settingMaxFrameSize    = 0x5
)

// Errors (sentinels wrapping the l7 ones).
var (
	errPreface      = fmt.Errorf("%w: not the HTTP/2 client preface", l7.ErrMalformed)
	errFrameSize    = fmt.Errorf("%w: frame longer than the receiver allows", l7.ErrTooLong)
	errBlock        = fmt.Errorf("%w: header block longer than MaxHeaderBlock", l7.ErrTooLong)
	errContinuation = fmt.Errorf("%w: CONTINUATION out of place", l7.ErrMalformed)
	errPadding      = fmt.Errorf("%w: bad padding or priority", l7.ErrMalformed)
	errStreamID     = fmt.Errorf("%w: bad stream id", l7.ErrMalformed)
	errSettings     = fmt.Errorf("%w: bad SETTINGS frame", l7.ErrMalformed)
	errFrameLen     = fmt.Errorf("%w: bad frame length", l7.ErrMalformed)
	errRequest      = fmt.Errorf("%w: request without :method or :path", l7.ErrMalformed)
	errDuplicate    = fmt.Errorf("%w: repeated pseudo-header", l7.ErrMalformed)
	errVerb         = fmt.Errorf("%w: :method longer than l7.MaxVerb", l7.ErrTooLong)
	errPath         = fmt.Errorf("%w: :path longer than MaxPath", l7.ErrTooLong)
	errHost         = fmt.Errorf("%w: bad :authority", l7.ErrMalformed)
)

// side is the framing state of one direction.
type side struct {
	// remain is what is left of a frame being skipped in pieces, whose
	// stream is id; data marks a DATA frame, end one with END_STREAM.
	remain    int
	id        uint32
	data, end bool
	// maxFrame is the SETTINGS_MAX_FRAME_SIZE the receiver advertised.
	maxFrame uint32
	last     l7.Stream
}

// Parser decodes one HTTP/2 connection (h2c with prior knowledge): the
// client's preface and frames, with an HPACK decoder for the client's
// header blocks, and the server's frames (whose header blocks it frames
// without decoding). It implements l7.Multiplexer. Not safe for
// concurrent use; the proxy serialises its calls.
type Parser struct {
	req, rep side
	// prefaced: the client's preface was consumed.
	prefaced bool
	// mode is the connection's phase; in modeH1, h1 frames HTTP/1.1,
	// h2c is set once a request asked to upgrade to h2c, h1Open counts
	// HTTP/1.1 requests not answered yet, and reqH2 and repH2 are set
	// when each direction switched to HTTP/2 after the server's 101.
	mode         int
	h1           *http1.Parser
	h2c          bool
	h1Open       int
	reqH2, repH2 bool
	// lastStream is the highest stream id the client opened.
	lastStream uint32
	hd         decoder

	// fieldHook, when set (by tests), gets every decoded field of the
	// client's header blocks.
	fieldHook func(name, value []byte)

	// Scratch, allocated on first use and reused.
	block []byte // a header block split over several frames, joined
	str   []byte // decoded name and value of the current field

	// Fields of the request being decoded.
	seen    uint8
	grpc    bool
	indexed bool
	method  [l7.MaxVerb]byte
	nm      int
	raw     [MaxPath]byte
	nr      int
	path    [MaxPath]byte
	// prev is the raw :path whose normal form path[:npath] holds (paths
	// up to len(prev) bytes): clients repeat paths (gRPC methods), and
	// normalising is the costliest part of a request.
	prev  [maxPrevPath]byte
	nprev int
	npath int
	// pathHit: the :path equals prev[:nprev] (raw is not filled).
	pathHit bool
	host    [MaxHost]byte
	nh      int
	// auth is the raw :authority (or host) whose host host[:nhost]
	// holds (values up to len(auth) bytes).
	auth  [maxPrevAuth]byte
	nauth int
	nhost int
}

// seen bits.
const (
	seenMethod = 1 << iota
	seenPath
	seenAuthority
	seenHost
	seenType
)

// NewParser returns a parser for one connection.
func NewParser() *Parser {
	p := &Parser{}
	p.req.maxFrame, p.rep.maxFrame = defaultFrameSize, defaultFrameSize
	p.hd.reset()
	return p
}

// Protocol describes HTTP/2 to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: MaxHeaderBlock + MaxFrameSize + frameHeaderLen,
	}
}

// Stream describes the bytes the last Parse call in direction dir
// returned; see l7.Multiplexer.
func (p *Parser) Stream(dir l7.Dir) l7.Stream {
	if dir == l7.DirReply {
		return p.rep.last
	}
	return p.req.last
}

// Parse decodes the frame at the front of data; see l7.Parser and the
// package documentation.
//
// Requests: the preface is OpSkip; a header block that opens a stream is
// an OpFrame (Verb, Resource, Aux, Args); every other frame, trailers
// included, is OpSkip (DATA and unknown frame types in pieces as they
// come). Replies: every frame is returned whole (a header block with its
// CONTINUATION frames as one): OpFrame for a frame that ends a stream
// (END_STREAM, RST_STREAM with Err), with Partial for response headers
// that do not; OpSkip for the rest.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	s := &p.req
	if dir == l7.DirReply {
		s = &p.rep
	}
	s.last = l7.Stream{}
	if p.mode == modeUndecided && dir == l7.DirRequest {
		n := min(len(data), len(preface))
		if string(data[:n]) == preface[:n] {
			if n < len(preface) {
				return l7.OpMore, len(preface) - n, nil
			}
			p.mode = modeH2
		} else {
			p.mode = modeH1
			p.h1 = http1.NewParser()
		}
	}
	if p.mode == modeH1 {
		if dir == l7.DirRequest && !p.reqH2 {
			return p.h1Request(data, f)
		}
		if dir == l7.DirReply && !p.repH2 {
			return p.h1Reply(data, f)
		}
	}
	if dir == l7.DirRequest && !p.prefaced {
		n := min(len(data), len(preface))
		if string(data[:n]) != preface[:n] {
			return l7.OpMore, 0, errPreface
		}
		if n < len(preface) {
			return l7.OpMore, len(preface) - n, nil
		}
		p.prefaced = true
		return l7.OpSkip, len(preface), nil
	}
	if s.remain > 0 {
		k := min(s.remain, len(data))
		if k == 0 {
			return l7.OpMore, 1, nil
		}
		s.remain -= k
		s.last.ID = s.id
		if s.data {
			s.last.Flow = k
		}
		s.last.End = s.end && s.remain == 0
		return l7.OpSkip, k, nil
	}
	if len(data) < frameHeaderLen {
		return l7.OpMore, frameHeaderLen - len(data), nil
	}
	length := int(data[0])<<16 | int(data[1])<<8 | int(data[2])
	typ, flags := data[3], data[4]
	id := binary.BigEndian.Uint32(data[5:9]) & 0x7fffffff
	if length > int(min(s.maxFrame, MaxFrameSize)) {
		return l7.OpMore, 0, errFrameSize
	}
	size := frameHeaderLen + length
	switch typ {
	case typeHeaders, typePushPromise:
		if id == 0 {
			return l7.OpMore, 0, errStreamID
		}
		return p.headers(dir, s, data, id, f)
	case typeContinuation:
		return l7.OpMore, 0, errContinuation
	case typeSettings:
		if len(data) < size {
			return l7.OpMore, size - len(data), nil
		}
		if err := p.settings(dir, data[frameHeaderLen:size], flags, id); err != nil {
			return l7.OpMore, 0, err
		}
		s.last.Settings = flags&flagAck == 0
		return l7.OpSkip, size, nil
	case typeRSTStream:
		if length != 4 {
			return l7.OpMore, 0, errFrameLen
		}
	case typeWindowUpdate:
		if length != 4 {
			return l7.OpMore, 0, errFrameLen
		}
	}
	s.last.ID = id
	end := typ == typeRSTStream || (typ == typeData && flags&flagEndStream != 0)
	if dir == l7.DirRequest && (typ == typeData || typ > typeContinuation) {
		// DATA and unknown types: streamed.
		k := min(size, len(data))
		s.remain, s.id, s.data, s.end = size-k, id, typ == typeData, end
		if s.data {
			s.last.Flow = k - frameHeaderLen
		}
		s.last.End = end && s.remain == 0
		return l7.OpSkip, k, nil
	}
	if len(data) < size {
		return l7.OpMore, size - len(data), nil
	}
	if typ == typeData {
		s.last.Flow = length
	}
	s.last.End = end
	if dir == l7.DirReply && end {
		f.Reset(l7.DirReply)
		f.Err = typ == typeRSTStream
		return l7.OpFrame, size, nil
	}
	return l7.OpSkip, size, nil
}

// settings applies a SETTINGS frame's payload: the server's (reply
// direction) bound the client's frames and HPACK table, the client's
// bound the server's frames.
func (p *Parser) settings(dir l7.Dir, b []byte, flags uint8, id uint32) error {
	if id != 0 || len(b)%6 != 0 || (flags&flagAck != 0 && len(b) != 0) {
		return errSettings
	}
	for ; len(b) >= 6; b = b[6:] {
		v := binary.BigEndian.Uint32(b[2:6])
		switch binary.BigEndian.Uint16(b[:2]) {
		case settingMaxFrameSize:
			if v < defaultFrameSize || v > 1<<24-1 {
				return errSettings
			}
			if dir == l7.DirReply {
				p.req.maxFrame = v
			} else {
				p.rep.maxFrame = v
			}
		case settingHeaderTableSize:
			if dir == l7.DirReply {
				p.hd.setLimit(v)
			}
		}
	}
	return nil
}

// headers frames the header block at the front of data: a HEADERS (or
// PUSH_PROMISE) frame and the CONTINUATION frames up to END_HEADERS.
func (p *Parser) headers(dir l7.Dir, s *side, data []byte, id uint32, f *l7.Frame) (l7.Op, int, error) {
	off, frames := 0, 0
	for {
		if off+frameHeaderLen > len(data) {
			return l7.OpMore, off + frameHeaderLen - len(data), nil
		}
		h := data[off : off+frameHeaderLen]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if length > int(min(s.maxFrame, MaxFrameSize)) {
			return l7.OpMore, 0, errFrameSize
		}
		if frames > 0 && (h[3] != typeContinuation || binary.BigEndian.Uint32(h[5:9])&0x7fffffff != id) {
			return l7.OpMore, 0, errContinuation
		}
		end := off + frameHeaderLen + length
		if end > MaxHeaderBlock {
			return l7.OpMore, 0, errBlock
		}
		if end > len(data) {
			return l7.OpMore, end - len(data), nil
		}
		frames++
		off = end
		if h[4]&flagEndHeaders != 0 {
			break
		}
	}
	n := off
	flags := data[4]
	s.last = l7.Stream{ID: id, Headers: true, End: flags&flagEndStream != 0 && data[3] == typeHeaders}
	if dir == l7.DirReply {
		if data[3] == typeHeaders {
			f.Reset(l7.DirReply)
			f.Partial = !s.last.End
			return l7.OpFrame, n, nil
		}
		return l7.OpSkip, n, nil
	}
	if data[3] == typePushPromise || id&1 == 0 {
		return l7.OpMore, 0, errStreamID
	}
	block, err := p.joinBlock(data[:n], frames)
	if err != nil {
		return l7.OpMore, 0, err
	}
	open := id > p.lastStream
	p.seen, p.grpc, p.indexed, p.nm, p.nr, p.nh, p.pathHit = 0, false, false, 0, 0, 0, false
	if err := p.decode(block, open); err != nil {
		return l7.OpMore, 0, err
	}
	s.last.Indexed = p.indexed
	if !open {
		// Trailers (or a late block on a closed stream): decoded for the
		// table's sake, not a request.
		return l7.OpSkip, n, nil
	}
	p.lastStream = id
	if p.seen&seenMethod == 0 {
		return l7.OpMore, 0, errRequest
	}
	f.Reset(l7.DirRequest)
	f.Verb = p.method[:p.nm]
	f.Args = int(id)
	if p.grpc {
		f.Args |= ArgsGRPC
	}
	if p.nh > 0 {
		f.Aux = p.host[:p.nh]
	}
	switch {
	case p.seen&seenPath != 0:
		raw := p.raw[:p.nr]
		if p.pathHit {
			raw = p.prev[:p.nr]
		}
		if len(raw) == 1 && raw[0] == '*' && string(f.Verb) == "OPTIONS" {
			f.Resource = raw
			break
		}
		if p.pathHit {
			f.Resource = p.path[:p.npath]
			break
		}
		p.nprev = 0
		res, err := http1.AppendNormalizedPath(p.path[:0], raw)
		if err != nil {
			return l7.OpMore, 0, err
		}
		f.Resource = res
		if len(raw) <= len(p.prev) {
			p.nprev, p.npath = copy(p.prev[:], raw), len(res)
		}
	case string(f.Verb) == "CONNECT" && p.seen&seenAuthority != 0:
		f.Resource = p.host[:p.nh]
	default:
		return l7.OpMore, 0, errRequest
	}
	return l7.OpFrame, n, nil
}

// joinBlock returns the header block fragment of the frames at the front
// of b: in place for one frame, else joined into p.block.
func (p *Parser) joinBlock(b []byte, frames int) ([]byte, error) {
	first, err := fragment(b)
	if err != nil {
		return nil, err
	}
	if frames == 1 {
		return first, nil
	}
	if p.block == nil {
		p.block = make([]byte, 0, MaxHeaderBlock)
	}
	out := append(p.block[:0], first...)
	for off := frameHeaderLen + (int(b[0])<<16 | int(b[1])<<8 | int(b[2])); off < len(b); {
		l := int(b[off])<<16 | int(b[off+1])<<8 | int(b[off+2])
		out = append(out, b[off+frameHeaderLen:off+frameHeaderLen+l]...)
		off += frameHeaderLen + l
	}
	p.block = out
	return out, nil
}

// fragment returns the header block fragment of the HEADERS frame at the
// front of b, without padding and priority fields.
func fragment(b []byte) ([]byte, error) {
	l := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	flags := b[4]
	pay := b[frameHeaderLen : frameHeaderLen+l]
	pad := 0
	if flags&flagPadded != 0 {
		if len(pay) < 1 {
			return nil, errPadding
		}
		pad = int(pay[0])
		pay = pay[1:]
	}
	if flags&flagPriority != 0 && b[3] == typeHeaders {
		if len(pay) < 5 {
			return nil, errPadding
		}
		pay = pay[5:]
	}
	if pad > len(pay) {
		return nil, errPadding
	}
	return pay[:len(pay)-pad], nil
}

// decode runs the HPACK decoder over a client header block, keeping the
// fields a request frame needs when open. Every field is decoded (the
// table must stay in step); only the values of the fields the verdict
// needs (fieldKind) are kept, found by static index (staticKind) or by
// the kind recorded in the dynamic entry, without comparing names.
func (p *Parser) decode(b []byte, open bool) error {
	if p.str == nil {
		p.str = make([]byte, 0, MaxField)
	}
	fields := false
	for pos := 0; pos < len(b); {
		c := b[pos]
		switch {
		case c&0x80 != 0: // indexed field
			i := int(c & 0x7f)
			pos++
			if i == 0x7f {
				v, k, err := readIntLong(b[pos-1:], 0x7f)
				if err != nil {
					return err
				}
				i, pos = v, pos-1+k
			}
			fields = true
			if uint(i-1) < uint(len(staticTable)) {
				if p.fieldHook != nil {
					p.fieldHook([]byte(staticTable[i-1].name), []byte(staticTable[i-1].value))
				}
				if kind := staticKind[i]; open && kind != 0 {
					if err := p.keepStatic(kind, i); err != nil {
						return err
					}
				}
				continue
			}
			if i == 0 {
				return errIndex
			}
			e, ok := p.hd.entry(i - len(staticTable))
			if !ok {
				return errIndex
			}
			if p.fieldHook != nil {
				name, value, _ := p.hd.get(i - len(staticTable))
				p.fieldHook(name, value)
			}
			if open && e.kind != 0 {
				if err := p.keep(e.kind, p.hd.value(e)); err != nil {
					return err
				}
			}
		case c&0xe0 == 0x20: // dynamic table size update
			if fields {
				return errUpdate
			}
			v, k, err := readInt(b[pos:], 5)
			if err != nil {
				return err
			}
			if err := p.hd.setMax(v); err != nil {
				return err
			}
			p.indexed = true
			pos += k
		default: // literal: with (01), without (0000) or never (0001) indexing
			index := c&0xc0 == 0x40
			prefix := uint(4)
			if index {
				prefix = 6
			}
			k, err := p.literal(b[pos:], prefix, index, open)
			if err != nil {
				return err
			}
			pos += k
			fields = true
		}
	}
	return nil
}

// literal decodes one literal field representation at the front of b.
func (p *Parser) literal(b []byte, prefix uint, index, open bool) (int, error) {
	mask := 1<<prefix - 1
	i, used := int(b[0])&mask, 1
	var err error
	if i == mask {
		if i, used, err = readIntLong(b, mask); err != nil {
			return 0, err
		}
	}
	// The name is decoded into p.str or referenced in place (static
	// table, or dynamic table: insert copies the name before the value
	// and eviction moves no bytes); the value follows it in p.str, the
	// two within MaxField.
	str := p.str[:0]
	var name []byte
	var kind uint8
	switch {
	case i == 0:
		var k int
		str, k, err = readString(str, b[used:], true)
		if err != nil {
			return 0, err
		}
		used += k
		name = str
		kind = fieldKind(str)
	case i <= len(staticTable):
		name = staticName[i]
		str = str[: 0 : cap(str)-len(name)]
		kind = staticKind[i]
		if kind == seenHost|seenStatic {
			kind = seenHost
		}
	default:
		e, ok := p.hd.entry(i - len(staticTable))
		if !ok {
			return 0, errIndex
		}
		if int(e.nlen) > cap(str) {
			return 0, errField
		}
		name = p.hd.ring[e.off : e.off+e.nlen]
		str = str[: 0 : cap(str)-len(name)]
		kind = e.kind
	}
	nl := len(str)
	wanted := open && kind != 0
	keepValue := index || wanted || p.fieldHook != nil
	str, k, err := readString(str, b[used:], keepValue)
	if err == errField && index && !wanted && p.fieldHook == nil && p.hd.max <= MaxField {
		// Longer than the whole table: adding it empties the table
		// (RFC 7541 §4.4); its value is not needed.
		p.hd.evict(p.hd.max + 1)
		p.indexed = true
		return used + k, nil
	}
	if err != nil {
		return 0, err
	}
	used += k
	value := str[nl:]
	if p.fieldHook != nil {
		p.fieldHook(name, value)
	}
	if wanted {
		if err := p.keep(kind, value); err != nil {
			return 0, err
		}
	}
	if index {
		p.hd.insert(name, value)
		p.indexed = true
	}
	return used, nil
}

// fieldKind returns the seen bit of the request field name is (the
// fields the request frame needs), or 0.
func fieldKind(name []byte) uint8 {
	switch string(name) {
	case ":method":
		return seenMethod
	case ":path":
		return seenPath
	case ":authority":
		return seenAuthority
	case "host":
		return seenHost
	case "content-type":
		return seenType
	}
	return 0
}

// seenStatic marks, in staticKind, the static "host" entry, whose
// indexed form the parser ignores.
const seenStatic = 1 << 7

// staticKind is fieldKind of each static table entry's name (index i is
// entry i, 1-based).
var staticKind = func() (k [len(staticTable) + 1]uint8) {
	for i, e := range staticTable {
		k[i+1] = fieldKind([]byte(e.name))
		if k[i+1] == seenHost {
			k[i+1] |= seenStatic
		}
	}
	return k
}()

// keepStatic keeps static table entry i (1-based), of kind kind, when the
// request frame needs it.
func (p *Parser) keepStatic(kind uint8, i int) error {
	if kind&seenStatic != 0 {
		return nil
	}
	return p.keep(kind, staticValue[i])
}

// staticName and staticValue hold the static table's names and values
// as byte slices (index i is entry i, 1-based).
var staticName, staticValue = func() (n, v [len(staticTable) + 1][]byte) {
	for i, e := range staticTable {
		n[i+1], v[i+1] = []byte(e.name), []byte(e.value)
	}
	return n, v
}()

// keep copies the value of a field of kind kind (fieldKind) that a
// request frame needs into the parser's scratch. Paths and hosts equal
// to the last request's are not copied nor normalised again.
func (p *Parser) keep(kind uint8, value []byte) error {
	if p.seen&kind != 0 && kind != seenType && kind != seenHost {
		return errDuplicate
	}
	p.seen |= kind
	switch kind {
	case seenMethod:
		if len(value) > len(p.method) {
			return errVerb
		}
		p.nm = copy(p.method[:], value)
	case seenPath:
		if len(value) > len(p.raw) {
			return errPath
		}
		if p.nprev > 0 && string(value) == string(p.prev[:p.nprev]) {
			p.pathHit, p.nr = true, len(value)
			break
		}
		p.pathHit = false
		p.nr = copy(p.raw[:], value)
	case seenAuthority, seenHost:
		if kind == seenHost && p.seen&seenAuthority != 0 {
			return nil // :authority wins (RFC 9113 §8.3.1)
		}
		if p.nauth > 0 && string(value) == string(p.auth[:p.nauth]) {
			p.nh = p.nhost
			break
		}
		p.nauth = 0
		h, err := appendHost(p.host[:0], value)
		if err != nil {
			return err
		}
		p.nh, p.nhost = len(h), len(h)
		if len(value) <= len(p.auth) {
			p.nauth = copy(p.auth[:], value)
		}
	case seenType:
		p.grpc = bytes.HasPrefix(value, []byte("application/grpc"))
	}
	return nil
}

// appendHost appends the host of authority a ("host", "host:port",
// "[v6]:port", optionally with userinfo, which HTTP/2 forbids) to dst,
// lower case, without port and final dot.
func appendHost(dst, a []byte) ([]byte, error) {
	if len(a) == 0 {
		return dst, nil
	}
	if a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return dst, errHost
		}
		a = a[:end+1]
	} else if c := bytes.LastIndexByte(a, ':'); c >= 0 {
		a = a[:c]
	}
	if len(a) > 1 && a[len(a)-1] == '.' {
		a = a[:len(a)-1]
	}
	if len(a) > MaxHost {
		return dst, errHost
	}
	for _, c := range a {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c <= ' ' || c >= 0x7f || c == '@' || c == '/' || c == '?' || c == '#':
			return dst, errHost
		}
		dst = append(dst, c)
	}
	return dst, nil
}
