package memcached

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into strings, so that
// results compare with == and print readably.
type result struct {
	Op       l7.Op
	N        int
	Err      error
	Dir      l7.Dir
	Verb     string
	Res      string // Resource, then More, separated by spaces
	Overflow bool
	Args     int
	NoReply  bool
	Unord    bool // Unordered
	Partial  bool
	IsErr    bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	if r.Op == l7.OpMore {
		return fmt.Sprintf("more %d", r.N)
	}
	return fmt.Sprintf("%v %d {%v verb=%q res=%q overflow=%v args=%#x noreply=%v unordered=%v partial=%v err=%v}",
		r.Op, r.N, r.Dir, r.Verb, r.Res, r.Overflow, r.Args, r.NoReply, r.Unord, r.Partial, r.IsErr)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	if op == l7.OpMore {
		return result{Op: op, N: n}
	}
	var res []string
	f.Resources(func(r []byte) bool { res = append(res, string(r)); return true })
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Res: strings.Join(res, " "),
		Overflow: f.Overflow, Args: f.Args, NoReply: f.NoReply, Unord: f.Unordered, Partial: f.Partial, IsErr: f.Err}
}

// parse runs one Parse call and checks what must hold for every answer.
func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	checkAnswer(t, p, dir, data, op, n, err, &f)
	return resultOf(op, n, err, &f)
}

func checkAnswer(t testing.TB, p *Parser, dir l7.Dir, data []byte, op l7.Op, n int, err error, f *l7.Frame) {
	t.Helper()
	l7test.Check{ViewOK: func(field string, msg, v []byte) bool { return viewOK(p, msg, v, field == "verb") }}.Answer(t, dir, data, op, n, err, f)
	if err != nil || (op != l7.OpFrame && op != l7.OpSkip) {
		return
	}
	if dir == l7.DirReply && (len(f.Verb) > 0 || len(f.Resource) > 0) {
		t.Fatalf("%q: reply with verb %q or resource %q", data, f.Verb, f.Resource)
	}
	if op == l7.OpSkip && (len(f.Verb) > 0 || f.Partial || f.NoReply) {
		t.Fatalf("%q: skip with frame fields set: %+v", data, f)
	}
}

// viewOK reports whether v is empty, a view of msg or of the parser's key
// buffer, or (for a verb) a binary opcode name.
func viewOK(p *Parser, msg, v []byte, verb bool) bool {
	if len(v) == 0 || l7test.Within(msg, v) || l7test.Within(p.key[:], v) {
		return true
	}
	return verb && l7test.Within(opcodeNames, v)
}

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

func stream(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int) []result {
	t.Helper()
	return l7test.Stream(t, parser(p, dir), data, ends)
}

// normalize merges runs of OpSkip (how much of a value one call skips
// depends on how the input was cut) and drops skips just before a final
// error (a value cut earlier is partly skipped before its bad end shows).
func normalize(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.Op == l7.OpSkip && r.Err == nil && len(out) > 0 && out[len(out)-1].Op == l7.OpSkip && out[len(out)-1].Err == nil {
			out[len(out)-1].N += r.N
			continue
		}
		out = append(out, r)
	}
	if n := len(out); n > 0 && out[n-1].Err != nil {
		e := out[n-1]
		out = out[:n-1]
		for len(out) > 0 && out[len(out)-1].Op == l7.OpSkip {
			out = out[:len(out)-1]
		}
		out = append(out, e)
	}
	return out
}

func wholeStream(t testing.TB, dir l7.Dir, data []byte, lim Limits) []result {
	t.Helper()
	return stream(t, NewParserWithLimits(lim), dir, data, []int{len(data)})
}

func req(n int, verb, res string, args int) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Res: res, Args: args}
}

func noreply(r result) result { r.NoReply = true; return r }

// quiet is a meta command with the q flag: NoReply and Unordered.
func quiet(r result) result { r.NoReply, r.Unord = true, true; return r }

func unordered(r result) result { r.Unord = true; return r }

func reply(n int, partial, isErr bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, Partial: partial, IsErr: isErr}
}

func skip(dir l7.Dir, n int) result { return result{Op: l7.OpSkip, N: n, Dir: dir} }

func more(n int) result { return result{Op: l7.OpMore, N: n} }

// Binary packets.

func binPacket(magic, op byte, key, extras, value string, statusOrVbucket uint16, opaque uint32) []byte {
	h := make([]byte, headerLen, headerLen+len(extras)+len(key)+len(value))
	h[0], h[1] = magic, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint16(h[6:], statusOrVbucket)
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	binary.BigEndian.PutUint32(h[12:], opaque)
	return append(append(append(h, extras...), key...), value...)
}

func binReq(op byte, key, extras, value string, opaque uint32) string {
	return string(binPacket(magicRequest, op, key, extras, value, 0, opaque))
}

func binRes(op byte, status uint16, key, extras, value string) string {
	return string(binPacket(magicResponse, op, key, extras, value, status, 7))
}

// withLen rewrites the body length of the binary packet p.
func withLen(p string, body uint32) string {
	b := []byte(p)
	binary.BigEndian.PutUint32(b[8:], body)
	return string(b)
}

func binArgs(op byte, opaque uint32) int { return argsBinary | int(op)<<32 | int(opaque) }

func breq(n int, op byte, res string, opaque uint32) result {
	r := req(n, string(opcodes[op].name), res, binArgs(op, opaque))
	r.NoReply = opcodes[op].quiet
	return r
}

var (
	ext4  = "\x00\x00\x00\x64"
	ext8  = "\x00\x00\x00\x07\x00\x00\x00\x00"
	ext20 = strings.Repeat("\x00", 7) + "\x05" + strings.Repeat("\x00", 12)
)

// parseCase is one input and the first answer of a fresh parser with lim.
type parseCase struct {
	name string
	in   string
	lim  Limits
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

func (c parseCase) check(t *testing.T, dir l7.Dir) {
	t.Helper()
	got := parse(t, NewParserWithLimits(c.lim), dir, []byte(c.in))
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

var keys20 = "k01 k02 k03 k04 k05 k06 k07 k08 k09 k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 k20"

var requestCases = []parseCase{
	// Retrieval.
	{name: "get", in: "get foo\r\n", want: req(9, "get", "foo", 2)},
	{name: "get bare LF", in: "get foo\n", want: req(8, "get", "foo", 2)},
	{name: "get multi", in: "get a b c\r\n", want: req(11, "get", "a b c", 4)},
	{name: "get extra spaces", in: "  get   a  b \r\n", want: req(15, "get", "a b", 3)},
	{name: "get 16 keys", in: "get " + keys20[:63] + "\r\n", want: req(69, "get", keys20[:63], 17)},
	{name: "get 20 keys overflows", in: "get " + keys20 + "\r\n", want: func() result {
		r := req(85, "get", keys20[:63], 21)
		r.Overflow = true
		return r
	}()},
	{name: "gets", in: "gets a b\r\n", want: req(10, "gets", "a b", 3)},
	{name: "gat", in: "gat 100 a b\r\n", want: req(13, "gat", "a b", 4)},
	{name: "gats no key", in: "gats 100\r\n", want: req(10, "gats", "", 2)},
	{name: "bget", in: "bget a\r\n", want: req(8, "bget", "a", 2)},
	{name: "get without key", in: "get\r\n", want: req(5, "get", "", 1)},
	{name: "get noreply is a key", in: "get noreply\r\n", want: req(13, "get", "noreply", 2)},
	{name: "utf-8 key", in: "get clé\r\n", want: req(10, "get", "clé", 2)},
	{name: "key of 250 bytes", in: "get " + strings.Repeat("k", 250) + "\r\n", want: req(256, "get", strings.Repeat("k", 250), 2)},

	// Storage.
	{name: "set", in: "set k 0 0 5\r\nhello\r\n", want: req(13, "set", "k", 5)},
	{name: "set noreply", in: "set k 1 -1 5 noreply\r\nhello\r\n", want: noreply(req(22, "set", "k", 6))},
	{name: "set extra word", in: "set k 0 0 5 junk\r\nhello\r\n", want: req(18, "set", "k", 6)},
	{name: "set max numbers", in: "set k 4294967295 -2147483648 0\r\n\r\n", want: req(32, "set", "k", 5)},
	{name: "add", in: "add k 0 0 1\r\nx\r\n", want: req(13, "add", "k", 5)},
	{name: "replace", in: "replace k 0 0 1\r\nx\r\n", want: req(17, "replace", "k", 5)},
	{name: "append noreply", in: "append k 0 0 1 noreply\r\nx\r\n", want: noreply(req(24, "append", "k", 6))},
	{name: "prepend", in: "prepend k 0 0 1\r\nx\r\n", want: req(17, "prepend", "k", 5)},
	{name: "cas", in: "cas k 0 0 1 42\r\nx\r\n", want: req(16, "cas", "k", 6)},
	{name: "cas noreply", in: "cas k 0 0 1 42 noreply\r\nx\r\n", want: noreply(req(24, "cas", "k", 7))},
	{name: "set missing bytes", in: "set k 0 0\r\n", want: req(11, "set", "", 4)},
	{name: "set too many words", in: "set k 0 0 1 noreply x\r\n", want: req(23, "set", "", 7)},
	{name: "cas missing unique", in: "cas k 0 0 1\r\n", want: req(13, "cas", "", 5)},

	// Other keyed commands.
	{name: "incr", in: "incr n 5\r\n", want: req(10, "incr", "n", 3)},
	{name: "decr noreply", in: "decr n 5 noreply\r\n", want: noreply(req(18, "decr", "n", 4))},
	{name: "incr noreply as delta", in: "incr n noreply\r\n", want: noreply(req(16, "incr", "n", 3))},
	{name: "incr without delta", in: "incr n\r\n", want: req(8, "incr", "", 2)},
	{name: "touch", in: "touch k 10\r\n", want: req(12, "touch", "k", 3)},
	{name: "touch noreply", in: "touch k 10 noreply\r\n", want: noreply(req(20, "touch", "k", 4))},
	{name: "delete", in: "delete k\r\n", want: req(10, "delete", "k", 2)},
	{name: "delete 0", in: "delete k 0\r\n", want: req(12, "delete", "k", 3)},
	{name: "delete noreply", in: "delete k noreply\r\n", want: noreply(req(18, "delete", "k", 3))},
	{name: "delete 0 noreply", in: "delete k 0 noreply\r\n", want: noreply(req(20, "delete", "k", 4))},
	{name: "delete bad hold noreply", in: "delete k 5 noreply\r\n", want: noreply(req(20, "delete", "k", 4))},
	{name: "delete too many words", in: "delete k 0 noreply x\r\n", want: req(22, "delete", "", 5)},

	// Administration.
	{name: "flush_all", in: "flush_all\r\n", want: req(11, "flush_all", "", 1)},
	{name: "flush_all trailing space", in: "flush_all \r\n", want: req(12, "flush_all", "", 1)},
	{name: "flush_all noreply", in: "flush_all noreply\r\n", want: noreply(req(19, "flush_all", "", 2))},
	{name: "flush_all delay noreply", in: "flush_all 10 noreply\r\n", want: noreply(req(22, "flush_all", "", 3))},
	{name: "flush_all too many words", in: "flush_all 1 2 noreply\r\n", want: req(23, "flush_all", "", 4)},
	{name: "verbosity noreply", in: "verbosity 1 noreply\r\n", want: noreply(req(21, "verbosity", "", 3))},
	{name: "cache_memlimit noreply", in: "cache_memlimit 64 noreply\r\n", want: noreply(req(27, "cache_memlimit", "", 3))},
	{name: "lru noreply", in: "lru mode flat noreply\r\n", want: noreply(req(23, "lru", "", 4))},
	{name: "slabs automove noreply", in: "slabs automove 1 noreply\r\n", want: noreply(req(26, "slabs", "", 4))},
	{name: "slabs reassign noreply is an error", in: "slabs reassign 1 2 noreply\r\n", want: req(28, "slabs", "", 5)},
	{name: "quit", in: "quit\r\n", want: noreply(req(6, "quit", "", 1))},
	{name: "version", in: "version\r\n", want: req(9, "version", "", 1)},
	{name: "stats", in: "stats\r\n", want: req(7, "stats", "", 1)},
	{name: "stats cachedump", in: "stats cachedump 1 100\r\n", want: req(23, "stats", "", 4)},
	{name: "stats noreply is answered", in: "stats noreply\r\n", want: req(15, "stats", "", 2)},
	{name: "lru_crawler metadump", in: "lru_crawler metadump all\r\n", want: req(26, "lru_crawler", "", 3)},
	{name: "watch", in: "watch fetchers\r\n", want: unordered(req(16, "watch", "", 2))},
	{name: "refresh_certs noreply", in: "refresh_certs noreply\r\n", want: unordered(req(23, "refresh_certs", "", 2))},
	{name: "refresh_certs", in: "refresh_certs\r\n", want: req(15, "refresh_certs", "", 1)},
	{name: "shutdown", in: "shutdown\r\n", want: req(10, "shutdown", "", 1)},

	// Unknown and empty commands are framed: memcached answers ERROR.
	{name: "unknown", in: "foo bar\r\n", want: req(9, "foo", "", 2)},
	{name: "upper case is unknown", in: "GET k\r\n", want: req(7, "GET", "", 2)},
	{name: "unknown noreply is answered", in: "foo noreply\r\n", want: req(13, "foo", "", 2)},
	{name: "config get cluster", in: "config get cluster\r\n", want: req(20, "config", "", 3)},
	{name: "empty line", in: "\r\n", want: req(2, "", "", 0)},
	{name: "empty LF", in: "\n", want: req(1, "", "", 0)},
	{name: "blank line", in: "   \r\n", want: req(5, "", "", 0)},
	{name: "pipelined", in: "get a\r\nget b\r\n", want: req(7, "get", "a", 2)},
	{name: "verb of 64 bytes", in: strings.Repeat("v", 64) + "\r\n", want: req(66, strings.Repeat("v", 64), "", 1)},

	// Meta commands.
	{name: "mg", in: "mg foo v f t\r\n", want: req(14, "mg", "foo", 5)},
	{name: "mg quiet", in: "mg foo v q k O1\r\n", want: quiet(req(17, "mg", "foo", 6))},
	{name: "mg base64 key", in: "mg Zm9vYmFy b v\r\n", want: req(17, "mg", "foobar", 4)},
	{name: "mg binary key", in: "mg AAEC b\r\n", want: req(11, "mg", "\x00\x01\x02", 3)},
	{name: "mg without key", in: "mg\r\n", want: req(4, "mg", "", 1)},
	{name: "mg 19 words quiet", in: "mg k q" + strings.Repeat(" v", 16) + "\r\n", want: quiet(req(40, "mg", "k", 19))},
	{name: "mg 20 words quiet is answered", in: "mg k q" + strings.Repeat(" v", 17) + "\r\n", want: req(42, "mg", "k", 20)},
	{name: "ms", in: "ms foo 2 T90 F5\r\nhi\r\n", want: req(17, "ms", "foo", 5)},
	{name: "ms quiet", in: "ms foo 2 q\r\nhi\r\n", want: quiet(req(12, "ms", "foo", 4))},
	{name: "ms base64 key", in: "ms Zm9v 1 b\r\nx\r\n", want: req(13, "ms", "foo", 4)},
	{name: "ms 19 words", in: "ms k 1" + strings.Repeat(" T1", 16) + "\r\nx\r\n", want: req(56, "ms", "k", 19)},
	{name: "ms without key", in: "ms\r\n", want: req(4, "ms", "", 1)},
	{name: "ms without length", in: "ms k\r\n", want: req(6, "ms", "", 2)},
	{name: "md quiet", in: "md foo q\r\n", want: quiet(req(10, "md", "foo", 3))},
	{name: "ma", in: "ma cnt N0 J10 v\r\n", want: req(17, "ma", "cnt", 5)},
	{name: "mn", in: "mn\r\n", want: req(4, "mn", "", 1)},
	{name: "me", in: "me foo\r\n", want: req(8, "me", "foo", 2)},
	{name: "me base64", in: "me Zm9v b\r\n", want: req(11, "me", "foo", 3)},
	{name: "me b is only a flag in third place", in: "me Zm9v x b\r\n", want: req(13, "me", "Zm9v", 4)},
	{name: "unknown meta", in: "mx foo\r\n", want: req(8, "mx", "", 2)},

	// Binary.
	{name: "binary get", in: binReq(opGet, "foo", "", "", 9), want: breq(27, opGet, "foo", 9)},
	{name: "binary getkq", in: binReq(opGetKQ, "foo", "", "", 1), want: breq(27, opGetKQ, "foo", 1)},
	{name: "binary set", in: binReq(opSet, "k", ext8, "hello", 0xffffffff), want: breq(33, opSet, "k", 0xffffffff)},
	{name: "binary setq", in: binReq(opSetQ, "k", ext8, "v", 2), want: breq(33, opSetQ, "k", 2)},
	{name: "binary set empty value", in: binReq(opSet, "k", ext8, "", 2), want: breq(33, opSet, "k", 2)},
	{name: "binary append", in: binReq(opAppend, "k", "", "++", 3), want: breq(25, opAppend, "k", 3)},
	{name: "binary increment", in: binReq(opIncrement, "n", ext20, "", 4), want: breq(45, opIncrement, "n", 4)},
	{name: "binary decrementq", in: binReq(opDecrementQ, "n", ext20, "", 4), want: breq(45, opDecrementQ, "n", 4)},
	{name: "binary delete", in: binReq(opDelete, "k", "", "", 5), want: breq(25, opDelete, "k", 5)},
	{name: "binary touch", in: binReq(opTouch, "k", ext4, "", 6), want: breq(29, opTouch, "k", 6)},
	{name: "binary gatkq", in: binReq(opGATKQ, "k", ext4, "", 6), want: breq(29, opGATKQ, "k", 6)},
	{name: "binary flush", in: binReq(opFlush, "", "", "", 7), want: breq(24, opFlush, "", 7)},
	{name: "binary flush delay", in: binReq(opFlush, "", ext4, "", 7), want: breq(28, opFlush, "", 7)},
	{name: "binary flushq", in: binReq(opFlushQ, "", "", "", 7), want: breq(24, opFlushQ, "", 7)},
	{name: "binary noop", in: binReq(opNoop, "", "", "", 8), want: breq(24, opNoop, "", 8)},
	{name: "binary version", in: binReq(opVersion, "", "", "", 8), want: breq(24, opVersion, "", 8)},
	{name: "binary quit", in: binReq(opQuit, "", "", "", 8), want: breq(24, opQuit, "", 8)},
	{name: "binary quitq", in: binReq(opQuitQ, "", "", "", 8), want: breq(24, opQuitQ, "", 8)},
	{name: "binary stat", in: binReq(opStat, "items", "", "", 8), want: breq(29, opStat, "", 8)},
	{name: "binary stat all", in: binReq(opStat, "", "", "", 8), want: breq(24, opStat, "", 8)},
	{name: "binary sasl auth", in: binReq(opSASLAuth, "PLAIN", "", "\x00u\x00p", 8), want: breq(29, opSASLAuth, "", 8)},
	{name: "binary sasl list", in: binReq(opSASLListMechs, "", "", "", 8), want: breq(24, opSASLListMechs, "", 8)},
	{name: "binary unknown opcode", in: binReq(0x3f, "", "", "junk", 8), want: breq(24, 0x3f, "", 8)},
	{name: "binary key of 250 bytes", in: binReq(opGet, strings.Repeat("k", 250), "", "", 1), want: breq(274, opGet, strings.Repeat("k", 250), 1)},

	// Incomplete.
	{name: "nothing", in: "", want: more(1)},
	{name: "line without LF", in: "get foo", want: more(1)},
	{name: "line with CR only", in: "get foo\r", want: more(1)},
	{name: "binary magic", in: "\x80", want: more(23)},
	{name: "binary header", in: binReq(opGet, "foo", "", "", 1)[:24], want: more(3)},
	{name: "binary header and extras", in: binReq(opSet, "key", ext8, "v", 1)[:32], want: more(3)},

	// Malformed.
	{name: "NUL in line", in: "get a\x00b\r\n", err: l7.ErrMalformed},
	{name: "control in verb", in: "g\x01et a\r\n", err: l7.ErrMalformed},
	{name: "high byte verb", in: "\xffget a\r\n", err: l7.ErrMalformed},
	{name: "tab in key", in: "get a\tb\r\n", err: l7.ErrMalformed},
	{name: "CR in key", in: "get a\r\r\n", err: l7.ErrMalformed},
	{name: "DEL in key", in: "delete a\x7f\r\n", err: l7.ErrMalformed},
	{name: "control in storage key", in: "set a\x01 0 0 1\r\n", err: l7.ErrMalformed},
	{name: "flags not a number", in: "set k x 0 1\r\n", err: l7.ErrMalformed},
	{name: "flags signed", in: "set k +1 0 1\r\n", err: l7.ErrMalformed},
	{name: "flags over 32 bits", in: "set k 4294967296 0 1\r\n", err: l7.ErrMalformed},
	{name: "exptime not a number", in: "set k 0 1x 1\r\n", err: l7.ErrMalformed},
	{name: "exptime over 32 bits", in: "set k 0 2147483648 1\r\n", err: l7.ErrMalformed},
	{name: "exptime under 32 bits", in: "set k 0 -2147483649 1\r\n", err: l7.ErrMalformed},
	{name: "exptime minus only", in: "set k 0 - 1\r\n", err: l7.ErrMalformed},
	{name: "bytes negative", in: "set k 0 0 -1\r\n", err: l7.ErrMalformed},
	{name: "bytes noreply", in: "set k 0 0 noreply\r\n", err: l7.ErrMalformed},
	{name: "bytes over int32", in: "set k 0 0 2147483646\r\n", err: l7.ErrMalformed},
	{name: "cas unique not a number", in: "cas k 0 0 1 x\r\n", err: l7.ErrMalformed},
	{name: "ms length not a number", in: "ms k x\r\n", err: l7.ErrMalformed},
	{name: "meta key not base64", in: "mg Zm9v! b\r\n", err: l7.ErrMalformed},
	{name: "meta key unpadded base64", in: "mg Zm9vYg b\r\n", err: l7.ErrMalformed},
	{name: "meta key non-canonical base64", in: "mg Zm9= b\r\n", err: l7.ErrMalformed},
	{name: "binary response magic starts a text line", in: "\x81get\r\n", err: l7.ErrMalformed},
	{name: "binary key and extras beyond body", in: withLen(binReq(opGet, "foo", "", "", 1), 2), err: l7.ErrMalformed},
	{name: "binary get with extras", in: binReq(opGet, "foo", ext4, "", 1), err: l7.ErrMalformed},
	{name: "binary get with value", in: binReq(opGet, "foo", "", "v", 1), err: l7.ErrMalformed},
	{name: "binary get without key", in: binReq(opGet, "", "", "", 1), err: l7.ErrMalformed},
	{name: "binary set without extras", in: binReq(opSet, "k", "", "v", 1), err: l7.ErrMalformed},
	{name: "binary increment short extras", in: binReq(opIncrement, "n", ext8, "", 1), err: l7.ErrMalformed},
	{name: "binary stat with body", in: binReq(opStat, "items", "", "x", 1), err: l7.ErrMalformed},
	{name: "binary touch with body", in: binReq(opTouch, "k", ext4, "x", 1), err: l7.ErrMalformed},
	{name: "binary noop with body", in: binReq(opNoop, "", "", "x", 1), err: l7.ErrMalformed},
	{name: "binary flush with key", in: binReq(opFlush, "k", "", "", 1), err: l7.ErrMalformed},
	{name: "binary unknown opcode with key", in: binReq(0x3f, "k", "", "", 1), err: l7.ErrMalformed},
	{name: "binary sasl auth without key", in: binReq(opSASLAuth, "", "", "x", 1), err: l7.ErrMalformed},

	// Over a limit.
	{name: "verb too long", in: strings.Repeat("v", 65) + "\r\n", err: l7.ErrTooLong},
	{name: "key too long", in: "get " + strings.Repeat("k", 251) + "\r\n", err: l7.ErrTooLong},
	{name: "later key too long", in: "get a " + strings.Repeat("k", 251) + "\r\n", err: l7.ErrTooLong},
	{name: "storage key too long", in: "set " + strings.Repeat("k", 251) + " 0 0 1\r\n", err: l7.ErrTooLong},
	{name: "meta key too long", in: "mg " + strings.Repeat("k", 251) + " v\r\n", err: l7.ErrTooLong},
	{name: "ms key too long", in: "ms " + strings.Repeat("k", 251) + " 1\r\n", err: l7.ErrTooLong},
	{name: "ms 20 words", in: "ms k 1" + strings.Repeat(" T1", 17) + "\r\n", err: l7.ErrTooLong},
	{name: "value too long", in: "set k 0 0 1048577\r\n", err: l7.ErrTooLong},
	{name: "value at the limit", in: "set k 0 0 1048576\r\n", want: req(19, "set", "k", 5)},
	{name: "value over a small limit", in: "set k 0 0 11\r\n", lim: Limits{MaxItem: 10}, err: l7.ErrTooLong},
	{name: "ms value too long", in: "ms k 11\r\n", lim: Limits{MaxItem: 10}, err: l7.ErrTooLong},
	{name: "line too long", in: "get 123456789012\r\n", lim: Limits{MaxLine: 15}, err: l7.ErrTooLong},
	{name: "line at the limit", in: "get 12345678901\r\n", lim: Limits{MaxLine: 15}, want: req(17, "get", "12345678901", 2)},
	{name: "line too long without LF", in: "get 123456789012", lim: Limits{MaxLine: 15}, err: l7.ErrTooLong},
	{name: "line at the limit without LF", in: "get 12345678901\r", lim: Limits{MaxLine: 15}, want: more(1)},
	{name: "binary key too long", in: binReq(opGet, strings.Repeat("k", 251), "", "", 1), err: l7.ErrTooLong},
	{name: "binary value too long", in: withLen(binReq(opSet, "k", ext8, "", 1), 9+1<<20+1), err: l7.ErrTooLong},
	{name: "binary body over a small limit", in: binReq(0x3f, "", "", "12345678901", 1), lim: Limits{MaxItem: 10}, err: l7.ErrTooLong},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

var replyCases = []parseCase{
	{name: "stored", in: "STORED\r\n", want: reply(8, false, false)},
	{name: "end", in: "END\r\n", want: reply(5, false, false)},
	{name: "number", in: "42\r\n", want: reply(4, false, false)},
	{name: "version", in: "VERSION 1.6.18\r\n", want: reply(16, false, false)},
	{name: "error", in: "ERROR\r\n", want: reply(7, false, true)},
	{name: "error with text", in: "ERROR cannot pipeline other commands before metadump\r\n", want: reply(54, false, true)},
	{name: "client error", in: "CLIENT_ERROR bad data chunk\r\n", want: reply(29, false, true)},
	{name: "server error", in: "SERVER_ERROR out of memory storing object\r\n", want: reply(43, false, true)},
	{name: "not found", in: "NOT_FOUND\r\n", want: reply(11, false, false)},
	{name: "meta hd", in: "HD c123 Oabc\r\n", want: reply(14, false, false)},
	{name: "meta en", in: "EN\r\n", want: reply(4, false, false)},
	{name: "meta mn", in: "MN\r\n", want: reply(4, false, false)},
	{name: "meta me", in: "ME bar exp=-1 la=0 cas=28 fetch=yes cls=1 size=68\r\n", want: reply(51, false, false)},
	{name: "bare LF", in: "STORED\n", want: reply(7, false, false)},
	{name: "value header", in: "VALUE k 0 5\r\nhello\r\nEND\r\n", want: reply(13, true, false)},
	{name: "value header with cas", in: "VALUE k 4294967295 5 99\r\nhello\r\n", want: reply(25, true, false)},
	{name: "elasticache config", in: "CONFIG cluster 0 3\r\nabc\r\nEND\r\n", want: reply(20, true, false)},
	{name: "va header", in: "VA 2 f5 t90\r\nhi\r\n", want: reply(13, true, false)},
	{name: "stat line", in: "STAT pid 1\r\nEND\r\n", want: reply(12, true, false)},
	{name: "cachedump line", in: "ITEM k [1 b; 0 s]\r\n", want: reply(19, true, false)},
	{name: "detail dump line", in: "PREFIX p get 2 hit 1 set 1 del 0\r\n", want: reply(34, true, false)},
	{name: "metadump line", in: "key=k exp=-1 la=1 cas=2 fetch=no cls=1 size=64\n", want: reply(47, true, false)},
	{name: "mgdump line", in: "mg k\r\n", want: reply(6, true, false)},
	{name: "watch log line", in: "ts=1.2 gid=3 type=item_get key=k status=found\n", want: skip(l7.DirReply, 46)},
	{name: "binary success", in: binRes(opSet, 0, "", "", ""), want: reply(24, false, false)},
	{name: "binary value", in: binRes(opGet, 0, "", ext4, "hello"), want: reply(24, true, false)},
	{name: "binary miss", in: binRes(opGet, 1, "", "", "Not found"), want: reply(24, true, true)},
	{name: "binary quiet", in: binRes(opGetKQ, 0, "k", ext4, "v"), want: reply(24, true, false)},
	{name: "binary quiet without body", in: binRes(opSetQ, 2, "", "", ""), want: reply(24, true, true)},
	{name: "binary stat entry", in: binRes(opStat, 0, "pid", "", "1"), want: reply(24, true, false)},
	{name: "binary stat end", in: binRes(opStat, 0, "", "", ""), want: reply(24, false, false)},
	{name: "binary auth continue", in: binRes(opSASLAuth, statusAuthContin, "", "", ""), want: reply(24, false, false)},
	{name: "binary unknown command", in: binRes(0x3f, 0x81, "", "", ""), want: reply(24, false, true)},

	// Incomplete.
	{name: "nothing", in: "", want: more(1)},
	{name: "line without LF", in: "STORED", want: more(1)},
	{name: "binary magic", in: "\x81", want: more(23)},

	// Malformed.
	{name: "lower case", in: "stored\r\n", err: l7.ErrMalformed},
	{name: "empty line", in: "\r\n", err: l7.ErrMalformed},
	{name: "blank line", in: " \n", err: l7.ErrMalformed},
	{name: "leading space", in: " END\r\n", err: l7.ErrMalformed},
	{name: "control byte", in: "STO\x01RED\r\n", err: l7.ErrMalformed},
	{name: "NUL", in: "END\x00\r\n", err: l7.ErrMalformed},
	{name: "number with sign", in: "-1\r\n", err: l7.ErrMalformed},
	{name: "value without bytes", in: "VALUE k 0\r\n", err: l7.ErrMalformed},
	{name: "value bad flags", in: "VALUE k x 1\r\n", err: l7.ErrMalformed},
	{name: "value bad bytes", in: "VALUE k 0 -1\r\n", err: l7.ErrMalformed},
	{name: "value bad cas", in: "VALUE k 0 1 x\r\n", err: l7.ErrMalformed},
	{name: "value extra word", in: "VALUE k 0 1 2 3\r\n", err: l7.ErrMalformed},
	{name: "va without size", in: "VA\r\n", err: l7.ErrMalformed},
	{name: "va bad size", in: "VA x\r\n", err: l7.ErrMalformed},
	{name: "binary request magic starts a text line", in: "\x80END\r\n", err: l7.ErrMalformed},
	{name: "binary key and extras beyond body", in: withLen(binRes(opGet, 0, "k", ext4, ""), 4), err: l7.ErrMalformed},

	// Over a limit.
	{name: "value too long", in: "VALUE k 0 1048577\r\n", err: l7.ErrTooLong},
	{name: "va too long", in: "VA 11\r\n", lim: Limits{MaxItem: 10}, err: l7.ErrTooLong},
	{name: "value key too long", in: "VALUE " + strings.Repeat("k", 251) + " 0 1\r\n", err: l7.ErrTooLong},
	{name: "line too long", in: "STAT 1234567890\r\n", lim: Limits{MaxLine: 14}, err: l7.ErrTooLong},
	{name: "binary body too long", in: withLen(binRes(opGet, 0, "", "", ""), 1<<20+506), err: l7.ErrTooLong},
	{name: "binary body at the limit", in: withLen(binRes(opGet, 0, "", "", ""), 1<<20+505), want: reply(24, true, false)},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// streamCase is a whole stream and every answer to it.
type streamCase struct {
	name string
	dir  l7.Dir
	in   string
	want []result // normalized, ending with the final OpMore or error
	err  error    // the final error, when there is one
}

var streamCases = []streamCase{
	{name: "set then get", dir: l7.DirRequest, in: "set k 0 0 5\r\nhello\r\nget k\r\n",
		want: []result{req(13, "set", "k", 5), skip(l7.DirRequest, 7), req(7, "get", "k", 2), more(1)}},
	{name: "empty value", dir: l7.DirRequest, in: "set k 0 0 0\r\n\r\nmn\r\n",
		want: []result{req(13, "set", "k", 5), skip(l7.DirRequest, 2), req(4, "mn", "", 1), more(1)}},
	{name: "value holding command lines", dir: l7.DirRequest, in: "set k 0 0 11\r\nflush_all\r\n\r\n",
		want: []result{req(14, "set", "k", 5), skip(l7.DirRequest, 13), more(1)}},
	{name: "incomplete value", dir: l7.DirRequest, in: "set k 0 0 5\r\nhel",
		want: []result{req(13, "set", "k", 5), skip(l7.DirRequest, 3), more(4)}},
	{name: "no data block after a wrong count", dir: l7.DirRequest, in: "set k 0 0\r\nget k\r\n",
		want: []result{req(11, "set", "", 4), req(7, "get", "k", 2), more(1)}},
	{name: "value without CRLF", dir: l7.DirRequest, in: "set k 0 0 3\r\nabcXY", err: l7.ErrMalformed,
		want: []result{req(13, "set", "k", 5)}},
	{name: "value with LF only", dir: l7.DirRequest, in: "set k 0 0 3\r\nabc\nget k\r\n", err: l7.ErrMalformed,
		want: []result{req(13, "set", "k", 5)}},
	{name: "ms then mn", dir: l7.DirRequest, in: "ms k 2 q\r\nhi\r\nmn\r\n",
		want: []result{quiet(req(10, "ms", "k", 4)), skip(l7.DirRequest, 4), req(4, "mn", "", 1), more(1)}},
	{name: "binary request after text", dir: l7.DirRequest, in: "get a\r\n" + binReq(opGet, "b", "", "", '\n'), err: l7.ErrMalformed,
		want: []result{req(7, "get", "a", 2)}},
	{name: "text after binary", dir: l7.DirRequest, in: binReq(opNoop, "", "", "", 1) + "get a\r\n", err: l7.ErrMalformed,
		want: []result{breq(24, opNoop, "", 1)}},
	{name: "binary set then get", dir: l7.DirRequest, in: binReq(opSet, "k", ext8, "value", 1) + binReq(opGetK, "k", "", "", 2),
		want: []result{breq(33, opSet, "k", 1), skip(l7.DirRequest, 5), breq(25, opGetK, "k", 2), more(24)}},
	{name: "binary quiet batch", dir: l7.DirRequest, in: binReq(opGetKQ, "a", "", "", 1) + binReq(opGetKQ, "b", "", "", 2) + binReq(opNoop, "", "", "", 3),
		want: []result{breq(25, opGetKQ, "a", 1), breq(25, opGetKQ, "b", 2), breq(24, opNoop, "", 3), more(24)}},

	{name: "get answer", dir: l7.DirReply, in: "VALUE a 0 2\r\nhi\r\nVALUE b 3 0 9\r\n\r\nEND\r\n",
		want: []result{reply(13, true, false), skip(l7.DirReply, 4), reply(15, true, false), skip(l7.DirReply, 2), reply(5, false, false), more(1)}},
	{name: "value holding reply lines", dir: l7.DirReply, in: "VALUE a 0 5\r\nEND\r\n\r\nEND\r\n",
		want: []result{reply(13, true, false), skip(l7.DirReply, 7), reply(5, false, false), more(1)}},
	{name: "stats answer", dir: l7.DirReply, in: "STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n",
		want: []result{reply(12, true, false), reply(15, true, false), reply(5, false, false), more(1)}},
	{name: "va answer", dir: l7.DirReply, in: "VA 2 f5\r\nhi\r\nHD\r\n",
		want: []result{reply(9, true, false), skip(l7.DirReply, 2), reply(2, false, false), reply(4, false, false), more(1)}},
	{name: "empty va answer", dir: l7.DirReply, in: "VA 0\r\n\r\nMN\r\n",
		want: []result{reply(6, true, false), reply(2, false, false), reply(4, false, false), more(1)}},
	{name: "va without CRLF", dir: l7.DirReply, in: "VA 2\r\nhiXY", err: l7.ErrMalformed,
		want: []result{reply(6, true, false)}},
	{name: "watch", dir: l7.DirReply, in: "OK\r\nts=1 gid=1 type=item_get\nts=2 gid=2 type=item_get\n",
		want: []result{reply(4, false, false), skip(l7.DirReply, 50), more(1)}},
	{name: "binary value", dir: l7.DirReply, in: binRes(opGet, 0, "", ext4, "hello") + binRes(opNoop, 0, "", "", ""),
		want: []result{reply(24, true, false), skip(l7.DirReply, 8), reply(1, false, false), reply(24, false, false), more(24)}},
	{name: "binary one-byte body", dir: l7.DirReply, in: binRes(opVersion, 0, "", "", "1"),
		want: []result{reply(24, true, false), reply(1, false, false), more(24)}},
	{name: "binary error body", dir: l7.DirReply, in: binRes(opGet, 1, "", "", "Not found"),
		want: []result{reply(24, true, true), skip(l7.DirReply, 8), reply(1, false, true), more(24)}},
	{name: "binary quiet answers", dir: l7.DirReply, in: binRes(opGetKQ, 0, "k", ext4, "v") + binRes(opSetQ, 2, "", "", "exists") + binRes(opNoop, 0, "", "", ""),
		want: []result{reply(24, true, false), skip(l7.DirReply, 5), reply(1, true, false), reply(24, true, true), skip(l7.DirReply, 5), reply(1, true, true), reply(24, false, false), more(24)}},
	{name: "binary stat answer", dir: l7.DirReply, in: binRes(opStat, 0, "pid", "", "1") + binRes(opStat, 0, "", "", ""),
		want: []result{reply(24, true, false), skip(l7.DirReply, 3), reply(1, true, false), reply(24, false, false), more(24)}},
	{name: "text reply after binary", dir: l7.DirReply, in: binRes(opNoop, 0, "", "", "") + "END\r\n", err: l7.ErrMalformed,
		want: []result{reply(24, false, false)}},
}

func TestStreams(t *testing.T) {
	for _, c := range streamCases {
		t.Run(c.name, func(t *testing.T) {
			whole := wholeStream(t, c.dir, []byte(c.in), Limits{})
			got := normalize(whole)
			if c.err != nil {
				last := got[len(got)-1]
				if !errors.Is(last.Err, c.err) {
					t.Fatalf("whole stream ends with %v, want error %v", last, c.err)
				}
				got = got[:len(got)-1]
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("whole:\n%s", l7test.Diff(got, c.want))
			}
			checkSplits(t, c.dir, []byte(c.in), Limits{}, whole)
		})
	}
}

// isComplete reports whether in is a stream of complete messages: a fresh
// parser takes all of it and ends between messages.
func isComplete(t testing.TB, dir l7.Dir, in string) bool {
	t.Helper()
	p := NewParser()
	rs := stream(t, p, dir, []byte(in), []int{len(in)})
	st := p.req
	if dir == l7.DirReply {
		st = p.rep
	}
	taken := 0
	for _, r := range rs {
		taken += r.N
	}
	last := rs[len(rs)-1]
	return last.Err == nil && last.Op == l7.OpMore && taken-last.N == len(in) && st.body == 0 && !st.active
}

// complete returns the streams of complete messages among the cases of
// one direction.
func complete(t testing.TB, dir l7.Dir) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	cases := requestCases
	if dir == l7.DirReply {
		cases = replyCases
	}
	for _, c := range cases {
		if c.err == nil && c.lim == (Limits{}) && c.in != "" && isComplete(t, dir, c.in) {
			out[c.name] = []byte(c.in)
		}
	}
	for _, c := range streamCases {
		if c.dir == dir && c.err == nil && isComplete(t, dir, c.in) {
			out["stream "+c.name] = []byte(c.in)
		}
	}
	return out
}

// TestOneByteAtATime feeds each stream one byte at a time: the answers must
// be those of the whole stream (checkSplits also checks that no OpMore
// count overshoots the message it waits for).
func TestOneByteAtATime(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		for name, msg := range complete(t, dir) {
			t.Run(dir.String()+"/"+name, func(t *testing.T) {
				whole := wholeStream(t, dir, msg, Limits{})
				ends := make([]int, len(msg))
				for i := range ends {
					ends[i] = i + 1
				}
				got := stream(t, NewParser(), dir, msg, ends)
				if !slices.Equal(normalize(got), normalize(whole)) {
					t.Fatalf("fed one byte at a time:\n%s", l7test.Diff(normalize(got), normalize(whole)))
				}
				checkSplits(t, dir, msg, Limits{}, whole)
			})
		}
	}
}

// checkSplits feeds data to one parser, growing the input by one step at a
// time, as the proxy does, and compares with whole, the answers to the
// whole input (normalized: skips merged). Every OpMore must ask for no
// more than the message it waits for holds.
func checkSplits(t testing.TB, dir l7.Dir, data []byte, lim Limits, whole []result) {
	t.Helper()
	// ends[c] is how far the message (or value and its tail) starting at
	// offset c of the whole parse reaches, where that is known.
	ends := map[int]int{}
	off := 0
	for i, w := range whole {
		if w.Err != nil || w.Op == l7.OpMore {
			break
		}
		end := off + w.N
		if w.Op == l7.OpSkip {
			switch next := whole[i+1]; {
			case next.Err != nil:
				end = -1 // the value's end is not known
			case next.Op == l7.OpFrame:
				end += next.N // a value and its tail frame
			case next.Op == l7.OpMore:
				end = len(data) + next.N // the rest of the value
			}
		}
		if end >= 0 {
			ends[off] = end
		}
		off += w.N
	}
	p := NewParserWithLimits(lim)
	step := 1 + len(data)/512 // bounds the work on large inputs
	var got []result
	c := 0
	for k := 0; ; k = min(k+step, len(data)) {
		last := k == len(data)
		for {
			r := parse(t, p, dir, data[c:k])
			if r.Err != nil {
				got = append(got, r)
				goto done
			}
			if r.Op == l7.OpMore {
				if e, ok := ends[c]; ok && k+r.N > e {
					t.Fatalf("%q at %d, input to %d: more %d overshoots the message's end (%d)", data, c, k, r.N, e)
				}
				if last {
					got = append(got, r)
				}
				break
			}
			got = append(got, r)
			c += r.N
		}
		if last {
			break
		}
	}
done:
	g, w := normalize(got), normalize(whole)
	if !slices.Equal(g, w) {
		t.Fatalf("%q in steps of %d:\n%s", data, step, l7test.Diff(g, w))
	}
}

// corpus returns a stream of every complete message of one direction's
// cases and the recorded files of that direction, one after another.
// Binary and text streams are kept apart: a connection speaks one.
// Recordings longer than maxRecording are left out.
func corpus(t *testing.T, dir l7.Dir, binaryForm bool, maxRecording int) []byte {
	t.Helper()
	magic := byte(magicRequest)
	ext := ".req"
	if dir == l7.DirReply {
		magic, ext = magicResponse, ".reply"
	}
	var b bytes.Buffer
	for _, msg := range sortedValues(complete(t, dir)) {
		if (msg[0] == magic) == binaryForm {
			b.Write(msg)
		}
	}
	for _, name := range l7test.Recordings(t, ext) {
		rec := l7test.ReadFile(t, name)
		if (rec[0] == magic) == binaryForm && len(rec) <= maxRecording {
			b.Write(rec)
		}
	}
	return b.Bytes()
}

// sortedValues returns m's values in the order of their keys.
func sortedValues(m map[string][]byte) [][]byte {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([][]byte, len(names))
	for i, k := range names {
		out[i] = m[k]
	}
	return out
}

// TestEverySplitPoint cuts long streams in two at every offset: the answers
// must be those of the uncut stream.
func TestEverySplitPoint(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		for _, bin := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/binary=%v", dir, bin), func(t *testing.T) {
				// Every split point of the long recordings would take
				// minutes; TestRandomChunks and the fuzz targets cut them.
				data := corpus(t, dir, bin, 1024)
				whole := wholeStream(t, dir, data, Limits{})
				l7test.CheckCorpus(t, whole, 50)
				l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, normalize(whole), normalize)
			})
		}
	}
}

// TestRandomChunks feeds the corpora in random chunks, many times.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		for _, bin := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/binary=%v", dir, bin), func(t *testing.T) {
				data := corpus(t, dir, bin, 1<<20)
				want := normalize(wholeStream(t, dir, data, Limits{}))
				l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, 60, 100, normalize)
			})
		}
	}
}

// recordedPair is a recording: the request stream and memcached's replies.
type recordedPair struct {
	name     string
	req, rep []byte
}

// recordedPairs pairs testdata/memcached-1.6.18-<name>.reply with the one
// testdata/<client>-<name>.req.
func recordedPairs(t testing.TB) []recordedPair {
	t.Helper()
	var out []recordedPair
	for _, rp := range l7test.Recordings(t, ".reply") {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(rp), "memcached-1.6.18-"), ".reply")
		var found []string
		for _, client := range []string{"libmemcached-1.1.4", "printf", "gen"} {
			if _, err := os.Stat(filepath.Join("testdata", client+"-"+name+".req")); err == nil {
				found = append(found, filepath.Join("testdata", client+"-"+name+".req"))
			}
		}
		if len(found) != 1 {
			t.Fatalf("%s: request files %v, want one", rp, found)
		}
		out = append(out, recordedPair{name: name, req: l7test.ReadFile(t, found[0]), rep: l7test.ReadFile(t, rp)})
	}
	return out
}

// counts returns the request frames that expect an answer (not NoReply),
// the quiet meta commands among the others, and the reply frames that
// complete an answer (not Partial).
func counts(reqs, reps []result) (expected, quietMeta, answers int) {
	for _, r := range reqs {
		switch {
		case r.Op != l7.OpFrame:
		case !r.NoReply:
			expected++
		case len(r.Verb) == 2 && r.Verb[0] == 'm':
			quietMeta++
		}
	}
	for _, r := range reps {
		if r.Op == l7.OpFrame && !r.Partial {
			answers++
		}
	}
	return expected, quietMeta, answers
}

// TestRecorded parses the bytes recorded from libmemcached 1.1.4's tools,
// printf and a binary packet generator against memcached 1.6.18 (see
// testdata/README.md): every request that expects an answer must get
// exactly one reply frame that is not Partial, as the proxy's reply
// counting assumes. Two recordings show what cannot be counted, where the
// frames are Unordered: quiet meta commands that were answered, and a
// command sent after watch, which memcached never reads.
func TestRecorded(t *testing.T) {
	extra := map[string]int{ // answers beyond the expected ones
		"meta-commands": 2,  // mg foo v q (a hit) and md foo q (NF)
		"watch":         -1, // get k1 after watch is never read
	}
	for _, pr := range recordedPairs(t) {
		t.Run(pr.name, func(t *testing.T) {
			reqs := wholeStream(t, l7.DirRequest, pr.req, Limits{})
			reps := wholeStream(t, l7.DirReply, pr.rep, Limits{})
			for _, rs := range [][]result{reqs, reps} {
				if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore {
					t.Fatalf("recording does not end on a message boundary: %v", last)
				}
			}
			expected, _, answers := counts(reqs, reps)
			if expected == 0 || answers != expected+extra[pr.name] {
				t.Fatalf("%d requests expect an answer (%+d known), %d answers:\n%v\n%v", expected, extra[pr.name], answers, reqs, reps)
			}
		})
	}
}

// TestRecordedDetails checks frames of the recordings in detail.
func TestRecordedDetails(t *testing.T) {
	frames := func(rs []result) []result {
		var out []result
		for _, r := range rs {
			if r.Op == l7.OpFrame {
				out = append(out, r)
			}
		}
		return out
	}
	t.Run("memcat binary get", func(t *testing.T) {
		rs := frames(wholeStream(t, l7.DirRequest, l7test.ReadFile(t, "testdata/libmemcached-1.1.4-memcat-binary-get.req"), Limits{}))
		// libmemcached writes its opaque in host byte order.
		want := []result{breq(36, opGetK, "greeting.txt", 1<<16), breq(33, opGetK, "small.txt", 2<<16), breq(31, opGetK, "missing", 3<<16), breq(24, opQuit, "", 4<<16)}
		if !slices.Equal(rs, want) {
			t.Fatalf("\n%s", l7test.Diff(rs, want))
		}
	})
	t.Run("memslap binary mget is a quiet batch", func(t *testing.T) {
		rs := frames(wholeStream(t, l7.DirRequest, l7test.ReadFile(t, "testdata/libmemcached-1.1.4-memslap-binary-mget.req"), Limits{}))
		var verbs []string
		for _, r := range rs {
			verbs = append(verbs, fmt.Sprintf("%s/%v", r.Verb, r.NoReply))
		}
		if got := strings.Join(verbs, " "); got != "getkq/true getkq/true noop/false quit/false" {
			t.Fatalf("frames %s", got)
		}
		reps := frames(wholeStream(t, l7.DirReply, l7test.ReadFile(t, "testdata/memcached-1.6.18-memslap-binary-mget.reply"), Limits{}))
		var shape []string
		for _, r := range reps {
			shape = append(shape, fmt.Sprintf("%v", r.Partial))
		}
		if got := strings.Join(shape, " "); got != "true true true true false false" {
			t.Fatalf("reply frames partial: %s", got)
		}
	})
	t.Run("text get multi", func(t *testing.T) {
		rs := frames(wholeStream(t, l7.DirRequest, l7test.ReadFile(t, "testdata/printf-text-get-multi-20.req"), Limits{}))
		got := rs[2]
		if got.Verb != "get" || !got.Overflow || got.Args != 21 || !strings.HasPrefix(got.Res, "key01 key02 ") || strings.Count(got.Res, " ") != 15 {
			t.Fatalf("get of 20 keys: %v", got)
		}
	})
	t.Run("meta commands", func(t *testing.T) {
		var quiet, broke []string
		p := NewParser()
		data := l7test.ReadFile(t, "testdata/printf-meta-commands.req")
		for off := 0; off < len(data); {
			var f l7.Frame
			op, n, err := p.Parse(l7.DirRequest, data[off:], &f)
			if err != nil || op == l7.OpMore {
				t.Fatalf("at %d: %v %v", off, op, err)
			}
			if op == l7.OpFrame && f.NoReply {
				quiet = append(quiet, string(f.Verb)+" "+string(f.Resource))
			}
			if op == l7.OpFrame && f.Unordered {
				broke = append(broke, string(f.Verb))
			}
			off += n
		}
		want := "mg missing,mg foo,ms bar,ms bar,ma cnt,md foo,md foo"
		if got := strings.Join(quiet, ","); got != want || len(broke) != len(quiet) {
			t.Fatalf("quiet %s (want %s), breaking pairing %v", got, want, broke)
		}
	})
}

// TestParserKeepsItsPlace shows that after OpMore a parser resumes where it
// stopped, that a shorter input starts the line over, and that the two
// directions keep separate places.
func TestParserKeepsItsPlace(t *testing.T) {
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, []byte("get aaaa")); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("get b\r\n")); r != req(7, "get", "b", 2) {
		t.Fatalf("after a shorter input: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("set k 0 0 3\r\n")); r != req(13, "set", "k", 5) {
		t.Fatalf("set: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("VALUE x 0 1\r\n")); r != reply(13, true, false) {
		t.Fatalf("reply in the middle of a value: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("ab")); r != skip(l7.DirRequest, 2) {
		t.Fatalf("value: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("y\r\nEND\r\n")); r != skip(l7.DirReply, 3) {
		t.Fatalf("reply value: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("c\r\nget z\r\n")); r != skip(l7.DirRequest, 3) {
		t.Fatalf("value end: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("get z\r\n")); r != req(7, "get", "z", 2) {
		t.Fatalf("after the value: %v", r)
	}
}

// TestErrorsReset checks that a parser can be used again after an error
// (the proxy closes the connection, but the parser must not carry state).
func TestErrorsReset(t *testing.T) {
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, []byte(binReq(opGet, "", "", "", 1))); r.Err == nil {
		t.Fatalf("want an error, got %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte("get a\r\n")); r != req(7, "get", "a", 2) {
		t.Fatalf("after an error: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("VA 2\r\nabXY")); r != reply(6, true, false) {
		t.Fatalf("va: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("abXY")); r != skip(l7.DirReply, 2) {
		t.Fatalf("va data: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("XY")); r.Err == nil {
		t.Fatalf("want an error, got %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("END\r\n")); r != reply(5, false, false) {
		t.Fatalf("after an error: %v", r)
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, []byte("mn\r\n"), nil); op != l7.OpFrame || n != 4 || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), []byte("mn\r\n"), &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirReply, []byte("END\r\n")); r != reply(5, false, false) {
		t.Fatalf("zero Parser: %v", r)
	}
	if zero.Limits() != DefaultLimits() {
		t.Fatalf("zero Parser limits %+v", zero.Limits())
	}
}

func TestFrameViewsCannotGrowIntoTheInput(t *testing.T) {
	in := []byte("get foo bar\r\n")
	var f l7.Frame
	if _, _, err := NewParser().Parse(l7.DirRequest, in, &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Verb, 'X')
	_ = append(f.Resource, 'X')
	_ = append(f.More[0], 'X')
	if string(in) != "get foo bar\r\n" {
		t.Fatalf("appending to a view changed the input: %q", in)
	}
	bin := NewParser()
	if _, _, err := bin.Parse(l7.DirRequest, []byte(binReq(opGet, "k", "", "", 1)), &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Verb, 'X')
	if string(opcodes[opGet].name) != "get" {
		t.Fatal("appending to a binary verb changed the opcode table")
	}
}

func TestLimits(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Fatalf("zero limits: %v", err)
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	bad := Limits{MaxLine: -1, MaxItem: CapMaxItem + 1}
	err := bad.Validate()
	for _, field := range []string{"MaxLine", "MaxItem"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Fatalf("Validate(%+v) = %v, want it to name %s", bad, err, field)
		}
	}
	if err := (Limits{MaxLine: 10}).Validate(); err != nil {
		t.Fatalf("valid limits: %v", err)
	}
	got := NewParserWithLimits(bad).Limits()
	want := Limits{MaxLine: DefaultMaxLine, MaxItem: CapMaxItem}
	if got != want {
		t.Fatalf("NewParserWithLimits(%+v).Limits() = %+v, want %+v", bad, got, want)
	}
	if got := NewParser().Limits(); got != DefaultLimits() {
		t.Fatalf("NewParser().Limits() = %+v", got)
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "memcached" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.CloseOnDeny || pr.ServerFirst {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if pr.MaxMessage < DefaultMaxLine+2 {
		t.Fatalf("MaxMessage %d cannot hold a line", pr.MaxMessage)
	}
	if _, ok := pr.New().(*Parser); !ok {
		t.Fatalf("New() returned %T", pr.New())
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

// frameOf parses the first request of in.
func frameOf(t *testing.T, in string) *l7.Frame {
	t.Helper()
	var f l7.Frame
	if op, _, err := NewParser().Parse(l7.DirRequest, []byte(in), &f); op != l7.OpFrame || err != nil {
		t.Fatalf("%q: %v %v", in, op, err)
	}
	return &f
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"get", frameOf(t, "get secret\r\n"), "no_rule"},
		{"flush_all", frameOf(t, "flush_all\r\n"), "l7_not_allowed"},
		{"set noreply gets nothing", frameOf(t, "set k 0 0 1 noreply\r\n"), "l7_not_allowed"},
		{"quit gets nothing", frameOf(t, "quit\r\n"), "l7_not_allowed"},
		{"quiet meta gets the error", frameOf(t, "mg k v q\r\n"), "l7_not_allowed"},
		{"meta", frameOf(t, "ms k 1\r\n"), ""},
		{"nil frame", nil, "malformed"},
		{"control bytes stripped", frameOf(t, "get k\r\n"), "a\r\nb\x00c\x7fd\xffe"},
		{"long reason bounded", frameOf(t, "get k\r\n"), long},
		{"blank reason", frameOf(t, "get k\r\n"), " \r\n "},
		{"binary get", frameOf(t, binReq(opGet, "k", "", "", 0xdeadbeef)), "no_rule"},
		{"binary getkq", frameOf(t, binReq(opGetKQ, "k", "", "", 7)), ""},
		{"binary setq", frameOf(t, binReq(opSetQ, "k", ext8, "v", 1)), long},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if len(out) > maxDenyReply {
			t.Errorf("%s: %d bytes, more than %d", tt.name, len(out), maxDenyReply)
		}
		checkDenyReply(t, tt.f, out)
		prefix := []byte("prefix")
		if got := Deny(prefix, tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append: %q", tt.name, got)
		}
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, quoteBytes(out))
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

// quoteBytes quotes b byte by byte: printable ASCII as is, the rest as
// \xNN.
func quoteBytes(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c >= ' ' && c < 0x7f:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, "\\x%02x", c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// checkDenyReply checks that out is the reply memcached's client expects
// for f: nothing for noreply text commands, one SERVER_ERROR line, or a
// binary response with f's opcode and opaque that the reply parser frames
// as one answer.
func checkDenyReply(t testing.TB, f *l7.Frame, out []byte) {
	t.Helper()
	if f != nil && f.Args&argsBinary != 0 {
		if len(out) < headerLen {
			t.Fatalf("binary deny %q too short", out)
		}
		h := readHeader(out)
		if h.magic != magicResponse || h.op != byte(f.Args>>32) || h.opaque != uint32(f.Args) || h.status != DenyStatus ||
			h.keylen != 0 || h.extlen != 0 || h.bodylen != len(out)-headerLen || out[5] != 0 {
			t.Fatalf("binary deny %q for opcode %#x opaque %#x", out, byte(f.Args>>32), uint32(f.Args))
		}
		rs := normalize(wholeStream(t, l7.DirReply, out, Limits{}))
		if n := len(rs); n != 4 || rs[n-2].Partial != opcodes[h.op].quiet || !rs[n-2].IsErr || rs[n-1] != more(headerLen) {
			t.Fatalf("binary deny %q parses as %v", out, rs)
		}
		return
	}
	if f != nil && f.NoReply && !isMeta(f.Verb) {
		if len(out) != 0 {
			t.Fatalf("deny of a noreply request: %q", out)
		}
		return
	}
	if !bytes.HasPrefix(out, []byte("SERVER_ERROR access denied")) || !bytes.HasSuffix(out, []byte("\r\n")) ||
		bytes.ContainsAny(out[:len(out)-2], "\r\n") {
		t.Fatalf("%q is not one SERVER_ERROR line", out)
	}
	if rs := wholeStream(t, l7.DirReply, out, Limits{}); len(rs) != 2 || rs[0] != reply(len(out), false, true) {
		t.Fatalf("%q parses as %v", out, rs)
	}
}

func TestUnordered(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"mg k v q\r\n", true},
		{"ms k 1 q\r\n", true},
		{"md k q\r\n", true},
		{"ma k q\r\n", true},
		{"watch\r\n", true},
		{"refresh_certs noreply\r\n", true},
		{"refresh_certs\r\n", false},
		{"mg k v\r\n", false},
		{"mg k q" + strings.Repeat(" v", 17) + "\r\n", false}, // answered CLIENT_ERROR
		{"mn\r\n", false},
		{"set k 0 0 1 noreply\r\n", false},
		{"get k\r\n", false},
		// Binary quiet opcodes stay ordered: their answers are Partial.
		{binReq(opGetKQ, "k", "", "", 1), false},
		{binReq(opSetQ, "k", ext8, "v", 1), false},
	}
	for _, tt := range tests {
		if got := frameOf(t, tt.in).Unordered; got != tt.want {
			t.Errorf("Unordered of %q = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"get", "get foo\r\n", true},
		{"set", "set k 0 0 1\r\nx\r\n", true},
		{"version", "version\r\n", true},
		{"stats", "stats\r\n", true},
		{"stats bare LF", "stats\n", true},
		{"stats args", "stats items\r\n", true},
		{"mg", "mg foo v\r\n", true},
		{"mn", "mn\r\n", true},
		{"flush_all", "flush_all\r\n", true},
		{"cache_memlimit", "cache_memlimit 100\r\n", true},
		{"binary get", binReq(opGet, "foo", "", "", 1), true},
		{"binary getkq", binReq(opGetKQ, "foo", "", "", 1), true},
		{"binary version", binReq(opVersion, "", "", "", 1), true},
		{"binary set", binReq(opSet, "k", ext8, "v", 1), true},
		{"get without key", "get\r\n", false},
		{"stats CR only", "stats\r", false},
		{"name without separator yet", "get", false},
		{"upper case", "GET foo\r\n", false},
		{"unknown word", "hello world\r\n", false},
		{"leading space", " get foo\r\n", false},
		{"empty", "", false},
		{"HTTP lower case method", "get / HTTP/1.1\r\n", false},
		{"HTTP GET", "GET / HTTP/1.1\r\nHost: x\r\n", false},
		{"redis multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", false},
		{"redis inline", "PING\r\n", false},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false},
		{"PostgreSQL startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", false},
		{"MySQL greeting", "\x4a\x00\x00\x00\x0a8.0.36\x00", false},
		{"binary header cut", binReq(opGet, "foo", "", "", 1)[:23], false},
		{"binary unknown opcode", binReq(0x3f, "", "", "", 1), false},
		{"binary response", binRes(opGet, 0, "", "", ""), false},
		{"binary bad shape", binReq(opGet, "foo", ext4, "", 1), false},
		{"binary data type", string(append([]byte(binReq(opGet, "k", "", "", 1)[:5]), append([]byte{1}, binReq(opGet, "k", "", "", 1)[6:]...)...)), false},
		// A MongoDB OP_MSG of 384 bytes starts 0x80 0x01: its header is no
		// valid memcached set.
		{"MongoDB message of 384 bytes", "\x80\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff([]byte(tt.in)); got != tt.want {
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
	requests := map[string]string{
		"get multi":  "get a b c d e f g h i j k l m n o p q r s\r\n",
		"set":        "set k 0 0 5 noreply\r\nhello\r\n",
		"meta":       "mg Zm9vYmFy b v q\r\n",
		"ms":         "ms k 2 T1\r\nhi\r\n",
		"binary set": binReq(opSet, "k", ext8, "value", 1),
		"incomplete": "get aaaaaaaaaaaaaaa",
	}
	replies := map[string]string{
		"values":     "VALUE a 0 2\r\nhi\r\nVALUE b 0 2 9\r\nho\r\nEND\r\n",
		"va":         "VA 2 f1\r\nhi\r\n",
		"stats":      string(l7test.ReadFile(t, "testdata/memcached-1.6.18-memstat-text.reply")),
		"binary":     string(l7test.ReadFile(t, "testdata/memcached-1.6.18-binary-misc.reply")),
		"incomplete": "STAT pid 12",
	}
	var f l7.Frame
	for dir, set := range map[l7.Dir]map[string]string{l7.DirRequest: requests, l7.DirReply: replies} {
		for name, in := range set {
			data := []byte(in)
			p := NewParser()
			if n := testing.AllocsPerRun(100, func() {
				// A prefix, then the whole stream: covers resuming.
				p.Parse(dir, data[:len(data)/2], &f)
				for rest := data; len(rest) > 0; {
					op, n, err := p.Parse(dir, rest, &f)
					if err != nil || op == l7.OpMore {
						break
					}
					rest = rest[n:]
				}
			}); n != 0 {
				t.Errorf("%v %s: %v allocations per stream, want 0", dir, name, n)
			}
		}
	}
	p := NewParser()
	mn := []byte("mn\r\n")
	if n := testing.AllocsPerRun(100, func() { p.Parse(l7.DirRequest, mn, nil) }); n != 0 {
		t.Errorf("Parse with a nil frame: %v allocations", n)
	}
	buf := make([]byte, 0, 512)
	for _, in := range []string{"get k\r\n", binReq(opGetKQ, "k", "", "", 1)} {
		deny := frameOf(t, in)
		if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], deny, "no_rule") }); n != 0 {
			t.Errorf("Deny(%q): %v allocations", in, n)
		}
	}
	for _, in := range []string{"get foo\r\n", binReq(opGet, "k", "", "", 1)} {
		sniffed := []byte(in)
		if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
			t.Errorf("Sniff(%q): %v allocations", in, n)
		}
	}
}

func benchStream(b *testing.B, dir l7.Dir, data []byte, frames int) {
	b.Helper()
	p := NewParser()
	var f l7.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		got := 0
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame && (dir == l7.DirRequest || !f.Partial) {
				got++
			}
			rest = rest[n:]
		}
		if got != frames {
			b.Fatalf("%d frames, want %d", got, frames)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
}

func BenchmarkParseRequest(b *testing.B) {
	var pipeline []byte
	for i := range 8 {
		pipeline = fmt.Appendf(pipeline, "set key:%d 0 0 5\r\nvalue\r\nget key:%d\r\n", i, i)
	}
	var binPipeline []byte
	for i := range 8 {
		binPipeline = append(binPipeline, binReq(opGetKQ, fmt.Sprintf("key:%d", i), "", "", uint32(i))...)
	}
	binPipeline = append(binPipeline, binReq(opNoop, "", "", "", 9)...)
	b.Run("get", func(b *testing.B) { benchStream(b, l7.DirRequest, []byte("get key:1\r\n"), 1) })
	b.Run("get-16-keys", func(b *testing.B) {
		benchStream(b, l7.DirRequest, []byte("get "+strings.TrimSpace(strings.Repeat("key:12345 ", 16))+"\r\n"), 1)
	})
	b.Run("set-1KiB", func(b *testing.B) {
		benchStream(b, l7.DirRequest, []byte("set key:1 0 0 1024\r\n"+strings.Repeat("v", 1024)+"\r\n"), 1)
	})
	b.Run("pipeline-16", func(b *testing.B) { benchStream(b, l7.DirRequest, pipeline, 16) })
	b.Run("meta-mg", func(b *testing.B) { benchStream(b, l7.DirRequest, []byte("mg key:1 v f t q\r\n"), 1) })
	b.Run("binary-getkq-batch", func(b *testing.B) { benchStream(b, l7.DirRequest, binPipeline, 9) })
}

func BenchmarkParseReply(b *testing.B) {
	for _, form := range []string{"text", "binary"} {
		var data []byte
		frames := 0
		for _, pr := range recordedPairs(b) {
			if (pr.rep[0] == magicResponse) != (form == "binary") {
				continue
			}
			data = append(data, pr.rep...)
			for _, r := range wholeStream(b, l7.DirReply, pr.rep, Limits{}) {
				if r.Op == l7.OpFrame && !r.Partial {
					frames++
				}
			}
		}
		b.Run("recorded-"+form, func(b *testing.B) { benchStream(b, l7.DirReply, data, frames) })
	}
	b.Run("value-1KiB", func(b *testing.B) {
		benchStream(b, l7.DirReply, []byte("VALUE key:1 0 1024\r\n"+strings.Repeat("v", 1024)+"\r\nEND\r\n"), 1)
	})
	b.Run("binary-value-1KiB", func(b *testing.B) {
		benchStream(b, l7.DirReply, []byte(binRes(opGet, 0, "", ext4, strings.Repeat("v", 1024))), 1)
	})
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 512)
	for _, tc := range []struct{ name, in string }{{"text", "get k\r\n"}, {"binary", binReq(opGet, "k", "", "", 1)}} {
		var f l7.Frame
		if _, _, err := NewParser().Parse(l7.DirRequest, []byte(tc.in), &f); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = Deny(buf[:0], &f, "l7_not_allowed")
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkSniff(b *testing.B) {
	for _, tc := range []struct{ name, in string }{{"text", "get foo\r\n"}, {"binary", binReq(opGet, "k", "", "", 1)}, {"other", "GET / HTTP/1.1\r\n"}} {
		data := []byte(tc.in)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				Sniff(data)
			}
		})
	}
}
