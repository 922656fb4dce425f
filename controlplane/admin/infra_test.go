package admin

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

func TestInfrastructure(t *testing.T) {
	e := newEnv(t)
	code, _, b := e.do(t, "GET", "/v1/infrastructure", nil)
	if code != 200 {
		t.Fatalf("GET: %d %s", code, b)
	}
	if diff := cmp.Diff(Infrastructure{Rules: []string{}, DisabledSegments: []string{}}, decode[Infrastructure](t, b)); diff != "" {
		t.Errorf("nothing configured (-want +got):\n%s", diff)
	}

	in := store.Infrastructure{ProbeSources: []string{"198.19.10.0/24"}, DNSServers: []string{"198.18.255.10/32"}, MetricsPorts: []int32{9090}}
	if err := e.st.SetInfrastructure(in); err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(twoPolicies, "  mode: monitor\n", "  mode: monitor\n  infrastructure: {disabled: true}\n", 1)
	if code, _, b := e.do(t, "POST", "/v1/policies/apply", strings.NewReader(off)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	_, _, b = e.do(t, "GET", "/v1/infrastructure", nil)
	// No metrics sources: no metrics rule although a port is given.
	want := Infrastructure{Infrastructure: in, Rules: []string{"bulkhead-infra-probes", "bulkhead-infra-dns"}, DisabledSegments: []string{"demo/redis"}}
	if diff := cmp.Diff(want, decode[Infrastructure](t, b)); diff != "" {
		t.Errorf("configured (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(b), `"probeSources": [`) {
		t.Errorf("answer does not show the settings' own field names: %s", b)
	}

	// The export is the user's policy: its choice, no compiled allowance.
	_, _, exp := e.do(t, "GET", "/v1/policies/export", nil)
	if !strings.Contains(string(exp), "disabled: true") || strings.Contains(string(exp), "bulkhead-infra-") {
		t.Errorf("export:\n%s", exp)
	}

	in.Disabled = true
	if err := e.st.SetInfrastructure(in); err != nil {
		t.Fatal(err)
	}
	_, _, b = e.do(t, "GET", "/v1/infrastructure", nil)
	if got := decode[Infrastructure](t, b); len(got.Rules) != 0 || !got.Disabled {
		t.Errorf("disabled: %s", b)
	}
}
