package http1

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Name is the protocol's name in CRDs, xDS and metrics.
const Name = "http"

// Limits. Every length read from the wire is checked against one of them
// before it is trusted; a message over a limit makes Parse return an error
// wrapping l7.ErrTooLong.
const (
	// MaxStartLine bounds a request line or a status line, without its
	// CRLF: 8 KiB, nginx's default large_client_header_buffers size.
	MaxStartLine = 8 << 10
	// MaxHead bounds a whole head (start line, header fields, the empty
	// line) and, separately, a chunked body's trailer section: 64 KiB.
	MaxHead = 64 << 10
	// MaxHeaders bounds the header fields of one head, and the trailer
	// fields of one chunked body: 128.
	MaxHeaders = 128
	// MaxPath bounds the normalised path (Frame.Resource), which the parser
	// builds in a scratch buffer of this size: 8 KiB. Percent-encoding
	// that the normalisation adds counts.
	MaxPath = 8 << 10
	// MaxHost bounds the host name of the Host header or of an absolute
	// request target (Frame.Aux), without its port: 255 bytes, DNS's limit
	// plus room for an IPv6 literal.
	MaxHost = 255
	// MaxChunkLine bounds a chunk-size line with its extensions, without
	// its CRLF: 4 KiB.
	MaxChunkLine = 4 << 10
	// MaxBody bounds a Content-Length and a chunk size: 1 TiB. Bodies are
	// streamed (OpSkip), never buffered; the bound keeps the arithmetic
	// safe.
	MaxBody = 1 << 40
	// MaxPending bounds the HEAD, CONNECT and upgrade requests that await
	// their responses on one connection (the reply side must know them to
	// frame the responses): 64.
	MaxPending = 64
)

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir       = fmt.Errorf("http: unknown direction: %w", l7.ErrMalformed)
	errBareCR       = fmt.Errorf("http: CR not followed by LF: %w", l7.ErrMalformed)
	errBareLF       = fmt.Errorf("http: LF not preceded by CR: %w", l7.ErrMalformed)
	errBadChar      = fmt.Errorf("http: control or non-ASCII byte in a head: %w", l7.ErrMalformed)
	errRequestLine  = fmt.Errorf("http: malformed request line: %w", l7.ErrMalformed)
	errMethod       = fmt.Errorf("http: method is not a token: %w", l7.ErrMalformed)
	errVersion      = fmt.Errorf("http: version is not HTTP/1.0 or HTTP/1.1: %w", l7.ErrMalformed)
	errTarget       = fmt.Errorf("http: malformed request target: %w", l7.ErrMalformed)
	errPercent      = fmt.Errorf("http: invalid percent-encoding in the path: %w", l7.ErrMalformed)
	errPathNUL      = fmt.Errorf("http: %%00 in the path: %w", l7.ErrMalformed)
	errPathChar     = fmt.Errorf("http: control, space or non-ASCII byte in the path: %w", l7.ErrMalformed)
	errEncodedDot   = fmt.Errorf("http: dot-segment next to an encoded slash or backslash: %w", l7.ErrMalformed)
	errHeader       = fmt.Errorf("http: malformed header field: %w", l7.ErrMalformed)
	errObsFold      = fmt.Errorf("http: obsolete line folding: %w", l7.ErrMalformed)
	errHost         = fmt.Errorf("http: invalid host: %w", l7.ErrMalformed)
	errNoHost       = fmt.Errorf("http: HTTP/1.1 request without Host: %w", l7.ErrMalformed)
	errDupHost      = fmt.Errorf("http: more than one Host: %w", l7.ErrMalformed)
	errCLAndTE      = fmt.Errorf("http: both Content-Length and Transfer-Encoding: %w", l7.ErrMalformed)
	errDupLength    = fmt.Errorf("http: more than one Content-Length: %w", l7.ErrMalformed)
	errBadLength    = fmt.Errorf("http: Content-Length is not a decimal number: %w", l7.ErrMalformed)
	errBadTE        = fmt.Errorf("http: Transfer-Encoding is not exactly chunked: %w", l7.ErrMalformed)
	errTE10         = fmt.Errorf("http: Transfer-Encoding in an HTTP/1.0 request: %w", l7.ErrMalformed)
	errChunk        = fmt.Errorf("http: malformed chunk: %w", l7.ErrMalformed)
	errStatusLine   = fmt.Errorf("http: malformed status line: %w", l7.ErrMalformed)
	errSwitch       = fmt.Errorf("http: 101 Switching Protocols without an upgrade request: %w", l7.ErrMalformed)
	errLineTooLong  = fmt.Errorf("http: request or status line too long: %w", l7.ErrTooLong)
	errHeadTooLong  = fmt.Errorf("http: head or trailer section too long: %w", l7.ErrTooLong)
	errTooManyHdrs  = fmt.Errorf("http: too many header or trailer fields: %w", l7.ErrTooLong)
	errVerbTooLong  = fmt.Errorf("http: method too long: %w", l7.ErrTooLong)
	errPathTooLong  = fmt.Errorf("http: normalised path too long: %w", l7.ErrTooLong)
	errHostTooLong  = fmt.Errorf("http: host too long: %w", l7.ErrTooLong)
	errBodyTooLong  = fmt.Errorf("http: Content-Length or chunk size too large: %w", l7.ErrTooLong)
	errChunkTooLong = fmt.Errorf("http: chunk-size line too long: %w", l7.ErrTooLong)
	errTooPending   = fmt.Errorf("http: too many HEAD, CONNECT or upgrade requests awaiting responses: %w", l7.ErrTooLong)
)

// Request kinds the reply side must know about, as bits.
const (
	kindHead    uint8 = 1 << iota // the response has no body
	kindConnect                   // a 2xx response makes the connection a tunnel
	kindUpgrade                   // a 101 response switches protocols
)

// pending is a HEAD, CONNECT or upgrade request that awaits its response:
// seq is the number of requests forwarded before it.
type pending struct {
	seq  uint64
	kind uint8
}

// Body framings.
const (
	bodyNone    uint8 = iota
	bodyLength        // Content-Length: left bytes
	bodyChunked       // chunked: the chunk state machine
	bodyClose         // a response delimited by the connection's close
)

// States of a chunked body.
const (
	chSize     uint8 = iota // at (or inside) a chunk-size line
	chData                  // inside chunk data: left bytes to go
	chDataCRLF              // the CRLF after chunk data
	chTrailer               // at (or inside) a trailer line, after the last chunk
)

// lineState is the place inside a chunk-size or trailer line that is not
// complete yet. pos is relative to the line's start, so it survives both
// OpMore (same bytes, extended) and OpSkip of the bytes before the line.
type lineState struct {
	pos    int   // bytes of the line checked so far
	val    int64 // chunk size so far
	digits int
	ext    bool // inside chunk extensions
}

// body is the place inside a message body between calls.
type body struct {
	kind     uint8
	left     int64 // Content-Length bytes, or bytes of the current chunk, to go
	chunk    uint8 // chunked: state
	ln       lineState
	trailers int // trailer fields so far
	tbytes   int // bytes of trailer fields so far
}

// headScan is the place inside a head that is not complete yet.
type headScan struct {
	active    bool
	seen      int // len(data) at the last OpMore
	pos       int // next byte to check
	lineStart int
	lines     int // complete lines so far
}

// side is the state of one direction.
type side struct {
	head headScan
	// ends holds the offset of the CR ending each complete line of the
	// head being scanned (ends[0]: the start line's), head.lines of them:
	// scanHead finds the lines once and request and response do not
	// look for them again.
	ends    [MaxHeaders + 1]uint32
	body    body
	scratch l7.Frame // receives the fields when Parse is given no Frame
}

// Parser decodes the requests and replies of one HTTP/1.1 connection.
//
// One Parser must see both directions of its connection: the reply side
// frames a response by the request it answers (HEAD, CONNECT, upgrades).
// Like every l7.Parser it is not safe for concurrent use: calls for both
// directions, and Denied (l7.DenyObserver), must be serialised by the
// caller (the proxy holds one lock per connection from Parse until the
// frame is handled); it has no lock of its own. Denied is called after
// Parse returned the denied request frame and before the next request
// Parse.
//
// Parse keeps its place inside a head between calls: after OpMore the caller
// passes the same bytes again, extended (the buffer may have moved). An
// input shorter than the previous one starts the head over.
type Parser struct {
	req side
	rep side

	// Request side only.
	path [MaxPath]byte // Frame.Resource of the last request frame
	host [MaxHost]byte // Frame.Aux of the last request frame
	last struct {      // the last request frame, for Denied
		valid, pushed bool
		seq           uint64
	}

	// Reply side only.
	repErr bool // the response being streamed has a status >= 400

	// Shared between the directions (the caller serialises the calls).
	opaque bool   // after a 101 or a CONNECT 2xx: OpPass
	reqs   uint64 // requests forwarded (framed and not denied)
	reps   uint64 // final responses framed, at most reqs
	ring   [MaxPending]pending
	head   uint64 // ring[head%MaxPending] is the oldest entry
	tail   uint64 // ring[tail%MaxPending] is the next free entry
}

var (
	_ l7.Parser       = (*Parser)(nil)
	_ l7.DenyObserver = (*Parser)(nil)
)

// NewParser returns a parser for one connection.
func NewParser() *Parser { return &Parser{} }

// Protocol describes HTTP/1.1 to the data plane.
func Protocol() l7.Protocol {
	return l7.Protocol{
		Name:       Name,
		New:        func() l7.Parser { return NewParser() },
		Sniff:      Sniff,
		Deny:       Deny,
		MaxMessage: MaxHead,
	}
}

// Parse decodes the message at the front of data; see l7.Parser and the
// package documentation.
//
// Requests (l7.DirRequest): OpFrame for a request head (Verb, Resource,
// Aux), OpSkip for its body and for empty lines before a request line.
// Replies (l7.DirReply): OpFrame with Partial for an interim (1xx) response
// and for the head of a response with a body; the body is OpSkip, except
// its last piece, which is the OpFrame without Partial that completes the
// response. A response without body is one OpFrame without Partial. After
// a 101 answering an upgrade request, or a 2xx answering CONNECT, every
// call in either direction returns OpPass.
func (p *Parser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	var s *side
	switch dir {
	case l7.DirRequest:
		s = &p.req
	case l7.DirReply:
		s = &p.rep
	default:
		return l7.OpMore, 0, errBadDir
	}
	if f == nil {
		f = &s.scratch
	}
	if p.opaque {
		return l7.OpPass, 0, nil
	}
	if s.body.kind != bodyNone {
		return p.parseBody(s, dir, data, f)
	}
	h := &s.head
	if h.active && len(data) < h.seen {
		*h = headScan{}
	}
	if !h.active {
		if len(data) == 0 {
			return l7.OpMore, 2, nil
		}
		switch data[0] {
		case '\r':
			// Empty lines before a start line are skipped, as RFC 9112
			// 2.2 asks of servers (clients send them after a body).
			if len(data) < 2 {
				return l7.OpMore, 1, nil
			}
			if data[1] != '\n' {
				return l7.OpMore, 0, errBareCR
			}
			f.Reset(dir)
			return l7.OpSkip, 2, nil
		case '\n':
			return l7.OpMore, 0, errBareLF
		}
		*h = headScan{active: true}
	}
	end, more, err := scanHead(data, h, &s.ends, dir == l7.DirRequest)
	if err != nil {
		*h = headScan{}
		return l7.OpMore, 0, err
	}
	if more > 0 {
		h.seen = len(data)
		return l7.OpMore, more, nil
	}
	ends := s.ends[:h.lines]
	if h.seen > 0 && !endsHold(data, ends) {
		// Not the bytes of the last call extended, against the contract:
		// scan this head from its start (what was checked before may
		// differ too).
		*h = headScan{active: true}
		return p.Parse(dir, data, f)
	}
	*h = headScan{}
	if dir == l7.DirRequest {
		return p.request(data[:end], ends, f)
	}
	return p.response(data[:end], ends, f)
}

// endsHold reports whether the line ends recorded by earlier calls are
// still CRLFs of data.
func endsHold(data []byte, ends []uint32) bool {
	for _, e := range ends {
		if int(e)+1 >= len(data) || data[e] != '\r' || data[e+1] != '\n' {
			return false
		}
	}
	return true
}

// scanHead checks the bytes of a head as they arrive, in order, and finds
// its end: every line ends in CRLF (no bare CR or LF), holds no control
// byte (the request line no byte outside printable ASCII) and the limits
// hold. Each check depends only on the bytes up to the one checked, so a
// prefix of the input never gives another answer than the whole but
// OpMore. It returns the head's length, or more > 0, and records where
// each complete line ends in ends[:h.lines].
func scanHead(data []byte, h *headScan, ends *[MaxHeaders + 1]uint32, request bool) (end, more int, err error) {
	// The place is kept in locals (the compiler would load and store
	// h's fields around every write to ends) and written back to h
	// before every return but an error's (the caller resets h then).
	i, lines, lineStart := h.pos, h.lines, h.lineStart
	for i < len(data) {
		if lines > 0 {
			// Header lines: one word test per 8 bytes, and every line end
			// found in a word taken from its flag bits without loading the
			// word again (crlfRun). It stops at the first flagged byte that
			// is not a CRLF within the limits, or short of the last word,
			// and the checks below take that byte.
			var done bool
			if i, lines, lineStart, done = crlfRun(data, i, lines, lineStart, ends); done {
				if lines < 0 {
					return 0, 0, errTooManyHdrs
				}
				h.lines = lines
				return lineStart, 0, nil
			}
			if i >= len(data) {
				break
			}
		}
		// Fast path: skip the bytes that need no more than a table check;
		// the byte it stops at (CR, LF, a bad byte, a limit) goes through
		// the checks below in their order.
		ok, lim, high := &headerByte, min(len(data), MaxHead), uint64(0)
		if lines == 0 {
			if request {
				ok, high = &requestLineByte, 0x8080808080808080
			}
			lim = min(lim, lineStart+MaxStartLine)
		}
		// special8's lowest flagged byte is exact, so the word loop stops
		// at the byte to check; the table loop takes the last bytes.
		found := false
		for i+8 <= lim {
			if m := special8(binary.LittleEndian.Uint64(data[i:]), high); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				found = true
				break
			}
			i += 8
		}
		for !found && i < lim && ok[data[i]] {
			i++
		}
		if i >= len(data) {
			break
		}
		c := data[i]
		if c == '\r' {
			if i+2 > MaxHead {
				return 0, 0, errHeadTooLong
			}
			if i+1 >= len(data) {
				h.pos, h.lines, h.lineStart = i, lines, lineStart
				if i == lineStart {
					return 0, 1, nil
				}
				return 0, 3, nil // LF, and the empty line
			}
			if data[i+1] != '\n' {
				return 0, 0, errBareCR
			}
			if i == lineStart {
				if lines == 0 {
					return 0, 0, errRequestLine
				}
				h.lines = lines
				return i + 2, 0, nil
			}
			if lines >= MaxHeaders+1 {
				return 0, 0, errTooManyHdrs
			}
			ends[lines] = uint32(i)
			lines++
			i += 2
			lineStart = i
			continue
		}
		if i >= MaxHead {
			return 0, 0, errHeadTooLong
		}
		if lines == 0 && i-lineStart >= MaxStartLine {
			return 0, 0, errLineTooLong
		}
		switch {
		case c == '\n':
			return 0, 0, errBareLF
		case lines == 0 && request:
			if c != ' ' && (c < 0x21 || c > 0x7e) {
				return 0, 0, errBadChar
			}
		default:
			if c != '\t' && (c < 0x20 || c == 0x7f) {
				return 0, 0, errBadChar
			}
		}
		i++
	}
	h.pos, h.lines, h.lineStart = i, lines, lineStart
	if i == lineStart {
		return 0, 2, nil
	}
	return 0, 4, nil // CRLF, and the empty line
}

// crlfRun runs scanHead over the header lines of data from i, 8 bytes a
// word, while every flagged byte (ctl8) is the CR of a CRLF inside
// MaxHead: it records each line end in ends and returns the place where
// it stopped, at a flagged byte it did not take or short of the last
// word. At the empty line it returns done with the head's length as
// lineStart; done with lines < 0 means too many header fields.
func crlfRun(data []byte, i, lines, lineStart int, ends *[MaxHeaders + 1]uint32) (int, int, int, bool) {
	d := data[:min(len(data), MaxHead)]
	for uint(i) <= uint(len(d)) && len(d)-i >= 8 {
		w := binary.LittleEndian.Uint64(d[i:])
		m := ctl8(w)
		for m != 0 {
			// A CRLF inside the word is read from w: the CR's bit is the
			// lowest flagged, the LF's (exact for bytes below 0x20) the
			// next, and both are cleared; the LF is before MaxHead and
			// inside data as w is.
			sh := uint(bits.TrailingZeros64(m)) &^ 7
			pos := i + int(sh>>3)
			if sh > 48 || uint16(w>>sh) != '\r'|'\n'<<8 {
				if data[pos] != '\r' || pos+2 > MaxHead || pos+1 >= len(data) || data[pos+1] != '\n' {
					return pos, lines, lineStart, false
				}
			}
			if pos == lineStart {
				return pos, lines, pos + 2, true
			}
			if uint(lines) >= MaxHeaders+1 {
				return pos, -1, lineStart, true
			}
			ends[lines] = uint32(pos)
			lines++
			lineStart = pos + 2
			m &= m - 1
			m &= m - 1
		}
		i = max(i+8, lineStart)
	}
	return i, lines, lineStart, false
}

// ctl8 flags the bytes of x (little-endian) that a header line may not
// hold as they are: a control byte (below 0x20: CR, LF, HTAB…) or DEL,
// and, falsely, the bytes 0x80 to 0x9f and 0xff (obs-text, which the
// byte checks of scanHead then pass). It returns a mask with the top bit
// of each flagged byte set. Each byte is tested on its own, without a
// carry or borrow between bytes: for u = (c&0x7f)+1, which is at most
// 0x80 and is 0 (after &0x7f) for DEL, a byte is flagged when u&0x7f is
// below 0x21; u&0x7f+0x5f sets the top bit exactly for the others.
func ctl8(x uint64) uint64 {
	const ones, lows = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f
	u := ((x & lows) + ones) & lows
	return ^(u + ones*0x5f) & (ones * 0x80)
}

// special8 flags the bytes of x (little-endian) that may need more than
// the table check of scanHead: a control byte (below 0x20: CR, LF,
// HTAB…), DEL, or, where high is 0x8080808080808080, a byte above 0x7f.
// It returns a mask with the top bit of each flagged byte set; zero when
// no byte is. It may flag bytes that pass (HTAB), never misses one that
// does not, and its lowest flagged byte is always a true one: a borrow
// only runs upwards from a byte below 0x20 or equal to 0x7f, so bytes
// above the first such may be flagged falsely, never bytes below it.
func special8(x, high uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (x - ones*0x20) &^ x & highs // bytes < 0x20
	d := x ^ (ones * 0x7f)
	del := (d - ones) &^ d & highs // bytes == 0x7f
	return below | del | x&high
}

// headerByte marks the bytes a header line (or a response's status line)
// may hold: HTAB and printable bytes but DEL; not CR or LF.
var headerByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '\t' || c >= 0x20 && c != 0x7f
	}
	return t
}()

// requestLineByte marks the bytes a request line may hold: SP and
// printable ASCII.
var requestLineByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c == ' ' || 0x21 <= c && c <= 0x7e
	}
	return t
}()

// request decodes a complete request head and fills f; ends are the
// offsets of its lines' CRs.
func (p *Parser) request(head []byte, ends []uint32, f *l7.Frame) (l7.Op, int, error) {
	p.last.valid = false
	line := head[:ends[0]]
	// One loop reads the method, a token, to the SP after it; anything
	// else takes the checks below, which tell what is wrong.
	sp := 0
	for sp < len(line) && sp <= l7.MaxVerb && tokenChars[line[sp]] {
		sp++
	}
	if sp == 0 || sp > l7.MaxVerb || sp == len(line) || line[sp] != ' ' {
		if sp = indexSP(line); sp <= 0 {
			return l7.OpMore, 0, errRequestLine
		}
		if sp > l7.MaxVerb {
			return l7.OpMore, 0, errVerbTooLong
		}
		if !isToken(line[:sp]) {
			return l7.OpMore, 0, errMethod
		}
	}
	method := line[:sp]
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return l7.OpMore, 0, errRequestLine
	}
	target, version := rest[:sp], rest[sp+1:]
	var http11 bool
	switch string(version) {
	case "HTTP/1.1":
		http11 = true
	case "HTTP/1.0":
	default:
		return l7.OpMore, 0, errVersion
	}

	var (
		host                   []byte
		hostSeen, clSeen, te   bool
		length                 int64
		connUpgrade, upgrading bool
	)
	for k := 1; k < len(ends); k++ {
		line := head[ends[k-1]+2 : ends[k]]
		colon := shortName(line)
		var err error
		if colon == 0 {
			if colon, err = fieldName(line); err != nil {
				return l7.OpMore, 0, err
			}
		}
		// The length picks the candidates (most fields are none), a word
		// compare decides; the value is looked at only for them.
		name := line[:colon]
		switch len(name) {
		case len("host"):
			if !nameHost.is(name) {
				continue
			}
			if hostSeen {
				return l7.OpMore, 0, errDupHost
			}
			hostSeen, host = true, trimOWS(line[colon+1:])
		case len("content-length"):
			switch {
			case nameContentLength.is(name):
				if clSeen {
					return l7.OpMore, 0, errDupLength
				}
				clSeen = true
				if length, err = parseLength(trimOWS(line[colon+1:])); err != nil {
					return l7.OpMore, 0, err
				}
			case equalFold(name, "content_length"):
				// Some servers and gateways read "_" as "-" (CGI-style
				// variable names); the parser would not.
				return l7.OpMore, 0, errHeader
			}
		case len("transfer-encoding"):
			switch {
			case nameTransferEncoding.is(name):
				if te || !equalFold(trimOWS(line[colon+1:]), "chunked") {
					return l7.OpMore, 0, errBadTE
				}
				te = true
			case equalFold(name, "transfer_encoding"):
				return l7.OpMore, 0, errHeader
			}
		case len("connection"):
			if nameConnection.is(name) && hasToken(line[colon+1:], "upgrade") {
				connUpgrade = true
			}
		case len("upgrade"):
			if nameUpgrade.is(name) {
				upgrading = upgrading || len(trimOWS(line[colon+1:])) > 0
			}
		}
	}
	switch {
	case http11 && !hostSeen:
		return l7.OpMore, 0, errNoHost
	case te && clSeen:
		return l7.OpMore, 0, errCLAndTE
	case te && !http11:
		return l7.OpMore, 0, errTE10
	}

	// Aux is the Host header's host, unless the request target names one
	// (absolute and authority form), which wins (RFC 9112 3.2.2). The
	// Host header is checked in either case: a server may read it.
	var (
		kind     uint8
		res, aux []byte
		err      error
	)
	if len(host) > 0 {
		if aux, _, err = appendHost(p.host[:0], host, false); err != nil {
			return l7.OpMore, 0, err
		}
	}
	switch {
	case string(method) == "CONNECT":
		kind = kindConnect
		var port []byte
		if aux, port, err = appendHost(p.host[:0], target, true); err != nil {
			return l7.OpMore, 0, err
		}
		// Resource is the authority, host:port, lower case.
		if len(aux)+1+len(port) > MaxPath {
			return l7.OpMore, 0, errPathTooLong
		}
		res = append(append(append(p.path[:0], aux...), ':'), port...)
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return l7.OpMore, 0, errTarget
		}
		res = append(p.path[:0], '*')
	case target[0] == '/':
		if res, err = normalPath(p.path[:0], target); err != nil {
			return l7.OpMore, 0, err
		}
	default:
		authority, path, err := splitAbsolute(target)
		if err != nil {
			return l7.OpMore, 0, err
		}
		if aux, _, err = appendHost(p.host[:0], authority, false); err != nil {
			return l7.OpMore, 0, err
		}
		if res, err = appendPath(p.path[:0], path); err != nil {
			return l7.OpMore, 0, err
		}
	}
	if string(method) == "HEAD" {
		kind |= kindHead
	}
	if connUpgrade && upgrading {
		kind |= kindUpgrade
	}
	if err := p.push(kind); err != nil {
		return l7.OpMore, 0, err
	}
	switch {
	case te:
		p.req.body = body{kind: bodyChunked}
	case length > 0:
		p.req.body = body{kind: bodyLength, left: length}
	}
	f.Reset(l7.DirRequest)
	f.Verb = method[:len(method):len(method)]
	f.Resource = res[:len(res):len(res)]
	if len(aux) > 0 {
		f.Aux = aux[:len(aux):len(aux)]
	}
	return l7.OpFrame, len(head), nil
}

// push records a forwarded request for the reply side.
func (p *Parser) push(kind uint8) error {
	seq := p.reqs
	if kind != 0 {
		if p.tail-p.head >= MaxPending {
			return errTooPending
		}
		p.ring[p.tail%MaxPending] = pending{seq: seq, kind: kind}
		p.tail++
	}
	p.reqs++
	p.last.valid, p.last.pushed, p.last.seq = true, kind != 0, seq
	return nil
}

// Denied tells the parser that the proxy answered the last request frame
// itself, with Deny, and did not forward it: the server will not answer
// it, so the reply side must not wait for its response. It implements
// l7.DenyObserver; call it before the next request Parse. The denied
// request's body is still framed (OpSkip) and is dropped by the proxy.
func (p *Parser) Denied(*l7.Frame) {
	if !p.last.valid {
		return
	}
	p.last.valid = false
	if p.reqs > 0 {
		p.reqs--
	}
	if p.last.pushed && p.tail != p.head && p.ring[(p.tail-1)%MaxPending].seq == p.last.seq {
		p.tail--
	}
	if p.reps > p.reqs {
		p.reps = p.reqs
	}
}

// pop returns the kind of the request a final response answers (zero for
// a plain request, or for a response nothing asked for).
func (p *Parser) pop() uint8 {
	if p.reps >= p.reqs {
		return 0 // unsolicited (a 408 before closing, say)
	}
	var kind uint8
	for p.head != p.tail {
		e := p.ring[p.head%MaxPending]
		if e.seq > p.reps {
			break
		}
		p.head++
		if e.seq == p.reps {
			kind = e.kind
			break
		}
	}
	p.reps++
	return kind
}

// response decodes a complete response head; ends are the offsets of its
// lines' CRs.
func (p *Parser) response(head []byte, ends []uint32, f *l7.Frame) (l7.Op, int, error) {
	line := head[:ends[0]]
	// HTTP-version SP 3DIGIT [SP reason-phrase]; a missing SP before an
	// empty reason is accepted.
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return l7.OpMore, 0, errStatusLine
	}
	switch string(line[:8]) {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		return l7.OpMore, 0, errStatusLine
	}
	status := 0
	for i, c := range line[9:12] {
		if c < '0' || c > '9' || (i == 0 && c == '0') {
			return l7.OpMore, 0, errStatusLine
		}
		status = status*10 + int(c-'0')
	}
	var (
		clSeen, te, chunked bool
		length              int64
	)
	for k := 1; k < len(ends); k++ {
		line := head[ends[k-1]+2 : ends[k]]
		colon := shortName(line)
		var err error
		if colon == 0 {
			if colon, err = fieldName(line); err != nil {
				return l7.OpMore, 0, err
			}
		}
		// The length picks the candidates, a word compare decides.
		name := line[:colon]
		switch {
		case len(name) != len("content-length") && len(name) != len("transfer-encoding"):
		case nameContentLength.is(name):
			if clSeen {
				return l7.OpMore, 0, errDupLength
			}
			clSeen = true
			if length, err = parseLength(trimOWS(line[colon+1:])); err != nil {
				return l7.OpMore, 0, err
			}
		case nameTransferEncoding.is(name):
			// The final coding decides (RFC 9112 6.3): chunked, or
			// else the body runs until the connection closes.
			te = true
			chunked = lastTokenIs(line[colon+1:], "chunked")
		}
	}
	if te && clSeen {
		return l7.OpMore, 0, errCLAndTE
	}
	f.Reset(l7.DirReply)
	f.Err = status >= 400
	if status < 200 {
		if status == 101 {
			if p.pop()&kindUpgrade == 0 {
				return l7.OpMore, 0, errSwitch
			}
			p.opaque = true
			return l7.OpFrame, len(head), nil
		}
		f.Partial = true // interim: the final response follows
		return l7.OpFrame, len(head), nil
	}
	kind := p.pop()
	switch {
	case kind&kindConnect != 0 && status < 300:
		p.opaque = true
		return l7.OpFrame, len(head), nil
	case kind&kindHead != 0 || status == 204 || status == 304:
		return l7.OpFrame, len(head), nil
	case te && chunked:
		p.rep.body = body{kind: bodyChunked}
	case te:
		p.rep.body = body{kind: bodyClose}
	case clSeen && length == 0:
		return l7.OpFrame, len(head), nil
	case clSeen:
		p.rep.body = body{kind: bodyLength, left: length}
	default:
		p.rep.body = body{kind: bodyClose}
	}
	p.repErr = f.Err
	f.Partial = true // the body follows; its last piece completes the answer
	return l7.OpFrame, len(head), nil
}

// parseBody streams a body: OpSkip for what is there of it, and, in the
// reply direction, OpFrame (not Partial) for the piece that ends it.
func (p *Parser) parseBody(s *side, dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	n, done, more, err := s.body.advance(data)
	if err != nil {
		s.body = body{}
		return l7.OpMore, 0, err
	}
	if n == 0 {
		return l7.OpMore, max(more, 1), nil
	}
	f.Reset(dir)
	if done {
		s.body = body{}
		if dir == l7.DirReply {
			f.Err = p.repErr
			return l7.OpFrame, n, nil
		}
	}
	return l7.OpSkip, n, nil
}

// advance consumes what it can of the body at the front of data: n bytes,
// done when they end the body; when n is 0, more > 0 is how many bytes it
// needs at least. A body is never held back to be buffered: data bytes
// are consumed as they come, so more is small.
func (b *body) advance(data []byte) (n int, done bool, more int, err error) {
	switch b.kind {
	case bodyLength:
		k := min(int64(len(data)), b.left)
		b.left -= k
		return int(k), b.left == 0, 1, nil
	case bodyClose:
		return len(data), false, 1, nil
	}
	return b.chunked(data)
}

// chunked advances through a chunked body (RFC 9112 7.1): chunk-size
// lines (hex digits, optional extensions), chunk data, the CRLF after it,
// the last chunk and the trailer section, checked byte by byte.
func (b *body) chunked(data []byte) (n int, done bool, more int, err error) {
	i := 0
	for {
		switch b.chunk {
		case chSize:
			if b.ln.pos == 0 {
				if size, n := chunkSize(data[i:]); n > 0 {
					i += n
					if size == 0 {
						b.chunk = chTrailer
					} else {
						b.chunk, b.left = chData, size
					}
					continue
				}
			}
			if i+b.ln.pos > len(data) {
				b.ln = lineState{} // a shorter input: start the line over
			}
			j := i + b.ln.pos
			for ; ; j++ {
				if j >= len(data) {
					b.ln.pos = j - i
					return i, false, 2, nil
				}
				c := data[j]
				if c == '\r' {
					break
				}
				if j-i >= MaxChunkLine {
					return 0, false, 0, errChunkTooLong
				}
				switch {
				case b.ln.ext:
					if c != '\t' && (c < 0x20 || c == 0x7f) {
						return 0, false, 0, errChunk
					}
				case isHex(c):
					b.ln.val = b.ln.val<<4 | int64(unhex(c))
					if b.ln.val > MaxBody {
						return 0, false, 0, errBodyTooLong
					}
					b.ln.digits++
				case c == ';' && b.ln.digits > 0:
					b.ln.ext = true
				default:
					return 0, false, 0, errChunk
				}
			}
			if j+1 >= len(data) {
				b.ln.pos = j - i
				return i, false, 1, nil
			}
			if data[j+1] != '\n' || b.ln.digits == 0 {
				return 0, false, 0, errChunk
			}
			size := b.ln.val
			b.ln = lineState{}
			i = j + 2
			if size == 0 {
				b.chunk = chTrailer
			} else {
				b.chunk, b.left = chData, size
			}
		case chData:
			k := min(int64(len(data)-i), b.left)
			i += int(k)
			b.left -= k
			if b.left > 0 {
				return i, false, 1, nil
			}
			b.chunk = chDataCRLF
		case chDataCRLF:
			if i >= len(data) {
				return i, false, 2, nil
			}
			if data[i] != '\r' {
				return 0, false, 0, errChunk
			}
			if i+1 >= len(data) {
				return i, false, 1, nil
			}
			if data[i+1] != '\n' {
				return 0, false, 0, errChunk
			}
			i += 2
			b.chunk = chSize
		case chTrailer:
			if i+b.ln.pos > len(data) {
				b.ln = lineState{}
			}
			j := i + b.ln.pos
			for ; ; j++ {
				if j >= len(data) {
					b.ln.pos = j - i
					if j == i {
						return i, false, 2, nil
					}
					return i, false, 4, nil
				}
				c := data[j]
				if c == '\r' {
					break
				}
				if b.tbytes+j-i >= MaxHead {
					return 0, false, 0, errHeadTooLong
				}
				switch {
				case c == '\n':
					return 0, false, 0, errBareLF
				case c != '\t' && (c < 0x20 || c == 0x7f):
					return 0, false, 0, errBadChar
				}
			}
			if b.tbytes+j-i+2 > MaxHead {
				return 0, false, 0, errHeadTooLong
			}
			if j+1 >= len(data) {
				b.ln.pos = j - i
				if j == i {
					return i, false, 1, nil
				}
				return i, false, 3, nil
			}
			if data[j+1] != '\n' {
				return 0, false, 0, errBareCR
			}
			if j == i {
				*b = body{}
				return j + 2, true, 0, nil
			}
			if _, _, err := field(data[i:j]); err != nil {
				return 0, false, 0, err
			}
			b.trailers++
			if b.trailers > MaxHeaders {
				return 0, false, 0, errTooManyHdrs
			}
			b.tbytes += j - i + 2
			b.ln = lineState{}
			i = j + 2
		}
	}
}

// parseLength parses a Content-Length value: 1*DIGIT, at most MaxBody. A
// list ("5, 5") or anything else is refused.
func parseLength(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, errBadLength
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errBadLength
		}
		n = n*10 + int64(c-'0')
		if n > MaxBody {
			return 0, errBodyTooLong
		}
	}
	return n, nil
}

// cutQuery returns the target without its query and fragment.
func cutQuery(t []byte) []byte {
	for i, c := range t {
		if c == '?' || c == '#' {
			return t[:i]
		}
	}
	return t
}

// splitAbsolute splits an absolute-form target (http://authority/path?q)
// into its authority and its path (without query; "/" when empty). The
// scheme must be http or https (any case); userinfo is refused (RFC 9110
// 4.2.4).
func splitAbsolute(t []byte) (authority, path []byte, err error) {
	var rest []byte
	switch {
	case len(t) >= 7 && equalFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) >= 8 && equalFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return nil, nil, errTarget
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	authority = rest[:end]
	if len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0 {
		return nil, nil, errTarget
	}
	path = cutQuery(rest[end:])
	if len(path) == 0 {
		path = rootPath
	}
	return authority, path, nil
}

var rootPath = []byte("/")

// appendHost validates an authority, host[:port], and appends its host to
// dst lower-cased, without a final dot: a reg-name (letters, digits, "-",
// ".", "_", "~", no empty label) or an IP literal in brackets. The port,
// returned as is, is digits (at most five); needPort requires one. An
// empty authority appends nothing.
func appendHost(dst, a []byte, needPort bool) (host, port []byte, err error) {
	if len(a) == 0 {
		if needPort {
			return nil, nil, errHost
		}
		return dst[:0], nil, nil
	}
	h := a
	lowered := false
	if a[0] == '[' {
		k := bytes.IndexByte(a, ']')
		if k < 2 {
			return nil, nil, errHost
		}
		for _, c := range a[1:k] {
			if !isHex(c) && c != ':' && c != '.' {
				return nil, nil, errHost
			}
		}
		h = a[:k+1]
		if rest := a[k+1:]; len(rest) > 0 {
			if rest[0] != ':' {
				return nil, nil, errHost
			}
			port = rest[1:]
		}
	} else {
		// One loop runs to the first byte that is no host byte, which
		// must be the port's colon; it refuses an empty label and, while
		// the host fits dst, writes it lower-cased.
		out := dst[:cap(dst)]
		k, prev := 0, byte(0)
		for ; k < len(a); k++ {
			c := a[k]
			l := hostLower[c]
			if l == 0 {
				break
			}
			if c == '.' && prev == '.' {
				return nil, nil, errHost
			}
			if k < len(out) {
				out[k] = l
			}
			prev = c
		}
		h = a[:k]
		if k < len(a) {
			if a[k] != ':' {
				return nil, nil, errHost
			}
			port = a[k+1:]
		}
		if len(h) > 1 && h[len(h)-1] == '.' {
			h = h[:len(h)-1]
		}
		if len(h) == 0 || h[0] == '.' || h[len(h)-1] == '.' {
			return nil, nil, errHost
		}
		lowered = len(h) <= len(out)
	}
	if len(port) > 5 || (needPort && len(port) == 0) {
		return nil, nil, errHost
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return nil, nil, errHost
		}
	}
	if len(h) > MaxHost {
		return nil, nil, errHostTooLong
	}
	if lowered {
		return dst[:len(h)], port, nil
	}
	dst = dst[:0]
	for _, c := range h {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, port, nil
}

func isHostChar(c byte) bool { return hostLower[c] != 0 }

// hostLower maps the bytes a reg-name may hold (letters, digits, "-",
// ".", "_", "~") to their lower case, and every other byte to 0.
var hostLower = func() (t [256]byte) {
	for c := range t {
		b := byte(c)
		switch {
		case 'A' <= b && b <= 'Z':
			t[c] = b + 'a' - 'A'
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '.', b == '_', b == '~':
			t[c] = b
		}
	}
	return t
}()

// tokenChars marks tchar (RFC 9110 5.6.2).
var tokenChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// equalFold reports whether b equals the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds the token s
// (lower case), ignoring case and optional whitespace.
func hasToken(v []byte, s string) bool {
	for len(v) > 0 {
		var e []byte
		if k := bytes.IndexByte(v, ','); k >= 0 {
			e, v = v[:k], v[k+1:]
		} else {
			e, v = v, nil
		}
		if equalFold(trimOWS(e), s) {
			return true
		}
	}
	return false
}

// lastTokenIs reports whether the last element of the comma-separated
// list v is the token s (lower case), ignoring case and whitespace.
func lastTokenIs(v []byte, s string) bool {
	if k := bytes.LastIndexByte(v, ','); k >= 0 {
		v = v[k+1:]
	}
	return equalFold(trimOWS(v), s)
}
