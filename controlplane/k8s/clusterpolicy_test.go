package k8s_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func clusterPolicy(t *testing.T, doc string) *v1alpha1.ClusterSegmentPolicy {
	t.Helper()
	var p v1alpha1.ClusterSegmentPolicy
	if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// Cluster policies are compiled together with the namespaced ones: their
// rules join the selected segments' rules (either allows), modes stay the
// segments'.
func TestWithClusterPolicies(t *testing.T) {
	w := func(ns, name string, ip string, labels map[string]string) identity.Workload {
		return identity.Workload{Name: name, Namespace: ns, Segment: name, IPs: []netip.Addr{netip.MustParseAddr(ip)}, Labels: labels}
	}
	workloads := []identity.Workload{
		w("shop", "cart", "198.18.72.1", map[string]string{"tier": "web"}),
		w("shop", "redis", "198.18.72.2", map[string]string{"tier": "data"}),
		w("pay", "ledger", "198.18.72.3", map[string]string{"tier": "data"}),
		w("kube-system", "coredns", "198.18.72.4", map[string]string{"k8s-app": "kube-dns"}),
	}
	nsLabels := map[string]map[string]string{"shop": {"team": "a"}, "pay": {"team": "b"}, "kube-system": nil}
	own := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "redis"}}
	own.Spec.Mode = v1alpha1.ModeProtect
	own.Spec.Ingress = []v1alpha1.Rule{{Name: "from-cart", Origin: v1alpha1.OriginUser, Peers: []v1alpha1.Peer{{Segment: "cart"}}, Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}}}
	dns := clusterPolicy(t, `metadata: {name: dns}
spec:
  egress:
  - name: to-coredns
    peers: [{namespace: kube-system, segment: coredns}]
    ports: [{port: 53, protocol: dns}]
`)
	data := clusterPolicy(t, `metadata: {name: scrape}
spec:
  namespaceSelector: {matchLabels: {team: a}}
  selector: {matchLabels: {tier: data}}
  ingress:
  - name: from-prometheus
    peers: [{namespace: monitoring, segment: prometheus}]
    ports: [{port: 9121}]
`)
	bad := clusterPolicy(t, `metadata: {name: bad}
spec:
  ingress:
  - name: x
    ports: [{port: 70000}]
`)
	clash := clusterPolicy(t, `metadata: {name: clash}
spec:
  selector: {matchLabels: {tier: web}}
  ingress:
  - name: r
    ports: [{port: 1}]
`)
	cartOwn := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	cartOwn.Spec.Ingress = []v1alpha1.Rule{{Name: "cluster.clash.r", Ports: []v1alpha1.PortProtocol{{Port: 2}}}}
	ps := []*v1alpha1.SegmentPolicy{cartOwn, own}
	before := own.DeepCopy()

	got, err := k8s.WithClusterPolicies(ps, []*v1alpha1.ClusterSegmentPolicy{bad, clash, data, dns}, workloads, nsLabels)
	if err == nil || !strings.Contains(err.Error(), "cluster policy bad: spec.ingress[0].ports[0].port") || !strings.Contains(err.Error(), `cluster policy clash in segment shop/cart: ingress: rule "cluster.clash.r" exists already`) {
		t.Errorf("error = %v", err)
	}
	if d := cmp.Diff(before, own); d != "" {
		t.Errorf("the input policy was modified (-before +after):\n%s", d)
	}
	out, err := compile.Compile(compile.Input{Policies: got, Workloads: workloads, Settings: store.Settings{DefaultMode: v1alpha1.ModeMonitor}})
	if err != nil {
		t.Fatal(err)
	}
	names := func(node string, egress bool) []string {
		pp := out.Proxies[node]
		rules := pp.GetIngress()
		if egress {
			rules = pp.GetEgress()
		}
		var n []string
		for _, r := range rules {
			n = append(n, r.GetName())
		}
		return n
	}
	for _, tc := range []struct {
		node   string
		egress bool
		want   []string
		mode   string
	}{
		{"redis.shop", false, []string{"shop/redis/cluster.scrape.from-prometheus", "shop/redis/from-cart"}, "MODE_PROTECT"},
		{"redis.shop", true, []string{"shop/redis/cluster.dns.to-coredns"}, "MODE_PROTECT"},
		{"cart.shop", false, []string{"shop/cart/cluster.clash.r"}, "MODE_MONITOR"}, // its own rule; the clash left out
		{"cart.shop", true, []string{"shop/cart/cluster.dns.to-coredns"}, "MODE_MONITOR"},
		{"ledger.pay", false, nil, "MODE_MONITOR"}, // team b: not scraped
		{"ledger.pay", true, []string{"pay/ledger/cluster.dns.to-coredns"}, "MODE_MONITOR"},
	} {
		if n := names(tc.node, tc.egress); !slices.Equal(n, tc.want) {
			t.Errorf("%s egress=%v: rules %v, want %v", tc.node, tc.egress, n, tc.want)
		}
		if m := out.Proxies[tc.node].GetMode().String(); m != tc.mode {
			t.Errorf("%s: mode %s, want %s", tc.node, m, tc.mode)
		}
	}
	// Peers resolve in the cluster policy's terms.
	r := out.Proxies["redis.shop"].GetIngress()[0]
	if r.GetPeers()[0].GetSegment() != "monitoring/prometheus" || r.GetPorts()[0].GetPort() != 9121 {
		t.Errorf("scrape rule = %v", r)
	}
	// No cluster policy: the same slice back.
	if same, err := k8s.WithClusterPolicies(ps, nil, workloads, nsLabels); err != nil || len(same) != 2 || same[1] != own {
		t.Errorf("without cluster policies: %v %v", same, err)
	}
}
