package memcached

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "memcached"

// MaxKey bounds a key in bytes: memcached's KEY_MAX_LENGTH. A longer key is
// ErrTooLong in every form of the protocol (memcached refuses it too, and
// in a storage command it then reads the data block as commands).
const MaxKey = 250

// MaxMetaTokens bounds the words of a meta command line (command, key and
// flags; for ms also the data length). memcached answers a longer line
// with CLIENT_ERROR without reading an ms data block, so a longer ms line
// is ErrTooLong.
const MaxMetaTokens = 19

// Default limits and their caps.
const (
	// DefaultMaxLine bounds one text line without its line end: 64 KiB.
	// memcached itself gives up on a line without LF after 2 KiB, except
	// for get and gets, whose key lists are unbounded; 64 KiB holds
	// thousands of ordinary keys.
	DefaultMaxLine = 64 << 10
	// DefaultMaxItem bounds one value: 1 MiB, memcached's default item
	// size limit (-I).
	DefaultMaxItem = 1 << 20

	CapMaxLine = 16 << 20
	CapMaxItem = 1 << 30 // memcached's -I accepts at most 1 GiB
)

// MaxMessage is what a Parser with default limits needs buffered at most
// to frame one message: a whole line and its CRLF (binary headers, keys
// and extras are shorter). Values are streamed, never buffered whole.
const MaxMessage = DefaultMaxLine + 2

// Limits bound what a Parser accepts. A zero field takes its default; a
// message over a limit makes Parse return an error wrapping l7.ErrTooLong.
type Limits struct {
	// MaxLine bounds one text line (a command, whose key list may be long,
	// or a reply line) without its CRLF, in bytes.
	MaxLine int
	// MaxItem bounds one value in bytes: the data block of a text or meta
	// storage command, the value of a binary request or response, the data
	// of a VALUE or VA reply. Set it to the server's -I.
	MaxItem int
}

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{MaxLine: DefaultMaxLine, MaxItem: DefaultMaxItem}
}

// Validate reports fields that are negative or above their cap.
func (l Limits) Validate() error {
	var errs []error
	check := func(name string, v, max int) {
		if v < 0 || v > max {
			errs = append(errs, fmt.Errorf("memcached: limit %s = %d, want 0 (default) to %d", name, v, max))
		}
	}
	check("MaxLine", l.MaxLine, CapMaxLine)
	check("MaxItem", l.MaxItem, CapMaxItem)
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
		MaxLine: pick(l.MaxLine, DefaultMaxLine, CapMaxLine),
		MaxItem: pick(l.MaxItem, DefaultMaxItem, CapMaxItem),
	}
}

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir     = fmt.Errorf("memcached: unknown direction: %w", l7.ErrMalformed)
	errNUL        = fmt.Errorf("memcached: NUL byte in a command line: %w", l7.ErrMalformed)
	errBadVerb    = fmt.Errorf("memcached: command name is not printable ASCII: %w", l7.ErrMalformed)
	errBadKey     = fmt.Errorf("memcached: control character in a key: %w", l7.ErrMalformed)
	errBadNumber  = fmt.Errorf("memcached: invalid flags, exptime, byte count or cas number: %w", l7.ErrMalformed)
	errBase64     = fmt.Errorf("memcached: key flagged b is not canonical base64: %w", l7.ErrMalformed)
	errDataEnd    = fmt.Errorf("memcached: data block not followed by CRLF: %w", l7.ErrMalformed)
	errMagic      = fmt.Errorf("memcached: binary packet with a wrong magic byte: %w", l7.ErrMalformed)
	errBinLengths = fmt.Errorf("memcached: binary key and extras longer than the body: %w", l7.ErrMalformed)
	errBinShape   = fmt.Errorf("memcached: binary request with extras, key or body lengths its opcode does not take: %w", l7.ErrMalformed)
	errReplyLine  = fmt.Errorf("memcached: unknown or invalid reply line: %w", l7.ErrMalformed)

	errLineTooLong   = fmt.Errorf("memcached: line too long: %w", l7.ErrTooLong)
	errVerbTooLong   = fmt.Errorf("memcached: command name too long: %w", l7.ErrTooLong)
	errKeyTooLong    = fmt.Errorf("memcached: key longer than 250 bytes: %w", l7.ErrTooLong)
	errItemTooLong   = fmt.Errorf("memcached: value longer than the item size limit: %w", l7.ErrTooLong)
	errMetaTooLong   = fmt.Errorf("memcached: more than 19 words in an ms command: %w", l7.ErrTooLong)
	errBodyTooLong   = fmt.Errorf("memcached: binary body too long: %w", l7.ErrTooLong)
	errBinKeyTooLong = fmt.Errorf("memcached: binary key longer than 250 bytes: %w", l7.ErrTooLong)
)

// b64 decodes meta keys flagged b. memcached's own decoder skips invalid
// characters; only canonical, padded base64 is accepted here, for which
// both decoders agree.
var b64 = base64.StdEncoding.Strict()

// Parser decodes the requests and replies of one memcached connection: the
// text protocol, meta commands and the binary protocol, which memcached
// tells apart per connection by the first byte (0x80: binary). It is not
// safe for concurrent use. The zero value uses DefaultLimits.
//
// Parse keeps its place between calls, separately for each direction:
// after OpMore the caller passes the same bytes again, extended (the buffer
// may have moved); a shorter input starts the message over. Values are
// streamed: after the frame of a storage command, Parse returns OpSkip for
// as much of the value as the input holds.
type Parser struct {
	lim   Limits
	ready bool
	req   dirState
	rep   dirState
	// key receives a meta key flagged b, decoded.
	key [MaxKey]byte
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
	p.lim = l.normalized()
	p.ready = true
	return p
}

// Limits returns the limits in force.
func (p *Parser) Limits() Limits {
	if !p.ready {
		return DefaultLimits()
	}
	return p.lim
}

// Protocol describes memcached to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: MaxMessage,
	}
}

// Wire forms of a connection, decided by its first byte.
const (
	modeUnknown uint8 = iota
	modeText          // text and meta commands
	modeBinary        // binary protocol
)

// dirState is the parser's place in one direction of the connection.
type dirState struct {
	mode uint8
	// A line or header at the front of the input, after OpMore.
	active bool
	seen   int // len(data) at the last OpMore
	scan   int // no LF before this offset
	// A value being streamed.
	body  int  // bytes left of it, tail included
	tail  int  // bytes at its end returned as a frame (replies)
	crlf  bool // it ends with CRLF, which must be checked
	final bool // the tail frame completes an answer
	err   bool // the tail frame is an error reply
}

// Parse decodes the message at the front of data; see l7.Parser and the
// package documentation for the frames of each form.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if !p.ready {
		p.lim = DefaultLimits()
		p.ready = true
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
	if st.body > 0 {
		// streamBody's cases for a binary body, which has no CRLF to
		// check, here to save a call per piece: its middle, then its
		// last byte.
		switch skip := st.body - st.tail; {
		case st.crlf:
		case skip > 0 && len(data) > 0:
			n := min(len(data), skip)
			st.body -= n
			f.Reset(dir)
			return l7.OpSkip, n, nil
		case skip <= 0 && len(data) >= st.tail:
			f.Reset(dir)
			f.Err, f.Partial = st.err, !st.final
			n := st.tail
			st.body, st.tail, st.final, st.err = 0, 0, false, false
			return l7.OpFrame, n, nil
		}
		return p.streamBody(st, dir, data, f)
	}
	if len(data) == 0 {
		if st.mode == modeBinary {
			return l7.OpMore, headerLen, nil
		}
		return l7.OpMore, 1, nil
	}
	if st.mode == modeUnknown {
		st.mode = modeText
		if (dir == l7.DirRequest && data[0] == magicRequest) || (dir == l7.DirReply && data[0] == magicResponse) {
			st.mode = modeBinary
		}
	}
	if dir == l7.DirRequest {
		if st.mode == modeBinary {
			return p.binaryRequest(st, data, f)
		}
		return p.textRequest(st, data, f)
	}
	if st.mode == modeBinary {
		return p.binaryReply(st, data, f)
	}
	return p.textReply(st, data, f)
}

// fail forgets the direction's state and returns err.
func fail(st *dirState, err error) (l7.Op, int, error) {
	*st = dirState{}
	return l7.OpMore, 0, err
}

// streamBody skips the value being streamed, checking its final CRLF, and
// returns its tail (if any) as a frame.
func (p *Parser) streamBody(st *dirState, dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if skip := st.body - st.tail; skip > 0 {
		n := min(len(data), skip)
		if n == 0 {
			return l7.OpMore, st.body, nil
		}
		if st.crlf && !checkCRLF(data[:n], st.body) {
			return fail(st, errDataEnd)
		}
		st.body -= n
		f.Reset(dir)
		return l7.OpSkip, n, nil
	}
	if st.crlf && !checkCRLF(data[:min(len(data), st.tail)], st.body) {
		return fail(st, errDataEnd)
	}
	if len(data) < st.tail {
		return l7.OpMore, st.tail - len(data), nil
	}
	n := st.tail
	f.Reset(dir)
	f.Err = st.err
	f.Partial = !st.final
	st.body, st.tail, st.crlf, st.final, st.err = 0, 0, false, false, false
	return l7.OpFrame, n, nil
}

// checkCRLF checks the bytes of b that are among the last two of a value
// of which left bytes remain: they must be CR and LF.
func checkCRLF(b []byte, left int) bool {
	if i := left - 2; i >= 0 && i < len(b) && b[i] != '\r' {
		return false
	}
	if i := left - 1; i >= 0 && i < len(b) && b[i] != '\n' {
		return false
	}
	return true
}

// line finds the line at the front of data, as memcached does: up to LF,
// without a CR just before it. It returns the end of the line's content
// and the offset after its LF (next == 0: no LF yet; the state records
// how far it looked).
func (p *Parser) line(st *dirState, data []byte) (end, next int, err error) {
	from := 0
	if st.active && len(data) >= st.seen {
		from = min(st.scan, len(data))
	}
	j := bytes.IndexByte(data[from:], '\n')
	if j < 0 {
		least := len(data) // the line holds at least this much
		if least > 0 && data[least-1] == '\r' {
			least--
		}
		if least > p.lim.MaxLine {
			return 0, 0, errLineTooLong
		}
		st.active, st.seen, st.scan = true, len(data), len(data)
		return 0, 0, nil
	}
	st.active = false
	nl := from + j
	end = nl
	if nl > 1 && data[nl-1] == '\r' {
		end = nl - 1
	}
	if end > p.lim.MaxLine {
		return 0, 0, errLineTooLong
	}
	return end, nl + 1, nil
}

// span is a token's place in the input.
type span struct{ off, end int }

// of returns the span's bytes, capacity-limited so that appending to the
// view cannot overwrite the caller's buffer.
func (s span) of(data []byte) []byte { return data[s.off:s.end:s.end] }

// nextToken finds the token at or after i in line: memcached separates
// tokens by spaces only. ok is false when there is none.
func nextToken(line []byte, i int) (s span, ok bool) {
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if i >= len(line) {
		return span{}, false
	}
	start := i
	for i < len(line) && line[i] != ' ' {
		i++
	}
	return span{start, i}, true
}

// Text commands, by what their words mean.
const (
	cmdOther      = iota // no key, no noreply, no data block
	cmdGet               // get, gets, bget: keys from word 1
	cmdGat               // gat, gats: exptime, then keys from word 2
	cmdStore             // set, add, replace, append, prepend
	cmdCas               // cas
	cmdArith             // incr, decr, touch: key, value [noreply]
	cmdDelete            // delete key [0] [noreply]
	cmdFlush             // flush_all [delay] [noreply]
	cmdVerbosity         // verbosity, cache_memlimit: value [noreply]
	cmdNoreplyAny        // lru, extstore: sub-command … [noreply]
	cmdSlabs             // slabs automove … [noreply], slabs reassign …
	cmdQuit              // quit: the server closes without a reply
	cmdWatch             // watch: the connection becomes a log stream
	cmdRefresh           // refresh_certs [noreply]: answered or not
	cmdMeta              // mg, md, ma: key flags…
	cmdMetaSet           // ms: key datalen flags… + data block
	cmdMetaDebug         // me: key [b]
)

// textCommand classifies a command name. memcached's commands are case
// sensitive: "GET" is an unknown command to it (answered ERROR).
func textCommand(name []byte) int {
	if len(name) == 2 && name[0] == 'm' {
		switch name[1] {
		case 'g', 'd', 'a':
			return cmdMeta
		case 's':
			return cmdMetaSet
		case 'e':
			return cmdMetaDebug
		}
		return cmdOther // mn, and unknown meta commands (answered ERROR)
	}
	switch string(name) {
	case "get", "gets", "bget":
		return cmdGet
	case "gat", "gats":
		return cmdGat
	case "set", "add", "replace", "append", "prepend":
		return cmdStore
	case "cas":
		return cmdCas
	case "incr", "decr", "touch":
		return cmdArith
	case "delete":
		return cmdDelete
	case "flush_all":
		return cmdFlush
	case "verbosity", "cache_memlimit":
		return cmdVerbosity
	case "lru", "extstore":
		return cmdNoreplyAny
	case "slabs":
		return cmdSlabs
	case "quit":
		return cmdQuit
	case "watch":
		return cmdWatch
	case "refresh_certs":
		return cmdRefresh
	}
	return cmdOther
}

// maxHeld is how many leading words of a command line are kept for
// checking: memcached's MAX_TOKENS, the words it looks at in one pass.
const maxHeld = 24

// textRequest frames one command line of the text or meta protocol, the
// way memcached 1.6 tokenizes and dispatches it.
func (p *Parser) textRequest(st *dirState, data []byte, f *l7.Frame) (l7.Op, int, error) {
	end, next, err := p.line(st, data)
	if err != nil {
		return fail(st, err)
	}
	if next == 0 {
		return l7.OpMore, 1, nil
	}
	line := data[:end]
	if bytes.IndexByte(line, 0) >= 0 {
		// memcached tokenizes with strlen: it would not see what follows.
		return fail(st, errNUL)
	}
	f.Reset(l7.DirRequest)
	if len(line) == 1 && line[0] == '\r' {
		// A bare CRLF: memcached answers ERROR, like an empty line.
		return l7.OpFrame, next, nil
	}

	var (
		held    [maxHeld]span
		words   int
		cmd     = cmdOther
		keyFrom = 0 // first key word of a multi-key command
		flagsAt = 0 // first flag word of a meta command
		quiet   bool
		b64Key  bool
	)
	for i := 0; ; {
		s, ok := nextToken(line, i)
		if !ok {
			break
		}
		i = s.end
		w := line[s.off:s.end]
		switch {
		case words == 0:
			if len(w) > l7.MaxVerb {
				return fail(st, errVerbTooLong)
			}
			for _, c := range w {
				if c <= ' ' || c >= 0x7f {
					return fail(st, errBadVerb)
				}
			}
			cmd = textCommand(w)
			switch cmd {
			case cmdGet:
				keyFrom = 1
			case cmdGat:
				keyFrom = 2
			case cmdMeta, cmdMetaDebug:
				flagsAt = 2
			case cmdMetaSet:
				flagsAt = 3
			}
		case keyFrom > 0 && words >= keyFrom:
			if err := checkKey(w); err != nil {
				return fail(st, err)
			}
			f.AddResource(s.of(data))
		case flagsAt > 0 && words >= flagsAt:
			switch {
			case cmd == cmdMetaDebug:
				b64Key = b64Key || (words == 2 && len(w) == 1 && w[0] == 'b')
			case w[0] == 'q':
				quiet = true
			case w[0] == 'b':
				b64Key = true
			}
		}
		if words < maxHeld {
			held[words] = s
		}
		words++
	}
	if words == 0 {
		return l7.OpFrame, next, nil // an empty line: answered ERROR
	}
	f.Verb = held[0].of(data)
	f.Args = words
	// memcached keeps at most 23 words per pass (MAX_TOKENS 24 with the
	// terminal one); ntokens counts the terminal token.
	nt := min(words, 23) + 1
	word := func(k int) []byte { return data[held[k].off:held[k].end] }
	noreplyAt := func(k int) bool { return k > 0 && k < maxHeld && string(word(k)) == "noreply" }

	switch cmd {
	case cmdStore, cmdCas:
		want := 6 // set key flags exptime bytes + terminal
		if cmd == cmdCas {
			want = 7
		}
		if nt != want && nt != want+1 {
			break // answered ERROR; memcached reads no data block
		}
		if err := checkKey(word(1)); err != nil {
			return fail(st, err)
		}
		if _, ok := parseUint(word(2), math.MaxUint32); !ok {
			return fail(st, errBadNumber)
		}
		if !parseInt32(word(3)) {
			return fail(st, errBadNumber)
		}
		n, err := p.valueLen(word(4))
		if err != nil {
			return fail(st, err)
		}
		if cmd == cmdCas {
			if _, ok := parseUint(word(5), math.MaxUint64); !ok {
				return fail(st, errBadNumber)
			}
		}
		f.Resource = held[1].of(data)
		f.NoReply = nt == want+1 && noreplyAt(want-1)
		st.body, st.crlf = n+2, true
	case cmdArith, cmdDelete:
		lo, hi := 4, 5
		if cmd == cmdDelete {
			lo = 3
		}
		if nt < lo || nt > hi {
			break
		}
		if err := checkKey(word(1)); err != nil {
			return fail(st, err)
		}
		f.Resource = held[1].of(data)
		f.NoReply = nt >= 4 && noreplyAt(nt-2)
	case cmdFlush:
		f.NoReply = nt >= 3 && nt <= 4 && noreplyAt(nt-2)
	case cmdVerbosity:
		f.NoReply = (nt == 3 || nt == 4) && noreplyAt(nt-2)
	case cmdNoreplyAny:
		f.NoReply = nt >= 3 && noreplyAt(nt-2)
	case cmdSlabs:
		f.NoReply = nt >= 4 && string(word(1)) == "automove" && noreplyAt(nt-2)
	case cmdQuit:
		f.NoReply = true
	case cmdWatch:
		// The connection becomes a stream of log lines (skipped) and
		// memcached reads no more commands.
		f.Unordered = true
	case cmdRefresh:
		// noreply suppresses its OK but not its error text ("Error TLS
		// not enabled"): whether it is answered depends on the server.
		f.Unordered = words >= 2
	case cmdMeta, cmdMetaDebug:
		if nt < 3 {
			break // answered ERROR (me: CLIENT_ERROR)
		}
		if err := p.metaKey(f, data, held[1], b64Key); err != nil {
			return fail(st, err)
		}
		// An over-long flag list is answered CLIENT_ERROR, quiet or not.
		// A quiet command is answered only when memcached has something
		// to say, and that answer looks like any other: replies no
		// longer pair with requests.
		f.NoReply = cmd == cmdMeta && quiet && words <= MaxMetaTokens
		f.Unordered = f.NoReply
	case cmdMetaSet:
		if nt < 3 {
			break // answered ERROR; no data block
		}
		if len(word(1)) > MaxKey {
			return fail(st, errKeyTooLong)
		}
		if words == 2 {
			break // answered CLIENT_ERROR; no data block
		}
		if words > MaxMetaTokens {
			return fail(st, errMetaTooLong)
		}
		n, err := p.valueLen(word(2))
		if err != nil {
			return fail(st, err)
		}
		if err := p.metaKey(f, data, held[1], b64Key); err != nil {
			return fail(st, err)
		}
		f.NoReply, f.Unordered = quiet, quiet
		st.body, st.crlf = n+2, true
	}
	return l7.OpFrame, next, nil
}

// metaKey sets the frame's resource to the meta command's key at s,
// decoded when it is flagged b.
func (p *Parser) metaKey(f *l7.Frame, data []byte, s span, encoded bool) error {
	key := data[s.off:s.end]
	if err := checkKey(key); err != nil {
		return err
	}
	if !encoded {
		f.Resource = s.of(data)
		return nil
	}
	n, err := b64.Decode(p.key[:], key)
	if err != nil || n == 0 {
		return errBase64
	}
	f.Resource = p.key[:n:n]
	return nil
}

// valueLen parses the byte count of a data block: digits only, at most the
// item size limit.
func (p *Parser) valueLen(w []byte) (int, error) {
	// memcached takes an int32 and refuses negative counts and counts
	// above INT_MAX-2.
	v, ok := parseUint(w, math.MaxInt32-2)
	if !ok {
		return 0, errBadNumber
	}
	if v > uint64(p.lim.MaxItem) {
		return 0, errItemTooLong
	}
	return int(v), nil
}

// checkKey checks a text key: at most MaxKey bytes, no control characters
// (spaces cannot occur: they separate words).
func checkKey(k []byte) error {
	if len(k) > MaxKey {
		return errKeyTooLong
	}
	for _, c := range k {
		if c < ' ' || c == 0x7f {
			return errBadKey
		}
	}
	return nil
}

// parseUint parses decimal digits (no sign, no blanks) whose value is at
// most max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseInt32 reports whether b is an optional minus sign and digits whose
// value fits an int32.
func parseInt32(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		_, ok := parseUint(b[1:], -math.MinInt32)
		return ok
	}
	_, ok := parseUint(b, math.MaxInt32)
	return ok
}

// Binary protocol (protocol_binary.h).
const (
	magicRequest  = 0x80
	magicResponse = 0x81
	headerLen     = 24
)

// Opcodes that the parser treats specially.
const (
	opGet            = 0x00
	opSet            = 0x01
	opAdd            = 0x02
	opReplace        = 0x03
	opDelete         = 0x04
	opIncrement      = 0x05
	opDecrement      = 0x06
	opQuit           = 0x07
	opFlush          = 0x08
	opGetQ           = 0x09
	opNoop           = 0x0a
	opVersion        = 0x0b
	opGetK           = 0x0c
	opGetKQ          = 0x0d
	opAppend         = 0x0e
	opPrepend        = 0x0f
	opStat           = 0x10
	opSetQ           = 0x11
	opAddQ           = 0x12
	opReplaceQ       = 0x13
	opDeleteQ        = 0x14
	opIncrementQ     = 0x15
	opDecrementQ     = 0x16
	opQuitQ          = 0x17
	opFlushQ         = 0x18
	opAppendQ        = 0x19
	opPrependQ       = 0x1a
	opTouch          = 0x1c
	opGAT            = 0x1d
	opGATQ           = 0x1e
	opSASLListMechs  = 0x20
	opSASLAuth       = 0x21
	opSASLStep       = 0x22
	opGATK           = 0x23
	opGATKQ          = 0x24
	statusAuthContin = 0x21
)

// opcode describes one binary opcode.
type opcode struct {
	name  []byte // Frame.Verb: the protocol_binary.h name, lower case
	known bool   // memcached 1.6 implements it
	quiet bool   // a …Q opcode: answered only when there is something to say
	base  byte   // the opcode it is the quiet form of (itself otherwise)
	keyed bool   // its key is a cache key (Frame.Resource)
}

// opcodeNames holds the bytes of every opcode name, one after another.
var opcodeNames = make([]byte, 0, 4096)

// opcodes is indexed by opcode; unknown ones are named "opcode_xx".
var opcodes = func() (t [256]opcode) {
	name := func(s string) []byte {
		start := len(opcodeNames)
		opcodeNames = append(opcodeNames, s...)
		return opcodeNames[start:len(opcodeNames):len(opcodeNames)]
	}
	for i := range t {
		t[i] = opcode{name: name(fmt.Sprintf("opcode_%02x", i)), base: byte(i)}
	}
	set := func(op byte, n string, base byte, keyed bool) {
		t[op] = opcode{name: name(n), known: true, quiet: base != op, base: base, keyed: keyed}
	}
	set(opGet, "get", opGet, true)
	set(opSet, "set", opSet, true)
	set(opAdd, "add", opAdd, true)
	set(opReplace, "replace", opReplace, true)
	set(opDelete, "delete", opDelete, true)
	set(opIncrement, "increment", opIncrement, true)
	set(opDecrement, "decrement", opDecrement, true)
	set(opQuit, "quit", opQuit, false)
	set(opFlush, "flush", opFlush, false)
	set(opGetQ, "getq", opGet, true)
	set(opNoop, "noop", opNoop, false)
	set(opVersion, "version", opVersion, false)
	set(opGetK, "getk", opGetK, true)
	set(opGetKQ, "getkq", opGetK, true)
	set(opAppend, "append", opAppend, true)
	set(opPrepend, "prepend", opPrepend, true)
	set(opStat, "stat", opStat, false)
	set(opSetQ, "setq", opSet, true)
	set(opAddQ, "addq", opAdd, true)
	set(opReplaceQ, "replaceq", opReplace, true)
	set(opDeleteQ, "deleteq", opDelete, true)
	set(opIncrementQ, "incrementq", opIncrement, true)
	set(opDecrementQ, "decrementq", opDecrement, true)
	set(opQuitQ, "quitq", opQuit, false)
	set(opFlushQ, "flushq", opFlush, false)
	set(opAppendQ, "appendq", opAppend, true)
	set(opPrependQ, "prependq", opPrepend, true)
	set(opTouch, "touch", opTouch, true)
	set(opGAT, "gat", opGAT, true)
	set(opGATQ, "gatq", opGAT, true)
	set(opGATK, "gatk", opGATK, true)
	set(opGATKQ, "gatkq", opGATK, true)
	set(opSASLListMechs, "sasl_list_mechs", opSASLListMechs, false)
	set(opSASLAuth, "sasl_auth", opSASLAuth, false)
	set(opSASLStep, "sasl_step", opSASLStep, false)
	return t
}()

// header is a binary request or response header.
type header struct {
	magic, op, extlen byte
	keylen            int
	status            uint16 // responses; the vbucket id in requests
	bodylen           int
	opaque            uint32
}

func readHeader(b []byte) header {
	return header{
		magic:   b[0],
		op:      b[1],
		keylen:  int(binary.BigEndian.Uint16(b[2:4])),
		extlen:  b[4],
		status:  binary.BigEndian.Uint16(b[6:8]),
		bodylen: int(binary.BigEndian.Uint32(b[8:12])),
		opaque:  binary.BigEndian.Uint32(b[12:16]),
	}
}

// checkRequest checks a binary request header the way memcached 1.6's
// dispatch_bin_command does (it answers a violation with an error and
// closes the connection), and more strictly where memcached would read
// the rest of a body as the next request or swallow bytes past the packet:
// a stat or touch body longer than its key and extras, an unknown opcode
// with extras or a key. value is the length of the value that follows
// the key.
func checkRequest(h *header, maxItem int) (value int, err error) {
	ext, key, body := int(h.extlen), h.keylen, h.bodylen
	if key+ext > body {
		return 0, errBinLengths
	}
	if key > MaxKey {
		return 0, errBinKeyTooLong
	}
	value = body - key - ext
	if value > maxItem {
		return 0, errItemTooLong
	}
	var ok bool
	switch opcodes[h.op].base { // one byte of the entry, not a copy of it
	case opVersion, opNoop, opQuit, opSASLListMechs:
		ok = ext == 0 && key == 0 && body == 0
	case opFlush:
		ok = key == 0 && body == ext && (ext == 0 || ext == 4)
	case opSet, opAdd, opReplace:
		ok = ext == 8 && key != 0
	case opGet, opGetK, opDelete:
		ok = ext == 0 && key > 0 && body == key
	case opIncrement, opDecrement:
		ok = ext == 20 && key > 0 && body == key+ext
	case opAppend, opPrepend:
		ok = ext == 0 && key > 0
	case opStat:
		ok = ext == 0 && body == key
	case opSASLAuth, opSASLStep:
		ok = ext == 0 && key != 0
	case opTouch, opGAT, opGATK:
		ok = ext == 4 && key != 0 && body == key+ext
	default:
		// memcached answers an unknown opcode and swallows bodylen bytes
		// after the key: only a body without extras and key is exact.
		ok = ext == 0 && key == 0
	}
	if !ok {
		return 0, errBinShape
	}
	return value, nil
}

// Frame.Args of a binary request carries what Deny needs to answer it:
// argsBinary | opcode<<32 | opaque. Text and meta frames carry their word
// count, which is always smaller.
const argsBinary = 1 << 40

// binaryRequest frames one binary request: header, extras and key; its
// value follows as OpSkip.
func (p *Parser) binaryRequest(st *dirState, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if data[0] != magicRequest {
		return fail(st, errMagic)
	}
	if len(data) < headerLen {
		return l7.OpMore, headerLen - len(data), nil
	}
	h := readHeader(data)
	value, err := checkRequest(&h, p.lim.MaxItem)
	if err != nil {
		return fail(st, err)
	}
	n := headerLen + int(h.extlen) + h.keylen
	if len(data) < n {
		return l7.OpMore, n - len(data), nil
	}
	op := &opcodes[h.op]
	f.Reset(l7.DirRequest)
	f.Verb = op.name
	if op.keyed {
		f.Resource = data[n-h.keylen : n : n]
	}
	f.NoReply = op.quiet
	f.Args = argsBinary | int(h.op)<<32 | int(h.opaque)
	st.body = value
	return l7.OpFrame, n, nil
}

// binaryReply frames one binary response: its header is a frame, its body
// is skipped but for the last byte, which is the frame that completes the
// answer. Responses to quiet opcodes and stat responses before the
// empty-key one that ends a stat answer are Partial throughout.
func (p *Parser) binaryReply(st *dirState, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if data[0] != magicResponse {
		return fail(st, errMagic)
	}
	if len(data) < headerLen {
		return l7.OpMore, headerLen - len(data), nil
	}
	// The fields are read one by one rather than through readHeader:
	// building and copying its struct on the stack cost a store-forwarding
	// stall per response, most of this function's time.
	_ = data[headerLen-1]
	op, extlen := data[1], int(data[4])
	keylen := int(binary.BigEndian.Uint16(data[2:4]))
	status := binary.BigEndian.Uint16(data[6:8])
	bodylen := int(binary.BigEndian.Uint32(data[8:12]))
	if keylen+extlen > bodylen {
		return fail(st, errBinLengths)
	}
	if bodylen > p.lim.MaxItem+255+MaxKey {
		return fail(st, errBodyTooLong)
	}
	partial := opcodes[op].quiet || (op == opStat && keylen > 0)
	isErr := status != 0 && status != statusAuthContin
	f.Reset(l7.DirReply)
	f.Err = isErr
	f.Partial = partial
	if bodylen > 0 {
		f.Partial = true
		st.body, st.tail, st.final, st.err = bodylen, 1, !partial, isErr
	}
	return l7.OpFrame, headerLen, nil
}

// textReply frames one reply line of the text or meta protocol. VALUE,
// CONFIG, STAT, ITEM, PREFIX, metadump (key=…) and mgdump (mg …) lines
// are Partial: the END or EN that follows completes the answer. A VALUE
// block's data is skipped. A VA line is Partial, its data skipped but for
// the final CRLF, the frame that completes the answer. A watch log line
// (ts=…) answers no request and is skipped. Any other line is one answer.
func (p *Parser) textReply(st *dirState, data []byte, f *l7.Frame) (l7.Op, int, error) {
	end, next, clean := 0, 0, false
	if !st.active {
		end, next, clean = cleanLine(data, p.lim.MaxLine)
	}
	if !clean {
		var err error
		if end, next, err = p.line(st, data); err != nil {
			return fail(st, err)
		}
		if next == 0 {
			return l7.OpMore, 1, nil
		}
		for _, c := range data[:end] {
			if c < ' ' && c != '\t' {
				return fail(st, errReplyLine)
			}
		}
	}
	line := data[:end]
	f.Reset(l7.DirReply)
	if len(line) == 0 {
		return fail(st, errReplyLine)
	}
	first := span{0, wordEnd(line)} // nextToken(line, 0) when line[0] != ' '
	switch w := line[first.off:first.end]; {
	case line[0] == ' ':
		return fail(st, errReplyLine)
	case string(w) == "VALUE" || string(w) == "CONFIG":
		n, err := p.valueLine(line)
		if err != nil {
			return fail(st, err)
		}
		st.body, st.crlf = n+2, true
		f.Partial = true
	case string(w) == "VA":
		s, ok := nextToken(line, first.end)
		if !ok {
			return fail(st, errReplyLine)
		}
		n, err := p.valueLen(line[s.off:s.end])
		if err != nil {
			return fail(st, err)
		}
		st.body, st.tail, st.crlf, st.final = n+2, 2, true, true
		f.Partial = true
	case string(w) == "STAT" || string(w) == "ITEM" || string(w) == "PREFIX" || string(w) == "mg" ||
		hasPrefix(w, "key="):
		f.Partial = true
	case hasPrefix(w, "ts="):
		return l7.OpSkip, next, nil
	case w[0] >= 'A' && w[0] <= 'Z':
		f.Err = hasPrefix(w, "ERROR") || string(w) == "CLIENT_ERROR" || string(w) == "SERVER_ERROR"
	default:
		if _, ok := parseUint(line, math.MaxUint64); !ok {
			return fail(st, errReplyLine) // incr and decr answer a number
		}
	}
	return l7.OpFrame, next, nil
}

// valueLine checks "VALUE <key> <flags> <bytes> [<cas>]" (and ElastiCache's
// "CONFIG <name> <flags> <bytes>") and returns the byte count.
func (p *Parser) valueLine(line []byte) (int, error) {
	var w [5]span
	k := 0
	for i := 0; ; {
		s, ok := nextToken(line, i)
		if !ok {
			break
		}
		if k == len(w) {
			return 0, errReplyLine
		}
		w[k] = s
		k++
		i = s.end
	}
	if k < 4 {
		return 0, errReplyLine
	}
	word := func(i int) []byte { return line[w[i].off:w[i].end] }
	if err := checkKey(word(1)); err != nil {
		return 0, err
	}
	if _, ok := parseUint(word(2), math.MaxUint32); !ok {
		return 0, errReplyLine
	}
	if k == 5 {
		if _, ok := parseUint(word(4), math.MaxUint64); !ok {
			return 0, errReplyLine
		}
	}
	return p.valueLen(word(3))
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}
