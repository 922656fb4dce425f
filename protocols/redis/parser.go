package redis

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "redis"

// Default limits. The proxy holds a whole message in memory before it
// decides, so the defaults bound what one connection can make it buffer
// rather than copy redis-server's (512 MiB bulk strings, 2^31 arguments).
const (
	// DefaultMaxBulk bounds one bulk string: 64 MiB, an eighth of Redis's
	// proto-max-bulk-len and far above the values Redis's own guidance
	// calls large.
	DefaultMaxBulk = 64 << 20
	// DefaultMaxArgs bounds the arguments of one request: 1 Mi, enough for
	// the largest MSET, DEL or SADD batches clients build.
	DefaultMaxArgs = 1 << 20
	// DefaultMaxInline bounds one line (an inline request, a simple string,
	// error or number reply): 64 KiB, Redis's PROTO_INLINE_MAX_SIZE.
	DefaultMaxInline = 64 << 10
	// DefaultMaxDepth bounds the nesting of reply aggregates: 64. Redis's
	// own replies (COMMAND DOCS, XREAD) nest a handful of levels.
	DefaultMaxDepth = 64
	// DefaultMaxMessage bounds one whole request or reply: 64 MiB.
	DefaultMaxMessage = 64 << 20
)

// Hard caps: NewParserWithLimits clamps larger values to these.
const (
	CapMaxBulk    = 512 << 20 // Redis's proto-max-bulk-len default
	CapMaxArgs    = 1 << 28
	CapMaxInline  = 1 << 20
	CapMaxDepth   = 1024
	CapMaxMessage = 1 << 30
)

// Limits bound what a Parser accepts. A zero field takes its default; a
// message over a limit makes Parse return an error wrapping l7.ErrTooLong.
type Limits struct {
	// MaxBulk bounds one bulk string (a request argument, a $, ! or =
	// reply, a streamed chunk), in bytes.
	MaxBulk int
	// MaxArgs bounds the number of arguments of one request.
	MaxArgs int
	// MaxInline bounds one line without its CRLF, in bytes.
	MaxInline int
	// MaxDepth bounds how deep reply aggregates nest.
	MaxDepth int
	// MaxMessage bounds one whole request or reply, in bytes; it also
	// bounds how many elements a reply aggregate may announce.
	MaxMessage int
}

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{
		MaxBulk:    DefaultMaxBulk,
		MaxArgs:    DefaultMaxArgs,
		MaxInline:  DefaultMaxInline,
		MaxDepth:   DefaultMaxDepth,
		MaxMessage: DefaultMaxMessage,
	}
}

// Validate reports fields that are negative or above their cap.
func (l Limits) Validate() error {
	var errs []error
	check := func(name string, v, max int) {
		if v < 0 || v > max {
			errs = append(errs, fmt.Errorf("redis: limit %s = %d, want 0 (default) to %d", name, v, max))
		}
	}
	check("MaxBulk", l.MaxBulk, CapMaxBulk)
	check("MaxArgs", l.MaxArgs, CapMaxArgs)
	check("MaxInline", l.MaxInline, CapMaxInline)
	check("MaxDepth", l.MaxDepth, CapMaxDepth)
	check("MaxMessage", l.MaxMessage, CapMaxMessage)
	return errors.Join(errs...)
}

// normalized fills zero (or negative) fields with defaults and clamps the
// others to their caps.
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
		MaxBulk:    pick(l.MaxBulk, DefaultMaxBulk, CapMaxBulk),
		MaxArgs:    pick(l.MaxArgs, DefaultMaxArgs, CapMaxArgs),
		MaxInline:  pick(l.MaxInline, DefaultMaxInline, CapMaxInline),
		MaxDepth:   pick(l.MaxDepth, DefaultMaxDepth, CapMaxDepth),
		MaxMessage: pick(l.MaxMessage, DefaultMaxMessage, CapMaxMessage),
	}
}

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir       = fmt.Errorf("redis: unknown direction: %w", l7.ErrMalformed)
	errBadLength    = fmt.Errorf("redis: invalid length or count: %w", l7.ErrMalformed)
	errExpectedBulk = fmt.Errorf("redis: multibulk argument does not start with '$': %w", l7.ErrMalformed)
	errMissingCRLF  = fmt.Errorf("redis: bulk payload not followed by CRLF: %w", l7.ErrMalformed)
	errBadLine      = fmt.Errorf("redis: bare CR or LF in a line: %w", l7.ErrMalformed)
	errUnbalanced   = fmt.Errorf("redis: unbalanced quotes in inline request: %w", l7.ErrMalformed)
	errInlineNUL    = fmt.Errorf("redis: NUL byte in inline request: %w", l7.ErrMalformed)
	errInlineEscape = fmt.Errorf("redis: escaped or partly quoted command, sub-command or key in inline request: %w", l7.ErrMalformed)
	errBadType      = fmt.Errorf("redis: unknown reply type: %w", l7.ErrMalformed)
	errBadValue     = fmt.Errorf("redis: invalid integer, boolean, null, double or verbatim reply: %w", l7.ErrMalformed)
	errBadStream    = fmt.Errorf("redis: misplaced streamed chunk or end marker: %w", l7.ErrMalformed)

	errTooManyArgs    = fmt.Errorf("redis: too many arguments: %w", l7.ErrTooLong)
	errBulkTooLong    = fmt.Errorf("redis: bulk string too long: %w", l7.ErrTooLong)
	errLineTooLong    = fmt.Errorf("redis: line too long: %w", l7.ErrTooLong)
	errVerbTooLong    = fmt.Errorf("redis: command name too long: %w", l7.ErrTooLong)
	errTooDeep        = fmt.Errorf("redis: reply nested too deep: %w", l7.ErrTooLong)
	errMessageTooLong = fmt.Errorf("redis: message too long: %w", l7.ErrTooLong)
)

// minArg is the size of the shortest multibulk argument ("$0\r\n\r\n");
// minElem the size of the shortest reply element ("_\r\n", "+\r\n").
const (
	minArg  = 6
	minElem = 3
)

// Parser decodes the requests and replies of one Redis connection. It is
// not safe for concurrent use. The zero value uses DefaultLimits.
//
// Parse keeps its place inside a message between calls: after OpMore the
// caller passes the same bytes again, extended (the buffer may have moved).
// An input shorter than the previous one starts the message over.
type Parser struct {
	lim Limits
	req reqState
	rep repState
	// stack holds the open reply aggregates, [:rep.depth]. It is
	// allocated on the first aggregate and grows by doubling, from
	// initialStack levels up to lim.MaxDepth: an idle parser holds none,
	// and a connection allocates only when its replies nest deeper than
	// ever before; after that the steady state allocates nothing.
	stack []level
	// scratch receives the fields when Parse is given no Frame.
	scratch l7.Frame
}

var _ l7.Parser = (*Parser)(nil)

// NewParser returns a parser with DefaultLimits.
func NewParser() *Parser { return NewParserWithLimits(Limits{}) }

// NewParserWithLimits returns a parser with the given limits: zero fields
// take their defaults and values above the caps are clamped (Validate
// reports them).
func NewParserWithLimits(l Limits) *Parser {
	p := &Parser{}
	p.init(l)
	return p
}

func (p *Parser) init(l Limits) {
	p.lim = l.normalized()
	p.stack = nil
	p.req = reqState{}
	p.rep = repState{}
}

// Limits returns the limits in force.
func (p *Parser) Limits() Limits {
	if p.lim.MaxDepth == 0 {
		return Limits{}.normalized()
	}
	return p.lim
}

// Protocol describes Redis to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:  Name,
		New:   func() l7.Parser { return NewParser() },
		Sniff: Sniff,
		Deny:  Deny,
	}
}

// Parse decodes the message at the front of data; see l7.Parser.
//
// Requests (l7.DirRequest): OpFrame with Verb, Sub, Resource and Args for a
// command; OpSkip for what redis-server ignores (an empty inline line,
// *0 and *-1). Replies (l7.DirReply): OpFrame with Err and Args for one
// top-level reply; OpSkip for a top-level RESP3 attribute (it precedes the
// reply it decorates, which the next call returns) or push message.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if p.lim.MaxDepth == 0 {
		p.init(Limits{})
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

// span is an argument's place in the input.
type span struct{ off, end int }

// of returns the span's bytes, capacity-limited so that appending to the
// view cannot overwrite the caller's buffer.
func (s span) of(data []byte) []byte {
	if s.end <= s.off {
		return nil
	}
	return data[s.off:s.end:s.end]
}

// Length fields.
const (
	lenNull   = -1 // "-1": RESP2 null bulk string or array
	lenStream = -2 // "?": RESP3 streamed string or aggregate
)

// readLen parses the length line after a type byte, at data[i:]:
// "<digits>\r\n", "-1\r\n" (when null) or "?\r\n" (when stream). Digits
// have no sign and no leading zero, as Redis's string2ll wants, and their
// value may not exceed max (tooLong otherwise).
//
// Complete: v, next (the offset after LF) and more == 0. Incomplete: more
// > 0 is the least number of bytes the line still needs and v >= 0 a lower
// bound of its value (the digits so far), so that callers can bound what
// follows. The checks run byte by byte, so a prefix of the input never
// gives another error than the whole.
func readLen(data []byte, i, max int, null, stream bool, tooLong error) (v, next, more int, err error) {
	if i >= len(data) {
		return 0, 0, 3, nil // a digit and CRLF
	}
	switch c := data[i]; {
	case c == '?' && stream:
		v = lenStream
		i++
	case c == '-' && null:
		if i+1 >= len(data) {
			return 0, 0, 3, nil // "1\r\n"
		}
		if data[i+1] != '1' {
			return 0, 0, 0, errBadLength
		}
		v = lenNull
		i += 2
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		v = int(c - '0')
		for i++; i < len(data); i++ {
			d := int(data[i]) - '0'
			if d < 0 || d > 9 {
				break
			}
			if v > (max-d)/10 {
				return 0, 0, 0, tooLong
			}
			v = v*10 + d
		}
		if v > max {
			return 0, 0, 0, tooLong
		}
	default:
		return 0, 0, 0, errBadLength
	}
	part := max0(v)
	if i >= len(data) {
		return part, 0, 2, nil
	}
	if data[i] != '\r' {
		return 0, 0, 0, errBadLength
	}
	if i+1 >= len(data) {
		return part, 0, 1, nil
	}
	if data[i+1] != '\n' {
		return 0, 0, 0, errBadLength
	}
	return v, i + 2, 0, nil
}

func max0(v int) int {
	if v < 0 {
		return 0
	}
	return v
}

// Command classes, for the fields a request's arguments fill.
const (
	classPlain     = iota // Resource = argv[1]
	classContainer        // Sub = argv[1], Resource = argv[2]
	classNoKey            // no Resource: AUTH and HELLO carry secrets
	classEval             // Resource = argv[3] unless numkeys (argv[2]) is 0
)

// commandClass classifies a command name, in any case, without allocating.
func commandClass(name []byte) uint8 {
	var buf [16]byte
	if len(name) > len(buf) {
		return classPlain
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION",
		"LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SENTINEL",
		"SLOWLOG", "XGROUP", "XINFO":
		return classContainer
	case "AUTH", "HELLO":
		return classNoKey
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		return classEval
	}
	return classPlain
}

// roles records which arguments of a request become Verb, Sub and Resource.
type roles struct {
	verb, sub, res span
	class          uint8
	resAt          int // index of the key argument; 0 when there is none
}

// needs reports whether argument k fills a field (inline arguments that do
// must be views of the input).
func (r *roles) needs(k int) bool {
	return k == 0 ||
		(k == 1 && r.class == classContainer) ||
		(k == 2 && r.class == classEval) ||
		(k > 0 && k == r.resAt)
}

// take records argument k, found at s in data.
func (r *roles) take(k int, s span, data []byte) {
	switch {
	case k == 0:
		r.verb = s
		r.class = commandClass(data[s.off:s.end])
		switch r.class {
		case classPlain:
			r.resAt = 1
		case classContainer:
			r.resAt = 2
		case classNoKey:
			r.resAt = 0
		case classEval:
			r.resAt = 3
		}
	case k == 1 && r.class == classContainer:
		r.sub = s
	case k == 2 && r.class == classEval:
		if string(data[s.off:s.end]) == "0" {
			r.resAt = 0
		}
	}
	if k > 0 && k == r.resAt {
		r.res = s
	}
}

// fill sets the request fields of f from data.
func (r *roles) fill(f *l7.Frame, data []byte, args int) {
	f.Reset(l7.DirRequest)
	f.Verb = r.verb.of(data)
	f.Sub = r.sub.of(data)
	f.Resource = r.res.of(data)
	f.Args = args
}

// reqState is the parser's place inside a request between calls.
type reqState struct {
	active bool // a request is in progress
	inline bool
	seen   int // len(data) at the last OpMore
	scan   int // inline: no LF before this offset
	pos    int // multibulk: offset of the next argument
	nargs  int
	argi   int // arguments read
	roles  roles
}

func (p *Parser) parseRequest(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	if st.active && len(data) >= st.seen {
		if st.inline {
			return p.parseInline(data, f)
		}
		return p.parseMultibulk(data, f)
	}
	*st = reqState{}
	if len(data) == 0 {
		return l7.OpMore, 1, nil
	}
	if data[0] != '*' {
		// Like redis-server: whatever does not start with '*' is inline.
		return p.parseInline(data, f)
	}
	n, next, more, err := readLen(data, 1, p.lim.MaxArgs, true, false, errTooManyArgs)
	if err != nil {
		return l7.OpMore, 0, err
	}
	if more > 0 {
		return l7.OpMore, more + minArg*n, nil
	}
	if n <= 0 {
		// *0 and *-1: redis-server reads them as an empty command and
		// ignores them.
		f.Reset(l7.DirRequest)
		return l7.OpSkip, next, nil
	}
	if next+minArg*n > p.lim.MaxMessage {
		return l7.OpMore, 0, errMessageTooLong
	}
	*st = reqState{active: true, pos: next, nargs: n}
	return p.parseMultibulk(data, f)
}

func (p *Parser) parseMultibulk(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	for st.argi < st.nargs {
		i := st.pos
		rest := st.nargs - st.argi - 1 // arguments after this one
		if i >= len(data) {
			return p.reqMore(data, minArg*(rest+1))
		}
		if data[i] != '$' {
			return p.reqFail(errExpectedBulk)
		}
		l, next, more, err := readLen(data, i+1, p.lim.MaxBulk, false, false, errBulkTooLong)
		if err != nil {
			return p.reqFail(err)
		}
		if more > 0 {
			return p.reqMore(data, more+l+2+minArg*rest)
		}
		if st.argi == 0 && l > l7.MaxVerb {
			return p.reqFail(errVerbTooLong)
		}
		end := next + l + 2
		if end+minArg*rest > p.lim.MaxMessage {
			return p.reqFail(errMessageTooLong)
		}
		if end > len(data) {
			return p.reqMore(data, end-len(data)+minArg*rest)
		}
		if data[end-2] != '\r' || data[end-1] != '\n' {
			return p.reqFail(errMissingCRLF)
		}
		st.roles.take(st.argi, span{next, next + l}, data)
		st.argi++
		st.pos = end
	}
	st.roles.fill(f, data, st.nargs)
	n := st.pos
	*st = reqState{}
	return l7.OpFrame, n, nil
}

func (p *Parser) reqMore(data []byte, n int) (l7.Op, int, error) {
	p.req.active = true
	p.req.seen = len(data)
	return l7.OpMore, max(n, 1), nil
}

func (p *Parser) reqFail(err error) (l7.Op, int, error) {
	p.req = reqState{}
	return l7.OpMore, 0, err
}

// parseInline frames an inline command: one line up to LF (a CR before it
// is dropped), split into arguments the way redis-server's sdssplitargs
// does.
func (p *Parser) parseInline(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.req
	from := 0
	if st.active {
		from = min(st.scan, len(data))
	}
	j := bytes.IndexByte(data[from:], '\n')
	if j < 0 {
		least := len(data) // the line holds at least this much
		if least > 0 && data[least-1] == '\r' {
			least--
		}
		if least > p.lim.MaxInline {
			return p.reqFail(errLineTooLong)
		}
		*st = reqState{active: true, inline: true, seen: len(data), scan: len(data)}
		return l7.OpMore, 1, nil
	}
	nl := from + j
	end := nl
	if end > 0 && data[end-1] == '\r' {
		end--
	}
	*st = reqState{}
	if end > p.lim.MaxInline {
		return l7.OpMore, 0, errLineTooLong
	}
	line := data[:end]
	if bytes.IndexByte(line, 0) >= 0 {
		// redis-server looks for the LF with strchr, which stops at a
		// NUL: such a line is never executed.
		return l7.OpMore, 0, errInlineNUL
	}
	var r roles
	argc, err := splitInline(line, &r, p.lim.MaxArgs)
	if err != nil {
		return l7.OpMore, 0, err
	}
	if argc == 0 {
		// An empty (or blank) line: redis-server ignores it.
		f.Reset(l7.DirRequest)
		return l7.OpSkip, nl + 1, nil
	}
	if r.verb.end-r.verb.off > l7.MaxVerb {
		return l7.OpMore, 0, errVerbTooLong
	}
	r.fill(f, data, argc)
	return l7.OpFrame, nl + 1, nil
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// splitInline walks an inline line exactly as sdssplitargs does, without
// decoding: it counts the arguments and records those that fill a field in
// r. Such an argument must be a view of the line: unquoted, or one quoted
// string without escapes; otherwise errInlineEscape. The line holds no NUL.
func splitInline(line []byte, r *roles, maxArgs int) (int, error) {
	argc := 0
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return argc, nil
		}
		start := i
		plain := true   // the argument's bytes are a view of the line
		qs, qe := -1, 0 // the quoted part, when the argument is quoted
		inq, insq := false, false
	scan:
		for {
			switch {
			case inq:
				if i >= len(line) {
					return 0, errUnbalanced
				}
				switch c := line[i]; {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					plain = false
					i += 4
					continue
				case c == '\\' && i+1 < len(line):
					plain = false
					i += 2
					continue
				case c == '"':
					// The closing quote must be followed by a space or
					// nothing at all.
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return 0, errUnbalanced
					}
					qe = i
					i++
					break scan
				}
				i++
			case insq:
				if i >= len(line) {
					return 0, errUnbalanced
				}
				switch c := line[i]; {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					plain = false
					i += 2
					continue
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return 0, errUnbalanced
					}
					qe = i
					i++
					break scan
				}
				i++
			default:
				if i >= len(line) {
					break scan
				}
				switch line[i] {
				case ' ', '\n', '\r', '\t':
					break scan
				case '"':
					inq = true
					plain = plain && i == start
					qs = i + 1
				case '\'':
					insq = true
					plain = plain && i == start
					qs = i + 1
				}
				i++
			}
		}
		s := span{start, i}
		if qs >= 0 {
			s = span{qs, qe}
		}
		if r.needs(argc) && !plain {
			return 0, errInlineEscape
		}
		if argc >= maxArgs {
			return 0, errTooManyArgs
		}
		r.take(argc, s, line)
		argc++
	}
}

// level is one open reply aggregate (or streamed string).
type level struct {
	left int  // elements still expected, or streamed
	kind byte // the type byte that opened it; '$' for a streamed string
	odd  bool // streamed map: a key is waiting for its value
}

// initialStack is how many levels the reply stack starts with.
const initialStack = 4

// push opens level lv on top of the reply stack; the caller has checked
// that rep.depth < lim.MaxDepth.
func (p *Parser) push(lv level) {
	d := p.rep.depth
	if d == len(p.stack) {
		ns := make([]level, min(max(2*len(p.stack), initialStack), p.lim.MaxDepth))
		copy(ns, p.stack)
		p.stack = ns
	}
	p.stack[d] = lv
	p.rep.depth++
}

// streamed marks a level whose length was "?": it ends with ".\r\n" (or
// ";0\r\n" for a streamed string).
const streamed = -1

// repState is the parser's place inside a reply between calls. Together
// with Parser.stack[:depth] it is exactly the state at the start of the
// element at pos.
type repState struct {
	active bool
	seen   int  // len(data) at the last OpMore
	pos    int  // start of the next element
	scan   int  // line at pos: no CR or LF before this offset
	depth  int  // open levels in Parser.stack
	top    byte // type byte of the top-level element
	args   int  // element count of a top-level aggregate
}

func (p *Parser) parseReply(data []byte, f *l7.Frame) (l7.Op, int, error) {
	st := &p.rep
	if !st.active || len(data) < st.seen {
		*st = repState{}
	}
	for {
		pos := st.pos
		if pos >= len(data) {
			return p.repMore(data, minElem)
		}
		t := data[pos]
		var lv *level
		if st.depth > 0 {
			lv = &p.stack[st.depth-1]
		} else {
			st.top = t
		}

		// Inside a streamed string only chunks come: ";len\r\n…\r\n",
		// ending with ";0\r\n".
		if lv != nil && lv.kind == '$' {
			if t != ';' {
				return p.repFail(errBadStream)
			}
			l, next, more, err := readLen(data, pos+1, p.lim.MaxBulk, false, false, errBulkTooLong)
			if err != nil {
				return p.repFail(err)
			}
			if more > 0 {
				if l > 0 {
					more += l + 2
				}
				return p.repMore(data, more)
			}
			if l == 0 {
				st.depth--
				p.advance(next)
				if p.finish() {
					return p.repDone(f)
				}
				continue
			}
			more, err = p.bulkBody(data, next, l, false)
			if err != nil {
				return p.repFail(err)
			}
			if more > 0 {
				return p.repMore(data, more)
			}
			continue
		}

		if t == '.' {
			// End of a streamed aggregate.
			if lv == nil || lv.left != streamed {
				return p.repFail(errBadStream)
			}
			for k, want := range [2]byte{'\r', '\n'} {
				if pos+1+k >= len(data) {
					return p.repMore(data, 2-k)
				}
				if data[pos+1+k] != want {
					return p.repFail(errBadStream)
				}
			}
			if lv.odd {
				return p.repFail(errBadStream) // a map key without value
			}
			if st.depth == 1 && lv.kind == '%' {
				st.args /= 2
			}
			st.depth--
			p.advance(pos + 3)
			if p.finish() {
				return p.repDone(f)
			}
			continue
		}

		switch t {
		case '+', '-', ':', ',', '(', '#', '_':
			e, more, err := p.line(data, pos+1)
			if err != nil {
				return p.repFail(err)
			}
			if more > 0 {
				return p.repMore(data, more)
			}
			if !simpleValid(t, data[pos+1:e]) {
				return p.repFail(errBadValue)
			}
			if e+2 > p.lim.MaxMessage {
				return p.repFail(errMessageTooLong)
			}
			p.advance(e + 2)

		case '$', '!', '=':
			l, next, more, err := readLen(data, pos+1, p.lim.MaxBulk, t == '$', t == '$', errBulkTooLong)
			if err != nil {
				return p.repFail(err)
			}
			if more > 0 {
				if l > 0 {
					more += l + 2
				}
				return p.repMore(data, more)
			}
			switch l {
			case lenNull:
				p.advance(next)
			case lenStream:
				if st.depth >= p.lim.MaxDepth {
					return p.repFail(errTooDeep)
				}
				p.push(level{left: streamed, kind: '$'})
				p.advance(next)
				continue
			default:
				if t == '=' && l < 4 {
					return p.repFail(errBadValue) // "txt:" at least
				}
				more, err = p.bulkBody(data, next, l, t == '=')
				if err != nil {
					return p.repFail(err)
				}
				if more > 0 {
					return p.repMore(data, more)
				}
			}

		case '*', '%', '~', '>', '|':
			per := 1 // elements per announced entry
			if t == '%' || t == '|' {
				per = 2
			}
			canStream := t == '*' || t == '%' || t == '~'
			l, next, more, err := readLen(data, pos+1, p.lim.MaxMessage/(minElem*per), t == '*', canStream, errMessageTooLong)
			if err != nil {
				return p.repFail(err)
			}
			if more > 0 {
				return p.repMore(data, more+minElem*per*l)
			}
			if l == lenNull {
				p.advance(next)
				break
			}
			if st.depth == 0 {
				st.args = max0(l)
			}
			if l == 0 {
				p.advance(next)
				if t == '|' {
					// An empty attribute decorates the next element and
					// is not one itself.
					if st.depth == 0 {
						return p.repDone(f)
					}
					continue
				}
				break
			}
			if st.depth >= p.lim.MaxDepth {
				return p.repFail(errTooDeep)
			}
			lv := level{left: streamed, kind: t}
			if l != lenStream {
				lv.left = l * per
				if next+minElem*lv.left+p.pendingAfter() > p.lim.MaxMessage {
					return p.repFail(errMessageTooLong)
				}
			}
			p.push(lv)
			p.advance(next)
			continue

		default:
			return p.repFail(errBadType)
		}

		if p.finish() {
			return p.repDone(f)
		}
	}
}

// bulkBody checks the payload of l bytes at next and its CRLF, and moves
// past them; more > 0 when they are not all there yet. A verbatim string's
// payload starts with a three-letter format and ':'.
func (p *Parser) bulkBody(data []byte, next, l int, verbatim bool) (more int, err error) {
	end := next + l + 2
	if end > p.lim.MaxMessage {
		return 0, errMessageTooLong
	}
	if verbatim && next+3 < len(data) && data[next+3] != ':' {
		return 0, errBadValue
	}
	if end > len(data) {
		return end - len(data), nil
	}
	if data[end-2] != '\r' || data[end-1] != '\n' {
		return 0, errMissingCRLF
	}
	p.advance(end)
	return 0, nil
}

// advance moves to the next element, which starts at pos.
func (p *Parser) advance(pos int) {
	p.rep.pos = pos
	p.rep.scan = 0
}

// finish records that an element just ended; it reports whether the
// top-level reply is complete.
func (p *Parser) finish() bool {
	st := &p.rep
	for st.depth > 0 {
		lv := &p.stack[st.depth-1]
		if lv.left == streamed {
			if lv.kind == '%' {
				lv.odd = !lv.odd
			}
			if st.depth == 1 {
				st.args++
			}
			return false
		}
		lv.left--
		if lv.left > 0 {
			return false
		}
		st.depth--
		if lv.kind == '|' {
			// An attribute is not an element of its parent: the element
			// it decorates follows.
			return st.depth == 0
		}
	}
	return true
}

// pendingAfter is the least number of bytes the open aggregates need after
// the element being parsed: minElem per element still expected and the end
// marker of streamed aggregates. It stops counting beyond MaxMessage.
func (p *Parser) pendingAfter() int {
	sum := 0
	d := p.rep.depth
	for i := 0; i < d; i++ {
		lv := &p.stack[i]
		switch {
		case lv.kind == '$' && lv.left == streamed:
			// A streamed string is innermost; the chunk being parsed
			// accounts for its bytes.
		case lv.left == streamed:
			if i < d-1 {
				sum += minElem // ".\r\n"
			}
		default:
			k := lv.left
			if i == d-1 || p.stack[i+1].kind != '|' {
				k-- // the element being parsed (an attribute is extra)
			}
			sum += minElem * k
		}
		if sum > p.lim.MaxMessage {
			break
		}
	}
	return sum
}

// line finds the CRLF that ends a line whose content starts at i, and
// returns the offset of its CR. A line may hold no other CR or LF and at
// most MaxInline bytes; both are checked byte by byte, so that a prefix
// never gives another answer than the whole.
func (p *Parser) line(data []byte, i int) (e, more int, err error) {
	j := max(i, p.rep.scan)
	for ; j < len(data); j++ {
		switch data[j] {
		case '\r':
			if j+1 >= len(data) {
				p.rep.scan = j
				return 0, 1, nil
			}
			if data[j+1] != '\n' {
				return 0, 0, errBadLine
			}
			return j, 0, nil
		case '\n':
			return 0, 0, errBadLine
		}
		if j-i >= p.lim.MaxInline {
			return 0, 0, errLineTooLong
		}
	}
	p.rep.scan = len(data)
	return 0, 2, nil
}

// simpleValid checks the content of a line reply of type t.
func simpleValid(t byte, s []byte) bool {
	switch t {
	case ':', '(':
		if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
			s = s[1:]
		}
		if len(s) == 0 {
			return false
		}
		for _, c := range s {
			if c < '0' || c > '9' {
				return false
			}
		}
	case ',':
		return len(s) > 0
	case '#':
		return len(s) == 1 && (s[0] == 't' || s[0] == 'f')
	case '_':
		return len(s) == 0
	}
	return true
}

func (p *Parser) repMore(data []byte, elem int) (l7.Op, int, error) {
	p.rep.active = true
	p.rep.seen = len(data)
	return l7.OpMore, max(elem+p.pendingAfter(), 1), nil
}

func (p *Parser) repFail(err error) (l7.Op, int, error) {
	p.rep = repState{}
	return l7.OpMore, 0, err
}

// repDone returns the complete top-level reply that ends at rep.pos.
func (p *Parser) repDone(f *l7.Frame) (l7.Op, int, error) {
	st := p.rep
	p.rep = repState{}
	f.Reset(l7.DirReply)
	switch st.top {
	case '|', '>':
		return l7.OpSkip, st.pos, nil
	case '-', '!':
		f.Err = true
	}
	f.Args = st.args
	return l7.OpFrame, st.pos, nil
}
