package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The HTTP/2 world: h2server (./internal/h2server) on api: a gRPC-Go
// server with the health service on grpcPort (declared "http2") and a Go
// h2c server on h2cPort, which the workloads file does not declare (the
// proxy recognises the HTTP/2 preface and the h2c upgrade). Clients run
// in web: a gRPC-Go client in this process (dialling from web's network
// namespace) and curl.
const (
	grpcPort = 50051
	h2cPort  = 8081
	// h2Lab is this test's lab number (prefix bhe2e74, 198.18.174.0/24).
	h2Lab = 74
)

const (
	methodCheck = "grpc.health.v1.Health/Check"
	methodWatch = "grpc.health.v1.Health/Watch"
	methodList  = "grpc.health.v1.Health/List"
)

// startH2Server returns a startFunc that runs h2server on h's address.
func startH2Server(bin string) startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		return h.Start(ctx, bin, "-grpc", fmt.Sprintf("%s:%d", h.Addr(), grpcPort), "-h2c", fmt.Sprintf("%s:%d", h.Addr(), h2cPort))
	}
}

// grpcConn connects a gRPC-Go client in web to api's gRPC port; every
// call of a test goes over this one connection.
func (e *serverEnv) grpcConn(t *testing.T) healthpb.HealthClient {
	t.Helper()
	web := e.Host(webHost)
	cc, err := grpc.NewClient("passthrough:///"+e.ServerAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return web.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// handlerRan reports whether h2server ran the handler named name.
func (e *serverEnv) handlerRan(name string) bool {
	return strings.Contains(string(e.ServerProc.Output()), "handler "+name+"\n")
}

// h2curl runs curl in web against the h2c port, the name apiName
// resolving to api, and returns its output, with "<<code>>" after each
// response, and its standard error.
func (e *serverEnv) h2curl(t *testing.T, ctx context.Context, args ...string) (string, string) {
	t.Helper()
	base := []string{"-sS", "-v", "-w", "<<%{http_code}>>\n", "--resolve", fmt.Sprintf("%s:%d:%s", apiName, h2cPort, e.Host(e.Server).Addr())}
	out, errOut, code, err := runClient(ctx, e.Host(webHost), "curl", append(base, args...)...)
	if err != nil || code != 0 {
		t.Fatalf("curl %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, errOut)
	}
	return out, errOut
}

func h2url(path string) string { return fmt.Sprintf("http://%s:%d%s", apiName, h2cPort, path) }

// watchFlip opens a Watch of the "flip" service, which changes every
// 100ms, and returns a function that fails the test unless the stream
// delivers n more messages within 5s.
func watchFlip(t *testing.T, ctx context.Context, cl healthpb.HealthClient) func(n int) {
	t.Helper()
	w, err := cl.Watch(ctx, &healthpb.HealthCheckRequest{Service: "flip"})
	if err != nil {
		t.Fatal(err)
	}
	return func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; i < n; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("Watch: %d of %d messages in 5s", i, n)
			}
			if _, err := w.Recv(); err != nil {
				t.Fatalf("Watch: %v after %d messages", err, i)
			}
		}
	}
}

// TestHTTP2: in discover mode a gRPC-Go client's Check and Watch calls
// become one learned grpc rule, and curl's HTTP/2 GET (prior knowledge,
// on a port recognised by its preface) an http rule. In protect, on one
// gRPC connection: the first call is the unlisted List (denied with
// PERMISSION_DENIED from bulkhead; its header fields were indexed by the
// client's encoder), then Checks reuse them (HPACK stays in step); a
// long-running Watch stream keeps receiving while another List is denied
// on the same connection; h2server never runs List. curl: the allowed
// path 200, /admin 403 with bulkhead's body, with prior knowledge and
// with the HTTP/1.1 upgrade (--http2), also on a stream after the upgrade.
// In monitor, List reaches the server and is reported as a violation.
func TestHTTP2(t *testing.T) {
	needTools(t, "curl")
	ctx := testCtx(t)
	e := newServerEnv(t, ctx, h2Lab, grpcPort, v1alpha1.ProtocolHTTP2, startH2Server(helperBin(t, "h2server")))

	cl := e.grpcConn(t)
	for range 2 {
		if _, err := cl.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("discover: Check: %v", err)
		}
	}
	wctx, wcancel := context.WithCancel(ctx)
	watchFlip(t, wctx, cl)(1)
	wcancel()
	if out, _ := e.h2curl(t, ctx, "--http2-prior-knowledge", h2url("/public/a")); out != "public /public/a 0\n<<200>>\n" {
		t.Fatalf("discover: curl: %q", out)
	}
	web := v1alpha1.Peer{Segment: webHost}
	want := []v1alpha1.Rule{
		{
			Name: fmt.Sprintf("from-web-http2-%d-grpc", grpcPort), Origin: v1alpha1.OriginLearned, Peers: []v1alpha1.Peer{web},
			Ports: []v1alpha1.PortProtocol{{Port: grpcPort, Protocol: v1alpha1.ProtocolHTTP2}},
			GRPC:  &v1alpha1.GRPCMatch{Methods: []string{methodCheck, methodWatch}},
		},
		{
			Name: fmt.Sprintf("from-web-http2-%d-get", h2cPort), Origin: v1alpha1.OriginLearned, Peers: []v1alpha1.Peer{web},
			Ports: []v1alpha1.PortProtocol{{Port: h2cPort, Protocol: v1alpha1.ProtocolHTTP2}},
			HTTP:  &v1alpha1.HTTPMatch{Methods: []string{"GET"}, Paths: []string{"/public/a"}, Hosts: []string{apiName}},
		},
	}
	var diff string
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		out, err := e.Client.Export(ctx, e.Namespace)
		if err != nil {
			return false, nil
		}
		ps, err := v1alpha1.UnmarshalYAML(out)
		if err != nil {
			return false, err
		}
		var got []v1alpha1.Rule
		for _, p := range ps {
			if p.Name == e.Server {
				got = p.Spec.Ingress
			}
		}
		for i := range got {
			got[i].LearnedFrom = nil // when and from which flow: not compared
			for j := range got[i].Peers {
				got[i].Peers[j].Namespace = ""
			}
		}
		diff = cmp.Diff(want, got)
		return diff == "", nil
	})
	if err != nil {
		t.Fatalf("learned rules: %v (-want +got):\n%s", err, diff)
	}

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	cl = e.grpcConn(t)
	// The denied call comes first on the connection: the fields its block
	// adds to the server's HPACK table are referenced by the next calls.
	_, err = cl.List(ctx, &healthpb.HealthListRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "bulkhead: denied by policy") {
		t.Fatalf("protect: List: %v, want PermissionDenied from bulkhead", err)
	}
	for i := range 3 {
		if r, err := cl.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("protect: Check %d after the denied List: %v, %v", i, r, err)
		}
	}
	wctx, wcancel = context.WithCancel(ctx)
	defer wcancel()
	more := watchFlip(t, wctx, cl)
	more(2)
	if _, err := cl.List(ctx, &healthpb.HealthListRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("protect: List during the Watch: %v", err)
	}
	more(3) // the stream goes on after the denial on its connection
	wcancel()
	if e.handlerRan("/" + methodList) {
		t.Errorf("protect: h2server ran List")
	}
	webIP := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "List denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == webIP && r.Verb == "POST" && r.Resource == "/"+methodList && r.Verdict == "deny"
	})
	if v.Protocol != v1alpha1.ProtocolHTTP2 || v.DstPort != grpcPort || v.Reason != "l7_not_allowed" {
		t.Errorf("the List violation: %+v", v)
	}

	const denied = "bulkhead: request denied by policy (l7_not_allowed)\n"
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		proto string // of the last response, as curl -v shows it
	}{
		{"prior knowledge", []string{"--http2-prior-knowledge", h2url("/public/a")}, "public /public/a 0\n<<200>>\n", "HTTP/2 200"},
		{"prior knowledge, denied", []string{"--http2-prior-knowledge", h2url("/admin")}, denied + "<<403>>\n", "HTTP/2 403"},
		{"upgrade", []string{"--http2", h2url("/public/a")}, "public /public/a 0\n<<200>>\n", "HTTP/2 200"},
		{"upgrade, denied", []string{"--http2", h2url("/admin")}, denied + "<<403>>\n", "HTTP/1.1 403"},
		{"upgrade, then a denied stream", []string{"--http2", h2url("/public/a"), h2url("/%61dmin")}, "public /public/a 0\n<<200>>\n" + denied + "<<403>>\n", "HTTP/2 403"},
	} {
		out, verbose := e.h2curl(t, ctx, tc.args...)
		if out != tc.want {
			t.Errorf("protect: curl %s: %q, want %q\n%s", tc.name, out, tc.want, verbose)
		}
		if i := strings.LastIndex(verbose, "< HTTP/"); i < 0 || !strings.HasPrefix(verbose[i+2:], tc.proto) {
			t.Errorf("protect: curl %s: the last response is not %s:\n%s", tc.name, tc.proto, verbose)
		}
	}
	if e.handlerRan("GET /admin") {
		t.Errorf("protect: h2server served /admin")
	}

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	cl = e.grpcConn(t)
	if _, err := cl.List(ctx, &healthpb.HealthListRequest{}); err != nil {
		t.Fatalf("monitor: List: %v", err)
	}
	waitViolation(t, ctx, e.Env, "List in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == webIP && r.Resource == "/"+methodList && r.Verdict == "violation" && r.Mode == "monitor"
	})
	if !e.handlerRan("/" + methodList) {
		t.Errorf("monitor: h2server did not run List")
	}
	e.serverAlive(t)
}
