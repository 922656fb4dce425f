package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/ca"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

// tlsControlPlane is the control plane's own trust parts — its CA, the
// Issue server, the xDS and flow servers bound to certificates — on a
// mutual-TLS gRPC server, recording the ADS streams opened and the client
// certificate serial of every stream.
type tlsControlPlane struct {
	addr, dir string
	issue     *ca.Server
	xds       *xds.Server

	mu        sync.Mutex
	adsOpened int
	serials   []string // of every stream, in order
}

func startTLSControlPlane(t *testing.T, ttl time.Duration, pol *bulkheadv1.ProxyPolicy, ids ...*bulkheadv1.Identity) *tlsControlPlane {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := ca.Open(ca.Options{Dir: dir, TTL: ttl}, log)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := ca.LoadTokens(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	names, ips, err := ca.ListenNames(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := c.Serving(names, ips, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp := &tlsControlPlane{addr: ln.Addr().String(), dir: dir}
	cp.issue = ca.NewServer(c, tokens, log, ca.ServerOptions{})
	cp.xds = xds.New(log, xds.Options{Authorizer: ca.Authorizer{}})
	idMap := map[string]*bulkheadv1.Identity{}
	for _, id := range ids {
		idMap[id.GetNamespace()+"/"+id.GetWorkload()] = id
	}
	if err := cp.xds.SetIdentities(idMap); err != nil {
		t.Fatal(err)
	}
	if err := cp.xds.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{node: pol}); err != nil {
		t.Fatal(err)
	}
	flowSrv := flows.NewServer(flows.NewRecorder(flows.Options{}), nil, nil, log, flows.ServerOptions{Authorizer: ca.Authorizer{}})
	record := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		cp.mu.Lock()
		if strings.HasSuffix(info.FullMethod, "AggregatedResources") {
			cp.adsOpened++
		}
		if p, ok := peer.FromContext(ss.Context()); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				cp.serials = append(cp.serials, strings.ToLower(ti.State.PeerCertificates[0].SerialNumber.Text(16)))
			}
		}
		cp.mu.Unlock()
		return handler(srv, ss)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(c.ServerTLS(serving))),
		grpc.ChainUnaryInterceptor(ca.UnaryInterceptor),
		grpc.ChainStreamInterceptor(ca.StreamInterceptor, record))
	cp.issue.Register(gs)
	cp.xds.Register(gs)
	flowSrv.Register(gs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = cp.xds.Start(ctx) }()
	go func() { defer wg.Done(); _ = flowSrv.Start(ctx) }()
	go func() { defer wg.Done(); _ = gs.Serve(ln) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		wg.Wait()
	})
	return cp
}

func (cp *tlsControlPlane) trust() Trust {
	return Trust{CAFile: filepath.Join(cp.dir, ca.CertFile), TokenFile: filepath.Join(cp.dir, ca.BootstrapTokenFile)}
}

func (cp *tlsControlPlane) state() (adsOpened int, serials []string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.adsOpened, append([]string(nil), cp.serials...)
}

func tlsConfig(t *testing.T, cp *tlsControlPlane, redis netip.AddrPort) Config {
	t.Helper()
	return Config{
		Node:           node,
		XDSAddr:        cp.addr,
		InboundAddr:    "127.0.0.1:" + strconv.Itoa(freePort(t)),
		AdminAddr:      "127.0.0.1:" + strconv.Itoa(freePort(t)),
		CacheDir:       "-",
		ReportInterval: 50 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OriginalDst:    func(*net.TCPConn) (netip.AddrPort, error) { return redis, nil },
		Trust:          cp.trust(),
	}
}

// TestCertificateRotation: with 3-second certificates the proxy renews
// several times while a client keeps one connection open through it and
// sends requests continuously, and while its ADS stream stays up: no
// request fails, the connection is never dropped, one ADS stream is
// opened, and the control plane issued a new serial at each renewal.
func TestCertificateRotation(t *testing.T) {
	redis := startRedis(t)
	cp := startTLSControlPlane(t, 3*time.Second, protectPolicy(redis.Port()), cart)
	r := start(t, tlsConfig(t, cp, redis))
	// No cache: a policy can only come over mutual TLS.
	waitFor(t, "the policy over mutual TLS", func() bool {
		code, _ := r.get("/readyz")
		return code == 200
	})

	c, err := net.DialTimeout("tcp", r.cfg.InboundAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	serials := map[string]bool{}
	var sent, failed int
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		sent++
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatalf("request %d: the connection dropped: %v", sent, err)
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("request %d: the connection dropped: %v", sent, err)
		}
		if line != "+PONG\r\n" {
			failed++
		}
		for _, is := range cp.issue.Issued() {
			serials[is.Serial] = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, sent)
	}
	if len(serials) < 4 {
		t.Errorf("the control plane issued %d serials in 8s of 3s certificates, want at least 4 (renewal at two thirds)", len(serials))
	}
	opened, _ := cp.state()
	if opened != 1 {
		t.Errorf("%d ADS streams opened, want 1 (the stream survives renewals)", opened)
	}
	var ns xds.NodeStatus
	for _, n := range cp.xds.Nodes() {
		if n.Node == node {
			ns = n
		}
	}
	if !ns.Connected || ns.Streams != 1 {
		t.Errorf("control plane's view of %s: %+v, want connected with one stream", node, ns)
	}
	// The stream's certificate is the one its connection was made with.
	if !serials[ns.CertSerial] || ns.CertNotAfter.IsZero() {
		t.Errorf("Nodes() shows certificate %q (until %v), want one of the issued %v", ns.CertSerial, ns.CertNotAfter, serials)
	}
	t.Logf("%d requests on one connection, %d certificates issued, %d ADS stream", sent, len(serials), opened)
}

// TestNewHandshakesUseRenewedCertificate: after a renewal, a new
// connection presents the new certificate (the one GetClientCertificate
// hands out), which the control plane sees by its serial.
func TestNewHandshakesUseRenewedCertificate(t *testing.T) {
	cp := startTLSControlPlane(t, 2*time.Second, protectPolicy(6379), cart)
	cfg := tlsConfig(t, cp, netip.AddrPort{}).withDefaults()
	creds, certs, err := transport(cfg, cfg.XDSAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- certs.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := certs.wait(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		want := strings.ToLower(certs.cur.Load().Leaf.SerialNumber.Text(16))
		conn, err := grpc.NewClient(cfg.XDSAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		s, err := bulkheadv1.NewFlowServiceClient(conn).Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&bulkheadv1.FlowBatch{Node: node}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CloseAndRecv(); err != nil {
			t.Fatalf("report with certificate %s: %v", want, err)
		}
		conn.Close()
		_, serials := cp.state()
		if got := serials[len(serials)-1]; got != want {
			t.Errorf("handshake %d presented %s, want the current %s", i, got, want)
		}
		seen[want] = true
		waitFor(t, "a renewal", func() bool {
			c := certs.cur.Load()
			return strings.ToLower(c.Leaf.SerialNumber.Text(16)) != want
		})
	}
	if len(seen) != 3 {
		t.Errorf("%d distinct certificates presented, want 3", len(seen))
	}
}

// TestTrustRequiresFiles: without --ca-file/--token-file (and without
// --insecure) the proxy refuses to start; a missing token file is retried
// while the proxy runs (the token may be mounted late), and the cached
// policy is enforced meanwhile (agent_test's cache tests).
func TestTrustRequiresFiles(t *testing.T) {
	cfg := Config{Node: node, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
	if _, _, err := transport(cfg, cfg.XDSAddr, nil); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("no trust flags: %v", err)
	}
	cfg.Trust = Trust{CAFile: filepath.Join(t.TempDir(), "nope.crt"), TokenFile: "x"}
	if _, _, err := transport(cfg, cfg.XDSAddr, nil); err == nil {
		t.Error("a missing CA file was accepted")
	}
}

// TestCachedPolicyWhenIssuanceFails: a proxy whose certificate request is
// refused (a wrong token) still restores and enforces its cached policy,
// keeps retrying, and never opens an ADS stream without a certificate.
func TestCachedPolicyWhenIssuanceFails(t *testing.T) {
	redis := startRedis(t)
	cp := startTLSControlPlane(t, time.Hour, protectPolicy(redis.Port()), cart)
	cacheDir := t.TempDir()
	cfg := tlsConfig(t, cp, redis)
	cfg.CacheDir = cacheDir
	a := start(t, cfg)
	waitFor(t, "the identities over mutual TLS", func() bool {
		_, body, _ := a.fetch("/debug/policy")
		return strings.Contains(body, `"identities": 1`)
	})
	a.stop()
	opened, _ := cp.state()

	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("not-the-bootstrap-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = tlsConfig(t, cp, redis)
	cfg.CacheDir, cfg.Trust.TokenFile = cacheDir, bad
	b := start(t, cfg)
	if code, _ := b.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a cached policy and no certificate: %d", code)
	}
	if got, err := b.redis(t, "FLUSHALL"); err != nil || !strings.HasPrefix(got, "-ERR bulkhead:") {
		t.Errorf("FLUSHALL from the cache: %q, %v", got, err)
	}
	if got, err := b.redis(t, "PING"); err != nil || got != "+PONG" {
		t.Errorf("PING from the cache: %q, %v", got, err)
	}
	time.Sleep(time.Second) // several retries
	if now, _ := cp.state(); now != opened {
		t.Errorf("ADS streams opened without a certificate: %d, want %d", now, opened)
	}
	for _, is := range cp.issue.Issued() {
		if is.Count != 1 {
			t.Errorf("issued %d certificates to %s, want only the first run's", is.Count, is.Node)
		}
	}
}

// TestWriteCertificates: the folder holds a matching certificate and key
// (0600) and the CA bundle, replaced at each renewal.
func TestWriteCertificates(t *testing.T) {
	cp := startTLSControlPlane(t, 2*time.Second, protectPolicy(6379), cart)
	dir := filepath.Join(t.TempDir(), "certs")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WriteCertificates(ctx, CertConfig{Node: node, XDSAddr: cp.addr, Trust: cp.trust(), Dir: dir,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	serial := func() string {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName))
		if err != nil {
			return ""
		}
		return pair.Leaf.SerialNumber.String()
	}
	var first string
	waitFor(t, "the first certificate", func() bool { first = serial(); return first != "" })
	if fi, err := os.Stat(filepath.Join(dir, KeyFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, CAFileName)); err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Errorf("ca.crt: %v %q", err, b)
	}
	waitFor(t, "a renewed certificate", func() bool { s := serial(); return s != "" && s != first })
	if err := WriteCertificates(ctx, CertConfig{Node: node, Dir: dir, Trust: Trust{Insecure: true}}); err == nil {
		t.Error("certificates in plaintext mode were accepted")
	}
}
