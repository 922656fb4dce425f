package mysql

import (
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/sqlverb"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "mysql"

// Limits.
const (
	// MaxQuery bounds the text of COM_QUERY and COM_STMT_PREPARE (and any
	// message the parser reads whole): one packet, 16 MiB - 1 bytes.
	// Longer messages span several packets; a query that does is refused
	// with an error wrapping l7.ErrTooLong, because its text cannot be seen
	// whole. Bodies that carry nothing to decide on (statement parameters,
	// LOCAL INFILE data, rows) are streamed whatever their size.
	MaxQuery = MaxPacket
	// MaxPending bounds the commands a client may send ahead of their
	// replies (pipelining); one more is an error wrapping l7.ErrTooLong.
	MaxPending = 256
	// MaxDatabase bounds the name of the current database in bytes
	// (MySQL allows 64 characters); a longer one is not tracked.
	MaxDatabase = 256
	// maxTargets bounds the database changes (COM_INIT_DB, USE) whose
	// target is remembered while they wait for the server's answer.
	maxTargets = 4
)

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir        = fmt.Errorf("mysql: unknown direction: %w", l7.ErrMalformed)
	errHandshake     = fmt.Errorf("mysql: malformed handshake response: %w", l7.ErrMalformed)
	errOldProtocol   = fmt.Errorf("mysql: client without CLIENT_PROTOCOL_41: %w", l7.ErrMalformed)
	errSequence      = fmt.Errorf("mysql: packet out of sequence: %w", l7.ErrMalformed)
	errEmptyCommand  = fmt.Errorf("mysql: empty command packet: %w", l7.ErrMalformed)
	errCommand       = fmt.Errorf("mysql: malformed command: %w", l7.ErrMalformed)
	errComMulti      = fmt.Errorf("mysql: COM_MULTI (commands bundled in one packet) is not supported: %w", l7.ErrMalformed)
	errAttributes    = fmt.Errorf("mysql: malformed query attributes: %w", l7.ErrMalformed)
	errGreeting      = fmt.Errorf("mysql: malformed server greeting: %w", l7.ErrMalformed)
	errReply         = fmt.Errorf("mysql: unexpected reply packet: %w", l7.ErrMalformed)
	errUnsolicited   = fmt.Errorf("mysql: reply without a request: %w", l7.ErrMalformed)
	errClosed        = fmt.Errorf("mysql: data after the session ended: %w", l7.ErrMalformed)
	errQueryTooLong  = fmt.Errorf("mysql: message over %d bytes that must be read whole: %w", MaxQuery, l7.ErrTooLong)
	errReplyTooLong  = fmt.Errorf("mysql: control packet over %d bytes: %w", MaxPacket-1, l7.ErrTooLong)
	errTooManyQueued = fmt.Errorf("mysql: more than %d commands wait for replies: %w", MaxPending, l7.ErrTooLong)
)

// Reply kinds: how the reply to a command is framed.
const (
	kQuery      uint8 = iota // OK, ERR, EOF, LOCAL INFILE (COM_QUERY) or result sets
	kPrepare                 // COM_STMT_PREPARE_OK and its definitions, or ERR
	kFetch                   // rows and a terminator
	kFieldList               // column definitions and a terminator
	kStatistics              // one text packet
	kChangeUser              // an authentication exchange
	kBinlog                  // a stream of events and a terminator
)

// Phases of the reply to the head command.
const (
	phStart     uint8 = iota // first packet, or the next result of several
	phColumns                // column definitions (rs.count left)
	phColumnEOF              // the EOF after the column definitions
	phRows                   // rows until a terminator
	phPrepRest               // COM_STMT_PREPARE_OK's definitions (rs.count packets left)
	phDefs                   // COM_FIELD_LIST's definitions
	phBinlog                 // binlog events
)

// Connection stages seen from the reply direction.
const (
	sGreeting uint8 = iota
	sAuth
	sCommand
	sClosed
)

// pending is a command waiting for its reply.
type pending struct {
	cmd      byte
	kind     uint8
	stmt     int16 // kPrepare: the statement's entry, -1 none
	dbChange bool
	target   int8 // the database it changes to (index into dbState.targets), -1 unknown
}

// stream is the place in a packet being streamed: payload bytes left and
// whether a continuation packet follows.
type stream struct {
	skip int
	cont bool
}

// advance consumes what b holds of the streamed message. It returns the
// bytes consumed and, when b ran out before the message ended, need > 0:
// the bytes needed at least to go on.
func (s *stream) advance(b []byte) (n, need int) {
	for {
		if s.skip > 0 {
			k := min(s.skip, len(b)-n)
			s.skip -= k
			n += k
			if s.skip > 0 {
				return n, 1 // any byte of the payload can be passed on
			}
		}
		if !s.cont {
			return n, 0
		}
		if len(b)-n < headerLen {
			return n, headerLen - (len(b) - n)
		}
		l, _ := header(b[n:])
		n += headerLen
		s.skip, s.cont = l, l == MaxPacket
	}
}

func (s *stream) active() bool { return s.skip > 0 || s.cont }

// dbState tracks the current database: cur is what the client's commands
// are judged against, conf what the server confirmed.
type dbState struct {
	cur       [MaxDatabase]byte
	curN      int
	curKnown  bool
	conf      [MaxDatabase]byte
	confN     int
	confKnown bool
	changes   int // database changes sent and not answered
	targets   [maxTargets][MaxDatabase]byte
	targetN   [maxTargets]int
	next      int
}

// aux returns the current database as a frame's Aux.
func (d *dbState) aux() []byte {
	if !d.curKnown {
		return nil
	}
	return d.cur[:d.curN:d.curN]
}

func (d *dbState) setCur(name []byte, known bool) {
	if len(name) > MaxDatabase {
		known = false
	}
	d.curKnown = known
	if known {
		d.curN = copy(d.cur[:], name)
	}
}

func (d *dbState) confirm(name []byte, known bool) {
	if len(name) > MaxDatabase {
		known = false
	}
	d.confKnown = known
	if known {
		d.confN = copy(d.conf[:], name)
	}
	if d.changes == 0 {
		d.setCur(d.conf[:d.confN], d.confKnown)
	}
}

// change records a database change sent to the server and returns the
// slot of its target, -1 when the target is unknown (a USE inside several
// statements).
func (d *dbState) change(name []byte, known bool) int8 {
	d.changes++
	d.setCur(name, known)
	if !known || len(name) > MaxDatabase {
		return -1
	}
	i := d.next
	d.next = (d.next + 1) % maxTargets
	d.targetN[i] = copy(d.targets[i][:], name)
	return int8(i)
}

// answered records the server's answer to a database change.
func (d *dbState) answered(target int8, ok, tracked bool) {
	if d.changes > 0 {
		d.changes--
	}
	if ok && !tracked {
		if target >= 0 {
			d.confKnown = true
			d.confN = copy(d.conf[:], d.targets[target][:d.targetN[target]])
		} else {
			d.confKnown = false
		}
	}
	if d.changes == 0 {
		d.setCur(d.conf[:d.confN], d.confKnown)
	}
}

// replyState is the reply direction's place.
type replyState struct {
	stage   uint8
	ph      uint8
	count   uint64 // definitions or packets left in phColumns, phPrepRest
	tracked bool   // the head's reply carried the session's schema
}

// Parser decodes the client and server messages of one MySQL or MariaDB
// connection. It is not safe for concurrent use. The zero value is not
// ready: use NewParser.
type Parser struct {
	gotResponse bool // the client's handshake response (or SSL request) was seen
	pass        bool // the session switched to TLS or compression: forward unparsed
	closedReq   bool // a denied SSL/COMPRESS request: nothing may follow
	serverCaps  uint32
	serverExt   uint32
	greeted     bool
	caps        uint32 // negotiated capabilities
	ext         uint32 // negotiated MariaDB extended capabilities
	authOpen    int    // authentication exchanges in progress: client packets with sequence != 0 are auth data
	infile      bool   // the client sends a LOCAL INFILE file

	req stream
	rep stream
	rs  replyState

	pend  [MaxPending]pending
	pHead int
	pN    int
	// last describes the last request frame, for Denied.
	lastPushed bool
	lastSSL    bool

	db    dbState
	aux   [MaxDatabase]byte // the current database, copied for a frame
	stmts *stmtTable
	sql   sqlverb.Statement
	verb  [l7.MaxVerb]byte
	// scratch receives the fields when Parse is given no Frame.
	scratch l7.Frame
}

var (
	_ l7.Parser       = (*Parser)(nil)
	_ l7.DenyObserver = (*Parser)(nil)
)

// NewParser returns a parser for one connection.
func NewParser() *Parser { return &Parser{} }

// Protocol describes MySQL to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:        Name,
		New:         func() l7.Parser { return NewParser() },
		Sniff:       Sniff,
		Deny:        Deny,
		ServerFirst: true,
		MaxMessage:  headerLen + MaxPacket,
	}
}

// Parse decodes the message at the front of data; see l7.Parser and
// README.md for the frames of each direction.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if f == nil {
		f = &p.scratch
	}
	f.Reset(dir)
	switch dir {
	case l7.DirRequest:
		return p.parseRequest(data, f)
	case l7.DirReply:
		return p.parseReply(data, f)
	}
	return l7.OpMore, 0, errBadDir
}

// Denied implements l7.DenyObserver: the last request frame was answered
// by the proxy, so the server will not answer it.
func (p *Parser) Denied(f *l7.Frame) {
	if p.lastSSL {
		p.lastSSL = false
		p.pass, p.closedReq = false, true
		return
	}
	if !p.lastPushed || p.pN == 0 {
		return
	}
	p.lastPushed = false
	tail := (p.pHead + p.pN - 1) % MaxPending
	e := p.pend[tail]
	p.pN--
	p.settle(&e, false, false)
}

// settle applies the effects of a command's final answer (ok: not an
// error) or of its denial.
func (p *Parser) settle(e *pending, ok, tracked bool) {
	if e.dbChange {
		p.db.answered(e.target, ok, tracked)
	}
	switch e.cmd {
	case comStmtPrepare:
		if !ok && p.stmts != nil && e.stmt >= 0 {
			p.stmts.free(int(e.stmt))
		}
	case comChangeUser:
		if p.authOpen > 0 {
			p.authOpen--
		}
		if ok && p.stmts != nil {
			p.stmts.reset()
		}
	case comResetConnection:
		if ok && p.stmts != nil {
			p.stmts.reset()
		}
	}
}

// aux returns a copy of the current database for a frame's Aux, so that
// the frame does not change when the database does.
func (p *Parser) frameAux() []byte {
	d := p.db.aux()
	if d == nil {
		return nil
	}
	n := copy(p.aux[:], d)
	return p.aux[:n:n]
}

func (p *Parser) setVerb(f *l7.Frame, v string) {
	n := copy(p.verb[:], v)
	f.Verb = p.verb[:n:n]
}

// push queues a command that waits for a reply.
func (p *Parser) push(e pending) error {
	if p.pN == MaxPending {
		return errTooManyQueued
	}
	p.pend[(p.pHead+p.pN)%MaxPending] = e
	p.pN++
	p.lastPushed = true
	if p.pN == 1 {
		p.startReply()
	}
	return nil
}

// ---- requests ----

func (p *Parser) parseRequest(data []byte, f *l7.Frame) (l7.Op, int, error) {
	p.lastPushed, p.lastSSL = false, false
	switch {
	case p.closedReq:
		return l7.OpMore, 0, errClosed
	case p.pass:
		return l7.OpPass, 0, nil
	case p.req.active():
		n, need := p.req.advance(data)
		if n == 0 {
			return l7.OpMore, need, nil
		}
		return l7.OpSkip, n, nil
	}
	if len(data) < headerLen {
		return l7.OpMore, headerLen - len(data), nil
	}
	l, seq := header(data)
	switch {
	case !p.gotResponse:
		return p.handshakeResponse(data, l, seq, f)
	case seq != 0 && p.infile:
		if l == 0 {
			p.infile = false // the empty packet that ends the file
		}
		return p.skipPacket(data, l)
	case seq != 0 && p.authOpen > 0:
		return p.skipPacket(data, l)
	case seq != 0:
		return l7.OpMore, 0, errSequence
	}
	return p.command(data, l, f)
}

// skipPacket streams a packet (and its continuations) that carries
// nothing to decide on: LOCAL INFILE data, authentication data.
func (p *Parser) skipPacket(data []byte, l int) (l7.Op, int, error) {
	p.req = stream{skip: l, cont: l == MaxPacket}
	n, _ := p.req.advance(data[headerLen:])
	return l7.OpSkip, headerLen + n, nil
}

// handshakeResponse reads the client's first packet: an SSL request or
// the HandshakeResponse41.
func (p *Parser) handshakeResponse(data []byte, l int, seq byte, f *l7.Frame) (l7.Op, int, error) {
	if seq != 1 {
		return l7.OpMore, 0, errSequence
	}
	if l == MaxPacket {
		return l7.OpMore, 0, errQueryTooLong
	}
	if len(data) < headerLen+l {
		return l7.OpMore, headerLen + l - len(data), nil
	}
	b := data[headerLen : headerLen+l]
	if len(b) < 32 {
		return l7.OpMore, 0, errHandshake
	}
	caps := le32(b)
	if caps&capProtocol41 == 0 {
		return l7.OpMore, 0, errOldProtocol
	}
	// mysqld starts TLS on CLIENT_SSL whatever the length of the packet.
	ssl := caps&capSSL != 0
	ext := uint32(0)
	if caps&capMySQL == 0 {
		ext = le32(b[28:])
	}
	if p.greeted {
		caps &= p.serverCaps
		ext &= p.serverExt
	}
	p.caps, p.ext = caps, ext
	p.gotResponse = true
	if ssl {
		p.setVerb(f, "SSL")
		f.NoReply = true // the server answers with TLS, and the pairing of replies ends
		p.pass, p.lastSSL = true, true
		return l7.OpFrame, headerLen + l, nil
	}
	if len(b) == 32 {
		return l7.OpMore, 0, errHandshake // an SSL request without CLIENT_SSL
	}
	i := 32
	_, k := cstring(b[i:]) // user
	if k == 0 {
		return l7.OpMore, 0, errHandshake
	}
	i += k
	switch {
	case caps&capPluginAuthLenenc != 0:
		_, k = lenencString(b[i:])
	case caps&capSecureConnection != 0:
		if i < len(b) && int(b[i]) < len(b)-i {
			k = 1 + int(b[i])
		} else {
			k = 0
		}
	default:
		_, k = cstring(b[i:])
	}
	if k == 0 {
		return l7.OpMore, 0, errHandshake
	}
	i += k
	var db []byte
	if caps&capConnectWithDB != 0 && i < len(b) {
		if db, k = cstring(b[i:]); k == 0 {
			return l7.OpMore, 0, errHandshake
		}
	}
	p.db.confirm(db, len(db) > 0)
	p.authOpen = 1
	if caps&(capCompress|capZstd) != 0 {
		// Compressed packets cannot be read: the policy decides on the
		// session as a whole.
		p.setVerb(f, "COMPRESS")
		f.Aux = p.frameAux()
		f.NoReply = true // the pairing of replies ends here
		p.pass, p.lastSSL = true, true
		return l7.OpFrame, headerLen + l, nil
	}
	return l7.OpSkip, headerLen + l, nil
}

// command frames a client command.
func (p *Parser) command(data []byte, l int, f *l7.Frame) (l7.Op, int, error) {
	if l == 0 {
		return l7.OpMore, 0, errEmptyCommand
	}
	if len(data) < headerLen+1 {
		return l7.OpMore, headerLen + 1 - len(data), nil
	}
	cmd := data[headerLen]
	switch cmd {
	case comQuery, comStmtPrepare, comInitDB, comFieldList, comChangeUser, comCreateDB, comDropDB:
		// Read whole: the decision needs the text.
		if l == MaxPacket {
			return l7.OpMore, 0, errQueryTooLong
		}
		if len(data) < headerLen+l {
			return l7.OpMore, headerLen + l - len(data), nil
		}
		if err := p.wholeCommand(cmd, data[headerLen+1:headerLen+l], f); err != nil {
			return l7.OpMore, 0, err
		}
		return l7.OpFrame, headerLen + l, nil
	case comStmtExecute, comStmtBulkExecute, comStmtSendLongData, comStmtFetch, comStmtClose, comStmtReset:
		// The statement id decides; parameters are streamed.
		if l < 5 {
			return l7.OpMore, 0, errCommand
		}
		if len(data) < headerLen+5 {
			return l7.OpMore, headerLen + 5 - len(data), nil
		}
		if err := p.stmtCommand(cmd, le32(data[headerLen+1:]), f); err != nil {
			return l7.OpMore, 0, err
		}
		p.req = stream{skip: l - 5, cont: l == MaxPacket}
		return l7.OpFrame, headerLen + 5, nil
	case comMulti:
		return l7.OpMore, 0, errComMulti
	}
	p.setVerb(f, commandName(cmd))
	e := pending{cmd: cmd, kind: kQuery, stmt: -1, target: -1}
	switch cmd {
	case comQuit:
		f.NoReply, f.Control = true, true
	case comStatistics:
		e.kind = kStatistics
	case comBinlogDump, comBinlogDumpGTID:
		e.kind = kBinlog
	}
	if !f.NoReply {
		if err := p.push(e); err != nil {
			return l7.OpMore, 0, err
		}
	}
	p.req = stream{skip: l - 1, cont: l == MaxPacket}
	return l7.OpFrame, headerLen + 1, nil
}

// wholeCommand frames a command read whole; b is its payload after the
// command byte.
func (p *Parser) wholeCommand(cmd byte, b []byte, f *l7.Frame) error {
	e := pending{cmd: cmd, kind: kQuery, stmt: -1, target: -1}
	uncertain := p.db.changes > 0 // a database change is on its way: unqualified names are ambiguous
	switch cmd {
	case comQuery, comStmtPrepare:
		text := b
		if cmd == comQuery && p.caps&capQueryAttributes != 0 {
			var err error
			if text, err = skipQueryAttributes(b); err != nil {
				return err
			}
		}
		if err := sqlverb.Scan(text, sqlverb.MySQL, &p.sql); err != nil {
			return err
		}
		p.sql.Fill(f)
		f.Aux = p.frameAux()
		if uncertain {
			f.Overflow = true
		}
		if use := p.useTarget(); use != 0 {
			if cmd == comStmtPrepare {
				break // a prepared USE changes nothing until it is executed
			}
			e.dbChange = true
			if use == 1 {
				f.Aux = p.sql.Tables[0] // like COM_INIT_DB: the database it changes to
				e.target = p.db.change(p.sql.Tables[0], true)
			} else {
				f.Overflow = true // the database changes between the statements
				e.target = p.db.change(nil, false)
			}
		}
		if cmd == comStmtPrepare {
			e.kind = kPrepare
			if p.stmts == nil {
				p.stmts = newStmtTable()
			}
			i := p.stmts.alloc()
			if i >= 0 {
				p.stmts.put(i, f)
			}
			e.stmt = int16(i)
		}
	case comInitDB:
		p.setVerb(f, "USE")
		f.AddResource(b)
		f.Aux = b
		e.dbChange = true
		e.target = p.db.change(b, true)
	case comFieldList:
		table, k := cstring(b)
		if k == 0 {
			table = b
		}
		p.setVerb(f, "FIELD_LIST")
		f.AddResource(table)
		f.Aux = p.frameAux()
		if uncertain {
			f.Overflow = true
		}
		e.kind = kFieldList
	case comChangeUser:
		user, k := cstring(b)
		if k == 0 {
			return errCommand
		}
		i := k
		if p.caps&capSecureConnection != 0 {
			if i >= len(b) || int(b[i]) > len(b)-i-1 {
				return errCommand
			}
			i += 1 + int(b[i])
		} else {
			_, k = cstring(b[i:])
			if k == 0 {
				return errCommand
			}
			i += k
		}
		db, k := cstring(b[i:])
		if k == 0 {
			db = nil
		}
		p.setVerb(f, "CHANGE_USER")
		f.AddResource(user)
		f.Aux = db
		e.kind = kChangeUser
		e.dbChange = true
		e.target = p.db.change(db, db != nil)
		p.authOpen++
	case comCreateDB, comDropDB:
		p.setVerb(f, commandName(cmd))
		f.AddResource(b)
		f.Aux = p.frameAux()
	}
	return p.push(e)
}

// useTarget tells whether the scanned text changes the database: 0 no,
// 1 a single USE (its database is Tables[0]), 2 a USE among others.
func (p *Parser) useTarget() int {
	s := &p.sql
	for i := 0; i < s.NVerbs; i++ {
		if string(s.Verbs[i]) == "USE" {
			if s.NVerbs == 1 && !s.Multi && s.N == 1 {
				return 1
			}
			return 2
		}
	}
	return 0
}

// stmtCommand frames a command on a prepared statement.
func (p *Parser) stmtCommand(cmd byte, id uint32, f *l7.Frame) error {
	i := -1
	if p.stmts != nil {
		i = p.stmts.find(id)
	}
	switch cmd {
	case comStmtClose:
		p.setVerb(f, "STMT_CLOSE")
		f.NoReply, f.Control = true, true
		if i >= 0 && id != lastStatement {
			p.stmts.free(i)
		}
		return nil
	case comStmtReset:
		p.setVerb(f, "STMT_RESET")
		f.Control = true
		return p.push(pending{cmd: cmd, kind: kQuery, stmt: -1, target: -1})
	}
	if i >= 0 {
		p.stmts.fill(i, f)
	} else {
		p.setVerb(f, "EXECUTE") // unknown statement: its tables are unknown
		f.Overflow = true
	}
	switch cmd {
	case comStmtSendLongData:
		f.NoReply = true
		return nil
	case comStmtFetch:
		return p.push(pending{cmd: cmd, kind: kFetch, stmt: -1, target: -1})
	}
	return p.push(pending{cmd: cmd, kind: kQuery, stmt: -1, target: -1})
}

// skipQueryAttributes returns the query text after MySQL 8's query
// attributes (CLIENT_QUERY_ATTRIBUTES) at the front of a COM_QUERY payload.
func skipQueryAttributes(b []byte) ([]byte, error) {
	count, k := lenenc(b)
	if k == 0 || count > uint64(len(b)) {
		return nil, errAttributes
	}
	i := k
	if _, k = lenenc(b[i:]); k == 0 { // parameter set count, always 1
		return nil, errAttributes
	}
	i += k
	if count == 0 {
		return b[i:], nil
	}
	nulls := int((count + 7) / 8)
	if len(b)-i < nulls+1 || b[i+nulls] != 1 { // the types must be sent
		return nil, errAttributes
	}
	bitmap := b[i : i+nulls]
	i += nulls + 1
	types := i
	for j := uint64(0); j < count; j++ {
		if len(b)-i < 2 {
			return nil, errAttributes
		}
		i += 2
		if _, k = lenencString(b[i:]); k == 0 {
			return nil, errAttributes
		}
		i += k
	}
	t := types
	for j := 0; j < int(count); j++ {
		typ := b[t]
		t += 2
		_, k = lenencString(b[t:])
		t += k
		if bitmap[j/8]&(1<<(j%8)) != 0 {
			continue // NULL: no value
		}
		size := 0
		switch typ {
		case 6: // NULL
		case 1: // TINY
			size = 1
		case 2, 13: // SHORT, YEAR
			size = 2
		case 3, 9, 4: // LONG, INT24, FLOAT
			size = 4
		case 8, 5: // LONGLONG, DOUBLE
			size = 8
		case 7, 10, 11, 12: // TIMESTAMP, DATE, TIME, DATETIME: a length byte first
			if i >= len(b) {
				return nil, errAttributes
			}
			size = 1 + int(b[i])
		default: // strings, decimals, blobs, JSON…
			if _, k = lenencString(b[i:]); k == 0 {
				return nil, errAttributes
			}
			size = k
		}
		if size > len(b)-i {
			return nil, errAttributes
		}
		i += size
	}
	return b[i:], nil
}

// ---- replies ----

// startReply sets the phase for the reply to the new head command.
func (p *Parser) startReply() {
	p.rs.ph, p.rs.count, p.rs.tracked = phStart, 0, false
	if p.pN == 0 {
		return
	}
	switch p.pend[p.pHead].kind {
	case kFetch:
		p.rs.ph = phRows
	case kFieldList:
		p.rs.ph = phDefs
	case kBinlog:
		p.rs.ph = phBinlog
	}
}

func (p *Parser) parseReply(data []byte, f *l7.Frame) (l7.Op, int, error) {
	if p.pass {
		return l7.OpPass, 0, nil
	}
	n := 0
	for {
		if p.rep.active() {
			k, need := p.rep.advance(data[n:])
			n += k
			if need > 0 {
				if n > 0 {
					return l7.OpSkip, n, nil
				}
				return l7.OpMore, need, nil
			}
			continue
		}
		rest := data[n:]
		if len(rest) < headerLen+1 {
			if n > 0 {
				return l7.OpSkip, n, nil
			}
			if len(rest) == headerLen {
				if l, _ := header(rest); l == 0 {
					return l7.OpMore, 0, errReply // no reply packet is empty
				}
			}
			return l7.OpMore, headerLen + 1 - len(rest), nil
		}
		l, _ := header(rest)
		if l == 0 {
			return l7.OpMore, 0, errReply
		}
		if p.streamable(l, rest[headerLen]) {
			p.streamed()
			p.rep = stream{skip: l, cont: l == MaxPacket}
			n += headerLen
			continue
		}
		if n > 0 {
			return l7.OpSkip, n, nil // read the next packet whole on the next call
		}
		if l == MaxPacket {
			return l7.OpMore, 0, errReplyTooLong
		}
		if len(rest) < headerLen+l {
			return l7.OpMore, headerLen + l - len(rest), nil
		}
		inReply := p.rs.stage == sCommand && p.pN > 0
		framed, err := p.reply(rest[headerLen:headerLen+l], f)
		if err != nil {
			return l7.OpMore, 0, err
		}
		if framed {
			return l7.OpFrame, headerLen + l, nil
		}
		n = headerLen + l
		if !inReply {
			// A greeting, an authentication packet or an unsolicited
			// error: the client speaks next.
			return l7.OpSkip, n, nil
		}
	}
}

// streamable: the packet starting with first is part of a reply that
// carries nothing to decide on and cannot end it (a definition, a row, a
// binlog event): it is streamed without being read whole.
func (p *Parser) streamable(l int, first byte) bool {
	if p.rs.stage != sCommand || p.pN == 0 {
		return false
	}
	terminator := first == markERR || (first == markEOF && l < MaxPacket)
	switch p.rs.ph {
	case phColumns:
		return true
	case phRows, phDefs:
		return !terminator
	case phPrepRest:
		return p.rs.count > 1
	case phBinlog:
		return first == markOK
	}
	return false
}

// streamed moves the phase past a streamed packet.
func (p *Parser) streamed() {
	switch p.rs.ph {
	case phColumns:
		p.rs.count--
		if p.rs.count == 0 {
			p.afterColumns()
		}
	case phPrepRest:
		p.rs.count--
	}
}

func (p *Parser) afterColumns() {
	if p.caps&capDeprecateEOF != 0 {
		p.rs.ph = phRows
	} else {
		p.rs.ph = phColumnEOF
	}
}

// reply handles a whole reply packet b; framed reports an OpFrame.
func (p *Parser) reply(b []byte, f *l7.Frame) (framed bool, err error) {
	switch p.rs.stage {
	case sGreeting:
		return false, p.greeting(b)
	case sAuth:
		switch b[0] {
		case markOK:
			if _, err := p.okPacket(b); err != nil {
				return false, err
			}
			p.rs.stage = sCommand
			if p.authOpen > 0 {
				p.authOpen--
			}
		case markERR:
			p.rs.stage = sClosed
			p.authOpen = 0
		case markEOF, 0x01, 0x02: // auth switch, more data, next factor: the client answers
		default:
			return false, errReply
		}
		return false, nil
	case sClosed:
		return false, errClosed
	}
	if p.pN == 0 {
		if b[0] == markERR {
			return false, nil // the server's last word before it closes (timeout, kill)
		}
		return false, errUnsolicited
	}
	e := &p.pend[p.pHead]
	if b[0] == markERR {
		if len(b) >= 3 && b[1] == 0xff && b[2] == 0xff {
			return false, nil // MariaDB progress report
		}
		if e.kind == kPrepare && p.rs.ph != phStart {
			return false, errReply
		}
		f.Err = true
		return true, p.final(false)
	}
	switch p.rs.ph {
	case phStart:
		return p.replyStart(e, b, f)
	case phColumnEOF:
		if b[0] != markEOF || len(b) >= 9 {
			return false, errReply
		}
		if eofStatus(b)&statusCursorExists != 0 {
			return true, p.final(true) // rows come with COM_STMT_FETCH
		}
		p.rs.ph = phRows
		return false, nil
	case phRows, phDefs, phBinlog:
		if b[0] != markEOF {
			return false, errReply
		}
		return p.terminator(b, f)
	case phPrepRest:
		return true, p.final(true) // the last definition or EOF
	}
	return false, errReply
}

// replyStart handles the first packet of a reply, or of the next result.
func (p *Parser) replyStart(e *pending, b []byte, f *l7.Frame) (bool, error) {
	switch e.kind {
	case kStatistics:
		return true, p.final(true) // a line of text
	case kPrepare:
		if b[0] != markOK || len(b) < 12 {
			return false, errReply
		}
		if p.stmts != nil {
			p.stmts.bind(int(e.stmt), le32(b[1:]))
		}
		cols, params := uint64(le16(b[5:])), uint64(le16(b[7:]))
		rest := params + cols
		if p.caps&capDeprecateEOF == 0 {
			if params > 0 {
				rest++
			}
			if cols > 0 {
				rest++
			}
		}
		if p.caps&capOptionalMetadata != 0 && len(b) > 12 && b[12] == 0 {
			rest = 0 // MySQL 8: no metadata follows
		}
		if rest == 0 {
			return true, p.final(true)
		}
		p.rs.ph, p.rs.count = phPrepRest, rest
		return false, nil
	case kChangeUser:
		switch b[0] {
		case markOK:
			if _, err := p.okPacket(b); err != nil {
				return false, err
			}
			return true, p.final(true)
		case markEOF, 0x01, 0x02:
			return false, nil // the authentication goes on
		}
		return false, errReply
	}
	switch b[0] {
	case markOK:
		status, err := p.okPacket(b)
		if err != nil {
			return false, err
		}
		return p.result(status, f)
	case markEOF:
		if len(b) >= 9 {
			return false, errReply
		}
		return p.result(eofStatus(b), f)
	case markInfile:
		if e.cmd != comQuery {
			return false, errReply
		}
		p.infile = true
		f.Partial = true
		return true, nil
	}
	cols, k := lenenc(b)
	if k == 0 || cols == 0 {
		return false, errReply
	}
	meta := true
	if (p.ext&extCacheMetadata != 0 || p.caps&capOptionalMetadata != 0) && len(b) > k {
		meta = b[k] != 0
	}
	if meta {
		p.rs.ph, p.rs.count = phColumns, cols
	} else {
		p.afterColumns()
	}
	return false, nil
}

// terminator handles the EOF or OK packet that ends rows or definitions.
func (p *Parser) terminator(b []byte, f *l7.Frame) (bool, error) {
	status := eofStatus(b)
	if len(b) >= 9 {
		var err error
		if status, err = p.okPacket(b); err != nil {
			return false, err
		}
	}
	return p.result(status, f)
}

// result ends one result: a Partial frame when more follow, else the
// final frame.
func (p *Parser) result(status uint16, f *l7.Frame) (bool, error) {
	if status&statusMoreResults != 0 && p.pend[p.pHead].kind == kQuery {
		f.Partial = true
		p.rs.ph = phStart
		return true, nil
	}
	return true, p.final(true)
}

// final pops the head command after its last reply packet.
func (p *Parser) final(ok bool) error {
	e := p.pend[p.pHead]
	p.pHead = (p.pHead + 1) % MaxPending
	p.pN--
	p.settle(&e, ok, p.rs.tracked)
	p.startReply()
	return nil
}

func eofStatus(b []byte) uint16 {
	if len(b) >= 5 {
		return le16(b[3:])
	}
	return 0
}

// okPacket reads an OK packet (0x00, or 0xfe ending a result): its status,
// and the current schema when the session tracks it.
func (p *Parser) okPacket(b []byte) (uint16, error) {
	i := 1
	for j := 0; j < 2; j++ { // affected rows, last insert id
		_, k := lenenc(b[i:])
		if k == 0 {
			return 0, errReply
		}
		i += k
	}
	if len(b)-i < 4 {
		return 0, errReply
	}
	status := le16(b[i:])
	i += 4
	if p.caps&capSessionTrack == 0 || status&statusSessionStateChange == 0 || i >= len(b) {
		return status, nil
	}
	if _, k := lenencString(b[i:]); k > 0 { // info
		i += k
		if state, k := lenencString(b[i:]); k > 0 {
			p.sessionState(state)
		}
	}
	return status, nil
}

// sessionState reads the session state changes of an OK packet; a
// malformed one is ignored (the schema then stays as it was known).
func (p *Parser) sessionState(b []byte) {
	for len(b) > 1 {
		typ := b[0]
		data, k := lenencString(b[1:])
		if k == 0 {
			return
		}
		if typ == sessionTrackSchema {
			if name, k := lenencString(data); k > 0 {
				p.rs.tracked = true
				p.db.confirm(name, true)
			}
		}
		b = b[1+k:]
	}
}

// greeting reads the server's first packet.
func (p *Parser) greeting(b []byte) error {
	if b[0] == markERR {
		p.rs.stage = sClosed // too many connections, host not allowed…
		return nil
	}
	if b[0] != 10 {
		return errGreeting
	}
	_, k := cstring(b[1:]) // server version
	if k == 0 {
		return errGreeting
	}
	i := 1 + k + 4 + 8 + 1 // connection id, auth data, filler
	if len(b) < i+2 {
		return errGreeting
	}
	caps := uint32(le16(b[i:]))
	i += 2
	if len(b) >= i+5 {
		caps |= uint32(le16(b[i+3:])) << 16 // after charset and status
	}
	var ext uint32
	if caps&capMySQL == 0 && len(b) >= i+5+1+10 {
		ext = le32(b[i+5+1+6:]) // MariaDB: the last four of ten reserved bytes
	}
	p.serverCaps, p.serverExt, p.greeted = caps, ext, true
	p.rs.stage = sAuth
	return nil
}
