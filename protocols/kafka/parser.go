package kafka

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "kafka"

// Limits. Every length read from the wire is checked against one of them
// or against the size of the message that holds it.
const (
	// MaxRequest bounds a request's size field: 100 MiB, the default of
	// the broker's socket.request.max.bytes. Requests of the APIs whose
	// topics the parser reads are buffered whole (Produce's topic names
	// and partitions sit between its record batches), so the proxy's
	// buffer ceiling bounds them too.
	MaxRequest = 100 << 20
	// MaxReply bounds a response's size field: 1 GiB. Replies are
	// streamed, never buffered whole (but for MaxLearnReply below).
	MaxReply = 1 << 30
	// MaxLearnReply bounds the Metadata replies (v10+) the parser holds
	// whole to learn topic ids from: 8 MiB, tens of thousands of
	// partitions. A larger one is streamed and teaches nothing.
	MaxLearnReply = 8 << 20
	// MaxPending bounds the requests awaiting a reply whose API and
	// version the parser remembers (to check correlation ids and find
	// Metadata replies). Past it requests are counted, not remembered,
	// and their replies framed by size alone.
	MaxPending = 128
	// MaxSummary bounds what the parser records of one request for its
	// deny reply (topics, partitions, group ids): 256 KiB, some 60,000
	// partitions. A deny reply names no more than the summary holds.
	MaxSummary = 256 << 10
	// MaxSessionTopics bounds the topics the parser remembers of a Fetch
	// session (KIP-227) on one connection. Past it, incremental fetches
	// are framed with Overflow set.
	MaxSessionTopics = 256
	// MaxTopicName is the longest topic name Kafka accepts; longer names
	// are never learned for a topic id.
	MaxTopicName = 249
)

const (
	// minRequest is the smallest request: size and header v1 with an
	// empty client id.
	minRequest = 4 + 10
	// minReply is the smallest reply: size and correlation id.
	minReply = 4 + 4
	// idTextLen is the length of a topic id's text form (base64url, no
	// padding), which names a topic whose id the parser cannot resolve.
	idTextLen = 22
	// sessionBytes is the size of a Fetch session's topic list.
	sessionBytes = MaxSessionTopics * (2 + MaxTopicName)
)

// Deny summary: the parser writes, after the Verb's bytes in its own
// buffer, what Deny needs of a request; Verb's capacity covers it.
const (
	sumMagic0, sumMagic1, sumMagic2, sumMagic3 = 0xb7, 'K', 'F', 1

	// header: magic (4), length (4), key (2), version (2), correlation
	// id (4), flags (1).
	sumHeader = 17

	flagTruncated   = 1 << 0 // records were left out (MaxSummary)
	flagTxn         = 1 << 1 // a transactional id or key (InitProducerId, FindCoordinator)
	flagIncremental = 1 << 2 // an incremental fetch (session epoch > 0)
	// flagLazy: the records were not written while parsing (Produce,
	// Fetch); Deny walks the request again, through the frame's Sub,
	// to write them (see lazy.go).
	flagLazy = 1 << 3

	recTopic = 'T' // u16 name length, name, flags, [16]id, u32 count, count × i32
	recGroup = 'G' // u16 length, bytes

	recName = 1 << 0 // the topic record has a name (possibly empty)
	recID   = 1 << 1 // the topic record has an id
)

// pending is a request awaiting its reply.
type pending struct {
	corr     int32
	key, ver int16
}

// Parser decodes the requests and replies of one Kafka connection. One
// parser serves both directions; it is not safe for concurrent use. The
// zero value is ready (with a topic-id table of its own).
type Parser struct {
	ids *topicIDs

	reqSkip int // bytes of the current request body still to skip
	repSkip int // bytes of the current reply still to stream
	repArgs int // Args of the reply being streamed

	// Requests awaiting a reply: fifo[head : head+n] (mod MaxPending),
	// then untracked more whose API the parser did not keep.
	fifo      [MaxPending]pending
	head, n   int
	untracked int
	// last is where the last request frame went: 0 nowhere (NoReply),
	// 1 the fifo, 2 untracked; Denied undoes it.
	last uint8

	sum  []byte // Verb, then the deny summary of the last request
	vlen int    // the length of the Verb at the front of sum
	vkey int16  // the API key whose name is the Verb at the front of sum
	// sumBase is subtracted from len(sum) when it is checked against
	// MaxSummary: 0 but while Deny rebuilds a summary at the end of its
	// dst (lazy.go).
	sumBase int
	// eager makes the parser write every request's records while
	// parsing, Produce's and Fetch's too (tests compare both ways).
	eager bool
	res   []byte // resolved topic names (Frame views), reset per request

	sess session

	scratch l7.Frame
}

var (
	_ l7.Parser       = (*Parser)(nil)
	_ l7.DenyObserver = (*Parser)(nil)
)

// NewParser returns a parser with a topic-id table of its own. Parsers
// made by one Protocol value share theirs.
func NewParser() *Parser { return newParser(&topicIDs{}) }

func newParser(t *topicIDs) *Parser {
	return &Parser{ids: t, sum: make([]byte, 0, 512)}
}

// Protocol describes Kafka to the data plane. The parsers it makes share
// one table of topic ids learned from Metadata replies, so that a request
// naming a topic by id on one connection is judged by the name a Metadata
// reply on another gave it.
func Protocol() l7.Protocol {
	t := &topicIDs{}
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return newParser(t) },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: MaxRequest,
	}
}

// Parse decodes the message at the front of data; see l7.Parser and
// README.md.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if p.ids == nil {
		p.ids = &topicIDs{}
	}
	if f == nil {
		f = &p.scratch
	}
	switch dir {
	case l7.DirRequest:
		return p.parseRequest(data, f)
	case l7.DirReply:
		return p.parseReply(data, f)
	}
	return l7.OpMore, 0, errBadDir
}

// Denied is called by the proxy after it answered the request frame it
// just got with Deny's reply instead of forwarding it: the server will not
// answer that request, so the parser forgets it.
func (p *Parser) Denied(*l7.Frame) {
	switch p.last {
	case 1:
		if p.n > 0 {
			p.n--
		}
	case 2:
		if p.untracked > 0 {
			p.untracked--
		}
	}
	p.last = 0
}

// frameArgs is a frame's Args: api_key<<16 | api_version in the low 32
// bits and, where int has 64 bits, the correlation id in the high ones.
func frameArgs(key, ver int16, corr int32) int {
	return int(uint64(uint32(corr))<<32 | uint64(uint16(key))<<16 | uint64(uint16(ver)))
}

// APIKeyVersion returns the API key and version a frame's Args carries: a
// request frame's own, a reply frame's request's.
func APIKeyVersion(f *l7.Frame) (key, version int16) {
	return int16(uint32(f.Args) >> 16), int16(uint16(f.Args))
}

// CorrelationID returns the correlation id a frame's Args carries (0 where
// int has 32 bits).
func CorrelationID(f *l7.Frame) int32 { return int32(uint64(f.Args) >> 32) }

func (p *Parser) parseRequest(data []byte, f *l7.Frame) (l7.Op, int, error) {
	if p.reqSkip > 0 {
		if len(data) == 0 {
			return l7.OpMore, p.reqSkip, nil
		}
		n := min(len(data), p.reqSkip)
		p.reqSkip -= n
		f.Reset(l7.DirRequest)
		return l7.OpSkip, n, nil
	}
	if len(data) < 4 {
		return l7.OpMore, minRequest - len(data), nil
	}
	size := int64(int32(binary.BigEndian.Uint32(data)))
	switch {
	case size < minRequest-4:
		return l7.OpMore, 0, errBadSize
	case size > MaxRequest:
		return l7.OpMore, 0, errRequestTooBig
	}
	total := 4 + int(size)
	if len(data) < minRequest {
		return l7.OpMore, minRequest - len(data), nil
	}
	key := int16(binary.BigEndian.Uint16(data[4:]))
	ver := int16(binary.BigEndian.Uint16(data[6:]))
	corr := int32(binary.BigEndian.Uint32(data[8:]))
	idLen := int(int16(binary.BigEndian.Uint16(data[12:])))
	switch {
	case key < 0 || ver < 0 || idLen < -1:
		return l7.OpMore, 0, errBadHeader
	case key == keyControlledShutdown && ver == 0:
		return l7.OpMore, 0, errHeaderV0
	case key == keySaslHandshake && ver == 0:
		return l7.OpMore, 0, errSaslV0
	}
	hdrEnd := minRequest + max(idLen, 0)
	if hdrEnd > total {
		return l7.OpMore, 0, errBadHeader
	}
	schema := requestSchema(key, ver)
	end := hdrEnd
	if schema != nil {
		end = total // framed whole
	}
	if len(data) < end {
		return l7.OpMore, end - len(data), nil
	}

	f.Reset(l7.DirRequest)
	p.res = p.res[:0]
	p.startSummary(key, ver, corr)
	if idLen >= 0 {
		f.Aux = data[minRequest:hdrEnd:hdrEnd]
	}
	f.Args = frameArgs(key, ver, corr)
	if schema != nil {
		if err := p.walkRequest(data[:total], hdrEnd, key, ver, schema, f); err != nil {
			return l7.OpMore, 0, err
		}
	} else {
		p.reqSkip = total - hdrEnd
	}
	p.endSummary(f)
	p.push(f.NoReply, corr, key, ver)
	return l7.OpFrame, end, nil
}

// walkRequest reads a request body (after the header's tagged fields in
// flexible versions) for its topics, partitions and groups.
func (p *Parser) walkRequest(msg []byte, hdrEnd int, key, ver int16, schema []field, f *l7.Frame) error {
	flex := isFlexible(key, ver)
	// Field by field: a composite literal was built in a temporary and
	// copied, the copy's wide loads stalling on the narrow stores that
	// had just filled it.
	var w walker
	w.r.b, w.r.pos, w.r.end, w.r.flex = msg, hdrEnd, len(msg), flex
	w.key, w.ver, w.p, w.f = key, ver, p, f
	if flex {
		if err := w.r.tags(); err != nil {
			return err
		}
	}
	// Produce's and Fetch's records are left for Deny to write, from
	// the request itself (flagLazy): most requests are allowed.
	w.nosum = !p.eager && (key == keyProduce || key == keyFetch)
	if fast, err := w.fastWalk(); err != nil {
		return err
	} else if !fast {
		if err := w.walk(schema, 0); err != nil {
			return err
		}
	}
	if w.r.pos != w.r.end {
		return errTrailing
	}
	if key == keyFetch && ver >= 7 && w.sessEpoch > 0 {
		p.sumFlag(flagIncremental)
		p.sessResources(f)
	} else if w.nosum {
		p.sumFlag(flagLazy)
		// Empty, but its capacity is the request, from its size field:
		// what Deny walks again (the proxy calls it before the next
		// Parse, with the input unchanged).
		f.Sub = msg[0:0:len(msg)]
	}
	return nil
}

// push records a request that awaits a reply.
func (p *Parser) push(noReply bool, corr int32, key, ver int16) {
	switch {
	case noReply:
		p.last = 0
	case p.untracked > 0 || p.n == MaxPending:
		p.untracked++
		p.last = 2
	default:
		p.fifo[(p.head+p.n)%MaxPending] = pending{corr: corr, key: key, ver: ver}
		p.n++
		p.last = 1
	}
}

func (p *Parser) parseReply(data []byte, f *l7.Frame) (l7.Op, int, error) {
	p.last = 0
	if p.repSkip > 0 {
		if len(data) == 0 {
			return l7.OpMore, p.repSkip, nil
		}
		if len(data) < p.repSkip {
			p.repSkip -= len(data)
			f.Reset(l7.DirReply)
			return l7.OpSkip, len(data), nil
		}
		n := p.repSkip
		p.repSkip = 0
		f.Reset(l7.DirReply)
		f.Args = p.repArgs
		return l7.OpFrame, n, nil
	}
	if len(data) < minReply {
		return l7.OpMore, minReply - len(data), nil
	}
	size := int64(int32(binary.BigEndian.Uint32(data)))
	switch {
	case size < minReply-4:
		return l7.OpMore, 0, errBadSize
	case size > MaxReply:
		return l7.OpMore, 0, errReplyTooBig
	}
	total := 4 + int(size)
	corr := int32(binary.BigEndian.Uint32(data[4:]))
	var req pending
	tracked := p.n > 0
	switch {
	case tracked:
		req = p.fifo[p.head]
		if req.corr != corr {
			return l7.OpMore, 0, errOutOfOrder
		}
	case p.untracked == 0:
		return l7.OpMore, 0, errUnasked
	}
	learn := tracked && req.key == keyMetadata && req.ver >= minLearnVersion && total <= MaxLearnReply
	if learn && len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	args := -1
	if tracked {
		p.head = (p.head + 1) % MaxPending
		p.n--
		args = frameArgs(req.key, req.ver, req.corr)
	} else {
		p.untracked--
	}
	if learn {
		p.learn(data[:total], req.ver)
	}
	f.Reset(l7.DirReply)
	if len(data) >= total {
		f.Args = args
		return l7.OpFrame, total, nil
	}
	p.repSkip = total - len(data)
	p.repArgs = args
	return l7.OpSkip, len(data), nil
}

// learn reads a Metadata reply (v10+) for topic ids. A reply it cannot
// read teaches what it held before the trouble; it is forwarded as it is.
func (p *Parser) learn(msg []byte, ver int16) {
	w := walker{r: reader{b: msg, pos: minReply, end: len(msg), flex: true}, key: keyMetadata, ver: ver, p: p, learn: true}
	if w.r.tags() != nil { // response header v1
		return
	}
	_ = w.walk(metadataReply, 0)
}

// Summary.

func (p *Parser) startSummary(key, ver int16, corr int32) {
	s := p.sum[:0]
	if p.vlen > 0 && p.vkey == key && len(p.sum) >= p.vlen {
		s = p.sum[:p.vlen] // the last request's verb: the same API
	} else if known(key) {
		s = append(s, apis[key].name...)
	} else {
		s = append(s, "API_"...)
		s = strconv.AppendInt(s, int64(key), 10)
	}
	p.vlen, p.vkey = len(s), key
	s = append(s, sumMagic0, sumMagic1, sumMagic2, sumMagic3, 0, 0, 0, 0)
	s = binary.BigEndian.AppendUint16(s, uint16(key))
	s = binary.BigEndian.AppendUint16(s, uint16(ver))
	s = binary.BigEndian.AppendUint32(s, uint32(corr))
	p.sum = append(s, 0)
}

// verbLen is the length of the verb at the front of p.sum, as
// startSummary wrote it (API names and API_<n> hold no sumMagic0 byte).
func (p *Parser) verbLen() int { return p.vlen }

func (p *Parser) sumFlag(fl byte) {
	if v := p.verbLen(); v >= 0 && v+sumHeader <= len(p.sum) {
		p.sum[v+sumHeader-1] |= fl
	}
}

// sumRoom reports whether n more bytes fit the summary, and marks it
// truncated when they do not.
func (p *Parser) sumRoom(n int) bool {
	if len(p.sum)-p.sumBase+n <= MaxSummary {
		return true
	}
	p.sumFlag(flagTruncated)
	return false
}

func (p *Parser) endSummary(f *l7.Frame) {
	v := p.verbLen()
	binary.BigEndian.PutUint32(p.sum[v+4:], uint32(len(p.sum)-v))
	f.Verb = p.sum[:v:len(p.sum)]
}

// Topics.

// addTopic adds a topic the request names to the frame: its name, else the
// name its id was given by a Metadata reply, else the id's text form.
// Resources already in the frame are not added twice.
func (p *Parser) addTopic(f *l7.Frame, name, id []byte) {
	if name == nil {
		if p.res == nil {
			p.res = make([]byte, 0, l7.MaxResources*MaxTopicName)
		}
		if f.Overflow || len(p.res)+MaxTopicName > cap(p.res) {
			f.Overflow = true
			return
		}
		start := len(p.res)
		var ok bool
		p.res, ok = p.ids.lookup(id, p.res)
		if !ok {
			p.res = base64.RawURLEncoding.AppendEncode(p.res, id)
		}
		name = p.res[start:len(p.res):len(p.res)]
		if hasResource(f, name) {
			p.res = p.res[:start]
			return
		}
		f.AddResource(name)
		return
	}
	if !hasResource(f, name) {
		f.AddResource(name)
	}
}

func hasResource(f *l7.Frame, r []byte) bool {
	if f.Resource == nil {
		return false
	}
	if bytes.Equal(f.Resource, r) {
		return true
	}
	for _, m := range f.More[:f.NMore] {
		if bytes.Equal(m, r) {
			return true
		}
	}
	return false
}

// Fetch sessions (KIP-227). A full fetch (epoch 0) starts a session with
// the topics it lists; an incremental fetch (epoch > 0) lists only what
// changed but reads every topic of the session, so its frame names them
// all. Topics forgotten by an incremental fetch are kept (a frame may name
// more than it reads, never less).

type session struct {
	buf      []byte // entries: kind (0 name, 1 id), length, bytes
	count    int
	id       int32
	valid    bool // a session started on this connection (epoch 0)
	bound    bool // id is the server's session id (seen on an incremental fetch)
	overflow bool // more topics than MaxSessionTopics, or an unknown session
	epoch    int32
}

func (p *Parser) sessStart(id, epoch int32) {
	s := &p.sess
	s.epoch = epoch
	switch {
	case epoch <= 0: // full fetch: 0 starts a session, -1 closes it
		s.buf = s.buf[:0]
		s.count = 0
		s.valid = epoch == 0
		s.bound = false
		s.overflow = false
	case !s.valid:
		s.overflow = true // a session this connection never saw start
	case !s.bound:
		s.id, s.bound = id, true
	case s.id != id:
		s.overflow = true
	}
}

func (p *Parser) sessAdd(name, id []byte) {
	s := &p.sess
	if s.epoch < 0 || s.overflow {
		return
	}
	var kind byte
	v := name
	if v == nil {
		kind, v = 1, id
	}
	if len(v) > 0xff {
		s.overflow = true
		return
	}
	for i := 0; i+2 <= len(s.buf); {
		l := int(s.buf[i+1])
		if s.buf[i] == kind && bytes.Equal(s.buf[i+2:i+2+l], v) {
			return
		}
		i += 2 + l
	}
	if s.count == MaxSessionTopics {
		s.overflow = true
		return
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, sessionBytes)
	}
	s.buf = append(s.buf, kind, byte(len(v)))
	s.buf = append(s.buf, v...)
	s.count++
}

// sessResources adds the session's topics to an incremental fetch's frame.
func (p *Parser) sessResources(f *l7.Frame) {
	s := &p.sess
	if s.overflow {
		f.Overflow = true
	}
	for i := 0; i+2 <= len(s.buf); {
		l := int(s.buf[i+1])
		v := s.buf[i+2 : i+2+l : i+2+l]
		if s.buf[i] == 1 {
			p.addTopic(f, nil, v)
		} else {
			p.addTopic(f, v, nil)
		}
		i += 2 + l
	}
}
