package demo

import (
	"path/filepath"

	"github.com/bulkhead-io/bulkhead/controlplane/ca"
)

// TrustArgs are bulkhead-proxy's flags for mutual TLS with the Env's control
// plane: the CA bundle and the bootstrap token it keeps in its state folder
// (both written on its first start).
func (e *Env) TrustArgs() []string {
	return []string{
		"--ca-file", filepath.Join(e.StateDir, ca.CertFile),
		"--token-file", filepath.Join(e.StateDir, ca.BootstrapTokenFile),
	}
}
