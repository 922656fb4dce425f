package xds

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	ident "github.com/bulkhead-io/bulkhead/controlplane/identity"
)

// envoyNodes compiles one Envoy sidecar (api.demo, port 8080) under mode,
// with one rule admitting web.
func envoyNodes(t *testing.T, c *envoy.Compiler, mode bulkheadv1.Mode) map[string]*envoy.NodeConfig {
	t.Helper()
	rule := &bulkheadv1.Rule{
		Name:  "demo/api/from-web",
		Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/web"}}},
		Ports: []*bulkheadv1.Port{{Port: 8080, Protocol: "http"}},
		L7:    []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}}},
	}
	out := &compile.Output{
		Proxies: map[string]*bulkheadv1.ProxyPolicy{
			"api.demo": {Segment: "api", Namespace: "demo", Mode: mode, Revision: mode.String(),
				Ports: []*bulkheadv1.Port{{Port: 8080, Protocol: "http"}}, Ingress: []*bulkheadv1.Rule{rule}},
			"web.demo": {Segment: "web", Namespace: "demo", Mode: mode, Revision: "w"},
		},
		Identities: map[string]*bulkheadv1.Identity{
			"demo/api": {Workload: "api", Namespace: "demo", Segment: "demo/api", Ips: []string{"198.18.0.10"}},
			"demo/web": {Workload: "web", Namespace: "demo", Segment: "demo/web", Ips: []string{"198.18.0.20"}},
		},
	}
	ws := []ident.Workload{
		{Name: "api", Namespace: "demo", Segment: "api", IPs: []netip.Addr{netip.MustParseAddr("198.18.0.10")},
			Ports: []ident.Port{{Port: 8080, Protocol: "http"}}, Sidecar: ident.SidecarEnvoy},
		{Name: "web", Namespace: "demo", Segment: "web", IPs: []netip.Addr{netip.MustParseAddr("198.18.0.20")}},
	}
	res, err := c.Compile(envoy.Input{Output: out, Workloads: ws})
	if err != nil {
		t.Fatal(err)
	}
	return res.Nodes
}

func TestEnvoySotW(t *testing.T) {
	e := newEnv(t)
	c := envoy.NewCompiler(envoy.Options{})
	if err := e.srv.SetEnvoy(envoyNodes(t, c, bulkheadv1.Mode_MODE_PROTECT)); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.EnvoyNodes(); !slices.Equal(got, []string{"api.demo"}) {
		t.Fatalf("EnvoyNodes = %v", got)
	}
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("api.demo"), TypeUrl: TypeListener})
	lds := s.recv()
	ls := unpack(t, lds.GetResources(), func() *listenerv3.Listener { return new(listenerv3.Listener) })
	var names []string
	for _, l := range ls {
		names = append(names, l.GetName())
	}
	slices.Sort(names)
	if want := []string{"bulkhead/inbound", "bulkhead/inbound/198.18.0.10:8080"}; !slices.Equal(names, want) {
		t.Fatalf("listeners = %v, want %v", names, want)
	}
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeListener, VersionInfo: lds.GetVersionInfo(), ResponseNonce: lds.GetNonce()})
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeRoute, ResourceNames: []string{"bulkhead/inbound/8080"}})
	rds := s.recv()
	if rds.GetTypeUrl() != TypeRoute || len(rds.GetResources()) != 1 {
		t.Fatalf("RDS response: %v", rds)
	}
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeRoute, ResourceNames: []string{"bulkhead/inbound/8080"}, VersionInfo: rds.GetVersionInfo(), ResponseNonce: rds.GetNonce()})
	waitFor(t, e.srv, "ACKs", func(ns []NodeStatus) bool {
		l, _ := typeStatus(ns, "api.demo", TypeListener)
		r, _ := typeStatus(ns, "api.demo", TypeRoute)
		return l.AckedVersion == lds.GetVersionInfo() && r.AckedVersion == rds.GetVersionInfo()
	})

	// A mode change is a route change: only RDS is answered.
	if err := e.srv.SetEnvoy(envoyNodes(t, c, bulkheadv1.Mode_MODE_MONITOR)); err != nil {
		t.Fatal(err)
	}
	rds2 := s.recv()
	if rds2.GetTypeUrl() != TypeRoute || rds2.GetVersionInfo() == rds.GetVersionInfo() {
		t.Fatalf("after the mode change: %s version %s", rds2.GetTypeUrl(), rds2.GetVersionInfo())
	}
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeRoute, ResourceNames: []string{"bulkhead/inbound/8080"}, VersionInfo: rds2.GetVersionInfo(), ResponseNonce: rds2.GetNonce()})
	s.quiet(200 * time.Millisecond)

	// Removing the node while it is connected empties its listeners.
	if err := e.srv.SetEnvoy(nil); err != nil {
		t.Fatal(err)
	}
	gone := s.recv()
	if len(gone.GetResources()) != 0 {
		t.Errorf("after removal: %s with %d resources", gone.GetTypeUrl(), len(gone.GetResources()))
	}
}

// TestEnvoyNACKParked: a rejected snapshot is not sent again until the
// configuration changes (go-control-plane issue #962), on SotW and delta;
// the NACK is counted and recorded.
func TestEnvoyNACKParked(t *testing.T) {
	e := newEnv(t)
	c := envoy.NewCompiler(envoy.Options{})
	if err := e.srv.SetEnvoy(envoyNodes(t, c, bulkheadv1.Mode_MODE_PROTECT)); err != nil {
		t.Fatal(err)
	}
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("api.demo"), TypeUrl: TypeRoute, ResourceNames: []string{"bulkhead/inbound/8080"}})
	r1 := s.recv()
	s.send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: TypeRoute, ResourceNames: []string{"bulkhead/inbound/8080"}, ResponseNonce: r1.GetNonce(),
		ErrorDetail: &statuspb.Status{Message: "rbac: unsupported"},
	})
	s.quiet(500 * time.Millisecond)
	ns := waitFor(t, e.srv, "NACK", func(ns []NodeStatus) bool {
		ts, _ := typeStatus(ns, "api.demo", TypeRoute)
		return ts.Nacks == 1
	})
	ts, _ := typeStatus(ns, "api.demo", TypeRoute)
	if ts.NackedVersion != r1.GetVersionInfo() || ts.LastError != "rbac: unsupported" || ts.AckedVersion != "" {
		t.Errorf("after NACK: %+v", ts)
	}
	if got := gauge(t, e.reg, "bulkhead_xds_nacks_total", "RouteConfiguration"); got != 1 {
		t.Errorf("bulkhead_xds_nacks_total{type=RouteConfiguration} = %v", got)
	}
	if err := e.srv.SetEnvoy(envoyNodes(t, c, bulkheadv1.Mode_MODE_DISCOVER)); err != nil {
		t.Fatal(err)
	}
	if r2 := s.recv(); r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Error("the new configuration carries the rejected version")
	}

	// Delta: the stream's state holds what was sent; a NACK is not answered.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := e.client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoverygrpc.DeltaDiscoveryResponse, 16)
	go func() {
		defer close(resps)
		for {
			r, err := d.Recv()
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
	if err := d.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node("api.demo"), TypeUrl: TypeListener}); err != nil {
		t.Fatal(err)
	}
	var first *discoverygrpc.DeltaDiscoveryResponse
	select {
	case first = <-resps:
	case <-time.After(5 * time.Second):
		t.Fatal("no delta response")
	}
	if len(first.GetResources()) != 2 {
		t.Fatalf("delta LDS: %d resources", len(first.GetResources()))
	}
	if err := d.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: TypeListener, ResponseNonce: first.GetNonce(), ErrorDetail: &statuspb.Status{Message: "no"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resps:
		t.Fatalf("delta NACK answered: %v", r)
	case <-time.After(500 * time.Millisecond):
	}
	waitFor(t, e.srv, "delta NACK", func(ns []NodeStatus) bool {
		ts, _ := typeStatus(ns, "api.demo", TypeListener)
		return ts.Nacks == 1 && ts.Delta
	})
}

// TestSetEnvoyRefusesInvalid: a configuration that fails validation (in a
// message packed in Any) or refers to a missing resource is not
// published; the node keeps what it had.
func TestSetEnvoyRefusesInvalid(t *testing.T) {
	e := newEnv(t)
	c := envoy.NewCompiler(envoy.Options{})
	good := envoyNodes(t, c, bulkheadv1.Mode_MODE_PROTECT)
	if err := e.srv.SetEnvoy(good); err != nil {
		t.Fatal(err)
	}
	s := e.sotw(t)
	s.send(&discoverygrpc.DiscoveryRequest{Node: node("api.demo"), TypeUrl: TypeListener})
	lds := s.recv()
	s.send(&discoverygrpc.DiscoveryRequest{TypeUrl: TypeListener, VersionInfo: lds.GetVersionInfo(), ResponseNonce: lds.GetNonce()})

	// An HCM without stat_prefix: the Listener's own ValidateAll passes.
	nc := *good["api.demo"]
	nc.Resources[envoy.Listeners] = slices.Clone(nc.Resources[envoy.Listeners])
	for i, r := range nc.Resources[envoy.Listeners] {
		if !strings.HasPrefix(r.Name, envoy.InboundPrefix) {
			continue
		}
		l := proto.Clone(r.Message).(*listenerv3.Listener)
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		hcm.StatPrefix = ""
		a, err := anypb.New(&hcm)
		if err != nil {
			t.Fatal(err)
		}
		l.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		if err := l.ValidateAll(); err != nil {
			t.Fatalf("the listener's own validation already fails: %v", err)
		}
		nc.Resources[envoy.Listeners][i] = &envoy.Resource{Name: r.Name, Message: l, Hash: "bad"}
	}
	nc.Versions[envoy.Listeners] = "bad"
	err := e.srv.SetEnvoy(map[string]*envoy.NodeConfig{"api.demo": &nc})
	if err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Fatalf("SetEnvoy = %v, want a StatPrefix error", err)
	}
	// Dangling: a route configuration that is not there.
	dangling := *good["api.demo"]
	dangling.Resources[envoy.Routes] = []*envoy.Resource{{Name: "other", Message: &routev3.RouteConfiguration{Name: "other"}, Hash: "x"}}
	dangling.Versions[envoy.Routes] = "x"
	if err := e.srv.SetEnvoy(map[string]*envoy.NodeConfig{"api.demo": &dangling}); err == nil || !strings.Contains(err.Error(), "dangling") {
		t.Fatalf("SetEnvoy = %v, want a dangling reference error", err)
	}
	s.quiet(300 * time.Millisecond)
	if got := plainCounter(t, e.reg, "bulkhead_xds_envoy_rejected_total"); got != 2 {
		t.Errorf("bulkhead_xds_envoy_rejected_total = %v, want 2", got)
	}
	if err := e.srv.SetEnvoy(map[string]*envoy.NodeConfig{"x": nil}); err == nil {
		t.Error("SetEnvoy accepted a nil config")
	}
}

// plainCounter reads a counter without labels from reg.
func plainCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
