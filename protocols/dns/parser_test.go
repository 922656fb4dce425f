package dns

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into strings, so that
// results compare with == and print readably.
type result struct {
	Op        l7.Op
	N         int
	Err       error
	Dir       l7.Dir
	Verb      string
	Resource  string
	Aux       string
	Args      int
	IsErr     bool
	Partial   bool
	Unordered bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	if r.Op == l7.OpMore {
		return fmt.Sprintf("more %d", r.N)
	}
	q, _ := QueryOf(&l7.Frame{Args: r.Args})
	return fmt.Sprintf("%v %d {%v verb=%q res=%q aux=%q args=%d %+v err=%v partial=%v unordered=%v}",
		r.Op, r.N, r.Dir, r.Verb, r.Resource, r.Aux, r.Args, q, r.IsErr, r.Partial, r.Unordered)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	if op == l7.OpMore {
		return result{Op: op, N: n}
	}
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Resource: string(f.Resource),
		Aux: string(f.Aux), Args: f.Args, IsErr: f.Err, Partial: f.Partial, Unordered: f.Unordered}
}

// parse runs one Parse call and checks what must hold for every answer.
func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	checkAnswer(t, dir, data, op, n, err, &f)
	return resultOf(op, n, err, &f)
}

// parseDatagram runs one ParseDatagram call and checks its answer.
func parseDatagram(t testing.TB, p *Parser, dir l7.Dir, msg []byte) result {
	t.Helper()
	var f l7.Frame
	err := p.ParseDatagram(dir, msg, &f)
	op := l7.OpFrame
	checkAnswer(t, dir, msg, op, len(msg), err, &f)
	return resultOf(op, len(msg), err, &f)
}

func checkAnswer(t testing.TB, dir l7.Dir, data []byte, op l7.Op, n int, err error, f *l7.Frame) {
	t.Helper()
	switch {
	case err != nil:
		if !errors.Is(err, l7.ErrMalformed) && !errors.Is(err, l7.ErrTooLong) {
			t.Fatalf("%q: error %v is neither ErrMalformed nor ErrTooLong", data, err)
		}
	case op == l7.OpMore:
		if n < 1 {
			t.Fatalf("%q: OpMore with n = %d, want >= 1", data, n)
		}
	case op == l7.OpFrame:
		if n < 1 || n > len(data) {
			t.Fatalf("%q: %v with n = %d, want 1..%d", data, op, n, len(data))
		}
		if f.Dir != dir {
			t.Fatalf("%q: frame dir %v, want %v", data, f.Dir, dir)
		}
		if len(f.Verb) > l7.MaxVerb || len(f.Resource) > 253 || len(f.Aux) > 16 {
			t.Fatalf("%q: verb %q, resource %q or aux %q too long", data, f.Verb, f.Resource, f.Aux)
		}
		for name, v := range map[string][]byte{"verb": f.Verb, "resource": f.Resource, "aux": f.Aux} {
			if len(v) > 0 && cap(v) != len(v) {
				t.Fatalf("%q: %s %q has room to grow (cap %d)", data, name, v, cap(v))
			}
			if within(data, v) {
				t.Fatalf("%q: %s %q is a view of the input, want the parser's scratch", data, name, v)
			}
		}
		if dir == l7.DirRequest {
			if _, ok := QueryOf(f); !ok || !f.Unordered {
				t.Fatalf("%q: request frame without a packed query (%d) or Unordered", data, f.Args)
			}
			if bytes.ContainsAny(f.Resource, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || bytes.HasSuffix(f.Resource, []byte(".")) {
				t.Fatalf("%q: resource %q not lower case without final dot", data, f.Resource)
			}
		} else if len(f.Verb)+len(f.Resource)+len(f.Aux) > 0 || f.Unordered {
			t.Fatalf("%q: reply frame with fields %+v", data, f)
		}
	default:
		t.Fatalf("%q: unexpected op %v", data, op)
	}
}

// within reports whether v is a non-empty sub-slice of data.
func within(data, v []byte) bool {
	if len(v) == 0 || len(data) == 0 {
		return false
	}
	d0 := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	v0 := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	return v0 >= d0 && v0 < d0+uintptr(len(data))
}

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

func stream(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int) []result {
	t.Helper()
	return l7test.Stream(t, parser(p, dir), data, ends)
}

func wholeStream(t testing.TB, dir l7.Dir, data []byte) []result {
	t.Helper()
	return stream(t, NewParser(), dir, data, []int{len(data)})
}

// Message builders (tests only: they allocate).

type opt func(*dnsmessage.Message)

func withEDNS(do bool) opt {
	return func(m *dnsmessage.Message) {
		var rh dnsmessage.ResourceHeader
		if err := rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, do); err != nil {
			panic(err)
		}
		m.Additionals = append(m.Additionals, dnsmessage.Resource{Header: rh, Body: &dnsmessage.OPTResource{}})
	}
}

func withOpcode(op dnsmessage.OpCode) opt { return func(m *dnsmessage.Message) { m.OpCode = op } }

func withFlags(rd, cd bool) opt {
	return func(m *dnsmessage.Message) { m.RecursionDesired, m.CheckingDisabled = rd, cd }
}

func withRCode(rc dnsmessage.RCode) opt { return func(m *dnsmessage.Message) { m.RCode = rc } }

func withAnswers(rs ...dnsmessage.Resource) opt {
	return func(m *dnsmessage.Message) { m.Answers = append(m.Answers, rs...) }
}

func withAuthorities(rs ...dnsmessage.Resource) opt {
	return func(m *dnsmessage.Message) { m.Authorities = append(m.Authorities, rs...) }
}

func withQuestions(qs ...dnsmessage.Question) opt {
	return func(m *dnsmessage.Message) { m.Questions = qs }
}

func question(name string, t dnsmessage.Type, c dnsmessage.Class) dnsmessage.Question {
	return dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: t, Class: c}
}

// message packs a DNS message: a query (response false) or response with
// the given ID and one question, RD set, then the options.
func message(response bool, id uint16, name string, t dnsmessage.Type, c dnsmessage.Class, opts ...opt) []byte {
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, Response: response, RecursionDesired: true, RecursionAvailable: response},
		Questions: []dnsmessage.Question{question(name, t, c)},
	}
	for _, o := range opts {
		o(&m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func query(id uint16, name string, t dnsmessage.Type, opts ...opt) []byte {
	return message(false, id, name, t, dnsmessage.ClassINET, opts...)
}

func response(id uint16, name string, t dnsmessage.Type, opts ...opt) []byte {
	return message(true, id, name, t, dnsmessage.ClassINET, opts...)
}

func rrA(name string, ttl uint32, a string) dnsmessage.Resource {
	ip := netip.MustParseAddr(a)
	h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl}
	if ip.Is4() {
		return dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: ip.As4()}}
	}
	return dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}}
}

func rrCNAME(name string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)},
	}
}

func rrTXT(name string, txt string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 60},
		Body:   &dnsmessage.TXTResource{TXT: []string{txt}},
	}
}

func rrSOA(zone string, serial uint32) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(zone), Class: dnsmessage.ClassINET, TTL: 600},
		Body: &dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns." + zone), MBox: dnsmessage.MustNewName("hostmaster." + zone),
			Serial: serial, Refresh: 1200, Retry: 180, Expire: 1209600, MinTTL: 600},
	}
}

// tcp prefixes each message with its 2-byte length.
func tcp(msgs ...[]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = append(out, byte(len(m)>>8), byte(len(m)))
		out = append(out, m...)
	}
	return out
}

// patch returns a copy of msg with the bytes at off replaced.
func patch(msg []byte, off int, b ...byte) []byte {
	out := slices.Clone(msg)
	copy(out[off:], b)
	return out
}

// header builds a raw 12-byte header.
func header(id, flags, qd, an, ns, ar uint16) []byte {
	return []byte{byte(id >> 8), byte(id), byte(flags >> 8), byte(flags), byte(qd >> 8), byte(qd),
		byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func args(q Query) int { return q.Args() }

func req(n int, verb, res, aux string, q Query) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Resource: res, Aux: aux, Args: args(q), Unordered: true}
}

// reqCase is a request case whose input is one message.
func reqCase(name string, msg []byte, verb, res, aux string, q Query) parseCase {
	return parseCase{name: name, in: tcp(msg), want: req(2+len(msg), verb, res, aux, q)}
}

func rep(n, answers int, isErr bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, Args: answers, IsErr: isErr}
}

func more(n int) result { return result{Op: l7.OpMore, N: n} }

// parseCase is one TCP input and the answer of a fresh parser.
type parseCase struct {
	name string
	in   []byte
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

func (c parseCase) check(t *testing.T, dir l7.Dir) {
	t.Helper()
	got := parse(t, NewParser(), dir, c.in)
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

const (
	tA     = dnsmessage.TypeA
	tAAAA  = dnsmessage.TypeAAAA
	tTXT   = dnsmessage.TypeTXT
	tMX    = dnsmessage.TypeMX
	tNS    = dnsmessage.TypeNS
	tSOA   = dnsmessage.TypeSOA
	tAXFR  = dnsmessage.TypeAXFR
	tIXFR  = typeIXFR
	tANY   = dnsmessage.TypeALL
	tHTTPS = dnsmessage.Type(65)
	in     = dnsmessage.ClassINET
)

// Messages used by several tests.
var (
	qA      = query(0x1234, "Example.COM.", tA)
	qAAAA   = query(7, "a.example.test.", tAAAA, withEDNS(false))
	qDNSSEC = query(8, "a.example.test.", tA, withEDNS(true), withFlags(true, true))
	qRoot   = query(9, ".", tNS, withFlags(false, false))
	qChaos  = message(false, 10, "version.bind.", tTXT, dnsmessage.ClassCHAOS)
	qIXFR   = query(11, "zone.test.", tIXFR, withAuthorities(rrSOA("zone.test.", 1)))
	rA      = response(0x1234, "Example.COM.", tA, withAnswers(rrA("example.com.", 300, "198.18.9.9")))
	rNX     = response(5, "nosuch.test.", tA, withRCode(dnsmessage.RCodeNameError), withAuthorities(rrSOA("test.", 3)))
	rNoQ    = func() []byte {
		m := response(6, "x.", tA, withRCode(dnsmessage.RCodeFormatError))
		return patch(m[:12], 4, 0, 0)
	}()
	rBadVers = func() []byte {
		var rh dnsmessage.ResourceHeader
		if err := rh.SetEDNS0(1232, dnsmessage.RCode(16), false); err != nil {
			panic(err)
		}
		return response(12, "a.test.", tA, func(m *dnsmessage.Message) {
			m.Additionals = append(m.Additionals, dnsmessage.Resource{Header: rh, Body: &dnsmessage.OPTResource{}})
		})
	}()
)

var requestCases = []parseCase{
	{name: "a, name lower-cased", in: tcp(qA), want: req(2+len(qA), "A", "example.com", "", Query{ID: 0x1234, RD: true, Type: 1, Class: 1})},
	{name: "aaaa with edns", in: tcp(qAAAA), want: req(2+len(qAAAA), "AAAA", "a.example.test", "", Query{ID: 7, RD: true, Type: 28, Class: 1, EDNS: true})},
	{name: "dnssec ok and cd", in: tcp(qDNSSEC), want: req(2+len(qDNSSEC), "A", "a.example.test", "", Query{ID: 8, RD: true, CD: true, Type: 1, Class: 1, EDNS: true, DO: true})},
	{name: "root", in: tcp(qRoot), want: req(2+len(qRoot), "NS", "", "", Query{ID: 9, Type: 2, Class: 1})},
	{name: "chaos class", in: tcp(qChaos), want: req(2+len(qChaos), "TXT", "version.bind", "CH", Query{ID: 10, RD: true, Type: 16, Class: 3})},
	reqCase("hesiod class", message(false, 1, "x.", tA, dnsmessage.ClassHESIOD), "A", "x", "HS", Query{ID: 1, RD: true, Type: 1, Class: 4}),
	reqCase("unnamed class", message(false, 1, "x.", tA, 1234), "A", "x", "CLASS1234", Query{ID: 1, RD: true, Type: 1, Class: 1234}),
	reqCase("any class", message(false, 1, "x.", tA, dnsmessage.ClassANY), "A", "x", "ANY", Query{ID: 1, RD: true, Type: 1, Class: 255}),
	reqCase("txt", query(1, "t.", tTXT), "TXT", "t", "", Query{ID: 1, RD: true, Type: 16, Class: 1}),
	reqCase("mx", query(1, "m.", tMX), "MX", "m", "", Query{ID: 1, RD: true, Type: 15, Class: 1}),
	reqCase("https", query(1, "h.", tHTTPS), "HTTPS", "h", "", Query{ID: 1, RD: true, Type: 65, Class: 1}),
	reqCase("any", query(1, "h.", tANY), "ANY", "h", "", Query{ID: 1, RD: true, Type: 255, Class: 1}),
	reqCase("unnamed type", query(1, "h.", 4660), "TYPE4660", "h", "", Query{ID: 1, RD: true, Type: 4660, Class: 1}),
	reqCase("type 65535", query(1, "h.", 65535), "TYPE65535", "h", "", Query{ID: 1, RD: true, Type: 65535, Class: 1}),
	reqCase("axfr", query(1, "zone.test.", tAXFR), "AXFR", "zone.test", "", Query{ID: 1, RD: true, Type: 252, Class: 1}),
	{name: "ixfr with its soa", in: tcp(qIXFR), want: req(2+len(qIXFR), "IXFR", "zone.test", "", Query{ID: 11, RD: true, Type: 251, Class: 1})},
	reqCase("notify", query(3, "zone.test.", tSOA, withOpcode(4)), "NOTIFY", "zone.test", "", Query{ID: 3, OpCode: 4, RD: true, Type: 6, Class: 1}),
	reqCase("update", query(3, "zone.test.", tSOA, withOpcode(5), withAnswers(rrA("h.zone.test.", 0, "198.18.9.1"))),
		"UPDATE", "zone.test", "", Query{ID: 3, OpCode: 5, RD: true, Type: 6, Class: 1}),
	reqCase("unnamed opcode", query(3, "z.", tA, withOpcode(15)), "OPCODE15", "z", "", Query{ID: 3, OpCode: 15, RD: true, Type: 1, Class: 1}),
	reqCase("label bytes kept", cat(header(1, 0, 1, 0, 0, 0), []byte("\x03a b\x02_X\x01\xff\x00\x00\x01\x00\x01")),
		"A", "a b._x.\xff", "", Query{ID: 1, Type: 1, Class: 1}),
	reqCase("compressed question name", cat(header(1, 0, 1, 0, 0, 0), []byte("\xc0\x12\x00\x01\x00\x01\x01a\x00")),
		"A", "a", "", Query{ID: 1, Type: 1, Class: 1}),
	{name: "longest name", in: tcp(query(1, strings.Repeat(strings.Repeat("a", 62)+".", 4)[:254-2]+"b.", tA)),
		want: req(2+12+255+4, "A", strings.Repeat(strings.Repeat("a", 62)+".", 4)[:252]+"b", "", Query{ID: 1, RD: true, Type: 1, Class: 1})},
	{name: "pipelined", in: tcp(qA, qAAAA), want: req(2+len(qA), "A", "example.com", "", Query{ID: 0x1234, RD: true, Type: 1, Class: 1})},

	// Incomplete.
	{name: "nothing", in: nil, want: more(2 + minQuery)},
	{name: "one byte", in: []byte{0}, want: more(1 + minQuery)},
	{name: "length only", in: []byte{0, 33}, want: more(33)},
	{name: "part of the message", in: tcp(qA)[:20], want: more(2 + len(qA) - 20)},
	{name: "all but one byte", in: tcp(qA)[:1+len(qA)], want: more(1)},

	// Malformed.
	{name: "zero length", in: []byte{0, 0}, err: l7.ErrMalformed},
	{name: "shorter than a question", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte{0, 0, 1, 0})), err: l7.ErrMalformed},
	{name: "response", in: tcp(patch(qA, 2, 0x81)), err: l7.ErrMalformed},
	{name: "no question", in: tcp(cat(header(1, 0, 0, 0, 0, 0), []byte{0, 0, 1, 0, 1})), err: l7.ErrMalformed},
	{name: "two questions", in: tcp(message(false, 1, "a.", tA, in, withQuestions(question("a.", tA, in), question("b.", tA, in)))), err: l7.ErrMalformed},
	{name: "dso", in: tcp(patch(qA, 2, 6<<3)), err: l7.ErrMalformed},
	{name: "dot inside a label", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\x03a.b\x00\x00\x01\x00\x01"))), err: l7.ErrMalformed},
	{name: "label past the end", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\x09abc\x00\x00\x01\x00\x01"))), err: l7.ErrMalformed},
	{name: "pointer loop", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\xc0\x0c\x00\x01\x00\x01"))), err: l7.ErrMalformed},
	{name: "reserved label type", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\x41a\x00\x00\x01\x00\x01"))), err: l7.ErrMalformed},
	{name: "name too long", in: tcp(cat(header(1, 0, 1, 0, 0, 0), bytes.Repeat([]byte("\x3f"+strings.Repeat("a", 63)), 4), []byte("\x00\x00\x01\x00\x01"))), err: l7.ErrMalformed},
	{name: "question cut", in: tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\x01a\x00\x00\x01\x00"))), err: l7.ErrMalformed},
	{name: "missing additional record", in: tcp(patch(qA, 11, 1)), err: l7.ErrMalformed},
	{name: "record length past the end", in: tcp(patch(qAAAA, len(qAAAA)-2, 0, 9)), err: l7.ErrMalformed},
	{name: "two opt records", in: tcp(query(1, "a.", tA, withEDNS(false), withEDNS(true))), err: l7.ErrMalformed},
	{name: "opt not owned by the root", in: tcp(cat(patch(query(1, "a.", tA), 11, 1), []byte("\x01a\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"))), err: l7.ErrMalformed},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

var replyCases = []parseCase{
	{name: "answer", in: tcp(rA), want: rep(2+len(rA), 1, false)},
	{name: "nxdomain", in: tcp(rNX), want: rep(2+len(rNX), 0, true)},
	{name: "formerr without question", in: tcp(rNoQ), want: rep(2+12, 0, true)},
	{name: "extended rcode in opt", in: tcp(rBadVers), want: rep(2+len(rBadVers), 0, true)},
	{name: "refused", in: tcp(response(1, "a.", tA, withRCode(dnsmessage.RCodeRefused))), want: rep(2+19, 0, true)},
	{name: "pipelined", in: tcp(rA, rNX), want: rep(2+len(rA), 1, false)},

	// Incomplete.
	{name: "nothing", in: nil, want: more(2 + minReply)},
	{name: "one byte", in: []byte{0}, want: more(1 + minReply)},
	{name: "length only", in: []byte{0, 60}, want: more(60)},
	{name: "part", in: tcp(rA)[:30], want: more(2 + len(rA) - 30)},

	// Malformed.
	{name: "shorter than a header", in: tcp(make([]byte, 11)), err: l7.ErrMalformed},
	{name: "query", in: tcp(qA), err: l7.ErrMalformed},
	{name: "two questions", in: tcp(message(true, 1, "a.", tA, in, withQuestions(question("a.", tA, in), question("b.", tA, in)))), err: l7.ErrMalformed},
	{name: "answer cut", in: tcp(rA[:len(rA)-1]), err: l7.ErrMalformed},
	{name: "answer count beyond the records", in: tcp(patch(rA, 7, 2)), err: l7.ErrMalformed},
	{name: "bad name in an answer", in: tcp(cat(header(1, 0x8180, 0, 1, 0, 0), []byte("\x03a.b\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"))), err: l7.ErrMalformed},
	{name: "bad authority", in: tcp(patch(rA, 9, 1)), err: l7.ErrMalformed},
	{name: "two opt records", in: tcp(response(1, "a.", tA, withEDNS(false), withEDNS(false))), err: l7.ErrMalformed},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// TestParseDatagram runs the TCP cases through the UDP entry point: the
// same frames (n = the datagram's length) and the same errors.
func TestParseDatagram(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		cases := requestCases
		if dir == l7.DirReply {
			cases = replyCases
		}
		for _, c := range cases {
			if c.err == nil && c.want.Op == l7.OpMore {
				continue
			}
			if c.err == nil && c.want.N != len(c.in) {
				continue // pipelined: UDP has one message per datagram
			}
			t.Run(dir.String()+"/"+c.name, func(t *testing.T) {
				got := parseDatagram(t, NewParser(), dir, c.in[2:])
				if c.err != nil {
					if !errors.Is(got.Err, c.err) {
						t.Fatalf("ParseDatagram = %v, want %v", got, c.err)
					}
					return
				}
				want := c.want
				want.N -= 2
				if got != want {
					t.Fatalf("ParseDatagram\n got %v\nwant %v", got, want)
				}
			})
		}
	}
	p := NewParser()
	for _, tt := range []struct {
		name string
		dir  l7.Dir
		msg  []byte
		err  error
	}{
		{"empty", l7.DirRequest, nil, l7.ErrMalformed},
		{"query shorter than a question", l7.DirRequest, qA[:16], l7.ErrMalformed},
		{"reply shorter than a header", l7.DirReply, rA[:11], l7.ErrMalformed},
		{"over 65535 bytes", l7.DirReply, cat(rA, make([]byte, MaxMessage)), l7.ErrTooLong},
		{"bad direction", 9, qA, l7.ErrMalformed},
	} {
		if err := p.ParseDatagram(tt.dir, tt.msg, &l7.Frame{}); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.err)
		}
	}
	// The longest datagram is fine; bytes after the last record are
	// ignored, as servers do.
	big := cat(rA, make([]byte, MaxMessage-len(rA)))
	if got := parseDatagram(t, p, l7.DirReply, big); got != rep(MaxMessage, 1, false) {
		t.Fatalf("65535-byte datagram: %v", got)
	}
}

func TestRootNameIsNil(t *testing.T) {
	var f l7.Frame
	if _, _, err := NewParser().Parse(l7.DirRequest, tcp(qRoot), &f); err != nil || f.Resource != nil || f.Aux != nil {
		t.Fatalf("root query: err %v, resource %#v, aux %#v", err, f.Resource, f.Aux)
	}
}

// complete returns the inputs of cases whose first message is complete,
// cut to that message.
func complete(cases []parseCase) map[string][]byte {
	out := map[string][]byte{}
	for _, c := range cases {
		if c.err == nil && c.want.Op != l7.OpMore {
			out[c.name] = c.in[:c.want.N]
		}
	}
	return out
}

// TestOneByteAtATime feeds each message one byte at a time to one parser:
// every answer before the last byte must be OpMore with a count that does
// not overshoot the message, and the last one must equal a fresh parse of
// the whole message.
func TestOneByteAtATime(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		cases := requestCases
		if dir == l7.DirReply {
			cases = replyCases
		}
		msgs := complete(cases)
		for _, name := range l7test.Recordings(t, dirExt(dir)) {
			if strings.Contains(name, "-tcp-") {
				msgs[filepath.Base(name)] = firstMessage(l7test.ReadFile(t, name))
			}
		}
		for name, msg := range msgs {
			t.Run(dir.String()+"/"+name, func(t *testing.T) {
				want := parse(t, NewParser(), dir, msg)
				l7test.BytewiseWith(t, parser(NewParser(), dir), msg, want, l7test.Feed{ExactFrom: 2})
			})
		}
	}
}

func firstMessage(b []byte) []byte { return b[:2+int(be16(b))] }

func dirExt(dir l7.Dir) string {
	if dir == l7.DirReply {
		return ".reply"
	}
	return ".req"
}

// corpus returns a stream of every complete message of the cases, and the
// recorded TCP files of one direction, one after another.
func corpus(t *testing.T, dir l7.Dir) []byte {
	t.Helper()
	cases := requestCases
	if dir == l7.DirReply {
		cases = replyCases
	}
	var b bytes.Buffer
	for _, c := range cases {
		if c.err == nil && c.want.Op != l7.OpMore {
			b.Write(c.in[:c.want.N])
		}
	}
	for _, name := range l7test.Recordings(t, dirExt(dir)) {
		b.Write(l7test.ReadFile(t, name)) // UDP recordings are length-prefixed too
	}
	return b.Bytes()
}

// TestEverySplitPoint cuts a long pipeline in two at every offset: the
// answers must be those of the uncut stream.
func TestEverySplitPoint(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := corpus(t, dir)
			want := wholeStream(t, dir, data)
			l7test.CheckCorpus(t, want, 25)
			l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, nil)
		})
	}
}

// TestRandomChunks feeds the corpus in random chunks, many times.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := corpus(t, dir)
			want := wholeStream(t, dir, data)
			l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, 40, 200, nil)
		})
	}
}

// datagrams splits a UDP recording: the relay wrote each datagram after
// its 2-byte length.
func datagrams(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(be16(b)) {
			t.Fatalf("bad UDP recording framing")
		}
		n := int(be16(b))
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// exchange parses one recording pair: over TCP as two streams, over UDP
// datagram by datagram. It returns the request and reply answers (without
// the final OpMore of a stream).
func exchange(t *testing.T, name string) (reqs, reps []result, p *Parser) {
	t.Helper()
	rq := l7test.ReadFile(t, filepath.Join("testdata", "dig-9.18-"+name+".req"))
	rp := l7test.ReadFile(t, filepath.Join("testdata", "dnsmasq-2.90-"+name+".reply"))
	p = NewParser()
	if strings.HasPrefix(name, "udp-") {
		for _, d := range datagrams(t, rq) {
			reqs = append(reqs, parseDatagram(t, p, l7.DirRequest, d))
		}
		for _, d := range datagrams(t, rp) {
			reps = append(reps, parseDatagram(t, p, l7.DirReply, d))
		}
	} else {
		reqs = stream(t, p, l7.DirRequest, rq, []int{len(rq)})
		reps = stream(t, p, l7.DirReply, rp, []int{len(rp)})
		for _, rs := range [][]result{reqs, reps} {
			if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Fatalf("recording does not end on a message boundary: %v", last)
			}
		}
		reqs, reps = reqs[:len(reqs)-1], reps[:len(reps)-1]
	}
	for _, r := range append(slices.Clone(reqs), reps...) {
		if r.Err != nil {
			t.Fatalf("%v", r.Err)
		}
	}
	return reqs, reps, p
}

// TestRecorded parses the bytes recorded from dig 9.18 and dnsmasq 2.90
// (see testdata/README.md): every query gets exactly one final reply
// frame, and the frames carry the expected fields.
func TestRecorded(t *testing.T) {
	type want struct {
		verb, res, aux string
		edns, do, noRD bool
		queries        int
		replyErr       bool
	}
	cases := map[string]want{
		"udp-a":                  {verb: "A", res: "a.example.test", edns: true},
		"udp-aaaa":               {verb: "AAAA", res: "a.example.test", edns: true},
		"udp-txt":                {verb: "TXT", res: "txt.example.test", edns: true},
		"udp-mx":                 {verb: "MX", res: "example.test", edns: true},
		"udp-noedns-a":           {verb: "A", res: "a.example.test"},
		"udp-dnssec-a":           {verb: "A", res: "a.example.test", edns: true, do: true},
		"udp-cname-chain":        {verb: "A", res: "alias2.example.test", edns: true},
		"udp-chaos-version-bind": {verb: "TXT", res: "version.bind", aux: "CH", edns: true},
		"udp-nxdomain-refused":   {verb: "A", res: "nosuch.test", edns: true, replyErr: true},
		"udp-https":              {verb: "HTTPS", res: "a.example.test", edns: true, replyErr: true},
		"udp-type4660":           {verb: "TYPE4660", res: "a.example.test", edns: true, replyErr: true},
		"tcp-a":                  {verb: "A", res: "a.example.test", edns: true},
		"tcp-aaaa":               {verb: "AAAA", res: "a.example.test", edns: true},
		"tcp-txt":                {verb: "TXT", res: "txt.example.test", edns: true},
		"tcp-mx":                 {verb: "MX", res: "example.test", edns: true},
		"tcp-noedns-a":           {verb: "A", res: "a.example.test"},
		"tcp-dnssec-a":           {verb: "A", res: "a.example.test", edns: true, do: true},
		"tcp-cname-chain":        {verb: "AAAA", res: "alias2.example.test", edns: true},
		"tcp-keepopen-multi":     {verb: "A", res: "a.example.test", edns: true, queries: 4},
		"tcp-axfr":               {verb: "AXFR", res: "zone.test", edns: true, noRD: true},
		"tcp-ixfr":               {verb: "IXFR", res: "zone.test", edns: true, noRD: true, replyErr: true},
	}
	seen := 0
	for _, file := range l7test.Recordings(t, ".req") {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "dig-9.18-"), ".req")
		w, ok := cases[name]
		if !ok {
			t.Errorf("recording %s has no expectations", name)
			continue
		}
		seen++
		t.Run(name, func(t *testing.T) {
			reqs, reps, _ := exchange(t, name)
			final := 0
			for _, r := range reps {
				if !r.Partial {
					final++
				}
			}
			if w.queries == 0 {
				w.queries = 1
			}
			if len(reqs) != w.queries || final != w.queries {
				t.Fatalf("%d queries, %d final replies, want %d:\n%v\n%v", len(reqs), final, w.queries, reqs, reps)
			}
			r := reqs[0]
			q, _ := QueryOf(&l7.Frame{Args: r.Args})
			if r.Verb != w.verb || r.Resource != w.res || r.Aux != w.aux || q.EDNS != w.edns || q.DO != w.do || q.RD == w.noRD {
				t.Fatalf("first query %v, want %+v", r, w)
			}
			for i := range reqs {
				rq, _ := QueryOf(&l7.Frame{Args: reqs[i].Args})
				if id := be16(replyBytes(t, name, i)); id != rq.ID {
					t.Fatalf("reply %d has ID %d, query %d", i, id, rq.ID)
				}
			}
			if reps[0].IsErr != w.replyErr {
				t.Fatalf("reply %v, want Err %v", reps[0], w.replyErr)
			}
		})
	}
	if seen != len(cases) {
		t.Fatalf("%d recordings, %d expected", seen, len(cases))
	}
}

// replyBytes returns the i-th recorded response of a recording (without
// a length prefix).
func replyBytes(t *testing.T, name string, i int) []byte {
	t.Helper()
	b := l7test.ReadFile(t, filepath.Join("testdata", "dnsmasq-2.90-"+name+".reply"))
	for k := 0; ; k++ {
		n := int(be16(b))
		if k == i {
			return b[2 : 2+n]
		}
		b = b[2+n:]
	}
}

type learned struct {
	name string
	addr netip.Addr
	ttl  uint32
}

func answersOf(p *Parser) []learned {
	var out []learned
	p.Answers(func(name []byte, addr netip.Addr, ttl uint32) {
		out = append(out, learned{string(name), addr, ttl})
	})
	return out
}

func TestAnswers(t *testing.T) {
	a := netip.MustParseAddr
	chain := func(n int) []dnsmessage.Resource {
		var rs []dnsmessage.Resource
		for i := range n {
			rs = append(rs, rrCNAME(fmt.Sprintf("c%d.test.", i), 100, fmt.Sprintf("c%d.test.", i+1)))
		}
		return append(rs, rrA(fmt.Sprintf("c%d.test.", n), 50, "198.18.0.1"))
	}
	tests := []struct {
		name string
		msg  []byte
		want []learned
	}{
		{"a", response(1, "WWW.Example.COM.", tA, withAnswers(rrA("www.example.com.", 300, "198.18.1.1"), rrA("WWW.EXAMPLE.COM.", 200, "198.18.1.2"))),
			[]learned{{"www.example.com", a("198.18.1.1"), 300}, {"www.example.com", a("198.18.1.2"), 200}}},
		{"aaaa", response(1, "v6.test.", tAAAA, withAnswers(rrA("v6.test.", 60, "2001:db8::1"))),
			[]learned{{"v6.test", a("2001:db8::1"), 60}}},
		{"cname chain in order", response(1, "alias.test.", tA, withAnswers(rrCNAME("alias.test.", 30, "mid.test."), rrCNAME("mid.test.", 300, "host.cdn.test."), rrA("host.cdn.test.", 60, "198.18.2.2"))),
			[]learned{{"alias.test", a("198.18.2.2"), 30}}},
		{"cname chain out of order", response(1, "alias.test.", tA, withAnswers(rrA("host.cdn.test.", 60, "198.18.2.2"), rrCNAME("mid.test.", 10, "Host.CDN.test."), rrCNAME("alias.test.", 30, "mid.test."))),
			[]learned{{"alias.test", a("198.18.2.2"), 10}}},
		{"cname loop", response(1, "a.test.", tA, withAnswers(rrCNAME("a.test.", 30, "b.test."), rrCNAME("b.test.", 30, "a.test."), rrA("b.test.", 60, "198.18.2.3"))),
			[]learned{{"a.test", a("198.18.2.3"), 30}}},
		{"records off the chain are not reported", response(1, "a.test.", tA, withAnswers(rrA("evil.test.", 60, "198.18.6.6"), rrCNAME("x.test.", 30, "a.test."), rrA("a.test.", 60, "198.18.2.4"))),
			[]learned{{"a.test", a("198.18.2.4"), 60}}},
		{"other types skipped", response(1, "a.test.", tANY, withAnswers(rrTXT("a.test.", "v=spf1"), rrA("a.test.", 60, "198.18.2.5"))),
			[]learned{{"a.test", a("198.18.2.5"), 60}}},
		{"chain at the limit", response(1, "c0.test.", tA, withAnswers(chain(MaxCNAMEChain)...)),
			[]learned{{"c0.test", a("198.18.0.1"), 50}}},
		{"chain over the limit", response(1, "c0.test.", tA, withAnswers(chain(MaxCNAMEChain+1)...)), nil},
		{"nxdomain", rNX, nil},
		{"no answers", response(1, "a.test.", tA), nil},
		{"chaos class", message(true, 1, "a.test.", tA, dnsmessage.ClassCHAOS, withAnswers(rrA("a.test.", 60, "198.18.2.6"))), nil},
		{"notify response", response(1, "a.test.", tA, withOpcode(4), withAnswers(rrA("a.test.", 60, "198.18.2.7"))), nil},
		{"root", response(1, ".", tA, withAnswers(rrA(".", 60, "198.18.2.8"))), []learned{{"", a("198.18.2.8"), 60}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, udp := range []bool{false, true} {
				p := NewParser()
				var r result
				if udp {
					r = parseDatagram(t, p, l7.DirReply, tt.msg)
				} else {
					r = parse(t, p, l7.DirReply, tcp(tt.msg))
				}
				if r.Op != l7.OpFrame {
					t.Fatalf("parse: %v", r)
				}
				if got := answersOf(p); !slices.Equal(got, tt.want) {
					t.Fatalf("udp %v: Answers = %v, want %v", udp, got, tt.want)
				}
				// A request in between does not matter; a failed or
				// incomplete reply parse clears them.
				parse(t, p, l7.DirRequest, tcp(qA))
				if got := answersOf(p); !slices.Equal(got, tt.want) {
					t.Fatalf("after a request: %v, want %v", got, tt.want)
				}
				parse(t, p, l7.DirReply, tcp(tt.msg)[:3])
				if got := answersOf(p); got != nil {
					t.Fatalf("after OpMore: %v", got)
				}
			}
		})
	}
	// Recorded answers.
	for name, want := range map[string][]learned{
		"udp-a":           {{"a.example.test", a("198.18.9.9"), 0}},
		"udp-aaaa":        {{"a.example.test", a("2001:db8::9"), 0}},
		"udp-cname-chain": {{"alias2.example.test", a("198.18.9.10"), 0}},
		"tcp-cname-chain": {{"alias2.example.test", a("2001:db8::10"), 0}},
		"udp-txt":         nil,
	} {
		// The first response of the recording, alone: after a stream's
		// final OpMore there is nothing to report.
		p := NewParser()
		rec := firstMessage(l7test.ReadFile(t, filepath.Join("testdata", "dnsmasq-2.90-"+name+".reply")))
		if strings.HasPrefix(name, "udp-") {
			parseDatagram(t, p, l7.DirReply, rec[2:])
		} else {
			parse(t, p, l7.DirReply, rec)
		}
		if got := answersOf(p); !slices.Equal(got, want) {
			t.Errorf("%s: Answers = %v, want %v", name, got, want)
		}
	}
	NewParser().Answers(nil) // no reply, no callback: nothing to do
}

// TestZoneTransfer checks that the messages of an AXFR or IXFR response
// over TCP are Partial but the last, so that the proxy counts one answer.
func TestZoneTransfer(t *testing.T) {
	const zone = "zone.test."
	host := func(i int) dnsmessage.Resource { return rrA(fmt.Sprintf("h%d.zone.test.", i), 60, "198.18.3.1") }
	first := func(id uint16, qt dnsmessage.Type, rs ...dnsmessage.Resource) []byte {
		return response(id, zone, qt, withAnswers(rs...))
	}
	// next builds a later message of a transfer, without a question.
	next := func(id uint16, rs ...dnsmessage.Resource) []byte {
		m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, Response: true}, Answers: rs}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		msgs    [][]byte
		partial string // one letter per message: p(artial), f(inal)
	}{
		{"axfr in one message", [][]byte{first(1, tAXFR, rrSOA(zone, 5), host(1), rrSOA(zone, 5))}, "f"},
		{"axfr in three messages", [][]byte{first(1, tAXFR, rrSOA(zone, 5), host(1)), next(1, host(2)), next(1, host(3), rrSOA(zone, 5))}, "ppf"},
		{"axfr, question repeated", [][]byte{first(1, tAXFR, rrSOA(zone, 5), host(1)), first(1, tAXFR, host(2), rrSOA(zone, 5))}, "pf"},
		{"axfr, other replies between", [][]byte{first(1, tAXFR, rrSOA(zone, 5)), rA, next(1, host(2)), rNX, next(1, rrSOA(zone, 5))}, "pfpff"},
		{"axfr refused", [][]byte{response(1, zone, tAXFR, withRCode(dnsmessage.RCodeRefused))}, "f"},
		{"axfr failing midway", [][]byte{first(1, tAXFR, rrSOA(zone, 5), host(1)), func() []byte {
			m := next(1)
			return patch(m, 3, byte(dnsmessage.RCodeServerFailure))
		}()}, "pf"},
		{"axfr not starting with an soa", [][]byte{first(1, tAXFR, host(1), rrSOA(zone, 5))}, "f"},
		{"two axfrs", [][]byte{first(1, tAXFR, rrSOA(zone, 5)), next(1, rrSOA(zone, 5)), first(2, tAXFR, rrSOA(zone, 5)), next(2, rrSOA(zone, 5))}, "pfpf"},
		{"ixfr up to date", [][]byte{first(1, tIXFR, rrSOA(zone, 5))}, "f"},
		{"ixfr axfr-style", [][]byte{first(1, tIXFR, rrSOA(zone, 5), host(1)), next(1, rrSOA(zone, 5))}, "pf"},
		{"ixfr incremental", [][]byte{
			first(1, tIXFR, rrSOA(zone, 5), rrSOA(zone, 3), host(1), rrSOA(zone, 4)),
			next(1, host(2), rrSOA(zone, 4), rrSOA(zone, 5)),
			next(1, host(3), rrSOA(zone, 5)),
		}, "ppf"},
		{"ixfr incremental in one message", [][]byte{first(1, tIXFR, rrSOA(zone, 5), rrSOA(zone, 3), host(1), rrSOA(zone, 5), host(2), rrSOA(zone, 5))}, "f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := wholeStream(t, l7.DirReply, tcp(tt.msgs...))
			var got strings.Builder
			for _, r := range rs[:len(rs)-1] {
				if r.Partial {
					got.WriteByte('p')
				} else {
					got.WriteByte('f')
				}
			}
			if got.String() != tt.partial {
				t.Fatalf("got %s, want %s: %v", got.String(), tt.partial, rs)
			}
			// Over UDP every response is final.
			p := NewParser()
			for _, m := range tt.msgs {
				if r := parseDatagram(t, p, l7.DirReply, m); r.Partial || r.Err != nil {
					t.Fatalf("datagram: %v", r)
				}
			}
		})
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, tcp(qA), nil); op != l7.OpFrame || n != 2+len(qA) || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if err := p.ParseDatagram(l7.DirReply, rA, nil); err != nil {
		t.Fatalf("nil frame datagram: %v", err)
	}
	if _, _, err := p.Parse(l7.Dir(7), tcp(qA), &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirReply, tcp(rA)); r != rep(2+len(rA), 1, false) {
		t.Fatalf("zero Parser: %v", r)
	}
}

func TestQueryArgs(t *testing.T) {
	for _, q := range []Query{
		{},
		{ID: 0xffff, OpCode: 15, RD: true, CD: true, Type: 0xffff, Class: 0xffff, EDNS: true, DO: true},
		{ID: 1, OpCode: 5, Type: 6, Class: 1, DO: true},
	} {
		got, ok := QueryOf(&l7.Frame{Args: q.Args()})
		if !ok || got != q {
			t.Errorf("QueryOf(%+v.Args()) = %+v, %v", q, got, ok)
		}
	}
	for _, a := range []int{0, 1, -1, 1 << 57, 1<<56 | 1<<57} {
		if q, ok := QueryOf(&l7.Frame{Args: a}); ok {
			t.Errorf("QueryOf(Args %d) = %+v, want none", a, q)
		}
	}
	if _, ok := QueryOf(nil); ok {
		t.Error("QueryOf(nil) ok")
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "dns" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.CloseOnDeny || pr.ServerFirst || pr.MaxMessage != 65537 {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if _, ok := pr.New().(*Parser); !ok {
		t.Fatalf("New() returned %T", pr.New())
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

// checkDeny parses a deny reply (without prefix) with dnsmessage and
// checks it answers q: ID, flags, the question echoed, no records, and
// the OPT record with EDE 15 exactly when the query had EDNS.
func checkDeny(t testing.TB, out []byte, f *l7.Frame, reason string) {
	t.Helper()
	q, echo := denyQuery(f)
	if _, ok := QueryOf(f); !ok && (q.ID != 0 || q.EDNS || q.RD || q.CD || q.OpCode != 0) {
		t.Fatalf("query %+v made up for frame %+v", q, f)
	}
	if len(out) > 512 || len(out) > maxDenyReply {
		t.Fatalf("deny of %d bytes", len(out))
	}
	var m dnsmessage.Message
	if err := m.Unpack(out); err != nil {
		t.Fatalf("deny %q does not unpack: %v", out, err)
	}
	h := m.Header
	if h.ID != q.ID || !h.Response || h.OpCode != dnsmessage.OpCode(q.OpCode) || h.RCode != dnsmessage.RCodeRefused ||
		h.RecursionDesired != q.RD || !h.RecursionAvailable || h.CheckingDisabled != q.CD || h.Authoritative || h.Truncated || h.AuthenticData {
		t.Fatalf("deny header %+v for query %+v", h, q)
	}
	if len(m.Answers)+len(m.Authorities) != 0 {
		t.Fatalf("deny with records: %+v", m)
	}
	if echo {
		want := string(f.Resource) + "."
		if len(m.Questions) != 1 || m.Questions[0].Name.String() != want || uint16(m.Questions[0].Type) != q.Type || uint16(m.Questions[0].Class) != q.Class {
			t.Fatalf("deny question %+v, want %q %d %d", m.Questions, want, q.Type, q.Class)
		}
	} else if len(m.Questions) != 0 {
		t.Fatalf("deny echoes an invalid name: %+v", m.Questions)
	}
	if !q.EDNS {
		if len(m.Additionals) != 0 {
			t.Fatalf("deny to a query without EDNS has additionals: %+v", m.Additionals)
		}
		return
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Fatalf("deny additionals %+v", m.Additionals)
	}
	rh := m.Additionals[0].Header
	if rh.Class != 1232 || rh.DNSSECAllowed() != q.DO || rh.ExtendedRCode(dnsmessage.RCodeRefused) != dnsmessage.RCodeRefused {
		t.Fatalf("deny OPT header %+v", rh)
	}
	opts := m.Additionals[0].Body.(*dnsmessage.OPTResource).Options
	if len(opts) != 1 || opts[0].Code != 15 || len(opts[0].Data) < 2 || be16(opts[0].Data) != 15 {
		t.Fatalf("deny options %+v", opts)
	}
	text := string(opts[0].Data[2:])
	want := "bulkhead"
	if l7.HasPrintable(reason) {
		want += ": " + string(l7.AppendPrintable(nil, reason, maxDenyReason))
	}
	if text != want {
		t.Fatalf("EDE text %q, want %q", text, want)
	}
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	frameOf := func(msg []byte) *l7.Frame {
		var f l7.Frame
		if err := NewParser().ParseDatagram(l7.DirRequest, msg, &f); err != nil {
			t.Fatal(err)
		}
		return &f
	}
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"edns", frameOf(qAAAA), "l7_not_allowed"},
		{"no edns", frameOf(qA), "l7_not_allowed"},
		{"dnssec ok and cd", frameOf(qDNSSEC), "no_rule"},
		{"root without rd", frameOf(qRoot), "no_rule"},
		{"chaos", frameOf(qChaos), ""},
		{"notify", frameOf(query(3, "zone.test.", tSOA, withOpcode(4), withEDNS(false))), "l7_not_allowed"},
		{"empty reason", frameOf(qAAAA), ""},
		{"blank reason", frameOf(qAAAA), " \r\n "},
		{"control bytes stripped", frameOf(qAAAA), "a\r\nb\x00c\x7fd\xffe"},
		{"long reason bounded", frameOf(qAAAA), long},
		{"hand-made frame", &l7.Frame{Verb: []byte("A"), Resource: []byte("www.example.com"), Args: Query{ID: 42, RD: true, Type: 1, Class: 1, EDNS: true}.Args()}, "test"},
		{"invalid name not echoed", &l7.Frame{Resource: []byte("a..b"), Args: Query{ID: 43, Type: 1, Class: 1}.Args()}, "test"},
		{"label too long not echoed", &l7.Frame{Resource: []byte(strings.Repeat("a", 64)), Args: Query{ID: 44, Type: 1, Class: 1}.Args()}, "test"},
		{"name too long not echoed", &l7.Frame{Resource: []byte(strings.Repeat("a.", 127)), Args: Query{ID: 45, Type: 1, Class: 1}.Args()}, "test"},
		{"no query", &l7.Frame{Verb: []byte("A"), Resource: []byte("www.example.com")}, "test"},
		{"no query, chaos", &l7.Frame{Verb: []byte("txt"), Resource: []byte("version.bind"), Aux: []byte("ch")}, "test"},
		{"no query, numbered", &l7.Frame{Verb: []byte("TYPE4660"), Resource: []byte("x"), Aux: []byte("CLASS1234")}, "test"},
		{"no query, unknown type", &l7.Frame{Verb: []byte("X"), Resource: []byte("x")}, "test"},
		{"no query, unknown class", &l7.Frame{Verb: []byte("A"), Resource: []byte("x"), Aux: []byte("CLASS65536")}, "test"},
		{"nil frame", nil, "test"},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := DenyDatagram(nil, tt.f, tt.reason)
		checkDeny(t, out, tt.f, tt.reason)
		withPrefix := Deny([]byte("prefix"), tt.f, tt.reason)
		if string(withPrefix) != "prefix"+string(tcp(out)) {
			t.Errorf("%s: Deny = %q, want the datagram with its length", tt.name, withPrefix)
		}
		// The reply frames as one final error reply.
		if r := parse(t, NewParser(), l7.DirReply, tcp(out)); r != rep(len(out)+2, 0, true) {
			t.Errorf("%s: deny parses as %v", tt.name, r)
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

// TestDenyEveryRecordedQuery answers every recorded query and every table
// query with a deny and checks it.
func TestDenyEveryRecordedQuery(t *testing.T) {
	for _, c := range requestCases {
		if c.err != nil || c.want.Op != l7.OpFrame {
			continue
		}
		var f l7.Frame
		if _, _, err := NewParser().Parse(l7.DirRequest, c.in, &f); err != nil {
			t.Fatal(err)
		}
		checkDeny(t, DenyDatagram(nil, &f, "l7_not_allowed"), &f, "l7_not_allowed")
	}
	for _, name := range l7test.Recordings(t, ".req") {
		b := l7test.ReadFile(t, name)
		for len(b) > 0 {
			n := 2 + int(be16(b))
			var f l7.Frame
			if err := NewParser().ParseDatagram(l7.DirRequest, b[2:n], &f); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out := DenyDatagram(nil, &f, "no_rule")
			checkDeny(t, out, &f, "no_rule")
			// dig sends names in lower case: the echo is exact.
			k := len(appendWireName(nil, f.Resource)) + 4
			if !bytes.Equal(out[12:12+k], b[2+12:2+12+k]) {
				t.Fatalf("%s: question not echoed byte for byte: %q", name, out)
			}
			b = b[n:]
		}
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"query", tcp(qA), true},
		{"edns query", tcp(qDNSSEC), true},
		{"root query", tcp(qRoot), true},
		{"chaos", tcp(qChaos), true},
		{"ixfr", tcp(qIXFR), true},
		{"service name", tcp(query(1, "_http._tcp.example.com.", 33)), true},
		{"two pipelined", tcp(qA, qAAAA), true},
		{"datagram without prefix", qA, false},
		{"prefix alone", tcp(qA)[:2], false},
		{"question cut", tcp(qA)[:20], false},
		{"response", tcp(rA), false},
		{"notify", tcp(query(3, "zone.test.", tSOA, withOpcode(4))), false},
		{"two questions", tcp(message(false, 1, "a.", tA, in, withQuestions(question("a.", tA, in), question("b.", tA, in)))), false},
		{"binary label", tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\x01\x00\x00\x00\x01\x00\x01"))), false},
		{"compressed", tcp(cat(header(1, 0, 1, 0, 0, 0), []byte("\xc0\x0c\x00\x01\x00\x01"))), false},
		{"type 0", tcp(query(1, "a.", 0)), false},
		{"class 2", tcp(message(false, 1, "a.", tA, 2)), false},
		{"length too big", append([]byte{0x20, 0}, tcp(qA)[2:]...), false},
		{"length below the question", append([]byte{0, 20}, tcp(qA)[2:]...), false},
		{"redis", []byte("*1\r\n$4\r\nPING\r\n"), false},
		{"redis inline", []byte("PING\r\n"), false},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 40)), false},
		{"memcached", []byte("get foo\r\n"), false},
		{"mysql greeting", []byte("J\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00" + strings.Repeat("a", 30)), false},
		{"postgres startup", []byte("\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00db\x00\x00"), false},
		{"postgres ssl request", []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff(tt.in); got != tt.want {
				t.Fatalf("Sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, name := range l7test.Recordings(t, ".req") {
		if strings.Contains(name, "-tcp-") && !Sniff(l7test.ReadFile(t, name)) {
			t.Errorf("Sniff does not recognise %s", name)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	chain := response(1, "alias.test.", tA, withAnswers(rrCNAME("alias.test.", 30, "mid.test."), rrCNAME("mid.test.", 300, "host.cdn.test."),
		rrA("host.cdn.test.", 60, "198.18.2.2"), rrA("host.cdn.test.", 60, "2001:db8::2")))
	inputs := map[string]struct {
		dir l7.Dir
		in  []byte
	}{
		"query":      {l7.DirRequest, tcp(qDNSSEC)},
		"chaos":      {l7.DirRequest, tcp(qChaos)},
		"unnamed":    {l7.DirRequest, tcp(query(1, "h.", 4660))},
		"ixfr":       {l7.DirRequest, tcp(qIXFR)},
		"answer":     {l7.DirReply, tcp(rA)},
		"chain":      {l7.DirReply, tcp(chain)},
		"incomplete": {l7.DirReply, tcp(rA)[:20]},
		"axfr": {l7.DirReply, tcp(response(1, "zone.test.", tAXFR, withAnswers(rrSOA("zone.test.", 5), rrA("h.zone.test.", 1, "198.18.0.1"))),
			response(1, "zone.test.", tAXFR, withAnswers(rrSOA("zone.test.", 5))))},
	}
	p := NewParser()
	var f l7.Frame
	for name, c := range inputs {
		if n := testing.AllocsPerRun(100, func() {
			for rest := c.in; len(rest) > 0; {
				op, k, err := p.Parse(c.dir, rest, &f)
				if err != nil || op != l7.OpFrame {
					break
				}
				rest = rest[k:]
			}
		}); n != 0 {
			t.Errorf("Parse %s: %v allocations", name, n)
		}
		if name == "incomplete" {
			continue // an error: dnsmessage's errors allocate
		}
		msg := c.in[2:min(len(c.in), 2+int(be16(c.in)))]
		if n := testing.AllocsPerRun(100, func() { p.ParseDatagram(c.dir, msg, &f) }); n != 0 {
			t.Errorf("ParseDatagram %s: %v allocations", name, n)
		}
	}
	if err := p.ParseDatagram(l7.DirReply, chain, &f); err != nil {
		t.Fatal(err)
	}
	count := 0
	fn := func(name []byte, addr netip.Addr, ttl uint32) { count++ }
	if n := testing.AllocsPerRun(100, func() { p.Answers(fn) }); n != 0 || count == 0 {
		t.Errorf("Answers: %v allocations, %d answers", n, count)
	}
	if err := p.ParseDatagram(l7.DirRequest, qDNSSEC, &f); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], &f, "l7_not_allowed") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = DenyDatagram(buf[:0], &f, "l7_not_allowed") }); n != 0 {
		t.Errorf("DenyDatagram: %v allocations", n)
	}
	hand := &l7.Frame{Verb: []byte("txt"), Resource: []byte("version.bind"), Aux: []byte("CH")}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], hand, "l7_not_allowed") }); n != 0 {
		t.Errorf("Deny of a hand-made frame: %v allocations", n)
	}
	sniffed := tcp(qDNSSEC)
	if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
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
			if err != nil || op != l7.OpFrame {
				b.Fatalf("%v %d %v", op, n, err)
			}
			got++
			rest = rest[n:]
		}
		if got != frames {
			b.Fatalf("%d frames, want %d", got, frames)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
}

func BenchmarkParseRequest(b *testing.B) {
	var pipeline [][]byte
	for i := range 16 {
		pipeline = append(pipeline, query(uint16(i), fmt.Sprintf("host-%d.svc.cluster.local.", i), tA, withEDNS(false)))
	}
	b.Run("query", func(b *testing.B) { benchStream(b, l7.DirRequest, tcp(qDNSSEC), 1) })
	b.Run("pipeline-16", func(b *testing.B) { benchStream(b, l7.DirRequest, tcp(pipeline...), 16) })
	b.Run("datagram", func(b *testing.B) {
		p := NewParser()
		var f l7.Frame
		b.ReportAllocs()
		b.SetBytes(int64(len(qDNSSEC)))
		for b.Loop() {
			if err := p.ParseDatagram(l7.DirRequest, qDNSSEC, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParseReply(b *testing.B) {
	var data []byte
	frames := 0
	for _, name := range l7test.Recordings(b, ".reply") {
		rec := l7test.ReadFile(b, name)
		data = append(data, rec...)
		for len(rec) > 0 {
			rec = rec[2+int(be16(rec)):]
			frames++
		}
	}
	b.Run("recorded", func(b *testing.B) { benchStream(b, l7.DirReply, data, frames) })
	var rs []dnsmessage.Resource
	for i := range 100 {
		rs = append(rs, rrA("big.test.", 60, fmt.Sprintf("198.18.%d.%d", i/256, i%256)))
	}
	big := response(1, "big.test.", tA, withAnswers(rs...))
	b.Run("100-answers", func(b *testing.B) { benchStream(b, l7.DirReply, tcp(big), 1) })
}

func BenchmarkAnswers(b *testing.B) {
	chain := response(1, "alias.test.", tA, withAnswers(rrCNAME("alias.test.", 30, "mid.test."), rrCNAME("mid.test.", 300, "host.cdn.test."),
		rrA("host.cdn.test.", 60, "198.18.2.2"), rrA("host.cdn.test.", 60, "198.18.2.3")))
	p := NewParser()
	if err := p.ParseDatagram(l7.DirReply, chain, nil); err != nil {
		b.Fatal(err)
	}
	n := 0
	fn := func(name []byte, addr netip.Addr, ttl uint32) { n++ }
	b.ReportAllocs()
	b.SetBytes(int64(len(chain)))
	for b.Loop() {
		p.Answers(fn)
	}
}

func BenchmarkDeny(b *testing.B) {
	var f l7.Frame
	if err := NewParser().ParseDatagram(l7.DirRequest, qDNSSEC, &f); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], &f, "l7_not_allowed")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkSniff(b *testing.B) {
	in := tcp(qDNSSEC)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		Sniff(in)
	}
}
