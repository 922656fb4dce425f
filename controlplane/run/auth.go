package run

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
)

// TokenFileName is the admin token's file in the state dir, created on the
// first start when no other is configured.
const TokenFileName = "admin-token"

// AdminAuthConfig is how the admin API authenticates its callers (see
// docs/operations.md, "Admin API authentication"), first match wins:
// Insecure; Authenticator; TokenFile; in Kubernetes mode (Config.Kube) the
// callers' Kubernetes credentials (admin.NewKubeAuth); else the token in
// <StateDir>/admin-token, created (0600) when absent.
type AdminAuthConfig struct {
	// TokenFile holds the token callers must send ("Authorization: Bearer
	// <token>"). Empty: <StateDir>/admin-token, created when absent. A file
	// given here must exist.
	TokenFile string
	// Authenticator, when set, replaces the token (Kubernetes mode:
	// admin.NewKubeAuth).
	Authenticator admin.Authenticator
	// Insecure serves the admin API without authentication; a warning is
	// logged at start. Never the default.
	Insecure bool
}

// withAdminAuth puts the admin API behind its authentication.
func withAdminAuth(next http.Handler, cfg Config, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	ac := cfg.AdminAuth
	log = log.With("component", "admin")
	if ac.Insecure {
		log.Warn("admin API serves WITHOUT authentication (--admin-insecure): anyone reaching the admin address can read and change every policy")
		return next, nil
	}
	a := ac.Authenticator
	if a == nil && ac.TokenFile == "" && cfg.Kube != nil && cfg.Kube.Rest != nil {
		cs, err := kubernetes.NewForConfig(cfg.Kube.Rest)
		if err != nil {
			return nil, fmt.Errorf("run: admin authentication: %w", err)
		}
		a = admin.NewKubeAuth(cs, admin.KubeAuthOptions{})
		log.Info("admin API authenticates with the cluster (TokenReview, SubjectAccessReview)")
	}
	if a == nil {
		var tok string
		var err error
		if ac.TokenFile != "" {
			tok, err = admin.ReadToken(ac.TokenFile)
		} else {
			path := filepath.Join(cfg.StateDir, TokenFileName)
			var created bool
			tok, created, err = admin.LoadOrCreateToken(path)
			if created {
				log.Info("admin token created", "file", path)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		if a, err = admin.NewTokenAuth(tok); err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
	}
	return admin.WithAuth(next, a, admin.AuthOptions{Registerer: reg, Log: log}), nil
}
