package als

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/learn"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const workloads = `workloads:
- {name: api, namespace: demo, ips: [198.18.20.10], ports: [{port: 8080, protocol: http}], sidecar: envoy}
- {name: web, namespace: demo, ips: [198.18.20.20]}
- {name: ops, namespace: tools, ips: [198.18.21.1]}
`

const policies = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: demo}
spec:
  mode: %s
  ingress:
  - name: from-web
    peers: [{segment: web}]
    ports: [{port: 8080, protocol: http}]
    http: {methods: [GET], paths: [/healthz]}
`

func viewFor(t *testing.T, mode string) *View {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML([]byte(strings.Replace(policies, "%s", mode, 1)))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := identity.Parse([]byte(workloads))
	if err != nil {
		t.Fatal(err)
	}
	out, err := compile.Compile(compile.Input{Policies: ps, Workloads: tab.Workloads()})
	if err != nil {
		t.Fatal(err)
	}
	return NewView(out)
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// entry is an access log entry as Envoy writes one for a request from src
// to api's 8080, with the RBAC filter's dynamic metadata md.
func entry(src string, method corev3.RequestMethod, path, authority string, md map[string]string, details string) *accesslogdatav3.HTTPAccessLogEntry {
	e := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			DownstreamRemoteAddress:       sockAddr(src, 40000),
			DownstreamDirectRemoteAddress: sockAddr(src, 40000),
			DownstreamLocalAddress:        sockAddr("198.18.20.10", 8080),
			StartTime:                     timestamppb.New(t0),
		},
		ProtocolVersion: accesslogdatav3.HTTPAccessLogEntry_HTTP11,
		Request:         &accesslogdatav3.HTTPRequestProperties{RequestMethod: method, Path: path, Authority: authority, RequestHeadersBytes: 100},
		Response:        &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200), ResponseHeadersBytes: 50, ResponseCodeDetails: details},
	}
	if md != nil {
		fields := map[string]any{}
		for k, v := range md {
			fields[k] = v
		}
		s, err := structpb.NewStruct(fields)
		if err != nil {
			panic(err)
		}
		e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{rbacFilter: s}}
	}
	return e
}

func TestConvert(t *testing.T) {
	const get, post = corev3.RequestMethod_GET, corev3.RequestMethod_POST
	protectOK := map[string]string{"bulkhead_protect_enforced_engine_result": "allowed", "bulkhead_protect_enforced_effective_policy_id": "demo/api/from-web"}
	protectNo := map[string]string{"bulkhead_protect_enforced_engine_result": "denied"}
	cases := map[string]struct {
		mode string
		e    *accesslogdatav3.HTTPAccessLogEntry
		want *bulkheadv1.Flow
	}{
		"protect allowed": {"protect", entry("198.18.20.20", get, "/healthz?x=1", "API.demo:8080", protectOK, "via_upstream"),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_PROTECT, Rule: "demo/api/from-web", Verb: "GET", Resource: "/healthz", Aux: "api.demo"}},
		"protect denied, peer admitted": {"protect", entry("198.18.20.20", post, "/admin", "api.demo", protectNo, "rbac_access_denied_matched_policy[none]"),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_DENY, Mode: bulkheadv1.Mode_MODE_PROTECT, Reason: ReasonL7, Verb: "POST", Resource: "/admin", Aux: "api.demo"}},
		"protect denied, no rule for the peer": {"protect", entry("198.18.21.1", get, "/healthz", "", nil, "rbac_access_denied_matched_policy[none]"),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_DENY, Mode: bulkheadv1.Mode_MODE_PROTECT, Reason: ReasonNoRule, Verb: "GET", Resource: "/healthz", SrcSegment: "tools/ops", SrcIp: "198.18.21.1"}},
		"monitor violation": {"discover" /* the metadata says monitor */, entry("198.18.20.20", post, "/admin", "", map[string]string{"bulkhead_monitor_shadow_engine_result": "denied"}, "via_upstream"),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_VIOLATION, Mode: bulkheadv1.Mode_MODE_MONITOR, Reason: ReasonL7, Verb: "POST", Resource: "/admin"}},
		"monitor allowed": {"monitor", entry("198.18.20.20", get, "/healthz", "", map[string]string{"bulkhead_monitor_shadow_engine_result": "allowed", "bulkhead_monitor_shadow_effective_policy_id": "demo/api/from-web"}, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_MONITOR, Rule: "demo/api/from-web", Verb: "GET", Resource: "/healthz"}},
		"discover, a rule allows": {"discover", entry("198.18.20.20", get, "/healthz", "", map[string]string{"bulkhead_discover_shadow_engine_result": "allowed", "bulkhead_discover_shadow_effective_policy_id": "demo/api/from-web"}, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER, Rule: "demo/api/from-web", Verb: "GET", Resource: "/healthz"}},
		"discover, no rule": {"discover", entry("198.18.20.20", get, "/users/42", "", map[string]string{"bulkhead_discover_shadow_engine_result": "denied"}, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER, Reason: ReasonL7, Verb: "GET", Resource: "/users/42"}},
		"no metadata: the node's mode": {"monitor", entry("198.18.20.20", get, "/x", "", nil, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_MONITOR, Verb: "GET", Resource: "/x"}},
		"long path cut": {"discover", entry("198.18.20.20", get, "/"+strings.Repeat("a", 300), "", nil, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER, Reason: ReasonL7, Verb: "GET", Resource: "/" + strings.Repeat("a", MaxResource-1-len(Cut)) + Cut}},
		"ipv6 authority": {"discover", entry("198.18.20.20", get, "/x", "[2001:DB8::1]:8080", nil, ""),
			&bulkheadv1.Flow{Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER, Reason: ReasonL7, Verb: "GET", Resource: "/x", Aux: "2001:db8::1"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, skipped := Convert("api.demo", viewFor(t, c.mode), []*accesslogdatav3.HTTPAccessLogEntry{c.e, c.e}, t0)
			if skipped != 0 || len(got) != 1 {
				t.Fatalf("got %d flows, %d skipped", len(got), skipped)
			}
			want := c.want
			want.Direction = bulkheadv1.Direction_DIRECTION_INGRESS
			if want.SrcIp == "" {
				want.SrcIp, want.SrcSegment = "198.18.20.20", "demo/web"
			}
			want.DstIp, want.DstSegment, want.DstPort, want.Protocol = "198.18.20.10", "demo/api", 8080, "http"
			want.Count, want.Bytes = 2, 300
			want.FirstSeen, want.LastSeen = timestamppb.New(t0), timestamppb.New(t0)
			if diff := cmp.Diff(want, got[0], protocmp.Transform()); diff != "" {
				t.Errorf("flow (-want +got):\n%s", diff)
			}
		})
	}
	if got, skipped := Convert("nobody.demo", viewFor(t, "protect"), []*accesslogdatav3.HTTPAccessLogEntry{cases["monitor allowed"].e}, t0); len(got) != 0 || skipped != 1 {
		t.Errorf("unknown node: %d flows, %d skipped", len(got), skipped)
	}
	noAddr := entry("198.18.20.20", get, "/", "", nil, "")
	noAddr.CommonProperties.DownstreamLocalAddress = nil
	if got, skipped := Convert("api.demo", viewFor(t, "protect"), []*accesslogdatav3.HTTPAccessLogEntry{noAddr}, t0); len(got) != 0 || skipped != 1 {
		t.Errorf("no local address: %d flows, %d skipped", len(got), skipped)
	}
}

// env is the ALS and flows servers on a real gRPC server, fed into a real
// store and learner.
type env struct {
	st     *store.Store
	rec    *flows.Recorder
	client accesslogv3.AccessLogServiceClient
	stop   func()
}

func newEnv(t *testing.T, mode string) *env {
	t.Helper()
	return newEnvWith(t, mode, Options{})
}

func newEnvWith(t *testing.T, mode string, opts Options) *env {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := v1alpha1.UnmarshalYAML([]byte(strings.Replace(policies, "%s", mode, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(ps); err != nil {
		t.Fatal(err)
	}
	rec := flows.NewRecorder(flows.Options{})
	fs := flows.NewServer(rec, learn.New(st, nil), st, nil, flows.ServerOptions{})
	view := func() *View {
		tab, err := identity.Parse([]byte(workloads))
		if err != nil {
			panic(err)
		}
		out, err := compile.Compile(compile.Input{Policies: st.List(), Workloads: tab.Workloads(), Settings: st.Settings()})
		if err != nil {
			panic(err)
		}
		return NewView(out)
	}
	srv := NewServer(fs, view, nil, opts)
	gs := grpc.NewServer()
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, started := make(chan error, 1), make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	go func() { started <- srv.Start(ctx) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rec: rec, client: accesslogv3.NewAccessLogServiceClient(conn)}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			<-started
			gs.GracefulStop()
			<-served
			conn.Close()
		})
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) send(t *testing.T, msgs ...*accesslogv3.StreamAccessLogsMessage) error {
	t.Helper()
	stream, err := e.client.StreamAccessLogs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func httpLogs(node string, es ...*accesslogdatav3.HTTPAccessLogEntry) *accesslogv3.StreamAccessLogsMessage {
	m := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: es},
	}}
	if node != "" {
		m.Identifier = &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: node}, LogName: envoy.AccessLogName}
	}
	return m
}

// TestDiscoverLearns: access log entries of a discover-mode sidecar become
// learned rules in the store, as bulkhead-proxy's flows do; a flow a rule
// already allows teaches nothing and counts as a hit.
func TestDiscoverLearns(t *testing.T) {
	e := newEnv(t, "discover")
	discoverNo := map[string]string{"bulkhead_discover_shadow_engine_result": "denied"}
	discoverOK := map[string]string{"bulkhead_discover_shadow_engine_result": "allowed", "bulkhead_discover_shadow_effective_policy_id": "demo/api/from-web"}
	err := e.send(t,
		httpLogs("api.demo", entry("198.18.20.20", corev3.RequestMethod_GET, "/users/42", "api.demo", discoverNo, "")),
		httpLogs("", entry("198.18.20.20", corev3.RequestMethod_GET, "/healthz", "api.demo", discoverOK, "")),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := e.st.Get("demo", "api")
	if !ok {
		t.Fatal("no policy demo/api")
	}
	var learned *v1alpha1.Rule
	for i, r := range p.Spec.Ingress {
		if r.Origin == v1alpha1.OriginLearned {
			if learned != nil {
				t.Errorf("more than one learned rule: %+v", p.Spec.Ingress)
			}
			learned = &p.Spec.Ingress[i]
		}
	}
	if learned == nil || learned.HTTP == nil {
		t.Fatalf("no learned HTTP rule: %+v", p.Spec.Ingress)
	}
	want := v1alpha1.HTTPMatch{Methods: []string{"GET"}, Paths: []string{"/users/{id}"}, Hosts: []string{"api.demo"}}
	if diff := cmp.Diff(want, *learned.HTTP, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("learned matcher (-want +got):\n%s", diff)
	}
	if len(learned.Peers) != 1 || learned.Peers[0].Segment != "web" || learned.Ports[0].Port != 8080 {
		t.Errorf("learned rule %+v", learned)
	}
	hits := int64(0)
	for _, rs := range p.Status.Rules {
		if rs.Name == "from-web" {
			hits = rs.Hits
		}
	}
	if hits != 1 {
		t.Errorf("hits of from-web = %d, want 1 (status %+v)", hits, p.Status.Rules)
	}
	if got := e.rec.Flows(flows.Filter{Segment: "demo/api"}); len(got) != 2 {
		t.Errorf("recorded %d flows, want 2", len(got))
	}
}

// TestMonitorViolations: shadow denials become violations, counted
// against the segment, and nothing is learned.
func TestMonitorViolations(t *testing.T) {
	e := newEnv(t, "monitor")
	md := map[string]string{"bulkhead_monitor_shadow_engine_result": "denied"}
	if err := e.send(t, httpLogs("api.demo",
		entry("198.18.20.20", corev3.RequestMethod_DELETE, "/users/42", "", md, ""),
		entry("198.18.21.1", corev3.RequestMethod_GET, "/healthz", "", md, ""),
	)); err != nil {
		t.Fatal(err)
	}
	vs := e.rec.Violations(flows.Filter{Segment: "demo/api"})
	if len(vs) != 2 {
		t.Fatalf("violations = %+v", vs)
	}
	reasons := map[string]string{}
	for _, v := range vs {
		if v.Verdict != "violation" || v.Mode != "monitor" {
			t.Errorf("violation record %+v", v)
		}
		reasons[v.SrcIP] = v.Reason
	}
	if reasons["198.18.20.20"] != ReasonL7 || reasons["198.18.21.1"] != ReasonNoRule {
		t.Errorf("reasons = %v", reasons)
	}
	if n := e.st.Violations("demo/api"); n != 2 {
		t.Errorf("store violations = %d, want 2", n)
	}
	p, _ := e.st.Get("demo", "api")
	if len(p.Spec.Ingress) != 1 {
		t.Errorf("monitor mode learned: %+v", p.Spec.Ingress)
	}
}

func TestStreamErrors(t *testing.T) {
	e := newEnv(t, "protect")
	if err := e.send(t, httpLogs("", entry("198.18.20.20", corev3.RequestMethod_GET, "/", "", nil, ""))); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no node: %v", err)
	}
	if err := e.send(t, httpLogs("api.demo"), httpLogs("web.demo")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("node changed: %v", err)
	}
	many := make([]*accesslogdatav3.HTTPAccessLogEntry, DefaultMaxEntries+1)
	for i := range many {
		many[i] = entry("198.18.20.20", corev3.RequestMethod_GET, "/", "", nil, "")
	}
	if err := e.send(t, httpLogs("api.demo", many...)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("too many entries: %v", err)
	}
}

// TestStartEndsStreams: an open stream ends with Unavailable when the
// server stops.
func TestStartEndsStreams(t *testing.T) {
	e := newEnv(t, "protect")
	stream, err := e.client.StreamAccessLogs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(httpLogs("api.demo")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	// The client keeps its side open, as Envoy does.
	go func() { done <- stream.RecvMsg(new(accesslogv3.StreamAccessLogsResponse)) }()
	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	defer func() { <-stopped }()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stream ended with %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5s after the server stopped")
	}
}
