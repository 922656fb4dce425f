package xdsclient

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

var (
	idCart  = identity("demo/cart", "198.18.0.10")
	idRedis = identity("demo/redis", "198.18.0.11")
	idShop  = identity("shop/web", "198.18.0.12")
)

// TestFetchUpdateAck: the first configuration is fetched and applied, an
// update is applied and ACKed (the server sees the response's nonce without
// error_detail), and each accepted configuration is persisted.
func TestFetchUpdateAck(t *testing.T) {
	pols, ids := newCaches(
		map[string]types.Resource{testNode: policy("r1", bulkheadv1.Mode_MODE_DISCOVER)},
		identities(idRedis, idCart))
	srv := startServer(t, "127.0.0.1:0", pols, ids)
	rec := &recorder{}
	dir := t.TempDir()
	c := runClient(t, Config{Conn: dial(t, srv.addr), Node: testNode, CacheDir: dir, Apply: rec.apply})

	got := waitApplied(t, rec, "r1", "demo/cart", "demo/redis")
	want := applied{policy: policy("r1", bulkheadv1.Mode_MODE_DISCOVER), ids: []*bulkheadv1.Identity{idCart, idRedis}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(applied{}), protocmp.Transform()); diff != "" {
		t.Errorf("applied configuration (-want +got):\n%s", diff)
	}

	// The first request of the stream names the node.
	first := srv.requests()[0]
	if n := first.GetNode(); n.GetId() != testNode || n.GetCluster() != NodeCluster || n.GetUserAgentName() != UserAgentName {
		t.Errorf("first request's node = %v", n)
	}

	if err := pols.UpdateResource(testNode, policy("r2", bulkheadv1.Mode_MODE_PROTECT)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r2", "demo/cart", "demo/redis")
	resp := srv.policyResponse("r2")
	if resp == nil {
		t.Fatal("server never sent revision r2")
	}
	var ack *discovery.DeltaDiscoveryRequest
	waitFor(t, "the ACK of r2", func() bool { ack = srv.answer(PolicyTypeURL, resp.GetNonce()); return ack != nil })
	if ack.GetErrorDetail() != nil {
		t.Errorf("r2 answered with error_detail %v, want an ACK", ack.GetErrorDetail())
	}
	waitFor(t, "status with r2's version", func() bool {
		return c.Status().PolicyVersion == resp.GetResources()[0].GetVersion()
	})
	st := c.Status()
	if !st.Connected || st.Nacks != 0 || st.Acks < 3 || st.IdentityVersion == "" {
		t.Errorf("status = %+v, want connected, no NACK, at least 3 ACKs, an identity version", st)
	}

	// Persisted before the ACK was sent.
	p, cached, err := LoadCache(dir)
	if err != nil {
		t.Fatalf("LoadCache: %v", err)
	}
	if diff := cmp.Diff(policy("r2", bulkheadv1.Mode_MODE_PROTECT), p, protocmp.Transform()); diff != "" {
		t.Errorf("cached policy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*bulkheadv1.Identity{idCart, idRedis}, cached, protocmp.Transform()); diff != "" {
		t.Errorf("cached identities (-want +got):\n%s", diff)
	}
}

// TestNack: a policy that Apply refuses is NACKed with error_detail, the
// previous configuration stays in force (also on disk and for later identity
// updates), and a later good policy is accepted.
func TestNack(t *testing.T) {
	pols, ids := newCaches(
		map[string]types.Resource{testNode: policy("r1", bulkheadv1.Mode_MODE_MONITOR)},
		identities(idRedis))
	srv := startServer(t, "127.0.0.1:0", pols, ids)
	rec := &recorder{}
	dir := t.TempDir()
	c := runClient(t, Config{Conn: dial(t, srv.addr), Node: testNode, CacheDir: dir, Apply: rec.apply})
	waitApplied(t, rec, "r1", "demo/redis")
	waitFor(t, "policy version", func() bool { return c.Status().PolicyVersion != "" })
	v1 := c.Status().PolicyVersion

	if err := pols.UpdateResource(testNode, policy("bad", bulkheadv1.Mode_MODE_UNSPECIFIED)); err != nil {
		t.Fatal(err)
	}
	var resp *discovery.DeltaDiscoveryResponse
	waitFor(t, "the bad policy to be sent", func() bool { resp = srv.policyResponse("bad"); return resp != nil })
	var nack *discovery.DeltaDiscoveryRequest
	waitFor(t, "the NACK", func() bool { nack = srv.answer(PolicyTypeURL, resp.GetNonce()); return nack != nil })
	if d := nack.GetErrorDetail(); d.GetCode() != int32(codes.InvalidArgument) || !strings.Contains(d.GetMessage(), "policy mode unspecified") {
		t.Errorf("NACK error_detail = %v, want INVALID_ARGUMENT naming the apply error", d)
	}
	st := c.Status()
	if st.PolicyVersion != v1 || st.Nacks != 1 || !strings.Contains(st.LastError, "policy mode unspecified") {
		t.Errorf("status after NACK = %+v, want version %q, 1 NACK, the error", st, v1)
	}
	if rec.refusals() != 1 {
		t.Errorf("Apply refused %d times, want 1", rec.refusals())
	}
	if p, _, err := LoadCache(dir); err != nil || p.GetRevision() != "r1" {
		t.Errorf("cache after NACK: revision %q, %v; want r1", p.GetRevision(), err)
	}

	// An identity update is applied on top of the last good policy.
	if err := ids.UpdateResource("demo/cart", idCart); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r1", "demo/cart", "demo/redis")

	if err := pols.UpdateResource(testNode, policy("r3", bulkheadv1.Mode_MODE_PROTECT)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r3", "demo/cart", "demo/redis")
	waitFor(t, "r3 in status", func() bool {
		st := c.Status()
		return st.PolicyVersion != v1 && st.Nacks == 1
	})
}

// TestIdentityChurn: identities added, changed and removed on the server
// reach Apply.
func TestIdentityChurn(t *testing.T) {
	pols, ids := newCaches(
		map[string]types.Resource{testNode: policy("r1", bulkheadv1.Mode_MODE_PROTECT)},
		identities(idRedis))
	srv := startServer(t, "127.0.0.1:0", pols, ids)
	rec := &recorder{}
	runClient(t, Config{Conn: dial(t, srv.addr), Node: testNode, Apply: rec.apply})
	waitApplied(t, rec, "r1", "demo/redis")

	if err := ids.UpdateResources(identities(idCart, idShop), nil); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r1", "demo/cart", "demo/redis", "shop/web")

	moved := identity("demo/cart", "198.18.0.20")
	if err := ids.UpdateResource("demo/cart", moved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cart's new address", func() bool {
		got, _ := rec.last()
		return len(got.ids) == 3 && got.ids[0].GetIps()[0] == "198.18.0.20"
	})

	if err := ids.DeleteResource("demo/redis"); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r1", "demo/cart", "shop/web")
	if err := ids.UpdateResources(nil, []string{"demo/cart", "shop/web"}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r1")
}

// TestReconnect: the server goes away and comes back on the same address
// with other content; the client reconnects, offers the versions it holds
// (so the unchanged policy is not resent), and converges.
func TestReconnect(t *testing.T) {
	pols, ids := newCaches(
		map[string]types.Resource{testNode: policy("r1", bulkheadv1.Mode_MODE_PROTECT)},
		identities(idRedis, idCart))
	srv := startServer(t, "127.0.0.1:0", pols, ids)
	rec := &recorder{}
	c := runClient(t, Config{Conn: dial(t, srv.addr), Node: testNode, Apply: rec.apply})
	waitApplied(t, rec, "r1", "demo/cart", "demo/redis")
	waitFor(t, "connected", func() bool { return c.Status().Connected && c.Status().PolicyVersion != "" })
	v1 := c.Status().PolicyVersion
	_, callsBefore := rec.last()

	srv.stop()
	waitFor(t, "disconnected", func() bool { st := c.Status(); return !st.Connected && st.LastError != "" })

	// Same policy, one identity removed and one added.
	pols2, ids2 := newCaches(
		map[string]types.Resource{testNode: policy("r1", bulkheadv1.Mode_MODE_PROTECT)},
		identities(idRedis, idShop))
	srv2 := startServer(t, srv.addr, pols2, ids2)
	waitApplied(t, rec, "r1", "demo/redis", "shop/web")
	waitFor(t, "connected again", func() bool { return c.Status().Connected })

	var polReq, idReq *discovery.DeltaDiscoveryRequest
	for _, r := range srv2.requests() {
		switch {
		case r.GetTypeUrl() == PolicyTypeURL && polReq == nil:
			polReq = r
		case r.GetTypeUrl() == IdentityTypeURL && idReq == nil:
			idReq = r
		}
	}
	if diff := cmp.Diff(map[string]string{testNode: v1}, polReq.GetInitialResourceVersions()); diff != "" {
		t.Errorf("policy versions offered on reconnect (-want +got):\n%s", diff)
	}
	if got := idReq.GetInitialResourceVersions(); len(got) != 2 || got["demo/cart"] == "" || got["demo/redis"] == "" {
		t.Errorf("identity versions offered on reconnect = %v, want demo/cart and demo/redis", got)
	}
	for _, r := range srv2.responses() {
		if r.GetTypeUrl() == PolicyTypeURL && len(r.GetResources()) > 0 {
			t.Errorf("unchanged policy resent after reconnect: %v", r)
		}
	}
	if _, calls := rec.last(); calls != callsBefore+1 {
		t.Errorf("Apply called %d times after reconnect, want 1 (the identity change)", calls-callsBefore)
	}

	if err := pols2.UpdateResource(testNode, policy("r2", bulkheadv1.Mode_MODE_MONITOR)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, "r2", "demo/redis", "shop/web")
}

// TestRestoreFromCache: with the control plane unreachable the client
// applies its cached configuration, then offers its versions when it
// connects and converges to the server's.
func TestRestoreFromCache(t *testing.T) {
	dir := t.TempDir()
	old := &policyEntry{name: testNode, version: "v-old", msg: policy("cached", bulkheadv1.Mode_MODE_PROTECT)}
	if err := writeCache(dir, old, map[string]*identityEntry{
		"demo/cart": {name: "demo/cart", version: "i-old", msg: idCart},
	}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	rec := &recorder{}
	c := runClient(t, Config{Conn: dial(t, addr), Node: testNode, CacheDir: dir, Apply: rec.apply})
	waitApplied(t, rec, "cached", "demo/cart")
	if st := c.Status(); st.Connected || st.PolicyVersion != "v-old" {
		t.Errorf("status before the server is up = %+v, want disconnected at v-old", st)
	}

	pols, ids := newCaches(
		map[string]types.Resource{testNode: policy("r9", bulkheadv1.Mode_MODE_PROTECT)},
		identities(idRedis))
	srv := startServer(t, addr, pols, ids)
	waitApplied(t, rec, "r9", "demo/redis")
	if got := srv.requests()[0].GetInitialResourceVersions(); got[testNode] != "v-old" {
		t.Errorf("offered policy versions = %v, want %s: v-old", got, testNode)
	}
	// Persisted right after Apply.
	waitFor(t, "the cache to hold r9 and demo/redis", func() bool {
		p, cached, err := LoadCache(dir)
		return err == nil && p.GetRevision() == "r9" && len(cached) == 1 && cached[0].GetWorkload() == "redis"
	})
}

// TestRestoreRefused: a cache of another node, or one that Apply refuses,
// is not used.
func TestRestoreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  *policyEntry
	}{
		{"other node", &policyEntry{name: "cart.demo", version: "v", msg: policy("other", bulkheadv1.Mode_MODE_PROTECT)}},
		{"refused by apply", &policyEntry{name: testNode, version: "v", msg: policy("bad", bulkheadv1.Mode_MODE_UNSPECIFIED)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := writeCache(dir, tc.pol, nil); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			c, err := New(Config{Conn: dial(t, freeAddr(t)), Node: testNode, CacheDir: dir, Apply: rec.apply}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			c.restore()
			if _, n := rec.last(); n != 0 || c.st.policy != nil || c.Status().PolicyVersion != "" {
				t.Errorf("cache used: %d applies, policy %v", n, c.st.policy)
			}
		})
	}
}

// freeAddr returns a loopback address where nothing listens (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestHandle judges single responses: what is refused, with which message,
// and that Apply waits for a policy.
func TestHandle(t *testing.T) {
	good := func(name string, typ string, msg proto.Message) *discovery.Resource {
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		return &discovery.Resource{Name: name, Version: "v", Resource: &anypb.Any{TypeUrl: typ, Value: b}}
	}
	pol := good(testNode, PolicyTypeURL, policy("r1", bulkheadv1.Mode_MODE_PROTECT))
	cart := good("demo/cart", IdentityTypeURL, idCart)
	for _, tc := range []struct {
		name    string
		resp    *discovery.DeltaDiscoveryResponse
		wantErr string // "" = ACK
	}{
		{"policy", &discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL, Resources: []*discovery.Resource{pol}}, ""},
		{"unknown type", &discovery.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}, "unexpected resource type"},
		{"policy of another node", &discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL,
			Resources: []*discovery.Resource{good("cart.demo", PolicyTypeURL, policy("r1", bulkheadv1.Mode_MODE_PROTECT))}}, `"cart.demo": not this node's`},
		{"policy twice", &discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL, Resources: []*discovery.Resource{pol, pol}}, "sent twice"},
		{"no body", &discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL, Resources: []*discovery.Resource{{Name: testNode}}}, "no body"},
		{"body of another type", &discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL,
			Resources: []*discovery.Resource{good("demo/cart", PolicyTypeURL, policy("r1", bulkheadv1.Mode_MODE_PROTECT))}}, "in a type.googleapis.com/bulkhead.v1.Identity response"},
		{"garbage", &discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL,
			Resources: []*discovery.Resource{{Name: "demo/x", Resource: &anypb.Any{TypeUrl: IdentityTypeURL, Value: []byte{0xff, 0xff}}}}}, `"demo/x"`},
		{"identity twice", &discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL, Resources: []*discovery.Resource{cart, cart}}, "sent twice"},
		{"identity without name", &discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL,
			Resources: []*discovery.Resource{good("", IdentityTypeURL, idCart)}}, "without a name"},
		{"apply refuses", &discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL,
			Resources: []*discovery.Resource{good(testNode, PolicyTypeURL, policy("bad", bulkheadv1.Mode_MODE_UNSPECIFIED))}}, "apply: policy mode unspecified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c, err := New(Config{Conn: dial(t, freeAddr(t)), Node: testNode, Apply: rec.apply}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			tc.resp.Nonce = "7"
			req, ok := c.handle(context.Background(), tc.resp)
			if !ok || req.GetResponseNonce() != "7" || req.GetTypeUrl() != tc.resp.GetTypeUrl() {
				t.Fatalf("handle = %v, %v; want an answer to nonce 7 of the response's type", req, ok)
			}
			got := req.GetErrorDetail().GetMessage()
			if tc.wantErr == "" && req.GetErrorDetail() != nil || !strings.Contains(got, tc.wantErr) {
				t.Errorf("error_detail %q, want containing %q", got, tc.wantErr)
			}
			if tc.wantErr != "" && (req.GetErrorDetail().GetCode() != int32(codes.InvalidArgument) || c.st.policy != nil || c.Status().Nacks != 1) {
				t.Errorf("NACK %v changed state or counted wrong: policy %v, status %+v", req.GetErrorDetail(), c.st.policy, c.Status())
			}
		})
	}

	t.Run("apply waits for a policy; removal keeps it", func(t *testing.T) {
		rec := &recorder{}
		c, err := New(Config{Conn: dial(t, freeAddr(t)), Node: testNode, Apply: rec.apply}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		steps := []struct {
			resp      *discovery.DeltaDiscoveryResponse
			wantCalls int
		}{
			{&discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL, Resources: []*discovery.Resource{cart}}, 0},
			{&discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL, Resources: []*discovery.Resource{pol}}, 1},
			{&discovery.DeltaDiscoveryResponse{TypeUrl: PolicyTypeURL, RemovedResources: []string{testNode}}, 2},
			{&discovery.DeltaDiscoveryResponse{TypeUrl: IdentityTypeURL, RemovedResources: []string{"demo/cart"}}, 3},
		}
		for i, s := range steps {
			req, _ := c.handle(ctx, s.resp)
			if req.GetErrorDetail() != nil {
				t.Fatalf("step %d: NACK %v", i, req.GetErrorDetail())
			}
			got, n := rec.last()
			if n != s.wantCalls {
				t.Fatalf("step %d: %d applies, want %d", i, n, s.wantCalls)
			}
			if n > 0 && got.policy.GetRevision() != "r1" {
				t.Errorf("step %d: policy %v, want r1 kept", i, got.policy)
			}
		}
		if got, _ := rec.last(); len(got.ids) != 0 {
			t.Errorf("identities after removal: %v", got.ids)
		}
	})
}

// stormServer is an ADS server that answers every ProxyPolicy request,
// NACKs included, with the same policy at once (a NACK storm), and records
// when the NACKs arrive.
type stormServer struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	resp *discovery.DeltaDiscoveryResponse

	mu    sync.Mutex
	nacks []time.Time
}

func (s *stormServer) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	nonce := 0
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if req.GetTypeUrl() != PolicyTypeURL {
			continue
		}
		if req.GetErrorDetail() != nil {
			s.mu.Lock()
			s.nacks = append(s.nacks, time.Now())
			s.mu.Unlock()
		}
		nonce++
		resp := proto.Clone(s.resp).(*discovery.DeltaDiscoveryResponse)
		resp.Nonce = strconv.Itoa(nonce)
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}

func (s *stormServer) nackTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.nacks...)
}

// TestNackStorm: a server that resends a refused policy at once is answered
// with NACKs at growing intervals, not as fast as it sends.
func TestNackStorm(t *testing.T) {
	b, err := proto.Marshal(policy("bad", bulkheadv1.Mode_MODE_UNSPECIFIED))
	if err != nil {
		t.Fatal(err)
	}
	ss := &stormServer{resp: &discovery.DeltaDiscoveryResponse{
		TypeUrl:           PolicyTypeURL,
		SystemVersionInfo: "1",
		Resources:         []*discovery.Resource{{Name: testNode, Version: "v1", Resource: &anypb.Any{TypeUrl: PolicyTypeURL, Value: b}}},
	}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, ss)
	served := make(chan struct{})
	go func() { defer close(served); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-served })

	rec := &recorder{}
	c := runClient(t, Config{Conn: dial(t, lis.Addr().String()), Node: testNode, Apply: rec.apply})
	waitFor(t, "the first NACK", func() bool { return len(ss.nackTimes()) > 0 })
	time.Sleep(1600 * time.Millisecond)
	times := ss.nackTimes()
	// Waits of 0, 100, 200, 400, 800ms: about 5 NACKs in 1.6s.
	if len(times) < 3 || len(times) > 7 {
		t.Fatalf("%d NACKs in 1.6s, want 3 to 7", len(times))
	}
	for i := 2; i < len(times); i++ {
		prev, cur := times[i-1].Sub(times[i-2]), times[i].Sub(times[i-1])
		if cur < prev || cur < 90*time.Millisecond {
			t.Errorf("NACK intervals %v then %v, want growing", prev, cur)
		}
	}
	if st := c.Status(); st.Nacks != uint64(len(times)) && st.Nacks != uint64(len(times))+1 {
		t.Errorf("status counts %d NACKs, server saw %d", st.Nacks, len(times))
	}
	if _, n := rec.last(); n != 0 {
		t.Errorf("%d configurations applied, want none", n)
	}
}

// TestNew refuses incomplete configurations.
func TestNew(t *testing.T) {
	conn := dial(t, freeAddr(t))
	apply := (&recorder{}).apply
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no conn", Config{Node: testNode, Apply: apply}, "no connection"},
		{"no node", Config{Conn: conn, Apply: apply}, "no node id"},
		{"long node", Config{Conn: conn, Node: strings.Repeat("n", 300), Apply: apply}, "longer than"},
		{"no apply", Config{Conn: conn, Node: testNode}, "no apply function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestStartTwice: a client runs once at a time.
func TestStartTwice(t *testing.T) {
	rec := &recorder{}
	c := runClient(t, Config{Conn: dial(t, freeAddr(t)), Node: testNode, Apply: rec.apply})
	waitFor(t, "the client to run", func() bool { return c.running.Load() })
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Start: %v, want already started", err)
	}
}
