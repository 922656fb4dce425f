package mongodb

import (
	"encoding/binary"
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "mongodb"

// Opcodes handled (MsgHeader.opCode).
const (
	OpReply      = 1    // OP_REPLY: legacy reply, answers OP_QUERY
	OpQuery      = 2004 // OP_QUERY: legacy, the first hello/isMaster only
	OpCompressed = 2012 // OP_COMPRESSED: a compressed message of another opcode
	OpMsg        = 2013 // OP_MSG: every command since MongoDB 3.6
)

// OP_MSG flagBits.
const (
	FlagChecksumPresent = 1 << 0
	FlagMoreToCome      = 1 << 1
	FlagExhaustAllowed  = 1 << 16
	// flagRequired are the bits a receiver must understand (0-15):
	// mongod refuses a message with an unknown one.
	flagRequired = 0xffff
)

// Sizes on the wire.
const (
	headerLen = 16
	// minMsg is the smallest OP_MSG: header, flagBits, kind byte and an
	// empty document.
	minMsg = headerLen + 4 + 1 + 5
	// replyPrefix is OP_REPLY's fixed part after the header: responseFlags,
	// cursorID, startingFrom, numberReturned.
	replyPrefix = 20
)

// Default limits.
const (
	// DefaultMaxMessage bounds messageLength: 48,000,000 bytes, mongod's
	// maxMessageSizeBytes (what hello announces).
	DefaultMaxMessage = 48000000
	// DefaultMaxFrame bounds the bytes of one message the parser needs in
	// the buffer to frame it: a request from its header to the end of its
	// command document, a reply whole (larger replies are streamed). 16 MiB
	// + 64 KiB: mongod's maxBsonObjectSize (16 MiB) plus its 16 KiB of
	// internal headroom plus the header and the sections before the body.
	DefaultMaxFrame = 16<<20 + 64<<10
	// MaxNamespace bounds OP_QUERY's fullCollectionName: 512 bytes
	// (MongoDB's namespaces are at most 255 bytes).
	MaxNamespace = 512
)

// Limits bound what a Parser accepts. A zero field takes its default; a
// value above DefaultMaxMessage is clamped to it.
type Limits struct {
	MaxMessage int // messageLength
	MaxFrame   int // bytes held to frame one message
}

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{MaxMessage: DefaultMaxMessage, MaxFrame: DefaultMaxFrame}
}

func (l Limits) normalized() Limits {
	pick := func(v, def int) int {
		if v <= 0 || v > def {
			return def
		}
		return v
	}
	l.MaxMessage = pick(l.MaxMessage, DefaultMaxMessage)
	l.MaxFrame = pick(l.MaxFrame, DefaultMaxFrame)
	return l
}

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir      = fmt.Errorf("mongodb: unknown direction: %w", l7.ErrMalformed)
	errBadLength   = fmt.Errorf("mongodb: messageLength below the header's: %w", l7.ErrMalformed)
	errOpcode      = fmt.Errorf("mongodb: unsupported opcode: %w", l7.ErrMalformed)
	errFlags       = fmt.Errorf("mongodb: unknown required OP_MSG flag: %w", l7.ErrMalformed)
	errSection     = fmt.Errorf("mongodb: bad OP_MSG section: %w", l7.ErrMalformed)
	errNoBody      = fmt.Errorf("mongodb: OP_MSG without a body section: %w", l7.ErrMalformed)
	errBSON        = fmt.Errorf("mongodb: malformed BSON document: %w", l7.ErrMalformed)
	errEmptyCmd    = fmt.Errorf("mongodb: empty command document: %w", l7.ErrMalformed)
	errShort       = fmt.Errorf("mongodb: message shorter than its fields: %w", l7.ErrMalformed)
	errNamespace   = fmt.Errorf("mongodb: bad OP_QUERY namespace: %w", l7.ErrMalformed)
	errTooLong     = fmt.Errorf("mongodb: message too long: %w", l7.ErrTooLong)
	errFrameTooBig = fmt.Errorf("mongodb: command document too long: %w", l7.ErrTooLong)
	errVerbTooLong = fmt.Errorf("mongodb: command name too long: %w", l7.ErrTooLong)
	errNSTooLong   = fmt.Errorf("mongodb: namespace too long: %w", l7.ErrTooLong)
)

// Args layout: the request's requestID (as uint32) in the low 32 bits;
// ArgsOpQuery is set when the request was OP_QUERY (Deny answers OP_REPLY).
const ArgsOpQuery = 1 << 32

// RequestID returns the requestID a request frame carries in Args.
func RequestID(f *l7.Frame) int32 { return int32(uint32(f.Args)) }

// dirState is what a direction keeps between messages.
type dirState struct {
	skip    int  // bytes of the current message still to skip
	tail    bool // after the skip, the message's last byte is a reply frame
	partial bool // that frame's Partial
}

// Parser decodes the requests and replies of one MongoDB connection. It is
// not safe for concurrent use. The zero value uses DefaultLimits.
//
// A request is framed from its header to the end of its command document;
// the rest of the message (document sequences, checksum) follows as OpSkip,
// as much as the input holds. A reply up to MaxFrame bytes is one frame; a
// longer one is a Partial frame of its header, OpSkip for its body but the
// last byte, and a final frame of that byte.
type Parser struct {
	lim   Limits
	ready bool
	req   dirState
	rep   dirState
	// scratch receives the fields when Parse is given no Frame.
	scratch l7.Frame
}

var _ l7.Parser = (*Parser)(nil)

// NewParser returns a parser with DefaultLimits.
func NewParser() *Parser { return NewParserWithLimits(Limits{}) }

// NewParserWithLimits returns a parser with the given limits (zero fields
// take their defaults, larger values are clamped).
func NewParserWithLimits(l Limits) *Parser {
	return &Parser{lim: l.normalized(), ready: true}
}

// Limits returns the limits in force.
func (p *Parser) Limits() Limits {
	if !p.ready {
		return DefaultLimits()
	}
	return p.lim
}

// Protocol describes MongoDB to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: DefaultMaxFrame,
	}
}

// Parse decodes the message at the front of data; see l7.Parser and the
// Parser type.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if !p.ready {
		p.lim, p.ready = DefaultLimits(), true
	}
	if f == nil {
		f = &p.scratch
	}
	var st *dirState
	switch dir {
	case l7.DirRequest:
		st = &p.req
	case l7.DirReply:
		st = &p.rep
	default:
		return l7.OpMore, 0, errBadDir
	}
	if st.skip > 0 {
		if len(data) == 0 {
			return l7.OpMore, st.skip + b2i(st.tail), nil
		}
		n := min(len(data), st.skip)
		st.skip -= n
		f.Reset(dir)
		return l7.OpSkip, n, nil
	}
	if st.tail {
		if len(data) == 0 {
			return l7.OpMore, 1, nil
		}
		f.Reset(dir)
		f.Partial = st.partial
		*st = dirState{}
		return l7.OpFrame, 1, nil
	}
	if len(data) < headerLen {
		return l7.OpMore, headerLen - len(data), nil
	}
	msgLen := int(int32(binary.LittleEndian.Uint32(data)))
	if msgLen < headerLen {
		return fail(st, errBadLength)
	}
	if msgLen > p.lim.MaxMessage {
		return fail(st, errTooLong)
	}
	op := int32(binary.LittleEndian.Uint32(data[12:]))
	if dir == l7.DirRequest {
		return p.request(st, data, msgLen, op, f)
	}
	return p.reply(st, data, msgLen, op, f)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func fail(st *dirState, err error) (l7.Op, int, error) {
	*st = dirState{}
	return l7.OpMore, 0, err
}

// framed ends a frame of n bytes of a message of msgLen: the rest is
// skipped.
func framed(st *dirState, n, msgLen int) (l7.Op, int, error) {
	st.skip = msgLen - n
	return l7.OpFrame, n, nil
}

func (p *Parser) request(st *dirState, data []byte, msgLen int, op int32, f *l7.Frame) (l7.Op, int, error) {
	reqID := uint32(binary.LittleEndian.Uint32(data[4:]))
	switch op {
	case OpMsg:
		if msgLen < minMsg {
			return fail(st, errShort)
		}
		if len(data) < headerLen+4 {
			return l7.OpMore, headerLen + 4 - len(data), nil
		}
		flags := binary.LittleEndian.Uint32(data[headerLen:])
		if flags&flagRequired&^(FlagChecksumPresent|FlagMoreToCome) != 0 {
			return fail(st, errFlags)
		}
		body, end, more, err := p.findBody(data, msgLen, flags)
		if err != nil {
			return fail(st, err)
		}
		if more > 0 {
			return l7.OpMore, more, nil
		}
		f.Reset(l7.DirRequest)
		if err := command(body, f); err != nil {
			return fail(st, err)
		}
		f.NoReply = flags&FlagMoreToCome != 0
		f.Args = int(reqID)
		return framed(st, end, msgLen)
	case OpQuery:
		return p.query(st, data, msgLen, reqID, f)
	case OpCompressed:
		// originalOpcode, uncompressedSize, compressorId.
		const n = headerLen + 9
		if msgLen < n {
			return fail(st, errShort)
		}
		if len(data) < n {
			return l7.OpMore, n - len(data), nil
		}
		f.Reset(l7.DirRequest)
		f.Verb = verbCompressed
		f.Args = int(reqID)
		return framed(st, n, msgLen)
	}
	return fail(st, errOpcode)
}

// verbCompressed is the Verb of an OP_COMPRESSED request (capacity-limited).
var verbCompressed = []byte("COMPRESSED")[:10:10]

// verbOpQuery is the Verb of an OP_QUERY on a collection (not a command).
var verbOpQuery = []byte("OP_QUERY")[:8:8]

// findBody walks the sections of an OP_MSG up to its body (kind 0) and
// returns the body document and the offset after it; more > 0 when the
// input does not reach that far yet.
func (p *Parser) findBody(data []byte, msgLen int, flags uint32) (body []byte, end, more int, err error) {
	secEnd := msgLen
	if flags&FlagChecksumPresent != 0 {
		secEnd -= 4
	}
	off := headerLen + 4
	for {
		if off >= secEnd {
			return nil, 0, 0, errNoBody
		}
		if off+5 > secEnd {
			return nil, 0, 0, errSection
		}
		if off+5 > p.lim.MaxFrame {
			return nil, 0, 0, errFrameTooBig
		}
		if len(data) < off+5 {
			return nil, 0, off + 5 - len(data), nil
		}
		kind := data[off]
		size := int(int32(binary.LittleEndian.Uint32(data[off+1:])))
		switch kind {
		case 0:
			if size < 5 || size > secEnd-off-1 {
				return nil, 0, 0, errBSON
			}
			end = off + 1 + size
			if end > p.lim.MaxFrame {
				return nil, 0, 0, errFrameTooBig
			}
			if len(data) < end {
				return nil, 0, end - len(data), nil
			}
			return data[off+1 : end], end, 0, nil
		case 1:
			// size counts itself, the identifier cstring and the documents.
			if size < 5 || size > secEnd-off-1 {
				return nil, 0, 0, errSection
			}
			off += 1 + size
		default:
			return nil, 0, 0, errSection
		}
	}
}

// query frames an OP_QUERY: flags, fullCollectionName, numberToSkip,
// numberToReturn, query document.
func (p *Parser) query(st *dirState, data []byte, msgLen int, reqID uint32, f *l7.Frame) (l7.Op, int, error) {
	off := headerLen + 4
	if msgLen < off+1+8+5 {
		return fail(st, errShort)
	}
	// fullCollectionName.
	nsEnd := -1
	for i := off; i < len(data) && i < msgLen; i++ {
		if data[i] == 0 {
			nsEnd = i
			break
		}
		if i-off >= MaxNamespace {
			return fail(st, errNSTooLong)
		}
	}
	if nsEnd < 0 {
		if len(data) >= msgLen {
			return fail(st, errNamespace)
		}
		return l7.OpMore, 1, nil
	}
	ns := data[off:nsEnd]
	dot := -1
	for i, c := range ns {
		if c == '.' {
			dot = i
			break
		}
	}
	if dot <= 0 {
		return fail(st, errNamespace)
	}
	doc := nsEnd + 1 + 8
	if doc+5 > msgLen {
		return fail(st, errShort)
	}
	if doc+5 > p.lim.MaxFrame {
		return fail(st, errFrameTooBig)
	}
	if len(data) < doc+4 {
		return l7.OpMore, doc + 4 - len(data), nil
	}
	size := int(int32(binary.LittleEndian.Uint32(data[doc:])))
	if size < 5 || size > msgLen-doc {
		return fail(st, errBSON)
	}
	end := doc + size
	if end > p.lim.MaxFrame {
		return fail(st, errFrameTooBig)
	}
	if len(data) < end {
		return l7.OpMore, end - len(data), nil
	}
	f.Reset(l7.DirRequest)
	db, coll := ns[:dot:dot], ns[dot+1:len(ns):len(ns)]
	if string(coll) == "$cmd" {
		cmd := data[doc:end]
		// Wrapped form: {$query: {cmd…}, $readPreference: …}.
		if k, v, typ, ok := firstElem(cmd); ok && typ == typeDoc && (string(k) == "$query" || string(k) == "query") {
			cmd = v
		}
		if err := command(cmd, f); err != nil {
			return fail(st, err)
		}
	} else {
		// A legacy query on a collection (refused by MongoDB 6+).
		f.Verb = verbOpQuery
		f.Resource = coll
	}
	f.Aux = db
	f.Args = int(reqID) | ArgsOpQuery
	return framed(st, end, msgLen)
}

func (p *Parser) reply(st *dirState, data []byte, msgLen int, op int32, f *l7.Frame) (l7.Op, int, error) {
	hdr := headerLen
	switch op {
	case OpMsg:
		if msgLen < minMsg {
			return fail(st, errShort)
		}
		hdr += 4
	case OpReply:
		if msgLen < headerLen+replyPrefix {
			return fail(st, errShort)
		}
		hdr += replyPrefix
	case OpCompressed:
		if msgLen < headerLen+9 {
			return fail(st, errShort)
		}
	default:
		return fail(st, errOpcode)
	}
	if msgLen > p.lim.MaxFrame {
		// Streamed: header frame, body skipped, last byte the final frame.
		if len(data) < hdr {
			return l7.OpMore, hdr - len(data), nil
		}
		f.Reset(l7.DirReply)
		f.Partial = true
		partial := false
		if op == OpMsg {
			flags := binary.LittleEndian.Uint32(data[headerLen:])
			if flags&flagRequired&^(FlagChecksumPresent|FlagMoreToCome) != 0 {
				return fail(st, errFlags)
			}
			partial = flags&FlagMoreToCome != 0
		}
		*st = dirState{skip: msgLen - hdr - 1, tail: true, partial: partial}
		return l7.OpFrame, hdr, nil
	}
	if len(data) < msgLen {
		return l7.OpMore, msgLen - len(data), nil
	}
	f.Reset(l7.DirReply)
	msg := data[:msgLen]
	switch op {
	case OpMsg:
		flags := binary.LittleEndian.Uint32(msg[headerLen:])
		if flags&flagRequired&^(FlagChecksumPresent|FlagMoreToCome) != 0 {
			return fail(st, errFlags)
		}
		body, _, _, err := p.findBody(msg, msgLen, flags)
		if err != nil {
			return fail(st, err)
		}
		okFalse, err := walk(body, nil)
		if err != nil {
			return fail(st, err)
		}
		f.Err = okFalse
		f.Partial = flags&FlagMoreToCome != 0
	case OpReply:
		respFlags := binary.LittleEndian.Uint32(msg[headerLen:])
		f.Err = respFlags&2 != 0 // QueryFailure
		if doc := msg[hdr:]; len(doc) >= 4 {
			size := int(int32(binary.LittleEndian.Uint32(doc)))
			if size < 5 || size > len(doc) {
				return fail(st, errBSON)
			}
			okFalse, err := walk(doc[:size], nil)
			if err != nil {
				return fail(st, err)
			}
			f.Err = f.Err || okFalse
		}
	}
	return l7.OpFrame, msgLen, nil
}

// command fills Verb, Resource and Aux from a command document.
func command(doc []byte, f *l7.Frame) error {
	if _, err := walk(doc, f); err != nil {
		return err
	}
	if f.Verb == nil {
		return errEmptyCmd
	}
	return nil
}

// BSON element types.
const (
	typeDouble  = 0x01
	typeString  = 0x02
	typeDoc     = 0x03
	typeArray   = 0x04
	typeBinary  = 0x05
	typeUndef   = 0x06
	typeOID     = 0x07
	typeBool    = 0x08
	typeDate    = 0x09
	typeNull    = 0x0a
	typeRegex   = 0x0b
	typeDBPtr   = 0x0c
	typeCode    = 0x0d
	typeSymbol  = 0x0e
	typeCodeWS  = 0x0f
	typeInt32   = 0x10
	typeTS      = 0x11
	typeInt64   = 0x12
	typeDecimal = 0x13
	typeMinKey  = 0xff
	typeMaxKey  = 0x7f
)

// firstElem returns the first element of a well-sized document: its key,
// its value bytes (for a document: the embedded document) and type.
func firstElem(doc []byte) (key, val []byte, typ byte, ok bool) {
	i, k, v, t, err := element(doc, 4)
	if err != nil || i < 0 {
		return nil, nil, 0, false
	}
	return k, v, t, true
}

// walk checks the top-level structure of a document (its size field
// equals len(doc), every element's size fits, it ends with 0) and, when f
// is not nil, fills Verb (first key), Resource (first value when a string,
// else getMore's "collection") and Aux ($db). It reports whether an "ok"
// element is a zero number or false.
func walk(doc []byte, f *l7.Frame) (okFalse bool, err error) {
	if len(doc) < 5 || int(int32(binary.LittleEndian.Uint32(doc))) != len(doc) || doc[len(doc)-1] != 0 {
		return false, errBSON
	}
	first := true
	var coll []byte
	getMore := false
	for i := 4; ; {
		next, k, v, t, err := element(doc, i)
		if err != nil {
			return false, err
		}
		if next < 0 {
			break
		}
		i = next
		if f != nil {
			switch {
			case first:
				if len(k) > l7.MaxVerb {
					return false, errVerbTooLong
				}
				if len(k) == 0 {
					return false, errEmptyCmd
				}
				f.Verb = k
				if t == typeString {
					f.Resource = v
				}
				getMore = string(k) == "getMore"
			case string(k) == "$db" && t == typeString && f.Aux == nil:
				f.Aux = v
			case getMore && string(k) == "collection" && t == typeString && coll == nil:
				coll = v
			}
		}
		if string(k) == "ok" {
			switch t {
			case typeDouble, typeInt64:
				okFalse = binary.LittleEndian.Uint64(v)&^(1<<63) == 0
			case typeInt32:
				okFalse = binary.LittleEndian.Uint32(v) == 0
			case typeBool:
				okFalse = v[0] == 0
			}
		}
		first = false
	}
	if getMore && coll != nil {
		f.Resource = coll
	}
	return okFalse, nil
}

// element decodes the element at doc[i] of a document whose size is
// len(doc). It returns the offset of the next element, or next = -1 at the
// terminating 0 (which must be the document's last byte). Values are
// capacity-limited views; a string's value excludes its trailing 0.
func element(doc []byte, i int) (next int, key, val []byte, typ byte, err error) {
	end := len(doc) - 1 // the terminating 0
	if i >= len(doc) {
		return 0, nil, nil, 0, errBSON
	}
	typ = doc[i]
	if typ == 0 {
		if i != end {
			return 0, nil, nil, 0, errBSON
		}
		return -1, nil, nil, 0, nil
	}
	k := i + 1
	j := k
	for j < end && doc[j] != 0 {
		j++
	}
	if j >= end {
		return 0, nil, nil, 0, errBSON
	}
	key = doc[k:j:j]
	v := j + 1
	size := 0
	lenAt := func(at int) int {
		if at+4 > end {
			return -1
		}
		return int(int32(binary.LittleEndian.Uint32(doc[at:])))
	}
	cstr := func(at int) int { // offset after a cstring at at, or -1
		for at < end {
			if doc[at] == 0 {
				return at + 1
			}
			at++
		}
		return -1
	}
	switch typ {
	case typeDouble, typeDate, typeTS, typeInt64:
		size = 8
	case typeString, typeCode, typeSymbol:
		n := lenAt(v)
		if n < 1 || n > end-v-4 || doc[v+4+n-1] != 0 {
			return 0, nil, nil, 0, errBSON
		}
		if typ == typeString {
			val = doc[v+4 : v+4+n-1 : v+4+n-1]
			return v + 4 + n, key, val, typ, nil
		}
		size = 4 + n
	case typeDoc, typeArray:
		n := lenAt(v)
		if n < 5 || n > end-v || doc[v+n-1] != 0 {
			return 0, nil, nil, 0, errBSON
		}
		size = n
	case typeBinary:
		n := lenAt(v)
		if n < 0 || n > end-v-5 {
			return 0, nil, nil, 0, errBSON
		}
		size = 5 + n
	case typeUndef, typeNull, typeMinKey, typeMaxKey:
		size = 0
	case typeOID:
		size = 12
	case typeBool:
		size = 1
	case typeRegex:
		a := cstr(v)
		if a < 0 {
			return 0, nil, nil, 0, errBSON
		}
		b := cstr(a)
		if b < 0 {
			return 0, nil, nil, 0, errBSON
		}
		size = b - v
	case typeDBPtr:
		n := lenAt(v)
		if n < 1 || n > end-v-4-12 || doc[v+4+n-1] != 0 {
			return 0, nil, nil, 0, errBSON
		}
		size = 4 + n + 12
	case typeCodeWS:
		n := lenAt(v)
		if n < 14 || n > end-v {
			return 0, nil, nil, 0, errBSON
		}
		size = n
	case typeInt32:
		size = 4
	case typeDecimal:
		size = 16
	default:
		return 0, nil, nil, 0, errBSON
	}
	if size > end-v {
		return 0, nil, nil, 0, errBSON
	}
	val = doc[v : v+size : v+size]
	return v + size, key, val, typ, nil
}
