package tls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	Resource string
	Aux      string
	Args     int
}

func (r result) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("error %v", r.Err)
	case r.Op == l7.OpMore:
		return fmt.Sprintf("more %d", r.N)
	case r.Op == l7.OpPass:
		return "pass"
	}
	return fmt.Sprintf("%v %d {%v verb=%q res=%q aux=%q args=%#04x}", r.Op, r.N, r.Dir, r.Verb, r.Resource, r.Aux, r.Args)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	switch {
	case err != nil:
		return result{Err: err}
	case op != l7.OpFrame:
		return result{Op: op, N: n}
	}
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Resource: string(f.Resource), Aux: string(f.Aux), Args: f.Args}
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
	if err == nil && op == l7.OpSkip {
		t.Fatalf("%q: unknown op %v", data, op)
	}
	if err == nil && op == l7.OpFrame && dir != l7.DirRequest {
		t.Fatalf("%q: a frame in the reply direction", data)
	}
	l7test.Check{Pass: true, ViewOK: func(field string, msg, v []byte) bool {
		switch field {
		case "verb":
			return l7test.Within(verb, v)
		case "resource":
			return l7test.Within(p.sni[:], v)
		case "aux":
			return l7test.Within(p.alpn[:], v)
		}
		return l7test.Within(msg, v)
	}}.Answer(t, dir, data, op, n, err, f)
	if err != nil || op != l7.OpFrame {
		return
	}
	if string(f.Verb) != Verb {
		t.Fatalf("%q: frame dir %v verb %q", data, f.Dir, f.Verb)
	}
	if f.Resource != nil && len(f.Resource) == 0 || f.Aux != nil && len(f.Aux) == 0 {
		t.Fatalf("%q: empty but non-nil Resource or Aux", data)
	}
	if cap(f.Resource) != len(f.Resource) || cap(f.Aux) != len(f.Aux) || cap(f.Verb) != len(f.Verb) {
		t.Fatalf("%q: a view is not capacity-limited", data)
	}
	if len(f.Resource) > MaxServerName {
		t.Fatalf("%q: Resource of %d bytes", data, len(f.Resource))
	}
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

// Builders of ClientHellos, in the layout of the wire.

func be16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func vec8(parts ...[]byte) []byte {
	b := cat(parts...)
	return cat([]byte{byte(len(b))}, b)
}

func vec16(parts ...[]byte) []byte {
	b := cat(parts...)
	return cat(be16(len(b)), b)
}

// ext is one extension: type, length, data.
func ext(typ int, data ...[]byte) []byte { return cat(be16(typ), vec16(data...)) }

// hostEntry is one ServerName entry.
func hostEntry(typ int, name string) []byte { return cat([]byte{byte(typ)}, vec16([]byte(name))) }

func sniExt(names ...string) []byte {
	var es [][]byte
	for _, n := range names {
		es = append(es, hostEntry(0, n))
	}
	return ext(extServerName, vec16(es...))
}

func alpnExt(protos ...string) []byte {
	var ps [][]byte
	for _, p := range protos {
		ps = append(ps, vec8([]byte(p)))
	}
	return ext(extALPN, vec16(ps...))
}

var (
	random32 = bytes.Repeat([]byte{0xa5}, 32)
	suites   = vec16([]byte{0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b})
	nullComp = vec8([]byte{0})
)

// body is a ClientHello body with legacy_version 0x0303, an empty session
// id, three suites, null compression and the given extensions.
func body(exts ...[]byte) []byte {
	return cat(be16(0x0303), random32, vec8(), suites, nullComp, vec16(exts...))
}

// handshake wraps a body in a handshake header of the given type.
func handshake(typ int, b []byte) []byte {
	return cat([]byte{byte(typ), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b)
}

func record(typ, version int, frag []byte) []byte {
	return cat([]byte{byte(typ)}, be16(version), be16(len(frag)), frag)
}

// records splits msg into handshake records (version 0x0301) whose
// fragments have the given sizes, the last one taking the rest.
func records(msg []byte, sizes ...int) []byte {
	var out []byte
	for _, s := range sizes {
		if len(msg) == 0 {
			break
		}
		s = min(s, len(msg))
		out = append(out, record(typeHandshake, 0x0301, msg[:s])...)
		msg = msg[s:]
	}
	if len(msg) > 0 {
		out = append(out, record(typeHandshake, 0x0301, msg)...)
	}
	return out
}

// hello is a ClientHello with the given extensions in one record.
func hello(exts ...[]byte) []byte { return records(handshake(typeClientHello, body(exts...))) }

// helloOfSize is a ClientHello handshake message of size bytes, header
// included, with the given extensions and a padding extension.
func helloOfSize(size int, exts ...[]byte) []byte {
	base := handshake(typeClientHello, body(append(exts, ext(21))...))
	return handshake(typeClientHello, body(append(exts, ext(21, make([]byte, size-len(base))))...))
}

// oneByteRecords splits msg into records of one byte each.
func oneByteRecords(msg []byte) []byte {
	sizes := make([]int, len(msg))
	for i := range sizes {
		sizes[i] = 1
	}
	return records(msg, sizes...)
}

// Realistic extensions: GREASE, supported_versions, key_share with a
// post-quantum share, padding and an ECH outer extension.
var (
	greaseA      = ext(0x0a0a)
	greaseB      = ext(0x1a1a, []byte{0})
	versionsExt  = ext(43, vec8([]byte{0x3a, 0x3a, 0x03, 0x04, 0x03, 0x03}))
	keyShareExt  = ext(51, vec16(cat(be16(0x11ec), vec16(bytes.Repeat([]byte{7}, 1216))), cat(be16(29), vec16(bytes.Repeat([]byte{8}, 32)))))
	paddingExt   = ext(21, make([]byte, 200))
	echOuterExt  = ext(0xfe0d, []byte{0, 0, 1, 0, 1, 0x42}, vec16(make([]byte, 32)), vec16(make([]byte, 144)))
	browserLike  = hello(greaseA, sniExt("www.example.com"), versionsExt, alpnExt("h2", "http/1.1"), keyShareExt, echOuterExt, paddingExt, greaseB)
	splitHello   = handshake(typeClientHello, body(sniExt("split.example.test"), alpnExt("spdy/3", "h2")))
	longestName  = strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61) // 253 bytes
	label63      = strings.Repeat("x", 63) + ".test"
	alpn255      = strings.Repeat("p", 255)
	minimalHello = records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), vec16([]byte{0, 0x2f}), nullComp)))
)

func frame(n int, sni, alpn string, version int) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: Verb, Resource: sni, Aux: alpn, Args: version}
}

func more(n int) result { return result{Op: l7.OpMore, N: n} }

func pass() result { return result{Op: l7.OpPass} }

// parseCase is one input and the answer of a fresh parser.
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

// whole is a case whose input is one complete ClientHello.
func whole(name string, in []byte, sni, alpn string, version int) parseCase {
	return parseCase{name: name, in: in, want: frame(len(in), sni, alpn, version)}
}

func bad(name string, in []byte, err error) parseCase { return parseCase{name: name, in: in, err: err} }

var requestCases = []parseCase{
	// Well-formed.
	whole("minimal, no extensions", minimalHello, "", "", 0x0303),
	whole("empty extensions block", hello(), "", "", 0x0303),
	whole("sni", hello(sniExt("api.example.test")), "api.example.test", "", 0x0303),
	whole("sni and alpn", hello(sniExt("api.example.test"), alpnExt("h2", "http/1.1")), "api.example.test", "h2", 0x0303),
	whole("alpn only", hello(alpnExt("http/1.1")), "", "http/1.1", 0x0303),
	whole("sni lower-cased, final dot dropped", hello(sniExt("API.Example.TEST.")), "api.example.test", "", 0x0303),
	whole("sni single label", hello(sniExt("redis")), "redis", "", 0x0303),
	whole("sni with underscore, hyphen, digits", hello(sniExt("_svc-1.x0.test")), "_svc-1.x0.test", "", 0x0303),
	whole("sni an IPv4 literal", hello(sniExt("10.0.0.1")), "10.0.0.1", "", 0x0303),
	whole("sni of 253 bytes", hello(sniExt(longestName)), longestName, "", 0x0303),
	whole("sni of 253 bytes and a final dot", hello(sniExt(longestName+".")), longestName, "", 0x0303),
	whole("sni label of 63 bytes", hello(sniExt(label63)), label63, "", 0x0303),
	whole("sni other name type first", hello(ext(extServerName, vec16(hostEntry(7, "opaque\x00bytes"), hostEntry(0, "b.test")))), "b.test", "", 0x0303),
	whole("sni other name type only", hello(ext(extServerName, vec16(hostEntry(7, "x")))), "", "", 0x0303),
	whole("alpn of 255 bytes", hello(alpnExt(alpn255, "h2")), "", alpn255, 0x0303),
	whole("alpn binary protocol id", hello(alpnExt("\x00\xff", "h2")), "", "\x00\xff", 0x0303),
	whole("browser-like with GREASE, PQ key share, ECH outer, padding", browserLike, "www.example.com", "h2", 0x0303),
	whole("session id of 32 bytes", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(make([]byte, 32)), suites, nullComp, vec16(sniExt("s.test"))))), "s.test", "", 0x0303),
	whole("legacy version TLS 1.0", records(handshake(typeClientHello, cat(be16(0x0301), random32, vec8(), suites, nullComp, vec16(sniExt("old.test"))))), "old.test", "", 0x0301),
	whole("legacy version SSL 3.0, record 3.0", record(typeHandshake, 0x0300, handshake(typeClientHello, cat(be16(0x0300), random32, vec8(), suites, nullComp))), "", "", 0x0300),
	whole("record version 3.4", record(typeHandshake, 0x0304, handshake(typeClientHello, body(sniExt("a.test")))), "a.test", "", 0x0303),
	whole("two records", records(splitHello, 50), "split.example.test", "spdy/3", 0x0303),
	whole("handshake header split across records", records(splitHello, 1, 2, 1), "split.example.test", "spdy/3", 0x0303),
	whole("sni straddles records", records(splitHello, 66), "split.example.test", "spdy/3", 0x0303),
	whole("alpn straddles records", records(splitHello, len(splitHello)-5), "split.example.test", "spdy/3", 0x0303),
	whole("one-byte records", oneByteRecords(splitHello), "split.example.test", "spdy/3", 0x0303),
	whole("record of 2^14+2048 bytes", records(helloOfSize(MaxRecord, sniExt("big.test"))), "big.test", "", 0x0303),
	whole("handshake of 64 KiB in five records", records(helloOfSize(handshakeHeaderLen+MaxHandshake, sniExt("z.test")), 1<<14, 1<<14, 1<<14, 1<<14), "z.test", "", 0x0303),
	{name: "change_cipher_spec after the ClientHello", in: cat(hello(sniExt("a.test")), record(20, 0x0303, []byte{1})), want: frame(len(hello(sniExt("a.test"))), "a.test", "", 0x0303)},

	// Incomplete.
	{name: "nothing", in: nil, want: more(recordHeaderLen + handshakeHeaderLen + minHelloBody)},
	{name: "content type", in: []byte{22}, want: more(4 + handshakeHeaderLen + minHelloBody)},
	{name: "record version", in: []byte{22, 3, 1}, want: more(2 + handshakeHeaderLen + minHelloBody)},
	{name: "record header", in: []byte{22, 3, 1, 1, 0}, want: more(256)},
	{name: "small record header", in: []byte{22, 3, 1, 0, 10}, want: more(10 + recordHeaderLen + handshakeHeaderLen + minHelloBody - 10)},
	{name: "handshake header", in: []byte{22, 3, 1, 1, 0, 1, 0, 0, 252}, want: more(252)},
	{name: "handshake beyond the record", in: []byte{22, 3, 1, 0, 4, 1, 0, 1, 0}, want: more(recordHeaderLen + 256)},
	{name: "body in part", in: browserLike[:700], want: more(len(browserLike) - 700)},
	{name: "first of two records", in: records(splitHello, 50)[:55], want: more(recordHeaderLen + len(splitHello) - 50)},

	// Malformed.
	bad("SSLv2-compatible ClientHello", []byte("\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"), l7.ErrMalformed),
	bad("alert record first", record(21, 0x0301, []byte{2, 40}), l7.ErrMalformed),
	bad("application data first", record(23, 0x0303, []byte("hello")), l7.ErrMalformed),
	bad("HTTP request", []byte("GET / HTTP/1.1\r\n\r\n"), l7.ErrMalformed),
	bad("record major version 2", record(typeHandshake, 0x0201, handshake(typeClientHello, body())), l7.ErrMalformed),
	bad("record minor version 5", record(typeHandshake, 0x0305, handshake(typeClientHello, body())), l7.ErrMalformed),
	bad("empty record", []byte{22, 3, 1, 0, 0}, l7.ErrMalformed),
	bad("ServerHello", records(handshake(2, body())), l7.ErrMalformed),
	bad("handshake shorter than a ClientHello", records(handshake(typeClientHello, make([]byte, minHelloBody-1))), l7.ErrMalformed),
	bad("record holds bytes after the ClientHello", record(typeHandshake, 0x0301, cat(handshake(typeClientHello, body()), []byte{0})), l7.ErrMalformed),
	bad("second record overshoots", cat(record(typeHandshake, 0x0301, splitHello[:10]), record(typeHandshake, 0x0301, cat(splitHello[10:], []byte{1}))), l7.ErrMalformed),
	bad("alert between the records", cat(record(typeHandshake, 0x0301, splitHello[:10]), record(21, 0x0301, []byte{2, 40})), l7.ErrMalformed),
	bad("legacy version 2.0", records(handshake(typeClientHello, cat(be16(0x0200), random32, vec8(), suites, nullComp))), l7.ErrMalformed),
	bad("session id of 33 bytes", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(make([]byte, 33)), suites, nullComp))), l7.ErrMalformed),
	bad("session id past the end", records(handshake(typeClientHello, cat(be16(0x0303), random32, []byte{32}, make([]byte, 8)))), l7.ErrMalformed),
	bad("no cipher suites", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), vec16(), nullComp, make([]byte, 4)))), l7.ErrMalformed),
	bad("odd cipher suites", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), vec16([]byte{0x13, 0x01, 0x13}), nullComp))), l7.ErrMalformed),
	bad("cipher suites past the end", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), be16(100), make([]byte, 6)))), l7.ErrMalformed),
	bad("no compression methods", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, vec8(), make([]byte, 2)))), l7.ErrMalformed),
	bad("compression methods past the end", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, []byte{9, 0}))), l7.ErrMalformed),
	bad("one byte of extensions length", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, nullComp, []byte{0}))), l7.ErrMalformed),
	bad("extensions block too short", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, nullComp, be16(4), ext(21, make([]byte, 2))))), l7.ErrMalformed),
	bad("extensions block too long", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, nullComp, be16(9), ext(21, make([]byte, 2))))), l7.ErrMalformed),
	bad("extension past the block", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, nullComp, be16(6), be16(21), be16(3), []byte{0, 0}))), l7.ErrMalformed),
	bad("extension header cut", records(handshake(typeClientHello, cat(be16(0x0303), random32, vec8(), suites, nullComp, be16(3), be16(21), []byte{0}))), l7.ErrMalformed),
	bad("two server_name extensions", hello(sniExt("a.test"), sniExt("b.test")), l7.ErrMalformed),
	bad("two ALPN extensions", hello(alpnExt("h2"), alpnExt("http/1.1")), l7.ErrMalformed),
	bad("two host names", hello(sniExt("a.test", "b.test")), l7.ErrMalformed),
	bad("empty server_name extension", hello(ext(extServerName)), l7.ErrMalformed),
	bad("empty server name list", hello(ext(extServerName, vec16())), l7.ErrMalformed),
	bad("server name list shorter than the extension", hello(ext(extServerName, vec16(hostEntry(0, "a.test")), []byte{0})), l7.ErrMalformed),
	bad("server name past the list", hello(ext(extServerName, be16(5), []byte{0}, be16(9), []byte("ab"))), l7.ErrMalformed),
	bad("empty host name", hello(sniExt("")), l7.ErrMalformed),
	bad("host name a dot", hello(sniExt(".")), l7.ErrMalformed),
	bad("host name two final dots", hello(sniExt("a.test..")), l7.ErrMalformed),
	bad("host name empty label", hello(sniExt("a..test")), l7.ErrMalformed),
	bad("host name leading dot", hello(sniExt(".a.test")), l7.ErrMalformed),
	bad("host name label of 64 bytes", hello(sniExt(strings.Repeat("x", 64)+".test")), l7.ErrMalformed),
	bad("host name with a space", hello(sniExt("a b.test")), l7.ErrMalformed),
	bad("host name with NUL", hello(sniExt("a.test\x00.evil")), l7.ErrMalformed),
	bad("host name with a colon", hello(sniExt("a.test:443")), l7.ErrMalformed),
	bad("host name IPv6 literal", hello(sniExt("::1")), l7.ErrMalformed),
	bad("host name wildcard", hello(sniExt("*.test")), l7.ErrMalformed),
	bad("host name UTF-8", hello(sniExt("bücher.test")), l7.ErrMalformed),
	bad("empty ALPN extension", hello(ext(extALPN)), l7.ErrMalformed),
	bad("empty ALPN list", hello(ext(extALPN, vec16())), l7.ErrMalformed),
	bad("empty ALPN protocol", hello(alpnExt("h2", "")), l7.ErrMalformed),
	bad("ALPN protocol past the list", hello(ext(extALPN, be16(3), []byte{5, 'h', '2'})), l7.ErrMalformed),
	bad("ALPN list shorter than the extension", hello(ext(extALPN, vec16(vec8([]byte("h2"))), []byte{0})), l7.ErrMalformed),

	// Over a limit.
	bad("record over 2^14+2048 bytes", []byte{22, 3, 1, 0x48, 0x01}, l7.ErrTooLong),
	bad("handshake over 64 KiB", []byte{22, 3, 1, 0, 4, 1, 1, 0, 1}, l7.ErrTooLong),
	bad("records over 128 KiB", oneByteRecords(handshake(typeClientHello, body(ext(21, make([]byte, MaxMessage/6))))), l7.ErrTooLong),
	bad("host name of 254 bytes", hello(sniExt(longestName+"b")), l7.ErrTooLong),
	bad("host name of 255 bytes with a final dot", hello(sniExt(longestName+"b.")), l7.ErrTooLong),
	bad("host name of 1000 bytes", hello(sniExt(strings.Repeat("a.", 500))), l7.ErrTooLong),
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

var replyCases = []parseCase{
	{name: "server hello", in: record(typeHandshake, 0x0303, []byte{2, 0, 0, 0}), want: pass()},
	{name: "alert", in: []byte{21, 3, 3, 0, 2, 2, 40}, want: pass()},
	{name: "record header start", in: []byte{22, 3}, want: pass()},
	{name: "change cipher spec", in: []byte{20, 3, 3}, want: pass()},
	{name: "application data", in: []byte{23, 3, 3}, want: pass()},
	{name: "nothing", in: nil, want: more(2)},
	{name: "content type only", in: []byte{22}, want: more(1)},
	{name: "HTTP response", in: []byte("HTTP/1.1 400 Bad Request\r\n"), err: l7.ErrMalformed},
	{name: "MySQL greeting", in: []byte("\x4a\x00\x00\x00\x0a8.0.36"), err: l7.ErrMalformed},
	{name: "SSLv2 server hello", in: []byte{0x80, 0x2e, 0x04}, err: l7.ErrMalformed},
	{name: "version 2", in: []byte{22, 2, 0}, err: l7.ErrMalformed},
	{name: "heartbeat", in: []byte{24, 3, 3}, err: l7.ErrMalformed},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// TestPassAfterClientHello checks that once the ClientHello is framed every
// call, in either direction and whatever the bytes, passes; and that a
// parser that has not seen the ClientHello still judges a reply.
func TestPassAfterClientHello(t *testing.T) {
	in := cat(hello(sniExt("a.test")), record(20, 0x0303, []byte{1}), []byte("anything"))
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, in); r.Op != l7.OpFrame {
		t.Fatalf("first call: %v", r)
	}
	for _, tt := range []struct {
		dir  l7.Dir
		data []byte
	}{
		{l7.DirRequest, in[len(hello(sniExt("a.test"))):]},
		{l7.DirRequest, nil},
		{l7.DirRequest, in},
		{l7.DirReply, []byte("not TLS at all")},
		{l7.DirReply, nil},
	} {
		if r := parse(t, p, tt.dir, tt.data); r != pass() {
			t.Fatalf("%v %q after the ClientHello: %v, want pass", tt.dir, tt.data, r)
		}
	}
	if r := parse(t, NewParser(), l7.DirReply, []byte("not TLS")); !errors.Is(r.Err, l7.ErrMalformed) {
		t.Fatalf("reply before any ClientHello: %v, want ErrMalformed", r)
	}
}

// complete returns the cases whose input starts with a complete
// ClientHello, cut to it.
func complete() map[string][]byte {
	out := map[string][]byte{}
	for _, c := range requestCases {
		if c.err == nil && c.want.Op == l7.OpFrame {
			out[c.name] = c.in[:c.want.N]
		}
	}
	return out
}

// TestOneByteAtATime feeds each ClientHello one byte at a time to one
// parser: every answer before the last byte must be OpMore with a count
// that does not overshoot the message, and the last one must equal a fresh
// parse of the whole message.
func TestOneByteAtATime(t *testing.T) {
	msgs := complete()
	for _, name := range l7test.Recordings(t, ".req") {
		b := l7test.ReadFile(t, name)
		r := parse(t, NewParser(), l7.DirRequest, b)
		msgs[filepath.Base(name)] = b[:r.N]
	}
	for name, msg := range msgs {
		t.Run(name, func(t *testing.T) {
			want := parse(t, NewParser(), l7.DirRequest, msg)
			step := 1
			if len(msg) > 4096 {
				step = 7 // the 64 KiB cases: every 7th prefix
			}
			l7test.BytewiseWith(t, parser(NewParser(), l7.DirRequest), msg, want, l7test.Feed{Step: step})
		})
	}
}

// TestEverySplitPoint cuts each recorded client stream, and each ClientHello
// of the cases, in two at every offset: the answers must be those of the
// uncut stream.
func TestEverySplitPoint(t *testing.T) {
	inputs := map[string][]byte{}
	for name, msg := range complete() {
		if len(msg) <= 4096 {
			inputs[name] = msg
		}
	}
	for _, name := range l7test.Recordings(t, ".req") {
		inputs[filepath.Base(name)] = l7test.ReadFile(t, name)
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			want := wholeStream(t, l7.DirRequest, data)
			if len(want) != 2 || want[0].Op != l7.OpFrame || want[1] != pass() {
				t.Fatalf("whole stream: %v, want a frame then pass", want)
			}
			step := 1 + len(data)/4096
			l7test.EverySplitStep(t, newParser, data, want, nil, step)
		})
	}
}

// TestRandomChunks feeds the recorded client streams in random chunks, many
// times, to one parser each.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range l7test.Recordings(t, ".req") {
		data := l7test.ReadFile(t, name)
		want := wholeStream(t, l7.DirRequest, data)
		t.Run(filepath.Base(name), func(t *testing.T) {
			l7test.RandomChunks(t, rng, newParser, data, want, 300, 100, nil)
		})
	}
}

func newParser() l7test.ParseFunc[result] { return parser(NewParser(), l7.DirRequest) }

// TestParserKeepsItsPlace shows that after OpMore a parser resumes where it
// stopped, and starts over when handed a shorter input.
func TestParserKeepsItsPlace(t *testing.T) {
	msg := records(helloOfSize(400, sniExt("split.example.test"), alpnExt("spdy/3", "h2")), 20, 20)
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, msg[:200]); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	if p.req.pos != 50 || p.req.got != 40 {
		t.Fatalf("after two whole records: pos %d, got %d", p.req.pos, p.req.got)
	}
	// A shorter input than the last one starts over.
	other := hello(sniExt("other.test"))
	if r := parse(t, p, l7.DirRequest, other); r != frame(len(other), "other.test", "", 0x0303) {
		t.Fatalf("after a shorter input: %v", r)
	}
	p = NewParser()
	parse(t, p, l7.DirRequest, msg[:200])
	// The buffer may move: the parser keeps offsets, not pointers.
	moved := append([]byte(nil), msg...)
	if r := parse(t, p, l7.DirRequest, moved); r != frame(len(msg), "split.example.test", "spdy/3", 0x0303) {
		t.Fatalf("moved buffer: %v", r)
	}
}

// TestErrorsReset checks that a parser carries no state past an error.
func TestErrorsReset(t *testing.T) {
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, records(handshake(2, body()))); r.Err == nil {
		t.Fatalf("want an error, got %v", r)
	}
	in := hello(sniExt("a.test"))
	if r := parse(t, p, l7.DirRequest, in); r != frame(len(in), "a.test", "", 0x0303) {
		t.Fatalf("after an error: %v", r)
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	in := hello(sniExt("a.test"))
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, in, nil); op != l7.OpFrame || n != len(in) || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := NewParser().Parse(l7.Dir(7), in, &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirRequest, in); r != frame(len(in), "a.test", "", 0x0303) {
		t.Fatalf("zero Parser: %v", r)
	}
}

// TestFrameResetsFields checks that a frame leaves nothing of what the
// Frame held before.
func TestFrameResetsFields(t *testing.T) {
	f := l7.Frame{Sub: []byte("x"), Resource: []byte("old"), Aux: []byte("old"), NMore: 2, Overflow: true, Err: true, NoReply: true, Partial: true}
	in := hello()
	if op, _, err := NewParser().Parse(l7.DirRequest, in, &f); op != l7.OpFrame || err != nil {
		t.Fatal(op, err)
	}
	want := l7.Frame{Dir: l7.DirRequest, Verb: verb, Args: 0x0303}
	if f.Sub != nil || f.Resource != nil || f.Aux != nil || f.NMore != 0 || f.Overflow || f.Err || f.NoReply || f.Partial || f.Args != want.Args {
		t.Fatalf("frame %+v, want %+v", f, want)
	}
}

func TestViewsCannotGrowIntoOtherFields(t *testing.T) {
	p := NewParser()
	var f l7.Frame
	if _, _, err := p.Parse(l7.DirRequest, hello(sniExt("a.test"), alpnExt("h2")), &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Verb, 'X')
	_ = append(f.Resource, 'X')
	_ = append(f.Aux, 'X')
	if string(verb) != Verb || string(f.Resource) != "a.test" || string(f.Aux) != "h2" || p.sni[len("a.test")] == 'X' {
		t.Fatalf("appending to a view changed the parser: verb %q res %q aux %q", verb, f.Resource, f.Aux)
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "tls" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || !pr.CloseOnDeny || pr.ServerFirst || pr.MaxMessage != MaxMessage {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if _, ok := pr.New().(*Parser); !ok {
		t.Fatalf("New() returned %T", pr.New())
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

// walkRecords returns the content types of the TLS records data holds, and
// whether they fill it exactly.
func walkRecords(data []byte) (types []byte, exact bool) {
	i := 0
	for i+recordHeaderLen <= len(data) {
		types = append(types, data[i])
		i += recordHeaderLen + (int(data[i+3])<<8 | int(data[i+4]))
	}
	return types, i == len(data)
}

// TestRecorded parses the bytes recorded from real clients and from
// openssl s_server (see testdata/README.md). Each client stream is one
// ClientHello frame, ending on a record boundary, then OpPass for the
// rest; each server stream is OpPass at once (TLS has no reply to count:
// after the ClientHello the connection is spliced).
func TestRecorded(t *testing.T) {
	tests := []struct {
		file, reply string
		sni, alpn   string
		version     int
		records     int // records carrying the ClientHello
	}{
		{"openssl-3.0-s_client-tls13-sni.req", "openssl-3.0-s_server-tls13-sni.reply", "api.example.test", "", 0x0303, 1},
		// Sent as "API.Example.Test.".
		{"openssl-3.0-s_client-tls12-alpn.req", "openssl-3.0-s_server-tls12-alpn.reply", "api.example.test", "http/1.1", 0x0303, 1},
		{"openssl-3.0-s_client-noservername.req", "openssl-3.0-s_server-noservername.reply", "", "", 0x0303, 1},
		{"openssl-3.0-s_client-fragmented-512.req", "openssl-3.0-s_server-fragmented-512.reply", "api.example.test", "http/1.1", 0x0303, 4},
		{"openssl-3.0-s_client-tls10.req", "openssl-3.0-s_server-tls10.reply", "api.example.test", "", 0x0301, 1},
		{"curl-7.88-https.req", "openssl-3.0-s_server-curl-https.reply", "api.example.test", "h2", 0x0303, 1},
		{"go-1.26-crypto-tls-pq.req", "openssl-3.0-s_server-go-pq.reply", "api.example.test", "h2", 0x0303, 1},
		{"go-1.26-crypto-tls-classic.req", "openssl-3.0-s_server-go-classic.reply", "api.example.test", "http/1.1", 0x0303, 1},
		{"go-1.26-crypto-tls-large-alpn.req", "openssl-3.0-s_server-go-large-alpn.reply", "api.example.test", "http/1.1", 0x0303, 2},
	}
	if n := len(l7test.Recordings(t, ".req")); n != len(tests) {
		t.Fatalf("%d recordings, %d expectations", n, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := l7test.ReadFile(t, filepath.Join("testdata", tt.file))
			rs := wholeStream(t, l7.DirRequest, data)
			if len(rs) != 2 || rs[1] != pass() {
				t.Fatalf("answers %v, want a frame then pass", rs)
			}
			if want := frame(rs[0].N, tt.sni, tt.alpn, tt.version); rs[0] != want {
				t.Fatalf("got %v, want %v", rs[0], want)
			}
			types, exact := walkRecords(data[:rs[0].N])
			if !exact || len(types) != tt.records || bytes.Count(types, []byte{typeHandshake}) != tt.records {
				t.Fatalf("frame covers records %v (exact %v), want %d handshake records", types, exact, tt.records)
			}
			if !Sniff(data) {
				t.Fatal("Sniff does not recognise the recording")
			}
			rep := l7test.ReadFile(t, filepath.Join("testdata", tt.reply))
			if rs := wholeStream(t, l7.DirReply, rep); len(rs) != 1 || rs[0] != pass() {
				t.Fatalf("%s: %v, want pass", tt.reply, rs)
			}
			if _, exact := walkRecords(rep); !exact {
				t.Fatalf("%s does not hold whole TLS records", tt.reply)
			}
		})
	}
}

func TestDenyGolden(t *testing.T) {
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"tls 1.2 and 1.3 client", &l7.Frame{Verb: verb, Resource: []byte("api.example.test"), Args: 0x0303}, "l7_not_allowed"},
		{"tls 1.0 client", &l7.Frame{Verb: verb, Args: 0x0301}, "no_rule"},
		{"tls 1.1 client", &l7.Frame{Verb: verb, Args: 0x0302}, ""},
		{"ssl 3.0 client", &l7.Frame{Verb: verb, Args: 0x0300}, ""},
		{"legacy version above 1.2", &l7.Frame{Verb: verb, Args: 0x0304}, ""},
		{"no version", &l7.Frame{}, "malformed"},
		{"nil frame", nil, "a\r\nb\x00c"},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if len(out) != DenyLen || out[0] != typeAlert || out[1] != 3 || out[2] > 3 || out[3] != 0 || out[4] != 2 || out[5] != 2 || out[6] != 49 {
			t.Errorf("%s: %x is not a fatal access_denied alert record", tt.name, out)
		}
		if r := parse(t, NewParser(), l7.DirReply, out); r != pass() {
			t.Errorf("%s: the reply parser answers %v", tt.name, r)
		}
		if got := Deny([]byte("prefix"), tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append: %q", tt.name, got)
		}
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, hex.EncodeToString(out))
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

func TestDenyUsesTheParsedVersion(t *testing.T) {
	for _, name := range []string{"openssl-3.0-s_client-tls10.req", "go-1.26-crypto-tls-pq.req"} {
		data := l7test.ReadFile(t, filepath.Join("testdata", name))
		var f l7.Frame
		if op, _, err := NewParser().Parse(l7.DirRequest, data, &f); op != l7.OpFrame || err != nil {
			t.Fatal(op, err)
		}
		out := Deny(nil, &f, "")
		if v := int(out[1])<<8 | int(out[2]); v != int(data[9])<<8|int(data[10]) {
			t.Errorf("%s: alert version %#04x, ClientHello legacy_version %#04x", name, v, data[9:11])
		}
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"client hello", string(hello(sniExt("a.test"))), true},
		{"record header only", "\x16\x03\x01\x02\x00", true},
		{"three bytes", "\x16\x03\x01", true},
		{"six bytes", "\x16\x03\x01\x02\x00\x01", true},
		{"record version 3.0", "\x16\x03\x00\x00\x40\x01\x00\x00\x3c\x03\x00", true},
		{"record version 3.4", "\x16\x03\x04\x00\x40\x01", true},
		{"one-byte records", "\x16\x03\x01\x00\x01\x01\x16\x03\x01\x00\x01\x00\x16", true},
		{"four-byte record", "\x16\x03\x01\x00\x04\x01\x00\x01\x00\x16\x03\x01", true},
		{"two bytes", "\x16\x03", false},
		{"one byte", "\x16", false},
		{"empty", "", false},
		{"record version 3.5", "\x16\x03\x05\x00\x40", false},
		{"record version 2.1", "\x16\x02\x01\x00\x40", false},
		{"empty record", "\x16\x03\x01\x00\x00", false},
		{"record too long", "\x16\x03\x01\x48\x01", false},
		{"server hello", "\x16\x03\x03\x00\x40\x02", false},
		{"handshake too short", "\x16\x03\x01\x00\x40\x01\x00\x00\x10", false},
		{"handshake shorter than the record", "\x16\x03\x01\x01\x00\x01\x00\x00\x30", false},
		{"handshake too long", "\x16\x03\x01\x40\x00\x01\x01\x00\x01", false},
		{"legacy version 2", "\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x02\x00", false},
		{"SSLv2 client hello", "\x80\x2e\x01\x03\x01\x00\x15", false},
		{"alert", "\x15\x03\x03\x00\x02\x02\x28", false},
		{"application data", "\x17\x03\x03\x00\x10", false},
		{"redis multibulk", "*1\r\n$4\r\nPING\r\n", false},
		{"redis inline", "PING\r\n", false},
		{"HTTP/1.1", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"memcached text", "get k\r\n", false},
		{"memcached binary", "\x80\x00\x00\x01\x00\x00\x00\x00", false},
		{"MySQL greeting", "\x4a\x00\x00\x00\x0a8.0.36\x00", false},
		{"PostgreSQL SSLRequest", "\x00\x00\x00\x08\x04\xd2\x16\x2f", false},
		{"PostgreSQL startup", "\x00\x00\x00\x29\x00\x03\x00\x00user\x00app\x00", false},
		{"Kafka request", "\x00\x00\x00\x1f\x00\x12\x00\x03\x00\x00\x00\x01", false},
		{"MongoDB OP_MSG of 0x316 bytes", "\x16\x03\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00", false},
		{"DNS over TCP", "\x00\x1d\xab\xcd\x01\x00\x00\x01", false},
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
	for _, name := range l7test.Recordings(t, ".reply") {
		if Sniff(l7test.ReadFile(t, name)) {
			t.Errorf("Sniff takes the server's %s for a client", name)
		}
	}
}

// reuse readies p for another ClientHello, as a new connection's parser.
func reuse(p *Parser) { p.passed, p.req = false, reqState{} }

func TestZeroAllocations(t *testing.T) {
	requests := map[string][]byte{
		"browser-like":  browserLike,
		"one-byte":      oneByteRecords(splitHello),
		"go-pq":         l7test.ReadFile(t, "testdata/go-1.26-crypto-tls-pq.req"),
		"fragmented":    l7test.ReadFile(t, "testdata/openssl-3.0-s_client-fragmented-512.req"),
		"large-alpn":    l7test.ReadFile(t, "testdata/go-1.26-crypto-tls-large-alpn.req"),
		"malformed sni": hello(sniExt("a b")),
	}
	p := NewParser()
	var f l7.Frame
	for name, data := range requests {
		if n := testing.AllocsPerRun(100, func() {
			reuse(p)
			// Prefix then whole: covers resuming after OpMore; then
			// the pass that follows the frame.
			p.Parse(l7.DirRequest, data[:len(data)/2], &f)
			p.Parse(l7.DirRequest, data, &f)
			p.Parse(l7.DirRequest, data, &f)
		}); n != 0 {
			t.Errorf("request %s: %v allocations per Parse, want 0", name, n)
		}
	}
	reply := l7test.ReadFile(t, "testdata/openssl-3.0-s_server-go-pq.reply")
	junk := []byte("HTTP/1.1 200 OK\r\n")
	rp := NewParser()
	if n := testing.AllocsPerRun(100, func() {
		rp.Parse(l7.DirReply, reply, &f)
		rp.Parse(l7.DirReply, junk, nil)
	}); n != 0 {
		t.Errorf("reply: %v allocations", n)
	}
	buf := make([]byte, 0, 64)
	deny := &l7.Frame{Verb: verb, Args: 0x0301}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], deny, "no rule allows it") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { Sniff(browserLike) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func benchHello(b *testing.B, data []byte) {
	b.Helper()
	p := NewParser()
	var f l7.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		reuse(p)
		op, n, err := p.Parse(l7.DirRequest, data, &f)
		if op != l7.OpFrame || n != len(data) || err != nil {
			b.Fatalf("%v %d %v", op, n, err)
		}
	}
}

// BenchmarkParseRequest parses one ClientHello per op (ns/op is ns per
// message).
func BenchmarkParseRequest(b *testing.B) {
	hello := func(name string) []byte {
		data := l7test.ReadFile(b, filepath.Join("testdata", name))
		var f l7.Frame
		_, n, err := NewParser().Parse(l7.DirRequest, data, &f)
		if err != nil {
			b.Fatal(err)
		}
		return data[:n]
	}
	b.Run("openssl-tls13", func(b *testing.B) { benchHello(b, hello("openssl-3.0-s_client-tls13-sni.req")) })
	b.Run("curl", func(b *testing.B) { benchHello(b, hello("curl-7.88-https.req")) })
	b.Run("go-pq", func(b *testing.B) { benchHello(b, hello("go-1.26-crypto-tls-pq.req")) })
	b.Run("openssl-4-records", func(b *testing.B) { benchHello(b, hello("openssl-3.0-s_client-fragmented-512.req")) })
	b.Run("go-large-alpn-2-records", func(b *testing.B) { benchHello(b, hello("go-1.26-crypto-tls-large-alpn.req")) })
	b.Run("one-byte-records", func(b *testing.B) { benchHello(b, oneByteRecords(splitHello)) })
	// The PQ ClientHello arriving in 512-byte reads, as from a small MSS.
	b.Run("go-pq-in-512B-reads", func(b *testing.B) {
		data := hello("go-1.26-crypto-tls-pq.req")
		p := NewParser()
		var f l7.Frame
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			reuse(p)
			for end := 512; ; end = min(end+512, len(data)) {
				op, _, err := p.Parse(l7.DirRequest, data[:end], &f)
				if err != nil {
					b.Fatal(err)
				}
				if op == l7.OpFrame {
					break
				}
			}
		}
	})
}

func BenchmarkSniff(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !Sniff(browserLike) {
			b.Fatal("not sniffed")
		}
	}
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 64)
	f := &l7.Frame{Verb: verb, Args: 0x0303}
	b.ReportAllocs()
	b.SetBytes(DenyLen)
	for b.Loop() {
		buf = Deny(buf[:0], f, "no rule allows it")
	}
}
