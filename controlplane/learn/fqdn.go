package learn

import (
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// fqdnPeer is the peer an egress flow to an address that is not a known
// workload teaches when the workload reached the address through a DNS
// name (Flow.dst_name): an FQDN peer of that name, and the name as part of
// a rule name (dots and underscores as dashes: "api.example.com" →
// "api-example-com"). False for ingress flows, flows without a name, and a
// name that is not a valid one (the flow then teaches a /32 or /128 CIDR,
// as flows without a name do).
func fqdnPeer(f *bulkheadv1.Flow) (v1alpha1.Peer, string, bool) {
	name := f.GetDstName()
	if f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS || !bulkheadv1.ValidDstName(name) {
		return v1alpha1.Peer{}, "", false
	}
	part := strings.Map(func(r rune) rune {
		if r == '.' || r == '_' {
			return '-'
		}
		return r
	}, name)
	return v1alpha1.Peer{FQDN: name}, part, true
}
