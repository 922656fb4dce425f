package dns

import (
	"fmt"
	"math"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "dns"

// Limits. DNS bounds itself: a message is at most 65535 bytes (the TCP
// length prefix has 16 bits), a name at most 255 bytes on the wire and
// every count and record length is checked against the message that
// holds it (by dnsmessage). These constants name the bounds the package
// applies on top.
const (
	// MaxMessage bounds one DNS message, in bytes, without the TCP length
	// prefix: the most the prefix can announce. ParseDatagram refuses a
	// longer datagram with l7.ErrTooLong.
	MaxMessage = 65535
	// MaxCNAMEChain bounds how many CNAME records Answers follows from the
	// question's name; addresses further down a longer chain are not
	// reported. Resolvers give up after a similar number of hops.
	MaxCNAMEChain = 8

	// minQuery is the shortest query: a header and a question for the
	// root name. minReply is the shortest response: a header.
	minQuery = headerLen + 1 + 4
	minReply = headerLen
	// headerLen is the size of the DNS header.
	headerLen = 12
	// prefixLen is the size of the TCP length prefix.
	prefixLen = 2
)

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing (dnsmessage's own errors, which
// allocate, are never returned).
var (
	errBadDir       = fmt.Errorf("dns: unknown direction: %w", l7.ErrMalformed)
	errShort        = fmt.Errorf("dns: message shorter than its header and question: %w", l7.ErrMalformed)
	errResponse     = fmt.Errorf("dns: response (QR=1) in the request direction: %w", l7.ErrMalformed)
	errQuery        = fmt.Errorf("dns: query (QR=0) in the reply direction: %w", l7.ErrMalformed)
	errQDCount      = fmt.Errorf("dns: query without exactly one question: %w", l7.ErrMalformed)
	errReplyQDCount = fmt.Errorf("dns: response with more than one question: %w", l7.ErrMalformed)
	errDSO          = fmt.Errorf("dns: DNS stateful operations (opcode DSO) are not supported: %w", l7.ErrMalformed)
	errQuestion     = fmt.Errorf("dns: malformed question: %w", l7.ErrMalformed)
	errRecord       = fmt.Errorf("dns: malformed resource record: %w", l7.ErrMalformed)
	errOPT          = fmt.Errorf("dns: more than one OPT record, or one not owned by the root: %w", l7.ErrMalformed)

	errTooLong = fmt.Errorf("dns: datagram longer than 65535 bytes: %w", l7.ErrTooLong)
)

// Header bits (the 16-bit flags word after the ID).
const (
	bitQR = 1 << 15
	bitRD = 1 << 8
	bitRA = 1 << 7
	bitCD = 1 << 4
)

const opDSO = 6

// typeIXFR is the incremental zone transfer type (RFC 1995), which
// dnsmessage does not name.
const typeIXFR = dnsmessage.Type(251)

// Parser decodes the DNS messages of one connection, over TCP (Parse) or
// UDP (ParseDatagram). It is not safe for concurrent use. The zero value is
// ready to use.
//
// Frames are views into the input or into the parser's scratch buffers
// (one per direction), valid until the next call for the same direction.
type Parser struct {
	msg dnsmessage.Parser // reused for each message

	// Request scratch: the fields of the last request frame.
	verb [16]byte
	name [255]byte
	aux  [16]byte

	rep replyState
	xfr xfrState
	// slowReplies makes responses go through slowRecords only (tests
	// compare it with fastRecords).
	slowReplies bool

	// scratch receives the fields when Parse is given no Frame.
	scratch l7.Frame
}

// replyState is what Answers needs of the last reply frame.
type replyState struct {
	ok     bool                    // Answers has something to walk
	cnames bool                    // the answer section holds CNAME records
	msg    []byte                  // the response, checked whole by parseResponse
	name   [255]byte               // Answers' scratch: the question's name as reported
	chain  [MaxCNAMEChain + 1]link // Answers' scratch: the CNAME chain
}

// xfrState follows a zone transfer over TCP, whose response spans several
// messages: all but the last are Partial.
type xfrState struct {
	active  bool
	started bool // the first record (an SOA) was seen
	ixfr    bool
	diff    bool // IXFR: an SOA with another serial was seen
	id      uint16
	serial  uint32 // serial of the first SOA
	soas    int    // SOAs with that serial seen
}

var _ l7.Parser = (*Parser)(nil)

// NewParser returns a parser for one connection.
func NewParser() *Parser { return &Parser{} }

// Protocol describes DNS over TCP to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: prefixLen + MaxMessage,
	}
}

// Parse decodes the DNS-over-TCP message at the front of data: a 2-byte
// length, then the message (RFC 1035 4.2.2, RFC 7766); see l7.Parser. It
// frames every whole message (OpFrame, n = 2 + length) and asks for more
// with the exact number of bytes missing. Errors wrap l7.ErrMalformed.
//
// Requests: one frame per query (see the package doc for the fields).
// Replies: one frame per response; the messages of a zone transfer but its
// last are Partial. After a reply frame, Answers reports its addresses.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if f == nil {
		f = &p.scratch
	}
	var least int
	switch dir {
	case l7.DirRequest:
		least = minQuery
	case l7.DirReply:
		least = minReply
		p.rep.ok = false
	default:
		return l7.OpMore, 0, errBadDir
	}
	if len(data) < prefixLen {
		return l7.OpMore, prefixLen + least - len(data), nil
	}
	l := int(data[0])<<8 | int(data[1])
	if l < least {
		p.xfr = xfrState{}
		return l7.OpMore, 0, errShort
	}
	end := prefixLen + l
	if len(data) < end {
		return l7.OpMore, end - len(data), nil
	}
	if err := p.parse(dir, data[prefixLen:end:end], f, true); err != nil {
		p.xfr = xfrState{}
		return l7.OpMore, 0, err
	}
	return l7.OpFrame, end, nil
}

// ParseDatagram decodes one DNS-over-UDP message, msg being the whole
// datagram, into f (the same fields as Parse). It shares Parse's code and
// scratch buffers but no state between messages: over UDP every response
// is final. Answers works after a reply as after Parse. A datagram over
// MaxMessage bytes is l7.ErrTooLong, other faults l7.ErrMalformed.
func (p *Parser) ParseDatagram(dir l7.Dir, msg []byte, f *l7.Frame) error {
	if f == nil {
		f = &p.scratch
	}
	least := minQuery
	switch dir {
	case l7.DirRequest:
	case l7.DirReply:
		least = minReply
		p.rep.ok = false
	default:
		return errBadDir
	}
	if len(msg) > MaxMessage {
		return errTooLong
	}
	if len(msg) < least {
		return errShort
	}
	return p.parse(dir, msg[:len(msg):len(msg)], f, false)
}

func (p *Parser) parse(dir l7.Dir, msg []byte, f *l7.Frame, stream bool) error {
	if dir == l7.DirRequest {
		return p.parseQuery(msg, f)
	}
	return p.parseResponse(msg, f, stream)
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// parseQuery checks a whole query and fills the request frame: through
// fastQuery for the common shape, else through dnsmessage.
func (p *Parser) parseQuery(msg []byte, f *l7.Frame) error {
	if p.fastQuery(msg, f) {
		return nil
	}
	return p.slowQuery(msg, f)
}

// slowQuery is parseQuery through dnsmessage, for any query.
func (p *Parser) slowQuery(msg []byte, f *l7.Frame) error {
	h, err := p.msg.Start(msg)
	if err != nil {
		return errShort
	}
	switch {
	case h.Response:
		return errResponse
	case h.OpCode == opDSO:
		return errDSO
	case be16(msg[4:]) != 1:
		return errQDCount
	}
	q, err := p.msg.Question()
	if err != nil {
		return errQuestion
	}
	if err := p.msg.SkipQuestion(); err != dnsmessage.ErrSectionDone {
		return errQuestion
	}
	if p.msg.SkipAllAnswers() != nil || p.msg.SkipAllAuthorities() != nil {
		return errRecord
	}
	edns, do, _, err := p.additionals()
	if err != nil {
		return err
	}
	n := lowerName(p.name[:], &q.Name)
	p.fillQuery(f, Query{
		ID:     h.ID,
		OpCode: uint8(h.OpCode),
		RD:     h.RecursionDesired,
		CD:     h.CheckingDisabled,
		Type:   uint16(q.Type),
		Class:  uint16(q.Class),
		EDNS:   edns,
		DO:     do,
	}, n)
	return nil
}

// fillQuery fills the request frame of query q whose name, without its
// final dot and lower-cased, is p.name[:n].
func (p *Parser) fillQuery(f *l7.Frame, q Query, n int) {
	f.Reset(l7.DirRequest)
	var v []byte
	if q.OpCode == 0 {
		v = appendName(p.verb[:0], typeName(q.Type), "TYPE", uint64(q.Type))
	} else {
		v = appendName(p.verb[:0], opcodeName(q.OpCode), "OPCODE", uint64(q.OpCode))
	}
	f.Verb = v[:len(v):len(v)]
	if n > 0 {
		f.Resource = p.name[:n:n]
	}
	if q.Class != uint16(dnsmessage.ClassINET) {
		a := appendName(p.aux[:0], className(q.Class), "CLASS", uint64(q.Class))
		f.Aux = a[:len(a):len(a)]
	}
	f.Args = q.Args()
	// DNS clients pair responses with queries by ID, and servers may
	// answer pipelined queries out of order (RFC 7766 6.2.1.1).
	f.Unordered = true
}

// additionals walks the additional section: whether it holds an OPT
// record, its DO bit and its extended RCODE bits. More than one OPT, or
// one not owned by the root, is malformed (RFC 6891 6.1.1).
func (p *Parser) additionals() (edns, do bool, ext uint8, err error) {
	for {
		rh, err := p.msg.AdditionalHeader()
		if err == dnsmessage.ErrSectionDone {
			return edns, do, ext, nil
		}
		if err != nil {
			return false, false, 0, errRecord
		}
		if rh.Type == dnsmessage.TypeOPT {
			if edns || rh.Name.Length != 1 || rh.Name.Data[0] != '.' {
				return false, false, 0, errOPT
			}
			edns = true
			do = rh.TTL&0x8000 != 0
			ext = uint8(rh.TTL >> 24)
		}
		if p.msg.SkipAdditional() != nil {
			return false, false, 0, errRecord
		}
	}
}

// lowerName writes n without its final dot, ASCII lower-cased, to dst and
// returns its length: 0 for the root.
func lowerName(dst []byte, n *dnsmessage.Name) int {
	l := int(n.Length)
	if l > 0 && n.Data[l-1] == '.' {
		l--
	}
	for i, c := range n.Data[:l] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return l
}

// parseResponse checks a whole response and fills the reply frame; stream
// is true over TCP, where zone transfers span several messages. The header
// and question are read straight from the bytes, with dnsmessage's rules
// (Start, Question: unpackName); what Answers needs of them is read again
// by Answers, off the verdict path.
func (p *Parser) parseResponse(msg []byte, f *l7.Frame, stream bool) error {
	if len(msg) < headerLen {
		return errShort
	}
	bits := be16(msg[2:])
	if bits&bitQR == 0 {
		return errQuery
	}
	qd := be16(msg[4:])
	if qd > 1 {
		return errReplyQDCount
	}
	off := headerLen
	var (
		qtype  dnsmessage.Type
		qclass dnsmessage.Class
	)
	if qd == 1 {
		next, _, ok := unpackName(msg, off)
		if !ok || next+4 > len(msg) {
			return errQuestion
		}
		qtype, qclass = dnsmessage.Type(be16(msg[next:])), dnsmessage.Class(be16(msg[next+2:]))
		off = next + 4
	}
	id, opcode, rcode := be16(msg), bits>>11&0xF, dnsmessage.RCode(bits&0xF)
	// A zone transfer over TCP: follow its SOA records to find its last
	// message (RFC 5936 2.2, RFC 1995 4).
	xfrQ := qd == 1 && opcode == 0 && (qtype == dnsmessage.TypeAXFR || qtype == typeIXFR)
	x := &p.xfr
	inXfr := stream && ((x.active && id == x.id && (qd == 0 || xfrQ)) || xfrQ)
	if inXfr && !(x.active && id == x.id) {
		*x = xfrState{active: true, id: id, ixfr: qtype == typeIXFR}
	}
	var (
		cnames, done bool
		ext          uint8
		err          error
	)
	if !inXfr && !p.slowReplies {
		if cnames, ext, err = fastRecords(msg, off); err != nil {
			return err
		}
	} else if cnames, done, ext, err = p.slowRecords(msg, inXfr); err != nil {
		return err
	}

	f.Reset(l7.DirReply)
	f.Err = rcode != dnsmessage.RCodeSuccess || ext != 0
	f.Args = int(be16(msg[6:]))
	if inXfr {
		if done {
			*x = xfrState{}
		} else {
			f.Partial = true
		}
	}
	r := &p.rep
	r.ok = qd == 1 && opcode == 0 && !f.Err && qclass == dnsmessage.ClassINET && be16(msg[6:]) > 0
	if r.ok {
		r.cnames = cnames
		r.msg = msg
	}
	return nil
}

// slowRecords checks the record sections through dnsmessage, following a
// zone transfer's SOA records when inXfr; it returns whether an answer is
// a CNAME, whether the transfer is done, and the OPT record's extended
// RCODE bits. fastRecords does the same for responses outside transfers.
func (p *Parser) slowRecords(msg []byte, inXfr bool) (cnames, done bool, ext uint8, err error) {
	// parseResponse checked the header and the question as Start and
	// Question do.
	h, err := p.msg.Start(msg)
	if err != nil {
		return false, false, 0, errShort
	}
	if be16(msg[4:]) == 1 {
		if _, err := p.msg.Question(); err != nil {
			return false, false, 0, errQuestion
		}
	}
	if err := p.msg.SkipQuestion(); err != dnsmessage.ErrSectionDone {
		return false, false, 0, errQuestion
	}
	done = h.RCode != dnsmessage.RCodeSuccess
	x := &p.xfr
	first := inXfr && !x.started
	for k := 0; ; k++ {
		rh, err := p.msg.AnswerHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return false, false, 0, errRecord
		}
		cnames = cnames || rh.Type == dnsmessage.TypeCNAME
		if !inXfr || done || (rh.Type != dnsmessage.TypeSOA && x.started) {
			if p.msg.SkipAnswer() != nil {
				return false, false, 0, errRecord
			}
			continue
		}
		if rh.Type != dnsmessage.TypeSOA {
			// A transfer must start with an SOA; end it here rather
			// than wait for one.
			done = true
			if p.msg.SkipAnswer() != nil {
				return false, false, 0, errRecord
			}
			continue
		}
		soa, err := p.msg.SOAResource()
		if err != nil {
			return false, false, 0, errRecord
		}
		switch {
		case !x.started:
			x.started, x.serial, x.soas = true, soa.Serial, 1
			// IXFR: a lone SOA means "up to date" (RFC 1995 4).
			done = x.ixfr && first && k == 0 && be16(msg[6:]) == 1
		case soa.Serial == x.serial:
			x.soas++
			done = (x.soas == 2 && (!x.ixfr || !x.diff)) || x.soas == 3
		default:
			x.diff = true
		}
	}
	if p.msg.SkipAllAuthorities() != nil {
		return false, false, 0, errRecord
	}
	_, _, ext, err = p.additionals()
	if err != nil {
		return false, false, 0, err
	}
	return cnames, done, ext, nil

}

// Answers reports the addresses the last reply frame (of Parse or
// ParseDatagram) gives for its question, so that the proxy can learn
// which names an egress address stands for. It calls fn once per A or
// AAAA record of class IN in the answer section whose owner is the
// question's name, or a name that CNAME records of the answer section
// lead to from it (at most MaxCNAMEChain hops, in any order; loops are
// cut). name is always the question's name in the form of Frame.Resource
// (lower case, no final dot; empty for the root), a view valid until the
// next reply-direction call; ttl is the smallest TTL along the chain.
// Records off the chain (unrelated owners) are not reported.
//
// It reports nothing when the last reply-direction call failed, asked for
// more bytes, or framed a response that is not a successful (NOERROR)
// answer to a standard query of class IN. It must be called before the
// next reply-direction Parse or ParseDatagram, while the reply's bytes are
// unchanged (request-direction calls do not matter), and fn must not call
// Answers; it allocates nothing.
func (p *Parser) Answers(fn func(name []byte, addr netip.Addr, ttl uint32)) {
	r := &p.rep
	if !r.ok || fn == nil {
		return
	}
	// parseResponse checked the message whole: its question parses. Its
	// name goes straight into the chain (rather than through
	// dnsmessage's Question, a copy of it and a copy of that), and the
	// chain is the parser's (a local one was 2.3 KB to zero per call).
	var a0 dnsmessage.Parser
	if _, err := a0.Start(r.msg); err != nil || a0.SkipAllQuestions() != nil {
		return
	}
	chain := &r.chain
	if !nameInto(&chain[0].name, r.msg, headerLen) {
		return
	}
	chain[0].ttl = math.MaxUint32
	n := 1
	if r.cnames {
		// Follow CNAMEs until a pass adds nothing: one pass when the
		// server lists the chain in order, as servers do.
		for grew := true; grew && n < len(chain); {
			grew = false
			a := a0
			for n < len(chain) {
				rh, err := a.AnswerHeader()
				if err != nil {
					break
				}
				i := -1
				if rh.Type == dnsmessage.TypeCNAME && rh.Class == dnsmessage.ClassINET {
					i = find(chain[:n], &rh.Name)
				}
				if i < 0 {
					if a.SkipAnswer() != nil {
						break
					}
					continue
				}
				c, err := a.CNAMEResource()
				if err != nil {
					break
				}
				if find(chain[:n], &c.CNAME) >= 0 {
					continue
				}
				chain[n] = link{name: c.CNAME, ttl: min(chain[i].ttl, rh.TTL)}
				n++
				grew = true
			}
		}
	}
	nlen := lowerName(r.name[:], &chain[0].name)
	name := r.name[:nlen:nlen]
	a := a0
	for {
		rh, err := a.AnswerHeader()
		if err != nil {
			return
		}
		i := -1
		if (rh.Type == dnsmessage.TypeA || rh.Type == dnsmessage.TypeAAAA) && rh.Class == dnsmessage.ClassINET {
			i = find(chain[:n], &rh.Name)
		}
		switch {
		case i < 0:
			if a.SkipAnswer() != nil {
				return
			}
		case rh.Type == dnsmessage.TypeA:
			v, err := a.AResource()
			if err != nil {
				return
			}
			fn(name, netip.AddrFrom4(v.A), min(chain[i].ttl, rh.TTL))
		default:
			v, err := a.AAAAResource()
			if err != nil {
				return
			}
			fn(name, netip.AddrFrom16(v.AAAA), min(chain[i].ttl, rh.TTL))
		}
	}
}

// link is one name of a CNAME chain and the least TTL leading to it.
type link struct {
	name dnsmessage.Name
	ttl  uint32
}

// find returns the index of the link whose name equals n (ASCII case
// folded, as DNS compares names), or -1.
func find(chain []link, n *dnsmessage.Name) int {
	for i := range chain {
		if equalFold(chain[i].name.Data[:chain[i].name.Length], n.Data[:n.Length]) {
			return i
		}
	}
	return -1
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Query is what a deny reply needs of the query it answers. The parser
// packs it into a request Frame's Args (Query.Args) and Deny unpacks it
// (QueryOf), so that Deny needs nothing but the Frame.
type Query struct {
	ID     uint16
	OpCode uint8 // 0 QUERY, 4 NOTIFY, 5 UPDATE…; 4 bits
	RD, CD bool  // recursion desired, checking disabled
	Type   uint16
	Class  uint16
	EDNS   bool // the query had an OPT record
	DO     bool // its DNSSEC OK bit
}

// Layout of Query in Frame.Args: bits 0-15 ID, 16-31 type, 32-47 class,
// 48-51 opcode, 52 RD, 53 CD, 54 EDNS, 55 DO, 56 set (marks a packed
// query). Always positive, so it fits an int on 64-bit platforms.
const (
	argsRD    = 1 << 52
	argsCD    = 1 << 53
	argsEDNS  = 1 << 54
	argsDO    = 1 << 55
	argsValid = 1 << 56
)

// Args returns q packed for Frame.Args.
func (q Query) Args() int {
	v := uint64(q.ID) | uint64(q.Type)<<16 | uint64(q.Class)<<32 | uint64(q.OpCode&0xF)<<48 | argsValid
	if q.RD {
		v |= argsRD
	}
	if q.CD {
		v |= argsCD
	}
	if q.EDNS {
		v |= argsEDNS
	}
	if q.DO {
		v |= argsDO
	}
	return int(v)
}

// QueryOf unpacks the Query of a request frame made by the parser; ok is
// false when f is nil or its Args holds none.
func QueryOf(f *l7.Frame) (q Query, ok bool) {
	if f == nil || f.Args < 0 {
		return Query{}, false
	}
	v := uint64(f.Args)
	if v&argsValid == 0 || v >= argsValid<<1 {
		return Query{}, false
	}
	return Query{
		ID:     uint16(v),
		Type:   uint16(v >> 16),
		Class:  uint16(v >> 32),
		OpCode: uint8(v>>48) & 0xF,
		RD:     v&argsRD != 0,
		CD:     v&argsCD != 0,
		EDNS:   v&argsEDNS != 0,
		DO:     v&argsDO != 0,
	}, true
}
