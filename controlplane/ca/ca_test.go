package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func csrFor(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "whatever"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCreateLoadSign(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, TTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", fi.Mode().Perm())
	}
	// A second Open loads the same CA.
	c2, err := Open(Options{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.cert.Equal(c.cert) {
		t.Fatal("reopening created another CA")
	}
	bundle, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("ca.crt holds no certificate")
	}

	key := p256(t)
	cert, chain, err := c.Sign("redis.demo", csrFor(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(chain); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("chain is not PEM: %q", chain)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("the certificate is not for the CSR's key")
	}
	if got := cert.URIs[0].String(); got != "spiffe://bulkhead.local/ns/demo/wl/redis" {
		t.Errorf("URI SAN %s", got)
	}
	if d := time.Until(cert.NotAfter); d > time.Hour || d < 59*time.Minute {
		t.Errorf("lifetime %v, want 1h", d)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify as client: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a workload certificate verifies as a server certificate")
	}
	node, err := IdentityOf(cert)
	if err != nil || node != "redis.demo" {
		t.Errorf("IdentityOf = %q, %v", node, err)
	}
}

func TestSignRefuses(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := csrFor(t, p256(t))
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-3] ^= 0xff
	for _, tc := range []struct {
		name, node string
		csr        []byte
		want       string
	}{
		{"no namespace", "redis", good, "workload.namespace"},
		{"three labels", "a.b.c", good, "workload.namespace"},
		{"upper case", "Redis.demo", good, "workload.namespace"},
		{"too long", strings.Repeat("a", 250) + ".demo", good, "bytes"},
		{"empty csr", "redis.demo", nil, "csr of 0 bytes"},
		{"huge csr", "redis.demo", make([]byte, MaxCSR+1), "csr of"},
		{"garbage csr", "redis.demo", []byte("hello"), "csr"},
		{"bad signature", "redis.demo", tampered, "csr"},
		{"weak key", "redis.demo", csrFor(t, weak), "2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.Sign(tc.node, tc.csr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestIdentityOfRefuses(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := c.Serving([]string{"localhost"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := srv.GetCertificate(nil)
	if _, err := IdentityOf(sc.Leaf); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("the serving certificate names a node: %v", err)
	}
	if _, err := IdentityOf(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("nil: %v", err)
	}
	u, _ := URIOf("bulkhead.local", "redis.demo")
	odd := *u
	odd.Path = "/ns/demo/sa/redis"
	cert := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{&odd}}
	if _, err := IdentityOf(cert); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("other SPIFFE path: %v", err)
	}
	cert.URIs = []*url.URL{u, u}
	if _, err := IdentityOf(cert); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("two SPIFFE ids: %v", err)
	}
}

// TestOperatorCA loads a CA given as files (cert-manager's tls.crt/tls.key
// of a CA issuer: an EC key in SEC 1 form) and refuses a key that does not
// belong to the certificate or a certificate that is no CA.
func TestOperatorCA(t *testing.T) {
	dir := t.TempDir()
	key := p256(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "cert-manager CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write(t, crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))
	state := t.TempDir()
	c, err := Open(Options{Dir: state, CertFile: crt, KeyFile: keyFile, TrustDomain: "example.org"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an operator's CA left a key in the state folder: %v", err)
	}
	cert, _, err := c.Sign("cart.shop", csrFor(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	if cert.NotAfter.After(tmpl.NotAfter) {
		t.Errorf("workload certificate outlives its CA")
	}
	if cert.URIs[0].String() != "spiffe://example.org/ns/shop/wl/cart" {
		t.Errorf("URI %s", cert.URIs[0])
	}

	other := p256(t)
	otherDER, _ := x509.MarshalECPrivateKey(other)
	wrong := filepath.Join(dir, "wrong.key")
	write(t, wrong, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: otherDER}))
	if _, err := Open(Options{Dir: t.TempDir(), CertFile: crt, KeyFile: wrong}, nil); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("a foreign key: %v", err)
	}
	leaf := filepath.Join(dir, "leaf.crt")
	write(t, leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	if _, err := Open(Options{Dir: t.TempDir(), CertFile: leaf, KeyFile: keyFile}, nil); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("a leaf as CA: %v", err)
	}
	if _, err := Open(Options{Dir: t.TempDir(), CertFile: crt}, nil); err == nil {
		t.Error("a certificate without its key was accepted")
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServingRenews: the serving certificate is renewed (new serial and
// key) once two thirds of its lifetime passed, and names the listen
// addresses.
func TestServingRenews(t *testing.T) {
	now := time.Now()
	c, err := Open(Options{Dir: t.TempDir(), Now: func() time.Time { return now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	names, ips, err := ListenNames("198.18.7.1:15010", []string{"cp.bulkhead.svc", "198.18.7.2"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Serving(names, ips, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.GetCertificate(nil)
	for _, h := range []string{"198.18.7.1", "198.18.7.2", "cp.bulkhead.svc"} {
		if err := first.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	now = now.Add(time.Hour + 59*time.Minute)
	if again, _ := s.GetCertificate(nil); again != first {
		t.Error("renewed before two thirds of the lifetime")
	}
	now = now.Add(2 * time.Minute)
	renewed, _ := s.GetCertificate(nil)
	if renewed == first || renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed after two thirds of the lifetime")
	}
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("the renewed certificate does not live longer")
	}
	if _, _, err := ListenNames("0.0.0.0:15010", []string{"bad name!"}); err == nil {
		t.Error("a bad server name was accepted")
	}
	all, allIPs, err := ListenNames(":15010", nil)
	if err != nil || len(allIPs) == 0 || all[0] != "localhost" {
		t.Errorf("all interfaces: %v %v %v", all, allIPs, err)
	}
	if !containsAddr(allIPs, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("all interfaces lack 127.0.0.1: %v", allIPs)
	}
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// TestTokens: the bootstrap token is created 0600 and allows any node; a
// tokens file's token allows only its nodes — a token for A cannot get
// B's certificate.
func TestTokens(t *testing.T) {
	dir := t.TempDir()
	tk, err := LoadTokens(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, BootstrapTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, BootstrapTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap-token mode %v", fi.Mode().Perm())
	}
	ctx := context.Background()
	tok := strings.TrimSpace(string(data))
	if err := tk.Authenticate(ctx, "any.node", tok); err != nil {
		t.Errorf("bootstrap token refused: %v", err)
	}
	if err := tk.Authenticate(ctx, "any.node", tok+"x"); !errors.Is(err, ErrDenied) {
		t.Errorf("wrong token: %v", err)
	}
	tk2, err := LoadTokens(dir, "")
	if err != nil || tk2.any != tk.any {
		t.Errorf("the bootstrap token changed on reload: %v", err)
	}

	file := filepath.Join(t.TempDir(), "tokens.yaml")
	write(t, file, []byte("tokens:\n- token: aaaaaaaaaaaaaaaaaaaa\n  nodes: [redis.demo]\n- token: bbbbbbbbbbbbbbbbbbbb\n  nodes: [cart.demo, web.demo]\n"))
	ft, err := LoadTokens(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node, token string
		ok          bool
	}{
		{"redis.demo", "aaaaaaaaaaaaaaaaaaaa", true},
		{"cart.demo", "aaaaaaaaaaaaaaaaaaaa", false},
		{"cart.demo", "bbbbbbbbbbbbbbbbbbbb", true},
		{"web.demo", "bbbbbbbbbbbbbbbbbbbb", true},
		{"redis.demo", "bbbbbbbbbbbbbbbbbbbb", false},
		{"redis.demo", tok, false}, // the bootstrap token is off with a tokens file
		{"redis.demo", "", false},
	} {
		err := ft.Authenticate(ctx, tc.node, tc.token)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Errorf("%s with %.4s…: %v, want ok=%v", tc.node, tc.token, err, tc.ok)
		}
	}
	for name, body := range map[string]string{
		"short":     "tokens:\n- token: short\n  nodes: [a.b]\n",
		"no nodes":  "tokens:\n- token: aaaaaaaaaaaaaaaaaaaa\n",
		"bad node":  "tokens:\n- token: aaaaaaaaaaaaaaaaaaaa\n  nodes: [nonode]\n",
		"duplicate": "tokens:\n- token: aaaaaaaaaaaaaaaaaaaa\n  nodes: [a.b]\n- token: aaaaaaaaaaaaaaaaaaaa\n  nodes: [c.d]\n",
		"unknown":   "tokens: []\nextra: 1\n",
	} {
		write(t, file, []byte(body))
		if _, err := LoadTokens(dir, file); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIssueRate(t *testing.T) {
	b := rateBucket{rate: 2, burst: 3, tokens: 3}
	now := time.Unix(100, 0)
	got := 0
	for range 5 {
		if b.take(now) {
			got++
		}
	}
	if got != 3 {
		t.Errorf("burst: %d taken, want 3", got)
	}
	now = now.Add(time.Second)
	got = 0
	for range 5 {
		if b.take(now) {
			got++
		}
	}
	if got != 2 {
		t.Errorf("after 1s at 2/s: %d taken, want 2", got)
	}
}
