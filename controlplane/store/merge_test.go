package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// withAllProtocols lets policies name every protocol of the L7 table for the
// duration of a test; v1alpha1.KnownProtocols grows as parsers land.
func withAllProtocols(t *testing.T) {
	t.Helper()
	saved := v1alpha1.KnownProtocols
	v1alpha1.KnownProtocols = []string{
		v1alpha1.ProtocolTCP, v1alpha1.ProtocolRedis, v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2,
		v1alpha1.ProtocolTLS, v1alpha1.ProtocolDNS, v1alpha1.ProtocolMySQL, v1alpha1.ProtocolPostgres,
		v1alpha1.ProtocolKafka, v1alpha1.ProtocolMemcached, v1alpha1.ProtocolMongoDB,
	}
	t.Cleanup(func() { v1alpha1.KnownProtocols = saved })
}

// rule reads one rule from YAML; peers default to the cart segment.
func rule(t *testing.T, y string) v1alpha1.Rule {
	t.Helper()
	var r v1alpha1.Rule
	if err := yaml.UnmarshalStrict([]byte(y), &r); err != nil {
		t.Fatalf("rule %q: %v", y, err)
	}
	if r.Peers == nil {
		r.Peers = []v1alpha1.Peer{{Segment: "cart"}}
	}
	return r
}

func TestMergeLearnedL7(t *testing.T) {
	withAllProtocols(t)
	type step struct {
		rules       []string // YAML, one rule each
		wantChanged bool
	}
	slug := func(i int) string {
		return fmt.Sprintf("{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/blog/%c%c]}}", 'a'+i, 'a'+i)
	}
	cases := []struct {
		name  string
		steps []step
		want  string // the exported rule list of demo/redis's ingress
	}{{
		name: "http: a template replaces the paths it covers; covered paths add nothing",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/users/1, /static/app.js]}}`}, true},
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: ["/users/{id}"]}}`}, true},
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/users/2, /static/app.js]}}`}, false},
		},
		want: `- http:
    methods:
    - GET
    paths:
    - /static/app.js
    - /users/{id}
  name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 80
    protocol: http
`,
	}, {
		name: "http: nine slugs, one per merge, become a template",
		steps: []step{
			{[]string{slug(0), slug(1), slug(2), slug(3)}, true},
			{[]string{slug(4)}, true}, {[]string{slug(5)}, true}, {[]string{slug(6)}, true}, {[]string{slug(7)}, true},
			{[]string{slug(8)}, true},
			{[]string{slug(9), slug(0)}, false},
		},
		want: `- http:
    methods:
    - GET
    paths:
    - /blog/{id}
  name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 80
    protocol: http
`,
	}, {
		name: "http: a request without a host makes hosts any",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/], hosts: [a.example]}}`}, true},
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/]}}`}, true},
			{[]string{`{name: r, ports: [{port: 80, protocol: http}], http: {methods: [GET], paths: [/], hosts: [b.example]}}`}, false},
		},
		want: `- http:
    methods:
    - GET
    paths:
    - /
  name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 80
    protocol: http
`,
	}, {
		name: "tls: a rule without matcher on its tls port allows every name",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 443, protocol: tls}], tls: {serverNames: [a.example]}}`}, true},
			{[]string{`{name: r, ports: [{port: 443, protocol: tls}], tls: {serverNames: [b.example, a.example]}}`}, true},
			{[]string{`{name: r, ports: [{port: 443, protocol: tls}]}`}, true},
			{[]string{`{name: r, ports: [{port: 443, protocol: tls}], tls: {serverNames: [c.example]}}`}, false},
		},
		want: `- name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 443
    protocol: tls
`,
	}, {
		name: "dns: names and types united",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 53, protocol: dns}], dns: {names: [b.example], types: [A]}}`}, true},
			{[]string{`{name: r, ports: [{port: 53, protocol: dns}], dns: {names: [a.example], types: [aaaa]}}`, `{name: r, ports: [{port: 53, protocol: dns}], dns: {names: [b.example], types: [A]}}`}, true},
			{[]string{`{name: r, ports: [{port: 53, protocol: dns}], dns: {names: [A.example], types: [AAAA]}}`}, false},
		},
		want: `- dns:
    names:
    - a.example
    - b.example
    types:
    - A
    - AAAA
  name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 53
    protocol: dns
`,
	}, {
		name: "sql: tables and databases united; a statement without tables makes tables any",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 3306, protocol: mysql}], sql: {verbs: [SELECT], tables: [orders], databases: [shop]}}`}, true},
			{[]string{`{name: r, ports: [{port: 3306, protocol: mysql}], sql: {verbs: [SELECT], tables: [users, orders], databases: [shop]}}`}, true},
			{[]string{`{name: r, ports: [{port: 3306, protocol: mysql}], sql: {verbs: [SELECT], databases: [shop]}}`}, true},
			{[]string{`{name: r, ports: [{port: 3306, protocol: mysql}], sql: {verbs: [SELECT], tables: [secrets], databases: [shop]}}`}, false},
		},
		want: `- name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 3306
    protocol: mysql
  sql:
    databases:
    - shop
    verbs:
    - SELECT
`,
	}, {
		name: "kafka, memcached, mongodb",
		steps: []step{
			{[]string{
				`{name: k, ports: [{port: 9092, protocol: kafka}], kafka: {apis: [Produce], topics: [orders], clientIDs: [app]}}`,
				`{name: m, ports: [{port: 11211, protocol: memcached}], memcached: {commands: [get]}}`,
				`{name: o, ports: [{port: 27017, protocol: mongodb}], mongodb: {commands: [find], collections: [orders], databases: [shop]}}`,
			}, true},
			{[]string{
				`{name: k, ports: [{port: 9092, protocol: kafka}], kafka: {apis: [Produce], topics: [payments], clientIDs: [app]}}`,
				`{name: m, ports: [{port: 11211, protocol: memcached}], memcached: {commands: [set, get]}}`,
				`{name: o, ports: [{port: 27017, protocol: mongodb}], mongodb: {commands: [find], collections: [users], databases: [shop]}}`,
			}, true},
			{[]string{
				`{name: k, ports: [{port: 9092, protocol: kafka}], kafka: {apis: [Produce], topics: [orders], clientIDs: [app]}}`,
				`{name: m, ports: [{port: 11211, protocol: memcached}], memcached: {commands: [set]}}`,
				`{name: o, ports: [{port: 27017, protocol: mongodb}], mongodb: {commands: [find], collections: [orders], databases: [shop]}}`,
			}, false},
		},
		want: `- kafka:
    apis:
    - Produce
    clientIDs:
    - app
    topics:
    - orders
    - payments
  name: k
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 9092
    protocol: kafka
- memcached:
    commands:
    - get
    - set
  name: m
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 11211
    protocol: memcached
- mongodb:
    collections:
    - orders
    - users
    commands:
    - find
    databases:
    - shop
  name: o
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 27017
    protocol: mongodb
`,
	}, {
		name: "grpc methods united",
		steps: []step{
			{[]string{`{name: r, ports: [{port: 9090, protocol: http2}], grpc: {methods: [shop.Cart/Get]}}`}, true},
			{[]string{`{name: r, ports: [{port: 9090, protocol: http2}], grpc: {methods: [shop.Cart/Put, shop.Cart/Get]}}`}, true},
			{[]string{`{name: r, ports: [{port: 9090, protocol: http2}], grpc: {methods: [shop.Cart/Put]}}`}, false},
		},
		want: `- grpc:
    methods:
    - shop.Cart/Get
    - shop.Cart/Put
  name: r
  origin: learned
  peers:
  - segment: cart
  ports:
  - port: 9090
    protocol: http2
`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			for i, st := range c.steps {
				var rules []v1alpha1.Rule
				for _, y := range st.rules {
					rules = append(rules, rule(t, y))
				}
				drained(s)
				info, _ := os.Stat(filepath.Join(dir, "policies/demo/redis.yaml"))
				changed, err := s.MergeLearned("demo", "redis", Ingress, rules)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if changed != st.wantChanged || drained(s) != st.wantChanged {
					t.Fatalf("step %d: changed = %v, want %v", i, changed, st.wantChanged)
				}
				info2, _ := os.Stat(filepath.Join(dir, "policies/demo/redis.yaml"))
				if !st.wantChanged && !os.SameFile(info, info2) {
					t.Fatalf("step %d: file rewritten without a change", i)
				}
			}
			p, _ := s.Get("demo", "redis")
			got, err := yaml.Marshal(v1alpha1.ForExport(p).Spec.Ingress)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, string(got)); diff != "" {
				t.Fatalf("ingress (-want +got):\n%s", diff)
			}
			// Applying the export changes nothing.
			out, err := s.Export("")
			if err != nil {
				t.Fatal(err)
			}
			ps, err := v1alpha1.UnmarshalYAML(out)
			if err != nil {
				t.Fatal(err)
			}
			if names, err := s.Apply(ps); err != nil || len(names) != 0 || drained(s) {
				t.Fatalf("Apply(export) = %v, %v; want no change", names, err)
			}
		})
	}
}

func TestMergeLearnedBoundsLists(t *testing.T) {
	withAllProtocols(t)
	s := open(t, t.TempDir())
	names := func(from, n int) []string {
		var out []string
		for i := from; i < from+n; i++ {
			out = append(out, fmt.Sprintf("n%04d.example", i))
		}
		return out
	}
	r := v1alpha1.Rule{Name: "r", Peers: []v1alpha1.Peer{{Segment: "cart"}}, Ports: []v1alpha1.PortProtocol{{Port: 53, Protocol: "dns"}},
		DNS: &v1alpha1.DNSMatch{Names: names(0, v1alpha1.MaxMatchValues+10)}}
	if _, err := s.MergeLearned("demo", "dns", Egress, []v1alpha1.Rule{r}); err != nil {
		t.Fatal(err)
	}
	r.DNS.Names = names(5000, 3)
	if changed, err := s.MergeLearned("demo", "dns", Egress, []v1alpha1.Rule{r}); err != nil || changed {
		t.Fatalf("MergeLearned into a full list = %v, %v", changed, err)
	}
	p, _ := s.Get("demo", "dns")
	if got := p.Spec.Egress[0].DNS.Names; len(got) != v1alpha1.MaxMatchValues || got[0] != "n0000.example" {
		t.Fatalf("%d names, first %q", len(got), got[0])
	}
	redis := v1alpha1.Rule{Name: "x", Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{}}
	for i := range v1alpha1.MaxCommands + 5 {
		redis.Redis.Commands = append(redis.Redis.Commands, fmt.Sprintf("c%d", i))
	}
	if _, err := s.MergeLearned("demo", "dns", Egress, []v1alpha1.Rule{redis}); err != nil {
		t.Fatalf("Redis commands over the bound: %v", err)
	}
}

func TestMergeLearnedBoundsRules(t *testing.T) {
	s := open(t, t.TempDir())
	var rules []v1alpha1.Rule
	for i := range v1alpha1.MaxRules + 3 {
		rules = append(rules, v1alpha1.Rule{Name: fmt.Sprintf("r%04d", i), Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}},
			Redis: &v1alpha1.RedisMatch{Commands: []string{"get"}}})
	}
	if changed, err := s.MergeLearned("demo", "redis", Ingress, rules); err != nil || !changed {
		t.Fatalf("MergeLearned = %v, %v", changed, err)
	}
	p, _ := s.Get("demo", "redis")
	if n := len(p.Spec.Ingress); n != v1alpha1.MaxRules {
		t.Fatalf("%d rules, want %d", n, v1alpha1.MaxRules)
	}
	// A full policy still learns into its rules.
	rules[0].Redis.Commands = []string{"set"}
	if changed, err := s.MergeLearned("demo", "redis", Ingress, rules[:1]); err != nil || !changed {
		t.Fatalf("MergeLearned into a full policy = %v, %v", changed, err)
	}
	if changed, err := s.MergeLearned("demo", "redis", Ingress, rules[len(rules)-1:]); err != nil || changed {
		t.Fatalf("MergeLearned of one rule too many = %v, %v", changed, err)
	}
}
