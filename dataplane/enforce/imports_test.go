package enforce

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports checks that the package depends on nothing of the control
// plane but its API protobufs, and on nothing of Kubernetes.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/bulkhead-io/bulkhead/"
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "k8s.io/"), strings.HasPrefix(dep, "sigs.k8s.io/"),
			strings.HasPrefix(dep, mod+"controlplane/") && dep != mod+"controlplane/api/bulkheadv1":
			t.Errorf("forbidden dependency %s", dep)
		}
	}
}
