package http2

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is the comparable copy of one Parse answer.
type result struct {
	Op                  l7.Op
	N                   int
	Err                 error
	Verb, Resource, Aux string
	Args                int
	Partial, Err2       bool
	St                  l7.Stream
}

func (r result) String() string {
	return fmt.Sprintf("%v %d %v %q %q %q args=%#x partial=%v err=%v %+v", r.Op, r.N, r.Err, r.Verb, r.Resource, r.Aux, r.Args, r.Partial, r.Err2, r.St)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

// check allows views into the parser's scratch and OpPass.
var check = l7test.Check{ViewOK: func(string, []byte, []byte) bool { return true }, Pass: true}

// parseFunc makes checked Parse calls in direction dir with p.
func parseFunc(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	var f l7.Frame
	return func(t testing.TB, data []byte) result {
		t.Helper()
		f.Reset(dir)
		op, n, err := p.Parse(dir, data, &f)
		check.Answer(t, dir, data, op, n, err, &f)
		r := result{Op: op, N: n, Err: err}
		if err != nil || op == l7.OpMore {
			return r
		}
		r.St = p.Stream(dir)
		if op == l7.OpFrame {
			r.Verb, r.Resource, r.Aux, r.Args, r.Partial, r.Err2 = string(f.Verb), string(f.Resource), string(f.Aux), f.Args, f.Partial, f.Err
		}
		return r
	}
}

// merge joins consecutive skipped answers of one stream (how a DATA
// frame or an HTTP/1.1 body is cut into pieces depends on the split) into
// one answer, so that answers compare across splits.
func merge(rs []result) []result {
	var out []result
	for _, r := range rs {
		if n := len(out); n > 0 && r.Op == l7.OpSkip && out[n-1].Op == l7.OpSkip && out[n-1].St.ID == r.St.ID {
			o := &out[n-1]
			o.N += r.N
			o.St.Flow += r.St.Flow
			o.St.End = o.St.End || r.St.End
			o.St.Headers = o.St.Headers || r.St.Headers
			o.St.Indexed = o.St.Indexed || r.St.Indexed
			o.St.Settings = o.St.Settings || r.St.Settings
			continue
		}
		out = append(out, r)
	}
	return out
}

// conn is a recorded or built connection: the client's bytes and the
// server's; split is where in req the HTTP/2 preface follows an
// HTTP/1.1 upgrade (0: none), before which the reply side's 101 must
// have been parsed.
type conn struct {
	req, rep []byte
}

// replay parses a connection in both directions in an order the proxy
// may see it in: with prior knowledge, the client's preface and SETTINGS,
// the server's SETTINGS (which bound the client's frames), the rest of
// the requests, the rest of the replies; with an upgrade, the HTTP/1.1
// request, all replies (the 101 first), the rest of the requests. It
// returns the answers of each direction.
func replay(t testing.TB, c conn) (req, rep []result) {
	t.Helper()
	p := NewParser()
	pq, pr := parseFunc(p, l7.DirRequest), parseFunc(p, l7.DirReply)
	if i := bytes.Index(c.req, []byte(preface)); i > 0 {
		req = l7test.Whole(t, pq, c.req[:i])
		rep = l7test.Whole(t, pr, c.rep)
		return append(req[:len(req)-1], l7test.Whole(t, pq, c.req[i:])...), rep
	}
	q, nq := take(t, pq, c.req, 2)
	r, nr := take(t, pr, c.rep, 1)
	return append(q, l7test.Whole(t, pq, c.req[nq:])...), append(r, l7test.Whole(t, pr, c.rep[nr:])...)
}

// take returns the first k answers (fewer if data ends or an answer is an
// error) and the bytes they consumed.
func take(t testing.TB, pf l7test.ParseFunc[result], data []byte, k int) ([]result, int) {
	var out []result
	off := 0
	for len(out) < k && off < len(data) {
		r := pf(t, data[off:])
		if r.Err != nil || r.Op == l7.OpMore || r.Op == l7.OpPass {
			break
		}
		out = append(out, r)
		off += r.N
	}
	return out, off
}

func TestRequests(t *testing.T) {
	c := newClient(t)
	c.request(get("/a/./b//c?x=1", "Example.COM:8080"), true, 0)
	c.request(get("/a/./b//c?x=1", "Example.COM:8080"), true, 0) // dynamic table hits
	id := c.request(grpcCall("/grpc.health.v1.Health/Check"), false, 0)
	if err := c.fr.WriteData(id, true, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	c.request(get("/%61dmin", "h"), true, 8) // CONTINUATIONs
	c.request([][2]string{{":method", "OPTIONS"}, {":scheme", "http"}, {":path", "*"}, {":authority", "[::1]:80"}}, true, 0)
	c.request([][2]string{{":method", "CONNECT"}, {":authority", "db.example:5432"}}, true, 0)
	c.request([][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/h"}, {"host", "Host.Example."}}, true, 0)
	rs := frames(parseAll(t, NewParser(), l7.DirRequest, c.buf.Bytes(), 0))
	want := []parsed{
		{op: l7.OpFrame, verb: "GET", resource: "/a/b/c", aux: "example.com", args: 1},
		{op: l7.OpFrame, verb: "GET", resource: "/a/b/c", aux: "example.com", args: 3},
		{op: l7.OpFrame, verb: "POST", resource: "/grpc.health.v1.Health/Check", aux: "svc", args: 5 | ArgsGRPC},
		{op: l7.OpFrame, verb: "GET", resource: "/admin", aux: "h", args: 7},
		{op: l7.OpFrame, verb: "OPTIONS", resource: "*", aux: "[::1]", args: 9},
		{op: l7.OpFrame, verb: "CONNECT", resource: "db.example", aux: "db.example", args: 11},
		{op: l7.OpFrame, verb: "GET", resource: "/h", aux: "host.example", args: 13},
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d frames, want %d: %+v", len(rs), len(want), rs)
	}
	for i := range want {
		rs[i].st = l7.Stream{}
		if rs[i] != want[i] {
			t.Errorf("frame %d: got %+v, want %+v", i, rs[i], want[i])
		}
	}
}

// TestStreams checks what Stream reports for each kind of client frame.
func TestStreams(t *testing.T) {
	c := newClient(t)
	id := c.request(grpcCall("/p.S/M"), false, 0)
	_ = c.fr.WriteDataPadded(id, false, []byte("hello"), make([]byte, 3))
	_ = c.fr.WriteWindowUpdate(0, 100)
	_ = c.fr.WritePing(false, [8]byte{1})
	c.hbuf.Reset()
	_ = c.enc.WriteField(hpack.HeaderField{Name: "x-trailer", Value: "v"})
	c.headers(id, bytes.Clone(c.hbuf.Bytes()), true, 0)
	_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	rs := parseAll(t, NewParser(), l7.DirRequest, c.buf.Bytes(), 0)
	var got []l7.Stream
	for _, r := range rs {
		got = append(got, r.st)
	}
	want := []l7.Stream{
		{}, // preface
		{Settings: true},
		{ID: 1, Headers: true, Indexed: true},
		{ID: 1, Flow: 5 + 1 + 3},
		{},
		{},
		{ID: 1, Headers: true, End: true, Indexed: true}, // trailers
		{ID: 1, End: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("streams:\n got %+v\nwant %+v", got, want)
	}
	if rs[6].op != l7.OpSkip {
		t.Errorf("trailers: %v, want skip", rs[6].op)
	}
}

// recordings are the connections recorded from real clients and servers
// (see testdata/README.md), with the requests and complete replies each
// must give.
var recordings = []struct {
	name              string
	requests, replies int
}{
	{"grpc-go-1.85-health", 5, 4},            // Watch cancelled by the client: no end from the server
	{"curl-7.88-prior-knowledge", 1, 1},      // GET
	{"curl-7.88-prior-knowledge-post", 1, 1}, // 100 KB upload
	{"curl-7.88-upgrade", 2, 3},              // the upgrade POST (answered by 101 and on stream 1), then a stream
}

func readConn(t testing.TB, name string) conn {
	return conn{req: l7test.ReadFile(t, filepath.Join("testdata", name+".req")), rep: l7test.ReadFile(t, filepath.Join("testdata", name+".rep"))}
}

// TestRecorded parses the recorded connections frame by frame: requests
// and complete replies as expected, both directions ending on a frame
// boundary; split at every byte (request side) and fed one byte at a
// time, the answers are the same.
func TestRecorded(t *testing.T) {
	for _, rc := range recordings {
		t.Run(rc.name, func(t *testing.T) {
			c := readConn(t, rc.name)
			req, rep := replay(t, c)
			l7test.CheckCorpus(t, req, 2)
			l7test.CheckCorpus(t, rep, 2)
			nreq, nrep := 0, 0
			for _, r := range req {
				if r.Op == l7.OpFrame {
					nreq++
				}
			}
			for _, r := range rep {
				if r.Op == l7.OpFrame && !r.Partial {
					nrep++
				}
			}
			if nreq != rc.requests || nrep != rc.replies {
				t.Errorf("%d requests, %d complete replies; want %d, %d\n%s", nreq, nrep, rc.requests, rc.replies, l7test.Diff(req, nil))
			}
			if bytes.Contains(c.req, []byte("HTTP/1.1")) {
				return // the upgrade needs the replies in between: TestUpgrade
			}
			step := 1 + len(c.req)/2000
			newParse := func() l7test.ParseFunc[result] { return parseFunc(NewParser(), l7.DirRequest) }
			l7test.EverySplitStep(t, newParse, c.req, merge(req), merge, step)
			l7test.RandomChunks(t, rand.New(rand.NewPCG(1, 2)), newParse, c.req, merge(req), 7, 20, merge)
			newRep := func() l7test.ParseFunc[result] {
				p := NewParser()
				l7test.Whole(t, parseFunc(p, l7.DirRequest), c.req) // the client's SETTINGS
				return parseFunc(p, l7.DirReply)
			}
			l7test.EverySplitStep(t, newRep, c.rep, rep, nil, 1)
		})
	}
}

// TestBytewise feeds each request frame of the gRPC recording one byte
// at a time after the frames before it.
func TestBytewise(t *testing.T) {
	c := readConn(t, "grpc-go-1.85-health")
	whole := l7test.Whole(t, parseFunc(NewParser(), l7.DirRequest), c.req)
	p := NewParser()
	pf := parseFunc(p, l7.DirRequest)
	off := 0
	for _, w := range whole[:len(whole)-1] {
		msg := c.req[off : off+w.N]
		if w.Op == l7.OpSkip && w.St.Flow > 0 {
			// DATA is streamed: any prefix past the header is a piece.
			got := pf(t, msg)
			if got != w {
				t.Fatalf("DATA at %d: %v, want %v", off, got, w)
			}
		} else {
			l7test.Bytewise(t, pf, msg, w)
		}
		off += w.N
	}
}

// TestUpgrade replays curl's h2c upgrade: the HTTP/1.1 request (with an
// Upgrade: h2c header) is a frame of stream 0, the 101 switches both
// directions to HTTP/2, and the next request is stream 3.
func TestUpgrade(t *testing.T) {
	c := readConn(t, "curl-7.88-upgrade")
	req, rep := replay(t, c)
	var got []string
	for _, r := range req {
		if r.Op == l7.OpFrame {
			got = append(got, fmt.Sprintf("%s %s %s %d", r.Verb, r.Resource, r.Aux, StreamID(&l7.Frame{Args: r.Args})))
		}
	}
	want := []string{"POST /public/up 127.0.0.1 0", "POST /public/c 127.0.0.1 3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %q, want %q", got, want)
	}
	if rep[0].Op != l7.OpFrame || rep[1].St.Settings != true {
		t.Errorf("replies: the 101, then the server's SETTINGS; got %v, %v", rep[0], rep[1])
	}
	if !Sniff(c.req) {
		t.Error("Sniff refuses the upgrade request")
	}
}

// TestMalformed: bad input is an error wrapping ErrMalformed or
// ErrTooLong, never a panic.
func TestMalformed(t *testing.T) {
	pre := preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	hdr := func(length int, typ, flags byte, id uint32, payload string) string {
		b := appendFrameHeader(nil, length, typ, flags, id)
		return string(b) + payload
	}
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"not a preface", "PRI * HTTP/2.1\r\n\r\nSM\r\n\r\n", l7.ErrMalformed},
		{"frame over the limit", pre + hdr(defaultFrameSize+1, typeData, 0, 1, ""), errFrameSize},
		{"CONTINUATION alone", pre + hdr(1, typeContinuation, flagEndHeaders, 1, "\x82"), errContinuation},
		{"HEADERS on stream 0", pre + hdr(1, typeHeaders, flagEndHeaders, 0, "\x82"), errStreamID},
		{"HEADERS on an even stream", pre + hdr(1, typeHeaders, flagEndHeaders, 2, "\x82"), errStreamID},
		{"CONTINUATION of another stream", pre + hdr(1, typeHeaders, 0, 1, "\x82") + hdr(1, typeContinuation, flagEndHeaders, 3, "\x84"), errContinuation},
		{"index 0", pre + hdr(1, typeHeaders, flagEndHeaders, 1, "\x80"), errIndex},
		{"index past the tables", pre + hdr(1, typeHeaders, flagEndHeaders, 1, "\xbf"), errIndex},
		{"huffman EOS", pre + hdr(7, typeHeaders, flagEndHeaders, 1, "\x82\x04\x84\xff\xff\xff\xff"), errHuffman},
		{"huffman bad padding", pre + hdr(4, typeHeaders, flagEndHeaders, 1, "\x82\x04\x81\x00"), errHuffman},
		{"size update above the limit", pre + hdr(3, typeHeaders, flagEndHeaders, 1, "\x3f\xe2\x1f"), errSize},
		{"size update after a field", pre + hdr(2, typeHeaders, flagEndHeaders, 1, "\x82\x20"), errUpdate},
		{"string past the block", pre + hdr(3, typeHeaders, flagEndHeaders, 1, "\x82\x04\x05"), errString},
		{"integer too large", pre + hdr(7, typeHeaders, flagEndHeaders, 1, "\x82\x7f\xff\xff\xff\xff\x0f"), errInt},
		{"no :method", pre + hdr(1, typeHeaders, flagEndHeaders, 1, "\x84"), errRequest},
		{"no :path", pre + hdr(1, typeHeaders, flagEndHeaders, 1, "\x82"), errRequest},
		{"two :path", pre + hdr(3, typeHeaders, flagEndHeaders, 1, "\x82\x84\x85"), errDuplicate},
		{"padding past the frame", pre + hdr(2, typeHeaders, flagEndHeaders|flagPadded, 1, "\x05\x82"), errPadding},
		{"SETTINGS of 5 bytes", pre + hdr(5, typeSettings, 0, 0, "\x00\x05\x00\x00\x40"), errSettings},
		{"SETTINGS ACK with a payload", pre + hdr(6, typeSettings, flagAck, 0, "\x00\x01\x00\x00\x00\x00"), errSettings},
		{"SETTINGS on a stream", pre + hdr(0, typeSettings, 0, 1, ""), errSettings},
		{"RST_STREAM of 3 bytes", pre + hdr(3, typeRSTStream, 0, 1, "\x00\x00\x00"), errFrameLen},
		{"bad authority", pre + hdr(5, typeHeaders, flagEndHeaders, 1, "\x82\x84\x01\x01@"), errHost},
		{"path not normalisable", pre + hdr(6, typeHeaders, flagEndHeaders, 1, "\x82\x04\x03/%0\x01\x01h"), l7.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := l7test.Whole(t, parseFunc(NewParser(), l7.DirRequest), []byte(tc.in))
			last := rs[len(rs)-1]
			if !errors.Is(last.Err, tc.want) {
				t.Errorf("got %v, want %v", last, tc.want)
			}
		})
	}
	// A :path over MaxPath.
	c := newClient(t)
	c.request(get("/"+strings.Repeat("a", MaxPath), "h"), true, 1000)
	rs := l7test.Whole(t, parseFunc(NewParser(), l7.DirRequest), c.buf.Bytes())
	if last := rs[len(rs)-1]; !errors.Is(last.Err, errPath) {
		t.Errorf("long path: %v", last)
	}
	// A reply frame over what the client allows.
	p := NewParser()
	rs = l7test.Whole(t, parseFunc(p, l7.DirReply), []byte(hdr(defaultFrameSize+1, typeData, 0, 1, "")))
	if last := rs[len(rs)-1]; !errors.Is(last.Err, errFrameSize) {
		t.Errorf("reply over the limit: %v", last)
	}
	// A header block over MaxHeaderBlock, in CONTINUATIONs.
	var b []byte
	b = append(b, pre...)
	b = appendFrameHeader(b, 1, typeHeaders, 0, 1)
	b = append(b, 0x82)
	for len(b) < MaxHeaderBlock+2*defaultFrameSize {
		b = appendFrameHeader(b, defaultFrameSize, typeContinuation, 0, 1)
		b = append(b, make([]byte, defaultFrameSize)...)
	}
	rs = l7test.Whole(t, parseFunc(NewParser(), l7.DirRequest), b)
	if last := rs[len(rs)-1]; !errors.Is(last.Err, errBlock) {
		t.Errorf("header block over MaxHeaderBlock: %v", last)
	}
}

// TestHPACK decodes, with the parser's decoder, header lists encoded by
// golang.org/x/net/http2/hpack's Encoder (Huffman, indexing, evictions,
// table size updates): every field must come out as it went in, for
// random lists over one connection.
func TestHPACK(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	p := NewParser()
	p.hd.setLimit(MaxTableSize)
	var got []string
	p.fieldHook = func(name, value []byte) { got = append(got, string(name)+": "+string(value)) }
	words := []string{"a", "content-type", "x-request-id", "user-agent", "cookie", ":path", "accept", "x-b3-traceid"}
	for i := range 2000 {
		hb.Reset()
		switch rng.IntN(40) {
		case 0:
			enc.SetMaxDynamicTableSizeLimit(uint32(MaxTableSize))
			enc.SetMaxDynamicTableSize(uint32(rng.IntN(MaxTableSize + 1)))
		case 1:
			enc.SetMaxDynamicTableSize(0)
		}
		var want []string
		n := 1 + rng.IntN(12)
		for range n {
			name := words[rng.IntN(len(words))]
			if rng.IntN(4) == 0 {
				name = fmt.Sprintf("x-%d", rng.IntN(50))
			}
			var v []byte
			switch rng.IntN(5) {
			case 0:
				v = make([]byte, rng.IntN(3000))
				for j := range v {
					v[j] = byte(0x20 + rng.IntN(0x5f))
				}
			case 1:
				for range rng.IntN(20) {
					v = append(v, byte(rng.IntN(256))) // Huffman's long codes
				}
			default:
				v = []byte(strconv.Itoa(rng.IntN(30)))
			}
			hf := hpack.HeaderField{Name: name, Value: string(v), Sensitive: rng.IntN(10) == 0}
			if err := enc.WriteField(hf); err != nil {
				t.Fatal(err)
			}
			want = append(want, hf.Name+": "+hf.Value)
		}
		got = got[:0]
		if err := p.decode(hb.Bytes(), false); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("block %d:\n got %q\nwant %q", i, got, want)
		}
		if p.hd.size > p.hd.max {
			t.Fatalf("block %d: table size %d above its maximum %d", i, p.hd.size, p.hd.max)
		}
	}
}

// TestHuffman decodes every byte value and strings of them, encoded by
// hpack.AppendHuffmanString.
func TestHuffman(t *testing.T) {
	var all []byte
	for c := range 256 {
		all = append(all, byte(c))
	}
	for _, s := range []string{"", "a", "www.example.com", "no-cache", string(all), strings.Repeat("\xff\x00", 100)} {
		enc := hpack.AppendHuffmanString(nil, s)
		got, err := huffmanDecode(make([]byte, 0, 1024), enc)
		if err != nil || string(got) != s {
			t.Errorf("%q: got %q, %v", s, got, err)
		}
	}
	if _, err := huffmanDecode(make([]byte, 0, 2), hpack.AppendHuffmanString(nil, "abc")); !errors.Is(err, errField) {
		t.Errorf("over the scratch: %v", err)
	}
}

// TestTableRing fills the dynamic table past its ring's end many times:
// entries stay whole and in order.
func TestTableRing(t *testing.T) {
	var d decoder
	d.reset()
	rng := rand.New(rand.NewPCG(5, 6))
	var model [][2]string // newest first
	size := 0
	for i := range 5000 {
		name := fmt.Sprintf("n%d", i)
		value := strings.Repeat(string(rune('a'+i%26)), rng.IntN(1500))
		d.insert([]byte(name), []byte(value))
		model = append([][2]string{{name, value}}, model...)
		size += len(name) + len(value) + 32
		for size > d.max {
			last := model[len(model)-1]
			size -= len(last[0]) + len(last[1]) + 32
			model = model[:len(model)-1]
		}
		if d.n != len(model) || d.size != size {
			t.Fatalf("insert %d: %d entries of %d bytes, want %d of %d", i, d.n, d.size, len(model), size)
		}
		for k, e := range model {
			n, v, ok := d.get(k + 1)
			if !ok || string(n) != e[0] || string(v) != e[1] {
				t.Fatalf("insert %d: entry %d = %q, want %q", i, k+1, n, e[0])
			}
		}
	}
}

func TestSniff(t *testing.T) {
	c := readConn(t, "curl-7.88-upgrade")
	for _, tc := range []struct {
		name string
		in   string
		want bool
	}{
		{"preface", preface, true},
		{"preface and SETTINGS", preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", true},
		{"part of the preface", preface[:20], false},
		{"h2c upgrade", string(c.req), true},
		{"upgrade to websocket", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"upgrade head not whole", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n", false},
		{"HTTP/1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"redis", "*1\r\n$4\r\nPING\r\n", false},
		{"redis inline", "PING\r\n", false},
		{"TLS", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false},
		{"memcached", "get foo\r\n", false},
		{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", false},
		{"mysql greeting", "J\x00\x00\x00\x0a8.0.36\x00", false},
		{"empty", "", false},
	} {
		if got := Sniff([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: Sniff = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDenyGolden compares Deny's replies with testdata/deny.golden
// (go test -update rewrites it), and decodes them as a client would.
func TestDenyGolden(t *testing.T) {
	var golden bytes.Buffer
	for _, tc := range []struct {
		name   string
		f      l7.Frame
		reason string
	}{
		{"http", l7.Frame{Verb: []byte("GET"), Args: 3}, "l7_not_allowed"},
		{"head", l7.Frame{Verb: []byte("HEAD"), Args: 5}, "l7_not_allowed"},
		{"grpc", l7.Frame{Verb: []byte("POST"), Args: 7 | ArgsGRPC}, "l7_not_allowed"},
		{"grpc percent and controls", l7.Frame{Verb: []byte("POST"), Args: 9 | ArgsGRPC}, "100%\r\n sure" + strings.Repeat("x", 200)},
		{"http no reason", l7.Frame{Verb: []byte("GET"), Args: 11}, "\x01"},
		{"http/1.1 before an upgrade", l7.Frame{Verb: []byte("GET")}, "l7_not_allowed"},
	} {
		out := Deny(nil, &tc.f, tc.reason)
		fmt.Fprintf(&golden, "%s: %s\n", tc.name, strconv.Quote(string(out)))
		if StreamID(&tc.f) == 0 {
			continue
		}
		fr := http2.NewFramer(nil, bytes.NewReader(out))
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mh := f.(*http2.MetaHeadersFrame)
		if mh.StreamID != StreamID(&tc.f) {
			t.Errorf("%s: stream %d", tc.name, mh.StreamID)
		}
		if IsGRPC(&tc.f) && (mh.PseudoValue("status") != "200" || mh.Fields[len(mh.Fields)-2].Value != "7" || !mh.StreamEnded()) {
			t.Errorf("%s: %v", tc.name, mh.Fields)
		}
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

// TestReject: the rewritten block decodes, in golang.org/x/net/http2's
// Framer, to a stream error (PROTOCOL_ERROR) after the whole block was
// decoded: the fields the block indexed are in the decoder's table, so a
// later block referencing them decodes.
func TestReject(t *testing.T) {
	c := newClient(t)
	c.request(grpcCall("/p.S/Denied"), false, 5)
	c.request(grpcCall("/p.S/Denied"), false, 0)
	data := c.buf.Bytes()
	p := NewParser()
	rs := l7test.Whole(t, parseFunc(p, l7.DirRequest), data)
	var out []byte
	off := 0
	for i, r := range rs[:len(rs)-1] {
		if r.Op == l7.OpFrame && i == 2 {
			out = p.Reject(out, data[off:off+r.N])
		} else if r.Op != l7.OpSkip || off >= len(preface) {
			out = append(out, data[off:off+r.N]...)
		}
		off += r.N
	}
	fr := http2.NewFramer(nil, bytes.NewReader(out))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var se http2.StreamError
	if _, err := fr.ReadFrame(); err != nil { // SETTINGS
		t.Fatal(err)
	}
	if _, err := fr.ReadFrame(); !errors.As(err, &se) || se.StreamID != 1 || se.Code != http2.ErrCodeProtocol {
		t.Fatalf("rejected block: %v, want a PROTOCOL_ERROR stream error", err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("the next block: %v", err)
	}
	if mh := f.(*http2.MetaHeadersFrame); mh.PseudoValue("path") != "/p.S/Denied" || mh.StreamID != 3 {
		t.Errorf("the next block: %v", mh.Fields)
	}
	// The HEADERS frame of the rejected block ends the stream.
	if out[9+4]&flagEndStream == 0 {
		t.Error("END_STREAM not set")
	}
}

// TestAllocs: parsing requests (HPACK with Huffman and dynamic table hits
// and insertions) and replies, Deny, Reject, Credit and Sniff allocate
// nothing in steady state.
func TestAllocs(t *testing.T) {
	c := newClient(t)
	for i := range 200 {
		fields := grpcCall("/grpc.health.v1.Health/Check")
		fields = append(fields, [2]string{"x-request-id", strconv.Itoa(i)}) // an insertion per request
		id := c.request(fields, false, 0)
		_ = c.fr.WriteData(id, true, make([]byte, 10))
	}
	data := c.buf.Bytes()
	p := NewParser()
	var f l7.Frame
	off := 0
	next := func() {
		for {
			op, n, err := p.Parse(l7.DirRequest, data[off:], &f)
			if err != nil || op == l7.OpMore {
				t.Fatalf("at %d: %v %v", off, op, err)
			}
			off += n
			if op == l7.OpFrame {
				return
			}
		}
	}
	next()
	next()
	if n := testing.AllocsPerRun(150, next); n != 0 {
		t.Errorf("request parsing: %v allocations per request", n)
	}
	rep := readConn(t, "grpc-go-1.85-health").rep
	if n := testing.AllocsPerRun(100, func() {
		for o := 0; o < len(rep); {
			_, n, err := p.Parse(l7.DirReply, rep[o:], &f)
			if err != nil || n == 0 {
				break
			}
			o += n
		}
	}); n != 0 {
		t.Errorf("reply parsing: %v allocations", n)
	}
	dst := make([]byte, 0, 1024)
	fr := l7.Frame{Verb: []byte("POST"), Args: 3 | ArgsGRPC}
	fh := l7.Frame{Verb: []byte("GET"), Args: 5}
	block := data[len(preface)+9 : len(preface)+9+100]
	for name, fn := range map[string]func(){
		"Deny grpc": func() { Deny(dst[:0], &fr, "l7_not_allowed") },
		"Deny http": func() { Deny(dst[:0], &fh, "l7_not_allowed") },
		"Reject":    func() { p.Reject(dst[:0], block) },
		"Credit":    func() { p.Credit(dst[:0], 1000) },
		"Sniff":     func() { Sniff(data) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

// BenchmarkParseRequest parses gRPC requests (HEADERS with dynamic table
// hits, one insertion each, and a DATA frame) in steady state; the bench
// harness judges it per message (ns/msg) like the other parsers'.
func BenchmarkParseRequest(b *testing.B) { b.Run("grpc-unary", benchParseRequests) }

func benchParseRequests(b *testing.B) {
	c := newClient(b)
	const reqs = 1000
	for i := range reqs {
		fields := grpcCall("/grpc.health.v1.Health/Check")
		fields = append(fields, [2]string{"x-request-id", strconv.Itoa(i)})
		id := c.request(fields, false, 0)
		_ = c.fr.WriteData(id, true, make([]byte, 10))
	}
	data := c.buf.Bytes()
	b.SetBytes(int64(len(data)) / reqs)
	b.ReportAllocs()
	var f l7.Frame
	p := NewParser()
	msgs := 0
	b.ResetTimer()
	for msgs < b.N {
		restart(p)
		for off := 0; off < len(data) && msgs < b.N; {
			op, n, err := p.Parse(l7.DirRequest, data[off:], &f)
			if err != nil {
				b.Fatal(err)
			}
			if op == l7.OpFrame {
				msgs++
			}
			off += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
}

// BenchmarkParseReply frames the server's side of the recorded gRPC
// connection.
func BenchmarkParseReply(b *testing.B) { b.Run("grpc-go-recorded", benchParseReplies) }

func benchParseReplies(b *testing.B) {
	c := readConn(b, "grpc-go-1.85-health")
	p := NewParser()
	l7test.Whole(b, parseFunc(p, l7.DirRequest), c.req)
	var f l7.Frame
	frames := 0
	for off := 0; off < len(c.rep); {
		_, n, _ := p.Parse(l7.DirReply, c.rep[off:], &f)
		off += n
		frames++
	}
	b.SetBytes(int64(len(c.rep)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for off := 0; off < len(c.rep); {
			_, n, err := p.Parse(l7.DirReply, c.rep[off:], &f)
			if err != nil {
				b.Fatal(err)
			}
			off += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
}

// restart brings p back to a new connection's state, keeping its buffers.
func restart(p *Parser) {
	ring, ents, block, str := p.hd.ring, p.hd.ents, p.block, p.str
	*p = Parser{block: block, str: str}
	p.hd.ring, p.hd.ents = ring, ents
	p.req.maxFrame, p.rep.maxFrame = defaultFrameSize, defaultFrameSize
	p.hd.reset()
}

// TestUpgradeRequestSideFirst: once the 101 is framed, the request side
// must find the connection switched to HTTP/2 even when it asks before the
// reply side's next call (each direction has its own goroutine in the
// proxy). It once got the http1 parser's OpPass instead, and the proxy
// forwarded the rest of the connection unjudged.
func TestUpgradeRequestSideFirst(t *testing.T) {
	c := readConn(t, "curl-7.88-upgrade")
	pre := bytes.Index(c.req, []byte(preface))
	if pre < 0 {
		t.Fatal("no client preface in the recording")
	}
	p := NewParser()
	var f l7.Frame
	for off := 0; off < pre; {
		op, n, err := p.Parse(l7.DirRequest, c.req[off:pre], &f)
		if err != nil || (op != l7.OpFrame && op != l7.OpSkip) || n <= 0 {
			t.Fatalf("HTTP/1.1 request at %d: %v %d %v", off, op, n, err)
		}
		off += n
	}
	op, n, err := p.Parse(l7.DirReply, c.rep, &f)
	if err != nil || op != l7.OpFrame || !bytes.HasPrefix(c.rep[:n], []byte("HTTP/1.1 101 ")) {
		t.Fatalf("the 101: %v %d %v", op, n, err)
	}
	// The request side asks first: the preface, then stream 3's request.
	rest := c.req[pre:]
	op, n, err = p.Parse(l7.DirRequest, rest, &f)
	if err != nil || op != l7.OpSkip || n != len(preface) {
		t.Fatalf("after the 101, the request side got %v %d %v; want the preface skipped", op, n, err)
	}
	for rest = rest[n:]; len(rest) > 0; rest = rest[n:] {
		op, n, err = p.Parse(l7.DirRequest, rest, &f)
		if err != nil || op == l7.OpPass || op == l7.OpMore {
			t.Fatalf("HTTP/2 request side: %v %d %v", op, n, err)
		}
		if op == l7.OpFrame {
			if string(f.Resource) != "/public/c" {
				t.Errorf("first HTTP/2 request %q, want /public/c", f.Resource)
			}
			return
		}
	}
	t.Fatal("no HTTP/2 request framed after the upgrade")
}
