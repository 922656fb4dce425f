package grpcxds

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/ca"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/dataplane/agent"
)

// keepCertificate keeps node's certificate, from the control plane whose
// state folder is state, in a new folder (renewed, as `bulkhead-proxy cert`
// does) until the test ends, and returns the folder once the files are in.
func keepCertificate(t *testing.T, ctx context.Context, state, xdsAddr, node string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), node)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.WriteCertificates(wctx, agent.CertConfig{
			Node: node, XDSAddr: xdsAddr, Dir: dir,
			Trust:  agent.Trust{CAFile: filepath.Join(state, ca.CertFile), TokenFile: filepath.Join(state, ca.BootstrapTokenFile)},
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("certificate of %s: %v", node, err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range []string{envoy.CAFileName, envoy.KeyFileName, envoy.CertFileName} {
		for {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("certificate of %s: %v", node, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return dir
}

// The folder's file names are one contract between agent (which writes
// them) and envoy (whose bootstraps read them).
func TestCertFileNames(t *testing.T) {
	if agent.CertFileName != envoy.CertFileName || agent.KeyFileName != envoy.KeyFileName || agent.CAFileName != envoy.CAFileName {
		t.Errorf("agent writes %s/%s/%s, envoy's bootstraps read %s/%s/%s", agent.CertFileName, agent.KeyFileName, agent.CAFileName,
			envoy.CertFileName, envoy.KeyFileName, envoy.CAFileName)
	}
}
