package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAssetsDir(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Setenv("BULKHEAD_KUBE_ASSETS", empty)
	if _, err := AssetsDir(root); err == nil || !strings.Contains(err.Error(), "BULKHEAD_KUBE_ASSETS") {
		t.Errorf("a folder without kube-apiserver: %v", err)
	}
	if err := os.WriteFile(filepath.Join(empty, "kube-apiserver"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err := AssetsDir(root); err != nil || d != empty {
		t.Errorf("AssetsDir = %q, %v; want %q", d, err, empty)
	}
	t.Setenv("BULKHEAD_KUBE_ASSETS", "")
	if _, err := AssetsDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "kube-apiserver version") {
		t.Errorf("a root without hack/kube-apiserver: %v", err)
	}
}
