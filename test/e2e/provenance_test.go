package e2e

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/demo"
)

// The tests compare learned rules with what they expect; where and when a
// rule was learned (its learnedFrom: the reporting node, the flow, the
// time) differs from run to run and is checked on its own.

// withoutProvenance returns the export y in export form without the rules'
// learnedFrom, and the reporting nodes it named, one per learned rule that
// had it.
func withoutProvenance(y string) (string, []string, error) {
	ps, err := v1alpha1.UnmarshalYAML([]byte(y))
	if err != nil {
		return "", nil, fmt.Errorf("the export does not parse: %w", err)
	}
	var nodes []string
	for _, p := range ps {
		for _, rules := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
			for i := range rules {
				if rules[i].LearnedFrom != nil {
					nodes = append(nodes, rules[i].LearnedFrom.Node)
				}
			}
			clearProvenance(rules)
		}
	}
	out, err := v1alpha1.MarshalYAML(ps)
	if err != nil {
		return "", nil, err
	}
	return string(out), nodes, nil
}

// clearProvenance drops learnedFrom from rules, in place.
func clearProvenance(rules []v1alpha1.Rule) []v1alpha1.Rule {
	for i := range rules {
		rules[i].LearnedFrom = nil
	}
	return rules
}

// checkExport checks the CLI's export out: byte for byte the admin API's
// export (exported), and, but for provenance, want; and every learned rule
// names the server's proxy as the node that taught it.
func checkExport(t *testing.T, e *demo.Env, out, exported, want string) {
	t.Helper()
	if out != exported {
		t.Errorf("bulkhead policy export differs from the admin API's export (-api +cli):\n%s", cmp.Diff(exported, out))
	}
	got, nodes, err := withoutProvenance(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got != want {
		t.Errorf("bulkhead policy export without learnedFrom (-want +got):\n%s", cmp.Diff(want, got))
	}
	if len(nodes) == 0 {
		t.Errorf("no learned rule records where it was learned (learnedFrom):\n%s", out)
	}
	for _, n := range nodes {
		if n != e.Node() {
			t.Errorf("a learned rule names node %q as its teacher, want the server's proxy %q", n, e.Node())
		}
	}
}
