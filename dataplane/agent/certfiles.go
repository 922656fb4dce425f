package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/bulkhead-io/bulkhead/internal/atomicfile"
)

// Files WriteCertificates keeps in its folder (the names
// controlplane/envoy's bootstraps point to).
const (
	CertFileName = "tls.crt"
	KeyFileName  = "tls.key"
	CAFileName   = "ca.crt"
)

// CertConfig is what WriteCertificates needs.
type CertConfig struct {
	// Node is the xDS node id the certificate is for. Required.
	Node string
	// XDSAddr is the control plane's gRPC address. Zero: DefaultXDSAddr.
	XDSAddr string
	// Trust has the CA file, the token file and the server name (Insecure
	// is refused: there is no certificate in plaintext mode).
	Trust Trust
	// Dir receives tls.crt, tls.key (0600) and ca.crt, replaced
	// atomically at each renewal. Required.
	Dir string
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

// WriteCertificates obtains node's certificate and keeps it, renewed at two
// thirds of its lifetime, in cfg.Dir for a sidecar that reads files (Envoy,
// proxyless gRPC: controlplane/envoy's bootstraps with TLS) until ctx is
// done; then it returns nil. `bulkhead-proxy cert` runs it.
func WriteCertificates(ctx context.Context, cfg CertConfig) error {
	if cfg.Node == "" || cfg.Dir == "" {
		return errors.New("agent: certificates need a node id and a folder")
	}
	if cfg.Trust.Insecure {
		return errors.New("agent: certificates need the CA and token files, not --insecure")
	}
	c := Config{Node: cfg.Node, XDSAddr: cfg.XDSAddr, Trust: cfg.Trust, Logger: cfg.Logger}.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("agent: certificate folder: %w", err)
	}
	_, certs, err := transport(c, c.XDSAddr, nil)
	if err != nil {
		return err
	}
	certs.onCert = func(cert *tls.Certificate, bundle []byte) error { return writeCertFiles(cfg.Dir, cert, bundle) }
	return certs.Start(ctx)
}

// writeCertFiles writes the key first: a reader that sees the new key with
// the old certificate refuses the pair and keeps its last good one.
func writeCertFiles(dir string, cert *tls.Certificate, bundle []byte) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAFileName, bundle, 0o644},
		{KeyFileName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{CertFileName, chain, 0o644},
	} {
		if len(f.data) == 0 {
			return fmt.Errorf("%s: nothing to write", f.name)
		}
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}
