package compile

import (
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
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

func ex(v string) *bulkheadv1.Pattern   { return exact(v, false) }
func exF(v string) *bulkheadv1.Pattern  { return exact(v, true) }
func pre(v string) *bulkheadv1.Pattern  { return prefix(v, false) }
func preF(v string) *bulkheadv1.Pattern { return prefix(v, true) }
func sufF(v string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Suffix{Suffix: v}, FoldCase: true}
}
func tmpl(v string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Template{Template: v}}
}
func pats(ps ...*bulkheadv1.Pattern) []*bulkheadv1.Pattern { return ps }

func TestCompileL7(t *testing.T) {
	consume := []string{"APIVERSIONS", "CONSUMERGROUPHEARTBEAT", "FETCH", "FINDCOORDINATOR", "HEARTBEAT",
		"JOINGROUP", "LEAVEGROUP", "LISTOFFSETS", "METADATA", "OFFSETCOMMIT", "OFFSETFETCH",
		"OFFSETFORLEADEREPOCH", "SASLAUTHENTICATE", "SASLHANDSHAKE", "SYNCGROUP"}
	consumeBare := []string{"APIVERSIONS", "CONSUMERGROUPHEARTBEAT", "FINDCOORDINATOR", "HEARTBEAT",
		"JOINGROUP", "LEAVEGROUP", "METADATA", "SASLAUTHENTICATE", "SASLHANDSHAKE", "SYNCGROUP"}
	cases := []struct {
		name string
		rule v1alpha1.Rule
		want []*bulkheadv1.L7Rule
	}{{
		name: "redis only: no L7Rule",
		rule: v1alpha1.Rule{Redis: &v1alpha1.RedisMatch{Commands: []string{"get"}}},
	}, {
		name: "http: methods, path forms, hosts",
		rule: v1alpha1.Rule{HTTP: &v1alpha1.HTTPMatch{
			Methods: []string{"post", "GET"},
			Paths:   []string{"/users/{id}", "/x", "/static/*", "/files/{*}", "/*"},
			Hosts:   []string{"API.example.com", "*.example.org", "a.example.", "a.example"},
		}},
		want: []*bulkheadv1.L7Rule{{
			Verbs:     []string{"GET", "POST"},
			Resources: pats(ex("/x"), pre("/"), pre("/static/"), tmpl("/files/{*}"), tmpl("/users/{id}")),
			Aux:       pats(exF("a.example"), exF("api.example.com"), sufF(".example.org")),
		}},
	}, {
		// Patterns are brought to the parser's normal form of paths
		// (http1.AppendNormalizedPath), or they would never match.
		name: "http: paths in the parser's normal form",
		rule: v1alpha1.Rule{HTTP: &v1alpha1.HTTPMatch{Paths: []string{
			"/café", "/caf%c3%a9/menu", "/%61dmin", "//a/./b/../c;v=1", "/100%", "/a%2fb",
			"/static/./*", "/files/./{*}", "/a%2F../x", "/n%00",
			// Kept as written (they match nothing): decoding would add a
			// template parameter or a literal brace, or drop one.
			"/u/%7Bx%7D/{id}", "/a%7Bb%7D", "/s/%2A/*", "/{id}/..",
		}}},
		want: []*bulkheadv1.L7Rule{{
			Resources: pats(
				ex("/100%25"), ex("/a%2F../x"), ex("/a%2Fb"), ex("/a%7Bb%7D"), ex("/a/c"), ex("/admin"), ex("/caf%C3%A9"), ex("/caf%C3%A9/menu"), ex("/n%00"),
				pre("/s/%2A/"), pre("/static/"), tmpl("/files/{*}"), tmpl("/u/%7Bx%7D/{id}"), tmpl("/{id}/..")),
		}},
	}, {
		name: "http without lists: every request",
		rule: v1alpha1.Rule{HTTP: &v1alpha1.HTTPMatch{}},
		want: []*bulkheadv1.L7Rule{{}},
	}, {
		name: "grpc, and http beside it",
		rule: v1alpha1.Rule{
			HTTP: &v1alpha1.HTTPMatch{Paths: []string{"/healthz"}},
			GRPC: &v1alpha1.GRPCMatch{Methods: []string{"shop.v1.Cart/Get", "shop.v1.Admin/*"}},
		},
		want: []*bulkheadv1.L7Rule{
			{Resources: pats(ex("/healthz"))},
			{Verbs: []string{"POST"}, Resources: pats(ex("/shop.v1.Cart/Get"), pre("/shop.v1.Admin/"))},
		},
	}, {
		name: "tls",
		rule: v1alpha1.Rule{TLS: &v1alpha1.TLSMatch{ServerNames: []string{"api.example.com", "*.svc.local"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"CLIENT_HELLO"}, Resources: pats(exF("api.example.com"), sufF(".svc.local"))}},
	}, {
		name: "dns: types are verbs, names lose their final dot",
		rule: v1alpha1.Rule{DNS: &v1alpha1.DNSMatch{Names: []string{"Example.com.", "*.cluster.local"}, Types: []string{"aaaa", "A"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"A", "AAAA"}, Resources: pats(exF("example.com"), sufF(".cluster.local"))}},
	}, {
		name: "sql: tables and databases fold case; BEGIN needs no table",
		rule: v1alpha1.Rule{SQL: &v1alpha1.SQLMatch{
			Verbs: []string{"select", "BEGIN", "insert"}, Tables: []string{"orders", "shop.*", "public.Users"}, Databases: []string{"shop"},
		}},
		want: []*bulkheadv1.L7Rule{
			{Verbs: []string{"BEGIN", "INSERT", "SELECT"}, Resources: pats(exF("orders"), exF("public.Users"), preF("shop.")), Aux: pats(exF("shop"))},
			{Verbs: []string{"BEGIN"}, Aux: pats(exF("shop"))},
		},
	}, {
		name: "sql without tables: one rule",
		rule: v1alpha1.Rule{SQL: &v1alpha1.SQLMatch{Verbs: []string{"BEGIN", "SELECT"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"BEGIN", "SELECT"}}},
	}, {
		name: "sql tables without verbs: no topicless rule",
		rule: v1alpha1.Rule{SQL: &v1alpha1.SQLMatch{Tables: []string{"t"}}},
		want: []*bulkheadv1.L7Rule{{Resources: pats(exF("t"))}},
	}, {
		name: "kafka: role expanded, topics, client ids; group APIs without topics",
		rule: v1alpha1.Rule{Kafka: &v1alpha1.KafkaMatch{Roles: []string{"consume"}, Topics: []string{"orders", "logs-*"}, ClientIDs: []string{"billing"}}},
		want: []*bulkheadv1.L7Rule{
			{Verbs: consume, Resources: pats(ex("orders"), pre("logs-")), Aux: pats(ex("billing"))},
			{Verbs: consumeBare, Aux: pats(ex("billing"))},
		},
	}, {
		name: "kafka: apis and roles united",
		rule: v1alpha1.Rule{Kafka: &v1alpha1.KafkaMatch{Roles: []string{"produce"}, APIs: []string{"DescribeConfigs", "Produce"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"ADDOFFSETSTOTXN", "ADDPARTITIONSTOTXN", "APIVERSIONS", "DESCRIBECONFIGS",
			"ENDTXN", "FINDCOORDINATOR", "INITPRODUCERID", "METADATA", "PRODUCE", "SASLAUTHENTICATE", "SASLHANDSHAKE", "TXNOFFSETCOMMIT"}}},
	}, {
		name: "kafka: an api that names topics gets no second rule",
		rule: v1alpha1.Rule{Kafka: &v1alpha1.KafkaMatch{APIs: []string{"Produce"}, Topics: []string{"orders"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"PRODUCE"}, Resources: pats(ex("orders"))}},
	}, {
		name: "memcached: upper-case verbs, key prefixes; version needs no key",
		rule: v1alpha1.Rule{Memcached: &v1alpha1.MemcachedMatch{Commands: []string{"get", "set", "version"}, KeyPrefixes: []string{"session:"}}},
		want: []*bulkheadv1.L7Rule{
			{Verbs: []string{"GET", "SET", "VERSION"}, Resources: pats(pre("session:"))},
			{Verbs: []string{"VERSION"}},
		},
	}, {
		name: "memcached: a '*' ending a prefix is dropped",
		rule: v1alpha1.Rule{Memcached: &v1alpha1.MemcachedMatch{Commands: []string{"get"}, KeyPrefixes: []string{"a:*", "b:"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}, Resources: pats(pre("a:"), pre("b:"))}},
	}, {
		name: "memcached: a prefix of only '*' is any key",
		rule: v1alpha1.Rule{Memcached: &v1alpha1.MemcachedMatch{Commands: []string{"get"}, KeyPrefixes: []string{"a:", "*"}}},
		want: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}}},
	}, {
		name: "memcached: key prefixes alone",
		rule: v1alpha1.Rule{Memcached: &v1alpha1.MemcachedMatch{KeyPrefixes: []string{"a:", "b:"}}},
		want: []*bulkheadv1.L7Rule{{Resources: pats(pre("a:"), pre("b:"))}},
	}, {
		name: "mongodb: commands, collections, databases exact",
		rule: v1alpha1.Rule{MongoDB: &v1alpha1.MongoDBMatch{Commands: []string{"find", "hello"}, Collections: []string{"Orders"}, Databases: []string{"shop"}}},
		want: []*bulkheadv1.L7Rule{
			{Verbs: []string{"FIND", "HELLO"}, Resources: pats(ex("Orders")), Aux: pats(ex("shop"))},
			{Verbs: []string{"HELLO"}, Aux: pats(ex("shop"))},
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.rule
			r.Normalize()
			got := compileL7(&r)
			if diff := cmp.Diff(c.want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("L7 (-want +got):\n%s", diff)
			}
		})
	}
}

const l7PolicyYAML = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: shop}
spec:
  mode: protect
  ingress:
  - name: from-web
    peers: [{segment: web}]
    ports: [{port: 8080, protocol: http}, {port: 9090, protocol: http2}]
    http: {methods: [GET], paths: ["/users/{id}"]}
    grpc: {methods: ["shop.v1.Cart/*"]}
  egress:
  - name: to-db
    peers: [{segment: db}]
    ports: [{port: 5432, protocol: postgres}]
    sql: {verbs: [SELECT], tables: [orders]}
  - name: to-dns
    ports: [{port: 53, protocol: dns}]
    dns: {names: [db.shop.svc.cluster.local.]}
`

func TestCompileCarriesL7(t *testing.T) {
	withAllProtocols(t)
	ps, err := v1alpha1.UnmarshalYAML([]byte(l7PolicyYAML))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := identity.Parse([]byte("workloads:\n- {name: api, namespace: shop, ips: [198.18.2.1], ports: [{port: 8080, protocol: http}, {port: 9090, protocol: http2}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Compile(Input{Policies: ps, Workloads: tab.Workloads(), Settings: store.Settings{}})
	if err != nil {
		t.Fatal(err)
	}
	pp := out.Proxies["api.shop"]
	want := &bulkheadv1.ProxyPolicy{
		Segment: "api", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ports: []*bulkheadv1.Port{port(8080, "http"), port(9090, "http2")},
		Ingress: []*bulkheadv1.Rule{{
			Name: "shop/api/from-web", Peers: []*bulkheadv1.Peer{seg("shop/web")},
			Ports: []*bulkheadv1.Port{port(8080, "http"), port(9090, "http2")},
			L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"GET"}, Resources: pats(tmpl("/users/{id}"))},
				{Verbs: []string{"POST"}, Resources: pats(pre("/shop.v1.Cart/"))},
			},
		}},
		Egress: []*bulkheadv1.Rule{{
			Name: "shop/api/to-db", Peers: []*bulkheadv1.Peer{seg("shop/db")},
			Ports: []*bulkheadv1.Port{port(5432, "postgres")},
			L7:    []*bulkheadv1.L7Rule{{Verbs: []string{"SELECT"}, Resources: pats(exF("orders"))}},
		}, {
			Name:  "shop/api/to-dns",
			Ports: []*bulkheadv1.Port{port(53, "dns")},
			L7:    []*bulkheadv1.L7Rule{{Resources: pats(exF("db.shop.svc.cluster.local"))}},
		}},
	}
	if diff := cmp.Diff(want, pp, protocmp.Transform(), ignoreRevision); diff != "" {
		t.Fatalf("ProxyPolicy (-want +got):\n%s", diff)
	}
	// The L7 rules are part of the revision.
	ps[0].Spec.Ingress[0].HTTP.Methods = []string{"GET", "HEAD"}
	out2, err := Compile(Input{Policies: ps, Workloads: tab.Workloads()})
	if err != nil {
		t.Fatal(err)
	}
	if out2.Proxies["api.shop"].Revision == pp.Revision {
		t.Fatal("revision unchanged by an L7 change")
	}
}
