package run

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
	kubetest "github.com/bulkhead-io/bulkhead/test/kube"
)

// testKubeCA: a control plane in kube mode with mutual TLS publishes its CA
// bundle as ConfigMap bulkhead-ca in the namespaces labelled for injection
// (what the injected sidecar mounts to verify it), and nowhere else.
func testKubeCA(t *testing.T, ctx context.Context, env *kubetest.Env, c client.Client) {
	mkNamespace(t, ctx, c, "ca-lease", nil)
	mkNamespace(t, ctx, c, "ca-injected", map[string]string{inject.LabelInject: "enabled"})
	mkNamespace(t, ctx, c, "ca-plain", nil)

	state := t.TempDir()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan Addrs, 1)
	go func() {
		done <- Run(rctx, Config{
			StateDir:      state,
			GRPCListener:  listen(t),
			AdminListener: listen(t),
			AdminAuth:     AdminAuthConfig{TokenFile: testTokenFile(t)},
			Debounce:      20 * time.Millisecond,
			Ready:         func(a Addrs) { ready <- a },
			Kube: &KubeConfig{
				Rest: env.Config, Namespace: "ca-lease", Identity: "cp-ca",
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
				StatusInterval: 300 * time.Millisecond, EventInterval: -1,
			},
		}, testLog(t))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	bundle, err := os.ReadFile(filepath.Join(state, "ca.crt"))
	if err != nil || len(bundle) == 0 {
		t.Fatalf("the control plane's CA bundle: %v (%d bytes)", err, len(bundle))
	}

	published := func(ns string) string {
		var cm corev1.ConfigMap
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: inject.CAConfigMap}, &cm)
		switch {
		case apierrors.IsNotFound(err):
			return "no ConfigMap " + inject.CAConfigMap
		case err != nil:
			return err.Error()
		case !bytes.Equal([]byte(cm.Data[inject.CAKey]), bundle):
			return "the ConfigMap's " + inject.CAKey + " differs from the control plane's ca.crt"
		}
		return ""
	}
	waitFor(t, "CA bundle in ca-injected", 10*time.Second, func() string { return published("ca-injected") })

	// A namespace labelled later gets it too; one never labelled does not.
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: "ca-plain"}, &ns); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a few publishing rounds
	if msg := published("ca-plain"); msg == "" {
		t.Fatal("ca-plain got the CA bundle before it was labelled for injection")
	}
	ns.Labels = map[string]string{inject.LabelInject: "enabled"}
	if err := c.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "CA bundle in ca-plain once labelled", 10*time.Second, func() string { return published("ca-plain") })
}
