package run

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
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
)

const trustWorkloads = workloads + `- name: web
  namespace: demo
  ips: [198.18.0.30]
`

// tlsEnv is a control plane serving mutual TLS, and what a client needs to
// talk to it.
type tlsEnv struct {
	grpcAddr, admin, state string
	roots                  *x509.CertPool
}

func startTLS(t *testing.T, tokens string) *tlsEnv {
	t.Helper()
	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(trustWorkloads), 0o644); err != nil {
		t.Fatal(err)
	}
	tfile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tfile, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			StateDir: state, WorkloadsFile: wfile,
			AdminAuth:    AdminAuthConfig{TokenFile: testTokenFile(t)},
			Trust:        TrustConfig{TokensFile: tfile},
			GRPCListener: listen(t), AdminListener: listen(t),
			Ready: func(a Addrs) { ready <- a },
		}, testLog(t))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	bundle, err := os.ReadFile(filepath.Join(state, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("ca.crt holds no certificate")
	}
	return &tlsEnv{grpcAddr: addrs.GRPC.String(), admin: "http://" + addrs.Admin.String(), state: state, roots: roots}
}

// dial connects over TLS, presenting cert when not nil.
func (e *tlsEnv) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// issue asks for node's certificate with token, without a client
// certificate, as a proxy does.
func (e *tlsEnv) issue(t *testing.T, node, token string) (*tls.Certificate, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := bulkheadv1.NewCertificateServiceClient(e.dial(t, nil)).Issue(ctx, &bulkheadv1.IssueRequest{Node: node, Csr: csr, Token: token})
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(resp.GetCertificateChain())
	if b == nil {
		t.Fatal("no certificate in the answer")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key, Leaf: leaf}, nil
}

// sotw opens an ADS stream, sends one ProxyPolicy request as node for
// names, and returns the first response or the stream's error.
func sotw(t *testing.T, conn *grpc.ClientConn, node string, names ...string) (*discoverygrpc.DiscoveryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	// A Send the server already refused fails with io.EOF; Recv carries
	// the status.
	_ = s.Send(&discoverygrpc.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: xds.TypeProxyPolicy, ResourceNames: names})
	return s.Recv()
}

// delta is sotw on a delta stream.
func delta(t *testing.T, conn *grpc.ClientConn, node string, names ...string) (*discoverygrpc.DeltaDiscoveryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	_ = s.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: xds.TypeProxyPolicy, ResourceNamesSubscribe: names})
	return s.Recv()
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %v", what, err, code)
	}
}

// TestTrust: on the mutual-TLS gRPC port a client without a certificate
// reads no policy and reports no flow; a token for one node cannot obtain
// another's certificate; a node's certificate reads only its own policy
// under its own node id; and a proxy reporting a flow between two other
// workloads (or naming another segment) is refused: the flow is not
// learned, while its own flow is.
func TestTrust(t *testing.T) {
	const tokRedis, tokCart = "redis-token-0123456789", "cart-token-0123456789"
	e := startTLS(t, "tokens:\n- token: "+tokRedis+"\n  nodes: [redis.demo]\n- token: "+tokCart+"\n  nodes: [cart.demo]\n")

	t.Run("no certificate", func(t *testing.T) {
		conn := e.dial(t, nil)
		resp, err := sotw(t, conn, "redis.demo", "redis.demo")
		wantCode(t, "SotW ADS", err, codes.Unauthenticated)
		if len(resp.GetResources()) != 0 {
			t.Errorf("got resources without a certificate: %v", resp)
		}
		_, err = delta(t, conn, "redis.demo", "redis.demo")
		wantCode(t, "delta ADS", err, codes.Unauthenticated)
		fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(context.Background())
		if err == nil {
			_ = fs.Send(&bulkheadv1.FlowBatch{Node: "redis.demo"})
			_, err = fs.CloseAndRecv()
		}
		wantCode(t, "flow report", err, codes.Unauthenticated)
	})

	t.Run("tokens", func(t *testing.T) {
		_, err := e.issue(t, "cart.demo", tokRedis)
		wantCode(t, "cart's certificate with redis's token", err, codes.PermissionDenied)
		_, err = e.issue(t, "redis.demo", "no-such-token-0123456789")
		wantCode(t, "an unknown token", err, codes.PermissionDenied)
		if _, err := os.Stat(filepath.Join(e.state, ca.BootstrapTokenFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a bootstrap token was created beside a tokens file: %v", err)
		}
	})

	redis, err := e.issue(t, "redis.demo", tokRedis)
	if err != nil {
		t.Fatal(err)
	}
	if node, err := ca.IdentityOf(redis.Leaf); err != nil || node != "redis.demo" {
		t.Fatalf("issued certificate names %q, %v", node, err)
	}
	conn := e.dial(t, redis)

	t.Run("own policy", func(t *testing.T) {
		resp, err := sotw(t, conn, "redis.demo", "redis.demo")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) != 1 {
			t.Fatalf("got %d resources, want redis.demo's policy", len(resp.GetResources()))
		}
		p := new(bulkheadv1.ProxyPolicy)
		if err := resp.GetResources()[0].UnmarshalTo(p); err != nil || p.GetSegment() != "redis" {
			t.Fatalf("policy %v, %v", p, err)
		}
	})
	t.Run("another node id", func(t *testing.T) {
		resp, err := sotw(t, conn, "cart.demo", "cart.demo")
		wantCode(t, "SotW as cart.demo", err, codes.PermissionDenied)
		if len(resp.GetResources()) != 0 {
			t.Errorf("got resources: %v", resp)
		}
		_, err = delta(t, conn, "cart.demo", "cart.demo")
		wantCode(t, "delta as cart.demo", err, codes.PermissionDenied)
	})
	t.Run("another node's policy", func(t *testing.T) {
		resp, err := sotw(t, conn, "redis.demo", "redis.demo", "cart.demo")
		wantCode(t, "SotW subscribing to cart.demo", err, codes.PermissionDenied)
		if len(resp.GetResources()) != 0 {
			t.Errorf("got resources: %v", resp)
		}
		_, err = delta(t, conn, "redis.demo", "cart.demo")
		wantCode(t, "delta subscribing to cart.demo", err, codes.PermissionDenied)
	})

	t.Run("forged flows", func(t *testing.T) {
		now := timestamppb.Now()
		flow := func(src, srcSeg, dst, dstSeg string) *bulkheadv1.Flow {
			return &bulkheadv1.Flow{
				Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
				SrcIp:     src, SrcSegment: srcSeg, DstIp: dst, DstSegment: dstSeg, DstPort: 6379,
				Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER,
				Reason: "no_rule", Count: 1, FirstSeen: now, LastSeen: now,
			}
		}
		fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.Send(&bulkheadv1.FlowBatch{Node: "redis.demo", Flows: []*bulkheadv1.Flow{
			flow("198.18.0.30", "demo/web", "198.18.0.10", "demo/cart"),   // web → cart: not redis's flow
			flow("198.18.0.30", "demo/web", "198.18.0.20", "demo/cart"),   // to redis's IP, but naming cart
			flow("198.18.0.30", "demo/cart", "198.18.0.20", "demo/redis"), // web's address named cart
			flow("198.18.0.10", "demo/cart", "198.18.0.20", "demo/redis"), // cart → redis: redis's own
		}}); err != nil {
			t.Fatal(err)
		}
		sum, err := fs.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if sum.GetAccepted() != 1 || sum.GetRejected() != 3 {
			t.Errorf("summary %v, want 1 accepted and 3 refused", sum)
		}
		learned := filepath.Join(e.state, "policies", "demo", "redis.yaml")
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, err := os.ReadFile(learned)
			if err == nil && strings.Contains(string(b), "from-cart-redis-6379") {
				if strings.Contains(string(b), "web") {
					t.Errorf("redis learned from a refused flow:\n%s", b)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis's own flow was not learned: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(filepath.Join(e.state, "policies", "demo", "cart.yaml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cart learned from redis's report: %v", err)
		}
		code, body := httpDo(t, "GET", e.admin+"/metrics", "")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		for _, want := range []string{
			`bulkhead_flows_refused_total{reason="not_endpoint"} 1`,
			`bulkhead_flows_refused_total{reason="segment"} 2`,
			`bulkhead_xds_refused_total{reason="node_mismatch"} 2`,
			`bulkhead_xds_refused_total{reason="foreign_resource"} 2`,
			`bulkhead_ca_issue_requests_total{result="denied"} 2`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s in:\n%s", want, grepLines(string(body), "refused_total"))
			}
		}

		// A batch under another node id ends the stream.
		fs, err = bulkheadv1.NewFlowServiceClient(conn).Report(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = fs.Send(&bulkheadv1.FlowBatch{Node: "cart.demo", Flows: []*bulkheadv1.Flow{flow("198.18.0.30", "demo/web", "198.18.0.10", "demo/cart")}})
		_, err = fs.CloseAndRecv()
		wantCode(t, "a batch as cart.demo", err, codes.PermissionDenied)
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
