package k8s_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/test/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The API server refuses invalid cluster policies with the field's path.
func testClusterPolicyInvalid(t *testing.T, ctx context.Context, c client.Client) {
	ports := []v1alpha1.PortProtocol{{Port: 53, Protocol: "dns"}}
	tests := []struct {
		name string
		spec v1alpha1.ClusterSegmentPolicySpec
		want string
	}{
		{"port out of range", v1alpha1.ClusterSegmentPolicySpec{Egress: []v1alpha1.Rule{{Name: "r", Ports: []v1alpha1.PortProtocol{{Port: 70000}}}}}, "spec.egress[0].ports[0].port: Invalid value: 70000"},
		{"duplicate rule names", v1alpha1.ClusterSegmentPolicySpec{Egress: []v1alpha1.Rule{{Name: "r", Ports: ports}, {Name: "r", Ports: ports}}}, `spec.egress[1]: Duplicate value: {"name":"r"}`},
		{"selector operator", v1alpha1.ClusterSegmentPolicySpec{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}, ""},
	}
	for _, tc := range tests {
		p := &v1alpha1.ClusterSegmentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: tc.spec}
		err := c.Create(ctx, p)
		if tc.want == "" { // not checked by the schema: Validate finds it
			if err == nil {
				_ = c.Delete(ctx, p)
			}
			if verr := p.Validate(); verr == nil || !strings.Contains(verr.Error(), "spec.selector") {
				t.Errorf("%s: Validate = %v", tc.name, verr)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			_ = c.Delete(ctx, p)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

// Two electors on one Lease: one leads; when it stops (releasing the
// Lease) the other leads at once; a stop that keeps the Lease makes the
// next one wait for the lease duration.
func testElection(t *testing.T, ctx context.Context, env *kube.Env, c client.Client) {
	namespace(t, ctx, c, "election", nil)
	start := func(id string, keep bool) (*k8s.Elector, func()) {
		e, err := k8s.NewElector(env.Config, slog.New(slog.DiscardHandler), k8s.ElectorOptions{
			Namespace: "election", Identity: id, KeepLeaseOnStop: keep,
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ectx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Start(ectx) }()
		return e, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Start: %v", id, err)
			}
		}
	}
	if _, err := k8s.NewElector(env.Config, nil, k8s.ElectorOptions{Namespace: "election"}); err == nil {
		t.Error("an elector without identity was built")
	}
	a, stopA := start("a", false)
	eventually(t, "a leads", func() string {
		if !a.IsLeader() {
			return "a does not lead"
		}
		return ""
	})
	b, stopB := start("b", true)
	time.Sleep(300 * time.Millisecond)
	if b.IsLeader() {
		t.Fatal("two leaders")
	}
	stopA()
	released := time.Now()
	eventually(t, "b leads", func() string {
		if !b.IsLeader() {
			return "b does not lead"
		}
		return ""
	})
	if d := time.Since(released); d > time.Second {
		t.Errorf("b took over %v after a released the Lease", d)
	}
	stopB() // keeps the Lease: a crash
	crashed := time.Now()
	a2, stopA2 := start("a", false)
	defer stopA2()
	eventually(t, "a leads again", func() string {
		if !a2.IsLeader() {
			return "a does not lead"
		}
		return ""
	})
	if d := time.Since(crashed); d < 1500*time.Millisecond {
		t.Errorf("a took a kept Lease after %v, before it expired", d)
	}
}
