package xdsclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testNode = "redis.demo"

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// xdsServer is go-control-plane's ADS server with one LinearCache per type
// behind a MuxCache, as the control plane runs it, recording what it receives
// and sends.
type xdsServer struct {
	addr                 string
	policies, identities *cache.LinearCache

	mu    sync.Mutex
	reqs  []*discovery.DeltaDiscoveryRequest
	resps []*discovery.DeltaDiscoveryResponse

	stopOnce sync.Once
	stopFn   func()
}

func newCaches(pols map[string]types.Resource, ids map[string]types.Resource) (*cache.LinearCache, *cache.LinearCache) {
	return cache.NewLinearCache(PolicyTypeURL, cache.WithInitialResources(pols)),
		cache.NewLinearCache(IdentityTypeURL, cache.WithInitialResources(ids))
}

// startServer serves the caches on addr ("127.0.0.1:0" for any port). It
// stops at the end of the test, or earlier by stop.
func startServer(t *testing.T, addr string, policies, identities *cache.LinearCache) *xdsServer {
	t.Helper()
	var lis net.Listener
	deadline := time.Now().Add(waitTimeout)
	for {
		var err error
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := &xdsServer{addr: lis.Addr().String(), policies: policies, identities: identities}
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{PolicyTypeURL: policies, IdentityTypeURL: identities},
	}
	ctx, cancel := context.WithCancel(context.Background())
	xds := server.NewServer(ctx, mux, server.CallbackFuncs{
		StreamDeltaRequestFunc: func(_ int64, req *discovery.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			s.reqs = append(s.reqs, proto.Clone(req).(*discovery.DeltaDiscoveryRequest))
			s.mu.Unlock()
			return nil
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			s.mu.Lock()
			s.resps = append(s.resps, proto.Clone(resp).(*discovery.DeltaDiscoveryResponse))
			s.mu.Unlock()
		},
	})
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, xds)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(lis)
	}()
	s.stopFn = func() {
		cancel()
		g.Stop()
		<-served
	}
	t.Cleanup(s.stop)
	return s
}

func (s *xdsServer) stop() { s.stopOnce.Do(s.stopFn) }

func (s *xdsServer) requests() []*discovery.DeltaDiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discovery.DeltaDiscoveryRequest(nil), s.reqs...)
}

func (s *xdsServer) responses() []*discovery.DeltaDiscoveryResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discovery.DeltaDiscoveryResponse(nil), s.resps...)
}

// policyResponse returns the last response that carried a ProxyPolicy with
// the given revision.
func (s *xdsServer) policyResponse(revision string) *discovery.DeltaDiscoveryResponse {
	var out *discovery.DeltaDiscoveryResponse
	for _, r := range s.responses() {
		if r.GetTypeUrl() != PolicyTypeURL {
			continue
		}
		for _, res := range r.GetResources() {
			var p bulkheadv1.ProxyPolicy
			if proto.Unmarshal(res.GetResource().GetValue(), &p) == nil && p.GetRevision() == revision {
				out = r
			}
		}
	}
	return out
}

// answer returns the request that answered the response with nonce, or nil.
func (s *xdsServer) answer(typ, nonce string) *discovery.DeltaDiscoveryRequest {
	for _, r := range s.requests() {
		if r.GetTypeUrl() == typ && r.GetResponseNonce() == nonce {
			return r
		}
	}
	return nil
}

// recorder is an ApplyFunc that refuses policies whose mode is unspecified,
// as the enforcement engine does, and records the configurations it took.
type recorder struct {
	mu      sync.Mutex
	calls   []applied
	refused int
}

type applied struct {
	policy *bulkheadv1.ProxyPolicy
	ids    []*bulkheadv1.Identity
}

func (r *recorder) apply(p *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.GetMode() == bulkheadv1.Mode_MODE_UNSPECIFIED {
		r.refused++
		return errors.New("policy mode unspecified")
	}
	r.calls = append(r.calls, applied{policy: p, ids: ids})
	return nil
}

// last returns the configuration in force and how many were taken.
func (r *recorder) last() (applied, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return applied{}, 0
	}
	return r.calls[len(r.calls)-1], len(r.calls)
}

func (r *recorder) refusals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitApplied waits until the configuration in force has the policy
// revision and exactly the identity names given.
func waitApplied(t *testing.T, rec *recorder, revision string, idNames ...string) applied {
	t.Helper()
	var got applied
	waitFor(t, "apply of revision "+revision+" with identities "+strings.Join(idNames, ","), func() bool {
		got, _ = rec.last()
		if got.policy.GetRevision() != revision || len(got.ids) != len(idNames) {
			return false
		}
		for i, id := range got.ids {
			if id.GetNamespace()+"/"+id.GetWorkload() != idNames[i] {
				return false
			}
		}
		return true
	})
	return got
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// dial connects to addr with short connection backoff, closed at the end
// of the test (after the client has stopped).
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// runClient starts a client; it is stopped, and Start's return checked, at
// the end of the test.
func runClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Start did not return within %v of cancel", waitTimeout)
		}
	})
	return c
}

func policy(revision string, mode bulkheadv1.Mode) *bulkheadv1.ProxyPolicy {
	return &bulkheadv1.ProxyPolicy{
		Segment:   "redis",
		Namespace: "demo",
		Mode:      mode,
		Ports:     []*bulkheadv1.Port{{Port: 6379, Protocol: "redis"}},
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/redis/from-cart-redis-6379",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: 6379, Protocol: "redis"}},
			Redis: &bulkheadv1.RedisMatch{Commands: []string{"GET", "SET"}},
		}},
		Revision: revision,
	}
}

func identity(name, ip string) *bulkheadv1.Identity {
	ns, wl, _ := strings.Cut(name, "/")
	return &bulkheadv1.Identity{Workload: wl, Namespace: ns, Segment: ns + "/" + wl, Ips: []string{ip}}
}

func identities(ids ...*bulkheadv1.Identity) map[string]types.Resource {
	out := map[string]types.Resource{}
	for _, id := range ids {
		out[id.GetNamespace()+"/"+id.GetWorkload()] = id
	}
	return out
}
