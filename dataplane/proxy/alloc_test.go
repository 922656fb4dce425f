package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/redis"
)

// recorder is an io.Writer that keeps what it gets while keep is set and
// only counts it otherwise (so that steady-state runs allocate nothing).
type recorder struct {
	keep bool
	buf  bytes.Buffer
	n    int
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.keep {
		r.buf.Write(b)
	}
	r.n += len(b)
	return len(b), nil
}

var (
	testSrc = netip.MustParseAddrPort("198.18.0.10:40000")
	testDst = netip.MustParseAddrPort("198.18.0.20:6379")
)

// testSession builds the per-connection state of an L7 Redis connection
// from testSrc (segment demo/cart, allowed GET, SET, PING and SUBSCRIBE) to testDst,
// writing requests to up and replies to down, as the proxy would after
// accepting and dialling.
func testSession(t testing.TB, mode bulkheadv1.Mode, up, down io.Writer) (*session, *report.Aggregator) {
	t.Helper()
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "redis", Namespace: "demo", Mode: mode, Revision: "r1",
		Ports: []*bulkheadv1.Port{{Port: uint32(testDst.Port()), Protocol: "redis"}},
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/redis/from-cart",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: uint32(testDst.Port()), Protocol: "redis"}},
			Redis: &bulkheadv1.RedisMatch{Commands: []string{"GET", "SET", "PING", "SUBSCRIBE"}},
		}},
	}
	ids := []*bulkheadv1.Identity{{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{testSrc.Addr().String()}}}
	pol, err := enforce.Compile(pp, ids)
	if err != nil {
		t.Fatal(err)
	}
	eng := &enforce.Engine{}
	eng.Store(pol)
	agg := report.NewAggregator(0)
	p := New(Config{Engine: eng, Aggregator: agg, Metrics: metrics.New(nil), Logger: slog.New(slog.DiscardHandler)})
	s := &session{p: p, src: testSrc, dst: testDst, conn: pol.Inbound(testSrc.Addr(), testDst.Port()), declared: "redis"}
	d := s.conn.Connect()
	s.countConnect(d, "redis")
	s.reportConnect(d, "redis")
	proto := redis.Protocol()
	s.startL7(&proto, up, down)
	return s, agg
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func req(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

func denial(verb, sub string) []byte {
	f := l7.Frame{Verb: []byte(verb), Sub: []byte(sub)}
	return redis.Deny(nil, &f, enforce.L7.String())
}

// TestOrderingAndAllocs runs pipelines through the per-message functions
// (requests, then replies as redis would send them) and checks the bytes
// each side gets, then that steady-state runs allocate nothing per message.
func TestOrderingAndAllocs(t *testing.T) {
	tests := []struct {
		name     string
		reqs     []byte // one read from the client
		replies  []byte // one read from redis
		wantUp   []byte
		wantDown []byte
	}{
		{
			name:     "denials wait for earlier replies",
			reqs:     join(req("GET", "a"), req("FLUSHALL"), req("SET", "b", "1"), req("CONFIG", "SET", "x", "y"), req("PING")),
			replies:  []byte("$-1\r\n+OK\r\n+PONG\r\n"),
			wantUp:   join(req("GET", "a"), req("SET", "b", "1"), req("PING")),
			wantDown: join([]byte("$-1\r\n"), denial("FLUSHALL", ""), []byte("+OK\r\n"), denial("CONFIG", "SET"), []byte("+PONG\r\n")),
		},
		{
			name:     "leading denials are written at once",
			reqs:     join(req("KEYS", "*"), req("DEL", "a"), req("GET", "a")),
			replies:  []byte("$1\r\nx\r\n"),
			wantUp:   req("GET", "a"),
			wantDown: join(denial("KEYS", ""), denial("DEL", ""), []byte("$1\r\nx\r\n")),
		},
		{
			name:     "trailing denials follow the last reply",
			reqs:     join(req("PING"), req("PING"), req("KEYS", "*"), req("KEYS", "*")),
			replies:  []byte("+PONG\r\n+PONG\r\n"),
			wantUp:   join(req("PING"), req("PING")),
			wantDown: join([]byte("+PONG\r\n+PONG\r\n"), denial("KEYS", ""), denial("KEYS", "")),
		},
		{
			name:     "inline and skipped requests",
			reqs:     []byte("PING\r\n\r\nflushall\r\nget a\r\n"),
			replies:  []byte("+PONG\r\n$-1\r\n"),
			wantUp:   []byte("PING\r\n\r\nget a\r\n"),
			wantDown: join([]byte("+PONG\r\n"), denial("flushall", ""), []byte("$-1\r\n")),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, down := &recorder{keep: true}, &recorder{keep: true}
			s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, up, down)
			run := func() {
				if c, need, err := s.requests(tc.reqs); c != len(tc.reqs) || need != 0 || err != nil {
					t.Fatalf("requests: consumed %d of %d, need %d, err %v", c, len(tc.reqs), need, err)
				}
				if c, need, err := s.replies(tc.replies); c != len(tc.replies) || need != 0 || err != nil {
					t.Fatalf("replies: consumed %d of %d, need %d, err %v", c, len(tc.replies), need, err)
				}
			}
			run()
			if !bytes.Equal(up.buf.Bytes(), tc.wantUp) {
				t.Errorf("upstream got\n%q\nwant\n%q", up.buf.Bytes(), tc.wantUp)
			}
			if !bytes.Equal(down.buf.Bytes(), tc.wantDown) {
				t.Errorf("client got\n%q\nwant\n%q", down.buf.Bytes(), tc.wantDown)
			}
			up.keep, down.keep = false, false
			upN, downN := up.n, down.n
			if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
				t.Errorf("%v allocations per pipeline, want 0", allocs)
			}
			if runs := (up.n - upN) / len(tc.wantUp); runs < 1000 || (down.n-downN)/len(tc.wantDown) != runs {
				t.Errorf("steady-state runs forwarded %d and %d bytes, want multiples of %d and %d", up.n-upN, down.n-downN,
					len(tc.wantUp), len(tc.wantDown))
			}
			if s.ph != len(s.pend) || s.forwarded != s.replied {
				t.Errorf("after the runs: %d denials pending, %d forwarded, %d replied", len(s.pend)-s.ph, s.forwarded, s.replied)
			}
		})
	}
}

// TestSplitRequests feeds a pipeline in every split, as reads would, and
// checks that the result does not depend on where the reads end.
func TestSplitRequests(t *testing.T) {
	reqs := join(req("SET", "k", "v"), req("FLUSHALL"), []byte("GET k\r\n"), req("CONFIG", "GET", "*"), req("PING"))
	replies := []byte("+OK\r\n$1\r\nv\r\n+PONG\r\n")
	wantUp := join(req("SET", "k", "v"), []byte("GET k\r\n"), req("PING"))
	wantDown := join([]byte("+OK\r\n"), denial("FLUSHALL", ""), []byte("$1\r\nv\r\n"), denial("CONFIG", "GET"), []byte("+PONG\r\n"))
	for i := 1; i < len(reqs); i++ {
		for j := 1; j < len(replies); j += 3 {
			up, down := &recorder{keep: true}, &recorder{keep: true}
			s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, up, down)
			feed(t, s.requests, reqs, i)
			feed(t, s.replies, replies, j)
			if !bytes.Equal(up.buf.Bytes(), wantUp) || !bytes.Equal(down.buf.Bytes(), wantDown) {
				t.Fatalf("split at %d/%d: upstream %q, client %q", i, j, up.buf.Bytes(), down.buf.Bytes())
			}
		}
	}
}

// feed hands data to process in two reads split at i, keeping unconsumed
// bytes as the read loop does.
func feed(t *testing.T, process func([]byte) (int, int, error), data []byte, i int) {
	t.Helper()
	var pending []byte
	for _, part := range [][]byte{data[:i], data[i:]} {
		pending = append(pending, part...)
		c, _, err := process(pending)
		if err != nil {
			t.Fatalf("split at %d: %v", i, err)
		}
		pending = append([]byte(nil), pending[c:]...)
	}
	if len(pending) != 0 {
		t.Fatalf("split at %d: %d bytes left", i, len(pending))
	}
}

// TestFlowsOfMessages checks what the per-message path reports.
func TestFlowsOfMessages(t *testing.T) {
	s, agg := testSession(t, bulkheadv1.Mode_MODE_PROTECT, io.Discard, io.Discard)
	if _, _, err := s.requests(join(req("get", "a"), req("GET", "b"), req("config", "set", "x", "y"))); err != nil {
		t.Fatal(err)
	}
	flows, _ := agg.Drain(time.Now())
	type row struct {
		conn          bool
		verb, sub     string
		verdict       bulkheadv1.Verdict
		rule, reason  string
		count, nbytes uint64
	}
	var got []row
	for _, f := range flows {
		got = append(got, row{f.GetConnection(), f.GetVerb(), f.GetSub(), f.GetVerdict(), f.GetRule(), f.GetReason(), f.GetCount(), f.GetBytes()})
		if f.GetResource() != "" || f.GetAux() != "" || len(f.GetMoreResources()) != 0 {
			t.Errorf("a Redis flow reports its keys: %v", f)
		}
		if f.GetSrcIp() != testSrc.Addr().String() || f.GetDstIp() != testDst.Addr().String() || f.GetDstPort() != uint32(testDst.Port()) ||
			f.GetProtocol() != "redis" || f.GetMode() != bulkheadv1.Mode_MODE_PROTECT || f.GetDirection() != bulkheadv1.Direction_DIRECTION_INGRESS {
			t.Errorf("flow addresses, protocol or mode: %v", f)
		}
	}
	want := []row{
		{true, "", "", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/redis/from-cart", "", 1, 0},
		{false, "CONFIG", "SET", bulkheadv1.Verdict_VERDICT_DENY, "", "l7_not_allowed", 1, uint64(len(req("config", "set", "x", "y")))},
		{false, "GET", "", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/redis/from-cart", "", 2, uint64(len(req("get", "a")) + len(req("GET", "b")))},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("flows\n got %v\nwant %v", got, want)
	}
}

func BenchmarkPipeline(b *testing.B) {
	var reqs, replies []byte
	for i := range 64 {
		if i%8 == 7 {
			reqs = append(reqs, req("FLUSHALL")...)
			continue
		}
		reqs = append(reqs, req("GET", "key:1234")...)
		replies = append(replies, "$5\r\nvalue\r\n"...)
	}
	s, _ := testSession(b, bulkheadv1.Mode_MODE_PROTECT, io.Discard, io.Discard)
	b.ReportAllocs()
	b.SetBytes(int64(len(reqs) + len(replies)))
	for b.Loop() {
		if _, _, err := s.requests(reqs); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.replies(replies); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/msg")
}

// TestUnordered: after a RESP3 push or a SUBSCRIBE, denials no longer wait
// for replies (pairing is broken), but never split a reply.
func TestUnordered(t *testing.T) {
	t.Run("push", func(t *testing.T) {
		up, down := &recorder{keep: true}, &recorder{keep: true}
		s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, up, down)
		mustProcess(t, s.requests, req("GET", "a"))
		mustProcess(t, s.replies, []byte(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n"))
		// GET's reply has not come, yet the denial goes out at once.
		mustProcess(t, s.requests, req("KEYS", "*"))
		mustProcess(t, s.replies, []byte("$-1\r\n"))
		want := join([]byte(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n"), denial("KEYS", ""), []byte("$-1\r\n"))
		if !bytes.Equal(down.buf.Bytes(), want) {
			t.Errorf("client got %q, want %q", down.buf.Bytes(), want)
		}
	})
	t.Run("subscribe", func(t *testing.T) {
		up, down := &recorder{keep: true}, &recorder{keep: true}
		s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, up, down)
		// SUBSCRIBE's reply has not come, yet the denial goes out at once.
		mustProcess(t, s.requests, join(req("SUBSCRIBE", "news"), req("KEYS", "*")))
		want := denial("KEYS", "")
		if !bytes.Equal(down.buf.Bytes(), want) {
			t.Errorf("client got %q, want %q", down.buf.Bytes(), want)
		}
	})
	t.Run("breaks pairing", func(t *testing.T) {
		for _, v := range []string{"SUBSCRIBE", "psubscribe", "SSubscribe", "monitor"} {
			if !breaksPairing([]byte(v)) {
				t.Errorf("%s does not break pairing", v)
			}
		}
		for _, v := range []string{"GET", "UNSUBSCRIBE", "SUBSCRIBEX", "MONITO", ""} {
			if breaksPairing([]byte(v)) {
				t.Errorf("%s breaks pairing", v)
			}
		}
	})
}

func mustProcess(t *testing.T, process func([]byte) (int, int, error), b []byte) {
	t.Helper()
	if c, need, err := process(b); c != len(b) || need != 0 || err != nil {
		t.Fatalf("consumed %d of %d, need %d, err %v", c, len(b), need, err)
	}
}

// lineSession is testSession for the line protocol with options o.
func lineSession(t testing.TB, o LineOptions, up, down io.Writer) (*session, *report.Aggregator) {
	t.Helper()
	o.Name = LineName(t)
	ids := []*bulkheadv1.Identity{{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{testSrc.Addr().String()}}}
	pol, err := enforce.Compile(LinePolicy(o.Name, testDst.Port(), bulkheadv1.Mode_MODE_PROTECT, false), ids)
	if err != nil {
		t.Fatal(err)
	}
	eng := &enforce.Engine{}
	eng.Store(pol)
	agg := report.NewAggregator(0)
	p := New(Config{Engine: eng, Aggregator: agg, Metrics: metrics.New(nil), Logger: slog.New(slog.DiscardHandler)})
	s := &session{p: p, src: testSrc, dst: testDst, conn: pol.Inbound(testSrc.Addr(), testDst.Port()), declared: o.Name}
	d := s.conn.Connect()
	s.countConnect(d, o.Name)
	s.reportConnect(d, o.Name)
	proto := LineProtocol(o)
	s.startL7(&proto, up, down)
	return s, agg
}

func lineDenial(verb string) string { return "DENIED " + verb + " l7_not_allowed\n" }

// TestLineOrderingAndAllocs checks the generic reply counting (NoReply,
// Partial, Unordered), bodies of denied requests and DenyObserver through
// the per-message functions, then that steady-state runs allocate nothing.
func TestLineOrderingAndAllocs(t *testing.T) {
	tests := []struct {
		name             string
		reqs, replies    string
		wantUp, wantDown string
		wantObserved     int64 // DenyObserver calls per first run
	}{
		{
			name:         "NoReply requests do not delay a denial",
			reqs:         "QUIET a\nQUIET b\nDEL x\nGET k\n",
			replies:      "OK GET\n",
			wantUp:       "QUIET a\nQUIET b\nGET k\n",
			wantDown:     lineDenial("DEL") + "OK GET\n",
			wantObserved: 1,
		},
		{
			name:         "a denied NoReply request gets the protocol's (empty) reply",
			reqs:         "GET k\nQUIET x\nDEL x\n",
			replies:      "OK GET\n",
			wantUp:       "GET k\nQUIET x\n",
			wantDown:     "OK GET\n" + lineDenial("DEL"),
			wantObserved: 1,
		},
		{
			name:         "Partial replies do not complete an answer",
			reqs:         "MULTI\nDEL x\nGET k\n",
			replies:      "PARTIAL 1\nPARTIAL 2\nOK MULTI\nOK GET\n",
			wantUp:       "MULTI\nGET k\n",
			wantDown:     "PARTIAL 1\nPARTIAL 2\nOK MULTI\n" + lineDenial("DEL") + "OK GET\n",
			wantObserved: 1,
		},
		{
			name:         "the body of a denied request is dropped",
			reqs:         "PUT a +3\nabcDEL b +6\nSECRETGET k\n",
			replies:      "OK PUT\nOK GET\n",
			wantUp:       "PUT a +3\nabcGET k\n",
			wantDown:     "OK PUT\n" + lineDenial("DEL") + "OK GET\n",
			wantObserved: 1,
		},
		{
			name:         "DenyObserver: skipped up to END after a denied TXN",
			reqs:         "TXN\nGET a\nGET b\nEND\nGET c\n",
			replies:      "OK END\nOK GET\n",
			wantUp:       "END\nGET c\n",
			wantDown:     lineDenial("TXN") + "OK END\nOK GET\n",
			wantObserved: 1,
		},
		{
			name:         "Control frames are forwarded unjudged and answered",
			reqs:         "CTL\nDEL x\nCTL\n",
			replies:      "OK CTL\nOK CTL\n",
			wantUp:       "CTL\nCTL\n",
			wantDown:     "OK CTL\n" + lineDenial("DEL") + "OK CTL\n",
			wantObserved: 1,
		},
		{
			name:         "Unordered request: denials at once",
			reqs:         "GET a\nSUB n\nDEL x\n",
			replies:      "OK GET\nOK SUB\n",
			wantUp:       "GET a\nSUB n\n",
			wantDown:     lineDenial("DEL") + "OK GET\nOK SUB\n",
			wantObserved: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var observed atomic.Int64
			up, down := &recorder{keep: true}, &recorder{keep: true}
			s, _ := lineSession(t, LineOptions{Denied: &observed}, up, down)
			reqs, replies := []byte(tc.reqs), []byte(tc.replies)
			run := func() {
				mustProcess(t, s.requests, reqs)
				mustProcess(t, s.replies, replies)
			}
			run()
			if up.buf.String() != tc.wantUp {
				t.Errorf("upstream got\n%q\nwant\n%q", up.buf.String(), tc.wantUp)
			}
			if down.buf.String() != tc.wantDown {
				t.Errorf("client got\n%q\nwant\n%q", down.buf.String(), tc.wantDown)
			}
			if got := observed.Load(); got != tc.wantObserved {
				t.Errorf("DenyObserver called %d times, want %d", got, tc.wantObserved)
			}
			up.keep, down.keep = false, false
			upN, downN := up.n, down.n
			if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
				t.Errorf("%v allocations per pipeline, want 0", allocs)
			}
			if runs := (up.n - upN) / len(tc.wantUp); runs < 1000 || (down.n-downN)/len(tc.wantDown) != runs {
				t.Errorf("steady-state runs forwarded %d and %d bytes, want multiples of %d and %d", up.n-upN, down.n-downN,
					len(tc.wantUp), len(tc.wantDown))
			}
			if s.ph != len(s.pend) || s.forwarded != s.replied {
				t.Errorf("after the runs: %d denials pending, %d forwarded, %d replied", len(s.pend)-s.ph, s.forwarded, s.replied)
			}
		})
	}
}

// TestLineSplits feeds a pipeline with a body and partial replies in
// every split, as reads would.
func TestLineSplits(t *testing.T) {
	reqs := []byte("PUT a +4\nbodyDEL b +5\nxxxxxQUIET q\nMULTI\nTXN\nGET z\nEND\nGET k\n")
	replies := []byte("OK PUT\nPARTIAL 1\nOK MULTI\nOK END\nOK GET\n")
	wantUp := "PUT a +4\nbodyQUIET q\nMULTI\nEND\nGET k\n"
	wantDown := "OK PUT\n" + lineDenial("DEL") + "PARTIAL 1\nOK MULTI\n" + lineDenial("TXN") + "OK END\nOK GET\n"
	for i := 1; i < len(reqs); i++ {
		for j := 1; j < len(replies); j += 2 {
			up, down := &recorder{keep: true}, &recorder{keep: true}
			s, _ := lineSession(t, LineOptions{}, up, down)
			feed(t, s.requests, reqs, i)
			feed(t, s.replies, replies, j)
			if up.buf.String() != wantUp || down.buf.String() != wantDown {
				t.Fatalf("split at %d/%d: upstream %q, client %q", i, j, up.buf.String(), down.buf.String())
			}
		}
	}
}

// TestLinePushUnorders: a reply frame marked Unordered breaks pairing.
func TestLinePushUnorders(t *testing.T) {
	up, down := &recorder{keep: true}, &recorder{keep: true}
	s, _ := lineSession(t, LineOptions{}, up, down)
	mustProcess(t, s.requests, []byte("GET a\n"))
	mustProcess(t, s.replies, []byte("PUSH news\n"))
	// GET's reply has not come, yet the denial goes out at once.
	mustProcess(t, s.requests, []byte("DEL x\n"))
	mustProcess(t, s.replies, []byte("OK GET\n"))
	if want := "PUSH news\n" + lineDenial("DEL") + "OK GET\n"; down.buf.String() != want {
		t.Errorf("client got %q, want %q", down.buf.String(), want)
	}
}

// TestLinePassStopsParsing: after OpPass the per-message functions consume nothing
// more and say so.
func TestLinePassStopsParsing(t *testing.T) {
	up, down := &recorder{keep: true}, &recorder{keep: true}
	s, _ := lineSession(t, LineOptions{}, up, down)
	in := []byte("GET a\nSTARTTLS\n\x16\x03\x01 raw \n bytes")
	c, _, err := s.requests(in)
	if !errors.Is(err, errPass) || c != len("GET a\nSTARTTLS\n") {
		t.Fatalf("requests: consumed %d, err %v; want %d, errPass", c, err, len("GET a\nSTARTTLS\n"))
	}
	if up.buf.String() != "GET a\nSTARTTLS\n" {
		t.Errorf("upstream got %q", up.buf.String())
	}
	c, _, err = s.replies([]byte("OK GET\n"))
	if !errors.Is(err, errPass) || c != 0 || down.buf.Len() != 0 {
		t.Errorf("replies after the pass: consumed %d, err %v, client got %q", c, err, down.buf.String())
	}
}

// TestCloseOnDenyPipeline: a denial of a CloseOnDeny protocol is written after
// the earlier replies, ends both directions and lets nothing follow it.
func TestCloseOnDenyPipeline(t *testing.T) {
	t.Run("after earlier replies", func(t *testing.T) {
		up, down := &recorder{keep: true}, &recorder{keep: true}
		s, _ := lineSession(t, LineOptions{CloseOnDeny: true}, up, down)
		in := []byte("GET a\nDEL x\nGET b\n")
		if c, _, err := s.requests(in); !errors.Is(err, errCloseOnDeny) || c != len(in) {
			t.Fatalf("requests: consumed %d, err %v", c, err)
		}
		if up.buf.String() != "GET a\n" || down.buf.Len() != 0 {
			t.Fatalf("upstream got %q, client %q", up.buf.String(), down.buf.String())
		}
		select {
		case <-s.final:
			t.Fatal("final closed before the deny reply was written")
		default:
		}
		if _, _, err := s.replies([]byte("OK GET\nOK late\n")); !errors.Is(err, errFinal) {
			t.Fatalf("replies: err %v, want errFinal", err)
		}
		if want := "OK GET\n" + lineDenial("DEL"); down.buf.String() != want {
			t.Errorf("client got %q, want %q", down.buf.String(), want)
		}
		<-s.final
		if !s.closing.Load() {
			t.Error("closing not set")
		}
	})
	t.Run("at once", func(t *testing.T) {
		up, down := &recorder{keep: true}, &recorder{keep: true}
		s, _ := lineSession(t, LineOptions{CloseOnDeny: true}, up, down)
		if _, _, err := s.requests([]byte("DEL x\nGET b\n")); !errors.Is(err, errCloseOnDeny) {
			t.Fatalf("requests: err %v", err)
		}
		<-s.final
		if up.buf.Len() != 0 || down.buf.String() != lineDenial("DEL") {
			t.Errorf("upstream got %q, client %q", up.buf.String(), down.buf.String())
		}
		if _, _, err := s.replies([]byte("OK stray\n")); !errors.Is(err, errFinal) || down.buf.String() != lineDenial("DEL") {
			t.Errorf("a reply after the final denial: err %v, client got %q", err, down.buf.String())
		}
	})
}

// TestProtocolMaxMessage: a protocol's smaller MaxMessage bounds the
// buffers; a larger one does not raise Limits.MaxMessage.
func TestProtocolMaxMessage(t *testing.T) {
	s, _ := lineSession(t, LineOptions{MaxMessage: 8 << 10}, io.Discard, io.Discard)
	if s.maxMsg != 8<<10 {
		t.Errorf("maxMsg %d, want the protocol's 8 KiB", s.maxMsg)
	}
	s, _ = lineSession(t, LineOptions{MaxMessage: 1 << 30}, io.Discard, io.Discard)
	if s.maxMsg != DefaultMaxMessage {
		t.Errorf("maxMsg %d, want the proxy's %d", s.maxMsg, DefaultMaxMessage)
	}
}

// TestLineFlows: messages of protocols other than Redis are reported with
// their resources and aux; Control frames are not reported.
func TestLineFlows(t *testing.T) {
	s, agg := lineSession(t, LineOptions{}, io.Discard, io.Discard)
	mustProcess(t, s.requests, []byte("GET a b @db\nGET a b @db\nCTL x\nDEL k\n"))
	flows, _ := agg.Drain(time.Now())
	type row struct {
		conn                bool
		verb, resource, aux string
		more                string
		verdict             bulkheadv1.Verdict
		count               uint64
	}
	var got []row
	for _, f := range flows {
		got = append(got, row{f.GetConnection(), f.GetVerb(), f.GetResource(), f.GetAux(), fmt.Sprint(f.GetMoreResources()),
			f.GetVerdict(), f.GetCount()})
	}
	want := []row{
		{true, "", "", "", "[]", bulkheadv1.Verdict_VERDICT_ALLOW, 1},
		{false, "DEL", "k", "", "[]", bulkheadv1.Verdict_VERDICT_DENY, 1},
		{false, "GET", "a", "db", "[b]", bulkheadv1.Verdict_VERDICT_ALLOW, 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("flows\n got %v\nwant %v", got, want)
	}
}
