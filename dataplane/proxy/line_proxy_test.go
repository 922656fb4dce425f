package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/redis"
)

// lineServer is a real TCP server of the tests' line protocol (see
// line_test.go). It answers "OK <request line>" to most requests, and:
//   - QUIET: nothing;
//   - PIPE: "PARTIAL <request line>", at once;
//   - MULTI: "PARTIAL 1".."PARTIAL 3", 20ms apart, then "OK MULTI";
//   - SLOW: "OK SLOW" after 150ms;
//   - a request with "+n" has an n-byte body, read before answering;
//   - PUT: "OK PUT n";
//   - STARTTLS: "OK STARTTLS", then echoes every byte until the client's
//     half-close, then closes.
//
// With greet, it says "HELLO line" first (a server-first protocol).
// Everything it reads is kept for received().
type lineServer struct {
	ln    net.Listener
	greet bool
	wg    sync.WaitGroup

	mu    sync.Mutex
	got   bytes.Buffer
	conns map[net.Conn]struct{}
}

func startLineServer(t *testing.T, greet bool) *lineServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{ln: ln, greet: greet, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *lineServer) addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// received is everything the server has read, all connections together.
func (s *lineServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func (s *lineServer) record(b []byte) {
	s.mu.Lock()
	s.got.Write(b)
	s.mu.Unlock()
}

func (s *lineServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	if s.greet {
		if _, err := io.WriteString(c, "HELLO line\n"); err != nil {
			return
		}
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		s.record([]byte(line))
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return
		}
		n := 0
		for _, f := range fields {
			if strings.HasPrefix(f, "+") {
				n, _ = strconv.Atoi(f[1:])
			}
		}
		if n > 0 {
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			s.record(body)
		}
		var out string
		switch fields[0] {
		case "QUIET":
			continue
		case "PIPE":
			out = "PARTIAL " + line
		case "MULTI":
			for i := 1; i <= 3; i++ {
				if _, err := io.WriteString(c, "PARTIAL "+strconv.Itoa(i)+"\n"); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			out = "OK MULTI\n"
		case "SLOW":
			time.Sleep(150 * time.Millisecond)
			out = "OK SLOW\n"
		case "PUT":
			out = "OK PUT " + strconv.Itoa(n) + "\n"
		case "STARTTLS":
			if _, err := io.WriteString(c, "OK STARTTLS\n"); err != nil {
				return
			}
			_, _ = io.Copy(c, r)
			return
		default:
			out = "OK " + line
		}
		if _, err := io.WriteString(c, out); err != nil {
			return
		}
	}
}

// lineSetup describes a line-protocol harness.
type lineSetup struct {
	opts       proxy.LineOptions
	mode       bulkheadv1.Mode // protect when unset
	undeclared bool
}

// newLineHarness runs a line server and a proxy in front of it that parses
// the line protocol (o.Name is set to proxy.LineName).
func newLineHarness(t *testing.T, ls lineSetup, opts ...harnessOpt) (*harness, *lineServer) {
	t.Helper()
	ls.opts.Name = proxy.LineName(t)
	if ls.mode == 0 {
		ls.mode = bulkheadv1.Mode_MODE_PROTECT
	}
	srv := startLineServer(t, ls.opts.ServerFirst)
	pol := func(t testing.TB, r netip.AddrPort) *enforce.Policy {
		ids := []*bulkheadv1.Identity{{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{cartIP.String()}}}
		p, err := enforce.Compile(proxy.LinePolicy(ls.opts.Name, r.Port(), ls.mode, ls.undeclared), ids)
		if err != nil {
			t.Fatalf("compile policy: %v", err)
		}
		return p
	}
	opts = append([]harnessOpt{func(c *proxy.Config) { c.Protocols = []l7.Protocol{proxy.LineProtocol(ls.opts)} }}, opts...)
	return newHarnessAt(t, srv.addr(), pol, opts...), srv
}

// lineConn is a client connection of the line protocol.
type lineConn struct {
	t *testing.T
	c *net.TCPConn
	r *bufio.Reader
}

func (h *harness) dialLine() *lineConn {
	h.t.Helper()
	c := h.dial(netip.Addr{})
	return &lineConn{t: h.t, c: c, r: bufio.NewReader(c)}
}

func (lc *lineConn) send(s string) {
	lc.t.Helper()
	if _, err := io.WriteString(lc.c, s); err != nil {
		lc.t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads the next lines and compares them with want.
func (lc *lineConn) expect(want ...string) {
	lc.t.Helper()
	_ = lc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, w := range want {
		got, err := lc.r.ReadString('\n')
		if err != nil {
			lc.t.Fatalf("reading %q: got %q, %v", w, got, err)
		}
		if got != w {
			lc.t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func denied(verb string) string { return "DENIED " + verb + " l7_not_allowed\n" }

func TestLineNoReplyDoesNotDelayDenial(t *testing.T) {
	h, srv := newLineHarness(t, lineSetup{})
	c := h.dialLine()
	// The server never answers QUIET: counted as awaiting a reply, they
	// would hold the denial back for ever.
	c.send("QUIET a\nQUIET b\nDEL x\n")
	c.expect(denied("DEL"))
	c.send("GET k\n")
	c.expect("OK GET k\n")
	if got := srv.received(); got != "QUIET a\nQUIET b\nGET k\n" {
		t.Errorf("server received %q", got)
	}
}

// TestLineNoReplyDenialInPipeline: the denial of a NoReply request that
// follows other NoReply requests goes after their (Partial) answers and
// just before the next complete reply, where the server would have put its
// own error (PostgreSQL: the rows of the statements before it, the error,
// then the Sync's ReadyForQuery). Without NoReply requests before it, it
// goes at once.
func TestLineNoReplyDenialInPipeline(t *testing.T) {
	h, srv := newLineHarness(t, lineSetup{})
	c := h.dialLine()
	c.send("PIPE a\nPIPE b\nPIPEDEL c\nPIPE d\nEND\n")
	c.expect("PARTIAL PIPE a\n", "PARTIAL PIPE b\n", denied("PIPEDEL"), "OK END\n")
	// Behind a complete reply still awaited, then the same again.
	c.send("SLOW\nPIPE e\nPIPEDEL f\nEND\nPIPE g\nPIPEDEL h\nEND\n")
	c.expect("OK SLOW\n", "PARTIAL PIPE e\n", denied("PIPEDEL"), "OK END\n", "PARTIAL PIPE g\n", denied("PIPEDEL"), "OK END\n")
	// Nothing forwarded that could still be answered: at once, without
	// waiting for the END.
	c.send("GET k\n")
	c.expect("OK GET k\n")
	c.send("PIPEDEL i\n")
	c.expect(denied("PIPEDEL"))
	c.send("END\nGET l\n")
	c.expect("OK END\n", "OK GET l\n")
	if got, want := srv.received(), "PIPE a\nPIPE b\nEND\nSLOW\nPIPE e\nEND\nPIPE g\nEND\nGET k\nEND\nGET l\n"; got != want {
		t.Errorf("server received %q, want %q", got, want)
	}
}

func TestLinePartialRepliesDoNotAnswer(t *testing.T) {
	h, _ := newLineHarness(t, lineSetup{})
	c := h.dialLine()
	// The server sends MULTI's answer in four writes, 20ms apart; the
	// denial belongs after the last.
	c.send("MULTI\nDEL x\nGET k\n")
	c.expect("PARTIAL 1\n", "PARTIAL 2\n", "PARTIAL 3\n", "OK MULTI\n", denied("DEL"), "OK GET k\n")
}

func TestLineDeniedBodyIsDropped(t *testing.T) {
	h, srv := newLineHarness(t, lineSetup{})
	c := h.dialLine()
	c.send("PUT a +5\nhello")
	c.expect("OK PUT 5\n")
	// A body larger than the proxy's first buffer, with lines in it, in
	// one write with the request after it.
	secret := strings.Repeat("SECRET\nGET x\n", 20000)
	c.send("DEL b +" + strconv.Itoa(len(secret)) + "\n" + secret + "GET k\n")
	c.expect(denied("DEL"), "OK GET k\n")
	if got := srv.received(); got != "PUT a +5\nhelloGET k\n" {
		t.Errorf("server received %d bytes: %.80q", len(got), got)
	}
	// Counted just after each write: wait for the last count.
	want := float64(len("PUT a +5\nhelloGET k\n"))
	for deadline := time.Now().Add(2 * time.Second); h.counter("bulkhead_proxy_bytes_total", "direction", "in") != want &&
		time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.counter("bulkhead_proxy_bytes_total", "direction", "in"); got != want {
		t.Errorf("bytes in %v, want %v", got, want)
	}
}

func TestLineDenyObserver(t *testing.T) {
	var observed atomic.Int64
	h, srv := newLineHarness(t, lineSetup{opts: proxy.LineOptions{Denied: &observed}})
	c := h.dialLine()
	c.send("GET a\nTXN\nGET b\nGET c\nEND\nGET d\n")
	c.expect("OK GET a\n", denied("TXN"), "OK END\n", "OK GET d\n")
	if got := srv.received(); got != "GET a\nEND\nGET d\n" {
		t.Errorf("server received %q", got)
	}
	if got := observed.Load(); got != 1 {
		t.Errorf("DenyObserver called %d times, want 1", got)
	}
}

// TestLinePassSplices: once the parser passes, the rest of both directions
// is forwarded unparsed (bytes the line parser would reject included), byte
// for byte, and half-closes still work.
func TestLinePassSplices(t *testing.T) {
	for _, tc := range []struct {
		name string
		// together: the bulk bytes follow STARTTLS in one write, so that
		// the request direction passes; else the reply direction does.
		together bool
	}{{"reply direction passes", false}, {"request direction passes", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := newLineHarness(t, lineSetup{})
			c := h.dialLine()
			c.send("GET a\n")
			c.expect("OK GET a\n")
			bulk := make([]byte, 1<<20)
			_, _ = rand.Read(bulk)
			copy(bulk, "DEL x\n\x00")
			if tc.together {
				c.send("STARTTLS\n" + string(bulk))
				c.expect("OK STARTTLS\n")
			} else {
				c.send("STARTTLS\n")
				c.expect("OK STARTTLS\n")
				c.send(string(bulk))
			}
			if err := c.c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			echo, err := io.ReadAll(c.r)
			if err != nil {
				t.Fatalf("reading the echo: %v after %d bytes", err, len(echo))
			}
			if !bytes.Equal(echo, bulk) {
				t.Fatalf("echo differs: %d bytes, want %d", len(echo), len(bulk))
			}
			if got := srv.received(); got != "GET a\nSTARTTLS\n" {
				t.Errorf("server's line reader received %q", got)
			}
			name := proxy.LineName(t)
			if got := h.counter("bulkhead_proxy_messages_total", "protocol", name, "verdict", "allow"); got != 2 {
				t.Errorf("messages judged %v, want 2 (GET, STARTTLS)", got)
			}
			if got := h.counter("bulkhead_proxy_messages_total", "protocol", name, "verdict", "deny"); got != 0 {
				t.Errorf("messages denied after the pass: %v", got)
			}
			if got := h.counter("bulkhead_proxy_bytes_total", "direction", "out"); got != float64(len("OK GET a\nOK STARTTLS\n")+len(bulk)) {
				t.Errorf("bytes out %v, want %d", got, len("OK GET a\nOK STARTTLS\n")+len(bulk))
			}
		})
	}
}

// TestLineCloseOnDeny: the deny reply comes after the earlier replies, then
// a FIN (an orderly EOF, not a reset, although the client sent more).
func TestLineCloseOnDeny(t *testing.T) {
	h, srv := newLineHarness(t, lineSetup{opts: proxy.LineOptions{CloseOnDeny: true}})
	c := h.dialLine()
	c.send("SLOW\nDEL x\n")
	// Sent while the proxy waits for SLOW's reply: unread when it closes,
	// unless it drains what the client sends.
	time.Sleep(50 * time.Millisecond)
	c.send("GET b\n")
	c.expect("OK SLOW\n", denied("DEL"))
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the deny reply: %q, %v; want EOF", rest, err)
	}
	// The client may still send: the proxy reads and drops it.
	_, _ = io.WriteString(c.c, "GET c\n")

	// Denied at once, with more bytes behind it.
	c2 := h.dialLine()
	c2.send("DEL y\nGET d\n" + strings.Repeat("x", 64<<10))
	c2.expect(denied("DEL"))
	if rest, err := io.ReadAll(c2.r); err != nil || len(rest) != 0 {
		t.Fatalf("after the deny reply: %q, %v; want EOF", rest, err)
	}
	if got := srv.received(); got != "SLOW\n" {
		t.Errorf("server received %q", got)
	}
}

// TestLineServerFirstSniffed: on an undeclared port the proxy recognises a
// server-first protocol by the server's first bytes and judges the client's
// messages.
func TestLineServerFirstSniffed(t *testing.T) {
	// A long sniff timeout: a proxy that waited for the client would
	// deliver the greeting only after it.
	h, _ := newLineHarness(t, lineSetup{opts: proxy.LineOptions{ServerFirst: true}, undeclared: true},
		func(c *proxy.Config) { c.Limits.SniffTimeout = 3 * time.Second })
	start := time.Now()
	c := h.dialLine()
	c.expect("HELLO line\n")
	if d := time.Since(start); d > time.Second {
		t.Errorf("greeting after %v: the proxy waited for the client", d)
	}
	c.send("GET a\n")
	c.expect("OK GET a\n")
	c.send("DEL x\nGET b\n")
	c.expect(denied("DEL"), "OK GET b\n")
	flows := h.flows()
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "DEL" }); f == nil ||
		f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || f.GetProtocol() != proxy.LineName(t) {
		t.Errorf("DEL flow: %v; all:%s", f, flowString(flows))
	}
}

// TestClientFirstSniffedBesideServerFirst: with a server-first protocol
// configured, client-first protocols are still sniffed from the client's
// bytes, and a connection on which nobody speaks in time is spliced.
func TestClientFirstSniffedBesideServerFirst(t *testing.T) {
	line := proxy.LineProtocol(proxy.LineOptions{Name: proxy.LineName(t), ServerFirst: true})
	h := newHarness(t, func(t testing.TB, r netip.AddrPort) *enforce.Policy {
		return compile(t, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: r.Port(), commands: allowed, undeclared: true})
	}, func(c *proxy.Config) { c.Protocols = []l7.Protocol{line, redis.Protocol()} })
	c := h.dial(netip.Addr{})
	r := newReplyReader(c)
	if got := roundTrip(t, c, r, cmd("FLUSHALL")); !isDeny(got) {
		t.Fatalf("FLUSHALL on a sniffed Redis port: %q, want a denial", got)
	}
	quiet := h.dial(netip.Addr{})
	time.Sleep(300 * time.Millisecond)
	if got := roundTrip(t, quiet, newReplyReader(quiet), cmd("FLUSHALL")); got != "+OK\r\n" {
		t.Fatalf("FLUSHALL after a quiet start (L4): %q", got)
	}
}

// TestLineMonitorDoesNotDeny: in monitor mode nothing is denied, closed or
// dropped: bodies and CloseOnDeny included.
func TestLineMonitorDoesNotDeny(t *testing.T) {
	h, srv := newLineHarness(t, lineSetup{opts: proxy.LineOptions{CloseOnDeny: true}, mode: bulkheadv1.Mode_MODE_MONITOR})
	c := h.dialLine()
	c.send("DEL b +3\nabcGET k\n")
	c.expect("OK DEL b +3\n", "OK GET k\n")
	if got := srv.received(); got != "DEL b +3\nabcGET k\n" {
		t.Errorf("server received %q", got)
	}
	flows := h.flows()
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetVerb() == "DEL" }); f == nil ||
		f.GetVerdict() != bulkheadv1.Verdict_VERDICT_VIOLATION {
		t.Errorf("DEL flow: %v; all:%s", f, flowString(flows))
	}
}
