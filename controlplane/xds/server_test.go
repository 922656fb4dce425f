package xds

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a Server on a real gRPC server on 127.0.0.1 and a client of it.
type env struct {
	srv    *Server
	reg    *prometheus.Registry
	client discoverygrpc.AggregatedDiscoveryServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv := New(nil, Options{Registerer: reg})
	gs := grpc.NewServer()
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	started := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	go func() { started <- srv.Start(ctx) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-started; err != nil {
			t.Errorf("Start: %v", err)
		}
		gs.GracefulStop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &env{srv: srv, reg: reg, client: discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)}
}

// sotw is an ADS SotW stream whose responses a goroutine pumps into a
// channel until the stream ends.
type sotw struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoverygrpc.DiscoveryRequest, discoverygrpc.DiscoveryResponse]
	resps  chan *discoverygrpc.DiscoveryResponse
	done   chan error
	cancel context.CancelFunc
}

func (e *env) sotw(t *testing.T) *sotw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := e.client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &sotw{t: t, stream: stream, resps: make(chan *discoverygrpc.DiscoveryResponse, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				s.done <- err
				close(s.resps)
				return
			}
			s.resps <- r
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sotw) close() {
	s.cancel()
	for range s.resps {
	}
}

func (s *sotw) send(r *discoverygrpc.DiscoveryRequest) {
	s.t.Helper()
	if err := s.stream.Send(r); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *sotw) recv() *discoverygrpc.DiscoveryResponse {
	s.t.Helper()
	select {
	case r, ok := <-s.resps:
		if !ok {
			s.t.Fatalf("stream ended: %v", <-s.done)
		}
		return r
	case <-time.After(5 * time.Second):
		s.t.Fatal("no response within 5s")
	}
	return nil
}

// quiet asserts that no response arrives for a while.
func (s *sotw) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case r, ok := <-s.resps:
		if ok {
			s.t.Fatalf("unexpected response: version %s, %d resources", r.GetVersionInfo(), len(r.GetResources()))
		}
	case <-time.After(d):
	}
}

func node(id string) *core.Node { return &core.Node{Id: id} }

func policy(seg string, mode bulkheadv1.Mode) *bulkheadv1.ProxyPolicy {
	return &bulkheadv1.ProxyPolicy{
		Segment: seg, Namespace: "demo", Mode: mode,
		Ports:    []*bulkheadv1.Port{{Port: 6379, Protocol: "redis"}},
		Revision: seg + mode.String(),
	}
}

func identity(name, ip string) *bulkheadv1.Identity {
	return &bulkheadv1.Identity{Workload: name, Namespace: "demo", Segment: "demo/" + name, Ips: []string{ip}}
}

func unpack[T proto.Message](t *testing.T, anys []*anypb.Any, newT func() T) []T {
	t.Helper()
	var out []T
	for _, a := range anys {
		m := newT()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatalf("unmarshal %s: %v", a.GetTypeUrl(), err)
		}
		out = append(out, m)
	}
	return out
}

func sortIdentities(ids []*bulkheadv1.Identity) []*bulkheadv1.Identity {
	slices.SortFunc(ids, func(a, b *bulkheadv1.Identity) int { return strings.Compare(a.Workload, b.Workload) })
	return ids
}

// waitFor polls the server's node table until ok holds.
func waitFor(t *testing.T, s *Server, what string, ok func([]NodeStatus) bool) []NodeStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := s.Nodes()
		if ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within 5s; nodes: %+v", what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func typeStatus(ns []NodeStatus, nodeID, typeURL string) (TypeStatus, bool) {
	for _, n := range ns {
		if n.Node != nodeID {
			continue
		}
		for _, ts := range n.Types {
			if ts.Type == typeURL {
				return ts, true
			}
		}
	}
	return TypeStatus{}, false
}

// gauge reads the value of a counter or gauge with one label from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func TestSotWProxyPolicyByName(t *testing.T) {
	e := newEnv(t)
	redis := policy("redis", bulkheadv1.Mode_MODE_DISCOVER)
	if err := e.srv.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{
		"redis.demo": redis,
		"cart.demo":  policy("cart", bulkheadv1.Mode_MODE_DISCOVER),
	}); err != nil {
		t.Fatal(err)
	}
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("redis.demo"), TypeUrl: TypeProxyPolicy, ResourceNames: []string{"redis.demo"}})
	r1 := s.recv()
	got := unpack(t, r1.GetResources(), func() *bulkheadv1.ProxyPolicy { return new(bulkheadv1.ProxyPolicy) })
	if diff := cmp.Diff([]*bulkheadv1.ProxyPolicy{redis}, got, protocmp.Transform()); diff != "" {
		t.Fatalf("first response (-want +got):\n%s", diff)
	}
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeProxyPolicy, ResourceNames: []string{"redis.demo"}, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce()})
	waitFor(t, e.srv, "ACK of the first version", func(ns []NodeStatus) bool {
		ts, ok := typeStatus(ns, "redis.demo", TypeProxyPolicy)
		return ok && ts.AckedVersion == r1.GetVersionInfo() && ts.SentVersion == r1.GetVersionInfo()
	})

	// Equal content and another node's change do not reach this stream.
	if err := e.srv.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{
		"redis.demo": policy("redis", bulkheadv1.Mode_MODE_DISCOVER),
		"cart.demo":  policy("cart", bulkheadv1.Mode_MODE_PROTECT),
	}); err != nil {
		t.Fatal(err)
	}
	s.quiet(200 * time.Millisecond)

	protect := policy("redis", bulkheadv1.Mode_MODE_PROTECT)
	if err := e.srv.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{
		"redis.demo": protect,
		"cart.demo":  policy("cart", bulkheadv1.Mode_MODE_PROTECT),
	}); err != nil {
		t.Fatal(err)
	}
	r2 := s.recv()
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Errorf("second response has the first's version %q", r1.GetVersionInfo())
	}
	got = unpack(t, r2.GetResources(), func() *bulkheadv1.ProxyPolicy { return new(bulkheadv1.ProxyPolicy) })
	if diff := cmp.Diff([]*bulkheadv1.ProxyPolicy{protect}, got, protocmp.Transform()); diff != "" {
		t.Fatalf("second response (-want +got):\n%s", diff)
	}

	// NACK it: the node keeps the first version and the rejection is recorded.
	s.send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: TypeProxyPolicy, ResourceNames: []string{"redis.demo"},
		VersionInfo: r1.GetVersionInfo(), ResponseNonce: r2.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "rule demo/redis/x: bad port"},
	})
	ns := waitFor(t, e.srv, "NACK", func(ns []NodeStatus) bool {
		ts, _ := typeStatus(ns, "redis.demo", TypeProxyPolicy)
		return ts.Nacks == 1
	})
	ts, _ := typeStatus(ns, "redis.demo", TypeProxyPolicy)
	want := TypeStatus{
		Type: TypeProxyPolicy, SentVersion: r2.GetVersionInfo(), AckedVersion: r1.GetVersionInfo(),
		NackedVersion: r2.GetVersionInfo(), Nacks: 1, LastError: "rule demo/redis/x: bad port", LastNack: ts.LastNack,
	}
	if diff := cmp.Diff(want, ts); diff != "" {
		t.Errorf("type status after NACK (-want +got):\n%s", diff)
	}
	if ts.LastNack.IsZero() {
		t.Error("LastNack not set")
	}
	if got := gauge(t, e.reg, "bulkhead_xds_nacks_total", "ProxyPolicy"); got != 1 {
		t.Errorf("bulkhead_xds_nacks_total{type=ProxyPolicy} = %v, want 1", got)
	}
	if !ns[slices.IndexFunc(ns, func(n NodeStatus) bool { return n.Node == "redis.demo" })].Connected {
		t.Error("node not connected")
	}

	s.close()
	waitFor(t, e.srv, "disconnect", func(ns []NodeStatus) bool {
		return len(ns) == 1 && !ns[0].Connected && ns[0].Streams == 0
	})
}

func TestSotWIdentityWildcardCarriesWholeSet(t *testing.T) {
	e := newEnv(t)
	a, b, c := identity("a", "198.18.0.1"), identity("b", "198.18.0.2"), identity("c", "198.18.0.3")
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/a": a, "demo/b": b}); err != nil {
		t.Fatal(err)
	}
	s := e.sotw(t)
	// An empty resource list is the legacy wildcard.
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("a.demo"), TypeUrl: TypeIdentity})
	ack := func(r *discoverygrpc.DiscoveryResponse) {
		s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeIdentity, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		waitFor(t, e.srv, "ACK", func(ns []NodeStatus) bool {
			ts, _ := typeStatus(ns, "a.demo", TypeIdentity)
			return ts.AckedVersion == r.GetVersionInfo()
		})
	}
	check := func(step string, r *discoverygrpc.DiscoveryResponse, want ...*bulkheadv1.Identity) {
		t.Helper()
		got := sortIdentities(unpack(t, r.GetResources(), func() *bulkheadv1.Identity { return new(bulkheadv1.Identity) }))
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", step, diff)
		}
	}
	r := s.recv()
	check("initial", r, a, b)
	ack(r)

	// Unchanged content: nothing is sent.
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/a": identity("a", "198.18.0.1"), "demo/b": b}); err != nil {
		t.Fatal(err)
	}
	s.quiet(200 * time.Millisecond)

	// One added: the whole set arrives.
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/a": a, "demo/b": b, "demo/c": c}); err != nil {
		t.Fatal(err)
	}
	r = s.recv()
	check("after adding c", r, a, b, c)
	ack(r)

	// One removed, one changed: the whole remaining set arrives.
	b2 := identity("b", "198.18.0.22")
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/b": b2, "demo/c": c}); err != nil {
		t.Fatal(err)
	}
	r = s.recv()
	check("after removing a and moving b", r, b2, c)
}

func TestProxyPolicyWildcardRefused(t *testing.T) {
	e := newEnv(t)
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("x.demo"), TypeUrl: TypeProxyPolicy, ResourceNames: []string{"*"}})
	select {
	case _, ok := <-s.resps:
		if ok {
			t.Fatal("got a response to a wildcard ProxyPolicy request")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream not ended")
	}
	if err := <-s.done; status.Code(err) != codes.InvalidArgument {
		t.Errorf("stream ended with %v, want InvalidArgument", err)
	}
}

func TestNodeIDRequired(t *testing.T) {
	e := newEnv(t)
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeIdentity})
	for range s.resps {
		t.Fatal("got a response without a node id")
	}
	if err := <-s.done; status.Code(err) != codes.InvalidArgument {
		t.Errorf("stream ended with %v, want InvalidArgument", err)
	}
}

func TestDelta(t *testing.T) {
	e := newEnv(t)
	a, b := identity("a", "198.18.0.1"), identity("b", "198.18.0.2")
	redis := policy("redis", bulkheadv1.Mode_MODE_MONITOR)
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/a": a, "demo/b": b}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{"redis.demo": redis}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoverygrpc.DeltaDiscoveryResponse, 16)
	go func() {
		defer close(resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			resps <- r
		}
	}()
	defer func() {
		cancel()
		for range resps {
		}
	}()
	recv := func() *discoverygrpc.DeltaDiscoveryResponse {
		t.Helper()
		select {
		case r, ok := <-resps:
			if !ok {
				t.Fatal("stream ended")
			}
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no delta response within 5s")
		}
		return nil
	}
	send := func(r *discoverygrpc.DeltaDiscoveryRequest) {
		t.Helper()
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	type named struct {
		Name string
		ID   *bulkheadv1.Identity
	}
	identities := func(r *discoverygrpc.DeltaDiscoveryResponse) []named {
		t.Helper()
		var out []named
		for _, res := range r.GetResources() {
			id := new(bulkheadv1.Identity)
			if err := res.GetResource().UnmarshalTo(id); err != nil {
				t.Fatal(err)
			}
			out = append(out, named{res.GetName(), id})
		}
		slices.SortFunc(out, func(x, y named) int { return strings.Compare(x.Name, y.Name) })
		return out
	}

	send(&discoverygrpc.DeltaDiscoveryRequest{Node: node("redis.demo"), TypeUrl: TypeIdentity, ResourceNamesSubscribe: []string{"*"}})
	r := recv()
	if diff := cmp.Diff([]named{{"demo/a", a}, {"demo/b", b}}, identities(r), protocmp.Transform()); diff != "" {
		t.Fatalf("initial identities (-want +got):\n%s", diff)
	}
	send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: TypeIdentity, ResponseNonce: r.GetNonce()})
	waitFor(t, e.srv, "delta ACK", func(ns []NodeStatus) bool {
		ts, _ := typeStatus(ns, "redis.demo", TypeIdentity)
		return ts.Delta && ts.AckedVersion == r.GetSystemVersionInfo() && ts.AckedVersion != ""
	})

	send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: TypeProxyPolicy, ResourceNamesSubscribe: []string{"redis.demo"}})
	r = recv()
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "redis.demo" {
		t.Fatalf("ProxyPolicy response: %v", r)
	}
	got := new(bulkheadv1.ProxyPolicy)
	if err := r.GetResources()[0].GetResource().UnmarshalTo(got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(redis, got, protocmp.Transform()); diff != "" {
		t.Fatalf("ProxyPolicy (-want +got):\n%s", diff)
	}
	send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: TypeProxyPolicy, ResponseNonce: r.GetNonce()})

	// a removed, b unchanged, c added: only c and a's removal are sent.
	c := identity("c", "198.18.0.3")
	if err := e.srv.SetIdentities(map[string]*bulkheadv1.Identity{"demo/b": identity("b", "198.18.0.2"), "demo/c": c}); err != nil {
		t.Fatal(err)
	}
	r = recv()
	if r.GetTypeUrl() != TypeIdentity {
		t.Fatalf("got a %s response, want identities", r.GetTypeUrl())
	}
	if diff := cmp.Diff([]named{{"demo/c", c}}, identities(r), protocmp.Transform()); diff != "" {
		t.Errorf("identity delta (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"demo/a"}, r.GetRemovedResources()); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}

	// NACK it.
	send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: TypeIdentity, ResponseNonce: r.GetNonce(), ErrorDetail: &statuspb.Status{Message: "bad ip"}})
	ns := waitFor(t, e.srv, "delta NACK", func(ns []NodeStatus) bool {
		ts, _ := typeStatus(ns, "redis.demo", TypeIdentity)
		return ts.Nacks == 1
	})
	ts, _ := typeStatus(ns, "redis.demo", TypeIdentity)
	if ts.NackedVersion != r.GetSystemVersionInfo() || ts.LastError != "bad ip" || ts.AckedVersion == ts.NackedVersion {
		t.Errorf("after delta NACK: %+v (response version %s)", ts, r.GetSystemVersionInfo())
	}
	if got := gauge(t, e.reg, "bulkhead_xds_nacks_total", "Identity"); got != 1 {
		t.Errorf("bulkhead_xds_nacks_total{type=Identity} = %v, want 1", got)
	}
}

func TestStartEndsStreams(t *testing.T) {
	srv := New(nil, Options{})
	gs := grpc.NewServer()
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: node("a.demo"), TypeUrl: TypeIdentity}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the empty initial wildcard answer
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- srv.Start(ctx) }()
	cancel()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream still open after Start returned")
	}
	gs.GracefulStop() // returns: no stream is left open
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestSetRejectsNil(t *testing.T) {
	s := New(nil, Options{})
	if err := s.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{"a.demo": nil}); err == nil {
		t.Error("nil policy accepted")
	}
	if err := s.SetIdentities(map[string]*bulkheadv1.Identity{"": identity("a", "198.18.0.1")}); err == nil {
		t.Error("empty identity name accepted")
	}
}
