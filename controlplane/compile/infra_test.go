package compile

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

// Addresses of the infrastructure (198.18.0.0/15 only).
var (
	ipKubelet = netip.MustParseAddr("198.19.10.7")   // in probeSources
	ipScraper = netip.MustParseAddr("198.19.20.5")   // the metricsSources
	ipDNS     = netip.MustParseAddr("198.18.255.10") // the dnsServers
	ipStray   = netip.MustParseAddr("198.19.11.1")   // in none
)

func infraSettings() store.Infrastructure {
	return store.Infrastructure{
		ProbeSources:   []string{"198.19.10.1/24"},
		MetricsSources: []string{"198.19.20.5/32"},
		MetricsPorts:   []int32{9121, 22},
		DNSServers:     []string{"198.18.255.10/32"},
	}
}

func cidr(s string) *bulkheadv1.Peer { return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Cidr{Cidr: s}} }

// infraNames lists the names of the rules of pp with the reserved prefix.
func infraNames(pp *bulkheadv1.ProxyPolicy) []string {
	var out []string
	for _, r := range slices.Concat(pp.Ingress, pp.Egress) {
		if strings.Contains(r.Name, "/"+v1alpha1.InfraRulePrefix) {
			out = append(out, r.Name)
		}
	}
	return out
}

func TestInfraRules(t *testing.T) {
	in := input(t)
	plain, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Settings.Infrastructure = infraSettings()
	before := cloneInput(in)
	out, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, in, protocmp.Transform(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Compile modified its input (-before +after):\n%s", diff)
	}

	redis := out.Proxies["redis-0.demo"]
	wantIngress := slices.Concat(plain.Proxies["redis-0.demo"].Ingress, []*bulkheadv1.Rule{
		{Name: "demo/redis/bulkhead-infra-probes", Peers: []*bulkheadv1.Peer{cidr("198.19.10.0/24")},
			Ports: []*bulkheadv1.Port{port(22, "tcp"), port(6379, "redis")}},
		{Name: "demo/redis/bulkhead-infra-metrics", Peers: []*bulkheadv1.Peer{cidr("198.19.20.5/32")},
			Ports: []*bulkheadv1.Port{port(22, "tcp"), port(9121, "tcp")}},
	})
	if diff := cmp.Diff(wantIngress, redis.Ingress, protocmp.Transform()); diff != "" {
		t.Errorf("redis-0 ingress (-want +got):\n%s", diff)
	}
	wantEgress := []*bulkheadv1.Rule{{Name: "demo/redis/bulkhead-infra-dns",
		Peers: []*bulkheadv1.Peer{cidr("198.18.255.10/32")}, Ports: []*bulkheadv1.Port{port(53, "dns")}}}
	if diff := cmp.Diff(wantEgress, redis.Egress, protocmp.Transform()); diff != "" {
		t.Errorf("redis-0 egress (-want +got):\n%s", diff)
	}
	if redis.Revision == plain.Proxies["redis-0.demo"].Revision {
		t.Error("revision unchanged by the allowances")
	}
	// A workload without ports gets no probe rule, but DNS and metrics.
	if got, want := infraNames(out.Proxies["cart.demo"]), []string{"demo/cart/bulkhead-infra-metrics", "demo/cart/bulkhead-infra-dns"}; !slices.Equal(got, want) {
		t.Errorf("cart's allowances = %q, want %q", got, want)
	}
	// The policies' shared rule slices were not appended to in place.
	if got := infraNames(plain.Proxies["redis-1.demo"]); got != nil {
		t.Errorf("allowances leaked into an earlier output: %q", got)
	}

	// Nothing configured: nothing added.
	for node, pp := range plain.Proxies {
		if got := infraNames(pp); got != nil {
			t.Errorf("%s: allowances without settings: %q", node, got)
		}
	}

	// Disabled globally.
	in.Settings.Infrastructure.Disabled = true
	off, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	for node, pp := range off.Proxies {
		if got := infraNames(pp); got != nil {
			t.Errorf("%s: allowances while disabled: %q", node, got)
		}
		if pp.Revision != plain.Proxies[node].Revision {
			t.Errorf("%s: disabled allowances changed the policy", node)
		}
	}

	// Disabled for the segment demo/redis only.
	in.Settings.Infrastructure.Disabled = false
	for _, p := range in.Policies {
		if p.Name == "redis" {
			p.Spec.Infrastructure = &v1alpha1.Infrastructure{Disabled: true}
		}
	}
	seg, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"redis-0.demo", "redis-1.demo"} {
		if got := infraNames(seg.Proxies[node]); got != nil {
			t.Errorf("%s: allowances of a segment that disabled them: %q", node, got)
		}
	}
	if got := infraNames(seg.Proxies["cart.demo"]); len(got) != 2 {
		t.Errorf("cart lost its allowances when redis disabled its own: %q", got)
	}
}

func TestInfraDNSKeepsUserProtocol(t *testing.T) {
	in := input(t)
	in.Policies[1].Spec.Egress = append(in.Policies[1].Spec.Egress, v1alpha1.Rule{Name: "to-dns",
		Peers: []v1alpha1.Peer{{CIDR: "198.18.255.0/24"}}, Ports: []v1alpha1.PortProtocol{{Port: 53, Protocol: "tcp"}}})
	in.Settings.Infrastructure = infraSettings()
	out, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	eg := out.Proxies["cart.demo"].Egress
	last := eg[len(eg)-1]
	if last.Name != "demo/cart/bulkhead-infra-dns" || last.Ports[0].Protocol != "tcp" {
		t.Errorf("dns allowance = %v, want port 53 as tcp like the segment's own rule", last)
	}
}

func TestInfraReservedNames(t *testing.T) {
	in := input(t)
	in.Policies[1].Spec.Egress[0].Name = "bulkhead-infra-dns"
	_, err := Compile(in)
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Compile with a rule named bulkhead-infra-dns: %v, want a reserved-name error", err)
	}
	in = input(t)
	in.Policies[0].Spec.Ingress[0].Name = "bulkhead-infra-probes-extra"
	if err := in.Policies[0].Validate(); err == nil || !strings.Contains(err.Error(), "spec.ingress[0].name") {
		t.Errorf("Validate of an ingress rule with the reserved prefix: %v", err)
	}
}

func TestInfraSettingsValidate(t *testing.T) {
	bad := []store.Infrastructure{
		{ProbeSources: []string{"10.0.0.1"}},
		{DNSServers: []string{"not-a-cidr/8"}},
		{MetricsPorts: []int32{0}},
		{MetricsPorts: []int32{9090, 9090}},
		{MetricsSources: make([]string, store.MaxInfraEntries+1)},
	}
	for _, b := range bad {
		in := input(t)
		in.Settings.Infrastructure = b
		if _, err := Compile(in); err == nil || !strings.Contains(err.Error(), "infrastructure") {
			t.Errorf("Compile with %+v: %v, want an infrastructure error", b, err)
		}
	}
}

// TestInfraEnforced runs the compiled allowances through the data plane's
// engine: in protect mode a probe from a configured source is allowed by
// the allowance although the segment's own rules do not allow its source;
// a stray source is still denied, and is allowed by nothing once the
// allowances are disabled.
func TestInfraEnforced(t *testing.T) {
	in := input(t)
	in.Settings.Infrastructure = infraSettings()
	ids := func(out *Output) []*bulkheadv1.Identity {
		var l []*bulkheadv1.Identity
		for _, id := range out.Identities {
			l = append(l, id)
		}
		return l
	}
	engine := func(out *Output, node string) *enforce.Policy {
		t.Helper()
		p, err := enforce.Compile(out.Proxies[node], ids(out))
		if err != nil {
			t.Fatalf("enforce.Compile %s: %v", node, err)
		}
		return p
	}
	out, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Proxies["redis-0.demo"].Mode != bulkheadv1.Mode_MODE_PROTECT {
		t.Fatal("fixture: demo/redis is not in protect mode")
	}
	redis := engine(out, "redis-0.demo")
	deny := enforce.Decision{Verdict: enforce.Deny, Enforced: true, Reason: enforce.NoRule}
	for _, c := range []struct {
		name string
		src  netip.Addr
		port uint16
		want enforce.Decision
	}{
		{"probe", ipKubelet, 6379, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/bulkhead-infra-probes"}},
		{"probe on another port", ipKubelet, 22, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/bulkhead-infra-probes"}},
		{"scrape", ipScraper, 9121, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/bulkhead-infra-metrics"}},
		{"scraper on a port not scraped", ipScraper, 6379, deny},
		{"stray", ipStray, 6379, deny},
	} {
		conn := redis.Inbound(c.src, c.port)
		if got := conn.Connect(); got != c.want {
			t.Errorf("%s: Connect() = %+v, want %+v", c.name, got, c.want)
		}
	}
	cart := engine(out, "cart.demo")
	conn := cart.Outbound(ipDNS, 53)
	if got := conn.Connect(); got.Verdict != enforce.Allow || got.Rule != "demo/cart/bulkhead-infra-dns" {
		t.Errorf("cart to the resolver: Connect() = %+v, want allowed by demo/cart/bulkhead-infra-dns", got)
	}

	in.Settings.Infrastructure.Disabled = true
	off, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	conn = engine(off, "redis-0.demo").Inbound(ipKubelet, 6379)
	if got := conn.Connect(); got != deny {
		t.Errorf("probe with the allowances disabled: Connect() = %+v, want %+v", got, deny)
	}
}
