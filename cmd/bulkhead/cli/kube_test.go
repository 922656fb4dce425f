package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/test/kube"
)

// TestKube runs the mode and policy commands against a real API server
// with --kubeconfig (no control plane: --server points nowhere).
func TestKube(t *testing.T) {
	env := kube.Start(t)
	ctx := context.Background()
	scheme, err := k8s.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := Execute(ctx, append([]string{"--server", "http://127.0.0.1:1", "--kubeconfig", env.Kubeconfig, "-n", "shop"}, args...),
			Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	const policy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {namespace: shop, name: redis}
spec:
  mode: monitor
  ingress:
  - name: from-web-redis-6379
    peers: [{segment: web}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [get, SET]}
`
	if code, out, errs := kubectl(policy, "policy", "apply", "-f", "-"); code != 0 || out != "segmentpolicy shop/redis configured\n" {
		t.Fatalf("apply: exit %d, out %q, err %q", code, out, errs)
	}
	var stored v1alpha1.SegmentPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "redis"}, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Mode != v1alpha1.ModeMonitor || len(stored.Spec.Ingress) != 1 {
		t.Fatalf("stored policy %+v", stored.Spec)
	}

	// Export, re-apply: unchanged; diff: none.
	code, exported, errs := kubectl("", "policy", "export")
	if code != 0 || !strings.Contains(exported, "name: from-web-redis-6379") {
		t.Fatalf("export: exit %d, out %q, err %q", code, exported, errs)
	}
	if code, out, errs := kubectl(exported, "policy", "apply", "-f", "-"); code != 0 || out != "segmentpolicy shop/redis unchanged\n" {
		t.Errorf("re-apply of the export: exit %d, out %q, err %q", code, out, errs)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := kubectl("", "policy", "diff", "-f", file); code != 0 || out != "" {
		t.Errorf("diff of the export: exit %d, out %q, err %q", code, out, errs)
	}
	if code, again, _ := kubectl("", "policy", "export"); code != 0 || again != exported {
		t.Errorf("export after re-apply differs:\n%s\nwas\n%s", again, exported)
	}

	// Modes: a segment's (server-side apply), the namespace's (label).
	if code, out, errs := kubectl("", "mode", "set", "redis", "protect"); code != 0 || out != "segment shop/redis: mode protect\n" {
		t.Fatalf("mode set: exit %d, out %q, err %q", code, out, errs)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "redis"}, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Mode != v1alpha1.ModeProtect || len(stored.Spec.Ingress) != 1 {
		t.Errorf("after mode set: %+v", stored.Spec)
	}
	if code, out, errs := kubectl("", "mode", "set", "--namespace-default", "monitor"); code != 0 || !strings.Contains(out, "default mode monitor") {
		t.Fatalf("mode set --namespace-default: exit %d, out %q, err %q", code, out, errs)
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: "shop"}, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels[k8s.LabelMode] != "monitor" {
		t.Errorf("namespace labels %v", ns.Labels)
	}
	if code, out, errs := kubectl("", "mode", "get"); code != 0 || !strings.Contains(out, "redis") || !strings.Contains(out, "protect") {
		t.Errorf("mode get: exit %d, out %q, err %q", code, out, errs)
	}
	if code, out, errs := kubectl("", "policy", "get", "redis", "-o", "yaml"); code != 0 || !strings.Contains(out, "mode: protect") {
		t.Errorf("policy get: exit %d, out %q, err %q", code, out, errs)
	}

	// An invalid policy: refused whole, with the problem named.
	bad := strings.Replace(policy, "port: 6379", "port: 0", 1)
	if code, _, errs := kubectl(bad, "policy", "apply", "-f", "-"); code != 1 || !strings.Contains(errs, "shop/redis") {
		t.Errorf("invalid apply: exit %d, err %q", code, errs)
	}
	// Flows still go to the admin API (here: nowhere).
	if code, _, errs := kubectl("", "flows"); code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
		t.Errorf("flows in cluster mode: exit %d, err %q", code, errs)
	}
}
