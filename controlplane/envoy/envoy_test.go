package envoy

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The small fixed policy the golden files pin: an Envoy sidecar in protect
// (HTTP matchers, a namespace peer, a CIDR peer with gRPC methods), a
// proxyless gRPC server in monitor, an Envoy sidecar in discover. gRPC
// ports are declared "http" and gRPC methods written as HTTP matchers
// (POST + path): v1alpha1 does not know "http2" (nor so the grpc matcher's
// port) yet. Both compile to the same L7Rule, which is what this package
// reads.
const fixturePolicies = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: demo}
spec:
  mode: protect
  ingress:
  - name: from-web
    peers: [{segment: web}]
    ports: [{port: 8080, protocol: http}]
    http:
      methods: [GET, HEAD]
      paths: [/healthz, /static/*, "/users/{id}/orders", "/files/{*}"]
      hosts: [api.demo, "*.example.com"]
  - name: from-ops
    peers: [{namespace: ops}]
    ports: [{port: 8080, protocol: http}]
  - name: grpc-from-lab
    peers: [{cidr: 198.19.0.0/24}, {segment: greeter}]
    ports: [{port: 50051, protocol: http}]
    http: {methods: [POST], paths: [/demo.Api/Get, /demo.Admin/*]}
  - name: from-nobody
    peers: [{segment: ghost}]
    ports: [{port: 8080, protocol: http}]
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: greeter, namespace: demo}
spec:
  mode: monitor
  ingress:
  - name: from-web
    peers: [{segment: web}]
    ports: [{port: 50051, protocol: http}]
    http: {methods: [POST], paths: [/grpc.health.v1.Health/Check]}
  egress:
  - name: to-api
    peers: [{segment: api}]
    ports: [{port: 50051, protocol: http}]
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: cart, namespace: demo}
spec:
  mode: discover
  ingress:
  - name: anyone
    ports: [{port: 8080, protocol: tcp}]
`

const fixtureWorkloads = `workloads:
- name: api
  namespace: demo
  ips: [198.18.10.10]
  ports: [{port: 8080, protocol: http}, {port: 50051, protocol: http}, {port: 6379, protocol: redis}]
  sidecar: envoy
- name: greeter
  namespace: demo
  ips: [198.18.10.30]
  ports: [{port: 50051, protocol: http}]
  sidecar: grpc
- name: cart
  namespace: demo
  ips: [198.18.10.40]
  ports: [{port: 8080, protocol: http}]
  sidecar: envoy
- name: web-1
  namespace: demo
  segment: web
  ips: [198.18.10.20]
- name: web-2
  namespace: demo
  segment: web
  ips: [198.18.10.21]
- name: prober
  namespace: ops
  ips: [198.18.11.1]
`

// fixture compiles the fixture, with policies edited by edit (may be nil).
func fixture(t testing.TB, edit func([]*v1alpha1.SegmentPolicy), workloads string) Input {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML([]byte(fixturePolicies))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(ps)
	}
	tab, err := identity.Parse([]byte(workloads))
	if err != nil {
		t.Fatal(err)
	}
	out, err := compile.Compile(compile.Input{Policies: ps, Workloads: tab.Workloads(), Settings: store.Settings{}})
	if err != nil {
		t.Fatal(err)
	}
	return Input{Output: out, Workloads: tab.Workloads()}
}

func compileFixture(t testing.TB) *Result {
	t.Helper()
	res, err := NewCompiler(Options{}).Compile(fixture(t, nil, fixtureWorkloads))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// nodeJSON renders a node's resources, type by type, as one JSON document.
func nodeJSON(t *testing.T, nc *NodeConfig) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("{\n")
	for ti, rs := range nc.Resources {
		if ti > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`"` + typeName(ti) + `": [`)
		for i, r := range rs {
			if i > 0 {
				b.WriteString(",")
			}
			js, err := MarshalJSON(r.Message)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(js)
		}
		b.WriteString("]")
	}
	b.WriteString("\n}\n")
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		t.Fatalf("%s: %v", nc.Node, err)
	}
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; run with -update if intended):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	res := compileFixture(t)
	if got, want := slices.Sorted(maps.Keys(res.Nodes)), []string{"api.demo", "cart.demo", "greeter.demo"}; !slices.Equal(got, want) {
		t.Fatalf("nodes = %v, want %v", got, want)
	}
	for node, nc := range res.Nodes {
		golden(t, node+".json", nodeJSON(t, nc))
	}
	for _, kind := range []string{"envoy", "grpc"} {
		o := BootstrapOptions{Node: "api.demo", ControlPlane: "198.18.10.1:15010"}
		var got []byte
		if kind == "envoy" {
			b, err := Bootstrap(o)
			if err != nil {
				t.Fatal(err)
			}
			if got, err = MarshalJSON(b); err != nil {
				t.Fatal(err)
			}
		} else {
			var err error
			if got, err = GRPCBootstrap(o); err != nil {
				t.Fatal(err)
			}
		}
		golden(t, "bootstrap-"+kind+".json", got)
	}
}

// TestValidate runs protoc-gen-validate over every generated resource and
// every message packed inside it.
func TestValidate(t *testing.T) {
	res := compileFixture(t)
	n := 0
	for _, nc := range res.Nodes {
		for _, rs := range nc.Resources {
			for _, r := range rs {
				n++
				if err := Validate(r.Message); err != nil {
					t.Errorf("%s %s: %v", nc.Node, r.Name, err)
				}
			}
		}
		if err := CheckReferences(nc); err != nil {
			t.Error(err)
		}
	}
	if n < 15 {
		t.Errorf("validated only %d resources", n)
	}
	b, err := Bootstrap(BootstrapOptions{Node: "api.demo", ControlPlane: "bulkhead.bulkhead-system.svc:15010"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(b); err != nil {
		t.Errorf("bootstrap: %v", err)
	}
	sb, err := StaticBootstrap(res.Nodes["api.demo"], BootstrapOptions{Node: "api.demo", ControlPlane: "198.18.10.1:15010"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(sb); err != nil {
		t.Errorf("static bootstrap: %v", err)
	}
}

// TestValidateDescendsIntoAny: an RBAC policy without principals, packed
// in an RBACPerRoute in a route's typed_per_filter_config, passes the
// route's own ValidateAll but not Validate.
func TestValidateDescendsIntoAny(t *testing.T) {
	bad, err := toAny(&rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{
		"demo/api/x": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "v", Domains: []string{"*"}, TypedPerFilterConfig: map[string]*anypb.Any{FilterRBAC: bad},
	}}}
	if err := rc.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll already refuses it: %v", err)
	}
	err = Validate(rc)
	if err == nil || !strings.Contains(err.Error(), "Principals") || !strings.Contains(err.Error(), `typed_per_filter_config["envoy.filters.http.rbac"](RBACPerRoute)`) {
		t.Errorf("Validate = %v, want a Principals error at the packed policy", err)
	}
	unknown := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "v", Domains: []string{"*"}, TypedPerFilterConfig: map[string]*anypb.Any{"x": {TypeUrl: "type.googleapis.com/no.such.Type"}},
	}}}
	if err := Validate(unknown); err == nil {
		t.Error("Validate accepts an Any of an unknown type")
	}
}

func routeRBAC(t *testing.T, nc *NodeConfig, port string) *rbacfilterv3.RBAC {
	t.Helper()
	r, ok := nc.Lookup(Routes, InboundPrefix+port)
	if !ok {
		t.Fatalf("%s: no route %s", nc.Node, port)
	}
	vh := r.Message.(*routev3.RouteConfiguration).GetVirtualHosts()[0]
	var per rbacfilterv3.RBACPerRoute
	if err := vh.GetTypedPerFilterConfig()[FilterRBAC].UnmarshalTo(&per); err != nil {
		t.Fatal(err)
	}
	return per.GetRbac()
}

func TestModes(t *testing.T) {
	res := compileFixture(t)
	// protect: enforced rules, no shadow.
	api := routeRBAC(t, res.Nodes["api.demo"], "8080")
	if api.GetShadowRules() != nil || api.GetRules().GetAction() != rbacv3.RBAC_ALLOW {
		t.Errorf("protect: %v", api)
	}
	if got, want := slices.Sorted(maps.Keys(api.GetRules().GetPolicies())), []string{"demo/api/from-ops", "demo/api/from-web"}; !slices.Equal(got, want) {
		t.Errorf("protect policies on 8080 = %v, want %v (from-nobody admits no address)", got, want)
	}
	grpcRules := routeRBAC(t, res.Nodes["api.demo"], "50051").GetRules().GetPolicies()
	if got := slices.Sorted(maps.Keys(grpcRules)); !slices.Equal(got, []string{"demo/api/grpc-from-lab"}) {
		t.Errorf("protect policies on 50051 = %v", got)
	}
	// monitor: the same kind of policies as shadow rules, nothing enforced.
	gr := routeRBAC(t, res.Nodes["greeter.demo"], "50051")
	if gr.GetRules() != nil || gr.GetShadowRulesStatPrefix() != ShadowPrefixMonitor || len(gr.GetShadowRules().GetPolicies()) != 1 {
		t.Errorf("monitor: %v", gr)
	}
	// discover: nothing enforced; shadow rules name the allowing rule.
	cart := routeRBAC(t, res.Nodes["cart.demo"], "8080")
	if cart.GetRules() != nil || cart.GetShadowRulesStatPrefix() != ShadowPrefixDiscover {
		t.Errorf("discover: %v", cart)
	}
	p := cart.GetShadowRules().GetPolicies()["demo/cart/anyone"]
	if !p.GetPrincipals()[0].GetAny() || !p.GetPermissions()[0].GetAny() {
		t.Errorf("discover tcp rule with any peer: %v", p)
	}

	// Principals: segment web's two pods; namespace ops; CIDR and segment.
	var ips []string
	for _, pr := range api.GetRules().GetPolicies()["demo/api/from-web"].GetPrincipals() {
		c := pr.GetDirectRemoteIp()
		ips = append(ips, c.GetAddressPrefix()+"/"+strconv.Itoa(int(c.GetPrefixLen().GetValue())))
	}
	if want := []string{"198.18.10.20/32", "198.18.10.21/32"}; !slices.Equal(ips, want) {
		t.Errorf("from-web principals = %v, want %v", ips, want)
	}
	ips = nil
	for _, pr := range grpcRules["demo/api/grpc-from-lab"].GetPrincipals() {
		c := pr.GetDirectRemoteIp()
		ips = append(ips, c.GetAddressPrefix()+"/"+strconv.Itoa(int(c.GetPrefixLen().GetValue())))
	}
	if want := []string{"198.18.10.30/32", "198.19.0.0/24"}; !slices.Equal(ips, want) {
		t.Errorf("grpc-from-lab principals = %v, want %v", ips, want)
	}
}

func TestConsumerKinds(t *testing.T) {
	res := compileFixture(t)
	api, gr := res.Nodes["api.demo"], res.Nodes["greeter.demo"]
	names := func(nc *NodeConfig, ti int) []string {
		var out []string
		for _, r := range nc.Resources[ti] {
			out = append(out, r.Name)
		}
		return out
	}
	// Envoy: per-port listeners that do not bind, the virtual inbound
	// listener, local clusters; the redis port is bulkhead-proxy's.
	if got, want := names(api, Listeners), []string{"bulkhead/inbound", "bulkhead/inbound/198.18.10.10:50051", "bulkhead/inbound/198.18.10.10:8080"}; !slices.Equal(got, want) {
		t.Errorf("envoy listeners = %v, want %v", got, want)
	}
	if got, want := names(api, Clusters), []string{"bulkhead/blackhole", "bulkhead/local/50051", "bulkhead/local/8080"}; !slices.Equal(got, want) {
		t.Errorf("envoy clusters = %v, want %v", got, want)
	}
	rt, _ := api.Lookup(Routes, "bulkhead/inbound/8080")
	if c := rt.Message.(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); c != "bulkhead/local/8080" {
		t.Errorf("envoy route cluster = %q", c)
	}
	// gRPC: NonForwardingAction; listeners for the unspecified addresses;
	// the client side of the services its segment may call (its egress
	// rule to api's 50051, cart's rule for any peer); no listener filters,
	// no use_original_dst.
	if got, want := names(gr, Listeners), []string{
		"api.demo:50051", "bulkhead/inbound/0.0.0.0:50051", "bulkhead/inbound/198.18.10.30:50051", "bulkhead/inbound/[::]:50051",
		"cart.demo:8080", // cart admits any peer
	}; !slices.Equal(got, want) {
		t.Errorf("grpc listeners = %v, want %v", got, want)
	}
	rt, _ = gr.Lookup(Routes, "bulkhead/inbound/50051")
	if rt.Message.(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()[0].GetNonForwardingAction() == nil {
		t.Error("grpc inbound route is not a NonForwardingAction")
	}
	for _, r := range gr.Resources[Listeners] {
		l := r.Message.(*listenerv3.Listener)
		if len(l.GetListenerFilters()) > 0 || l.GetUseOriginalDst().GetValue() {
			t.Errorf("grpc listener %s has what gRPC-Go refuses", l.GetName())
		}
		for _, fc := range l.GetFilterChains() {
			if fc.GetFilterChainMatch().GetDestinationPort() != nil {
				t.Errorf("grpc listener %s matches destination_port", l.GetName())
			}
		}
	}
	if got, want := names(gr, Endpoints), []string{"bulkhead/outbound/api.demo:50051", "bulkhead/outbound/cart.demo:8080"}; !slices.Equal(got, want) {
		t.Errorf("grpc endpoints = %v, want %v", got, want)
	}
	// Both kinds get the same inbound listener shape; the HCM has RBAC
	// then the router, RDS over ADS and the access log.
	l, _ := api.Lookup(Listeners, "bulkhead/inbound/198.18.10.10:8080")
	var hcm hcmv3.HttpConnectionManager
	if err := l.Message.(*listenerv3.Listener).GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
	}
	if !slices.Equal(filters, []string{FilterRBAC, FilterRouter}) || hcm.GetRds().GetConfigSource().GetAds() == nil || len(hcm.GetAccessLog()) != 1 {
		t.Errorf("hcm = %v", &hcm)
	}
}

// TestTemplateRegex: templates match as bulkhead-proxy matches them.
func TestTemplateRegex(t *testing.T) {
	cases := []struct {
		tmpl string
		yes  []string
		no   []string
	}{
		{"/users/{id}/orders", []string{"/users/7/orders", "/users/a.b/orders"}, []string{"/users//orders", "/users/7/8/orders", "/users/7/orders/"}},
		{"/files/{*}", []string{"/files/a", "/files/a/b", "/files/a/"}, []string{"/files/", "/files"}},
		{"/a.b/{x}", []string{"/a.b/1"}, []string{"/aXb/1"}},
	}
	for _, c := range cases {
		re := regexp.MustCompile("^" + TemplateRegex(c.tmpl) + "$")
		for _, s := range c.yes {
			if !re.MatchString(s) {
				t.Errorf("%s does not match %s", c.tmpl, s)
			}
		}
		for _, s := range c.no {
			if re.MatchString(s) {
				t.Errorf("%s matches %s", c.tmpl, s)
			}
		}
	}
}

func TestIncremental(t *testing.T) {
	c := NewCompiler(Options{})
	first, err := c.Compile(fixture(t, nil, fixtureWorkloads))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Changed) != 3 {
		t.Fatalf("first compile changed %v", first.Changed)
	}
	// The same input: nothing built, nothing changed, same pointers.
	again, err := c.Compile(fixture(t, nil, fixtureWorkloads))
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changed) != 0 || again.Built != [NumTypes]int{} {
		t.Errorf("unchanged input: changed %v, built %v", again.Changed, again.Built)
	}
	for n, nc := range again.Nodes {
		if first.Nodes[n] != nc {
			t.Errorf("%s: new NodeConfig for the same input", n)
		}
	}
	// One rule of cart: only cart's route is rebuilt.
	one, err := c.Compile(fixture(t, func(ps []*v1alpha1.SegmentPolicy) {
		for _, p := range ps {
			if p.Name == "cart" {
				p.Spec.Ingress[0].Ports[0].Protocol = "http"
			}
		}
	}, fixtureWorkloads))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Changed, []string{"cart.demo"}) || one.Built != [NumTypes]int{Routes: 1} {
		t.Errorf("one rule: changed %v, built %v", one.Changed, one.Built)
	}
	// A new pod of segment web: the route configurations whose rules name
	// web (api's 8080, greeter's 50051) are rebuilt, nothing else; no
	// listener of an existing node is.
	churn, err := c.Compile(fixture(t, func(ps []*v1alpha1.SegmentPolicy) {
		for _, p := range ps {
			if p.Name == "cart" {
				p.Spec.Ingress[0].Ports[0].Protocol = "http"
			}
		}
	}, fixtureWorkloads+"- {name: web-3, namespace: demo, segment: web, ips: [198.18.10.22]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(churn.Changed, []string{"api.demo", "greeter.demo"}) || churn.Built != [NumTypes]int{Routes: 2} {
		t.Errorf("pod churn: changed %v, built %v", churn.Changed, churn.Built)
	}
	if one.Nodes["cart.demo"] != churn.Nodes["cart.demo"] {
		t.Error("cart's config changed with web's pods")
	}
	// A removed sidecar node is reported as changed.
	gone, err := c.Compile(fixture(t, nil, strings.Replace(fixtureWorkloads, "  sidecar: grpc\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gone.Nodes["greeter.demo"]; ok || !slices.Contains(gone.Changed, "greeter.demo") {
		t.Errorf("removed node: changed %v", gone.Changed)
	}
}

func TestCheckReferencesFindsDangling(t *testing.T) {
	res := compileFixture(t)
	nc := *res.Nodes["api.demo"]
	nc.Resources[Routes] = nil
	err := CheckReferences(&nc)
	if err == nil || !strings.Contains(err.Error(), `refers to route configuration "bulkhead/inbound/8080"`) {
		t.Errorf("CheckReferences = %v", err)
	}
	gr := *res.Nodes["greeter.demo"]
	gr.Resources[Endpoints] = nil
	if err := CheckReferences(&gr); err == nil || !strings.Contains(err.Error(), "endpoints") {
		t.Errorf("CheckReferences (EDS) = %v", err)
	}
}

func TestBootstrapRejects(t *testing.T) {
	for name, o := range map[string]BootstrapOptions{
		"no node":   {ControlPlane: "198.18.10.1:15010"},
		"no port":   {Node: "a.b", ControlPlane: "198.18.10.1"},
		"bad port":  {Node: "a.b", ControlPlane: "198.18.10.1:0"},
		"bad host":  {Node: "a.b", ControlPlane: "bad host:15010"},
		"long node": {Node: strings.Repeat("a", 254), ControlPlane: "198.18.10.1:15010"},
	} {
		if _, err := Bootstrap(o); err == nil {
			t.Errorf("%s: Bootstrap accepted %+v", name, o)
		}
		if _, err := GRPCBootstrap(o); err == nil {
			t.Errorf("%s: GRPCBootstrap accepted %+v", name, o)
		}
	}
}

// TestEnvoyValidate runs `envoy --mode validate` on the bootstrap and on
// the dumped config of an Envoy node, where an envoy binary is installed.
// The other tests do not depend on it.
func TestEnvoyValidate(t *testing.T) {
	bin, err := exec.LookPath("envoy")
	if err != nil {
		t.Skip("no envoy binary on PATH; the protoc-gen-validate checks above still ran")
	}
	res := compileFixture(t)
	o := BootstrapOptions{Node: "api.demo", ControlPlane: "198.18.10.1:15010"}
	b, err := Bootstrap(o)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := StaticBootstrap(res.Nodes["api.demo"], o)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]proto.Message{"bootstrap": b, "static": sb} {
		js, err := MarshalJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".json")
		if err := os.WriteFile(path, js, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), bin, "--mode", "validate", "-c", path).CombinedOutput()
		if err != nil {
			t.Errorf("envoy --mode validate %s: %v\n%s", name, err, out)
		}
	}
}

// TestRBACEncoding: the RBAC packed into each route configuration, which
// rbacPerRoute encodes from shared pieces, is byte for byte proto's
// deterministic encoding of the message.
func TestRBACEncoding(t *testing.T) {
	res := compileFixture(t)
	n := 0
	for _, nc := range res.Nodes {
		for _, r := range nc.Resources[Routes] {
			for _, vh := range r.Message.(*routev3.RouteConfiguration).GetVirtualHosts() {
				a := vh.GetTypedPerFilterConfig()[FilterRBAC]
				if a == nil {
					continue
				}
				m, err := a.UnmarshalNew()
				if err != nil {
					t.Fatal(err)
				}
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.GetValue(), want) {
					t.Errorf("%s %s: hand encoding differs from proto's:\n got %x\nwant %x", nc.Node, r.Name, a.GetValue(), want)
				}
				n++
			}
		}
	}
	if n < 4 {
		t.Errorf("checked %d route configurations", n)
	}
}

// TestDeterministicParallel: route configurations built on several
// goroutines (enough of them to use every CPU) come out the same from two
// fresh compilers, versions included.
func TestDeterministicParallel(t *testing.T) {
	var ws, ps strings.Builder
	ws.WriteString("workloads:\n")
	for i := range 200 {
		fmt.Fprintf(&ws, "- {name: s%d, namespace: demo, ips: [198.18.%d.%d], ports: [{port: 8080, protocol: http}], sidecar: envoy}\n", i, 30+i/200, i%200+1)
		fmt.Fprintf(&ps, "---\napiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: s%d, namespace: demo}\nspec:\n  mode: protect\n  ingress:\n", i)
		for j := range 3 {
			fmt.Fprintf(&ps, "  - {name: r%d, peers: [{segment: s%d}], ports: [{port: 8080, protocol: http}], http: {methods: [GET], paths: [\"/a/%d/{id}\"]}}\n", j, (i+j+1)%200, j)
		}
	}
	pols, err := v1alpha1.UnmarshalYAML([]byte(ps.String()))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := identity.Parse([]byte(ws.String()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := compile.Compile(compile.Input{Policies: pols, Workloads: tab.Workloads()})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Output: out, Workloads: tab.Workloads()}
	a, err := NewCompiler(Options{}).Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCompiler(Options{}).Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Nodes) != 200 || a.Built[Routes] != 200 {
		t.Fatalf("%d nodes, built %v", len(a.Nodes), a.Built)
	}
	for n, nc := range a.Nodes {
		if nc.Versions != b.Nodes[n].Versions {
			t.Errorf("%s: versions %v and %v", n, nc.Versions, b.Nodes[n].Versions)
		}
	}
}
