package harness

import (
	"context"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// suite is a protocol's scenario group (sql, dns, kafka, tls): what it
// adds to the run, each in its own file. The three arms and the
// measurement are the harness's own (scenario, measure); a suite brings
// its servers, its part of the Bulkhead policy and its scenarios.
type suite struct {
	// group is what Options.Scenarios selects it by; it is in Groups.
	group string
	// ports are the server ports it declares in the policy, with their
	// protocols.
	ports []*bulkheadv1.Port
	// rules are its ingress rules for the client's segment (peers).
	rules func(peers []*bulkheadv1.Peer) []*bulkheadv1.Rule
	// setup starts its servers in b.server, pinned to loadCPU, prepares
	// their data, and waits until they serve. Called only when the group
	// is selected; processes started with b.server.Start end with the lab.
	setup func(ctx context.Context, b *bench) error
	// scenarios are its loads, each with this group. Their run funcs may
	// check, before the load, that the Bulkhead arm denies what the
	// policy does not allow (b.currentArm says which arm runs).
	scenarios func(b *bench) []scenario
	// about is the suite's paragraph in the report: server, load tool,
	// policy and checks, in Markdown.
	about string
}

// suites are the protocol groups beyond Redis, HTTP and TCP bulk.
var suites = []suite{dnsSuite, tlsSuite, sqlSuite, kafkaSuite}

// suiteGroups are the groups of suites, for Groups.
func suiteGroups() []string {
	gs := make([]string, 0, len(suites))
	for _, s := range suites {
		gs = append(gs, s.group)
	}
	return gs
}
