package http1

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	IsErr    bool
	Partial  bool
}

func (r result) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("error %v", r.Err)
	case r.Op == l7.OpMore:
		return fmt.Sprintf("more %d", r.N)
	case r.Op == l7.OpPass:
		return "pass"
	case r.Op == l7.OpSkip:
		return fmt.Sprintf("skip %d", r.N)
	}
	return fmt.Sprintf("frame %d {%v verb=%q res=%q aux=%q err=%v partial=%v}",
		r.N, r.Dir, r.Verb, r.Resource, r.Aux, r.IsErr, r.Partial)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	switch op {
	case l7.OpMore, l7.OpPass:
		return result{Op: op, N: n}
	case l7.OpSkip:
		return result{Op: op, N: n, Dir: f.Dir}
	}
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Resource: string(f.Resource),
		Aux: string(f.Aux), IsErr: f.Err, Partial: f.Partial}
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
	l7test.Check{Pass: true, ViewOK: func(field string, msg, v []byte) bool {
		switch field {
		case "resource":
			return l7test.Within(msg, v) || l7test.Within(p.path[:], v)
		case "aux":
			return l7test.Within(msg, v) || l7test.Within(p.host[:], v)
		}
		return l7test.Within(msg, v)
	}}.Answer(t, dir, data, op, n, err, f)
	if err != nil || (op != l7.OpFrame && op != l7.OpSkip) {
		return
	}
	if len(f.Resource) > MaxPath || len(f.Aux) > MaxHost {
		t.Fatalf("%q: field over its limit", data)
	}
	if op == l7.OpSkip && (f.Verb != nil || f.Resource != nil || f.Partial) {
		t.Fatalf("%q: OpSkip with fields set: %+v", data, f)
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

func whole(t testing.TB, p *Parser, dir l7.Dir, data []byte) []result {
	t.Helper()
	return stream(t, p, dir, data, []int{len(data)})
}

// canon reduces a stream's answers to what does not depend on how the
// input was cut: each frame with its end offset in N, skips folded away,
// then the final answer (OpMore with the bytes consumed before it, so that
// a body's pieces must add up; an error or OpPass as is).
func canon(rs []result) []result {
	var out []result
	off := 0
	for _, r := range rs {
		switch {
		case r.Err != nil || r.Op == l7.OpPass:
			out = append(out, r)
		case r.Op == l7.OpMore:
			out = append(out, result{Op: l7.OpMore, N: off})
		case r.Op == l7.OpSkip:
			off += r.N
		default:
			off += r.N
			r.N = off
			out = append(out, r)
		}
	}
	return out
}

func req(n int, verb, res, aux string) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Resource: res, Aux: aux}
}

// rep is a final response frame, part an interim or head frame.
func rep(n int, isErr bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, IsErr: isErr}
}

func part(n int, isErr bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, IsErr: isErr, Partial: true}
}

func skip(dir l7.Dir, n int) result { return result{Op: l7.OpSkip, N: n, Dir: dir} }

func more(n int) result { return result{Op: l7.OpMore, N: n} }

var pass = result{Op: l7.OpPass}

// parseCase is one input and the first answer of a fresh parser that was
// first fed ctx in the request direction (so that it knows what replies
// answer).
type parseCase struct {
	name string
	ctx  string
	in   string
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

// first is the answer wanted, with N = len(in) for a frame of N 0 (the
// input is one message).
func (c parseCase) first() result {
	w := c.want
	if w.Op == l7.OpFrame && w.N == 0 {
		w.N = len(c.in)
	}
	return w
}

func (c parseCase) check(t *testing.T, dir l7.Dir) {
	t.Helper()
	p := NewParser()
	if c.ctx != "" {
		rs := whole(t, p, l7.DirRequest, []byte(c.ctx))
		if last := rs[len(rs)-1]; last.Op != l7.OpMore || last.Err != nil {
			t.Fatalf("context %q: %v", c.ctx, rs)
		}
	}
	got := parse(t, p, dir, []byte(c.in))
	want := c.first()
	if c.err != nil {
		if !errors.Is(got.Err, c.err) {
			t.Fatalf("Parse(%q) = %v, want error %v", c.in, got, c.err)
		}
		return
	}
	if got != want {
		t.Fatalf("Parse(%q)\n got %v\nwant %v", c.in, got, want)
	}
}

const h = "Host: example.com\r\n"

func get(target string) string { return "GET " + target + " HTTP/1.1\r\n" + h + "\r\n" }

var requestCases = []parseCase{
	{name: "get", in: "GET /index.html HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\n",
		want: req(0, "GET", "/index.html", "example.com")},
	{name: "http/1.0 without host", in: "GET /a HTTP/1.0\r\n\r\n", want: req(0, "GET", "/a", "")},
	{name: "http/1.0 with host", in: "GET /a HTTP/1.0\r\nHost: b\r\n\r\n", want: req(0, "GET", "/a", "b")},
	{name: "query and fragment dropped", in: get("/a/b?x=1&y=/../z#frag"), want: req(0, "GET", "/a/b", "example.com")},
	{name: "percent-decoded", in: get("/%61dmin"), want: req(0, "GET", "/admin", "example.com")},
	{name: "dot segment", in: get("/./admin"), want: req(0, "GET", "/admin", "example.com")},
	{name: "double slash", in: get("//admin"), want: req(0, "GET", "/admin", "example.com")},
	{name: "dot-dot", in: get("/public/../admin"), want: req(0, "GET", "/admin", "example.com")},
	{name: "path parameters", in: get("/admin;jsessionid=1/x;v=2"), want: req(0, "GET", "/admin/x", "example.com")},
	{name: "encoded slash kept", in: get("/a%2fb"), want: req(0, "GET", "/a%2Fb", "example.com")},
	{name: "absolute form", in: "GET http://Example.com:80/%61dmin?q HTTP/1.1\r\nHost: other.example\r\n\r\n",
		want: req(0, "GET", "/admin", "example.com")},
	{name: "absolute form https without path", in: "GET HTTPS://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", want: req(0, "GET", "/", "a.b")},
	{name: "absolute form query without path", in: "GET http://a.b?x HTTP/1.1\r\nHost: a.b\r\n\r\n", want: req(0, "GET", "/", "a.b")},
	{name: "connect", in: "CONNECT Example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		want: req(0, "CONNECT", "example.com:443", "example.com")},
	{name: "connect ipv6", in: "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", want: req(0, "CONNECT", "[::1]:443", "[::1]")},
	{name: "options star", in: "OPTIONS * HTTP/1.1\r\n" + h + "\r\n", want: req(0, "OPTIONS", "*", "example.com")},
	{name: "host ipv6", in: "GET / HTTP/1.1\r\nHost: [FE80::1]:8080\r\n\r\n", want: req(0, "GET", "/", "[fe80::1]")},
	{name: "host trailing dot", in: "GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", want: req(0, "GET", "/", "example.com")},
	{name: "host empty", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n", want: req(0, "GET", "/", "")},
	{name: "host with whitespace", in: "GET / HTTP/1.1\r\nHost: \t a \t\r\n\r\n", want: req(0, "GET", "/", "a")},
	{name: "host with empty port", in: "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", want: req(0, "GET", "/", "a")},
	{name: "lower-case header names", in: "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n", want: req(0, "POST", "/x", "a")},
	{name: "extension method", in: "PROPFIND /dav HTTP/1.1\r\n" + h + "\r\n", want: req(0, "PROPFIND", "/dav", "example.com")},
	{name: "method as sent", in: "get / HTTP/1.1\r\n" + h + "\r\n", want: req(0, "get", "/", "example.com")},
	{name: "method of 64 bytes", in: strings.Repeat("M", 64) + " / HTTP/1.1\r\n" + h + "\r\n",
		want: req(0, strings.Repeat("M", 64), "/", "example.com")},
	{name: "upgrade request", in: "GET /ws HTTP/1.1\r\n" + h + "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
		want: req(0, "GET", "/ws", "example.com")},
	{name: "obs-text and tab in a value", in: "GET / HTTP/1.1\r\n" + h + "X-Name: caf\xc3\xa9\tau lait\r\n\r\n",
		want: req(0, "GET", "/", "example.com")},
	{name: "empty header value", in: "GET / HTTP/1.1\r\n" + h + "X-Empty:\r\n\r\n", want: req(0, "GET", "/", "example.com")},
	{name: "pipelined", in: get("/1") + get("/2"), want: req(len(get("/1")), "GET", "/1", "example.com")},
	{name: "leading empty line", in: "\r\n" + get("/"), want: skip(l7.DirRequest, 2)},
	{name: "odd characters", in: get("/a{b}|c\\d"), want: req(0, "GET", "/a{b}|c%5Cd", "example.com")},

	// Incomplete.
	{name: "nothing", in: "", want: more(2)},
	{name: "a byte", in: "G", want: more(4)},
	{name: "a CR", in: "\r", want: more(1)},
	{name: "request line", in: "GET / HTTP/1.1", want: more(4)},
	{name: "request line CR", in: "GET / HTTP/1.1\r", want: more(3)},
	{name: "request line CRLF", in: "GET / HTTP/1.1\r\n", want: more(2)},
	{name: "header CRLF", in: "GET / HTTP/1.1\r\nHost: a\r\n", want: more(2)},
	{name: "last CR", in: "GET / HTTP/1.1\r\nHost: a\r\n\r", want: more(1)},

	// Malformed.
	{name: "LF line ends", in: "GET / HTTP/1.1\nHost: a\n\n", err: l7.ErrMalformed},
	{name: "bare LF in a header", in: "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", err: l7.ErrMalformed},
	{name: "bare CR in a header", in: "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", err: l7.ErrMalformed},
	{name: "leading LF", in: "\nGET / HTTP/1.1\r\n", err: l7.ErrMalformed},
	{name: "leading bare CR", in: "\rGET", err: l7.ErrMalformed},
	{name: "two spaces", in: "GET  / HTTP/1.1\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "trailing space", in: "GET / HTTP/1.1 \r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "no version", in: "GET /\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "tab separator", in: "GET\t/ HTTP/1.1\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", err: l7.ErrMalformed},
	{name: "lower-case version", in: "GET / http/1.1\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "method not a token", in: "G(T / HTTP/1.1\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "empty method", in: " / HTTP/1.1\r\n" + h + "\r\n", err: l7.ErrMalformed},
	{name: "control byte in the request line", in: "GET /\x01 HTTP/1.1\r\n", err: l7.ErrMalformed},
	{name: "non-ASCII in the target", in: "GET /caf\xc3\xa9 HTTP/1.1\r\n", err: l7.ErrMalformed},
	{name: "NUL in a header", in: "GET / HTTP/1.1\r\nX: a\x00b\r\n", err: l7.ErrMalformed},
	{name: "DEL in a header", in: "GET / HTTP/1.1\r\nX: a\x7fb\r\n", err: l7.ErrMalformed},
	{name: "relative target", in: get("admin"), err: l7.ErrMalformed},
	{name: "ftp target", in: get("ftp://a/b"), err: l7.ErrMalformed},
	{name: "userinfo", in: get("http://user@a/b"), err: l7.ErrMalformed},
	{name: "absolute form without host", in: get("http:///b"), err: l7.ErrMalformed},
	{name: "star with GET", in: get("*"), err: l7.ErrMalformed},
	{name: "connect without port", in: "CONNECT a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", err: l7.ErrMalformed},
	{name: "connect with a path", in: "CONNECT /a HTTP/1.1\r\nHost: a.b\r\n\r\n", err: l7.ErrMalformed},
	{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", err: l7.ErrMalformed},
	{name: "tab before colon", in: "GET / HTTP/1.1\r\n" + h + "Content-Length\t: 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", err: l7.ErrMalformed},
	{name: "obs-fold on the first field", in: "GET / HTTP/1.1\r\n " + h + "\r\n", err: l7.ErrMalformed},
	{name: "no colon", in: "GET / HTTP/1.1\r\n" + h + "Nope\r\n\r\n", err: l7.ErrMalformed},
	{name: "empty name", in: "GET / HTTP/1.1\r\n" + h + ": x\r\n\r\n", err: l7.ErrMalformed},
	{name: "underscore content-length", in: "POST / HTTP/1.1\r\n" + h + "Content_Length: 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "underscore transfer-encoding", in: "POST / HTTP/1.1\r\n" + h + "Transfer_Encoding: chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "name not a token", in: "GET / HTTP/1.1\r\n" + h + "X(y): x\r\n\r\n", err: l7.ErrMalformed},
	{name: "HTTP/1.1 without Host", in: "GET / HTTP/1.1\r\n\r\n", err: l7.ErrMalformed},
	{name: "two Hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", err: l7.ErrMalformed},
	{name: "host with slash", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", err: l7.ErrMalformed},
	{name: "host with userinfo", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", err: l7.ErrMalformed},
	{name: "host empty label", in: "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", err: l7.ErrMalformed},
	{name: "host with two final dots", in: "GET / HTTP/1.1\r\nHost: a..\r\n\r\n", err: l7.ErrMalformed},
	{name: "host only a port", in: "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", err: l7.ErrMalformed},
	{name: "host port not digits", in: "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", err: l7.ErrMalformed},
	{name: "host port too long", in: "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", err: l7.ErrMalformed},
	{name: "host ipv6 unterminated", in: "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", err: l7.ErrMalformed},
	{name: "invalid host beside an absolute target", in: "GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length and transfer-encoding", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding and content-length", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "two content-lengths", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", err: l7.ErrMalformed},
	{name: "two equal content-lengths", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length list", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length sign", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length negative", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length empty", in: "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length hex", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x5\r\n\r\n", err: l7.ErrMalformed},
	{name: "content-length inner space", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 1 2\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding gzip", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding gzip, chunked", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding chunked, chunked", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding twice", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding obfuscated", in: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "transfer-encoding in HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "invalid percent-encoding", in: get("/a%zz"), err: l7.ErrMalformed},
	{name: "truncated percent-encoding", in: get("/a%2"), err: l7.ErrMalformed},
	{name: "percent before a slash", in: get("/a%/b"), err: l7.ErrMalformed},
	{name: "percent-encoded NUL", in: get("/a%00b"), err: l7.ErrMalformed},
	{name: "encoded slash and dot-dot", in: get("/public%2F..%2Fadmin"), err: l7.ErrMalformed},
	{name: "backslash and dot-dot", in: get("/public\\..\\admin"), err: l7.ErrMalformed},
	{name: "encoded dot-dot and encoded backslash", in: get("/a/%2e%2e%5cadmin"), err: l7.ErrMalformed},

	// Over a limit.
	{name: "method too long", in: strings.Repeat("M", 65) + " / HTTP/1.1\r\n" + h + "\r\n", err: l7.ErrTooLong},
	{name: "request line too long", in: "GET /" + strings.Repeat("a", MaxStartLine), err: l7.ErrTooLong},
	{name: "head too long", in: "GET / HTTP/1.1\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 66), err: l7.ErrTooLong},
	{name: "too many headers", in: "GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", MaxHeaders+1), err: l7.ErrTooLong},
	{name: "content-length too large", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 1099511627777\r\n\r\n", err: l7.ErrTooLong},
	{name: "content-length overflows", in: "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999999\r\n\r\n", err: l7.ErrTooLong},
	{name: "normalised path too long", in: get("/" + strings.Repeat("\\", 3000)), err: l7.ErrTooLong},
	{name: "host too long", in: "GET / HTTP/1.1\r\nHost: " + strings.Repeat("a", 256) + "\r\n\r\n", err: l7.ErrTooLong},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

// Request contexts for reply cases.
var (
	ctxGet     = get("/")
	ctxHead    = "HEAD / HTTP/1.1\r\n" + h + "\r\n"
	ctxConnect = "CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n"
	ctxUpgrade = "GET /ws HTTP/1.1\r\n" + h + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
)

var replyCases = []parseCase{
	{name: "200 empty", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", want: rep(0, false)},
	{name: "200 with body", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", want: part(38, false)},
	{name: "200 chunked", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: part(47, false)},
	{name: "200 gzip, chunked", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", want: part(0, false)},
	{name: "200 until close", ctx: ctxGet, in: "HTTP/1.0 200 OK\r\n\r\nbody", want: part(19, false)},
	{name: "200 gzip until close", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", want: part(0, false)},
	{name: "no reason", ctx: ctxGet, in: "HTTP/1.1 204\r\n\r\n", want: rep(0, false)},
	{name: "empty reason", ctx: ctxGet, in: "HTTP/1.1 204 \r\n\r\n", want: rep(0, false)},
	{name: "reason with obs-text", ctx: ctxGet, in: "HTTP/1.1 204 Gr\xfc\xdfe\r\n\r\n", want: rep(0, false)},
	{name: "204 ignores content-length", ctx: ctxGet, in: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", want: rep(0, false)},
	{name: "304", ctx: ctxGet, in: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", want: rep(0, false)},
	{name: "404", ctx: ctxGet, in: "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx", want: part(45, true)},
	{name: "404 empty", ctx: ctxGet, in: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", want: rep(0, true)},
	{name: "100 continue", ctx: ctxGet, in: "HTTP/1.1 100 Continue\r\n\r\n", want: part(0, false)},
	{name: "103 early hints", ctx: ctxGet, in: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", want: part(0, false)},
	{name: "HEAD response", ctx: ctxHead, in: "HTTP/1.1 200 OK\r\nContent-Length: 7890\r\n\r\n", want: rep(0, false)},
	{name: "HEAD response chunked", ctx: ctxHead, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", want: rep(0, false)},
	{name: "connect established", ctx: ctxConnect, in: "HTTP/1.1 200 Connection established\r\n\r\n", want: rep(0, false)},
	{name: "connect refused", ctx: ctxConnect, in: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", want: rep(0, true)},
	{name: "switching protocols", ctx: ctxUpgrade, in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", want: rep(77, false)},
	{name: "upgrade declined", ctx: ctxUpgrade, in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", want: rep(0, false)},
	{name: "unsolicited", in: "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", want: rep(0, true)},
	{name: "leading empty line", ctx: ctxGet, in: "\r\nHTTP/1.1 204 OK\r\n\r\n", want: skip(l7.DirReply, 2)},

	// Incomplete.
	{name: "nothing", in: "", want: more(2)},
	{name: "status line", ctx: ctxGet, in: "HTTP/1.1 200 OK", want: more(4)},
	{name: "status line CRLF", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\n", want: more(2)},

	// Malformed.
	{name: "101 without upgrade request", ctx: ctxGet, in: "HTTP/1.1 101 Switching Protocols\r\n\r\n", err: l7.ErrMalformed},
	{name: "two-digit status", ctx: ctxGet, in: "HTTP/1.1 20 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "four-digit status", ctx: ctxGet, in: "HTTP/1.1 2000 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "status 099", ctx: ctxGet, in: "HTTP/1.1 099 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "status not digits", ctx: ctxGet, in: "HTTP/1.1 2x0 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "HTTP/2 status", ctx: ctxGet, in: "HTTP/2 200 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "lower-case version", ctx: ctxGet, in: "http/1.1 200 OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "not HTTP", ctx: ctxGet, in: "+OK\r\n\r\n", err: l7.ErrMalformed},
	{name: "length and chunked", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: l7.ErrMalformed},
	{name: "two lengths", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "bad length", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n", err: l7.ErrMalformed},
	{name: "space before colon", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", err: l7.ErrMalformed},
	{name: "obs-fold", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", err: l7.ErrMalformed},
	{name: "bare LF", ctx: ctxGet, in: "HTTP/1.1 200 OK\n\n", err: l7.ErrMalformed},
	{name: "control byte", ctx: ctxGet, in: "HTTP/1.1 200 O\x01K\r\n\r\n", err: l7.ErrMalformed},

	// Over a limit.
	{name: "status line too long", ctx: ctxGet, in: "HTTP/1.1 200 " + strings.Repeat("k", MaxStartLine), err: l7.ErrTooLong},
	{name: "too many headers", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", MaxHeaders+1), err: l7.ErrTooLong},
	{name: "length too large", ctx: ctxGet, in: "HTTP/1.1 200 OK\r\nContent-Length: 1099511627777\r\n\r\n", err: l7.ErrTooLong},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// streamCase is a stream of messages with bodies and every answer a fresh
// parser gives for it, whole.
type streamCase struct {
	name string
	ctx  string // requests fed first, for replies
	dir  l7.Dir
	in   string
	want []result
	err  error // the final answer is this error, after want
}

const post = "POST /up HTTP/1.1\r\n" + h

// Heads used by the stream cases, and their frames.
const (
	postCL5     = post + "Content-Length: 5\r\n\r\n"
	postChunked = post + "Transfer-Encoding: chunked\r\n\r\n"
)

var (
	postFrame = func(head string) result { return req(len(head), "POST", "/up", "example.com") }
	getFrame  = func(target string) result { return req(len(get(target)), "GET", target, "example.com") }
)

var streamCases = []streamCase{
	{name: "content-length body", dir: l7.DirRequest, in: postCL5 + "hello" + get("/next"),
		want: []result{postFrame(postCL5), skip(l7.DirRequest, 5), getFrame("/next"), more(2)}},
	{name: "chunked body", dir: l7.DirRequest, in: postChunked + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + get("/next"),
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 26), getFrame("/next"), more(2)}},
	{name: "chunked body, extensions, trailers", dir: l7.DirRequest, in: post + "Transfer-Encoding: Chunked\r\n\r\n" +
		"A;name=\"v a l\";x\r\n0123456789\r\n00;last\r\nX-Sum: 1\r\nX-Other: \t2\r\n\r\n",
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 64), more(2)}},
	{name: "empty chunked body", dir: l7.DirRequest, in: postChunked + "0\r\n\r\n",
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 5), more(2)}},
	{name: "zero content-length", dir: l7.DirRequest, in: post + "Content-Length: 000\r\n\r\n" + get("/"),
		want: []result{postFrame(post + "Content-Length: 000\r\n\r\n"), getFrame("/"), more(2)}},
	{name: "expect 100-continue", dir: l7.DirRequest, in: post + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		want: []result{postFrame(post + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"), skip(l7.DirRequest, 3), more(2)}},
	{name: "empty lines after a body", dir: l7.DirRequest, in: postCL5 + "hello\r\n\r\n" + get("/"),
		want: []result{postFrame(postCL5), skip(l7.DirRequest, 5), skip(l7.DirRequest, 2), skip(l7.DirRequest, 2), getFrame("/"), more(2)}},
	{name: "body in progress", dir: l7.DirRequest, in: postCL5 + "abc",
		want: []result{postFrame(postCL5), skip(l7.DirRequest, 3), more(1)}},
	{name: "chunk in progress", dir: l7.DirRequest, in: postChunked + "100\r\nabc",
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 8), more(1)}},
	{name: "chunk-size line in progress", dir: l7.DirRequest, in: postChunked + "1\r\na\r\n10;ext",
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 6), more(2)}},
	{name: "chunk-size space", dir: l7.DirRequest, in: postChunked + "5 \r\nhello\r\n0\r\n\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk-size not hex", dir: l7.DirRequest, in: postChunked + "x\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk-size negative", dir: l7.DirRequest, in: postChunked + "-1\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk-size 0x", dir: l7.DirRequest, in: postChunked + "0x5\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk extension only", dir: l7.DirRequest, in: postChunked + ";x\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk-size LF", dir: l7.DirRequest, in: postChunked + "5\nhello\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk data too long", dir: l7.DirRequest, in: postChunked + "5\r\nhelloXX\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk data then CR CR", dir: l7.DirRequest, in: postChunked + "5\r\nhello\r\r",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "trailer obs-fold", dir: l7.DirRequest, in: postChunked + "0\r\nX: a\r\n b\r\n\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "trailer without colon", dir: l7.DirRequest, in: postChunked + "0\r\nnope\r\n\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "trailer bare LF", dir: l7.DirRequest, in: postChunked + "0\r\nX: a\n\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrMalformed},
	{name: "chunk size too large", dir: l7.DirRequest, in: postChunked + "10000000001\r\n",
		want: []result{postFrame(postChunked)}, err: l7.ErrTooLong},
	{name: "chunk size at the limit", dir: l7.DirRequest, in: postChunked + "00010000000000\r\n",
		want: []result{postFrame(postChunked), skip(l7.DirRequest, 16), more(1)}},
	{name: "chunk-size line too long", dir: l7.DirRequest, in: postChunked + "1;" + strings.Repeat("e", MaxChunkLine),
		want: []result{postFrame(postChunked)}, err: l7.ErrTooLong},
	{name: "too many trailers", dir: l7.DirRequest, in: postChunked + "0\r\n" + strings.Repeat("X: y\r\n", MaxHeaders+1),
		want: []result{postFrame(postChunked)}, err: l7.ErrTooLong},

	{name: "reply body", ctx: ctxGet, dir: l7.DirReply, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		want: []result{part(38, false), rep(5, false), more(2)}},
	{name: "reply chunked", ctx: ctxGet + ctxGet, dir: l7.DirReply, in: "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"HTTP/1.1 204 No Content\r\n\r\n",
		want: []result{part(49, true), rep(13, true), rep(27, false), more(2)}},
	{name: "reply interim then final", ctx: ctxGet, dir: l7.DirReply, in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		want: []result{part(25, false), part(38, false), rep(2, false), more(2)}},
	{name: "reply until close", ctx: ctxGet, dir: l7.DirReply, in: "HTTP/1.0 200 OK\r\n\r\nall of this is body\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		want: []result{part(19, false), skip(l7.DirReply, 42), more(1)}},
	{name: "reply HEAD then GET", ctx: ctxHead + ctxGet, dir: l7.DirReply, in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		want: []result{rep(38, false), part(38, false), rep(3, false), more(2)}},
	{name: "switching protocols", ctx: ctxUpgrade, dir: l7.DirReply, in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
		want: []result{rep(56, false), pass}},
	{name: "connect tunnel", ctx: ctxConnect, dir: l7.DirReply, in: "HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01",
		want: []result{rep(19, false), pass}},
	{name: "reply chunk malformed", ctx: ctxGet, dir: l7.DirReply, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd",
		want: []result{part(47, false)}, err: l7.ErrMalformed},
}

func TestStreams(t *testing.T) {
	for _, c := range streamCases {
		t.Run(c.name, func(t *testing.T) {
			got := whole(t, c.parser(t), c.dir, []byte(c.in))
			if c.err != nil {
				if len(got) == 0 || !errors.Is(got[len(got)-1].Err, c.err) {
					t.Fatalf("got %v, want an error %v", got, c.err)
				}
				got = got[:len(got)-1]
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("\n%s", l7test.Diff(got, c.want))
			}
		})
	}
}

func (c streamCase) parser(t testing.TB) *Parser {
	t.Helper()
	p := NewParser()
	if c.ctx != "" {
		rs := whole(t, p, l7.DirRequest, []byte(c.ctx))
		if last := rs[len(rs)-1]; last.Op != l7.OpMore {
			t.Fatalf("context: %v", rs)
		}
	}
	return p
}

// TestOneByteAtATime feeds each complete head, and each stream, one byte
// at a time to one parser. Heads: every answer before the last byte is
// OpMore with a count that does not overshoot, the last equals a fresh
// parse of the whole. Streams: the frames and where they end are those of
// the whole stream.
func TestOneByteAtATime(t *testing.T) {
	for _, set := range []struct {
		dir   l7.Dir
		cases []parseCase
	}{{l7.DirRequest, requestCases}, {l7.DirReply, replyCases}} {
		for _, c := range set.cases {
			want := c.first()
			if c.err != nil || want.Op != l7.OpFrame {
				continue
			}
			msg := []byte(c.in[:want.N])
			t.Run(set.dir.String()+"/"+c.name, func(t *testing.T) {
				pr := streamCase{ctx: c.ctx}.parser(t)
				l7test.Bytewise(t, parser(pr, set.dir), msg, want)
			})
		}
	}
	for _, c := range streamCases {
		t.Run("stream/"+c.name, func(t *testing.T) {
			data := []byte(c.in)
			want := canon(whole(t, c.parser(t), c.dir, data))
			ends := make([]int, len(data))
			for i := range ends {
				ends[i] = i + 1
			}
			got := canon(stream(t, c.parser(t), c.dir, data, ends))
			if !slices.Equal(got, want) {
				t.Fatalf("one byte at a time:\n%s", l7test.Diff(got, want))
			}
		})
	}
}

// corpus returns the request and reply streams of every recording (the
// upgrade one last: its replies end in OpPass), and a longer request
// stream: the complete request cases, then the recorded requests.
func corpus(t testing.TB) (reqs, reps, allReqs []byte) {
	t.Helper()
	var q, r, all bytes.Buffer
	for _, c := range requestCases {
		w := c.first()
		if c.err != nil || w.Op != l7.OpFrame || w.Verb == "HEAD" || w.Verb == "CONNECT" {
			continue
		}
		p := NewParser()
		parse(t, p, l7.DirRequest, []byte(c.in[:w.N]))
		if p.req.body.kind == bodyNone && !strings.Contains(c.in, "Upgrade") {
			all.WriteString(c.in[:w.N])
		}
	}
	var lastReq, lastRep []byte
	for _, name := range recordings(t) {
		rq, rp := l7test.ReadFile(t, "testdata/curl-7.88-"+name+".req"), l7test.ReadFile(t, "testdata/nginx-1.22-"+name+".reply")
		if name == "upgrade-websocket" {
			lastReq, lastRep = rq, rp
			continue
		}
		q.Write(rq)
		r.Write(rp)
	}
	q.Write(lastReq)
	r.Write(lastRep)
	all.Write(q.Bytes())
	return q.Bytes(), r.Bytes(), all.Bytes()
}

// recordings lists the names of the recorded exchanges in testdata.
func recordings(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "curl-7.88-*.req"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no recordings in testdata: %v", err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "curl-7.88-"), ".req")
	}
	return out
}

// TestEverySplitPoint cuts the corpus in two at every offset: the frames,
// where they end and the final answer must be those of the uncut stream.
// Replies are parsed after the whole request stream, as they answer it.
func TestEverySplitPoint(t *testing.T) {
	reqs, reps, allReqs := corpus(t)
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := allReqs
			if dir == l7.DirReply {
				data = reps
			}
			fresh := func() *Parser {
				p := NewParser()
				if dir == l7.DirReply {
					whole(t, p, l7.DirRequest, reqs)
				}
				return p
			}
			want := canon(whole(t, fresh(), dir, data))
			if last := want[len(want)-1]; last.Err != nil || (dir == l7.DirReply) != (last.Op == l7.OpPass) {
				t.Fatalf("corpus does not end as it should: %v", last)
			}
			if len(want) < 30 {
				t.Fatalf("corpus holds only %d frames", len(want))
			}
			l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(fresh(), dir) }, data, want, canon)
		})
	}
}

// TestRandomChunks feeds the corpus in random chunks, many times.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	reqs, reps, allReqs := corpus(t)
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := allReqs
			if dir == l7.DirReply {
				data = reps
			}
			fresh := func() *Parser {
				p := NewParser()
				if dir == l7.DirReply {
					whole(t, p, l7.DirRequest, reqs)
				}
				return p
			}
			want := canon(whole(t, fresh(), dir, data))
			l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(fresh(), dir) }, data, want, 64, 200, canon)
		})
	}
}

// finals counts request frames, or final (not Partial) reply frames.
func finals(rs []result) int {
	n := 0
	for _, r := range rs {
		if r.Op == l7.OpFrame && !r.Partial {
			n++
		}
	}
	return n
}

// TestRecorded parses the bytes recorded from curl 7.88 and nginx 1.22 (see
// testdata/README.md) with one parser per exchange, requests first: every
// request gets exactly one final reply frame, as the proxy's reply counting
// assumes, and the frames carry the expected fields.
func TestRecorded(t *testing.T) {
	const local = "127.0.0.1"
	cases := map[string]struct {
		reqs, reps []result // expected answers, when given (without the final one)
	}{
		"get":  {reqs: []result{req(79, "GET", "/", local)}, reps: []result{part(236, false), rep(43, false)}},
		"head": {reqs: []result{req(88, "HEAD", "/file.txt", local)}, reps: []result{rep(241, false)}},
		"head-keepalive": {reqs: []result{req(80, "HEAD", "/", local), req(88, "HEAD", "/file.txt", local)},
			reps: []result{rep(236, false), rep(241, false)}},
		"keepalive": {reqs: []result{req(79, "GET", "/", local), req(87, "GET", "/file.txt", local)},
			reps: []result{part(236, false), rep(43, false), part(241, false), rep(7890, false)}},
		"post":         {reqs: []result{req(153, "POST", "/echo", local), skip(l7.DirRequest, 27)}},
		"post-chunked": {reqs: []result{req(161, "POST", "/echo", local), skip(l7.DirRequest, 3012)}},
		"post-expect": {reqs: []result{req(177, "POST", "/echo", local), skip(l7.DirRequest, 3000)},
			reps: []result{part(25, false), part(156, false), rep(27, false)}},
		"404":           {reqs: []result{req(91, "GET", "/nothing-here", local)}, reps: []result{part(155, true), rep(153, true)}},
		"304":           {reps: []result{rep(179, false)}},
		"gzip-chunked":  {reps: []result{part(251, false), rep(546, false)}},
		"absolute-form": {reqs: []result{req(121, "GET", "/admin/x/y", "example.com")}},
		"connect":       {reqs: []result{req(112, "CONNECT", "example.com:80", "example.com")}},
		"options-star":  {reqs: []result{req(83, "OPTIONS", "*", local)}},
		"upgrade-websocket": {reqs: []result{req(194, "GET", "/ws", local)},
			reps: []result{rep(188, false), pass}},
	}
	for _, name := range recordings(t) {
		t.Run(name, func(t *testing.T) {
			p := NewParser()
			rq := whole(t, p, l7.DirRequest, l7test.ReadFile(t, "testdata/curl-7.88-"+name+".req"))
			rp := whole(t, p, l7.DirReply, l7test.ReadFile(t, "testdata/nginx-1.22-"+name+".reply"))
			if last := rq[len(rq)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Fatalf("requests do not end on a message boundary: %v", rq)
			}
			if last := rp[len(rp)-1]; last.Err != nil || (last.Op != l7.OpMore && last.Op != l7.OpPass) {
				t.Fatalf("replies do not end on a message boundary: %v", rp)
			}
			if nq, np := finals(rq), finals(rp); nq != np || nq == 0 {
				t.Fatalf("%d requests, %d final replies:\n%v\n%v", nq, np, rq, rp)
			}
			c := cases[name]
			if c.reqs != nil && !slices.Equal(rq[:len(rq)-1], c.reqs) {
				t.Fatalf("requests:\n%s", l7test.Diff(rq[:len(rq)-1], c.reqs))
			}
			if c.reps != nil {
				got := rp
				if got[len(got)-1].Op == l7.OpMore {
					got = got[:len(got)-1]
				}
				if !slices.Equal(got, c.reps) {
					t.Fatalf("replies:\n%s", l7test.Diff(got, c.reps))
				}
			}
		})
	}
}

// TestUpgradeMakesBothDirectionsOpaque: after the 101, requests pass too.
func TestUpgradeMakesBothDirectionsOpaque(t *testing.T) {
	p := NewParser()
	whole(t, p, l7.DirRequest, []byte(ctxUpgrade))
	if r := parse(t, p, l7.DirRequest, []byte("\x81\x85junk")); r.Err == nil {
		t.Fatalf("before the 101, WebSocket bytes must not parse as HTTP: %v", r)
	}
	p = NewParser()
	whole(t, p, l7.DirRequest, []byte(ctxUpgrade))
	if r := parse(t, p, l7.DirReply, []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")); r != rep(36, false) {
		t.Fatalf("101: %v", r)
	}
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		if r := parse(t, p, dir, []byte("\x81\x85junk")); r != pass {
			t.Fatalf("%v after the 101: %v, want pass", dir, r)
		}
	}
}

// TestDenied: a denied request is not forwarded, so its response never
// comes; the reply side must frame the next response by the next request.
func TestDenied(t *testing.T) {
	p := NewParser()
	var f l7.Frame
	// HEAD denied, then GET forwarded: the response has a body.
	if op, _, _ := p.Parse(l7.DirRequest, []byte(ctxHead), &f); op != l7.OpFrame {
		t.Fatal(op)
	}
	p.Denied(&f)
	p.Denied(&f) // a second call changes nothing
	whole(t, p, l7.DirRequest, []byte(ctxGet))
	got := whole(t, p, l7.DirReply, []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	if want := []result{part(38, false), rep(3, false), more(2)}; !slices.Equal(got, want) {
		t.Fatalf("after a denied HEAD:\n%s", l7test.Diff(got, want))
	}

	// GET forwarded, upgrade denied: a later 101 is not an answer to it.
	p = NewParser()
	whole(t, p, l7.DirRequest, []byte(ctxGet))
	p.Parse(l7.DirRequest, []byte(ctxUpgrade), &f)
	p.Denied(&f)
	if r := parse(t, p, l7.DirReply, []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")); !errors.Is(r.Err, l7.ErrMalformed) {
		t.Fatalf("101 for a denied upgrade: %v", r)
	}

	// A denied request's body is still framed, as OpSkip.
	p = NewParser()
	p.Parse(l7.DirRequest, []byte(post+"Content-Length: 3\r\n\r\nabc"), &f)
	p.Denied(&f)
	if r := parse(t, p, l7.DirRequest, []byte("abc"+ctxGet)); r != skip(l7.DirRequest, 3) {
		t.Fatalf("body of a denied request: %v", r)
	}
}

// TestPending: HEAD requests awaiting responses are bounded.
func TestPending(t *testing.T) {
	p := NewParser()
	for i := range MaxPending {
		if r := parse(t, p, l7.DirRequest, []byte(ctxHead)); r.Op != l7.OpFrame {
			t.Fatalf("HEAD %d: %v", i, r)
		}
	}
	if r := parse(t, p, l7.DirRequest, []byte(ctxHead)); !errors.Is(r.Err, l7.ErrTooLong) {
		t.Fatalf("HEAD %d: %v, want ErrTooLong", MaxPending, r)
	}
	// Plain requests are not bounded; answering one HEAD makes room.
	if r := parse(t, p, l7.DirRequest, []byte(ctxGet)); r.Op != l7.OpFrame {
		t.Fatalf("GET: %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")); r != rep(38, false) {
		t.Fatalf("HEAD response: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte(ctxHead)); r.Op != l7.OpFrame {
		t.Fatalf("HEAD after a response: %v", r)
	}
}

// TestConcurrentDirections runs the two directions of one parser from two
// goroutines, as the proxy does (run with -race), with the calls
// serialised by one lock as the proxy's are: a pipeline of GET and HEAD
// requests and their responses, fed in small reads.
func TestConcurrentDirections(t *testing.T) {
	p := NewParser()
	var pmu sync.Mutex
	parse := func(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
		pmu.Lock()
		defer pmu.Unlock()
		return p.Parse(dir, data, f)
	}
	var reqs, reps []byte
	for i := range 200 {
		if i%5 == 0 { // 40 HEADs: within MaxPending even if no response was read yet
			reqs = append(reqs, ctxHead...)
			reps = append(reps, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"...)
		} else {
			reqs = append(reqs, post+"Content-Length: 4\r\n\r\nbody"...)
			reps = append(reps, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"...)
		}
	}
	forwarded := make(chan int, 1000) // requests the "server" may answer
	var wg sync.WaitGroup
	var nreq, nrep int
	wg.Go(func() {
		defer close(forwarded)
		var f l7.Frame
		for off, end := 0, 0; off < len(reqs); {
			op, n, err := parse(l7.DirRequest, reqs[off:end], &f)
			switch {
			case err != nil:
				t.Error(err)
				return
			case op == l7.OpMore:
				end = min(end+37, len(reqs)) // the next read
				continue
			case op == l7.OpFrame:
				nreq++
				forwarded <- nreq
			}
			off += n
		}
	})
	wg.Go(func() {
		var f l7.Frame
		allowed := 0
		for off, end := 0, 0; off < len(reps); {
			// A response is only read once its request went out.
			for allowed <= nrep {
				v, ok := <-forwarded
				if !ok {
					break
				}
				allowed = v
			}
			op, n, err := parse(l7.DirReply, reps[off:end], &f)
			switch {
			case err != nil:
				t.Error(err)
				return
			case op == l7.OpMore:
				end = min(end+29, len(reps))
				continue
			case op == l7.OpFrame && !f.Partial:
				nrep++
			}
			off += n
		}
	})
	wg.Wait()
	if nreq != 200 || nrep != 200 {
		t.Fatalf("%d requests, %d responses, want 200 each", nreq, nrep)
	}
}

// TestParserKeepsItsPlace: after OpMore a parser resumes where it stopped
// and starts over when handed a shorter input; directions are separate.
func TestParserKeepsItsPlace(t *testing.T) {
	msg := []byte(get("/a/b"))
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, msg[:20]); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte(get("/x"))); r != getFrame("/x") {
		t.Fatalf("after a shorter input: %v", r)
	}
	resp := []byte("HTTP/1.1 204 No Content\r\n\r\n")
	if r := parse(t, p, l7.DirRequest, msg[:20]); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	if r := parse(t, p, l7.DirReply, resp[:10]); r.Op != l7.OpMore {
		t.Fatalf("reply prefix: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, msg); r != req(len(msg), "GET", "/a/b", "example.com") {
		t.Fatalf("request: %v", r)
	}
	if r := parse(t, p, l7.DirReply, resp); r != rep(len(resp), false) {
		t.Fatalf("reply: %v", r)
	}
}

func TestErrorsReset(t *testing.T) {
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, []byte("GET / HTTP/1.1\nHost: a\n\n")); r.Err == nil {
		t.Fatalf("want an error, got %v", r)
	}
	if r := parse(t, p, l7.DirRequest, []byte(get("/"))); r.Op != l7.OpFrame {
		t.Fatalf("after an error: %v", r)
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, []byte(get("/")), nil); op != l7.OpFrame || n != len(get("/")) || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), []byte(get("/")), &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirRequest, []byte(get("/"))); r.Op != l7.OpFrame {
		t.Fatalf("zero Parser: %v", r)
	}
}

func TestFrameViewsCannotGrowIntoTheInput(t *testing.T) {
	in := []byte("GET http://a.b/c HTTP/1.1\r\nHost: a.b\r\n\r\n")
	orig := string(in)
	p := NewParser()
	var f l7.Frame
	if _, _, err := p.Parse(l7.DirRequest, in, &f); err != nil {
		t.Fatal(err)
	}
	path, host := p.path, p.host
	_ = append(f.Verb, 'X')
	_ = append(f.Resource, 'X')
	_ = append(f.Aux, 'X')
	if string(in) != orig || p.path != path || p.host != host {
		t.Fatal("appending to a view changed the input or the scratch")
	}
}

// pathCases: the normalised form of origin-form targets.
var pathCases = []struct {
	in, want string
	err      error
}{
	{in: "/", want: "/"},
	{in: "/admin", want: "/admin"},
	{in: "/%61dmin", want: "/admin"},
	{in: "/./admin", want: "/admin"},
	{in: "//admin", want: "/admin"},
	{in: "/public/../admin", want: "/admin"},
	{in: "/public/%2e%2E/admin", want: "/admin"},
	{in: "/public/.%2e/admin", want: "/admin"},
	{in: "/admin?x=1", want: "/admin"},
	{in: "/admin#top", want: "/admin"},
	{in: "/admin;jsessionid=1", want: "/admin"},
	{in: "/public/..;x/admin", want: "/admin"},
	{in: "/a;p/b;q/c", want: "/a/b/c"},
	{in: "/;x", want: "/"},
	{in: "/a/", want: "/a/"},
	{in: "/a//", want: "/a/"},
	{in: "/a/.", want: "/a/"},
	{in: "/a/b/..", want: "/a/"},
	{in: "/..", want: "/"},
	{in: "/../../a", want: "/a"},
	{in: "/a/b/../../../c", want: "/c"},
	{in: "/a/./b/./", want: "/a/b/"},
	{in: "/.a/..b/...", want: "/.a/..b/..."},
	{in: "/a%2fb", want: "/a%2Fb"},
	{in: "/a%5cb", want: "/a%5Cb"},
	{in: "/a\\b", want: "/a%5Cb"},
	{in: "/a%25b", want: "/a%25b"},
	{in: "/a%252Fb", want: "/a%252Fb"},
	{in: "/a%3Bb", want: "/a%3Bb"},
	{in: "/a%3fb%23c", want: "/a%3Fb%23c"},
	{in: "/a%20b", want: "/a%20b"},
	{in: "/caf%c3%a9", want: "/caf%C3%A9"},
	{in: "/a%0Ab", want: "/a%0Ab"},
	{in: "/%7Bid%7D", want: "/{id}"},
	{in: "/%41%42%7e%2D", want: "/AB~-"},
	{in: "/a%2Fb/..", want: "/"},
	{in: "/a%2F.b", want: "/a%2F.b"},
	{in: "/a%2F..", err: l7.ErrMalformed},
	{in: "/..%2Fa", err: l7.ErrMalformed},
	{in: "/a%2F.%2Fb", err: l7.ErrMalformed},
	{in: "/%2e%2e%5Ca", err: l7.ErrMalformed},
	{in: "/a%", err: l7.ErrMalformed},
	{in: "/a%g0", err: l7.ErrMalformed},
	{in: "/a%00", err: l7.ErrMalformed},
	{in: "a", err: l7.ErrMalformed},
	{in: "", err: l7.ErrMalformed},
	{in: "/a b", err: l7.ErrMalformed},
	{in: "/caf\xc3\xa9", err: l7.ErrMalformed},
	{in: "/" + strings.Repeat("a", MaxPath-1), want: "/" + strings.Repeat("a", MaxPath-1)},
	{in: "/" + strings.Repeat("a", MaxPath), err: l7.ErrTooLong},
	{in: "/" + strings.Repeat("a/", MaxPath/2-1) + "a", want: "/" + strings.Repeat("a/", MaxPath/2-1) + "a"},
	{in: "/" + strings.Repeat("a/", MaxPath/2), err: l7.ErrTooLong},
}

func TestAppendNormalizedPath(t *testing.T) {
	for _, c := range pathCases {
		name := c.in
		if len(name) > 40 {
			name = name[:40] + "…"
		}
		t.Run(strconv.Quote(name), func(t *testing.T) {
			got, err := AppendNormalizedPath([]byte("x"), []byte(c.in))
			if c.err != nil {
				if !errors.Is(err, c.err) || string(got) != "x" {
					t.Fatalf("= %q, %v, want error %v and dst unchanged", got, err, c.err)
				}
				return
			}
			if err != nil || string(got) != "x"+c.want {
				t.Fatalf("= %q, %v, want %q", got, err, c.want)
			}
			// The normal form is a fixed point.
			again, err := AppendNormalizedPath(nil, []byte(c.want))
			if err != nil || string(again) != c.want {
				t.Fatalf("normalising %q again = %q, %v", c.want, again, err)
			}
		})
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "http" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.CloseOnDeny || pr.ServerFirst {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if pr.MaxMessage < MaxHead {
		t.Fatalf("MaxMessage %d cannot hold a head of %d bytes", pr.MaxMessage, MaxHead)
	}
	a, b := pr.New(), pr.New()
	if a == b {
		t.Fatal("New() returned the same parser twice")
	}
	if _, ok := a.(l7.DenyObserver); !ok {
		t.Fatal("the parser is not an l7.DenyObserver")
	}
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"get", &l7.Frame{Verb: []byte("GET"), Resource: []byte("/admin")}, "l7_not_allowed"},
		{"no reason", &l7.Frame{Verb: []byte("POST")}, ""},
		{"blank reason", &l7.Frame{Verb: []byte("POST")}, " \r\n "},
		{"head has no body", &l7.Frame{Verb: []byte("HEAD")}, "no_rule"},
		{"nil frame", nil, "malformed"},
		{"control bytes stripped", &l7.Frame{Verb: []byte("GET")}, "a\r\nb\x00c\x7fd\xffe"},
		{"long reason bounded", &l7.Frame{Verb: []byte("GET")}, long},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if len(out) > maxDenyLen {
			t.Errorf("%s: %d bytes, over %d", tt.name, len(out), maxDenyLen)
		}
		// The reply must be one complete response for the reply parser
		// (as the answer to the denied request), with nothing after it.
		p := NewParser()
		ctx := ctxGet
		if tt.f != nil && string(tt.f.Verb) == "HEAD" {
			ctx = ctxHead
		}
		whole(t, p, l7.DirRequest, []byte(ctx))
		rs := whole(t, p, l7.DirReply, out)
		if finals(rs) != 1 || rs[len(rs)-1] != more(2) || !rs[0].IsErr {
			t.Errorf("%s: parsed as %v", tt.name, rs)
		}
		if tt.f == nil || string(tt.f.Verb) != "HEAD" {
			body := out[bytes.Index(out, []byte("\r\n\r\n"))+4:]
			if !bytes.HasPrefix(body, []byte("bulkhead: request denied by policy")) || bytes.IndexByte(body, '\r') >= 0 ||
				bytes.IndexByte(body, '\n') != len(body)-1 {
				t.Errorf("%s: body %q", tt.name, body)
			}
		}
		prefix := []byte("prefix")
		if got := Deny(prefix, tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append: %q", tt.name, got)
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
		in   string
		want bool
	}{
		{"GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"POST", "POST /api/v1/x?y=1 HTTP/1.1\r\n", true},
		{"PUT", "PUT /x HTTP/1.0\r\n", true},
		{"DELETE", "DELETE /x HTTP/1.1\r\n", true},
		{"HEAD", "HEAD /x HTTP/1.1\r\n", true},
		{"OPTIONS star", "OPTIONS * HTTP/1.1\r\n", true},
		{"PATCH", "PATCH /x HTTP/1.1\r\n", true},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\n", true},
		{"TRACE", "TRACE / HTTP/1.1\r\n", true},
		{"absolute form", "GET http://a/b HTTP/1.1\r\n", true},
		{"long target, line not complete", "GET /" + strings.Repeat("a", 2000), true},
		{"short target, line not complete", "GET /abc", false},
		{"lower-case method", "get / HTTP/1.1\r\n", false},
		{"unknown method", "PROPFIND / HTTP/1.1\r\n", false},
		{"star with GET", "GET * HTTP/1.1\r\n", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"HTTP/2 version", "GET / HTTP/2.0\r\n", false},
		{"no version", "GET /\r\n", false},
		{"LF only", "GET / HTTP/1.1\n", false},
		{"space in the target", "GET /a b HTTP/1.1\r\n", false},
		{"control byte", "GET /a\x01 HTTP/1.1\r\n", false},
		{"redis inline", "GET key\r\n", false},
		{"redis inline slash key", "GET /key\r\n", false},
		{"redis multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", false},
		{"memcached get", "get k\r\n", false},
		{"memcached set", "set k 0 0 1\r\nx\r\n", false},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false},
		{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", false},
		{"mysql greeting", "\x4a\x00\x00\x00\x0a8.0.36\x00", false},
		{"empty", "", false},
		{"method only", "GET", false},
		{"method and space", "GET ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff([]byte(tt.in)); got != tt.want {
				t.Fatalf("Sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, name := range recordings(t) {
		if !Sniff(l7test.ReadFile(t, "testdata/curl-7.88-"+name+".req")) {
			t.Errorf("Sniff does not recognise curl's %s", name)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	requests := map[string]string{
		"get":        string(l7test.ReadFile(t, "testdata/curl-7.88-get.req")),
		"normalise":  get("/a/./b/../%63;p=1//d?x=1"),
		"absolute":   "GET http://Example.COM/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"connect":    ctxConnect,
		"chunked":    post + "Transfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nX: y\r\n\r\n",
		"incomplete": "GET /a HTTP/1.1\r\nHost: exa",
	}
	replies := map[string]string{
		"keepalive":  string(l7test.ReadFile(t, "testdata/nginx-1.22-keepalive.reply")),
		"chunked":    string(l7test.ReadFile(t, "testdata/nginx-1.22-gzip-chunked.reply")),
		"interim":    "HTTP/1.1 100 Continue\r\n\r\n",
		"incomplete": "HTTP/1.1 200 OK\r\nContent-Le",
	}
	p := NewParser()
	var f l7.Frame
	for dir, set := range map[l7.Dir]map[string]string{l7.DirRequest: requests, l7.DirReply: replies} {
		for name, in := range set {
			data := []byte(in)
			if n := testing.AllocsPerRun(100, func() {
				// A prefix, then the whole stream: covers resuming
				// after OpMore and every message of the stream.
				p.Parse(dir, data[:len(data)/2], &f)
				for rest := data; len(rest) > 0; {
					op, n, err := p.Parse(dir, rest, &f)
					if err != nil || op == l7.OpMore || op == l7.OpPass {
						break
					}
					rest = rest[n:]
				}
				// Keep the request and reply counts level.
				if dir == l7.DirRequest {
					p.Denied(&f)
				}
			}); n != 0 {
				t.Errorf("%v %s: %v allocations per run, want 0", dir, name, n)
			}
		}
	}
	in := []byte(get("/"))
	if n := testing.AllocsPerRun(100, func() { p.Parse(l7.DirRequest, in, nil); p.Denied(nil) }); n != 0 {
		t.Errorf("Parse with a nil frame: %v allocations", n)
	}
	buf := make([]byte, 0, 512)
	deny := &l7.Frame{Verb: []byte("GET")}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], deny, "l7_not_allowed") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	for _, s := range []string{"GET / HTTP/1.1\r\n", "GET http://a/ HTTP/1.1\r\n", "CONNECT a:1 HTTP/1.1\r\n", "*1\r\n"} {
		sniffed := []byte(s)
		if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
			t.Errorf("Sniff(%q): %v allocations", s, n)
		}
	}
	pathBuf := make([]byte, 0, MaxPath)
	target := []byte("/a/./b/../%63;p=1//d?x=1")
	if n := testing.AllocsPerRun(100, func() { pathBuf, _ = AppendNormalizedPath(pathBuf[:0], target) }); n != 0 {
		t.Errorf("AppendNormalizedPath: %v allocations", n)
	}
}

// benchStream parses data, a stream of whole messages, as one direction;
// for replies, each run first feeds reqs as requests.
func benchStream(b *testing.B, dir l7.Dir, reqs, data []byte, frames int) {
	b.Helper()
	p := NewParser()
	var f l7.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	primed := 0 // request frames parsed before the replies, per op
	for b.Loop() {
		primed = 0
		if dir == l7.DirReply {
			for rest := reqs; len(rest) > 0; {
				op, n, _ := p.Parse(l7.DirRequest, rest, &f)
				if op == l7.OpFrame && !f.Partial {
					primed++
				}
				rest = rest[n:]
			}
		}
		got := 0
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame && !f.Partial {
				got++
			}
			rest = rest[n:]
		}
		if got != frames {
			b.Fatalf("%d frames, want %d", got, frames)
		}
	}
	// Every message parsed counts: the requests that prime the replies
	// too, since their time is in the op.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(frames+primed)), "ns/msg")
}

func BenchmarkParseRequest(b *testing.B) {
	curl := l7test.ReadFile(b, "testdata/curl-7.88-get.req")
	var pipeline []byte
	for i := range 16 {
		pipeline = append(pipeline, get(fmt.Sprintf("/api/v1/users/%d/orders?page=2", i))...)
	}
	b.Run("curl-get", func(b *testing.B) { benchStream(b, l7.DirRequest, nil, curl, 1) })
	b.Run("pipeline-16", func(b *testing.B) { benchStream(b, l7.DirRequest, nil, pipeline, 16) })
	b.Run("normalise", func(b *testing.B) {
		benchStream(b, l7.DirRequest, nil, []byte(get("/a/./b/../%63;p=1//d/%7Bx%7D/e?x=1")), 1)
	})
	b.Run("post-64KiB", func(b *testing.B) {
		body := strings.Repeat("v", 64<<10)
		benchStream(b, l7.DirRequest, nil, fmt.Appendf(nil, "%sContent-Length: %d\r\n\r\n%s", post, len(body), body), 1)
	})
	b.Run("chunked-64KiB", func(b *testing.B) {
		var m []byte
		m = append(m, post+"Transfer-Encoding: chunked\r\n\r\n"...)
		for range 16 {
			m = append(m, "1000\r\n"...)
			m = append(m, strings.Repeat("v", 4096)...)
			m = append(m, "\r\n"...)
		}
		m = append(m, "0\r\n\r\n"...)
		benchStream(b, l7.DirRequest, nil, m, 1)
	})
}

func BenchmarkParseReply(b *testing.B) {
	var reqs, reps []byte
	frames := 0
	for _, name := range []string{"get", "keepalive", "head", "304", "404", "gzip-chunked", "post-expect"} {
		rq, rp := l7test.ReadFile(b, "testdata/curl-7.88-"+name+".req"), l7test.ReadFile(b, "testdata/nginx-1.22-"+name+".reply")
		reqs = append(reqs, rq...)
		reps = append(reps, rp...)
		frames += finals(whole(b, NewParser(), l7.DirRequest, rq))
	}
	b.Run("nginx", func(b *testing.B) { benchStream(b, l7.DirReply, reqs, reps, frames) })
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 512)
	f := &l7.Frame{Verb: []byte("GET")}
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], f, "l7_not_allowed")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkSniff(b *testing.B) {
	in := l7test.ReadFile(b, "testdata/curl-7.88-get.req")
	b.ReportAllocs()
	for b.Loop() {
		if !Sniff(in) {
			b.Fatal("not sniffed")
		}
	}
}
