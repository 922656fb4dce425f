package inject

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
)

// Names deploy/ uses.
const (
	DefaultSecret    = "bulkhead-webhook-ca"
	DefaultService   = "bulkhead-webhook"
	DefaultWebhook   = "bulkhead-inject"
	DefaultNamespace = "bulkhead-system"
	DefaultAddr      = ":9443"
)

// RunConfig configure Run. Zero fields take the Default* values.
type RunConfig struct {
	// Settings of the injection (Settings.SystemNamespace defaults to
	// Namespace).
	Settings Settings
	// Addr to serve on, or Listener (Run closes it).
	Addr     string
	Listener net.Listener
	// Namespace of the control plane: the CA Secret and the Service.
	Namespace string
	// Secret (the CA), Service (the webhook's, for the certificate's
	// names) and Webhook (the MutatingWebhookConfiguration).
	Secret, Service, Webhook string
	// CertFile and KeyFile, when set, are the serving certificate
	// (cert-manager's Secret mounted): Run issues none and patches no
	// caBundle.
	CertFile, KeyFile string
	// CertOptions' lifetimes and clock (the names are filled in).
	CertOptions CertOptions
}

// Run serves the injector until ctx is done: the webhook over TLS, with the
// certificate Certs issues and rotates (its caBundle patched), or the one
// in CertFile/KeyFile.
func Run(ctx context.Context, cfg *rest.Config, rc RunConfig, log *slog.Logger) error {
	if rc.Namespace == "" {
		rc.Namespace = DefaultNamespace
	}
	if rc.Secret == "" {
		rc.Secret = DefaultSecret
	}
	if rc.Service == "" {
		rc.Service = DefaultService
	}
	if rc.Webhook == "" {
		rc.Webhook = DefaultWebhook
	}
	if rc.Settings.SystemNamespace == "" {
		rc.Settings.SystemNamespace = rc.Namespace
	}
	scheme, err := k8s.Scheme()
	if err != nil {
		return fmt.Errorf("inject: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("inject: client: %w", err)
	}
	w, err := New(rc.Settings, log, Options{Reader: c})
	if err != nil {
		return err
	}
	ln := rc.Listener
	if ln == nil {
		addr := rc.Addr
		if addr == "" {
			addr = DefaultAddr
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("inject: %w", err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	sc := ServerConfig{Listener: ln, Handler: w.Handler()}
	switch {
	case rc.CertFile != "" || rc.KeyFile != "":
		fc, err := NewFileCert(rc.CertFile, rc.KeyFile)
		if err != nil {
			_ = ln.Close()
			return err
		}
		sc.GetCertificate = fc.GetCertificate
	default:
		co := rc.CertOptions
		co.Namespace, co.Secret, co.Webhook = rc.Namespace, rc.Secret, rc.Webhook
		if len(co.DNSNames) == 0 {
			co.DNSNames = []string{rc.Service + "." + rc.Namespace + ".svc", rc.Service + "." + rc.Namespace, rc.Service}
		}
		certs, err := NewCerts(c, log, co)
		if err != nil {
			_ = ln.Close()
			return err
		}
		sc.GetCertificate = certs.GetCertificate
		g.Go(func() error { return certs.Start(ctx) })
	}
	g.Go(func() error { return Serve(ctx, sc, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
