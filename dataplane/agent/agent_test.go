package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	node        = "redis.demo"
	waitTimeout = 10 * time.Second
)

// controlPlane is go-control-plane's ADS server (one linear cache per
// Bulkhead type behind a mux, as the control plane serves them) and a flow
// service that records the batches it receives, on one gRPC server.
type controlPlane struct {
	bulkheadv1.UnimplementedFlowServiceServer
	addr string

	mu      sync.Mutex
	batches []*bulkheadv1.FlowBatch
}

func startControlPlane(t *testing.T, pol *bulkheadv1.ProxyPolicy, ids ...*bulkheadv1.Identity) *controlPlane {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startControlPlaneOn(t, ln, pol, ids...)
}

// startControlPlaneOn is startControlPlane serving on ln (closed when the
// test ends).
func startControlPlaneOn(t *testing.T, ln net.Listener, pol *bulkheadv1.ProxyPolicy, ids ...*bulkheadv1.Identity) *controlPlane {
	t.Helper()
	idRes := map[string]types.Resource{}
	for _, id := range ids {
		idRes[id.GetNamespace()+"/"+id.GetWorkload()] = id
	}
	policies := cache.NewLinearCache(xdsclient.PolicyTypeURL, cache.WithInitialResources(map[string]types.Resource{node: pol}))
	identities := cache.NewLinearCache(xdsclient.IdentityTypeURL, cache.WithInitialResources(idRes))
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{xdsclient.PolicyTypeURL: policies, xdsclient.IdentityTypeURL: identities},
	}
	cp := &controlPlane{addr: ln.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, server.NewServer(ctx, mux, nil))
	bulkheadv1.RegisterFlowServiceServer(gs, cp)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		<-served
	})
	return cp
}

// Report records every batch of a stream.
func (cp *controlPlane) Report(stream grpc.ClientStreamingServer[bulkheadv1.FlowBatch, bulkheadv1.ReportSummary]) error {
	var n uint64
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&bulkheadv1.ReportSummary{Accepted: n})
		}
		if err != nil {
			return err
		}
		cp.mu.Lock()
		cp.batches = append(cp.batches, b)
		cp.mu.Unlock()
		n += uint64(len(b.GetFlows()))
	}
}

func (cp *controlPlane) flows() []*bulkheadv1.Flow {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []*bulkheadv1.Flow
	for _, b := range cp.batches {
		out = append(out, b.GetFlows()...)
	}
	return out
}

func protectPolicy(redisPort uint16) *bulkheadv1.ProxyPolicy {
	return &bulkheadv1.ProxyPolicy{
		Segment: "redis", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT, Revision: "rev-1",
		Ports: []*bulkheadv1.Port{{Port: uint32(redisPort), Protocol: "redis"}},
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/redis/from-cart",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: uint32(redisPort), Protocol: "redis"}},
			Redis: &bulkheadv1.RedisMatch{Commands: []string{"GET", "SET", "PING"}},
		}},
	}
}

var cart = &bulkheadv1.Identity{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{"127.0.0.1"}}

// startRedis runs a redis-server on a free loopback port for the test.
func startRedis(t *testing.T) netip.AddrPort {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	waitFor(t, "redis-server", func() bool {
		c, err := net.Dial("tcp", addr.String())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// running is an agent started by run.
type running struct {
	cfg  Config
	stop func()
}

// run starts Run with the given control plane address and cache
// directory, on free ports, with every connection meant for redis.
func run(t *testing.T, xdsAddr, cacheDir string, redis netip.AddrPort) *running {
	t.Helper()
	cfg := Config{
		Node:           node,
		XDSAddr:        xdsAddr,
		InboundAddr:    "127.0.0.1:" + strconv.Itoa(freePort(t)),
		AdminAddr:      "127.0.0.1:" + strconv.Itoa(freePort(t)),
		CacheDir:       cacheDir,
		ReportInterval: 50 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OriginalDst:    func(*net.TCPConn) (netip.AddrPort, error) { return redis, nil },
		Trust:          Trust{Insecure: true}, // the fake control plane is plaintext; trust_test.go covers TLS
	}
	return start(t, cfg)
}

// start starts Run with cfg and waits for its admin server.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	r := &running{cfg: cfg, stop: func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}}
	t.Cleanup(r.stop)
	waitFor(t, "admin server", func() bool {
		_, err := r.get("/healthz")
		return err == nil
	})
	return r
}

// get fetches an admin path and returns the status code.
func (r *running) get(path string) (int, error) {
	code, _, err := r.fetch(path)
	return code, err
}

func (r *running) fetch(path string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + r.cfg.AdminAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// redis sends one inline command through the proxy and returns the first
// reply line, or the error that ended the connection.
func (r *running) redis(t *testing.T, command string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.cfg.InboundAddr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if n == 0 {
		return "", fmt.Errorf("no reply: %w", err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

func TestRunWithControlPlaneThenFromCache(t *testing.T) {
	redis := startRedis(t)
	cp := startControlPlane(t, protectPolicy(redis.Port()), cart)
	cacheDir := t.TempDir()

	a := run(t, cp.addr, cacheDir, redis)
	waitFor(t, "readiness", func() bool { code, _ := a.get("/readyz"); return code == http.StatusOK })
	// The xDS client applies the policy as soon as it arrives, and again
	// when the identities follow.
	waitFor(t, "the identities", func() bool {
		_, body, _ := a.fetch("/debug/policy")
		return strings.Contains(body, `"identities": 1`)
	})
	if got, err := a.redis(t, "SET k v"); err != nil || got != "+OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	if got, err := a.redis(t, "FLUSHALL"); err != nil || !strings.HasPrefix(got, "-ERR bulkhead: command 'flushall' is not allowed") {
		t.Fatalf("FLUSHALL: %q, %v", got, err)
	}
	// The flows reach the control plane, the denial among them.
	waitFor(t, "the FLUSHALL flow at the control plane", func() bool {
		for _, f := range cp.flows() {
			if f.GetVerb() == "FLUSHALL" && f.GetVerdict() == bulkheadv1.Verdict_VERDICT_DENY && f.GetSrcSegment() == "demo/cart" {
				return true
			}
		}
		return false
	})
	code, body, err := a.fetch("/debug/policy")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/debug/policy: %d %v", code, err)
	}
	var s Summary
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/debug/policy: %v: %s", err, body)
	}
	if s.Segment != "demo/redis" || s.Mode != "protect" || s.Revision != "rev-1" || len(s.Ingress) != 1 ||
		s.Ingress[0] != "demo/redis/from-cart" || len(s.Ports) != 1 || s.Ports[0].Protocol != "redis" || !s.Connected {
		t.Errorf("/debug/policy: %s", body)
	}
	_, metrics, _ := a.fetch("/metrics")
	if strings.Contains(metrics, "bulkhead_proxy_policy_swaps_total 0\n") || !strings.Contains(metrics, "bulkhead_proxy_policy_swaps_total ") {
		t.Errorf("/metrics: no policy swap counted")
	}
	for _, want := range []string{
		"bulkhead_proxy_xds_nacks_total 0",
		`bulkhead_proxy_denials_total{protocol="redis",reason="l7_not_allowed"} 1`,
		`bulkhead_proxy_connections_total{verdict="allow"} 2`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	a.stop()

	// The control plane is gone; the cached policy keeps the firewall
	// closed.
	gone := "127.0.0.1:" + strconv.Itoa(freePort(t))
	b := run(t, gone, cacheDir, redis)
	if code, _ := b.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with a cached policy: %d", code)
	}
	if got, err := b.redis(t, "FLUSHALL"); err != nil || !strings.HasPrefix(got, "-ERR bulkhead:") {
		t.Fatalf("FLUSHALL from the cache: %q, %v", got, err)
	}
	if got, err := b.redis(t, "GET k"); err != nil || got != "$1\r\nv" {
		t.Fatalf("GET from the cache: %q, %v", got, err)
	}
}

func TestRunFailsClosedWithoutPolicy(t *testing.T) {
	redis := startRedis(t)
	gone := "127.0.0.1:" + strconv.Itoa(freePort(t))
	a := run(t, gone, t.TempDir(), redis)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := a.get(p); code != http.StatusServiceUnavailable {
			t.Errorf("%s without a policy: %d, want 503", p, code)
		}
	}
	if code, _ := a.get("/debug/policy"); code != http.StatusNotFound {
		t.Errorf("/debug/policy without a policy: %d, want 404", code)
	}
	if got, err := a.redis(t, "PING"); err == nil {
		t.Errorf("PING without a policy answered %q, want the connection refused", got)
	}
}
