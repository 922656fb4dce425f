package inject

import (
	"bytes"
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
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AnnotationCertManager on the MutatingWebhookConfiguration hands its
// caBundle to cert-manager's CA injector: Certs then leaves it alone.
const AnnotationCertManager = "cert-manager.io/inject-ca-from"

// Keys of the CA Secret.
const (
	SecretCACert   = "ca.crt"    // the current CA certificate (PEM)
	SecretCAKey    = "ca.key"    // its key (PEM, PKCS #8)
	SecretCABundle = "ca-bundle" // the current CA and the previous one while it is valid: the caBundle
)

// CertOptions configure Certs. Namespace, Secret, Webhook and DNSNames (or
// IPs) are required; zero durations take the defaults.
type CertOptions struct {
	// Namespace and Secret name the Secret holding the CA (shared by the
	// control plane's replicas).
	Namespace, Secret string
	// Webhook is the MutatingWebhookConfiguration whose caBundle is kept.
	Webhook string
	// DNSNames and IPs the serving certificate is valid for (the
	// Service's names: svc, svc.ns, svc.ns.svc).
	DNSNames []string
	IPs      []net.IP
	// CALifetime (default 1 year) and CertLifetime (default 30 days).
	CALifetime, CertLifetime time.Duration
	// Renewal starts when less than a third of a lifetime is left.
	// Interval is the longest time between checks (default 1 hour).
	Interval time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Certs issues the webhook's serving certificate from a CA of its own,
// rotates both before they expire, and keeps the MutatingWebhookConfiguration's
// caBundle equal to the CA bundle (the current CA and, while it is valid,
// the previous one, so that a CA rotation does not break calls in
// flight). Replicas share the CA through the Secret; each issues its own
// serving certificate.
type Certs struct {
	c    client.Client
	log  *slog.Logger
	opts CertOptions

	mu   sync.Mutex
	cert *tls.Certificate
	leaf *x509.Certificate
	ca   []byte // PEM of the CA that signed cert
}

// NewCerts returns Certs working through c. It starts nothing.
func NewCerts(c client.Client, log *slog.Logger, opts CertOptions) (*Certs, error) {
	if opts.Namespace == "" || opts.Secret == "" || opts.Webhook == "" {
		return nil, errors.New("certs: namespace, secret and webhook are required")
	}
	if len(opts.DNSNames) == 0 && len(opts.IPs) == 0 {
		return nil, errors.New("certs: no DNS name or IP for the serving certificate")
	}
	if opts.CALifetime == 0 {
		opts.CALifetime = 365 * 24 * time.Hour
	}
	if opts.CertLifetime == 0 {
		opts.CertLifetime = 30 * 24 * time.Hour
	}
	if opts.CertLifetime > opts.CALifetime {
		return nil, fmt.Errorf("certs: certificate lifetime %v exceeds the CA's %v", opts.CertLifetime, opts.CALifetime)
	}
	if opts.Interval == 0 {
		opts.Interval = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Certs{c: c, log: log, opts: opts}, nil
}

// Start checks at once and then whenever renewal is due (at most every
// Interval, retrying failures after a few seconds) until ctx is done.
func (c *Certs) Start(ctx context.Context) error {
	for {
		wait := c.opts.Interval
		if err := c.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Error("certs: webhook certificate", "err", err)
			wait = min(wait, 5*time.Second)
		} else if due := c.renewAt().Sub(c.opts.Now()); due < wait {
			wait = max(due, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// renewAt is when the serving certificate or its CA needs renewing.
func (c *Certs) renewAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leaf == nil {
		return c.opts.Now()
	}
	return renewal(c.leaf)
}

// renewal is when a certificate is to be replaced: a third of its
// lifetime before it expires.
func renewal(x *x509.Certificate) time.Time {
	return x.NotAfter.Add(-x.NotAfter.Sub(x.NotBefore) / 3)
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		return nil, errors.New("certs: no serving certificate yet")
	}
	return c.cert, nil
}

// Leaf returns the serving certificate in use (nil before the first Ensure).
func (c *Certs) Leaf() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaf
}

// Ensure makes one round: it reads (or creates, or rotates) the CA in the
// Secret, issues a serving certificate when there is none, its CA changed
// or it is due, and patches the webhook configuration's caBundle unless
// cert-manager injects it.
func (c *Certs) Ensure(ctx context.Context) error {
	now := c.opts.Now()
	caCert, caKey, bundle, err := c.ensureCA(ctx, now)
	if err != nil {
		return err
	}
	caPEM := pemCert(caCert.Raw)
	c.mu.Lock()
	need := c.leaf == nil || !bytes.Equal(c.ca, caPEM) || !now.Before(renewal(c.leaf))
	c.mu.Unlock()
	if need {
		cert, leaf, err := c.issue(caCert, caKey, now)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.cert, c.leaf, c.ca = cert, leaf, caPEM
		c.mu.Unlock()
		c.log.Info("certs: webhook serving certificate issued", "notAfter", leaf.NotAfter, "serial", leaf.SerialNumber.String())
	}
	return c.patchBundle(ctx, bundle)
}

// ensureCA returns the CA to sign with and the CA bundle.
func (c *Certs) ensureCA(ctx context.Context, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	var s corev1.Secret
	key := client.ObjectKey{Namespace: c.opts.Namespace, Name: c.opts.Secret}
	err := c.c.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		cert, k, certPEM, keyPEM, err := newCA(now, c.opts.CALifetime)
		if err != nil {
			return nil, nil, nil, err
		}
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"app.kubernetes.io/part-of": "bulkhead"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{SecretCACert: certPEM, SecretCAKey: keyPEM, SecretCABundle: certPEM},
		}
		if err := c.c.Create(ctx, &s); err != nil {
			if apierrors.IsAlreadyExists(err) { // another replica was first
				return c.ensureCA(ctx, now)
			}
			return nil, nil, nil, fmt.Errorf("certs: create secret %s: %w", key, err)
		}
		c.log.Info("certs: webhook CA created", "secret", key.String(), "notAfter", cert.NotAfter)
		return cert, k, certPEM, nil
	} else if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: read secret %s: %w", key, err)
	}
	cert, k, err := parseCA(s.Data[SecretCACert], s.Data[SecretCAKey])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: secret %s: %w", key, err)
	}
	if now.Before(renewal(cert)) {
		bundle := s.Data[SecretCABundle]
		if len(bundle) == 0 {
			bundle = s.Data[SecretCACert]
		}
		return cert, k, validBundle(bundle, now), nil
	}
	// Rotate: a new CA; the bundle keeps the old one until it expires.
	ncert, nk, certPEM, keyPEM, err := newCA(now, c.opts.CALifetime)
	if err != nil {
		return nil, nil, nil, err
	}
	bundle := append(append([]byte{}, certPEM...), validBundle(s.Data[SecretCACert], now)...)
	s.Data = map[string][]byte{SecretCACert: certPEM, SecretCAKey: keyPEM, SecretCABundle: bundle}
	if err := c.c.Update(ctx, &s); err != nil { // resourceVersion: a replica racing us loses
		if apierrors.IsConflict(err) {
			return c.ensureCA(ctx, now)
		}
		return nil, nil, nil, fmt.Errorf("certs: rotate CA in %s: %w", key, err)
	}
	c.log.Info("certs: webhook CA rotated", "secret", key.String(), "notAfter", ncert.NotAfter)
	return ncert, nk, bundle, nil
}

// patchBundle sets caBundle of every webhook of the configuration.
func (c *Certs) patchBundle(ctx context.Context, bundle []byte) error {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.c.Get(ctx, client.ObjectKey{Name: c.opts.Webhook}, &mwc); err != nil {
		if apierrors.IsNotFound(err) {
			c.log.Warn("certs: no MutatingWebhookConfiguration to patch", "name", c.opts.Webhook)
			return nil
		}
		return fmt.Errorf("certs: read webhook configuration %s: %w", c.opts.Webhook, err)
	}
	if mwc.Annotations[AnnotationCertManager] != "" {
		return nil
	}
	orig := mwc.DeepCopy()
	changed := false
	for i := range mwc.Webhooks {
		if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
			mwc.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.c.Patch(ctx, &mwc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("certs: patch caBundle of %s: %w", c.opts.Webhook, err)
	}
	c.log.Info("certs: caBundle patched", "webhookConfiguration", c.opts.Webhook)
	return nil
}

// issue signs a serving certificate.
func (c *Certs) issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*tls.Certificate, *x509.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key: %w", err)
	}
	notAfter := now.Add(c.opts.CertLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	name := "bulkhead-webhook"
	if len(c.opts.DNSNames) > 0 {
		name = c.opts.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"bulkhead"}},
		DNSNames:     c.opts.DNSNames,
		IPAddresses:  c.opts.IPs,
		NotBefore:    now.Add(-backdate(c.opts.CertLifetime)),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parse: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}, leaf, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil { // crypto/rand does not fail on Linux
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func newCA(now time.Time, life time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("certs: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "bulkhead-webhook-ca " + now.UTC().Format(time.RFC3339), Organization: []string{"bulkhead"}},
		NotBefore:             now.Add(-backdate(life)),
		NotAfter:              now.Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("certs: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("certs: CA: %w", err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("certs: CA key: %w", err)
	}
	return cert, k, pemCert(der), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

// backdate is how long before its issue a certificate is valid, for
// clocks behind ours: a minute, less for short lifetimes (tests).
func backdate(life time.Duration) time.Duration { return min(time.Minute, life/10) }

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no CA certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no CA key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("CA key does not match the certificate")
	}
	return cert, ek, nil
}

// validBundle keeps the certificates of a PEM bundle that have not expired.
func validBundle(bundle []byte, now time.Time) []byte {
	var out []byte
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if x, err := x509.ParseCertificate(b.Bytes); err == nil && now.Before(x.NotAfter) {
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
}
