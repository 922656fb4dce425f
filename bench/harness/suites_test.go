package harness

import (
	"net/netip"
	"testing"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
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

// judge connects client to port under pol (the connection must be
// allowed) and returns the decision on a message of verb with resource and
// aux (empty: none), as the proxy judges a parsed frame.
func judge(t *testing.T, pol *enforce.Policy, client netip.Addr, port uint16, verb, resource, aux string) enforce.Decision {
	t.Helper()
	c := pol.Inbound(client, port)
	if d := c.Connect(); d.Verdict != enforce.Allow {
		t.Fatalf("connect to %d: %+v", port, d)
	}
	f := l7.Frame{Verb: []byte(verb)}
	if resource != "" {
		f.Resource = []byte(resource)
	}
	if aux != "" {
		f.Aux = []byte(aux)
	}
	return c.Message(&f)
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
