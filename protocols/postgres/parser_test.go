package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into plain values, so
// that results compare with == and print readably.
type result struct {
	Op        l7.Op
	N         int
	Err       error
	Dir       l7.Dir
	Verb      string
	Sub       string
	Resources string // joined by ","
	Overflow  bool
	Aux       string
	Args      int
	IsErr     bool
	NoReply   bool
	Partial   bool
	Control   bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	switch r.Op {
	case l7.OpMore, l7.OpPass:
		return fmt.Sprintf("%v %d", r.Op, r.N)
	case l7.OpSkip:
		return fmt.Sprintf("skip %d", r.N)
	}
	var flags []string
	for name, on := range map[string]bool{"overflow": r.Overflow, "err": r.IsErr, "noreply": r.NoReply,
		"partial": r.Partial, "control": r.Control} {
		if on {
			flags = append(flags, name)
		}
	}
	return fmt.Sprintf("frame %d {%v verb=%q sub=%q res=%q aux=%q args=%d %v}",
		r.N, r.Dir, r.Verb, r.Sub, r.Resources, r.Aux, r.Args, flags)
}

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	if op != l7.OpFrame {
		return result{Op: op, N: n}
	}
	var res []string
	f.Resources(func(r []byte) bool { res = append(res, string(r)); return true })
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Sub: string(f.Sub),
		Resources: strings.Join(res, ","), Overflow: f.Overflow, Aux: string(f.Aux), Args: f.Args,
		IsErr: f.Err, NoReply: f.NoReply, Partial: f.Partial, Control: f.Control}
}

// parse runs one Parse call and checks what must hold for every answer.
func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	checkAnswer(t, dir, data, op, n, err, &f)
	return resultOf(op, n, err, &f)
}

func checkAnswer(t testing.TB, dir l7.Dir, data []byte, op l7.Op, n int, err error, f *l7.Frame) {
	t.Helper()
	// Fields may point into the parser's scratch (the session's database,
	// statement texts) or at constant verbs: no view check.
	anyView := func(string, []byte, []byte) bool { return true }
	l7test.Check{Pass: true, ViewOK: anyView}.Answer(t, dir, data, op, n, err, f)
	if err == nil && op == l7.OpFrame && dir == l7.DirReply && !f.Partial && (f.Err || f.Control) {
		t.Fatalf("%q: a final reply frame is never an error or control: %+v", data, f)
	}
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

func stream(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int) []result {
	t.Helper()
	return l7test.Stream(t, parser(p, dir), data, ends)
}

func wholeStream(t testing.TB, p *Parser, dir l7.Dir, data []byte) []result {
	t.Helper()
	return stream(t, p, dir, data, []int{len(data)})
}

// Message builders.

func be32b(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// msg builds a typed message.
func msg(t byte, body ...[]byte) []byte {
	b := cat(body...)
	return cat([]byte{t}, be32b(4+len(b)), b)
}

func startupMsg(params ...string) []byte {
	var b []byte
	for _, p := range params {
		b = append(b, cstr(p)...)
	}
	b = append(b, 0)
	return cat(be32b(8+len(b)), be32b(196608), b)
}

var (
	sslRequest    = cat(be32b(8), be32b(sslCode))
	gssRequest    = cat(be32b(8), be32b(gssCode))
	cancelRequest = cat(be32b(16), be32b(cancelCode), be32b(1234), be32b(5678))
	startupPG     = startupMsg("user", "alice", "database", "shop", "application_name", "psql")
	syncMsg       = msg('S')
	flushMsg      = msg('H')
	terminateMsg  = msg('X')
	clientHello   = cat([]byte{0x16, 3, 1, 0, 4}, []byte{1, 0, 0, 0})
)

func query(sql string) []byte { return msg('Q', cstr(sql)) }

func parseMsg(name, sql string, oids ...int) []byte {
	b := cat(cstr(name), cstr(sql), []byte{byte(len(oids) >> 8), byte(len(oids))})
	for _, o := range oids {
		b = append(b, be32b(o)...)
	}
	return msg('P', b)
}

func bindMsg(portal, stmt string, params ...string) []byte {
	b := cat(cstr(portal), cstr(stmt), []byte{0, 0}, []byte{byte(len(params) >> 8), byte(len(params))})
	for _, p := range params {
		b = append(b, be32b(len(p))...)
		b = append(b, p...)
	}
	return msg('B', b, []byte{0, 0})
}

func executeMsg(portal string) []byte { return msg('E', cstr(portal), be32b(0)) }

func describeMsg(kind byte, name string) []byte { return msg('D', []byte{kind}, cstr(name)) }

func closeMsg(kind byte, name string) []byte { return msg('C', []byte{kind}, cstr(name)) }

func functionMsg(oid int, arg string) []byte {
	return msg('F', be32b(oid), []byte{0, 1, 0, 0}, []byte{0, 1}, be32b(len(arg)), []byte(arg), []byte{0, 0})
}

func readyMsg(status byte) []byte { return msg('Z', []byte{status}) }

// Expected results.

const db = "shop"

func frame(n int, verb, res string) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Resources: res, Aux: db, Args: 'I'}
}

func noReply(r result) result { r.NoReply = true; return r }

func control(n int, noReply bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Aux: db, Control: true, NoReply: noReply}
}

func startupFrame(n int, verb string, noReply bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, NoReply: noReply}
}

func partial(n int) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, Partial: true}
}

func final(n int) result { return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply} }

func skip(n int) result { return result{Op: l7.OpSkip, N: n} }

func more(n int) result { return result{Op: l7.OpMore, N: n} }

func pass() result { return result{Op: l7.OpPass} }

// parseCase is one input and the answer of a parser that has first been
// given pre (in the same direction), with limits lim.
type parseCase struct {
	name string
	pre  [][]byte
	in   []byte
	lim  Limits
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

// prepared returns a parser in the state the case starts from.
func (c parseCase) prepared(t testing.TB, dir l7.Dir) *Parser {
	t.Helper()
	p := NewParserWithLimits(c.lim)
	for _, m := range c.pre {
		rs := wholeStream(t, p, dir, m)
		if last := rs[len(rs)-1]; last.Err != nil || (last.Op != l7.OpMore && last.Op != l7.OpPass) {
			t.Fatalf("pre %q: %v", m, rs)
		}
	}
	return p
}

func (c parseCase) check(t *testing.T, dir l7.Dir) {
	t.Helper()
	got := parse(t, c.prepared(t, dir), dir, c.in)
	if c.err != nil {
		if !errors.Is(got.Err, c.err) {
			t.Fatalf("Parse(%q) = %v, want error %v", c.in, got, c.err)
		}
		return
	}
	if got != c.want {
		t.Fatalf("Parse(%q)\n got %v\nwant %v", c.in, got, c.want)
	}
}

// typedPre puts a request parser past the startup packet.
var typedPre = [][]byte{startupPG}

func big(n int) string { return strings.Repeat("x", n) }

var requestCases = []parseCase{
	// Startup phase.
	{name: "startup", in: startupPG, want: result{Op: l7.OpFrame, N: len(startupPG), Dir: l7.DirRequest, Aux: db, Control: true}},
	{name: "startup database defaults to user", in: startupMsg("user", "bob"), want: result{Op: l7.OpFrame, N: 18, Dir: l7.DirRequest, Aux: "bob", Control: true}},
	{name: "startup empty database is the user", in: startupMsg("database", "", "user", "bob"), want: result{Op: l7.OpFrame, N: 28, Dir: l7.DirRequest, Aux: "bob", Control: true}},
	{name: "startup last database wins", in: startupMsg("database", "a", "database", "b"), want: result{Op: l7.OpFrame, N: 31, Dir: l7.DirRequest, Aux: "b", Control: true}},
	{name: "startup database cut to 63 bytes", in: startupMsg("database", big(70)), want: result{Op: l7.OpFrame, N: 89, Dir: l7.DirRequest, Aux: big(63), Control: true}},
	{name: "startup protocol 3.2", in: cat(be32b(9), be32b(196610), []byte{0}), want: result{Op: l7.OpFrame, N: 9, Dir: l7.DirRequest, Control: true}},
	{name: "ssl request", in: sslRequest, want: startupFrame(8, "SSL", false)},
	{name: "gssenc request", in: gssRequest, want: startupFrame(8, "GSSENC", false)},
	{name: "cancel request", in: cancelRequest, want: startupFrame(16, "CANCEL", true)},
	{name: "startup after a refused ssl request", pre: [][]byte{sslRequest}, in: startupPG, want: result{Op: l7.OpFrame, N: len(startupPG), Dir: l7.DirRequest, Aux: db, Control: true}},
	{name: "tls after ssl request", pre: [][]byte{sslRequest}, in: clientHello, want: pass()},
	{name: "tls after ssl request, one byte", pre: [][]byte{sslRequest}, in: []byte{0x16}, want: pass()},
	{name: "direct tls", in: clientHello, want: startupFrame(9, "SSL", true)},
	{name: "gss traffic after gssenc request", pre: [][]byte{gssRequest}, in: cat(be32b(12000), []byte{0x60, 0x82, 0, 0}), want: pass()},
	{name: "startup after a refused gssenc request", pre: [][]byte{gssRequest}, in: startupPG, want: result{Op: l7.OpFrame, N: len(startupPG), Dir: l7.DirRequest, Aux: db, Control: true}},
	{name: "ssl after a refused gssenc request", pre: [][]byte{gssRequest}, in: sslRequest, want: startupFrame(8, "SSL", false)},
	{name: "startup then query", in: cat(startupMsg("user", "bob"), query("SELECT 1")), want: result{Op: l7.OpFrame, N: 18, Dir: l7.DirRequest, Aux: "bob", Control: true}},

	// Typed messages.
	{name: "query", pre: typedPre, in: query("SELECT * FROM t"), want: frame(21, "SELECT", "t")},
	{name: "query join", pre: typedPre, in: query("select a.x from A join s.b on true"), want: frame(40, "SELECT", "a,s.b")},
	{name: "query copy program", pre: typedPre, in: query("COPY t FROM PROGRAM 'id'"), want: frame(30, "COPY_PROGRAM", "t")},
	{name: "query copy file", pre: typedPre, in: query("COPY t TO '/tmp/x'"), want: frame(24, "COPY_FILE", "t")},
	{name: "query copy stdin", pre: typedPre, in: query("COPY t FROM STDIN"), want: frame(23, "COPY", "t")},
	{name: "query with cte", pre: typedPre, in: query("WITH x AS (SELECT 1) DELETE FROM t"), want: frame(40, "DELETE", "t")},
	{name: "empty query", pre: typedPre, in: query(""), want: control(6, false)},
	{name: "comment-only query", pre: typedPre, in: query("-- nothing\n;"), want: control(18, false)},
	{name: "parse", pre: typedPre, in: parseMsg("s1", "INSERT INTO t VALUES ($1)", 23), want: noReply(frame(40, "INSERT", "t"))},
	{name: "parse unnamed", pre: typedPre, in: parseMsg("", "UPDATE t SET a = 1"), want: noReply(frame(27, "UPDATE", "t"))},
	{name: "parse empty", pre: typedPre, in: parseMsg("", ""), want: control(9, true)},
	{name: "bind", pre: typedPre, in: bindMsg("", "s1", "42"), want: control(len(bindMsg("", "s1", "42")), true)},
	{name: "describe statement", pre: typedPre, in: describeMsg('S', "s1"), want: control(9, true)},
	{name: "describe portal", pre: typedPre, in: describeMsg('P', ""), want: control(7, true)},
	{name: "close statement", pre: typedPre, in: closeMsg('S', "s1"), want: control(9, true)},
	{name: "execute unknown portal", pre: typedPre, in: executeMsg(""), want: noReply(frame(10, "EXECUTE", ""))},
	{name: "execute", pre: [][]byte{startupPG, parseMsg("s1", "DELETE FROM t WHERE a = $1"), bindMsg("p1", "s1", "1")}, in: executeMsg("p1"), want: noReply(frame(12, "DELETE", "t"))},
	{name: "execute empty statement", pre: [][]byte{startupPG, parseMsg("", ""), bindMsg("", "")}, in: executeMsg(""), want: control(10, true)},
	{name: "sync", pre: typedPre, in: syncMsg, want: control(5, false)},
	{name: "flush", pre: typedPre, in: flushMsg, want: control(5, true)},
	{name: "terminate", pre: typedPre, in: terminateMsg, want: control(5, true)},
	{name: "password", pre: typedPre, in: msg('p', cstr("secret")), want: control(12, true)},
	{name: "function call", pre: typedPre, in: functionMsg(764, "abc"), want: frame(9, "FUNCTION_CALL", "764")},
	{name: "copy data", pre: typedPre, in: msg('d', []byte("1\tx\n")), want: skip(9)},
	{name: "copy done", pre: typedPre, in: msg('c'), want: skip(5)},
	{name: "copy fail", pre: typedPre, in: msg('f', cstr("no")), want: skip(8)},
	{name: "copy data, part", pre: typedPre, in: msg('d', []byte("1\tx\n"))[:7], want: skip(7)},
	{name: "big bind streams", pre: typedPre, in: bindMsg("", "s", big(StreamAbove))[:100], want: control(8, true)},
	{name: "query then sync", pre: typedPre, in: cat(query("SELECT 1"), syncMsg), want: frame(14, "SELECT", "")},

	// Incomplete.
	{name: "nothing", want: more(5)},
	{name: "length only", in: be32b(8), want: more(4)},
	{name: "startup, part", in: startupPG[:20], want: more(len(startupPG) - 20)},
	{name: "cancel, part", in: cancelRequest[:8], want: more(8)},
	{name: "tls header, part", in: clientHello[:3], want: more(2)},
	{name: "tls record, part", in: clientHello[:6], want: more(3)},
	{name: "typed nothing", pre: typedPre, want: more(5)},
	{name: "typed type only", pre: typedPre, in: []byte("Q"), want: more(4)},
	{name: "query, part", pre: typedPre, in: query("SELECT 1")[:8], want: more(6)},
	{name: "function call head, part", pre: typedPre, in: functionMsg(1, "x")[:7], want: more(2)},
	{name: "big bind names, part", pre: typedPre, in: bindMsg("portal", "stmt", big(StreamAbove))[:10], want: more(1)},

	// Malformed.
	{name: "startup length below 8", in: be32b(7), err: l7.ErrMalformed},
	{name: "startup protocol 2", in: cat(be32b(9), be32b(131072), []byte{0}), err: l7.ErrMalformed},
	{name: "startup unknown code", in: cat(be32b(8), be32b(1234)), err: l7.ErrMalformed},
	{name: "ssl request with body", in: cat(be32b(12), be32b(sslCode), be32b(0)), err: l7.ErrMalformed},
	{name: "cancel request short", in: cat(be32b(12), be32b(cancelCode), be32b(0)), err: l7.ErrMalformed},
	{name: "startup without terminator", in: cat(be32b(13), be32b(196608), []byte("user\x00")), err: l7.ErrMalformed},
	{name: "startup key without value", in: cat(be32b(14), be32b(196608), []byte("user\x00\x00")), err: l7.ErrMalformed},
	{name: "startup bytes after terminator", in: cat(be32b(11), be32b(196608), []byte{0, 'x', 0}), err: l7.ErrMalformed},
	{name: "tls not version 3", in: []byte{0x16, 2}, err: l7.ErrMalformed},
	{name: "tls empty record", in: []byte{0x16, 3, 1, 0, 0}, err: l7.ErrMalformed},
	{name: "protocol 2 after a gssenc request", pre: [][]byte{gssRequest}, in: cat(be32b(9), be32b(131072), []byte{0}), err: l7.ErrMalformed},
	{name: "gssenc request then not a gss token", pre: [][]byte{gssRequest}, in: cat(be32b(12000), []byte{0x61, 0x82, 0, 0}), err: l7.ErrTooLong},
	{name: "gss traffic without gssenc request", in: cat(be32b(8), []byte{0x60, 0x82, 0, 0}), err: l7.ErrMalformed},
	{name: "unknown type", pre: typedPre, in: []byte("Y\x00\x00\x00\x04"), err: l7.ErrMalformed},
	{name: "unknown type, one byte", pre: typedPre, in: []byte("Y"), err: l7.ErrMalformed},
	{name: "length below 4", pre: typedPre, in: []byte("Q\x00\x00\x00\x03"), err: l7.ErrMalformed},
	{name: "query without NUL", pre: typedPre, in: msg('Q', []byte("SELECT 1")), err: l7.ErrMalformed},
	{name: "query with inner NUL", pre: typedPre, in: msg('Q', []byte("SELECT 1\x00; DROP TABLE t\x00")), err: l7.ErrMalformed},
	{name: "query with no body", pre: typedPre, in: msg('Q', nil), err: l7.ErrMalformed},
	{name: "parse without parameter count", pre: typedPre, in: msg('P', cstr(""), cstr("SELECT 1")), err: l7.ErrMalformed},
	{name: "parse parameter count mismatch", pre: typedPre, in: msg('P', cstr(""), cstr("SELECT 1"), []byte{0, 2}, be32b(23)), err: l7.ErrMalformed},
	{name: "bind without names", pre: typedPre, in: msg('B', []byte("p")), err: l7.ErrMalformed},
	{name: "execute without max rows", pre: typedPre, in: msg('E', cstr("")), err: l7.ErrMalformed},
	{name: "describe bad kind", pre: typedPre, in: msg('D', []byte("X"), cstr("")), err: l7.ErrMalformed},
	{name: "describe trailing bytes", pre: typedPre, in: msg('D', []byte("S"), cstr(""), []byte("x")), err: l7.ErrMalformed},
	{name: "sync with body", pre: typedPre, in: msg('S', []byte{0}), err: l7.ErrMalformed},
	{name: "function call too short", pre: typedPre, in: msg('F', be32b(1)), err: l7.ErrMalformed},
	{name: "after terminate", pre: [][]byte{startupPG, terminateMsg}, in: query("SELECT 1"), err: l7.ErrMalformed},
	{name: "after cancel request", pre: [][]byte{cancelRequest}, in: []byte{0}, err: l7.ErrMalformed},

	// Over a limit.
	{name: "startup too long", in: be32b(MaxStartup + 1), err: l7.ErrTooLong},
	{name: "startup at the limit", in: cat(be32b(MaxStartup), be32b(196608)), want: more(MaxStartup - 8)},
	{name: "tls record too long", in: []byte{0x16, 3, 1, 0x48, 1}, err: l7.ErrTooLong},
	{name: "sync too long", pre: typedPre, in: cat([]byte("S"), be32b(MaxSmall+1)), err: l7.ErrTooLong},
	{name: "execute at the small limit", pre: typedPre, in: cat([]byte("E"), be32b(MaxSmall)), want: more(MaxSmall - 4)},
	{name: "password too long", pre: typedPre, in: cat([]byte("p"), be32b(MaxAuth+1)), err: l7.ErrTooLong},
	{name: "copy data over the server's limit", pre: typedPre, in: cat([]byte("d"), be32b(MaxLarge+1)), err: l7.ErrTooLong},
	{name: "negative length", pre: typedPre, in: []byte("Q\xff\xff\xff\xff"), err: l7.ErrTooLong},
	{name: "query over MaxQuery", pre: typedPre, lim: Limits{MaxQuery: 16}, in: query("SELECT 1234567"), err: l7.ErrTooLong},
	{name: "query at MaxQuery", pre: typedPre, lim: Limits{MaxQuery: 19}, in: query("SELECT 123456"), want: frame(19, "SELECT", "")},
	{name: "parse over MaxQuery", pre: typedPre, lim: Limits{MaxQuery: 16}, in: parseMsg("", "SELECT 12345"), err: l7.ErrTooLong},
	{name: "big bind names beyond the window", pre: typedPre, in: cat([]byte("B"), be32b(StreamAbove*2), bytes.Repeat([]byte("n"), StreamAbove)), err: l7.ErrTooLong},
	{name: "verb too long", pre: typedPre, in: query(strings.Repeat("A", l7.MaxVerb+1)), err: l7.ErrTooLong},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

// typedReplyPre puts a reply parser past the startup phase.
var typedReplyPre = [][]byte{msg('R', be32b(0))}

func dataRow(cols ...string) []byte {
	b := []byte{byte(len(cols) >> 8), byte(len(cols))}
	for _, c := range cols {
		b = append(b, be32b(len(c))...)
		b = append(b, c...)
	}
	return msg('D', b)
}

func errorMsg(sev, code, text string) []byte {
	return msg('E', []byte("S"), cstr(sev), []byte("C"), cstr(code), []byte("M"), cstr(text), []byte{0})
}

var replyCases = []parseCase{
	// Startup phase.
	{name: "ssl accepted", in: []byte("S"), want: final(1)},
	{name: "ssl refused", in: []byte("N"), want: final(1)},
	{name: "ssl refused then authentication", in: cat([]byte("N"), msg('R', be32b(0))), want: final(1)},
	{name: "gss accepted", in: []byte("G"), want: final(1)},
	{name: "pass after ssl accepted", pre: [][]byte{[]byte("S")}, in: []byte{0x16, 3, 3}, want: pass()},
	{name: "refused twice", pre: [][]byte{[]byte("N")}, in: []byte("N"), want: final(1)},
	{name: "direct tls answer", in: []byte{0x16, 3, 3, 0, 90}, want: pass()},
	{name: "authentication ok", in: msg('R', be32b(0)), want: partial(9)},
	{name: "authentication sasl", in: msg('R', be32b(10), cstr("SCRAM-SHA-256"), []byte{0}), want: partial(24)},
	{name: "startup error", in: errorMsg("FATAL", "28P01", "password authentication failed"), want: result{Op: l7.OpFrame, N: 52, Dir: l7.DirReply, Partial: true, IsErr: true}},
	{name: "negotiate protocol version", in: msg('v', be32b(0), be32b(0)), want: partial(13)},

	// Typed phase.
	{name: "ready idle", pre: typedReplyPre, in: readyMsg('I'), want: final(6)},
	{name: "ready in transaction", pre: typedReplyPre, in: readyMsg('T'), want: final(6)},
	{name: "ready failed", pre: typedReplyPre, in: readyMsg('E'), want: final(6)},
	{name: "row description", pre: typedReplyPre, in: msg('T', []byte{0, 0}), want: partial(7)},
	{name: "data row", pre: typedReplyPre, in: dataRow("1", "abc"), want: partial(19)},
	{name: "command complete", pre: typedReplyPre, in: msg('C', cstr("SELECT 1")), want: partial(14)},
	{name: "error", pre: typedReplyPre, in: errorMsg("ERROR", "42P01", "no such table"), want: result{Op: l7.OpFrame, N: 35, Dir: l7.DirReply, Partial: true, IsErr: true}},
	{name: "parse complete", pre: typedReplyPre, in: msg('1'), want: partial(5)},
	{name: "bind complete", pre: typedReplyPre, in: msg('2'), want: partial(5)},
	{name: "close complete", pre: typedReplyPre, in: msg('3'), want: partial(5)},
	{name: "no data", pre: typedReplyPre, in: msg('n'), want: partial(5)},
	{name: "portal suspended", pre: typedReplyPre, in: msg('s'), want: partial(5)},
	{name: "empty query", pre: typedReplyPre, in: msg('I'), want: partial(5)},
	{name: "parameter description", pre: typedReplyPre, in: msg('t', []byte{0, 1}, be32b(23)), want: partial(11)},
	{name: "copy in response", pre: typedReplyPre, in: msg('G', []byte{0, 0, 0}), want: partial(8)},
	{name: "copy out response", pre: typedReplyPre, in: msg('H', []byte{0, 0, 0}), want: partial(8)},
	{name: "copy both response", pre: typedReplyPre, in: msg('W', []byte{0, 0, 0}), want: partial(8)},
	{name: "copy data", pre: typedReplyPre, in: msg('d', []byte("1\tx\n")), want: partial(9)},
	{name: "copy done", pre: typedReplyPre, in: msg('c'), want: partial(5)},
	{name: "function call response", pre: typedReplyPre, in: msg('V', be32b(1), []byte("x")), want: partial(10)},
	{name: "backend key data", pre: typedReplyPre, in: msg('K', be32b(1), be32b(2)), want: partial(13)},
	{name: "notice is skipped", pre: typedReplyPre, in: msg('N', []byte("SNOTICE\x00\x00")), want: skip(14)},
	{name: "parameter status is skipped", pre: typedReplyPre, in: msg('S', cstr("TimeZone"), cstr("UTC")), want: skip(18)},
	{name: "notification is skipped", pre: typedReplyPre, in: msg('A', be32b(1), cstr("ch"), cstr("")), want: skip(13)},
	{name: "notice, part", pre: typedReplyPre, in: msg('N', []byte("SNOTICE\x00\x00"))[:8], want: skip(8)},
	{name: "big data row streams", pre: typedReplyPre, in: dataRow(big(StreamAbove))[:100], want: partial(5)},
	{name: "big error streams", pre: typedReplyPre, in: errorMsg("ERROR", "XX000", big(StreamAbove))[:5], want: result{Op: l7.OpFrame, N: 5, Dir: l7.DirReply, Partial: true, IsErr: true}},
	{name: "row then ready", pre: typedReplyPre, in: cat(dataRow("1"), readyMsg('I')), want: partial(12)},

	// Incomplete.
	{name: "nothing", want: more(1)},
	{name: "typed nothing", pre: typedReplyPre, want: more(5)},
	{name: "type only", pre: typedReplyPre, in: []byte("D"), want: more(4)},
	{name: "data row, part", pre: typedReplyPre, in: dataRow("1", "abc")[:10], want: more(9)},
	{name: "ready, part", pre: typedReplyPre, in: readyMsg('I')[:5], want: more(1)},
	{name: "authentication, part", in: msg('R', be32b(0))[:3], want: more(2)},

	// Malformed.
	{name: "unknown type", pre: typedReplyPre, in: []byte("Y"), err: l7.ErrMalformed},
	{name: "unknown first byte", in: []byte("x"), err: l7.ErrMalformed},
	{name: "length below 4", pre: typedReplyPre, in: []byte("D\x00\x00\x00\x02"), err: l7.ErrMalformed},
	{name: "negative length", pre: typedReplyPre, in: []byte("D\x80\x00\x00\x00"), err: l7.ErrMalformed},
	{name: "ready bad status", pre: typedReplyPre, in: readyMsg('X'), err: l7.ErrMalformed},
	{name: "ready bad length", pre: typedReplyPre, in: msg('Z', []byte("II")), err: l7.ErrMalformed},
	{name: "ssl answer after the startup phase", pre: typedReplyPre, in: []byte("N\x00"), want: more(3)},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// complete returns the cases whose first answer is a frame or skip of the
// whole (non-streamed) message.
func complete(cases []parseCase) []parseCase {
	var out []parseCase
	for _, c := range cases {
		if c.err == nil && (c.want.Op == l7.OpFrame || c.want.Op == l7.OpSkip) && c.want.N <= StreamAbove {
			c.in = c.in[:c.want.N]
			out = append(out, c)
		}
	}
	return out
}

// TestOneByteAtATime feeds each message one byte at a time to a parser in
// the case's state: every answer before the message's last byte must be
// OpMore with a count that does not overshoot the message (or, for
// skipped messages, a skip of what is there), and the last one must equal
// a fresh parse of the whole message.
func TestOneByteAtATime(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		cases := requestCases
		if dir == l7.DirReply {
			cases = replyCases
		}
		for _, c := range complete(cases) {
			t.Run(dir.String()+"/"+c.name, func(t *testing.T) {
				want := parse(t, c.prepared(t, dir), dir, c.in)
				if want.Op == l7.OpSkip || want.Op == l7.OpPass {
					// Skips stream: they take what is there.
					return
				}
				l7test.Bytewise(t, parser(c.prepared(t, dir), dir), c.in, want)
			})
		}
	}
}

// pair returns the reply recording that answers a request recording.
func pair(req string) string {
	base := filepath.Base(req)
	i := strings.Index(base, "-15-")
	return filepath.Join(filepath.Dir(req), "postgres"+strings.TrimSuffix(base[i:], ".req")+".reply")
}

// events reduces answers to what does not depend on how the input was
// split: consecutive skips merge into one.
func events(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.Op == l7.OpSkip && len(out) > 0 && out[len(out)-1].Op == l7.OpSkip {
			out[len(out)-1].N += r.N
			continue
		}
		out = append(out, r)
	}
	return out
}

// counts returns the request frames that expect a reply and the final
// reply frames of a recorded exchange.
func counts(reqs, reps []result) (asked, answered int) {
	for _, r := range reqs {
		if r.Op == l7.OpFrame && !r.NoReply {
			asked++
		}
	}
	for _, r := range reps {
		if r.Op == l7.OpFrame && !r.Partial {
			answered++
		}
	}
	return asked, answered
}

// TestRecordings parses each recorded exchange frame by frame: the stream
// must end on a message boundary (or pass, once encrypted), and there must
// be exactly one final reply per request that expects one.
func TestRecordings(t *testing.T) {
	for _, name := range l7test.Recordings(t, ".req") {
		t.Run(filepath.Base(name), func(t *testing.T) {
			p := NewParser()
			reqs := wholeStream(t, p, l7.DirRequest, l7test.ReadFile(t, name))
			reps := wholeStream(t, p, l7.DirReply, l7test.ReadFile(t, pair(name)))
			for _, rs := range [][]result{reqs, reps} {
				if last := rs[len(rs)-1]; last.Err != nil || (last.Op != l7.OpMore && last.Op != l7.OpPass) {
					t.Fatalf("recording does not end on a message boundary: %v", last)
				}
			}
			asked, answered := counts(reqs, reps)
			if last := lastFrame(reps); last.IsErr && asked == answered+1 {
				// A FATAL error (failed authentication) ends the
				// connection instead of an answer.
				answered++
			}
			if asked != answered {
				t.Fatalf("%d requests expect a reply, %d final replies:\n%v\n%v", asked, answered, reqs, reps)
			}
		})
	}
}

func lastFrame(rs []result) result {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Op == l7.OpFrame {
			return rs[i]
		}
	}
	return result{}
}

// TestRecordedDetails pins what the recordings show of the protocol.
func TestRecordedDetails(t *testing.T) {
	verbs := func(rs []result) string {
		var out []string
		for _, r := range rs {
			switch {
			case r.Op == l7.OpPass:
				out = append(out, "pass")
			case r.Op != l7.OpFrame:
			case r.Control:
				out = append(out, "control")
			default:
				s := r.Verb
				if r.Resources != "" {
					s += " " + r.Resources
				}
				out = append(out, s)
			}
		}
		return strings.Join(out, "; ")
	}
	tests := []struct {
		file string
		want string
	}{
		{"psql-15-select.req", "control; SELECT; control"},
		{"psql-15-sslmode-require.req", "SSL; pass"},
		{"psql-15-cancel-request.req", "CANCEL"},
		{"psql-15-gdesc.req", "control; SELECT; control; control; control; SELECT; SELECT; control"},
		{"pgbench-15-extended-error.req", "control; SELECT; control; control; SELECT; control; control"},
		{"psql-15-scram.req", "control; control; control; CREATE orders; INSERT orders; SELECT orders; control"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rs := wholeStream(t, NewParser(), l7.DirRequest, l7test.ReadFile(t, filepath.Join("testdata", tt.file)))
			if got := verbs(rs); got != tt.want {
				t.Fatalf("frames:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	// The session: SSL refused, a transaction, COPY in both directions.
	rs := wholeStream(t, NewParser(), l7.DirRequest, l7test.ReadFile(t, "testdata/psql-15-session.req"))
	want := []string{"SSL", "control", "SELECT pg_catalog.pg_class,pg_catalog.pg_namespace,pg_catalog.pg_am",
		"CREATE t", "INSERT t", "SELECT t", "BEGIN", "UPDATE t", "SELECT t", "COMMIT", "BEGIN", "SELECT", "ROLLBACK", "COPY t"}
	got := strings.Split(verbs(rs), "; ")
	if len(got) < len(want) || strings.Join(got[:len(want)], "; ") != strings.Join(want, "; ") {
		t.Fatalf("session frames:\n got %s\nwant %s…", strings.Join(got, "; "), strings.Join(want, "; "))
	}
	// COPY … FROM STDIN: its data is skipped right after the COPY frame.
	for i, r := range rs {
		if r.Verb == "COPY" && r.Resources == "t" {
			if rs[i+1].Op != l7.OpSkip {
				t.Fatalf("after COPY FROM STDIN: %v", rs[i+1])
			}
			break
		}
	}
	// The big row: header framed, 40000 bytes of payload skipped.
	reps := wholeStream(t, NewParser(), l7.DirReply, l7test.ReadFile(t, "testdata/postgres-15-big-row.reply"))
	var skipped int
	for _, r := range reps {
		if r.Op == l7.OpSkip {
			skipped += r.N
		}
	}
	if skipped < 40000 {
		t.Fatalf("big row: %d bytes skipped, want > 40000: %v", skipped, reps)
	}
}

// TestEverySplitPoint cuts each recorded stream in two at every offset: the
// answers must be those of the uncut stream (consecutive skips merged).
func TestEverySplitPoint(t *testing.T) {
	for _, ext := range []string{".req", ".reply"} {
		for _, name := range l7test.Recordings(t, ext) {
			data := l7test.ReadFile(t, name)
			dir := l7.DirRequest
			if strings.HasSuffix(name, ".reply") {
				dir = l7.DirReply
			}
			t.Run(filepath.Base(name), func(t *testing.T) {
				whole := events(wholeStream(t, NewParser(), dir, data))
				step := 1 + len(data)/500 // every offset of small files, a sample of large ones
				l7test.EverySplitStep(t, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, whole, events, step)
			})
		}
	}
}

// pipelines holds one stream per direction with every message form, for
// the every-split-point test.
func pipelines() map[l7.Dir][]byte {
	return map[l7.Dir][]byte{
		l7.DirRequest: cat(sslRequest, startupPG, msg('p', cstr("pw")), query("BEGIN"),
			parseMsg("s1", "SELECT * FROM a JOIN b ON true WHERE x = $1", 23), describeMsg('S', "s1"), flushMsg,
			bindMsg("p1", "s1", "7"), executeMsg("p1"), closeMsg('P', "p1"), syncMsg,
			bindMsg("", "s1", big(StreamAbove+10)), executeMsg(""), syncMsg,
			query("COPY t FROM STDIN"), msg('d', []byte("1\tx\n")), msg('d', []byte(big(StreamAbove+3))), msg('c'),
			functionMsg(764, big(100)), query(""), query("COMMIT"), terminateMsg),
		l7.DirReply: cat([]byte("N"), msg('R', be32b(0)), msg('S', cstr("a"), cstr("b")), msg('K', be32b(1), be32b(2)),
			readyMsg('I'), msg('C', cstr("BEGIN")), readyMsg('T'), msg('1'), msg('t', []byte{0, 1}, be32b(23)),
			msg('T', []byte{0, 0}), msg('2'), dataRow("1"), dataRow(big(StreamAbove)), msg('N', []byte("x")),
			msg('s'), msg('3'), readyMsg('T'), msg('G', []byte{0, 0, 0}), msg('C', cstr("COPY 1")), readyMsg('T'),
			msg('A', be32b(1), cstr("ch"), cstr("")), msg('V', be32b(1), []byte("x")), readyMsg('T'), msg('I'),
			readyMsg('T'), errorMsg("ERROR", "42P01", "no"), readyMsg('E')),
	}
}

// TestPipelineEverySplitPoint cuts a pipeline of every message form at
// every offset.
func TestPipelineEverySplitPoint(t *testing.T) {
	for dir, data := range pipelines() {
		t.Run(dir.String(), func(t *testing.T) {
			whole := events(wholeStream(t, NewParser(), dir, data))
			if last := whole[len(whole)-1]; last.Err != nil || last.Op != l7.OpMore || len(whole) < 20 {
				t.Fatalf("pipeline: %v", whole)
			}
			for cut := 0; cut <= len(data); cut++ {
				got := events(stream(t, NewParser(), dir, data, []int{cut, len(data)}))
				if !slices.Equal(got, whole) {
					t.Fatalf("cut at %d:\n%s", cut, l7test.Diff(got, whole))
				}
			}
			// And growing one byte at a time.
			ends := make([]int, len(data))
			for i := range ends {
				ends[i] = i + 1
			}
			if got := events(stream(t, NewParser(), dir, data, ends)); !slices.Equal(got, whole) {
				t.Fatalf("one byte at a time:\n%s", l7test.Diff(got, whole))
			}
		})
	}
}

// TestStatusSharedAcrossDirections: the transaction status of the last
// ReadyForQuery reaches the requests' frames (Args), which Deny reports.
func TestStatusSharedAcrossDirections(t *testing.T) {
	p := NewParser()
	wholeStream(t, p, l7.DirRequest, startupPG)
	for _, st := range []byte{'T', 'E', 'I'} {
		wholeStream(t, p, l7.DirReply, cat(msg('R', be32b(0)), readyMsg(st)))
		if p.Status() != st {
			t.Fatalf("Status() = %c, want %c", p.Status(), st)
		}
		for _, in := range [][]byte{query("SELECT 1"), parseMsg("", "SELECT 1"), executeMsg("")} {
			if r := parse(t, p, l7.DirRequest, in); r.Args != int(st) {
				t.Fatalf("%q after ReadyForQuery %c: args %d", in, st, r.Args)
			}
		}
	}
	if got := NewParser().Status(); got != 'I' {
		t.Fatalf("status before any ReadyForQuery: %c", got)
	}
}

// denyRun feeds msgs to a request parser one by one and calls Denied after
// the frames whose index is in denied; it returns every answer.
func denyRun(t *testing.T, p *Parser, msgs [][]byte, denied ...int) []result {
	t.Helper()
	var out []result
	for i, m := range msgs {
		for rest := m; len(rest) > 0; {
			r := parse(t, p, l7.DirRequest, rest)
			if r.Err != nil || r.Op == l7.OpMore {
				t.Fatalf("message %d %q: %v", i, m, r)
			}
			out = append(out, r)
			rest = rest[r.N:]
			for _, d := range denied {
				if d == i && r.Op == l7.OpFrame {
					p.Denied(nil)
				}
			}
		}
	}
	return out
}

func TestDenied(t *testing.T) {
	typed := func() *Parser {
		p := NewParser()
		wholeStream(t, p, l7.DirRequest, startupPG)
		return p
	}
	t.Run("parse denied: skip up to sync", func(t *testing.T) {
		msgs := [][]byte{parseMsg("", "DELETE FROM t"), bindMsg("", ""), describeMsg('P', ""), executeMsg(""), syncMsg, query("SELECT 1")}
		got := denyRun(t, typed(), msgs, 0)
		want := []result{noReply(frame(22, "DELETE", "t")), skip(len(msgs[1])), skip(7), skip(10), control(5, false), frame(14, "SELECT", "")}
		if !slices.Equal(got, want) {
			t.Fatal(l7test.Diff(got, want))
		}
	})
	t.Run("execute denied: skip up to sync", func(t *testing.T) {
		msgs := [][]byte{parseMsg("s", "DELETE FROM t"), bindMsg("", "s"), executeMsg(""), parseMsg("", "SELECT 1"), bindMsg("", ""), executeMsg(""), syncMsg}
		got := denyRun(t, typed(), msgs, 2)
		want := []result{noReply(frame(23, "DELETE", "t")), control(len(msgs[1]), true), noReply(frame(10, "DELETE", "t")),
			skip(len(msgs[3])), skip(len(msgs[4])), skip(10), control(5, false)}
		if !slices.Equal(got, want) {
			t.Fatal(l7test.Diff(got, want))
		}
	})
	t.Run("terminate ends the skipping", func(t *testing.T) {
		got := denyRun(t, typed(), [][]byte{parseMsg("", "DROP TABLE t"), msg('d', []byte("x")), terminateMsg}, 0)
		want := []result{noReply(frame(21, "DROP", "t")), skip(6), control(5, true)}
		if !slices.Equal(got, want) {
			t.Fatal(l7test.Diff(got, want))
		}
	})
	t.Run("denied parse leaves the old statement", func(t *testing.T) {
		msgs := [][]byte{parseMsg("", "SELECT * FROM a"), syncMsg, parseMsg("", "DELETE FROM a"), syncMsg, bindMsg("", ""), executeMsg(""), syncMsg}
		got := denyRun(t, typed(), msgs, 2)
		if e := got[len(got)-2]; e.Verb != "SELECT" || e.Resources != "a" {
			t.Fatalf("execute after a denied re-parse: %v", e)
		}
	})
	t.Run("denied query keeps the unnamed statement", func(t *testing.T) {
		msgs := [][]byte{parseMsg("", "SELECT * FROM a"), syncMsg, query("SELECT 2"), bindMsg("", ""), executeMsg(""), syncMsg}
		got := denyRun(t, typed(), msgs, 2)
		if e := got[len(got)-2]; e.Verb != "SELECT" || e.Resources != "a" {
			t.Fatalf("execute after a denied query: %v", e)
		}
		// Forwarded, the query drops the unnamed statement, as the server does.
		got = denyRun(t, typed(), msgs)
		if e := got[len(got)-2]; e.Verb != "EXECUTE" {
			t.Fatalf("execute after a query: %v", e)
		}
	})
	t.Run("denied query does not skip", func(t *testing.T) {
		got := denyRun(t, typed(), [][]byte{query("DROP TABLE t"), bindMsg("", "s"), query("SELECT 1")}, 0)
		want := []result{frame(18, "DROP", "t"), control(len(bindMsg("", "s")), true), frame(14, "SELECT", "")}
		if !slices.Equal(got, want) {
			t.Fatal(l7test.Diff(got, want))
		}
	})
	t.Run("denied ssl request: a TLS record is judged again", func(t *testing.T) {
		got := denyRun(t, NewParser(), [][]byte{sslRequest, clientHello}, 0)
		want := []result{startupFrame(8, "SSL", false), startupFrame(9, "SSL", true)}
		if !slices.Equal(got, want) {
			t.Fatal(l7test.Diff(got, want))
		}
	})
	t.Run("denied gssenc request: the startup packet follows", func(t *testing.T) {
		p := NewParser()
		denyRun(t, p, [][]byte{gssRequest}, 0)
		if r := parse(t, p, l7.DirRequest, cat(be32b(12000), []byte{0x60, 0x82, 0, 0})); r.Err == nil {
			t.Fatalf("gss traffic after a denied gssenc request: %v", r)
		}
	})
	t.Run("denied direct tls closes", func(t *testing.T) {
		p := NewParser()
		denyRun(t, p, [][]byte{clientHello}, 0)
		if r := parse(t, p, l7.DirRequest, []byte{0x16, 3, 1}); r.Err == nil {
			t.Fatalf("after a denied direct TLS hello: %v", r)
		}
	})
	t.Run("denied concerns the last frame only", func(t *testing.T) {
		p := typed()
		denyRun(t, p, [][]byte{executeMsg("")})
		parse(t, p, l7.DirRequest, nil) // a later call: Denied now refers to nothing
		p.Denied(nil)
		if r := parse(t, p, l7.DirRequest, bindMsg("", "")); !r.Control {
			t.Fatalf("bind after a stale Denied: %v", r)
		}
	})
}

// TestStatements follows prepared statements and portals by name.
func TestStatements(t *testing.T) {
	lastExecute := func(t *testing.T, p *Parser, msgs ...[]byte) result {
		t.Helper()
		rs := denyRun(t, p, msgs)
		return rs[len(rs)-1]
	}
	typed := func(lim Limits) *Parser {
		p := NewParserWithLimits(lim)
		wholeStream(t, p, l7.DirRequest, startupPG)
		return p
	}
	tests := []struct {
		name string
		lim  Limits
		msgs [][]byte
		want string // verb and tables of the final Execute
	}{
		{name: "named statement", msgs: [][]byte{parseMsg("s1", "INSERT INTO t VALUES (1)"), syncMsg, bindMsg("", "s1"), executeMsg("")}, want: "INSERT t"},
		{name: "named portal", msgs: [][]byte{parseMsg("", "SELECT * FROM a, b"), bindMsg("c1", ""), syncMsg, parseMsg("", "DELETE FROM x"), executeMsg("c1")}, want: "SELECT a,b"},
		{name: "portal keeps its statement", msgs: [][]byte{parseMsg("", "SELECT * FROM a"), bindMsg("", ""), parseMsg("", "DELETE FROM x"), executeMsg("")}, want: "SELECT a"},
		{name: "closed statement", msgs: [][]byte{parseMsg("s1", "SELECT 1"), closeMsg('S', "s1"), bindMsg("", "s1"), executeMsg("")}, want: "EXECUTE"},
		{name: "closed portal", msgs: [][]byte{parseMsg("", "SELECT 1"), bindMsg("p", ""), closeMsg('P', "p"), executeMsg("p")}, want: "EXECUTE"},
		{name: "re-parse of a named statement is ambiguous", msgs: [][]byte{parseMsg("s1", "SELECT 1"), parseMsg("s1", "DELETE FROM t"), bindMsg("", "s1"), executeMsg("")}, want: "EXECUTE"},
		{name: "unnamed re-parse replaces", msgs: [][]byte{parseMsg("", "SELECT 1"), parseMsg("", "DELETE FROM t"), bindMsg("", ""), executeMsg("")}, want: "DELETE t"},
		{name: "names compare on 63 bytes", msgs: [][]byte{parseMsg(big(63)+"a", "SELECT * FROM t"), bindMsg("", big(63)+"b"), executeMsg("")}, want: "SELECT t"},
		{name: "sql prepare", msgs: [][]byte{query("PREPARE q (int) AS DELETE FROM t WHERE a = $1"), bindMsg("", "q", "1"), executeMsg("")}, want: "DELETE t"},
		{name: "sql prepare quoted name", msgs: [][]byte{query(`PREPARE "Q""x" AS UPDATE t SET a = 1`), bindMsg("", `Q"x`), executeMsg("")}, want: "UPDATE t"},
		{name: "sql prepare folds case", msgs: [][]byte{query("/* c */ prepare -- x\n MyQ AS SELECT * FROM t"), bindMsg("", "myq"), executeMsg("")}, want: "SELECT t"},
		{name: "sql deallocate", msgs: [][]byte{parseMsg("s1", "SELECT 1"), syncMsg, query("DEALLOCATE s1"), bindMsg("", "s1"), executeMsg("")}, want: "EXECUTE"},
		{name: "sql deallocate prepare", msgs: [][]byte{parseMsg("s1", "SELECT 1"), parseMsg("s2", "SELECT * FROM t"), syncMsg, query("DEALLOCATE PREPARE s1"), bindMsg("", "s2"), executeMsg("")}, want: "SELECT t"},
		{name: "sql deallocate all", msgs: [][]byte{parseMsg("s1", "SELECT 1"), syncMsg, query("DEALLOCATE ALL"), bindMsg("", "s1"), executeMsg("")}, want: "EXECUTE"},
		{name: "discard all", msgs: [][]byte{parseMsg("s1", "SELECT 1"), bindMsg("p", "s1"), syncMsg, query("DISCARD ALL"), executeMsg("p")}, want: "EXECUTE"},
		{name: "discard plans keeps statements", msgs: [][]byte{parseMsg("s1", "SELECT * FROM t"), syncMsg, query("DISCARD PLANS"), bindMsg("", "s1"), executeMsg("")}, want: "SELECT t"},
		{name: "deallocate in a multi-statement text forgets all", msgs: [][]byte{parseMsg("s1", "SELECT * FROM t"), syncMsg, query("SELECT 1; DEALLOCATE x"), bindMsg("", "s1"), executeMsg("")}, want: "EXECUTE"},
		{name: "query drops the unnamed statement", msgs: [][]byte{parseMsg("", "SELECT * FROM t"), syncMsg, query("SELECT 1"), bindMsg("", ""), executeMsg("")}, want: "EXECUTE"},
		{name: "least recently used statement is forgotten", lim: Limits{MaxStatements: 2}, msgs: [][]byte{parseMsg("a", "SELECT * FROM a"), parseMsg("b", "SELECT * FROM b"), bindMsg("", "a"), parseMsg("c", "SELECT * FROM c"), bindMsg("", "b"), executeMsg("")}, want: "EXECUTE"},
		{name: "recently used statement stays", lim: Limits{MaxStatements: 2}, msgs: [][]byte{parseMsg("a", "SELECT * FROM a"), parseMsg("b", "SELECT * FROM b"), bindMsg("", "a"), parseMsg("c", "SELECT * FROM c"), bindMsg("", "a"), executeMsg("")}, want: "SELECT a"},
		{name: "many tables overflow the copy", msgs: [][]byte{parseMsg("", "SELECT * FROM "+manyTables(8, 60)), bindMsg("", ""), executeMsg("")}, want: "SELECT " + manyTables(6, 60) + " overflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := lastExecute(t, typed(tt.lim), tt.msgs...)
			got := e.Verb
			if e.Resources != "" {
				got += " " + e.Resources
			}
			if e.Overflow {
				got += " overflow"
			}
			if got != tt.want {
				t.Fatalf("execute: %v, want %s", e, tt.want)
			}
		})
	}
}

// manyTables names n distinct tables of 60 bytes, joined by ",".
func manyTables(n, size int) string {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("t%d_%s", i, big(size-3)))
	}
	return strings.Join(names, ",")
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, sslRequest, nil); op != l7.OpFrame || n != 8 || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if op, n, err := p.Parse(l7.DirReply, []byte("N"), nil); op != l7.OpFrame || n != 1 || err != nil {
		t.Fatalf("nil frame, reply: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), sslRequest, &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	wholeStream(t, &zero, l7.DirRequest, startupPG)
	if r := parse(t, &zero, l7.DirRequest, query("SELECT 1")); r != frame(14, "SELECT", "") {
		t.Fatalf("zero Parser: %v", r)
	}
	if zero.Limits() != DefaultLimits() {
		t.Fatalf("zero Parser limits %+v", zero.Limits())
	}
}

func TestFrameViewsCannotGrow(t *testing.T) {
	p := NewParser()
	wholeStream(t, p, l7.DirRequest, startupPG)
	var f l7.Frame
	for _, in := range [][]byte{query("SELECT * FROM t"), parseMsg("", "SELECT * FROM u"), bindMsg("", ""), executeMsg("")} {
		if _, _, err := p.Parse(l7.DirRequest, in, &f); err != nil {
			t.Fatal(err)
		}
		for _, v := range [][]byte{f.Verb, f.Sub, f.Resource, f.Aux} {
			if cap(v) != len(v) {
				t.Fatalf("%q: view %q has room to grow (cap %d)", in, v, cap(v))
			}
		}
	}
	// The database is the parser's copy, not a view of the startup packet.
	in := startupMsg("user", "u", "database", "d")
	q := NewParser()
	if _, _, err := q.Parse(l7.DirRequest, in, &f); err != nil || l7test.Within(in, f.Aux) {
		t.Fatalf("database %q is a view of the input (err %v)", f.Aux, err)
	}
}

func TestLimits(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Fatalf("zero limits: %v", err)
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	bad := Limits{MaxQuery: -1, MaxStatements: CapMaxStatements + 1, MaxPortals: 3}
	err := bad.Validate()
	for _, field := range []string{"MaxQuery", "MaxStatements"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Fatalf("Validate(%+v) = %v, want it to name %s", bad, err, field)
		}
	}
	if strings.Contains(err.Error(), "MaxPortals") {
		t.Fatalf("Validate names a valid field: %v", err)
	}
	got := NewParserWithLimits(bad).Limits()
	want := Limits{MaxQuery: DefaultMaxQuery, MaxStatements: CapMaxStatements, MaxPortals: 3}
	if got != want {
		t.Fatalf("NewParserWithLimits(%+v).Limits() = %+v, want %+v", bad, got, want)
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "postgres" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.CloseOnDeny || pr.ServerFirst {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if pr.MaxMessage < DefaultMaxQuery || pr.MaxMessage < StreamAbove || pr.MaxMessage < MaxAuth+1 {
		t.Fatalf("MaxMessage %d cannot hold what the parser waits for", pr.MaxMessage)
	}
	p, ok := pr.New().(*Parser)
	if !ok {
		t.Fatalf("New() returned %T", pr.New())
	}
	if _, ok := any(p).(l7.DenyObserver); !ok {
		t.Fatal("the parser is not a DenyObserver")
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

// denyReply parses a deny reply as a client would read it: each message
// with the reply parser, in the typed phase.
func denyReply(t *testing.T, out []byte) []result {
	t.Helper()
	p := NewParser()
	p.rep.phase = repTyped
	return wholeStream(t, p, l7.DirReply, out)
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	sql := func(verb, sub string, args int, noReply bool, res ...string) *l7.Frame {
		f := &l7.Frame{Verb: []byte(verb), Sub: []byte(sub), Args: args, NoReply: noReply}
		for _, r := range res {
			f.AddResource([]byte(r))
		}
		return f
	}
	overflow := sql("SELECT", "", 'I', false, "a")
	overflow.Overflow = true
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
		finals int // ReadyForQuery messages expected
	}{
		{"query", sql("DELETE", "", 'I', false, "accounts"), "l7_not_allowed", 1},
		{"query in a transaction", sql("DROP", "", 'T', false, "t"), "", 1},
		{"query in a failed transaction", sql("UPDATE", "", 'E', false, "t", "u", "v"), "protect", 1},
		{"query, status unknown", sql("SELECT", "", 'x', false), "", 1},
		{"multi", sql("MULTI", "SELECT,DROP", 'I', false, "a", "b"), "", 1},
		{"overflow", overflow, "", 1},
		{"parse", sql("INSERT", "", 'I', true, "t"), "no_rule", 0},
		{"execute", sql("EXECUTE", "", 'T', true), "", 0},
		{"function call", &l7.Frame{Verb: []byte("FUNCTION_CALL"), Resource: []byte("764"), Args: 'I'}, "", 1},
		{"ssl request", &l7.Frame{Verb: []byte("SSL")}, "", 0},
		{"gssenc request", &l7.Frame{Verb: []byte("GSSENC")}, "", 0},
		{"direct tls", &l7.Frame{Verb: []byte("SSL"), NoReply: true}, "", 0},
		{"cancel request", &l7.Frame{Verb: []byte("CANCEL"), NoReply: true}, "l7_not_allowed", 0},
		{"sql verb SSL", sql("SSL", "", 'I', false), "", 1},
		{"nil frame", nil, "", 1},
		{"no verb", &l7.Frame{Args: 'I'}, "malformed", 1},
		{"control bytes stripped", sql("SELECT\x00\r\n", "", 'I', false, "t\x00\x1b[31m"), "a\x00b\r\nc\xff", 1},
		{"long texts bounded", sql(long, long, 'I', false, long), long, 1},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if prefix := []byte("prefix"); string(Deny(prefix, tt.f, tt.reason)) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append", tt.name)
		}
		if len(out) > 512 {
			t.Errorf("%s: %d bytes", tt.name, len(out))
		}
		switch {
		case len(out) == 1:
			if out[0] != 'N' {
				t.Errorf("%s: %q", tt.name, out)
			}
		case out[0] == 0x15:
			if !bytes.Equal(out, tlsAccessDenied) {
				t.Errorf("%s: %q", tt.name, out)
			}
		default:
			rs := denyReply(t, out)
			if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Errorf("%s: %q does not parse: %v", tt.name, out, rs)
				continue
			}
			if !rs[0].IsErr || rs[0].N != len(out)-6*tt.finals {
				t.Errorf("%s: first message %v, want one ErrorResponse", tt.name, rs[0])
			}
			if _, finals := counts(nil, rs); finals != tt.finals {
				t.Errorf("%s: %d ReadyForQuery, want %d", tt.name, finals, tt.finals)
			}
			fields := bytes.Split(out[5:rs[0].N-2], []byte{0})
			if len(fields) != 4 || fields[2][0] != 'C' || string(fields[2][1:]) != SQLState {
				t.Errorf("%s: fields %q", tt.name, fields)
			}
			for _, c := range out[5 : rs[0].N-1] {
				if c != 0 && (c < ' ' || c >= 0x7f) {
					t.Errorf("%s: %q holds a control or non-ASCII byte", tt.name, out)
					break
				}
			}
		}
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, strconv.Quote(string(out)))
	}
	path := filepath.Join("testdata", "deny.golden")
	if *update {
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Fatalf("Deny output differs from %s (go test -update to accept):\n got:\n%s\nwant:\n%s", path, golden.Bytes(), want)
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"startup", startupPG, true},
		{"startup, head only", startupPG[:14], true},
		{"startup protocol 3.2", cat(be32b(19), be32b(196610), cstr("database"), cstr("x"), []byte{0}), true},
		{"ssl request", sslRequest, true},
		{"gssenc request", gssRequest, true},
		{"cancel request", cancelRequest, true},
		{"startup cut before the name's end", startupPG[:10], false},
		{"startup without parameters", cat(be32b(9), be32b(196608), []byte{0}), false},
		{"startup too long", cat(be32b(MaxStartup+1), be32b(196608), cstr("user")), false},
		{"protocol 2", cat(be32b(20), be32b(131072), cstr("user")), false},
		{"ssl request with a wrong length", cat(be32b(16), be32b(sslCode)), false},
		{"seven bytes", startupPG[:7], false},
		{"empty", nil, false},
		{"kafka metadata v0", cat(be32b(26), []byte{0, 3, 0, 0}, be32b(1), []byte{0, 6}, []byte("client"), be32b(0)), false},
		{"kafka api versions", cat(be32b(20), []byte{0, 18, 0, 3}, be32b(1), []byte{0, 6}, []byte("client")), false},
		{"redis", []byte("*1\r\n$4\r\nPING\r\n"), false},
		{"redis inline", []byte("PING\r\n\r\n"), false},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n"), false},
		{"tls", []byte{0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3}, false},
		{"memcached", []byte("get foo\r\n"), false},
		{"mysql handshake response", []byte{0xa5, 0, 0, 1, 0x85, 0xa6, 0xff, 1, 0, 0, 0, 1}, false},
		{"mongodb op_msg", []byte{0x3a, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0}, false},
		{"dns over tcp", []byte{0, 29, 0xab, 0xcd, 1, 0, 0, 1, 0, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff(tt.in); got != tt.want {
				t.Fatalf("Sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, name := range l7test.Recordings(t, ".req") {
		if !Sniff(l7test.ReadFile(t, name)) {
			t.Errorf("Sniff does not recognise %s", name)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	p := NewParser()
	var f l7.Frame
	wholeStream(t, p, l7.DirRequest, startupPG)
	wholeStream(t, p, l7.DirRequest, l7test.ReadFile(t, "testdata/pgbench-15-S-prepared.req")) // warm the tables
	requests := map[string][]byte{
		"query":          query("SELECT abalance FROM pgbench_accounts WHERE aid = 1"),
		"parse":          parseMsg("", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", 23),
		"parse named":    parseMsg("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", 23),
		"bind":           bindMsg("", "P0_1", "42"),
		"execute":        executeMsg(""),
		"describe":       describeMsg('P', ""),
		"sync":           syncMsg,
		"function":       functionMsg(764, "x"),
		"copy data":      msg('d', []byte("1\t2\n")),
		"incomplete":     query("SELECT 1")[:8],
		"prepare in sql": query("PREPARE q AS SELECT * FROM t"),
	}
	for name, in := range requests {
		if n := testing.AllocsPerRun(100, func() {
			p.Parse(l7.DirRequest, in[:len(in)/2], &f)
			for rest := in; len(rest) > 0; {
				op, n, _ := p.Parse(l7.DirRequest, rest, &f)
				if op == l7.OpMore || n == 0 {
					break
				}
				rest = rest[n:]
			}
		}); n != 0 {
			t.Errorf("request %s: %v allocations per Parse, want 0", name, n)
		}
	}
	replies := map[string][]byte{
		"row":     dataRow("1", "abc"),
		"ready":   readyMsg('T'),
		"notice":  msg('N', []byte("SNOTICE\x00\x00")),
		"big row": dataRow(big(StreamAbove + 10)),
		"error":   errorMsg("ERROR", "42P01", "x"),
	}
	q := NewParser()
	wholeStream(t, q, l7.DirReply, msg('R', be32b(0)))
	for name, in := range replies {
		if n := testing.AllocsPerRun(100, func() {
			for rest := in; len(rest) > 0; {
				op, n, _ := q.Parse(l7.DirReply, rest, &f)
				if op == l7.OpMore || n == 0 {
					break
				}
				rest = rest[n:]
			}
		}); n != 0 {
			t.Errorf("reply %s: %v allocations per Parse, want 0", name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { p.Parse(l7.DirRequest, syncMsg, nil) }); n != 0 {
		t.Errorf("Parse with a nil frame: %v allocations", n)
	}
	deny := parseMsg("", "DELETE FROM t")
	if n := testing.AllocsPerRun(100, func() {
		p.Parse(l7.DirRequest, deny, &f)
		p.Denied(&f)
		p.Parse(l7.DirRequest, syncMsg, &f)
	}); n != 0 {
		t.Errorf("Denied: %v allocations", n)
	}
	buf := make([]byte, 0, 512)
	denied := &l7.Frame{Verb: []byte("DELETE"), Resource: []byte("t"), Args: 'T'}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], denied, "no rule allows it") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { Sniff(startupPG) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func benchStream(b *testing.B, p *Parser, dir l7.Dir, data []byte) {
	b.Helper()
	var f l7.Frame
	frames := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore || op == l7.OpPass {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame {
				frames++
			}
			rest = rest[n:]
		}
	}
	if frames > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/msg")
	}
}

// pgbenchLoop is one pgbench -S transaction per protocol mode, as recorded.
func pgbenchLoop(mode string) []byte {
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
	switch mode {
	case "simple":
		return query("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;")
	case "extended":
		return cat(parseMsg("", sql), bindMsg("", "", "12345"), describeMsg('P', ""), executeMsg(""), syncMsg)
	}
	return cat(bindMsg("", "P0_1", "12345"), describeMsg('P', ""), executeMsg(""), syncMsg)
}

func BenchmarkParseRequest(b *testing.B) {
	for _, mode := range []string{"simple", "extended", "prepared"} {
		b.Run("pgbench-S-"+mode, func(b *testing.B) {
			p := NewParser()
			wholeStream(b, p, l7.DirRequest, cat(startupPG, parseMsg("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", 23)))
			benchStream(b, p, l7.DirRequest, pgbenchLoop(mode))
		})
	}
	b.Run("join-query", func(b *testing.B) {
		p := NewParser()
		wholeStream(b, p, l7.DirRequest, startupPG)
		benchStream(b, p, l7.DirRequest, query("SELECT c.relname, n.nspname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') ORDER BY 1, 2"))
	})
	b.Run("copy-data-64KiB", func(b *testing.B) {
		p := NewParser()
		wholeStream(b, p, l7.DirRequest, startupPG)
		benchStream(b, p, l7.DirRequest, msg('d', bytes.Repeat([]byte("1\tabc\n"), 64<<10/6)))
	})
}

func BenchmarkParseReply(b *testing.B) {
	rows := cat(msg('T', []byte{0, 1}, cstr("abalance"), make([]byte, 18)))
	for i := range 100 {
		rows = append(rows, dataRow(strconv.Itoa(i*1000))...)
	}
	rows = cat(rows, msg('C', cstr("SELECT 100")), readyMsg('I'))
	for name, data := range map[string][]byte{
		"100-rows":   rows,
		"big-row":    dataRow(big(1 << 20)),
		"pgbench-tx": cat(msg('1'), msg('2'), msg('T', []byte{0, 1}, cstr("abalance"), make([]byte, 18)), dataRow("0"), msg('C', cstr("SELECT 1")), readyMsg('I')),
	} {
		b.Run(name, func(b *testing.B) {
			p := NewParser()
			wholeStream(b, p, l7.DirReply, msg('R', be32b(0)))
			benchStream(b, p, l7.DirReply, data)
		})
	}
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 512)
	f := &l7.Frame{Verb: []byte("DELETE"), Resource: []byte("accounts"), Args: 'T'}
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], f, "l7_not_allowed")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkSniff(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Sniff(startupPG)
	}
}
