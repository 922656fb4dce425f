package compile

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const policiesYAML = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: redis, namespace: demo}
spec:
  mode: protect
  ingress:
  - name: from-cart
    origin: learned
    peers: [{segment: cart}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [set, GET, config|get, get]}
  - name: admins
    peers: [{segment: ops, namespace: tools}, {namespace: monitoring}, {cidr: 198.18.5.7/24}]
    ports: [{port: 6379, protocol: redis}, {port: 22}]
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: cart, namespace: demo}
spec:
  egress:
  - name: to-redis
    peers: [{segment: redis}]
    ports: [{port: 6379, protocol: redis}]
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: empty, namespace: demo}
spec: {mode: monitor}
`

const workloadsYAML = `workloads:
- name: redis-0
  namespace: demo
  segment: redis
  ips: [198.18.0.11, 198.18.0.10]
  ports: [{port: 6379, protocol: redis}, {port: 22}]
- name: redis-1
  namespace: demo
  segment: redis
  ips: [198.18.0.12]
  ports: [{port: 22}, {port: 6379, protocol: redis}]
- name: cart
  namespace: demo
  ips: [198.18.0.20]
- name: web
  namespace: shop
  ips: [198.18.1.1]
`

func input(t *testing.T) Input {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML([]byte(policiesYAML))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := identity.Parse([]byte(workloadsYAML))
	if err != nil {
		t.Fatal(err)
	}
	return Input{Policies: ps, Workloads: tab.Workloads(),
		Settings: store.Settings{DefaultMode: v1alpha1.ModeMonitor, NamespaceModes: map[string]v1alpha1.Mode{"shop": v1alpha1.ModeProtect}}}
}

func seg(s string) *bulkheadv1.Peer {
	return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Segment{Segment: s}}
}
func port(p uint32, proto string) *bulkheadv1.Port {
	return &bulkheadv1.Port{Port: p, Protocol: proto}
}

var ignoreRevision = protocmp.IgnoreFields(&bulkheadv1.ProxyPolicy{}, "revision")

func TestCompile(t *testing.T) {
	in := input(t)
	before := cloneInput(in)
	out, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, in, protocmp.Transform(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("Compile modified its input (-before +after):\n%s", diff)
	}

	redisRules := []*bulkheadv1.Rule{{
		Name: "demo/redis/admins",
		Peers: []*bulkheadv1.Peer{
			seg("tools/ops"),
			{Peer: &bulkheadv1.Peer_Namespace{Namespace: "monitoring"}},
			{Peer: &bulkheadv1.Peer_Cidr{Cidr: "198.18.5.0/24"}},
		},
		Ports: []*bulkheadv1.Port{port(22, "tcp"), port(6379, "redis")},
	}, {
		Name:  "demo/redis/from-cart",
		Peers: []*bulkheadv1.Peer{seg("demo/cart")},
		Ports: []*bulkheadv1.Port{port(6379, "redis")},
		Redis: &bulkheadv1.RedisMatch{Commands: []string{"CONFIG|GET", "GET", "SET"}},
	}}
	redisProxy := &bulkheadv1.ProxyPolicy{
		Segment: "redis", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ports:   []*bulkheadv1.Port{port(22, "tcp"), port(6379, "redis")},
		Ingress: redisRules,
	}
	want := map[string]*bulkheadv1.ProxyPolicy{
		"redis-0.demo": redisProxy,
		"redis-1.demo": redisProxy,
		"cart.demo": {
			Segment: "cart", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_MONITOR,
			Egress: []*bulkheadv1.Rule{{Name: "demo/cart/to-redis", Peers: []*bulkheadv1.Peer{seg("demo/redis")}, Ports: []*bulkheadv1.Port{port(6379, "redis")}}},
		},
		"web.shop": {Segment: "web", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT},
	}
	if diff := cmp.Diff(want, out.Proxies, protocmp.Transform(), ignoreRevision); diff != "" {
		t.Errorf("Proxies (-want +got):\n%s", diff)
	}

	wantIDs := map[string]*bulkheadv1.Identity{
		"demo/redis-0": {Workload: "redis-0", Namespace: "demo", Segment: "demo/redis", Ips: []string{"198.18.0.10", "198.18.0.11"}},
		"demo/redis-1": {Workload: "redis-1", Namespace: "demo", Segment: "demo/redis", Ips: []string{"198.18.0.12"}},
		"demo/cart":    {Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{"198.18.0.20"}},
		"shop/web":     {Workload: "web", Namespace: "shop", Segment: "shop/web", Ips: []string{"198.18.1.1"}},
	}
	if diff := cmp.Diff(wantIDs, out.Identities, protocmp.Transform()); diff != "" {
		t.Errorf("Identities (-want +got):\n%s", diff)
	}

	wantSegs := []SegmentInfo{
		{Namespace: "demo", Name: "cart", Mode: v1alpha1.ModeMonitor, Workloads: []string{"cart"}},
		{Namespace: "demo", Name: "empty", Mode: v1alpha1.ModeMonitor},
		{Namespace: "demo", Name: "redis", Mode: v1alpha1.ModeProtect, Workloads: []string{"redis-0", "redis-1"}},
		{Namespace: "shop", Name: "web", Mode: v1alpha1.ModeProtect, Workloads: []string{"web"}},
	}
	if diff := cmp.Diff(wantSegs, out.Segments); diff != "" {
		t.Errorf("Segments (-want +got):\n%s", diff)
	}

	revRE := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for node, pp := range out.Proxies {
		if !revRE.MatchString(pp.Revision) {
			t.Errorf("%s: revision %q", node, pp.Revision)
		}
	}
	if a, b := out.Proxies["redis-0.demo"].Revision, out.Proxies["redis-1.demo"].Revision; a != b {
		t.Errorf("equal policies got revisions %s and %s", a, b)
	}
	if a, b := out.Proxies["cart.demo"].Revision, out.Proxies["web.shop"].Revision; a == b {
		t.Errorf("different policies share revision %s", a)
	}
}

func cloneInput(in Input) Input {
	out := Input{Settings: in.Settings}
	for _, p := range in.Policies {
		out.Policies = append(out.Policies, p.DeepCopy())
	}
	tab, _ := identity.Parse([]byte(workloadsYAML))
	out.Workloads = tab.Workloads()
	return out
}

func TestDeterministic(t *testing.T) {
	in := input(t)
	first, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		in := input(t)
		r.Shuffle(len(in.Policies), func(i, j int) { in.Policies[i], in.Policies[j] = in.Policies[j], in.Policies[i] })
		r.Shuffle(len(in.Workloads), func(i, j int) { in.Workloads[i], in.Workloads[j] = in.Workloads[j], in.Workloads[i] })
		for _, p := range in.Policies {
			r.Shuffle(len(p.Spec.Ingress), func(i, j int) { p.Spec.Ingress[i], p.Spec.Ingress[j] = p.Spec.Ingress[j], p.Spec.Ingress[i] })
		}
		out, err := Compile(in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, out, protocmp.Transform()); diff != "" {
			t.Fatalf("round %d: shuffled input compiled differently (-first +got):\n%s", i, diff)
		}
	}
}

func TestRevisionFollowsContent(t *testing.T) {
	base, err := Compile(input(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		edit    func(in *Input)
		changed []string // nodes whose revision changes
	}{
		{"add a command", func(in *Input) {
			in.Policies[0].Spec.Ingress[0].Redis.Commands = append(in.Policies[0].Spec.Ingress[0].Redis.Commands, "del")
		}, []string{"redis-0.demo", "redis-1.demo"}},
		{"namespace default", func(in *Input) { in.Settings.NamespaceModes["demo"] = v1alpha1.ModeDiscover }, []string{"cart.demo"}},
		{"cluster default", func(in *Input) { in.Settings.DefaultMode = v1alpha1.ModeProtect }, []string{"cart.demo"}},
		{"a workload's port", func(in *Input) { in.Workloads[1].Ports = nil }, []string{"redis-0.demo"}},
		{"an IP only", func(in *Input) { in.Workloads[0].IPs = []netip.Addr{netip.MustParseAddr("198.18.0.99")} }, nil},
		{"case of a command", func(in *Input) {
			in.Policies[0].Spec.Ingress[0].Redis.Commands = []string{"SET", "get", "CONFIG|GET"}
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := input(t)
			c.edit(&in)
			out, err := Compile(in)
			if err != nil {
				t.Fatal(err)
			}
			var changed []string
			for node, pp := range out.Proxies {
				if pp.Revision != base.Proxies[node].Revision {
					changed = append(changed, node)
				}
			}
			if diff := cmp.Diff(c.changed, changed, cmpopts.SortSlices(func(a, b string) bool { return a < b }), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("changed revisions (-want +got):\n%s", diff)
			}
		})
	}
	// The revision is the hash of the policy without it.
	pp := proto.Clone(base.Proxies["cart.demo"]).(*bulkheadv1.ProxyPolicy)
	want := pp.Revision
	if got, _ := revision(pp); got != want || pp.Revision != want {
		t.Fatalf("revision() = %s (field %s), want %s", got, pp.Revision, want)
	}
}

func TestSelector(t *testing.T) {
	const sel = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: b-cache, namespace: demo}
spec:
  selector: {matchLabels: {app: redis}}
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: a-cache, namespace: demo}
spec:
  mode: discover
  selector: {matchExpressions: [{key: tier, operator: In, values: [cache]}]}
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: elsewhere, namespace: shop}
spec:
  selector: {matchLabels: {app: redis}}
`
	ps, err := v1alpha1.UnmarshalYAML([]byte(sel))
	if err != nil {
		t.Fatal(err)
	}
	ws := []identity.Workload{
		{Name: "r1", Namespace: "demo", Segment: "redis", Labels: map[string]string{"app": "redis"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.0.1")}},
		{Name: "r2", Namespace: "demo", Segment: "redis", Labels: map[string]string{"app": "redis", "tier": "cache"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}},
		{Name: "r3", Namespace: "demo", Segment: "redis", Labels: map[string]string{"app": "other"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.0.3")}},
		{Name: "r4", Namespace: "demo", IPs: []netip.Addr{netip.MustParseAddr("198.18.0.4")}},
	}
	out, err := Compile(Input{Policies: ps, Workloads: ws})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, id := range out.Identities {
		got[k] = id.Segment
	}
	want := map[string]string{"demo/r1": "demo/b-cache", "demo/r2": "demo/a-cache", "demo/r3": "demo/redis", "demo/r4": "demo/r4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("segments (-want +got):\n%s", diff)
	}
	if m := out.Proxies["r2.demo"].Mode; m != bulkheadv1.Mode_MODE_DISCOVER {
		t.Fatalf("r2 mode %v", m)
	}
}

func TestCompileRefuses(t *testing.T) {
	ip := netip.MustParseAddr
	cases := []struct {
		name string
		edit func(t *testing.T, in *Input)
		want string
	}{
		{"invalid policy", func(_ *testing.T, in *Input) { in.Policies[1].Spec.Egress[0].Ports[0].Port = 0 }, "policy demo/cart: spec.egress[0].ports[0].port"},
		{"nil policy", func(_ *testing.T, in *Input) { in.Policies[1] = nil }, "policy 2: nil"},
		{"policy twice", func(_ *testing.T, in *Input) { in.Policies = append(in.Policies, in.Policies[0].DeepCopy()) }, "policy demo/redis: given twice"},
		{"bad selector", func(t *testing.T, in *Input) {
			in.Policies[2].Spec.Selector = selector(t, `{"matchExpressions":[{"key":"a","operator":"Near"}]}`)
		}, "policy demo/empty: spec.selector"},
		{"workload twice", func(_ *testing.T, in *Input) { in.Workloads = append(in.Workloads, in.Workloads[0]) }, "given twice"},
		{"shared IP", func(_ *testing.T, in *Input) { in.Workloads[0].IPs = append(in.Workloads[0].IPs, ip("198.18.1.1")) }, "IP 198.18.1.1 is also"},
		{"invalid IP", func(_ *testing.T, in *Input) { in.Workloads[0].IPs = append(in.Workloads[0].IPs, netip.Addr{}) }, "invalid IP"},
		{"no name", func(_ *testing.T, in *Input) { in.Workloads[0].Name = "" }, "name and namespace are required"},
		{"node id clash", func(_ *testing.T, in *Input) {
			in.Workloads = append(in.Workloads, identity.Workload{Name: "web.shop", Namespace: "x"}, identity.Workload{Name: "web", Namespace: "shop.x"})
		}, "node id web.shop.x"},
		{"port protocol", func(_ *testing.T, in *Input) { in.Workloads[1].Ports[0].Protocol = "gopher" }, `unknown protocol "gopher"`},
		{"settings", func(_ *testing.T, in *Input) { in.Settings.DefaultMode = "enforce" }, "settings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := input(t)
			c.edit(t, &in)
			out, err := Compile(in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile() = %v, %v; want an error containing %q", out, err, c.want)
			}
		})
	}
}

func selector(t *testing.T, js string) *metav1.LabelSelector {
	t.Helper()
	var s metav1.LabelSelector
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}
