package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
)

// flowServer is a real FlowService: it records every batch it receives and
// acknowledges each stream with the number of flows.
type flowServer struct {
	bulkheadv1.UnimplementedFlowServiceServer
	mu      sync.Mutex
	batches []*bulkheadv1.FlowBatch
	streams int
	// fail is the number of coming streams to fail after reading them
	// whole, as a control plane that crashes before acknowledging would.
	fail atomic.Int32
}

func (s *flowServer) Report(stream grpc.ClientStreamingServer[bulkheadv1.FlowBatch, bulkheadv1.ReportSummary]) error {
	var n uint64
	var got []*bulkheadv1.FlowBatch
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got = append(got, b)
		n += uint64(len(b.Flows))
	}
	if s.fail.Add(-1) >= 0 {
		return status.Error(codes.Unavailable, "crashed before acknowledging")
	}
	s.mu.Lock()
	s.batches = append(s.batches, got...)
	s.streams++
	s.mu.Unlock()
	return stream.SendAndClose(&bulkheadv1.ReportSummary{Accepted: n})
}

// received returns the flows received so far, their total count and the
// sum of Dropped.
func (s *flowServer) received() (flows []*bulkheadv1.Flow, count, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		flows = append(flows, b.Flows...)
		for _, f := range b.Flows {
			count += f.Count
		}
		dropped += b.Dropped
	}
	return flows, count, dropped
}

func (s *flowServer) allBatches() []*bulkheadv1.FlowBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*bulkheadv1.FlowBatch(nil), s.batches...)
}

// serve starts a gRPC server with fs on addr ("127.0.0.1:0" for any port)
// and returns its address and a function that stops it.
func serve(t *testing.T, addr string, fs *flowServer) (string, func()) {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old server's port may linger
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	bulkheadv1.RegisterFlowServiceServer(srv, fs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// counting counts the Report streams a client opens.
type counting struct{ n atomic.Int64 }

func (c *counting) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.n.Add(1)
	return streamer(ctx, desc, cc, method, opts...)
}

func dial(t *testing.T, addr string, cnt *counting) bulkheadv1.FlowServiceClient {
	t.Helper()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly after the test restarts the server.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
	}
	if cnt != nil {
		opts = append(opts, grpc.WithStreamInterceptor(cnt.intercept))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return bulkheadv1.NewFlowServiceClient(cc)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// addFlows adds n distinct message keys (sources 198.18.<tag>.<i>) with
// count records each.
func addFlows(a *Aggregator, tag byte, n, count int) {
	for i := range n {
		k := messageKey(a, netip.AddrFrom4([4]byte{198, 18, tag, byte(i)}), ipRedis, "GET", "", enforce.Allow)
		for range count {
			a.AddDecision(&k, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/r"}, 10)
		}
	}
}

func resolve(ip netip.Addr) string {
	switch ip {
	case ipRedis:
		return "demo/redis"
	case netip.MustParseAddr("198.18.1.0"):
		return "demo/cart"
	}
	return ""
}

func TestFlush(t *testing.T) {
	fs := &flowServer{}
	addr, _ := serve(t, "127.0.0.1:0", fs)
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, nil), "redis.demo", Options{
		MaxBatch: 4,
		Revision: func() string { return "rev-7" },
		Resolve:  resolve,
	}, testLogger(t))
	ctx := context.Background()

	if err := r.Flush(ctx); err != nil {
		t.Fatalf("empty Flush: %v", err)
	}
	if fs.streams != 0 {
		t.Errorf("an empty Flush opened a stream")
	}
	addFlows(a, 1, 10, 3)
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	batches := fs.allBatches()
	if len(batches) != 3 { // 10 flows in batches of at most 4
		t.Errorf("%d batches, want 3", len(batches))
	}
	for _, b := range batches {
		if b.Node != "redis.demo" || b.Revision != "rev-7" || len(b.Flows) > 4 {
			t.Errorf("batch node %q revision %q with %d flows", b.Node, b.Revision, len(b.Flows))
		}
	}
	flows, count, dropped := fs.received()
	if len(flows) != 10 || count != 30 || dropped != 0 {
		t.Errorf("received %d flows, %d records, %d dropped; want 10, 30, 0", len(flows), count, dropped)
	}
	if f := flows[0]; f.SrcIp != "198.18.1.0" || f.SrcSegment != "demo/cart" || f.DstSegment != "demo/redis" || f.Rule != "demo/redis/r" || f.Verb != "GET" {
		t.Errorf("first flow: %v", f)
	}
	if flows[1].SrcSegment != "" {
		t.Errorf("unknown source has segment %q", flows[1].SrcSegment)
	}
	if fs.streams != 1 {
		t.Errorf("%d streams, want 1", fs.streams)
	}
}

// TestServerRestart stops the control plane, keeps reporting into the void,
// restarts it on the same address and checks that nothing was lost.
func TestServerRestart(t *testing.T) {
	fs := &flowServer{}
	addr, stop := serve(t, "127.0.0.1:0", fs)
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, nil), "redis.demo", Options{Timeout: time.Second}, testLogger(t))
	ctx := context.Background()

	addFlows(a, 1, 5, 2)
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	stop()
	addFlows(a, 2, 5, 3)
	if err := r.Flush(ctx); err == nil {
		t.Fatalf("Flush with the server down succeeded")
	}
	addFlows(a, 3, 5, 4)
	if err := r.Flush(ctx); err == nil {
		t.Fatalf("Flush with the server down succeeded")
	}

	fs2 := &flowServer{}
	serve(t, addr, fs2)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = r.Flush(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}
	_, count1, _ := fs.received()
	flows2, count2, dropped := fs2.received()
	if count1 != 10 || len(flows2) != 10 || count2 != 5*3+5*4 || dropped != 0 {
		t.Errorf("before restart %d records; after: %d flows, %d records, %d dropped; want 10; 10, 35, 0", count1, len(flows2), count2, dropped)
	}
}

// TestUnacknowledged checks that flows a server received but did not
// acknowledge are sent again (at least once, never lost).
func TestUnacknowledged(t *testing.T) {
	fs := &flowServer{}
	fs.fail.Store(2)
	addr, _ := serve(t, "127.0.0.1:0", fs)
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, nil), "n", Options{}, testLogger(t))
	ctx := context.Background()
	addFlows(a, 1, 4, 1)
	err := r.Flush(ctx)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Flush = %v, want Unavailable", err)
	}
	addFlows(a, 2, 4, 1)
	if err := r.Flush(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("Flush = %v, want Unavailable", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if flows, n, _ := fs.received(); len(flows) != 8 || n != 8 {
		t.Errorf("received %d flows, %d records; want 8, 8", len(flows), n)
	}
	if err := r.Flush(ctx); err != nil || fs.streams != 1 {
		t.Errorf("a Flush with nothing pending: %v, %d streams", err, fs.streams)
	}
}

// TestPendingBound checks that while disconnected at most MaxPending flows
// are kept, the oldest are dropped, and the drops are reported.
func TestPendingBound(t *testing.T) {
	fs := &flowServer{}
	addr, stop := serve(t, "127.0.0.1:0", fs)
	stop()
	a := NewAggregator(3) // 2 of the 5 keys of the third window are dropped by the aggregator
	r := NewReporter(a, dial(t, addr, nil), "n", Options{MaxPending: 4, Timeout: time.Second}, testLogger(t))
	ctx := context.Background()
	addFlows(a, 1, 3, 1)
	_ = r.Flush(ctx) // fails: 3 pending
	addFlows(a, 2, 3, 1)
	_ = r.Flush(ctx) // fails: 6 > 4, the 2 oldest (198.18.1.0, .1) are dropped
	addFlows(a, 3, 5, 1)

	fs2 := &flowServer{}
	serve(t, addr, fs2)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = r.Flush(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}
	flows, _, dropped := fs2.received()
	var srcs []string
	for _, f := range flows {
		srcs = append(srcs, f.SrcIp)
	}
	// Pending after window 3: 1.2, 2.0, 2.1, 2.2, 3.0, 3.1, 3.2 (3.3 and
	// 3.4 did not fit in the aggregator) → the newest 4 are kept.
	want := []string{"198.18.2.2", "198.18.3.0", "198.18.3.1", "198.18.3.2"}
	if fmt.Sprint(srcs) != fmt.Sprint(want) {
		t.Errorf("received %v, want %v", srcs, want)
	}
	// 2 dropped by the aggregator, 2 then 3 from the pending buffer.
	if dropped != 2+2+3 {
		t.Errorf("dropped = %d, want 7", dropped)
	}
}

// TestStart runs the reporter's loop: flows arrive without Flush, and the
// last ones are sent when the context ends.
func TestStart(t *testing.T) {
	fs := &flowServer{}
	addr, _ := serve(t, "127.0.0.1:0", fs)
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, nil), "n", Options{Interval: 20 * time.Millisecond}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()

	addFlows(a, 1, 2, 1)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n, _ := fs.received(); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flows did not arrive")
		}
	}
	if err := r.Start(ctx); err == nil {
		t.Errorf("a second Start succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start = %v", err)
	}
}

// TestFinalReport checks that flows of the last window are reported when
// Start's context ends, long before the next tick.
func TestFinalReport(t *testing.T) {
	fs := &flowServer{}
	addr, _ := serve(t, "127.0.0.1:0", fs)
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, nil), "n", Options{Interval: time.Hour}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	addFlows(a, 2, 3, 1)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start = %v", err)
	}
	if _, n, _ := fs.received(); n != 3 {
		t.Errorf("received %d records, want 3 (the final report is missing)", n)
	}
}

// TestBackoff checks that a reporter facing an unreachable control plane
// backs off instead of trying every interval.
func TestBackoff(t *testing.T) {
	fs := &flowServer{}
	addr, stop := serve(t, "127.0.0.1:0", fs)
	stop()
	var cnt counting
	a := NewAggregator(100)
	r := NewReporter(a, dial(t, addr, &cnt), "n", Options{Interval: 5 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, Timeout: 200 * time.Millisecond}, testLogger(t))
	addFlows(a, 1, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Without backoff: ~200 attempts in 1s. With it (5, 10, 20, 40, 80,
	// 80… ms, jittered down by up to half): about 15-25.
	if n := cnt.n.Load(); n < 3 || n > 40 {
		t.Errorf("%d attempts in 1s", n)
	}
}
