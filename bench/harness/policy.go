package harness

import (
	"fmt"
	"net/netip"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
)

// allowedRedis are the only Redis commands the Bulkhead arm allows: what
// redis-benchmark -t get,set and the idle connections send. Everything
// else (CONFIG, which redis-benchmark also sends at start, FLUSHALL…) is
// denied.
var allowedRedis = []string{"GET", "SET"}

// benchPolicy is the server's policy in protect mode: the client may send
// GET and SET on the Redis port, GET of httpPath on the HTTP port, and
// anything on the iperf3 port (an L4-only rule, so that connection is
// spliced). Other peers, ports, commands, methods and paths (deniedPath)
// are denied.
func benchPolicy() *bulkheadv1.ProxyPolicy {
	client := []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "bench/client"}}}
	p := &bulkheadv1.ProxyPolicy{
		Segment:   "server",
		Namespace: "bench",
		Mode:      bulkheadv1.Mode_MODE_PROTECT,
		Ports: []*bulkheadv1.Port{
			{Port: redisPort, Protocol: "redis"},
			{Port: iperfPort, Protocol: "tcp"},
			{Port: httpPort, Protocol: "http"},
		},
		Ingress: []*bulkheadv1.Rule{
			{
				Name:  "bench/server/from-client-redis-6379",
				Peers: client,
				Ports: []*bulkheadv1.Port{{Port: redisPort, Protocol: "redis"}},
				Redis: &bulkheadv1.RedisMatch{Commands: allowedRedis},
			},
			{
				Name:  "bench/server/from-client-tcp-5201",
				Peers: client,
				Ports: []*bulkheadv1.Port{{Port: iperfPort, Protocol: "tcp"}},
			},
			{
				Name:  "bench/server/from-client-http-8080",
				Peers: client,
				Ports: []*bulkheadv1.Port{{Port: httpPort, Protocol: "http"}},
				L7: []*bulkheadv1.L7Rule{{
					Verbs:     []string{"GET"},
					Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Exact{Exact: httpPath}}},
				}},
			},
		},
		Revision: "bench",
	}
	for _, su := range suites {
		p.Ports = append(p.Ports, su.ports...)
		p.Ingress = append(p.Ingress, su.rules(client)...)
	}
	return p
}

func benchIdentities(client, server netip.Addr) []*bulkheadv1.Identity {
	return []*bulkheadv1.Identity{
		{Workload: "client", Namespace: "bench", Segment: "bench/client", Ips: []string{client.String()}},
		{Workload: "server", Namespace: "bench", Segment: "bench/server", Ips: []string{server.String()}},
	}
}

// writePolicy checks the policy the way the proxy will (enforce.Compile)
// and writes it with the identities into dir, the proxy's cache directory.
func writePolicy(dir string, client, server netip.Addr) error {
	p, ids := benchPolicy(), benchIdentities(client, server)
	if _, err := enforce.Compile(p, ids); err != nil {
		return fmt.Errorf("harness: bench policy: %w", err)
	}
	if err := xdsclient.WriteCache(dir, nodeID, p, ids); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	return nil
}
