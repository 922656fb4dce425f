package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/sqlverb"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "postgres"

// Wire limits, the server's own. A length word counts itself; the limits
// below bound the length word of a message (its type byte excluded).
const (
	// MaxStartup bounds a startup-phase packet (StartupMessage,
	// SSLRequest, GSSENCRequest, CancelRequest): the server's
	// MAX_STARTUP_PACKET_LENGTH (10000) plus the length word.
	MaxStartup = 10000 + 4
	// MaxSmall bounds Close, Describe, Execute, Flush, Sync, Terminate,
	// CopyDone and CopyFail: the server's PQ_SMALL_MESSAGE_LIMIT.
	MaxSmall = 10000
	// MaxAuth bounds a password, SASL or GSSAPI message ('p'): the
	// server's PG_MAX_AUTH_TOKEN_LENGTH.
	MaxAuth = 65535
	// MaxLarge bounds Query, Parse, Bind, FunctionCall and CopyData: the
	// server's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1). Backend messages
	// may use the whole int32 range.
	MaxLarge = 1<<30 - 2
	// MaxName is how much of a statement, portal or database name counts:
	// the server keys prepared statements and portals on their first 63
	// bytes (NAMEDATALEN - 1) and cuts a database name to as many.
	MaxName = 63
	// StreamAbove is the largest message held whole where its content is
	// not needed: a longer backend message, Bind or FunctionCall is framed
	// by its head and the rest skipped as it arrives (OpSkip), so the
	// proxy never buffers more of it than this.
	StreamAbove = 16 << 10
	// maxTLSRecord bounds the record of a ClientHello sent directly.
	maxTLSRecord = 1<<14 + 2048
)

// Default limits and their caps (NewParserWithLimits clamps to the caps).
const (
	// DefaultMaxQuery bounds a Query or Parse message, which is held
	// whole so that its SQL can be read: 16 MiB.
	DefaultMaxQuery = 16 << 20
	// DefaultMaxStatements bounds the prepared statements a Parser
	// remembers: 1024, twice the statement cache of common drivers.
	DefaultMaxStatements = 1024
	// DefaultMaxPortals bounds the portals a Parser remembers: 64.
	DefaultMaxPortals = 64

	CapMaxQuery      = MaxLarge
	CapMaxStatements = 1 << 16
	CapMaxPortals    = 1 << 12
)

// Limits bound what a Parser accepts and remembers. A zero field takes its
// default.
type Limits struct {
	// MaxQuery bounds a Query or Parse message in bytes, length word
	// included; a longer one is an error wrapping l7.ErrTooLong.
	MaxQuery int
	// MaxStatements bounds the prepared statements remembered; past it
	// the least recently used one is forgotten, and an Execute of it is
	// judged as an unknown statement.
	MaxStatements int
	// MaxPortals bounds the portals remembered, likewise.
	MaxPortals int
}

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{MaxQuery: DefaultMaxQuery, MaxStatements: DefaultMaxStatements, MaxPortals: DefaultMaxPortals}
}

// Validate reports fields that are negative or above their cap.
func (l Limits) Validate() error {
	var errs []error
	check := func(name string, v, max int) {
		if v < 0 || v > max {
			errs = append(errs, fmt.Errorf("postgres: limit %s = %d, want 0 (default) to %d", name, v, max))
		}
	}
	check("MaxQuery", l.MaxQuery, CapMaxQuery)
	check("MaxStatements", l.MaxStatements, CapMaxStatements)
	check("MaxPortals", l.MaxPortals, CapMaxPortals)
	return errors.Join(errs...)
}

func (l Limits) normalized() Limits {
	pick := func(v, def, max int) int {
		switch {
		case v <= 0:
			return def
		case v > max:
			return max
		}
		return v
	}
	return Limits{
		MaxQuery:      pick(l.MaxQuery, DefaultMaxQuery, CapMaxQuery),
		MaxStatements: pick(l.MaxStatements, DefaultMaxStatements, CapMaxStatements),
		MaxPortals:    pick(l.MaxPortals, DefaultMaxPortals, CapMaxPortals),
	}
}

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir       = fmt.Errorf("postgres: unknown direction: %w", l7.ErrMalformed)
	errBadLength    = fmt.Errorf("postgres: invalid message length: %w", l7.ErrMalformed)
	errBadType      = fmt.Errorf("postgres: invalid frontend message type: %w", l7.ErrMalformed)
	errBadReplyType = fmt.Errorf("postgres: invalid backend message type: %w", l7.ErrMalformed)
	errBadStartup   = fmt.Errorf("postgres: invalid startup packet layout: %w", l7.ErrMalformed)
	errBadVersion   = fmt.Errorf("postgres: unsupported frontend protocol: %w", l7.ErrMalformed)
	errBadTLS       = fmt.Errorf("postgres: invalid TLS record before the startup packet: %w", l7.ErrMalformed)
	errBadMessage   = fmt.Errorf("postgres: invalid message format: %w", l7.ErrMalformed)
	errBadStatus    = fmt.Errorf("postgres: invalid ReadyForQuery status: %w", l7.ErrMalformed)
	errClosed       = fmt.Errorf("postgres: data after Terminate, CancelRequest or a refused TLS handshake: %w", l7.ErrMalformed)

	errStartupTooLong = fmt.Errorf("postgres: startup packet longer than %d bytes: %w", MaxStartup, l7.ErrTooLong)
	errTLSTooLong     = fmt.Errorf("postgres: TLS record longer than %d bytes: %w", maxTLSRecord, l7.ErrTooLong)
	errMessageTooLong = fmt.Errorf("postgres: message longer than the server accepts for its type: %w", l7.ErrTooLong)
	errQueryTooLong   = fmt.Errorf("postgres: query or parse message longer than MaxQuery: %w", l7.ErrTooLong)
	errNamesTooLong   = fmt.Errorf("postgres: bind names longer than %d bytes: %w", StreamAbove, l7.ErrTooLong)
)

// Startup-phase request codes.
const (
	sslCode    = 80877103 // SSLRequest
	gssCode    = 80877104 // GSSENCRequest
	cancelCode = 80877102 // CancelRequest
	// A StartupMessage carries the protocol version: major 3 in the high
	// 16 bits (3.0 = 196608).
	protoMajor3 = 3

	tlsHandshake = 0x16 // TLS record type of a ClientHello
	// gssInitialToken starts every GSSAPI initial context token (RFC 2743
	// section 3.1: [APPLICATION 0]), the first packet of GSS encryption.
	gssInitialToken = 0x60
)

// Verbs of the frames that carry no SQL.
var (
	verbSSL      = []byte("SSL")
	verbGSS      = []byte("GSSENC")
	verbCancel   = []byte("CANCEL")
	verbFunction = []byte("FUNCTION_CALL")
	// verbExecute is the verb of an Execute whose portal or statement
	// the parser does not know (a cursor declared in SQL, a statement
	// prepared behind its back or forgotten): what SQL EXECUTE reports.
	verbExecute = []byte("EXECUTE")
)

// view returns b capacity-limited, so that appending to a frame's view
// cannot write into the parser's or the caller's memory.
func view(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[:len(b):len(b)]
}

// Parser decodes the requests and replies of one PostgreSQL connection.
// The zero value uses DefaultLimits.
//
// One Parser serves both directions of a connection. Parse may be called
// for l7.DirRequest and l7.DirReply at the same time from two goroutines,
// one per direction: the directions keep separate state and share only the
// session's transaction status (atomic), which the replies set and the
// deny replies of requests report. Calls for one direction must not
// overlap, and Denied belongs to the request direction's goroutine. A
// Parser given one direction only works too, except that its requests then
// report the transaction status as idle.
type Parser struct {
	lim Limits // normalised; zero before first use
	req reqState
	rep repState
	// status is the transaction status byte of the last ReadyForQuery
	// ('I', 'T' or 'E'); 0 before the first.
	status atomic.Uint32

	// Request direction only.
	stmt               *sqlverb.Statement // scanner scratch, allocated on first use
	stmts              table              // prepared statements by name
	portals            table              // portals by name
	db                 [MaxName]byte      // the session's database
	dbLen              int
	stage              [MaxName]byte // the name a pending Parse or SQL statement acts on
	stageN             int
	oid                [10]byte // FunctionCall OID, decimal
	reqSpare, repSpare l7.Frame // filled when Parse is given no Frame
}

var (
	_ l7.Parser       = (*Parser)(nil)
	_ l7.DenyObserver = (*Parser)(nil)
)

// NewParser returns a parser with DefaultLimits.
func NewParser() *Parser { return NewParserWithLimits(Limits{}) }

// NewParserWithLimits returns a parser with the given limits: zero fields
// take their defaults and values above the caps are clamped (Validate
// reports them).
func NewParserWithLimits(l Limits) *Parser {
	p := &Parser{}
	p.lim = l.normalized()
	return p
}

// Limits returns the limits in force.
func (p *Parser) Limits() Limits { return p.lim.normalized() }

func (p *Parser) limits() *Limits {
	if p.lim.MaxQuery == 0 {
		p.lim = Limits{}.normalized()
	}
	return &p.lim
}

// Protocol describes PostgreSQL to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: DefaultMaxQuery,
	}
}

// Status returns the transaction status the server reported in its last
// ReadyForQuery: 'I' (idle, also before the first), 'T' (in a transaction
// block) or 'E' (in a failed transaction block).
func (p *Parser) Status() byte {
	if s := byte(p.status.Load()); s != 0 {
		return s
	}
	return 'I'
}

// Parse decodes the message at the front of data; see l7.Parser and the
// package documentation for what each message gives.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	switch dir {
	case l7.DirRequest:
		if f == nil {
			f = &p.reqSpare
		}
		return p.parseRequest(data, f)
	case l7.DirReply:
		if f == nil {
			f = &p.repSpare
		}
		return p.parseReply(data, f)
	}
	return l7.OpMore, 0, errBadDir
}

// be32 reads a big-endian 32-bit integer; b holds at least 4 bytes.
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// clip returns the part of a name the server compares.
func clip(name []byte) []byte { return name[:min(len(name), MaxName)] }

// Request direction.

type reqPhase uint8

const (
	phaseStartup reqPhase = iota // untyped startup-phase packets
	phaseTyped                   // typed messages, after the StartupMessage
	phasePass                    // encrypted: nothing more to parse
	phaseClosed                  // after Terminate, CancelRequest or a refused direct TLS
)

// kind is what the last request frame was, for Denied.
type kind uint8

const (
	kindNone kind = iota
	kindSSL
	kindGSS
	kindDirectTLS
	kindCancel
	kindQuery
	kindParse
	kindExecute
	kindFunction
)

// pending is a state change that a request frame makes once it is
// forwarded. It is applied at the next request-direction Parse unless
// Denied drops it: the server never saw a denied message.
type pending uint8

const (
	pendNone  pending = iota
	pendParse         // remember stage → the scanned statement
	pendQuery         // forget the unnamed statement and portal, apply sqlOp
)

type reqState struct {
	phase    reqPhase
	sslAsked bool // an SSLRequest went out: a TLS record next is the answer 'S'
	gssAsked bool // a GSSENCRequest went out: non-startup bytes next are GSS
	// discard: a Parse or Execute was denied; the server would skip
	// everything up to Sync, so the parser skips it (the proxy drops
	// skipped bytes that follow a denied frame).
	discard bool
	skip    int // bytes of the current message still to skip
	last    kind
	pend    pending
	op      sqlOp // the pending Query's statement management
}

func (p *Parser) parseRequest(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	if st.pend != pendNone {
		p.commit()
	}
	st.last = kindNone
	if st.skip > 0 {
		if len(data) == 0 {
			return l7.OpMore, 1, nil
		}
		n := min(len(data), st.skip)
		st.skip -= n
		f.Reset(l7.DirRequest)
		return l7.OpSkip, n, nil
	}
	switch st.phase {
	case phaseStartup:
		return p.startup(data, f)
	case phaseTyped:
		return p.typed(data, f)
	case phasePass:
		return l7.OpPass, 0, nil
	}
	if len(data) == 0 {
		return l7.OpMore, 1, nil
	}
	return l7.OpMore, 0, errClosed
}

// startup frames a startup-phase packet: int32 length, int32 code, then
// the StartupMessage's parameters; or a TLS record.
func (p *Parser) startup(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	if len(data) == 0 {
		return l7.OpMore, 5, nil // a TLS record header at least
	}
	if data[0] == tlsHandshake {
		return p.tls(data, f)
	}
	if len(data) >= 4 && !st.gssAsked {
		// After a GSSENCRequest a GSSAPI packet (up to 16 KiB) may
		// follow: judge the length once byte 4 tells which it is.
		if l := be32(data); l < 8 {
			return l7.OpMore, 0, errBadLength
		} else if l > MaxStartup {
			return l7.OpMore, 0, errStartupTooLong
		}
	}
	if len(data) < 8 {
		return l7.OpMore, 8 - len(data), nil
	}
	length, code := be32(data), be32(data[4:])
	if st.gssAsked && data[4] == gssInitialToken {
		// The server answered 'G': the client's first GSSAPI packet,
		// its initial context token. Anything else goes on as a
		// startup packet: a server that refused GSS encryption reads
		// it as one (PostgreSQL 13 and older accept protocol 2.0).
		st.phase = phasePass
		return l7.OpPass, 0, nil
	}
	switch {
	case length < 8:
		return l7.OpMore, 0, errBadLength
	case length > MaxStartup:
		return l7.OpMore, 0, errStartupTooLong
	}
	switch {
	case code == sslCode || code == gssCode:
		if length != 8 {
			return l7.OpMore, 0, errBadStartup
		}
		f.Reset(l7.DirRequest)
		if code == sslCode {
			f.Verb = view(verbSSL)
			st.sslAsked, st.last = true, kindSSL
		} else {
			f.Verb = view(verbGSS)
			st.gssAsked, st.last = true, kindGSS
		}
		return l7.OpFrame, 8, nil
	case code == cancelCode:
		if length != 16 {
			return l7.OpMore, 0, errBadStartup
		}
		if len(data) < 16 {
			return l7.OpMore, 16 - len(data), nil
		}
		f.Reset(l7.DirRequest)
		f.Verb = view(verbCancel)
		f.NoReply = true
		st.last = kindCancel
		st.phase = phaseClosed
		return l7.OpFrame, 16, nil
	case code>>16 == protoMajor3:
		n := int(length)
		if len(data) < n {
			return l7.OpMore, n - len(data), nil
		}
		user, db, ok := startupParams(data[8:n])
		if !ok {
			return l7.OpMore, 0, errBadStartup
		}
		if len(db) == 0 {
			db = user // the server's default
		}
		p.dbLen = copy(p.db[:], clip(db))
		f.Reset(l7.DirRequest)
		f.Control = true
		f.Aux = p.database()
		st.phase = phaseTyped
		return l7.OpFrame, n, nil
	}
	return l7.OpMore, 0, errBadVersion
}

// startupParams walks the StartupMessage's parameters as the server does:
// name NUL value NUL pairs, then a final NUL as the packet's last byte.
func startupParams(b []byte) (user, db []byte, ok bool) {
	i := 0
	for {
		if i >= len(b) {
			return nil, nil, false
		}
		if b[i] == 0 {
			return user, db, i == len(b)-1
		}
		k := bytes.IndexByte(b[i:], 0)
		if k < 0 {
			return nil, nil, false
		}
		key := b[i : i+k]
		i += k + 1
		v := bytes.IndexByte(b[i:], 0)
		if v < 0 {
			return nil, nil, false
		}
		val := b[i : i+v]
		i += v + 1
		switch string(key) {
		case "user":
			user = val
		case "database":
			db = val
		}
	}
}

func (p *Parser) database() []byte { return view(p.db[:p.dbLen]) }

// tls handles a TLS record where a startup packet would be: the client's
// answer to 'S' after an SSLRequest (pass), or a ClientHello sent without
// one (PostgreSQL 17's sslnegotiation=direct), framed for the policy.
func (p *Parser) tls(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	if st.sslAsked {
		st.phase = phasePass
		return l7.OpPass, 0, nil
	}
	if len(data) >= 2 && data[1] != 3 {
		return l7.OpMore, 0, errBadTLS
	}
	if len(data) < 5 {
		return l7.OpMore, 5 - len(data), nil
	}
	rl := int(data[3])<<8 | int(data[4])
	if rl == 0 {
		return l7.OpMore, 0, errBadTLS
	}
	if rl > maxTLSRecord {
		return l7.OpMore, 0, errTLSTooLong
	}
	n := 5 + rl
	if len(data) < n {
		return l7.OpMore, n - len(data), nil
	}
	f.Reset(l7.DirRequest)
	f.Verb = view(verbSSL)
	f.NoReply = true // the answer is the TLS handshake: nothing to count
	st.last = kindDirectTLS
	st.phase = phasePass
	return l7.OpFrame, n, nil
}

// frontendLimit is the server's bound on a message's length word by type,
// 0 for a type the server refuses.
func frontendLimit(t byte) int {
	switch t {
	case 'Q', 'P', 'B', 'F', 'd':
		return MaxLarge
	case 'C', 'D', 'E', 'H', 'S', 'X', 'c', 'f':
		return MaxSmall
	case 'p':
		return MaxAuth
	}
	return 0
}

// typed frames one typed frontend message: type byte, int32 length, body.
func (p *Parser) typed(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	if len(data) == 0 {
		return l7.OpMore, 5, nil
	}
	t := data[0]
	lim := frontendLimit(t)
	if lim == 0 {
		return l7.OpMore, 0, errBadType
	}
	if len(data) < 5 {
		return l7.OpMore, 5 - len(data), nil
	}
	length := be32(data[1:])
	if length < 4 {
		return l7.OpMore, 0, errBadLength
	}
	if length > uint32(lim) {
		return l7.OpMore, 0, errMessageTooLong
	}
	total := 1 + int(length)
	if st.discard && t != 'S' && t != 'X' {
		return p.skipMessage(data, total, f)
	}
	switch t {
	case 'Q':
		return p.query(data, total, f)
	case 'P':
		return p.parse(data, total, f)
	case 'B':
		return p.bind(data, total, f)
	case 'E':
		return p.execute(data, total, f)
	case 'D', 'C':
		return p.describeClose(t, data, total, f)
	case 'F':
		return p.function(data, total, f)
	case 'H', 'S', 'X':
		if total != 5 {
			return l7.OpMore, 0, errBadMessage
		}
		f.Reset(l7.DirRequest)
		f.Control = true
		f.Aux = p.database()
		switch t {
		case 'S':
			st.discard = false
		case 'H':
			f.NoReply = true
		case 'X':
			f.NoReply = true
			st.discard = false
			st.phase = phaseClosed
		}
		return l7.OpFrame, 5, nil
	case 'p':
		if len(data) < total {
			return l7.OpMore, total - len(data), nil
		}
		f.Reset(l7.DirRequest)
		f.Control = true
		f.NoReply = true
		f.Aux = p.database()
		return l7.OpFrame, total, nil
	}
	// 'd', 'c', 'f': COPY data, done, fail.
	return p.skipMessage(data, total, f)
}

// skipMessage skips a message of total bytes, streaming it.
func (p *Parser) skipMessage(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	n := min(len(data), total)
	p.req.skip = total - n
	f.Reset(l7.DirRequest)
	return l7.OpSkip, n, nil
}

// judged fills what every judged frame of a typed message carries.
func (p *Parser) judged(f *l7.Frame) {
	f.Reset(l7.DirRequest)
	f.Aux = p.database()
	f.Args = int(p.Status())
}

// scan runs the SQL lexer on text into the parser's statement scratch.
func (p *Parser) scan(text []byte) (*sqlverb.Statement, error) {
	if p.stmt == nil {
		p.stmt = new(sqlverb.Statement)
	}
	return p.stmt, sqlverb.Scan(text, sqlverb.Postgres, p.stmt)
}

// cstring splits b at its first NUL: the string and what follows.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// query frames a simple Query: the SQL text, NUL-terminated.
func (p *Parser) query(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	if total > p.limits().MaxQuery {
		return l7.OpMore, 0, errQueryTooLong
	}
	if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	// The text: all of the body but its last byte, the only NUL.
	body := data[5:total]
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		return l7.OpMore, 0, errBadMessage
	}
	text := body[:len(body)-1]
	s, err := p.scan(text)
	if err != nil {
		return l7.OpMore, 0, err
	}
	p.judged(f)
	if len(s.Verb) == 0 {
		f.Control = true // nothing to run: EmptyQueryResponse
		f.Args = 0
	} else {
		s.Fill(f)
		p.req.last = kindQuery
	}
	// The server drops the unnamed statement and portal on every Query;
	// PREPARE, DEALLOCATE and DISCARD change the named ones.
	p.req.pend = pendQuery
	var name []byte
	p.req.op, name = statementOp(text, s, &p.stage)
	p.stageN = len(name)
	return l7.OpFrame, total, nil
}

// parse frames a Parse: statement name, SQL text, parameter type OIDs.
func (p *Parser) parse(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	if total > p.limits().MaxQuery {
		return l7.OpMore, 0, errQueryTooLong
	}
	if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	name, rest, ok := cstring(data[5:total])
	if !ok {
		return l7.OpMore, 0, errBadMessage
	}
	text, rest, ok := cstring(rest)
	if !ok || len(rest) < 2 || len(rest)-2 != 4*(int(rest[0])<<8|int(rest[1])) {
		return l7.OpMore, 0, errBadMessage
	}
	s, err := p.scan(text)
	if err != nil {
		return l7.OpMore, 0, err
	}
	p.judged(f)
	f.NoReply = true
	if len(s.Verb) == 0 {
		f.Control = true
		f.Args = 0
	} else {
		s.Fill(f)
		p.req.last = kindParse
	}
	p.req.pend = pendParse
	p.stageN = copy(p.stage[:], clip(name))
	return l7.OpFrame, total, nil
}

// bind frames a Bind by its portal and statement names; a Bind longer
// than StreamAbove is framed up to the names and the rest (parameters)
// skipped as it arrives.
func (p *Parser) bind(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	end := total
	if total > StreamAbove {
		end = min(len(data), total)
	} else if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	portal, rest, ok := cstring(data[5:end])
	var stmt []byte
	if ok {
		stmt, rest, ok = cstring(rest)
	}
	switch {
	case ok:
	case end == total:
		return l7.OpMore, 0, errBadMessage
	case end >= StreamAbove:
		return l7.OpMore, 0, errNamesTooLong
	default:
		return l7.OpMore, 1, nil
	}
	n := total
	if total > StreamAbove {
		n = end - len(rest)
		p.req.skip = total - n
	}
	e := p.portals.put(clip(portal), p.limits().MaxPortals)
	if src := p.stmts.find(clip(stmt)); src != nil {
		e.info.copyFrom(&src.info)
	} else {
		e.info.state = infoUnknown
	}
	f.Reset(l7.DirRequest)
	f.Control = true
	f.NoReply = true
	f.Aux = p.database()
	return l7.OpFrame, n, nil
}

// execute frames an Execute with the verb and tables of its portal's
// statement.
func (p *Parser) execute(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	portal, rest, ok := cstring(data[5:total])
	if !ok || len(rest) != 4 {
		return l7.OpMore, 0, errBadMessage
	}
	p.judged(f)
	f.NoReply = true
	e := p.portals.find(clip(portal))
	switch {
	case e == nil || e.info.state == infoUnknown:
		f.Verb = view(verbExecute)
		p.req.last = kindExecute
	case e.info.state == infoEmpty:
		f.Control = true
		f.Args = 0
	default:
		e.info.fill(f)
		p.req.last = kindExecute
	}
	return l7.OpFrame, total, nil
}

// describeClose frames a Describe or Close: 'S' or 'P', then a name.
func (p *Parser) describeClose(t byte, data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	body := data[5:total]
	if len(body) < 2 || (body[0] != 'S' && body[0] != 'P') {
		return l7.OpMore, 0, errBadMessage
	}
	name, rest, ok := cstring(body[1:])
	if !ok || len(rest) != 0 {
		return l7.OpMore, 0, errBadMessage
	}
	if t == 'C' {
		if body[0] == 'S' {
			p.stmts.remove(clip(name))
		} else {
			p.portals.remove(clip(name))
		}
	}
	f.Reset(l7.DirRequest)
	f.Control = true
	f.NoReply = true
	f.Aux = p.database()
	return l7.OpFrame, total, nil
}

// function frames a FunctionCall by its head (type, length, function OID);
// the arguments are skipped as they arrive.
func (p *Parser) function(data []byte, total int, f *l7.Frame) (l7.Op, int, error) {
	// OID, argument format count, argument count, result format: 10 bytes.
	if total < 5+10 {
		return l7.OpMore, 0, errBadMessage
	}
	if len(data) < 9 {
		return l7.OpMore, 9 - len(data), nil
	}
	p.judged(f)
	f.Verb = view(verbFunction)
	f.Resource = view(appendUint(p.oid[:0], be32(data[5:])))
	p.req.last = kindFunction
	p.req.skip = total - 9
	return l7.OpFrame, 9, nil
}

// appendUint appends v in decimal to dst, which has room for 10 digits.
func appendUint(dst []byte, v uint32) []byte {
	var tmp [10]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// commit applies the state change of the last request frame, which the
// proxy forwarded (it did not call Denied).
func (p *Parser) commit() {
	st := &p.req
	name := p.stage[:p.stageN]
	switch st.pend {
	case pendParse:
		p.remember(name, p.stmt, false)
	case pendQuery:
		p.stmts.remove(nil)
		p.portals.remove(nil)
		switch st.op {
		case opPrepare:
			p.remember(name, p.stmt, true)
		case opDeallocate:
			p.stmts.remove(name)
		case opDeallocateAll:
			p.stmts.clear()
		case opDiscardAll, opForgetAll:
			p.stmts.clear()
			p.portals.clear()
		}
	}
	st.pend, st.op = pendNone, opNone
}

// remember records the statement s under name. A named statement that
// already exists is not replaced by the server (duplicate_prepared_statement),
// unless it was dropped in a way the parser cannot see: either may run
// under that name, so it becomes unknown. inner: s is a SQL PREPARE, whose
// statement's verb is s.Sub.
func (p *Parser) remember(name []byte, s *sqlverb.Statement, inner bool) {
	if len(name) > 0 && p.stmts.find(name) != nil {
		p.stmts.put(name, p.limits().MaxStatements).info.state = infoUnknown
		return
	}
	e := p.stmts.put(name, p.limits().MaxStatements)
	switch {
	case s == nil:
		e.info.state = infoUnknown
	case inner:
		e.info.setPrepared(s)
	case len(s.Verb) == 0:
		e.info.state = infoEmpty
	default:
		e.info.set(s)
	}
}

// Denied records that the proxy answered the last request frame with a
// deny reply instead of forwarding it (l7.DenyObserver). The server never
// sees the message, so its state change is dropped; after a Parse or an
// Execute the parser skips every message up to the next Sync or
// Terminate, as the server does after an error in the extended protocol
// (the proxy drops skipped bytes that follow a denied frame). After a
// refused SSLRequest or GSSENCRequest the client goes on unencrypted;
// after a refused direct TLS ClientHello nothing more may come. Denied
// concerns the frame returned by the last request-direction Parse; call
// it before the next one. It allocates nothing.
func (p *Parser) Denied(*l7.Frame) {
	st := &p.req
	switch st.last {
	case kindSSL:
		st.sslAsked = false
	case kindGSS:
		st.gssAsked = false
	case kindDirectTLS:
		st.phase = phaseClosed
	case kindQuery:
		st.pend, st.op = pendNone, opNone
	case kindParse:
		st.pend = pendNone
		st.discard = true
	case kindExecute:
		st.discard = true
	}
	st.last = kindNone
}

// Reply direction.

type repPhase uint8

const (
	repStartup repPhase = iota // a single-byte answer to SSLRequest/GSSENCRequest may come
	repTyped                   // typed backend messages
	repPass                    // encrypted
)

type repState struct {
	phase repPhase
	skip  int // bytes of the current message still to skip
}

func (p *Parser) parseReply(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.rep
	if st.skip > 0 {
		if len(data) == 0 {
			return l7.OpMore, 1, nil
		}
		n := min(len(data), st.skip)
		st.skip -= n
		f.Reset(l7.DirReply)
		return l7.OpSkip, n, nil
	}
	switch st.phase {
	case repPass:
		return l7.OpPass, 0, nil
	case repStartup:
		if len(data) == 0 {
			return l7.OpMore, 1, nil
		}
		// Before the first typed message the server sends no
		// NoticeResponse or ParameterStatus (it sends notices only once
		// authentication is done): 'S', 'G' and 'N' are the one-byte
		// answers to SSLRequest and GSSENCRequest.
		switch data[0] {
		case 'S', 'G':
			st.phase = repPass
			f.Reset(l7.DirReply)
			return l7.OpFrame, 1, nil
		case 'N':
			f.Reset(l7.DirReply)
			return l7.OpFrame, 1, nil
		case tlsHandshake:
			// The server's answer to a direct TLS ClientHello.
			st.phase = repPass
			return l7.OpPass, 0, nil
		}
		op, n, err := p.backend(data, f)
		if err == nil && op != l7.OpMore {
			st.phase = repTyped
		}
		return op, n, err
	}
	return p.backend(data, f)
}

// backendType reports the backend message types of protocol 3.
func backendType(t byte) bool {
	switch t {
	case '1', '2', '3', 'A', 'C', 'c', 'D', 'd', 'E', 'G', 'H', 'I', 'K',
		'n', 'N', 'R', 's', 'S', 't', 'T', 'v', 'V', 'W', 'Z':
		return true
	}
	return false
}

// backend frames one typed backend message.
func (p *Parser) backend(data []byte, f *l7.Frame) (l7.Op, int, error) {
	if len(data) == 0 {
		return l7.OpMore, 5, nil
	}
	t := data[0]
	if !backendType(t) {
		return l7.OpMore, 0, errBadReplyType
	}
	if len(data) < 5 {
		return l7.OpMore, 5 - len(data), nil
	}
	length := be32(data[1:])
	if length < 4 || length > math.MaxInt32 {
		return l7.OpMore, 0, errBadLength
	}
	total := 1 + int(length)
	switch t {
	case 'Z':
		if length != 5 {
			return l7.OpMore, 0, errBadStatus
		}
		if len(data) < 6 {
			return l7.OpMore, 1, nil
		}
		s := data[5]
		if s != 'I' && s != 'T' && s != 'E' {
			return l7.OpMore, 0, errBadStatus
		}
		p.status.Store(uint32(s))
		f.Reset(l7.DirReply)
		return l7.OpFrame, 6, nil
	case 'N', 'S', 'A':
		// Notices, parameter changes and notifications come unasked.
		n := min(len(data), total)
		p.rep.skip = total - n
		f.Reset(l7.DirReply)
		return l7.OpSkip, n, nil
	}
	f.Reset(l7.DirReply)
	f.Partial = true
	f.Err = t == 'E'
	if total > StreamAbove {
		p.rep.skip = total - 5
		return l7.OpFrame, 5, nil
	}
	if len(data) < total {
		return l7.OpMore, total - len(data), nil
	}
	return l7.OpFrame, total, nil
}
