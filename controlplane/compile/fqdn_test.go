package compile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
)

// TestCompileFQDNPeer: FQDN peers of egress rules reach the proxy's policy
// as Peer.fqdn, lower case without a final dot, beside the other peers.
func TestCompileFQDNPeer(t *testing.T) {
	ps, err := v1alpha1.UnmarshalYAML([]byte(`apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: cart, namespace: demo}
spec:
  egress:
  - name: to-api
    peers: [{fqdn: api.example.com.}, {fqdn: "*.example.org"}, {cidr: 198.18.9.0/24}]
    ports: [{port: 443, protocol: tls}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := identity.Parse([]byte(workloadsYAML))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Compile(Input{Policies: ps, Workloads: tab.Workloads()})
	if err != nil {
		t.Fatal(err)
	}
	want := []*bulkheadv1.Rule{{
		Name: "demo/cart/to-api",
		Peers: []*bulkheadv1.Peer{
			{Peer: &bulkheadv1.Peer_Fqdn{Fqdn: "api.example.com"}},
			{Peer: &bulkheadv1.Peer_Fqdn{Fqdn: "*.example.org"}},
			{Peer: &bulkheadv1.Peer_Cidr{Cidr: "198.18.9.0/24"}},
		},
		Ports: []*bulkheadv1.Port{port(443, "tls")},
	}}
	if diff := cmp.Diff(want, out.Proxies["cart.demo"].GetEgress(), protocmp.Transform()); diff != "" {
		t.Errorf("egress rules (-want +got):\n%s", diff)
	}
}
