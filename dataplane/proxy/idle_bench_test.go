package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/redis"
)

// idleConns is how many idle connections BenchmarkIdleConnMemory holds.
const idleConns = 1000

// settle is how long BenchmarkIdleConnMemory leaves the connections idle
// before it measures: more than the proxy's parkAfter (1s) with a margin.
const settle = 1500 * time.Millisecond

// BenchmarkIdleConnMemory measures what the proxy holds per idle Redis
// connection: idleConns connections through a Proxy on loopback to a real
// redis-server, each after one GET and its reply (as the benchmark harness
// leaves them) and left idle for settle, reported as the growth of HeapInuse + StackInuse divided by
// the number of connections (bytes/conn). The client side of the
// connections lives in this process too; its sockets are kernel memory and
// its net.TCPConns are counted (a few hundred bytes each).
func BenchmarkIdleConnMemory(b *testing.B) {
	addr := startRedis(b)
	engine := &enforce.Engine{}
	engine.Store(compile(b, spec{mode: bulkheadv1.Mode_MODE_PROTECT, port: addr.Port(), commands: []string{"GET"}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := proxy.New(proxy.Config{
		Listener:    ln,
		Engine:      engine,
		Protocols:   []l7.Protocol{redis.Protocol()},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:      proxy.Limits{DrainTimeout: time.Second},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) { return addr, nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Start: %v", err)
		}
	}()

	get := cmd("GET", "k")
	reply := make([]byte, 64)
	var heap, stack float64
	time.Sleep(100 * time.Millisecond) // Start's own goroutines
	base := runtime.NumGoroutine()
	for b.Loop() {
		// The connections of the previous round must be gone.
		waitGoroutines(b, base)
		h0, s0 := inUse()
		conns := make([]net.Conn, 0, idleConns)
		for range idleConns {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatalf("dial proxy: %v", err)
			}
			conns = append(conns, c)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(get); err != nil {
				b.Fatalf("write: %v", err)
			}
			if n, err := c.Read(reply); err != nil || string(reply[:n]) != "$-1\r\n" {
				b.Fatalf("GET answered %q, %v", reply[:n], err)
			}
		}
		// Let the proxy's goroutines park: an idle side parks after a
		// second of silence (parkAfter); an operator's idle connection
		// is idle for minutes.
		time.Sleep(settle)
		h1, s1 := inUse()
		heap += float64(int64(h1)-int64(h0)) / idleConns
		stack += float64(int64(s1)-int64(s0)) / idleConns
		for _, c := range conns {
			_ = c.Close()
		}
		runtime.KeepAlive(conns)
	}
	b.ReportMetric((heap+stack)/float64(b.N), "bytes/conn")
	b.ReportMetric(heap/float64(b.N), "heap-bytes/conn")
	b.ReportMetric(stack/float64(b.N), "stack-bytes/conn")
}

// waitGoroutines waits until at most n goroutines run.
func waitGoroutines(b *testing.B, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines still run, want %d", runtime.NumGoroutine(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inUse returns HeapInuse and StackInuse after a collection.
func inUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}
