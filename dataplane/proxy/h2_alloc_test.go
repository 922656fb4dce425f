package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	h2p "github.com/bulkhead-io/bulkhead/protocols/http2"
)

// h2Session is testSession for an http2 port whose only allowed call is
// POST /p.S/Allowed.
func h2Session(t testing.TB, up, down *recorder) *session {
	t.Helper()
	port := uint32(testDst.Port())
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "api", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT, Revision: "r1",
		Ports: []*bulkheadv1.Port{{Port: port, Protocol: h2p.Name}},
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/api/from-cart",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: port, Protocol: h2p.Name}},
			L7: []*bulkheadv1.L7Rule{{Verbs: []string{"POST"}, Resources: []*bulkheadv1.Pattern{
				{Kind: &bulkheadv1.Pattern_Exact{Exact: "/p.S/Allowed"}}}}},
		}},
	}
	ids := []*bulkheadv1.Identity{{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{testSrc.Addr().String()}}}
	pol, err := enforce.Compile(pp, ids)
	if err != nil {
		t.Fatal(err)
	}
	eng := &enforce.Engine{}
	eng.Store(pol)
	p := New(Config{Engine: eng, Aggregator: report.NewAggregator(0), Metrics: metrics.New(nil), Logger: slog.New(slog.DiscardHandler)})
	s := &session{p: p, src: testSrc, dst: testDst, conn: pol.Inbound(testSrc.Addr(), testDst.Port()), declared: h2p.Name}
	proto := h2p.Protocol()
	s.startL7(&proto, up, down)
	if s.h2 == nil {
		t.Fatal("the http2 parser is not an l7.Multiplexer")
	}
	return s
}

// TestH2PathAllocs: through requests and replies, an allowed gRPC call
// is forwarded whole; a denied one is answered on its stream, its block
// forwarded rewritten (one CONTINUATION more), its DATA dropped and
// credited back, the server's RST_STREAM for it dropped; in steady state
// neither path allocates.
func TestH2PathAllocs(t *testing.T) {
	var cb, hb bytes.Buffer
	fr := http2.NewFramer(&cb, nil)
	enc := hpack.NewEncoder(&hb)
	call := func(id uint32, path string) []byte {
		cb.Reset()
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "api:50051"},
			{"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		_ = fr.WriteData(id, true, make([]byte, 100))
		return bytes.Clone(cb.Bytes())
	}
	server := func(write func(*http2.Framer)) []byte {
		cb.Reset()
		write(fr)
		return bytes.Clone(cb.Bytes())
	}
	cb.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	start := bytes.Clone(cb.Bytes())
	settings := server(func(fr *http2.Framer) { _ = fr.WriteSettings() })

	up, down := &recorder{keep: true}, &recorder{keep: true}
	s := h2Session(t, up, down)
	feed := func(f func([]byte) (int, int, error), b []byte) {
		t.Helper()
		if c, _, err := f(b); err != nil || c != len(b) {
			t.Fatalf("consumed %d of %d: %v", c, len(b), err)
		}
	}
	feed(s.requests, start)
	feed(s.replies, settings)
	allowed, denied := call(1, "/p.S/Allowed"), call(3, "/p.S/Denied")
	feed(s.requests, allowed)
	feed(s.requests, denied)
	if !bytes.HasPrefix(up.buf.Bytes(), append(start, allowed...)) {
		t.Fatal("the allowed call was not forwarded as sent")
	}
	rest := up.buf.Bytes()[len(start)+len(allowed):]
	if len(rest) != len(denied)-9-100+9+len("\x00\x0fBulkhead-Denied\x011") || rest[4] != 0x1 {
		t.Errorf("the denied call upstream: %q", rest)
	}
	got := down.buf.Bytes()[len(settings):]
	fd := http2.NewFramer(nil, bytes.NewReader(got))
	fd.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if m, err := fd.ReadFrame(); err != nil || m.Header().StreamID != 3 || m.(*http2.MetaHeadersFrame).PseudoValue("status") != "200" {
		t.Fatalf("deny reply: %v %v", m, err)
	}
	if w, err := fd.ReadFrame(); err != nil || w.(*http2.WindowUpdateFrame).Increment != 100 || w.Header().StreamID != 0 {
		t.Fatalf("window credit: %v %v", w, err)
	}
	n := down.n
	feed(s.replies, server(func(fr *http2.Framer) { _ = fr.WriteRSTStream(3, http2.ErrCodeProtocol) }))
	if down.n != n {
		t.Error("the server's RST_STREAM of the denied stream reached the client")
	}

	// Steady state: pairs of calls prepared in advance (HPACK state and
	// stream ids advance), the server refusing each denied stream.
	up.keep, down.keep = false, false
	const runs = 50
	var reqs, reps [][]byte
	for i := range runs + 1 {
		id := uint32(5 + 4*i)
		reqs = append(reqs, append(call(id, "/p.S/Allowed"), call(id+2, "/p.S/Denied")...))
		reps = append(reps, server(func(fr *http2.Framer) {
			_ = fr.WriteData(id, true, []byte("ok"))
			_ = fr.WriteRSTStream(id+2, http2.ErrCodeProtocol)
		}))
	}
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		feed(s.requests, reqs[i])
		feed(s.replies, reps[i])
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per allowed+denied pair", allocs)
	}
	if s.h2.nd != 0 {
		t.Errorf("%d denied streams remembered after both sides ended", s.h2.nd)
	}
}

// TestH2DeniedBound: the set of denied streams is bounded. Streams the
// client ended but the server did not refuse yet are forgotten when it is
// full; with 64 streams the client keeps open, one more denial closes the
// connection as over a limit. Trailers that change the HPACK table on a
// denied stream close it too.
func TestH2DeniedBound(t *testing.T) {
	var cb, hb bytes.Buffer
	fr := http2.NewFramer(&cb, nil)
	enc := hpack.NewEncoder(&hb)
	open := func(id uint32, end bool) []byte {
		cb.Reset()
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/p.S/Denied"}, {":authority", "api"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: end})
		return bytes.Clone(cb.Bytes())
	}
	start := func() *session {
		s := h2Session(t, &recorder{}, &recorder{})
		cb.Reset()
		cb.WriteString(http2.ClientPreface)
		_ = fr.WriteSettings()
		if _, _, err := s.requests(bytes.Clone(cb.Bytes())); err != nil {
			t.Fatal(err)
		}
		enc = hpack.NewEncoder(&hb)
		return s
	}

	s := start()
	for i := range 3 * maxDeniedStreams {
		if _, _, err := s.requests(open(uint32(1+2*i), true)); err != nil {
			t.Fatalf("ended stream %d: %v", i, err)
		}
	}
	if s.h2.nd != maxDeniedStreams {
		t.Errorf("%d denied streams remembered, want %d", s.h2.nd, maxDeniedStreams)
	}

	s = start()
	var err error
	for i := 0; i <= maxDeniedStreams && err == nil; i++ {
		_, _, err = s.requests(open(uint32(1+2*i), false))
		if i < maxDeniedStreams && err != nil {
			t.Fatalf("open stream %d: %v", i, err)
		}
	}
	if !errors.Is(err, errStreams) || !errors.Is(err, errDenials) {
		t.Errorf("denial %d with every stream open: %v, want errStreams", maxDeniedStreams+1, err)
	}

	s = start()
	if _, _, err := s.requests(open(1, false)); err != nil {
		t.Fatal(err)
	}
	cb.Reset()
	hb.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "x-checksum", Value: "abc"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	if _, _, err := s.requests(bytes.Clone(cb.Bytes())); !errors.Is(err, errTrailers) {
		t.Errorf("indexed trailers on a denied stream: %v, want errTrailers", err)
	}
}
