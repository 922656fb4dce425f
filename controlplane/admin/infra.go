package admin

import (
	"net/http"
	"slices"

	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// Infrastructure is the answer of GET /v1/infrastructure: the configured
// infrastructure allowances, the names of the rules they add to every
// segment (within the segment: "namespace/segment/<rule>"), and the
// segments whose policy turns them off.
type Infrastructure struct {
	store.Infrastructure
	// Rules are the allowances in force, e.g. "bulkhead-infra-probes";
	// empty when disabled or when no sources are configured.
	Rules []string `json:"rules"`
	// DisabledSegments are the "namespace/name" of the policies with
	// spec.infrastructure.disabled, sorted.
	DisabledSegments []string `json:"disabledSegments"`
}

func (a *api) getInfrastructure(w http.ResponseWriter, _ *http.Request) {
	in := a.Store.Settings().Infrastructure
	out := Infrastructure{Infrastructure: in, Rules: []string{}, DisabledSegments: []string{}}
	if !in.Disabled {
		if len(in.ProbeSources) > 0 {
			out.Rules = append(out.Rules, compile.InfraProbes)
		}
		if len(in.MetricsSources) > 0 && len(in.MetricsPorts) > 0 {
			out.Rules = append(out.Rules, compile.InfraMetrics)
		}
		if len(in.DNSServers) > 0 {
			out.Rules = append(out.Rules, compile.InfraDNS)
		}
	}
	for _, p := range a.Store.List() {
		if p.Spec.Infrastructure != nil && p.Spec.Infrastructure.Disabled {
			out.DisabledSegments = append(out.DisabledSegments, p.Namespace+"/"+p.Name)
		}
	}
	slices.Sort(out.DisabledSegments)
	writeJSON(w, http.StatusOK, out)
}
