package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/ca"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
	"github.com/bulkhead-io/bulkhead/test/demo"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// Lab numbers of the trust tests (prefix bhe2e<n>, 198.18.(100+n).0/24).
const (
	labTrust    = 90
	labRotation = 91
)

// grpcFrom connects to the Env's control plane from host h over TLS
// (trusting its ca.crt), presenting cert when not nil.
func grpcFrom(t *testing.T, e *demo.Env, h *lab.Host, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	bundle, err := os.ReadFile(filepath.Join(e.StateDir, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	cfg := &tls.Config{RootCAs: roots, ServerName: e.GRPCAddr.Addr().String(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient("passthrough:///"+e.GRPCAddr.String(),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return h.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// issueFrom asks for node's certificate from host h with token.
func issueFrom(t *testing.T, ctx context.Context, e *demo.Env, h *lab.Host, node, token string) (*tls.Certificate, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := bulkheadv1.NewCertificateServiceClient(grpcFrom(t, e, h, nil)).Issue(ctx, &bulkheadv1.IssueRequest{Node: node, Csr: csr, Token: token})
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(resp.GetCertificateChain())
	if b == nil {
		t.Fatal("no certificate in the answer")
	}
	return &tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}, nil
}

// TestTrust runs the real binaries with mutual TLS (the default; the proxy
// got its certificate with the bootstrap token and its policy over TLS):
// from the intruder's host, a client without a certificate reads no
// policy; a wrong token obtains no certificate; with a certificate of its
// own node it can read neither redis's policy nor ask as redis; and a
// flow it reports between cart and redis is refused and not learned.
func TestTrust(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, labTrust)
	intruder := e.Host("intruder")
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	ads := func(conn *grpc.ClientConn, node string, names ...string) (*discoverygrpc.DiscoveryResponse, error) {
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(rctx)
		if err != nil {
			return nil, err
		}
		_ = s.Send(&discoverygrpc.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: xds.TypeProxyPolicy, ResourceNames: names})
		return s.Recv()
	}
	resp, err := ads(grpcFrom(t, e, intruder, nil), e.Node(), e.Node())
	if status.Code(err) != codes.Unauthenticated || len(resp.GetResources()) > 0 {
		t.Errorf("ADS without a certificate: %v, %d resources; want Unauthenticated and nothing", err, len(resp.GetResources()))
	}
	if _, err := issueFrom(t, rctx, e, intruder, e.Node(), "guessed-token-0123456789"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a certificate with a guessed token: %v, want PermissionDenied", err)
	}

	// A compromised intruder holds a certificate of its own node.
	token, err := os.ReadFile(filepath.Join(e.StateDir, ca.BootstrapTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := issueFrom(t, rctx, e, intruder, "intruder.demo", strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	conn := grpcFrom(t, e, intruder, cert)
	resp, err = ads(conn, e.Node(), e.Node())
	if status.Code(err) != codes.PermissionDenied || len(resp.GetResources()) > 0 {
		t.Errorf("ADS as %s with intruder's certificate: %v; want PermissionDenied and nothing", e.Node(), err)
	}
	resp, err = ads(conn, "intruder.demo", e.Node())
	if status.Code(err) != codes.PermissionDenied || len(resp.GetResources()) > 0 {
		t.Errorf("subscribing to %s's policy: %v; want PermissionDenied and nothing", e.Node(), err)
	}

	// A forged discover-mode flow cart → redis FLUSHALL, reported by the
	// intruder, would teach redis to allow FLUSHALL from cart.
	now := timestamppb.Now()
	fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(rctx)
	if err != nil {
		t.Fatal(err)
	}
	cartIP, redisIP := e.Host("cart").Addr().String(), e.Host(e.Server).Addr().String()
	if err := fs.Send(&bulkheadv1.FlowBatch{Node: "intruder.demo", Flows: []*bulkheadv1.Flow{{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     cartIP, SrcSegment: "demo/cart", DstIp: redisIP, DstSegment: "demo/redis", DstPort: demo.RedisPort,
		Protocol: "redis", Verb: "FLUSHALL", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER,
		Reason: "no_rule", Count: 1, FirstSeen: now, LastSeen: now,
	}}}); err != nil {
		t.Fatal(err)
	}
	sum, err := fs.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetAccepted() != 0 || sum.GetRejected() != 1 {
		t.Errorf("forged report: %v, want it refused", sum)
	}
	// Several report intervals: nothing about FLUSHALL may be learned.
	time.Sleep(1 * time.Second)
	out, err := e.CLI(ctx, "policy", "export")
	if err != nil {
		t.Fatalf("policy export: %v: %s", err, out)
	}
	if strings.Contains(strings.ToLower(out), "flushall") {
		t.Errorf("the forged flow was learned:\n%s", out)
	}
	if log := string(e.ControlPlane.Output()); !strings.Contains(log, "flows refused") || !strings.Contains(log, "not_endpoint") {
		t.Errorf("the refusal was not logged; control plane log:\n%s", e.ControlPlane.Tail(20))
	}
}

// TestCertificateRotation runs the real binaries with 3-second workload
// certificates: while a client in cart keeps one connection to redis open
// through the proxy and sends requests continuously for 8 seconds, the
// proxy renews its certificate several times (new serials in the control
// plane's log), its ADS stream stays up (the control plane logs one
// connect), no request fails and the connection is never dropped.
func TestCertificateRotation(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e, err := demo.Start(ctx, demo.Config{
		BinDir:           binDir(t),
		Prefix:           labPrefix(labRotation),
		Subnet:           labSubnet(labRotation),
		Hosts:            []string{"cart", "redis", "intruder"},
		ReportInterval:   200 * time.Millisecond,
		Log:              testLog(t),
		Keep:             keep,
		ControlPlaneArgs: []string{"--cert-ttl", "3s"},
	})
	if err != nil {
		t.Fatalf("start the environment: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpProcs(t, map[string]*lab.Proc{"bulkhead-controlplane": e.ControlPlane, "bulkhead-proxy": e.Proxy, "redis-server": e.Redis})
		}
		if err := e.Close(); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	c := dialRaw(t, ctx, e.Host("cart"), e.ServerAddr())
	sent, failed := 0, 0
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		_ = c.c.SetDeadline(time.Now().Add(ioTimeout))
		sent++
		rep, err := c.do("PING")
		if err != nil {
			t.Fatalf("request %d: the connection dropped: %v", sent, err)
		}
		if rep != "+PONG\r\n" {
			failed++
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, sent)
	}
	log := string(e.ControlPlane.Output())
	serials := map[string]bool{}
	for _, m := range regexp.MustCompile(`msg="certificate issued" component=ca node=`+regexp.QuoteMeta(e.Node())+` serial=([0-9a-f]+)`).FindAllStringSubmatch(log, -1) {
		serials[m[1]] = true
	}
	if len(serials) < 4 {
		t.Errorf("the control plane issued %d serials to %s, want at least 4 in 8s of 3s certificates", len(serials), e.Node())
	}
	if n := strings.Count(log, `msg="xds node connected" component=xds node=`+e.Node()+" "); n != 1 {
		t.Errorf("%s connected %d times, want once (the ADS stream survives renewals)", e.Node(), n)
	}
	t.Logf("%d requests on one connection; %d certificates issued", sent, len(serials))
}
