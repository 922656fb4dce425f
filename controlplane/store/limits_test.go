package store

import (
	"errors"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// TestMergeLearnedFull: learning creates no policy beyond the bound
// (ErrFull, nothing written) but still merges into existing ones.
func TestMergeLearnedFull(t *testing.T) {
	defer func(n int) { maxLearnedPolicies = n }(maxLearnedPolicies)
	maxLearnedPolicies = 2
	st, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rule := func(port int32) []v1alpha1.Rule {
		return []v1alpha1.Rule{{Name: "from-a", Origin: v1alpha1.OriginLearned, Ports: []v1alpha1.PortProtocol{{Port: port, Protocol: "tcp"}}}}
	}
	for _, name := range []string{"one", "two"} {
		if _, err := st.MergeLearned("demo", name, Ingress, rule(80)); err != nil {
			t.Fatal(err)
		}
	}
	if changed, err := st.MergeLearned("demo", "three", Ingress, rule(80)); !errors.Is(err, ErrFull) || changed {
		t.Fatalf("third policy: %v, %v; want ErrFull", changed, err)
	}
	if _, ok := st.Get("demo", "three"); ok {
		t.Fatal("the third policy was created")
	}
	if changed, err := st.MergeLearned("demo", "one", Ingress, rule(81)); err != nil || !changed {
		t.Fatalf("merge into an existing policy: %v, %v", changed, err)
	}
}
