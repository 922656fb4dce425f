package grpcxds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/run"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(runHelper(os.Args[2:]))
	}
	goleak.VerifyTestMain(m)
}

// grpcPort is the port of the gRPC server under test.
const grpcPort = 50051

// testTimeout bounds one test; every wait inside has a shorter bound.
const testTimeout = 2 * time.Minute

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return nil
}

// newLab builds a lab with the hosts server, client and intruder (in that
// order: .2, .3, .4 of subnet). The prefix and subnet are this package's
// own: bhgx<n>, 198.18.(60+n).0/24.
func newLab(t *testing.T, n int) *lab.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end test: needs root (network namespaces)")
	}
	l, err := lab.New(t.Context(), lab.Options{
		Prefix: fmt.Sprintf("bhgx%d", n),
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(60 + n), 0}), 24),
		Log:    testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	for _, h := range []string{"server", "client", "intruder"} {
		if _, err := l.AddHost(h); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// startServer starts the xDS gRPC server on host's address with the
// bootstrap file at path, and waits until it serves.
func startServer(t *testing.T, ctx context.Context, h *lab.Host, bootstrap string) *lab.Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(h.Addr(), grpcPort).String()
	p, err := h.Start(ctx, "env", "GRPC_XDS_BOOTSTRAP="+bootstrap, exe, helperArg, "server", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, p, "serving-mode SERVING", 20*time.Second)
	return p
}

// waitOutput waits until p has written want.
func waitOutput(t *testing.T, p *lab.Proc, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(string(p.Output()), want) {
		if exited, err := p.Exited(); exited {
			t.Fatalf("process exited (%v) before writing %q:\n%s", err, want, p.Tail(30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v:\n%s", want, d, p.Tail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// caller is a plain gRPC client of the server dialled from inside a lab
// host, so that the server sees the host's address.
type caller struct {
	conn *grpc.ClientConn
	hc   healthpb.HealthClient
}

func newCaller(t *testing.T, from, server *lab.Host) *caller {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+netip.AddrPortFrom(server.Addr(), grpcPort).String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return from.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &caller{conn: conn, hc: healthpb.NewHealthClient(conn)}
}

// check calls Health/Check and returns the status code.
func (c *caller) check(ctx context.Context) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.hc.Check(ctx, &healthpb.HealthCheckRequest{})
	return status.Code(err)
}

// list calls Health/List, which no rule allows.
func (c *caller) list(ctx context.Context) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.hc.List(ctx, &healthpb.HealthListRequest{})
	return status.Code(err)
}

// within polls call until it returns want and reports how long that took
// since start; it fails the test when that is more than d.
func within(t *testing.T, what string, start time.Time, d time.Duration, call func() codes.Code, want codes.Code) time.Duration {
	t.Helper()
	var got codes.Code
	for time.Since(start) < d {
		if got = call(); got == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: still %v after %v, want %v", what, got, d, want)
	return 0
}

const workloadsFile = `workloads:
- {name: api, namespace: demo, ips: [%s], ports: [{port: %d, protocol: http}], sidecar: grpc}
- {name: web, namespace: demo, ips: [%s], sidecar: grpc}
- {name: intruder, namespace: demo, ips: [%s]}
`

// Rules are compiled from the typed matchers: the health service's Check
// from the web segment only. (gRPC methods are written as an HTTP matcher
// on an "http" port: v1alpha1 does not accept "http2" ports, which the
// grpc matcher needs, yet. Both compile to POST + the method's path.)
const policyFile = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: demo}
spec:
  mode: protect
  ingress:
  - name: from-web
    peers: [{segment: web}]
    ports: [{port: %d, protocol: http}]
    http: {methods: [POST], paths: [/grpc.health.v1.Health/Check]}
`

func httpDo(t *testing.T, token, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestGRPCServerEnforcesRBAC runs the standalone control plane
// (controlplane/run) with a proxyless gRPC server (api) and client (web)
// and an intruder, and checks what the server enforces: the allowed method
// from web succeeds, a method no rule allows is PermissionDenied, the
// intruder is denied by its source address; protect → discover → protect
// takes effect within a second, without restarting anything; a gRPC-Go
// client resolves xds:///api.demo:50051 through LDS, RDS, CDS and EDS and
// reaches the server.
func TestGRPCServerEnforcesRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	l := newLab(t, 1)
	server, client, intruder := l.Host("server"), l.Host("client"), l.Host("intruder")

	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(fmt.Sprintf(workloadsFile, server.Addr(), grpcPort, client.Addr(), intruder.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	// The policy is in the store's folder from the start, so that the first
	// configuration the server gets is the protect one.
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, "policies", "demo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "policies", "demo", "api.yaml"), []byte(fmt.Sprintf(policyFile, grpcPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	glis, err := net.Listen("tcp", netip.AddrPortFrom(l.HostAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cpCtx, cpCancel := context.WithCancel(ctx)
	cpDone := make(chan error, 1)
	go func() {
		cpDone <- run.Run(cpCtx, run.Config{
			StateDir: state, WorkloadsFile: wfile,
			GRPCListener: glis, AdminListener: alis,
		}, testLog(t)) // mutual TLS: the gRPC nodes use certificates of the control plane's CA

	}()
	defer func() {
		cpCancel()
		if err := <-cpDone; err != nil {
			t.Errorf("control plane: %v", err)
		}
	}()
	admin := "http://" + alis.Addr().String()
	// The control plane creates its admin token in the state dir at start.
	var token string
	for deadline := time.Now().Add(10 * time.Second); token == ""; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(state, "admin-token")); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			token = string(bytes.TrimSpace(b))
		} else if time.Now().After(deadline) {
			t.Fatalf("no admin token: %v", err)
		}
	}

	// Each gRPC node's certificate, kept renewed in a folder as
	// `bulkhead-proxy cert` does (trust_test.go).
	certs := map[string]string{}
	for _, node := range []string{"api.demo", "web.demo"} {
		certs[node] = keepCertificate(t, ctx, state, glis.Addr().String(), node)
	}
	// Bootstraps from the control plane's own endpoint.
	bootstrap := func(node string) string {
		t.Helper()
		code, body := httpDo(t, token, "GET", admin+"/v1/envoy/bootstrap?node="+node+"&certs="+certs[node], "")
		if code != 200 {
			t.Fatalf("bootstrap %s: %d %s", node, code, body)
		}
		if !strings.Contains(body, `"type": "tls"`) || !strings.Contains(body, certs[node]) {
			t.Fatalf("bootstrap %s does not use its certificate over TLS:\n%s", node, body)
		}
		path := filepath.Join(dir, node+".json")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	srv := startServer(t, ctx, server, bootstrap("api.demo"))
	defer srv.Stop()

	web := newCaller(t, client, server)
	bad := newCaller(t, intruder, server)
	if got := web.check(ctx); got != codes.OK {
		t.Fatalf("Check from web: %v, want OK", got)
	}
	if got := web.list(ctx); got != codes.PermissionDenied {
		t.Errorf("List from web: %v, want PermissionDenied", got)
	}
	if got := bad.check(ctx); got != codes.PermissionDenied {
		t.Errorf("Check from the intruder: %v, want PermissionDenied", got)
	}

	// protect → discover → protect, no restart.
	setMode := func(mode string) {
		t.Helper()
		if code, body := httpDo(t, token, "PUT", admin+"/v1/segments/demo/api/mode", `{"mode":"`+mode+`"}`); code != 200 {
			t.Fatalf("mode %s: %d %s", mode, code, body)
		}
	}
	// The clock starts before the request that changes the mode.
	start := time.Now()
	setMode("discover")
	took := within(t, "discover: List from web", start, time.Second, func() codes.Code { return web.list(ctx) }, codes.OK)
	t.Logf("protect → discover enforced %v after the mode change was sent", took)
	if got := bad.check(ctx); got != codes.OK {
		t.Errorf("discover: Check from the intruder: %v, want OK", got)
	}
	start = time.Now()
	setMode("protect")
	took = within(t, "protect again: List from web", start, time.Second, func() codes.Code { return web.list(ctx) }, codes.PermissionDenied)
	t.Logf("discover → protect enforced %v after the mode change was sent", took)
	if got := bad.check(ctx); got != codes.PermissionDenied {
		t.Errorf("protect again: Check from the intruder: %v, want PermissionDenied", got)
	}
	if got := web.check(ctx); got != codes.OK {
		t.Errorf("protect again: Check from web: %v, want OK", got)
	}
	if exited, err := srv.Exited(); exited {
		t.Fatalf("the server restarted or died: %v", err)
	}

	// A gRPC-Go client in web's namespace resolves the service through
	// LDS, RDS, CDS and EDS and reaches it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Start(ctx, "env", "GRPC_XDS_BOOTSTRAP="+bootstrap("web.demo"), exe, helperArg, "client",
		"xds:///"+envoy.ServiceName("demo", "api", grpcPort))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Wait(); err != nil {
		t.Fatalf("xds:/// client: %v\n%s", err, cl.Tail(30))
	}
	if out := string(cl.Output()); !strings.Contains(out, "check: SERVING") {
		t.Errorf("xds:/// client output:\n%s", out)
	}
	// The client's node ACKed a version of each of the four types.
	_, body := httpDo(t, token, "GET", admin+"/v1/proxies", "")
	var nodes []xds.NodeStatus
	if err := json.Unmarshal([]byte(body), &nodes); err != nil {
		t.Fatalf("/v1/proxies: %v\n%s", err, body)
	}
	acked := map[string]bool{}
	for _, n := range nodes {
		if n.Node != "web.demo" {
			continue
		}
		for _, ts := range n.Types {
			acked[ts.Type] = ts.AckedVersion != "" && ts.Nacks == 0
		}
	}
	for _, typ := range []string{xds.TypeListener, xds.TypeRoute, xds.TypeCluster, xds.TypeEndpoint} {
		if !acked[typ] {
			t.Errorf("web.demo did not ACK %s: %s", typ, body)
		}
	}
}

// TestNACKKeepsLastGood serves a gRPC-Go server from an xDS server built
// from the control plane's parts, then a route configuration that passes
// protoc-gen-validate but that gRPC-Go rejects (an RBAC header matcher on
// a "grpc-" header, which gRFC A41 forbids). The NACK is recorded and
// counted, the rejected configuration is not sent again while nothing
// changes, and the server keeps enforcing its last good configuration
// until a good one arrives.
func TestNACKKeepsLastGood(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	l := newLab(t, 2)
	server, client := l.Host("server"), l.Host("client")

	tab, err := identity.Parse([]byte(fmt.Sprintf(workloadsFile, server.Addr(), grpcPort, client.Addr(), l.Host("intruder").Addr())))
	if err != nil {
		t.Fatal(err)
	}
	compileMode := func(mode string) map[string]*envoy.NodeConfig {
		t.Helper()
		ps, err := v1alpha1.UnmarshalYAML([]byte(strings.Replace(fmt.Sprintf(policyFile, grpcPort), "mode: protect", "mode: "+mode, 1)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := compile.Compile(compile.Input{Policies: ps, Workloads: tab.Workloads()})
		if err != nil {
			t.Fatal(err)
		}
		res, err := envoy.NewCompiler(envoy.Options{}).Compile(envoy.Input{Output: out, Workloads: tab.Workloads()})
		if err != nil {
			t.Fatal(err)
		}
		return res.Nodes
	}

	reg := prometheus.NewRegistry()
	xs := xds.New(testLog(t), xds.Options{Registerer: reg})
	gs := grpc.NewServer()
	xs.Register(gs)
	glis, err := net.Listen("tcp", netip.AddrPortFrom(l.HostAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	xctx, xcancel := context.WithCancel(ctx)
	served, started := make(chan error, 1), make(chan error, 1)
	go func() { served <- gs.Serve(glis) }()
	go func() { started <- xs.Start(xctx) }()
	defer func() {
		xcancel()
		<-started
		gs.GracefulStop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	good := compileMode("protect")
	if err := xs.SetEnvoy(good); err != nil {
		t.Fatal(err)
	}
	boot, err := envoy.GRPCBootstrap(envoy.BootstrapOptions{Node: "api.demo", ControlPlane: glis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(t.TempDir(), "api.json")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, ctx, server, bootPath)
	defer srv.Stop()
	web := newCaller(t, client, server)
	if got := web.check(ctx); got != codes.OK {
		t.Fatalf("Check: %v", got)
	}
	if got := web.list(ctx); got != codes.PermissionDenied {
		t.Fatalf("List: %v", got)
	}
	routeStatus := func() xds.TypeStatus {
		for _, n := range xs.Nodes() {
			for _, ts := range n.Types {
				if n.Node == "api.demo" && ts.Type == xds.TypeRoute {
					return ts
				}
			}
		}
		return xds.TypeStatus{}
	}
	goodVersion := routeStatus().AckedVersion
	if goodVersion == "" {
		t.Fatal("no route configuration ACKed")
	}

	// The bad configuration would allow everything — if gRPC-Go took it.
	nc := *good["api.demo"]
	name := envoy.InboundRouteName(grpcPort)
	rbac, err := anypb.New(&rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{
		"all": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
				Name: "grpc-x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}, InvertMatch: true,
			}}}, {Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	bad := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "inbound", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{envoy.FilterRBAC: rbac},
	}}}
	if err := envoy.Validate(bad); err != nil {
		t.Fatalf("the bad route does not even pass validation: %v", err)
	}
	nc.Resources[envoy.Routes] = []*envoy.Resource{{Name: name, Message: bad, Hash: "bad"}}
	nc.Versions[envoy.Routes] = "bad-routes"
	if err := xs.SetEnvoy(map[string]*envoy.NodeConfig{"api.demo": &nc, "web.demo": good["web.demo"]}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for routeStatus().Nacks == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no NACK: %+v", routeStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Not re-sent in a loop: gRPC-Go NACKs every time it gets it.
	time.Sleep(1500 * time.Millisecond)
	ts := routeStatus()
	if ts.Nacks != 1 || ts.NackedVersion != "bad-routes" || ts.AckedVersion != goodVersion || !strings.Contains(ts.LastError, "grpc-") {
		t.Errorf("after the NACK: %+v", ts)
	}
	if got := counter(t, reg, "bulkhead_xds_nacks_total", "RouteConfiguration"); got != 1 {
		t.Errorf("bulkhead_xds_nacks_total{type=RouteConfiguration} = %v, want 1", got)
	}
	// The last good configuration is still enforced.
	if got := web.list(ctx); got != codes.PermissionDenied {
		t.Errorf("List after the NACK: %v, want PermissionDenied", got)
	}
	if got := web.check(ctx); got != codes.OK {
		t.Errorf("Check after the NACK: %v, want OK", got)
	}

	// A good configuration is taken again.
	start := time.Now()
	if err := xs.SetEnvoy(compileMode("discover")); err != nil {
		t.Fatal(err)
	}
	within(t, "discover after the NACK: List", start, time.Second, func() codes.Code { return web.list(ctx) }, codes.OK)
	// The client applies the new routes before its ACK reaches the server:
	// wait for the ACK rather than expect it at once.
	deadline = time.Now().Add(10 * time.Second)
	for ts := routeStatus(); ts.AckedVersion == goodVersion; ts = routeStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("the good configuration was never ACKed: %+v", ts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ts := routeStatus(); ts.Nacks != 1 {
		t.Errorf("after the good configuration: %+v", ts)
	}
}

// counter reads a counter with one label value from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
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
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
