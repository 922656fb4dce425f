package run

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-io/bulkhead/controlplane/ca"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// TrustConfig configures the trust between the planes (docs/operations.md,
// "Trust"). The zero value serves mutual TLS with a CA created in the state
// folder and the bootstrap token of <state>/bootstrap-token.
type TrustConfig struct {
	// Insecure serves gRPC in plaintext without authentication: node ids
	// are self-declared and anyone who reaches the port can read every
	// policy and report flows (benchmarks, old setups). Logged as a warning.
	Insecure bool
	// CACert and CAKey, set together, are an operator's CA (PEM; e.g.
	// cert-manager's tls.crt/tls.key of a CA issuer) instead of the one in
	// the state folder.
	CACert, CAKey string
	// TrustDomain of the workload certificates' SPIFFE ids. Empty:
	// ca.DefaultTrustDomain.
	TrustDomain string
	// CertTTL is the lifetime of workload certificates. Zero: 24h.
	CertTTL time.Duration
	// ServingTTL is the lifetime of the control plane's own certificate
	// (renewed at two thirds). Zero: 30 days.
	ServingTTL time.Duration
	// ServerNames are added to the serving certificate's names (DNS names
	// or IP addresses), beside the gRPC listening address (every local
	// address and "localhost" when it listens on all of them).
	ServerNames []string
	// TokensFile maps bootstrap tokens to the node ids they may obtain
	// certificates for (ca.TokensFile); empty: the one token of
	// <state>/bootstrap-token, created when absent, allows any node.
	TokensFile string
	// Authenticator, when set, checks Issue credentials instead of the
	// tokens. Nil in kube mode (Config.Kube): ca.TokenReview — the pod's
	// projected service-account token (audience "bulkhead") checked with
	// TokenReview, bound to the node of the pod's bulkhead.io/node
	// annotation within the pod's namespace.
	Authenticator ca.Authenticator
}

// nodeAuthorizer is the Authorizer of the xds, flows and als packages.
type nodeAuthorizer interface {
	NodeOf(ctx context.Context) (string, error)
}

// trust is what the gRPC server needs from TrustConfig.
type trust struct {
	ca    *ca.CA // nil in plaintext mode
	issue *ca.Server
	opts  []grpc.ServerOption
	auth  nodeAuthorizer // nil in plaintext mode
}

// newTrust opens (or creates) the CA, the serving certificate for the
// gRPC address and the Issue server.
func newTrust(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*trust, error) {
	tc := cfg.Trust
	if tc.Insecure {
		log.Warn("gRPC serves plaintext without authentication: node ids are self-declared, anyone reaching the port can read policies and report flows (--insecure)")
		return &trust{}, nil
	}
	c, err := ca.Open(ca.Options{Dir: cfg.StateDir, CertFile: tc.CACert, KeyFile: tc.CAKey, TrustDomain: tc.TrustDomain, TTL: tc.CertTTL}, log.With("component", "ca"))
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	addr := cfg.GRPCAddr
	if cfg.GRPCListener != nil {
		addr = cfg.GRPCListener.Addr().String()
	}
	names, ips, err := ca.ListenNames(addr, tc.ServerNames)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	srv, err := c.Serving(names, ips, tc.ServingTTL)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	auth := tc.Authenticator
	if auth == nil && cfg.Kube != nil && cfg.Kube.Rest != nil {
		// In a cluster: the pod's projected service-account token, checked
		// with TokenReview and bound to the pod's node id.
		cs, err := kubernetes.NewForConfig(cfg.Kube.Rest)
		if err != nil {
			return nil, fmt.Errorf("run: kubernetes client: %w", err)
		}
		auth = ca.NewTokenReview(cs, ca.Audience, nil)
	}
	if auth == nil {
		tokens, err := ca.LoadTokens(cfg.StateDir, tc.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		auth = tokens
	}
	log.Info("gRPC serves mutual TLS", "ca", c.TrustDomain(), "certTTL", c.TTL(), "names", names, "ips", ips)
	return &trust{
		ca:    c,
		issue: ca.NewServer(c, auth, log, ca.ServerOptions{Registerer: reg}),
		opts: []grpc.ServerOption{
			grpc.Creds(credentials.NewTLS(c.ServerTLS(srv))),
			grpc.ChainUnaryInterceptor(ca.UnaryInterceptor),
			grpc.ChainStreamInterceptor(ca.StreamInterceptor),
		},
		auth: ca.Authorizer{},
	}, nil
}

// register serves Issue on gs (TLS mode only).
func (t *trust) register(gs *grpc.Server) {
	if t.issue != nil {
		t.issue.Register(gs)
	}
}

// endpoints is the flows server's Endpoints in TLS mode (nil in plaintext
// mode: flows are not checked against their reporter).
func (t *trust) endpoints(c *compiler) flows.Endpoints {
	if t.ca == nil {
		return nil
	}
	return &endpoints{c: c}
}

// endpoints answers from the latest good compilation.
type endpoints struct {
	c   *compiler
	idx atomic.Pointer[endpointIndex]
}

type endpointIndex struct {
	out   *compile.Output
	nodes map[string]nodeEndpoint // by node id
	ips   map[netip.Addr]string   // address → segment key
}

type nodeEndpoint struct {
	segment string
	ips     []netip.Addr
}

var _ flows.Endpoints = (*endpoints)(nil)

func (e *endpoints) index() *endpointIndex {
	out := e.c.latest.Load()
	if ix := e.idx.Load(); ix != nil && ix.out == out {
		return ix
	}
	ix := &endpointIndex{out: out, nodes: map[string]nodeEndpoint{}, ips: map[netip.Addr]string{}}
	if out != nil {
		for _, id := range out.Identities {
			ne := nodeEndpoint{segment: id.GetSegment()}
			for _, s := range id.GetIps() {
				if ip, err := netip.ParseAddr(s); err == nil {
					ne.ips = append(ne.ips, ip.Unmap())
					ix.ips[ip.Unmap()] = id.GetSegment()
				}
			}
			ix.nodes[id.GetWorkload()+"."+id.GetNamespace()] = ne
		}
	}
	e.idx.Store(ix)
	return ix
}

// Node is the segment key and the addresses of node's workload.
func (e *endpoints) Node(node string) (string, []netip.Addr, bool) {
	ne, ok := e.index().nodes[node]
	return ne.segment, ne.ips, ok
}

// Segment is the segment key of the workload owning ip.
func (e *endpoints) Segment(ip netip.Addr) string { return e.index().ips[ip] }
