package envoy

import (
	"errors"
	"path/filepath"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Files of a sidecar's certificate folder (BootstrapTLS.Dir), as
// bulkhead-proxy cert writes them.
const (
	CertFileName = "tls.crt"
	KeyFileName  = "tls.key"
	CAFileName   = "ca.crt"
	// DefaultCertDir is where the sidecar's certificate folder is mounted.
	DefaultCertDir = "/var/run/bulkhead/certs"
	// grpcRefresh is how often gRPC's file watcher re-reads the folder.
	grpcRefresh = 10 * time.Second
)

// BootstrapTLS is mutual TLS with the control plane: the folder holding the
// node's certificate (tls.crt), key (tls.key) and the CA bundle (ca.crt).
type BootstrapTLS struct {
	// Dir is the folder, as the sidecar sees it. Required.
	Dir string
}

func (t *BootstrapTLS) validate() error {
	if t.Dir == "" || !filepath.IsAbs(t.Dir) {
		return errors.New("bootstrap: the certificate folder must be an absolute path")
	}
	return nil
}

func (t *BootstrapTLS) file(name string) string { return filepath.Join(t.Dir, name) }

// envoyTransport is the control plane cluster's TLS transport socket
// (Envoy reads the files when it starts the cluster: restart it, or use
// path-based SDS, to rotate; gRPC nodes re-read them, see GRPCBootstrap).
func (t *BootstrapTLS) envoyTransport(sni string) (*corev3.TransportSocket, error) {
	ctx, err := toAny(&tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.file(CertFileName)}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.file(KeyFileName)}},
			}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.file(CAFileName)}},
			}},
			AlpnProtocols: []string{"h2"},
		},
	})
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx}}, nil
}

// grpcCreds is the channel_creds entry of a gRPC bootstrap (gRFC A65: "tls"
// with a file watcher that re-reads the files every grpcRefresh, so a
// renewed certificate is used by the next handshake).
func (t *BootstrapTLS) grpcCreds() map[string]any {
	return map[string]any{
		"type": "tls",
		"config": map[string]string{
			"ca_certificate_file": t.file(CAFileName),
			"certificate_file":    t.file(CertFileName),
			"private_key_file":    t.file(KeyFileName),
			"refresh_interval":    grpcRefresh.String(),
		},
	}
}
