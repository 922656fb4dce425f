// Package kube starts a real Kubernetes API server for tests: etcd and
// kube-apiserver run as child processes through controller-runtime's envtest
// (127.0.0.1, random ports, self-issued serving certificate and
// service-account keys, RBAC, an admin user of system:masters), with
// Bulkhead's CRDs from deploy/crds installed.
//
// kube-apiserver is not packaged; hack/kube-apiserver.sh builds it once per
// version from the Go module proxy into a cache folder outside git. etcd is
// Debian's (etcd-server). Start finds them in $BULKHEAD_KUBE_ASSETS, else in
// $KUBEBUILDER_ASSETS, else in the script's cache folder
// (/var/cache/bulkhead/kube-apiserver-<version>), with etcd also looked up
// on $PATH; it fails the test, naming the script, when they are missing.
// There is no kubelet and no controller manager: tests create Pods (with
// owner references) themselves and set their IPs through the status
// subresource.
package kube

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Env is a running API server.
type Env struct {
	// Config reaches the API server as an admin (system:masters).
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for Config, for kubectl and the CLI.
	Kubeconfig string
	// Kubectl is the path of kubectl, "" when there is none.
	Kubectl string

	env *envtest.Environment
}

// Start starts etcd and kube-apiserver with the CRDs of deploy/crds installed
// and stops both when the test ends. It takes about 3 seconds.
func Start(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("real API server: not in -short mode")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := AssetsDir(root)
	if err != nil {
		t.Fatal(err)
	}
	etcd := filepath.Join(dir, "etcd")
	if _, err := os.Stat(etcd); err != nil {
		if etcd, err = exec.LookPath("etcd"); err != nil {
			t.Fatalf("etcd is neither in %s nor on $PATH: apt-get install etcd-server", dir)
		}
	}
	no := false
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(root, "deploy", "crds")},
		ErrorIfCRDPathMissing:    true,
		UseExistingCluster:       &no,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
	env.ControlPlane.GetAPIServer().Path = filepath.Join(dir, "kube-apiserver")
	if k, err := exec.LookPath("kubectl"); err == nil {
		env.ControlPlane.KubectlPath = k
	}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop API server: %v", err)
		}
	})
	t.Logf("API server %s up in %v", cfg.Host, time.Since(start).Round(time.Millisecond))
	e := &Env{Config: cfg, Kubectl: env.ControlPlane.KubectlPath, env: env}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "bulkhead-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add kubeconfig user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	e.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// RunKubectl runs kubectl against the API server and returns its standard
// output; it fails the test when kubectl fails.
func (e *Env) RunKubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	if e.Kubectl == "" {
		t.Fatal("kubectl not found: apt-get install kubernetes-client")
	}
	cmd := exec.Command(e.Kubectl, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// AssetsDir returns the folder that holds kube-apiserver (and maybe etcd):
// $BULKHEAD_KUBE_ASSETS, else $KUBEBUILDER_ASSETS, else the cache folder of
// hack/kube-apiserver.sh for the version hack/kube-apiserver/go.mod
// requires. root is the repository's root.
func AssetsDir(root string) (string, error) {
	for _, v := range []string{"BULKHEAD_KUBE_ASSETS", "KUBEBUILDER_ASSETS"} {
		if d := os.Getenv(v); d != "" {
			if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err != nil {
				return "", fmt.Errorf("$%s=%s: %w", v, d, err)
			}
			return d, nil
		}
	}
	mod, err := os.ReadFile(filepath.Join(root, "hack", "kube-apiserver", "go.mod"))
	if err != nil {
		return "", fmt.Errorf("kube-apiserver version: %w", err)
	}
	ver := ""
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "require" && f[1] == "k8s.io/kubernetes" {
			ver = f[2]
		}
	}
	if ver == "" {
		return "", errors.New("kube-apiserver version: no `require k8s.io/kubernetes` line in hack/kube-apiserver/go.mod")
	}
	d := filepath.Join("/var/cache/bulkhead", "kube-apiserver-"+ver)
	if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("kube-apiserver %s is not built: run hack/kube-apiserver.sh (%w)", ver, err)
	}
	return d, nil
}

// repoRoot is the folder of the module that holds this file.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("repository root: no caller information")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "deploy", "crds")); err != nil {
		return "", fmt.Errorf("repository root: %w", err)
	}
	return root, nil
}
