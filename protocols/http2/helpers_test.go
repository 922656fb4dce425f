package http2

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// client builds client-side HTTP/2 bytes with golang.org/x/net/http2's
// Framer and hpack's Encoder, as a real Go client does.
type client struct {
	t    testing.TB
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32
}

func newClient(t testing.TB) *client {
	c := &client{t: t, next: 1}
	c.fr = http2.NewFramer(&c.buf, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.buf.WriteString(preface)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// request writes a HEADERS frame (split into CONTINUATIONs of at most
// frag bytes when frag > 0) opening the next stream; it returns its id.
func (c *client) request(fields [][2]string, endStream bool, frag int) uint32 {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			c.t.Fatal(err)
		}
	}
	id := c.next
	c.next += 2
	c.headers(id, c.hbuf.Bytes(), endStream, frag)
	return id
}

func (c *client) headers(id uint32, block []byte, endStream bool, frag int) {
	if frag <= 0 || frag > len(block) {
		frag = len(block)
	}
	first := block[:frag]
	rest := block[frag:]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0}); err != nil {
		c.t.Fatal(err)
	}
	for len(rest) > 0 {
		k := min(frag, len(rest))
		if err := c.fr.WriteContinuation(id, k == len(rest), rest[:k]); err != nil {
			c.t.Fatal(err)
		}
		rest = rest[k:]
	}
}

func get(path, host string) [][2]string {
	return [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", host}, {"user-agent", "test/1.0"}}
}

func grpcCall(method string) [][2]string {
	return [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "svc:50051"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "grpc-go/1.85.0"}}
}

// parsed is one request-direction result.
type parsed struct {
	op                  l7.Op
	n                   int
	verb, resource, aux string
	args                int
	st                  l7.Stream
}

// parseAll parses data in the request direction with p, feeding at most
// step bytes more each time OpMore asks (0: all at once), and returns the
// results.
func parseAll(t testing.TB, p *Parser, dir l7.Dir, data []byte, step int) []parsed {
	t.Helper()
	var out []parsed
	var f l7.Frame
	off, avail := 0, len(data)
	if step > 0 {
		avail = min(step, len(data))
	}
	for off < len(data) {
		op, n, err := p.Parse(dir, data[off:avail], &f)
		if err != nil {
			t.Fatalf("at %d: %v", off, err)
		}
		if op == l7.OpMore {
			if n < 1 {
				t.Fatalf("OpMore with n=%d", n)
			}
			if avail == len(data) {
				t.Fatalf("OpMore %d at the end (off %d of %d)", n, off, len(data))
			}
			avail = min(len(data), avail+max(step, 1))
			continue
		}
		if n <= 0 || n > avail-off {
			t.Fatalf("n=%d out of range", n)
		}
		r := parsed{op: op, n: n, st: p.Stream(dir)}
		if op == l7.OpFrame {
			r.verb, r.resource, r.aux, r.args = string(f.Verb), string(f.Resource), string(f.Aux), f.Args
		}
		out = append(out, r)
		off += n
		if step > 0 && avail < off {
			avail = off
		}
	}
	return out
}

// frames keeps the OpFrame results.
func frames(rs []parsed) []parsed {
	var out []parsed
	for _, r := range rs {
		if r.op == l7.OpFrame {
			r.n = 0
			out = append(out, r)
		}
	}
	return out
}
