package proxy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
	s.recordConnect(s.conn.Connect(), "redis")
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
