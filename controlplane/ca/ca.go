// Package ca is the control plane's certificate authority: the trust between
// the planes. It keeps a CA (ECDSA P-256, created in the state folder on
// first start, or an operator's — e.g. the tls.crt/tls.key of a cert-manager
// CA issuer), signs short-lived workload certificates from proxies' CSRs
// (SPIFFE-style URI SAN spiffe://<trust domain>/ns/<namespace>/wl/<workload>,
// from which IdentityOf recovers the node id), and the control plane's own
// serving certificate (Serving, renewed before it expires).
//
// server.go serves CertificateService.Issue (a CSR plus a credential checked
// by an Authenticator: Tokens standalone); auth.go holds the gRPC
// interceptors that require a verified client certificate on every other
// method, and PeerNode, the Authorizer the xds, flows and als packages use to
// bind a stream to the node of its certificate.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/internal/atomicfile"
)

// Defaults of Options.
const (
	DefaultTrustDomain = "bulkhead.local"
	DefaultTTL         = 24 * time.Hour
	// DefaultServingTTL is the lifetime of the control plane's own
	// certificate (renewed at two thirds of it).
	DefaultServingTTL = 30 * 24 * time.Hour
	// MinTTL is the shortest certificate lifetime accepted (tests rotate
	// every few seconds).
	MinTTL = time.Second
	// caLifetime is the lifetime of a CA created here.
	caLifetime = 10 * 365 * 24 * time.Hour
	// clockSkew backdates certificates so that a peer whose clock is a
	// little behind accepts them.
	clockSkew = 30 * time.Second
)

// File names in Options.Dir.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Options configures a CA.
type Options struct {
	// Dir holds ca.crt (always written: what proxies trust) and, for a CA
	// created here, ca.key (0600). Required unless CertFile is set.
	Dir string
	// CertFile and KeyFile, set together, are an operator's CA (PEM; e.g.
	// cert-manager's tls.crt and tls.key of a CA issuer) used instead of one
	// in Dir. Each file's first certificate and key are used; further
	// certificates in CertFile are written to ca.crt as well.
	CertFile, KeyFile string
	// TrustDomain names the SPIFFE trust domain. Empty: DefaultTrustDomain.
	TrustDomain string
	// TTL is the lifetime of workload certificates. Zero: DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// CA signs workload and serving certificates. It is safe for concurrent
// use.
type CA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	bundle []byte // PEM of the trusted roots
	pool   *x509.CertPool
	domain string
	ttl    time.Duration
	now    func() time.Time
}

// Open loads the CA of opts.CertFile/KeyFile, or the one in opts.Dir, or
// creates one there; and writes the trust bundle to Dir/ca.crt.
func Open(opts Options, log *slog.Logger) (*CA, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" && opts.CertFile == "" {
		return nil, errors.New("ca: a dir for the CA, or the CA's files, are required")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("ca: the CA certificate and key files go together")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = DefaultTrustDomain
	}
	if !validLabels(opts.TrustDomain, ".") {
		return nil, fmt.Errorf("ca: trust domain %q: want a DNS name", opts.TrustDomain)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("ca: certificate lifetime %v is shorter than %v", opts.TTL, MinTTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &CA{domain: opts.TrustDomain, ttl: opts.TTL, now: opts.Now}
	var err error
	switch {
	case opts.CertFile != "":
		err = c.load(opts.CertFile, opts.KeyFile)
		if err == nil {
			log.Info("using the operator's CA", "cert", opts.CertFile, "subject", c.cert.Subject.String())
		}
	default:
		certPath, keyPath := filepath.Join(opts.Dir, CertFile), filepath.Join(opts.Dir, KeyFile)
		if _, statErr := os.Stat(keyPath); statErr == nil {
			err = c.load(certPath, keyPath)
		} else if errors.Is(statErr, os.ErrNotExist) {
			err = c.create(keyPath)
			if err == nil {
				log.Info("created a CA", "dir", opts.Dir, "notAfter", c.cert.NotAfter)
			}
		} else {
			err = statErr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if opts.Dir != "" {
		if err := atomicfile.Write(filepath.Join(opts.Dir, CertFile), c.bundle, 0o644); err != nil {
			return nil, fmt.Errorf("ca: write bundle: %w", err)
		}
	}
	if c.now().After(c.cert.NotAfter) {
		return nil, fmt.Errorf("ca: the CA certificate expired at %v", c.cert.NotAfter)
	}
	return c, nil
}

// load reads a CA certificate (and any further certificates, trusted too)
// and its key.
func (c *CA) load(certPath, keyPath string) error {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	var certs []*x509.Certificate
	var bundle []byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", certPath, err)
		}
		certs = append(certs, cert)
		bundle = append(bundle, pem.EncodeToMemory(b)...)
	}
	if len(certs) == 0 {
		return fmt.Errorf("%s: no certificate", certPath)
	}
	if !certs[0].IsCA || certs[0].KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s: not a CA certificate (basic constraints CA and key usage certSign are required)", certPath)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), certs[0].PublicKey) {
		return fmt.Errorf("%s: the key does not belong to %s", keyPath, certPath)
	}
	c.cert, c.key, c.bundle = certs[0], key, bundle
	c.pool = x509.NewCertPool()
	for _, cert := range certs {
		c.pool.AddCert(cert)
	}
	return nil
}

// create makes a new CA and keeps its key in keyPath (0600).
func (c *CA) create(keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Bulkhead"}, CommonName: "Bulkhead CA " + c.domain},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	c.cert, c.key = cert, key
	c.bundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c.pool = x509.NewCertPool()
	c.pool.AddCert(cert)
	return nil
}

// Bundle is the PEM of the certificates a peer trusts (the CA's). The
// caller must not modify it.
func (c *CA) Bundle() []byte { return c.bundle }

// Pool holds the trusted CA certificates (verifying client certificates).
func (c *CA) Pool() *x509.CertPool { return c.pool }

// TrustDomain is the SPIFFE trust domain of workload certificates.
func (c *CA) TrustDomain() string { return c.domain }

// TTL is the lifetime of workload certificates.
func (c *CA) TTL() time.Duration { return c.ttl }

// Limits on what Sign accepts.
const (
	// MaxCSR bounds a DER CSR.
	MaxCSR = 8 << 10
	// MaxNode bounds a node id.
	MaxNode = 253
)

// Sign issues a workload certificate for node ("workload.namespace") with
// the public key of csrDER (a PKCS#10 request, DER, whose signature must
// verify; its names and extensions are ignored). It returns the certificate
// and its PEM chain.
func (c *CA) Sign(node string, csrDER []byte) (*x509.Certificate, []byte, error) {
	u, err := URIOf(c.domain, node)
	if err != nil {
		return nil, nil, err
	}
	if len(csrDER) == 0 || len(csrDER) > MaxCSR {
		return nil, nil, fmt.Errorf("csr of %d bytes: want 1 to %d", len(csrDER), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("csr signature: %w", err)
	}
	if err := acceptableKey(csr.PublicKey); err != nil {
		return nil, nil, fmt.Errorf("csr: %w", err)
	}
	now := c.now()
	notAfter := now.Add(c.ttl)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Bulkhead"}, CommonName: node},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return c.issue(tmpl, csr.PublicKey)
}

func (c *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, []byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return cert, chain, nil
}

// URIOf is the URI SAN of node ("workload.namespace") in trustDomain:
// spiffe://<trust domain>/ns/<namespace>/wl/<workload>.
func URIOf(trustDomain, node string) (*url.URL, error) {
	wl, ns, err := SplitNode(node)
	if err != nil {
		return nil, err
	}
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + ns + "/wl/" + wl}, nil
}

// SplitNode splits a node id "workload.namespace" into its DNS labels.
func SplitNode(node string) (workload, namespace string, err error) {
	if len(node) == 0 || len(node) > MaxNode {
		return "", "", fmt.Errorf("node id of %d bytes: want 1 to %d", len(node), MaxNode)
	}
	workload, namespace, ok := strings.Cut(node, ".")
	if !ok || !validLabels(workload, "") || !validLabels(namespace, "") {
		return "", "", fmt.Errorf("node id %q: want workload.namespace (DNS labels)", node)
	}
	return workload, namespace, nil
}

// ErrNoIdentity is returned by IdentityOf for a certificate that names no
// workload.
var ErrNoIdentity = errors.New("certificate names no workload")

// IdentityOf recovers the node id ("workload.namespace") of a workload
// certificate from its SPIFFE URI SAN. It does not verify the certificate:
// call it on a verified chain's leaf.
func IdentityOf(cert *x509.Certificate) (node string, err error) {
	if cert == nil {
		return "", ErrNoIdentity
	}
	if !clientAuth(cert) {
		return "", fmt.Errorf("%w: not a client certificate", ErrNoIdentity)
	}
	var found *url.URL
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if found != nil {
			return "", fmt.Errorf("%w: more than one SPIFFE id", ErrNoIdentity)
		}
		found = u
	}
	if found == nil {
		return "", ErrNoIdentity
	}
	parts := strings.Split(found.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "ns" || parts[3] != "wl" {
		return "", fmt.Errorf("%w: SPIFFE id %q is not /ns/<namespace>/wl/<workload>", ErrNoIdentity, found.String())
	}
	node = parts[4] + "." + parts[2]
	if _, _, err := SplitNode(node); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoIdentity, err)
	}
	return node, nil
}

func clientAuth(cert *x509.Certificate) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// validLabels reports whether s is one DNS label (sep "") or labels joined
// by sep.
func validLabels(s, sep string) bool {
	labels := []string{s}
	if sep != "" {
		labels = strings.Split(s, sep)
	}
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}

// acceptableKey refuses weak or unknown public keys.
func acceptableKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("ECDSA keys must be P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, at least 2048", k.N.BitLen())
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

// ParseKey reads the first private key of a PEM file: PKCS#8, SEC 1 (EC
// PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY).
func ParseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no private key")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", k)
		}
		return s, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// newSerial is 128 random bits, positive.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
