package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
	"github.com/bulkhead-io/bulkhead/controlplane/run"
)

// injectFlags are the sidecar injector's flags (kube mode only).
type injectFlags struct {
	addr, settings, certDir, namespace string
}

func registerInject(fs *flag.FlagSet) *injectFlags {
	f := &injectFlags{}
	fs.StringVar(&f.addr, "inject-addr", "", "serve the sidecar injection webhook (HTTPS) on this address, e.g. :9443 (kube mode; empty: no injection)")
	fs.StringVar(&f.settings, "inject-settings", "", "YAML file of the injection settings (controlplane/inject.Settings; required with --inject-addr)")
	fs.StringVar(&f.certDir, "inject-cert-dir", "", "folder with tls.crt and tls.key serving the webhook (cert-manager); empty: the control plane issues and rotates its own")
	fs.StringVar(&f.namespace, "inject-namespace", os.Getenv("POD_NAMESPACE"), "the control plane's namespace: the webhook CA Secret and Service (default: $POD_NAMESPACE, else bulkhead-system)")
	return f
}

// run runs the control plane and, with --inject-addr, the injector beside
// it; the first to fail stops both.
func (f *injectFlags) run(ctx context.Context, cfg run.Config, log *slog.Logger) error {
	if f.addr == "" {
		return run.Run(ctx, cfg, log)
	}
	if cfg.Kube == nil {
		return errors.New("--inject-addr needs kube mode (--kubeconfig or --in-cluster)")
	}
	data, err := os.ReadFile(f.settings)
	if err != nil {
		return fmt.Errorf("--inject-settings: %w", err)
	}
	s, err := inject.ParseSettings(data)
	if err != nil {
		return fmt.Errorf("--inject-settings %s: %w", f.settings, err)
	}
	rc := inject.RunConfig{Settings: s, Addr: f.addr, Namespace: f.namespace}
	if f.certDir != "" {
		rc.CertFile, rc.KeyFile = filepath.Join(f.certDir, "tls.crt"), filepath.Join(f.certDir, "tls.key")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return run.Run(ctx, cfg, log) })
	g.Go(func() error { return inject.Run(ctx, cfg.Kube.Rest, rc, log) })
	return g.Wait()
}
