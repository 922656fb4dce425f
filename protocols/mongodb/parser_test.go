package mongodb

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
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into strings.
type result struct {
	Op                    l7.Op
	N                     int
	Err                   error
	Dir                   l7.Dir
	Verb, Resource, Aux   string
	Args                  int
	IsErr, NoReply, Parti bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	if r.Op == l7.OpMore {
		return fmt.Sprintf("more %d", r.N)
	}
	return fmt.Sprintf("%v %d {%v verb=%q res=%q aux=%q args=%#x err=%v noreply=%v partial=%v}",
		r.Op, r.N, r.Dir, r.Verb, r.Resource, r.Aux, r.Args, r.IsErr, r.NoReply, r.Parti)
}

func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	l7test.Check{ViewOK: viewOK}.Answer(t, dir, data, op, n, err, &f)
	switch {
	case err != nil:
		return result{Err: err}
	case op == l7.OpMore:
		return result{Op: op, N: n}
	}
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Resource: string(f.Resource), Aux: string(f.Aux),
		Args: f.Args, IsErr: f.Err, NoReply: f.NoReply, Parti: f.Partial}
}

// viewOK reports whether v is a view of the message msg or one of the
// parser's constant verbs.
func viewOK(_ string, msg, v []byte) bool {
	return l7test.Within(msg, v) || bytes.Equal(v, verbCompressed) || bytes.Equal(v, verbOpQuery)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

// stream parses data arriving in chunks ending at ends, as the proxy does.
func stream(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int) []result {
	t.Helper()
	return l7test.Stream(t, parser(p, dir), data, ends)
}

func wholeStream(t testing.TB, dir l7.Dir, data []byte, lim Limits) []result {
	t.Helper()
	return stream(t, NewParserWithLimits(lim), dir, data, []int{len(data)})
}

// normalize merges consecutive skips, whose sizes depend on the chunks.
func normalize(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.Op == l7.OpSkip && r.Err == nil && len(out) > 0 && out[len(out)-1].Op == l7.OpSkip {
			out[len(out)-1].N += r.N
			continue
		}
		out = append(out, r)
	}
	return out
}

// Message builders.

func doc(d bson.D) string {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func header(n, id, to int, op uint32) string {
	b := binary.LittleEndian.AppendUint32(nil, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(id))
	b = binary.LittleEndian.AppendUint32(b, uint32(to))
	b = binary.LittleEndian.AppendUint32(b, op)
	return string(b)
}

func u32(v uint32) string { return string(binary.LittleEndian.AppendUint32(nil, v)) }

// opMsg builds an OP_MSG request (to = 0) or reply with the sections.
func opMsg(id, to int, flags uint32, sections ...string) string {
	body := u32(flags) + strings.Join(sections, "")
	if flags&FlagChecksumPresent != 0 {
		body += "CRC!"
	}
	return header(16+len(body), id, to, OpMsg) + body
}

func kind0(d string) string { return "\x00" + d }

func kind1(id string, docs ...string) string {
	rest := id + "\x00" + strings.Join(docs, "")
	return "\x01" + u32(uint32(4+len(rest))) + rest
}

func opQuery(id int, ns, q string) string {
	body := u32(0) + ns + "\x00" + u32(0) + u32(0xffffffff) + q
	return header(16+len(body), id, 0, OpQuery) + body
}

func opReply(id, to int, flags uint32, docs ...string) string {
	body := u32(flags) + strings.Repeat("\x00", 12) + u32(uint32(len(docs))) + strings.Join(docs, "")
	return header(16+len(body), id, to, OpReply) + body
}

var (
	findCmd   = doc(bson.D{{Key: "find", Value: "things"}, {Key: "filter", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "$db", Value: "shop"}})
	insertCmd = doc(bson.D{{Key: "insert", Value: "things"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "shop"}})
	helloCmd  = doc(bson.D{{Key: "hello", Value: int32(1)}, {Key: "$db", Value: "admin"}})
	getMore   = doc(bson.D{{Key: "getMore", Value: int64(42)}, {Key: "collection", Value: "things"}, {Key: "$db", Value: "shop"}})
	okDoc     = doc(bson.D{{Key: "ok", Value: 1.0}})
	errDoc    = doc(bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "no"}, {Key: "code", Value: int32(13)}})
	errInt    = doc(bson.D{{Key: "n", Value: int32(0)}, {Key: "ok", Value: int32(0)}})
	allTypes  = doc(bson.D{{Key: "count", Value: "things"}, {Key: "d", Value: 1.5}, {Key: "s", Value: "x"},
		{Key: "o", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "a", Value: bson.A{1, "b"}}, {Key: "bin", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2}}},
		{Key: "u", Value: bson.Undefined{}}, {Key: "oid", Value: bson.ObjectID{1}}, {Key: "b", Value: true}, {Key: "t", Value: bson.DateTime(1)},
		{Key: "null", Value: nil}, {Key: "re", Value: bson.Regex{Pattern: "a.*", Options: "i"}}, {Key: "ptr", Value: bson.DBPointer{DB: "x", Pointer: bson.ObjectID{2}}},
		{Key: "js", Value: bson.JavaScript("f()")}, {Key: "sym", Value: bson.Symbol("s")},
		{Key: "jsws", Value: bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "v", Value: 1}}}},
		{Key: "i", Value: int32(1)}, {Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "l", Value: int64(3)},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}}, {Key: "$db", Value: "shop"}})
)

func req(n int, verb, res, aux string, args int) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Resource: res, Aux: aux, Args: args}
}

func rep(n int, isErr, partial bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, IsErr: isErr, Parti: partial}
}

func skip(dir l7.Dir, n int) result { return result{Op: l7.OpSkip, N: n, Dir: dir} }

func more(n int) result { return result{Op: l7.OpMore, N: n} }

func noReply(r result) result { r.NoReply = true; return r }

type streamCase struct {
	name string
	dir  l7.Dir
	in   string
	lim  Limits
	want []result // normalized, ending with the final OpMore, or without the final error
	err  error
}

var cases = []streamCase{
	// Requests.
	{name: "find", dir: l7.DirRequest, in: opMsg(7, 0, 0, kind0(findCmd)),
		want: []result{req(21+len(findCmd), "find", "things", "shop", 7), more(16)}},
	{name: "hello", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(helloCmd)),
		want: []result{req(21+len(helloCmd), "hello", "", "admin", 1), more(16)}},
	{name: "insert with a document sequence", dir: l7.DirRequest, in: opMsg(8, 0, 0, kind0(insertCmd), kind1("documents", okDoc, okDoc)),
		want: []result{req(21+len(insertCmd), "insert", "things", "shop", 8), skip(l7.DirRequest, 15+2*len(okDoc)), more(16)}},
	{name: "sequence before the body", dir: l7.DirRequest, in: opMsg(9, 0, 0, kind1("documents", okDoc), kind0(insertCmd)),
		want: []result{req(20+15+len(okDoc)+1+len(insertCmd), "insert", "things", "shop", 9), more(16)}},
	{name: "unacknowledged insert", dir: l7.DirRequest, in: opMsg(10, 0, FlagMoreToCome, kind0(insertCmd), kind1("documents", okDoc)),
		want: []result{noReply(req(21+len(insertCmd), "insert", "things", "shop", 10)), skip(l7.DirRequest, 15+len(okDoc)), more(16)}},
	{name: "checksum", dir: l7.DirRequest, in: opMsg(11, 0, FlagChecksumPresent, kind0(findCmd)),
		want: []result{req(21+len(findCmd), "find", "things", "shop", 11), skip(l7.DirRequest, 4), more(16)}},
	{name: "exhaust allowed", dir: l7.DirRequest, in: opMsg(12, 0, FlagExhaustAllowed, kind0(getMore)),
		want: []result{req(21+len(getMore), "getMore", "things", "shop", 12), more(16)}},
	{name: "every BSON type", dir: l7.DirRequest, in: opMsg(13, 0, 0, kind0(allTypes)),
		want: []result{req(21+len(allTypes), "count", "things", "shop", 13), more(16)}},
	{name: "negative request id", dir: l7.DirRequest, in: opMsg(-2, 0, 0, kind0(helloCmd)),
		want: []result{req(21+len(helloCmd), "hello", "", "admin", 0xfffffffe), more(16)}},
	{name: "legacy isMaster", dir: l7.DirRequest, in: opQuery(3, "admin.$cmd", doc(bson.D{{Key: "isMaster", Value: 1}})),
		want: []result{req(16+4+11+8+len(doc(bson.D{{Key: "isMaster", Value: 1}}))+0, "isMaster", "", "admin", 3|ArgsOpQuery), more(16)}},
	{name: "legacy wrapped command", dir: l7.DirRequest, in: opQuery(4, "admin.$cmd", doc(bson.D{{Key: "$query", Value: bson.D{{Key: "hello", Value: 1}}}, {Key: "$readPreference", Value: bson.D{}}})),
		want: []result{req(16+4+11+8+len(doc(bson.D{{Key: "$query", Value: bson.D{{Key: "hello", Value: 1}}}, {Key: "$readPreference", Value: bson.D{}}})), "hello", "", "admin", 4|ArgsOpQuery), more(16)}},
	{name: "legacy query on a collection", dir: l7.DirRequest, in: opQuery(5, "shop.things", okDoc+okDoc),
		want: []result{req(16+4+12+8+len(okDoc), "OP_QUERY", "things", "shop", 5|ArgsOpQuery), skip(l7.DirRequest, len(okDoc)), more(16)}},
	{name: "compressed", dir: l7.DirRequest, in: header(16+9+3, 6, 0, OpCompressed) + u32(OpMsg) + u32(100) + "\x01abc",
		want: []result{req(25, "COMPRESSED", "", "", 6), skip(l7.DirRequest, 3), more(16)}},
	{name: "pipeline", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(findCmd)) + opMsg(2, 0, 0, kind0(helloCmd)),
		want: []result{req(21+len(findCmd), "find", "things", "shop", 1), req(21+len(helloCmd), "hello", "", "admin", 2), more(16)}},
	{name: "incomplete header", dir: l7.DirRequest, in: "\x40\x00\x00", want: []result{more(13)}},
	{name: "incomplete body", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(findCmd))[:30],
		want: []result{more(21 + len(findCmd) - 30)}},

	// Malformed and over limits.
	{name: "length below the header", dir: l7.DirRequest, in: header(15, 1, 0, OpMsg), err: l7.ErrMalformed},
	{name: "negative length", dir: l7.DirRequest, in: header(-1, 1, 0, OpMsg), err: l7.ErrMalformed},
	{name: "length over the limit", dir: l7.DirRequest, in: header(DefaultMaxMessage+1, 1, 0, OpMsg), err: l7.ErrTooLong},
	{name: "legacy insert opcode", dir: l7.DirRequest, in: header(16, 1, 0, 2002), err: l7.ErrMalformed},
	{name: "reply opcode as a request", dir: l7.DirRequest, in: opReply(1, 0, 0, okDoc), err: l7.ErrMalformed},
	{name: "unknown required flag", dir: l7.DirRequest, in: opMsg(1, 0, 1<<3, kind0(findCmd)), err: l7.ErrMalformed},
	{name: "no body section", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind1("documents", okDoc)), err: l7.ErrMalformed},
	{name: "unknown section kind", dir: l7.DirRequest, in: opMsg(1, 0, 0, "\x02"+okDoc), err: l7.ErrMalformed},
	{name: "body larger than the message", dir: l7.DirRequest, in: opMsg(1, 0, 0, "\x00"+u32(100)+"\x00"), err: l7.ErrMalformed},
	{name: "body size below 5", dir: l7.DirRequest, in: opMsg(1, 0, 0, "\x00"+u32(4)+"\x00"), err: l7.ErrMalformed},
	{name: "empty command", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x05\x00\x00\x00\x00")), err: l7.ErrMalformed},
	{name: "empty command name", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(doc(bson.D{{Key: "", Value: 1}}))), err: l7.ErrMalformed},
	{name: "document not terminated", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x06\x00\x00\x00\x0a\x01")), err: l7.ErrMalformed},
	{name: "unknown BSON type", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x08\x00\x00\x00\x20a\x00\x00")), err: l7.ErrMalformed},
	{name: "string past the document", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x0f\x00\x00\x00\x02a\x00\x40\x00\x00\x00xy\x00\x00")), err: l7.ErrMalformed},
	{name: "string without NUL", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x0f\x00\x00\x00\x02a\x00\x03\x00\x00\x00xyz\x00")), err: l7.ErrMalformed},
	{name: "key without NUL", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0("\x08\x00\x00\x00\x0aab\x00")), err: l7.ErrMalformed},
	{name: "command name too long", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(doc(bson.D{{Key: strings.Repeat("a", 65), Value: 1}}))), err: l7.ErrTooLong},
	{name: "command name at the limit", dir: l7.DirRequest, in: opMsg(1, 0, 0, kind0(doc(bson.D{{Key: strings.Repeat("a", 64), Value: 1}}))),
		want: []result{req(21+len(doc(bson.D{{Key: strings.Repeat("a", 64), Value: 1}})), strings.Repeat("a", 64), "", "", 1), more(16)}},
	{name: "body over the frame limit", dir: l7.DirRequest, lim: Limits{MaxFrame: 64}, in: opMsg(1, 0, 0, kind0(allTypes)), err: l7.ErrTooLong},
	{name: "message over a small limit", dir: l7.DirRequest, lim: Limits{MaxMessage: 32}, in: opMsg(1, 0, 0, kind0(findCmd)), err: l7.ErrTooLong},
	{name: "legacy namespace without a dot", dir: l7.DirRequest, in: opQuery(1, "admin", okDoc), err: l7.ErrMalformed},
	{name: "legacy namespace too long", dir: l7.DirRequest, in: opQuery(1, "a."+strings.Repeat("b", MaxNamespace), okDoc), err: l7.ErrTooLong},
	{name: "compressed too short", dir: l7.DirRequest, in: header(20, 1, 0, OpCompressed), err: l7.ErrMalformed},

	// Replies.
	{name: "ok reply", dir: l7.DirReply, in: opMsg(2, 7, 0, kind0(okDoc)), want: []result{rep(21+len(okDoc), false, false), more(16)}},
	{name: "error reply", dir: l7.DirReply, in: opMsg(2, 7, 0, kind0(errDoc)), want: []result{rep(21+len(errDoc), true, false), more(16)}},
	{name: "error reply, int ok", dir: l7.DirReply, in: opMsg(2, 7, 0, kind0(errInt)), want: []result{rep(21+len(errInt), true, false), more(16)}},
	{name: "exhaust replies", dir: l7.DirReply, in: opMsg(2, 7, FlagMoreToCome, kind0(okDoc)) + opMsg(3, 2, 0, kind0(okDoc)),
		want: []result{rep(21+len(okDoc), false, true), rep(21+len(okDoc), false, false), more(16)}},
	{name: "reply with checksum", dir: l7.DirReply, in: opMsg(2, 7, FlagChecksumPresent, kind0(okDoc)), want: []result{rep(25+len(okDoc), false, false), more(16)}},
	{name: "legacy reply", dir: l7.DirReply, in: opReply(2, 3, 0, okDoc), want: []result{rep(36+len(okDoc), false, false), more(16)}},
	{name: "legacy query failure", dir: l7.DirReply, in: opReply(2, 3, 2, okDoc), want: []result{rep(36+len(okDoc), true, false), more(16)}},
	{name: "compressed reply", dir: l7.DirReply, in: header(28, 2, 3, OpCompressed) + u32(OpMsg) + u32(9) + "\x00xyz", want: []result{rep(28, false, false), more(16)}},
	{name: "large reply streamed", dir: l7.DirReply, lim: Limits{MaxFrame: 64}, in: opMsg(2, 7, 0, kind0(allTypes)),
		want: []result{rep(20, false, true), skip(l7.DirReply, len(allTypes)), rep(1, false, false), more(16)}},
	{name: "large exhaust reply streamed", dir: l7.DirReply, lim: Limits{MaxFrame: 64}, in: opMsg(2, 7, FlagMoreToCome, kind0(allTypes)),
		want: []result{rep(20, false, true), skip(l7.DirReply, len(allTypes)), rep(1, false, true), more(16)}},
	{name: "incomplete reply", dir: l7.DirReply, in: opMsg(2, 7, 0, kind0(okDoc))[:20], want: []result{more(1 + len(okDoc))}},
	{name: "reply with a bad body", dir: l7.DirReply, in: opMsg(2, 7, 0, kind0("\x06\x00\x00\x00\x0a\x01")), err: l7.ErrMalformed},
	{name: "reply opcode unknown", dir: l7.DirReply, in: header(16, 1, 0, OpQuery), err: l7.ErrMalformed},
	{name: "legacy reply too short", dir: l7.DirReply, in: header(20, 1, 0, OpReply) + u32(0), err: l7.ErrMalformed},
}

func TestParse(t *testing.T) {
	for _, c := range cases {
		t.Run(c.dir.String()+"/"+c.name, func(t *testing.T) {
			whole := wholeStream(t, c.dir, []byte(c.in), c.lim)
			got := normalize(whole)
			if c.err != nil {
				last := got[len(got)-1]
				if !errors.Is(last.Err, c.err) {
					t.Fatalf("stream ends with %v, want error %v", last, c.err)
				}
				got = got[:len(got)-1]
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("whole:\n%s", l7test.Diff(got, c.want))
			}
			checkSplits(t, c.dir, []byte(c.in), c.lim, whole)
		})
	}
}

// TestOneByteAtATime feeds each complete case one byte at a time.
func TestOneByteAtATime(t *testing.T) {
	for _, c := range cases {
		if c.err != nil {
			continue
		}
		t.Run(c.dir.String()+"/"+c.name, func(t *testing.T) {
			msg := []byte(c.in)
			whole := wholeStream(t, c.dir, msg, c.lim)
			ends := make([]int, len(msg))
			for i := range ends {
				ends[i] = i + 1
			}
			got := stream(t, NewParserWithLimits(c.lim), c.dir, msg, ends)
			if !slices.Equal(normalize(got), normalize(whole)) {
				t.Fatalf("one byte at a time:\n%s", l7test.Diff(normalize(got), normalize(whole)))
			}
		})
	}
}

// checkSplits feeds data growing step by step and compares with whole;
// no OpMore may ask past the end of the frame it waits for.
func checkSplits(t testing.TB, dir l7.Dir, data []byte, lim Limits, whole []result) {
	t.Helper()
	ends := map[int]int{}
	off := 0
	for _, w := range whole {
		if w.Err != nil || w.Op == l7.OpMore {
			break
		}
		ends[off] = off + w.N
		off += w.N
	}
	p := NewParserWithLimits(lim)
	step := 1 + len(data)/512
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
				if e, ok := ends[c]; ok && whole[0].Op != l7.OpSkip && k+r.N > e && !skipping(whole, c) {
					t.Fatalf("%q at %d, input to %d: more %d overshoots the frame's end (%d)", data, c, k, r.N, e)
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
	if g, w := normalize(got), normalize(whole); !slices.Equal(g, w) {
		t.Fatalf("%q in steps of %d:\n%s", data, step, l7test.Diff(g, w))
	}
}

// skipping reports whether offset c of the whole parse is inside a skip
// (where OpMore counts the rest of the message, beyond the skip's piece).
func skipping(whole []result, c int) bool {
	off := 0
	for _, w := range whole {
		if off == c {
			return w.Op == l7.OpSkip
		}
		off += w.N
	}
	return false
}

// corpus is every complete case of one direction (default limits) and the
// recordings of that direction, one after another.
func corpus(t testing.TB, dir l7.Dir) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, c := range cases {
		if c.dir == dir && c.err == nil && c.lim == (Limits{}) && c.want[len(c.want)-1] == more(16) {
			b.WriteString(c.in)
		}
	}
	ext := ".req"
	if dir == l7.DirReply {
		ext = ".reply"
	}
	for _, name := range l7test.Recordings(t, ext) {
		b.Write(l7test.ReadFile(t, name))
	}
	return b.Bytes()
}

// TestEverySplitPoint cuts the corpus in two at every offset.
func TestEverySplitPoint(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := corpus(t, dir)
			want := normalize(wholeStream(t, dir, data, Limits{}))
			if last := want[len(want)-1]; last != more(16) {
				t.Fatalf("corpus does not end on a message boundary: %v", last)
			}
			if len(want) < 20 {
				t.Fatalf("corpus holds only %d answers", len(want))
			}
			l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, normalize)
		})
	}
}

func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		data := corpus(t, dir)
		want := normalize(wholeStream(t, dir, data, Limits{}))
		t.Run(dir.String(), func(t *testing.T) {
			l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, 64, 200, normalize)
		})
	}
}

// TestRecorded parses the bytes the Go driver sent and the test responder
// answered (see testdata/README.md): request frames that expect a reply
// equal final reply frames, and the commands are named as expected.
func TestRecorded(t *testing.T) {
	var verbs []string
	for _, name := range l7test.Recordings(t, ".req") {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "go-driver-2.10-"), ".req")
		t.Run(base, func(t *testing.T) {
			reqs := wholeStream(t, l7.DirRequest, l7test.ReadFile(t, name), Limits{})
			reps := wholeStream(t, l7.DirReply, l7test.ReadFile(t, filepath.Join("testdata", "test-responder-"+base+".reply")), Limits{})
			for _, rs := range [][]result{reqs, reps} {
				if last := rs[len(rs)-1]; last != more(16) {
					t.Fatalf("recording does not end on a message boundary: %v", last)
				}
			}
			awaiting, final := 0, 0
			for _, r := range reqs {
				if r.Op == l7.OpFrame {
					verbs = append(verbs, r.Verb+"/"+r.Resource+"/"+r.Aux)
					if !r.NoReply {
						awaiting++
					}
				}
			}
			for _, r := range reps {
				if r.Op == l7.OpFrame && !r.Parti {
					final++
				}
			}
			if awaiting != final || awaiting == 0 {
				t.Fatalf("%d requests awaiting a reply, %d final replies:\n%v\n%v", awaiting, final, reqs, reps)
			}
		})
	}
	got := strings.Join(verbs, " ")
	for _, want := range []string{"isMaster//admin", "insert/things/shop", "insert/events/shop", "find/things/shop",
		"aggregate/things/shop", "listCollections//shop", "delete/things/shop", "drop/things/shop", "endSessions//admin"} {
		if !strings.Contains(got, want) {
			t.Errorf("recordings lack %s: %s", want, got)
		}
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	in := []byte(opMsg(1, 0, 0, kind0(helloCmd)))
	if op, n, err := p.Parse(l7.DirRequest, in, nil); op != l7.OpFrame || n != len(in) || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), in, &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirReply, []byte(opMsg(1, 1, 0, kind0(okDoc)))); r != rep(21+len(okDoc), false, false) {
		t.Fatalf("zero Parser: %v", r)
	}
	if zero.Limits() != DefaultLimits() || NewParserWithLimits(Limits{MaxMessage: -1, MaxFrame: 1 << 40}).Limits() != DefaultLimits() {
		t.Fatalf("limits: %+v", zero.Limits())
	}
}

func TestFrameViewsCannotGrowIntoTheInput(t *testing.T) {
	in := []byte(opMsg(1, 0, 0, kind0(findCmd)))
	orig := string(in)
	var f l7.Frame
	if _, _, err := NewParser().Parse(l7.DirRequest, in, &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Verb, 'X')
	_ = append(f.Resource, 'X')
	_ = append(f.Aux, 'X')
	if string(in) != orig {
		t.Fatal("appending to a view changed the input")
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "mongodb" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.MaxMessage != DefaultMaxFrame || pr.CloseOnDeny || pr.ServerFirst {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"drop", &l7.Frame{Verb: []byte("drop"), Resource: []byte("things"), Args: 26}, "no rule allows it"},
		{"negative request id", &l7.Frame{Verb: []byte("find"), Args: 0xfffffffe}, ""},
		{"legacy isMaster", &l7.Frame{Verb: []byte("isMaster"), Args: 3 | ArgsOpQuery}, "protect"},
		{"nil frame", nil, ""},
		{"control bytes stripped", &l7.Frame{Verb: []byte("dr\x00op\n")}, "a\r\nb\x00c\x7fd\xffe"},
		{"long texts bounded", &l7.Frame{Verb: []byte(long)}, long},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if len(out) > maxDenyReply {
			t.Errorf("%s: %d bytes", tt.name, len(out))
		}
		checkDenyReply(t, out, tt.f)
		if got := Deny([]byte("prefix"), tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append", tt.name)
		}
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, strconv.Quote(string(out)))
	}
	if out := Deny([]byte("x"), &l7.Frame{Verb: []byte("insert"), NoReply: true}, "r"); string(out) != "x" {
		t.Errorf("moreToCome request got a reply: %q", out)
	}
	path := filepath.Join("testdata", "deny.golden")
	if *update {
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Fatalf("Deny output differs from %s (go test -update to accept):\n got:\n%s\nwant:\n%s", path, golden.Bytes(), want)
	}
}

// checkDenyReply checks that out is one reply the parser frames as an
// error, answering f's request, whose document the driver's bson package
// reads as {ok: 0, errmsg, code: 13, codeName: "Unauthorized"}.
func checkDenyReply(t testing.TB, out []byte, f *l7.Frame) {
	t.Helper()
	if r := parse(t, NewParser(), l7.DirReply, out); r != rep(len(out), true, false) {
		t.Fatalf("%q parses as %v", out, r)
	}
	var want uint32
	if f != nil {
		want = uint32(f.Args)
	}
	if got := binary.LittleEndian.Uint32(out[8:]); got != want {
		t.Fatalf("responseTo %d, want %d", got, want)
	}
	d := out[21:]
	if binary.LittleEndian.Uint32(out[12:]) == OpReply {
		d = out[36:]
	}
	var m struct {
		OK       float64 `bson:"ok"`
		Errmsg   string  `bson:"errmsg"`
		Code     int32   `bson:"code"`
		CodeName string  `bson:"codeName"`
	}
	if err := bson.Unmarshal(d, &m); err != nil {
		t.Fatalf("%q: %v", d, err)
	}
	if m.OK != 0 || m.Code != 13 || m.CodeName != "Unauthorized" || !strings.HasPrefix(m.Errmsg, "bulkhead: ") {
		t.Fatalf("deny document %+v", m)
	}
	for _, c := range []byte(m.Errmsg) {
		if c < ' ' || c >= 0x7f {
			t.Fatalf("errmsg %q holds %#x", m.Errmsg, c)
		}
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"op_msg find", opMsg(1, 0, 0, kind0(findCmd)), true},
		{"op_msg exhaust", opMsg(1, 0, FlagExhaustAllowed, kind0(getMore)), true},
		{"op_query isMaster", opQuery(1, "admin.$cmd", okDoc), true},
		{"op_compressed", header(28, 1, 0, OpCompressed) + u32(OpMsg) + u32(9) + "\x00xyz", true},
		{"op_msg head only", opMsg(1, 0, 0, kind0(findCmd))[:25], true},
		{"too short", opMsg(1, 0, 0, kind0(findCmd))[:20], false},
		{"a reply", opMsg(1, 9, 0, kind0(okDoc)), false},
		{"op_msg sequence first", opMsg(1, 0, 0, kind1("documents", okDoc), kind0(insertCmd)), false},
		{"op_msg unknown flag", opMsg(1, 0, 1<<4, kind0(findCmd)), false},
		{"legacy opcode", header(40, 1, 0, 2002) + strings.Repeat("\x00", 24), false},
		{"huge length", header(DefaultMaxMessage+1, 1, 0, OpMsg) + strings.Repeat("\x00", 9), false},
		{"redis multibulk", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", false},
		{"redis inline", "PING\r\nPING\r\nPING\r\nPING\r\n", false},
		{"HTTP GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 32), false},
		{"memcached text", "get foo\r\nget bar\r\nget baz\r\n", false},
		{"memcached binary", "\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00" + strings.Repeat("\x00", 9), false},
		{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f" + strings.Repeat("\x00", 20), false},
		{"postgres startup message", "\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00x\x00\x00", false},
		{"mysql greeting", "\x4a\x00\x00\x00\x0a8.0.36\x00" + strings.Repeat("\x00", 20), false},
		{"kafka", "\x00\x00\x00\x20\x00\x12\x00\x03\x00\x00\x00\x01" + strings.Repeat("\x00", 20), false},
		{"empty", "", false},
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
	requests := []string{
		opMsg(1, 0, 0, kind0(findCmd)),
		opMsg(1, 0, 0, kind0(insertCmd), kind1("documents", okDoc)),
		opMsg(1, 0, 0, kind0(allTypes)),
		opQuery(1, "admin.$cmd", doc(bson.D{{Key: "isMaster", Value: 1}})),
		string(l7test.ReadFile(t, "testdata/go-driver-2.10-crud-conn2.req")),
	}
	replies := []string{
		opMsg(1, 1, 0, kind0(errDoc)),
		opReply(2, 3, 0, okDoc),
		string(l7test.ReadFile(t, "testdata/test-responder-crud-conn2.reply")),
	}
	var f l7.Frame
	for dir, set := range map[l7.Dir][]string{l7.DirRequest: requests, l7.DirReply: replies} {
		for i, in := range set {
			data := []byte(in)
			p := NewParser()
			if n := testing.AllocsPerRun(100, func() {
				p.Parse(dir, data[:len(data)/2], &f)
				for rest := data; len(rest) > 0; {
					op, n, err := p.Parse(dir, rest, &f)
					if err != nil || op == l7.OpMore {
						panic(fmt.Sprint(op, n, err))
					}
					rest = rest[n:]
				}
			}); n != 0 {
				t.Errorf("%v #%d: %v allocations", dir, i, n)
			}
		}
	}
	buf := make([]byte, 0, 1024)
	deny := &l7.Frame{Verb: []byte("drop"), Args: 5}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], deny, "no rule allows it") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	sniffed := []byte(requests[0])
	if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func benchStream(b *testing.B, dir l7.Dir, data []byte) {
	b.Helper()
	p := NewParser()
	var f l7.Frame
	frames := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame {
				frames++
			}
			rest = rest[n:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(frames, 1)), "ns/msg")
}

func BenchmarkParseRequest(b *testing.B) {
	b.Run("find", func(b *testing.B) { benchStream(b, l7.DirRequest, []byte(opMsg(1, 0, 0, kind0(findCmd)))) })
	b.Run("insert-1KiB", func(b *testing.B) {
		big := doc(bson.D{{Key: "v", Value: strings.Repeat("x", 1024)}})
		benchStream(b, l7.DirRequest, []byte(opMsg(1, 0, 0, kind0(insertCmd), kind1("documents", big))))
	})
	b.Run("driver-recording", func(b *testing.B) {
		benchStream(b, l7.DirRequest, l7test.ReadFile(b, "testdata/go-driver-2.10-crud-conn2.req"))
	})
}

func BenchmarkParseReply(b *testing.B) {
	b.Run("responder-recording", func(b *testing.B) {
		benchStream(b, l7.DirReply, l7test.ReadFile(b, "testdata/test-responder-crud-conn2.reply"))
	})
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 512)
	f := &l7.Frame{Verb: []byte("drop"), Args: 9}
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], f, "no rule allows it")
	}
	b.SetBytes(int64(len(buf)))
}
