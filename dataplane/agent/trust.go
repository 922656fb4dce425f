package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Trust is how the proxy and the control plane authenticate each other
// (docs/operations.md, "Trust"). The default is mutual TLS: the proxy makes
// its own key, obtains a short-lived certificate for its node id from the
// control plane's CertificateService (sending a CSR and the token of
// TokenFile), and renews it at two thirds of its lifetime; the control
// plane's certificate is verified against CAFile.
type Trust struct {
	// Insecure speaks plaintext to the control plane, without a
	// certificate (benchmarks, control planes started with --insecure).
	Insecure bool
	// CAFile is the PEM bundle the control plane's certificate must chain
	// to (its <state>/ca.crt, or the CA an operator gave it). Required
	// unless Insecure.
	CAFile string
	// TokenFile holds the credential sent with each certificate request: a
	// bootstrap token, or the pod's projected service-account token
	// (audience "bulkhead"). Read at each request, so a rotated token is
	// picked up. Required unless Insecure.
	TokenFile string
	// ServerName is the name checked in the control plane's certificate.
	// Empty: the host of Config.XDSAddr.
	ServerName string
}

// Retry bounds of certificate requests.
const (
	certRetryMin = 200 * time.Millisecond
	certRetryMax = 30 * time.Second
	// maxTokenFile bounds the token file read.
	maxTokenFile = 16 << 10
)

// transport is the control plane connection's credentials; certs is nil in
// plaintext mode.
func transport(cfg Config, target string, dialOpts []grpc.DialOption) (credentials.TransportCredentials, *certSource, error) {
	t := cfg.Trust
	if t.Insecure {
		cfg.Logger.Warn("talking to the control plane in plaintext without a certificate (--insecure): anyone on the path can read policies and forge them")
		return insecure.NewCredentials(), nil, nil
	}
	if t.CAFile == "" || t.TokenFile == "" {
		return nil, nil, errors.New("agent: mutual TLS needs a CA file and a token file (--ca-file, --token-file), or --insecure")
	}
	pemData, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, nil, fmt.Errorf("agent: CA file %s: no PEM certificate", t.CAFile)
	}
	name := t.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(cfg.XDSAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: control plane address %q: %w", cfg.XDSAddr, err)
		}
		name = host
	}
	s := &certSource{
		node: cfg.Node, target: target, dialOpts: dialOpts, tokenFile: t.TokenFile,
		log:   cfg.Logger.With("component", "certificate"),
		base:  tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: name},
		ready: make(chan struct{}),
		now:   time.Now,
	}
	tc := s.base.Clone()
	tc.GetClientCertificate = s.getClientCertificate
	return credentials.NewTLS(tc), s, nil
}

// certSource keeps the proxy's current certificate: Start obtains one and
// renews it at two thirds of its lifetime; every new TLS handshake of the
// control plane connection presents the current one (open connections and
// their streams keep going).
type certSource struct {
	node, target, tokenFile string
	dialOpts                []grpc.DialOption
	log                     *slog.Logger
	base                    tls.Config // roots and server name, no client certificate
	now                     func() time.Time

	// onCert, when set, is called with each new certificate and the CA
	// bundle the control plane sent (WriteCertificates).
	onCert func(cert *tls.Certificate, bundle []byte) error

	cur       atomic.Pointer[tls.Certificate]
	ready     chan struct{} // closed once the first certificate is in
	readyOnce sync.Once
	renewals  atomic.Uint64
}

// getClientCertificate is tls.Config.GetClientCertificate: the current
// certificate (none before the first arrived).
func (s *certSource) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := s.cur.Load(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// wait blocks until the first certificate arrived or ctx is done.
func (s *certSource) wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start obtains the certificate (retrying with backoff) and renews it at
// two thirds of its lifetime until ctx is done; it returns nil then.
func (s *certSource) Start(ctx context.Context) error {
	retry := certRetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		cert, bundle, err := s.obtain(ctx)
		if err == nil && s.onCert != nil {
			err = s.onCert(cert, bundle)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("certificate request failed; retrying", "node", s.node, "in", retry, "error", err)
			timer.Reset(retry)
			retry = min(retry*2, certRetryMax)
			continue
		}
		retry = certRetryMin
		s.cur.Store(cert)
		n := s.renewals.Add(1)
		s.readyOnce.Do(func() { close(s.ready) })
		now := s.now()
		renew := cert.Leaf.NotAfter.Sub(now) * 2 / 3
		s.log.Info("certificate obtained", "node", s.node, "serial", serialHex(cert.Leaf.SerialNumber),
			"notAfter", cert.Leaf.NotAfter, "renewIn", renew.Round(time.Millisecond), "count", n)
		timer.Reset(max(renew, certRetryMin))
	}
}

// obtain makes a key and a CSR and asks the control plane for a
// certificate over TLS without a client certificate.
func (s *certSource) obtain(ctx context.Context) (*tls.Certificate, []byte, error) {
	cert, resp, err := s.request(ctx)
	if err != nil {
		return nil, nil, err
	}
	return cert, resp.GetCaBundle(), nil
}

func (s *certSource) request(ctx context.Context) (*tls.Certificate, *bulkheadv1.IssueResponse, error) {
	token, err := readToken(s.tokenFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.node}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("csr: %w", err)
	}
	cc, err := grpc.NewClient(s.target, append(s.dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(s.base.Clone())))...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	defer cc.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := bulkheadv1.NewCertificateServiceClient(cc).Issue(rctx, &bulkheadv1.IssueRequest{Node: s.node, Csr: csr, Token: token})
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	var chain [][]byte
	for rest := resp.GetCertificateChain(); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("issue: no certificate in the answer")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, nil, errors.New("issue: the certificate is not for our key")
	}
	if !s.now().Before(leaf.NotAfter) {
		return nil, nil, fmt.Errorf("issue: the certificate expired at %v", leaf.NotAfter)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, resp, nil
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("token file %s is longer than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

func serialHex(n *big.Int) string { return strings.ToLower(n.Text(16)) }

// afterReady runs start once the first certificate is in (at once in
// plaintext mode, s == nil); nil when ctx ends first.
func (s *certSource) afterReady(ctx context.Context, start func(context.Context) error) error {
	if s != nil {
		if err := s.wait(ctx); err != nil {
			return nil
		}
	}
	return start(ctx)
}
