package harness

import (
	"net/netip"
	"testing"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
)

// cachedBenchPolicy writes the bench policy as the harness does for the
// proxy (writePolicy), reads it back as the proxy does (LoadCache) and
// compiles it: the policy the suites' tests judge messages with, and the
// client's address.
func cachedBenchPolicy(t *testing.T) (*enforce.Policy, netip.Addr) {
	t.Helper()
	dir := t.TempDir()
	client, server := netip.MustParseAddr("198.18.50.2"), netip.MustParseAddr("198.18.50.3")
	if err := writePolicy(dir, client, server); err != nil {
		t.Fatal(err)
	}
	p, ids, err := xdsclient.LoadCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := enforce.Compile(p, ids)
	if err != nil {
		t.Fatal(err)
	}
	return pol, client
}

// TestEphemeralPorts: every port the harness or a suite listens on lies
// below the lab's ephemeral range, so that no outgoing connection (or its
// TIME_WAIT) can take it from a server or proxy started later.
func TestEphemeralPorts(t *testing.T) {
	ports := []int{redisPort, iperfPort, proxyPort, adminPort, httpPort}
	for _, su := range suites {
		for _, p := range su.ports {
			ports = append(ports, int(p.Port))
		}
	}
	for _, p := range ports {
		if p <= 0 || p >= ephemeralFrom {
			t.Errorf("port %d is not below the ephemeral range (from %d)", p, ephemeralFrom)
		}
	}
	if len(ports) < 10 {
		t.Errorf("only %d ports checked: %v", len(ports), ports)
	}
}
