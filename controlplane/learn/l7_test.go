package learn

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
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

// l7Flow is a discover-mode message of proto from demo/cart to demo/api.
func l7Flow(proto string, port uint32, verb, resource, aux string, more ...string) *bulkheadv1.Flow {
	return &bulkheadv1.Flow{
		Direction: in, SrcIp: "198.18.0.20", SrcSegment: "demo/cart", DstIp: "198.18.0.30", DstSegment: "demo/api",
		DstPort: port, Protocol: proto, Verb: verb, Resource: resource, Aux: aux, MoreResources: more,
		Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Reason: "no_rule", Mode: bulkheadv1.Mode_MODE_DISCOVER, Count: 1,
	}
}

func get(path, host string) *bulkheadv1.Flow { return l7Flow("http", 8080, "GET", path, host) }

func slugFlows(n int) []*bulkheadv1.Flow {
	var out []*bulkheadv1.Flow
	for i := range n {
		out = append(out, get(fmt.Sprintf("/blog/post-%c%c", 'a'+i%26, 'a'+i/26), ""))
	}
	return out
}

const apiHead = head + "  name: api\n  namespace: demo\nspec:\n  ingress:\n"

func TestObserveL7(t *testing.T) {
	withAllProtocols(t)
	cases := []struct {
		name  string
		flows []*bulkheadv1.Flow
		want  string
	}{{
		name: "http: one rule per method; ids become {id}; hosts when present; no query",
		flows: []*bulkheadv1.Flow{
			get("/users/1", "api.example"),
			get("/users/2", "api.example"),
			get("/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301/orders/77", "API.example"),
			get("/static/app.js", "api.example"),
			get("/search?q=socks", "api.example"),
			get("/users/{id}", "api.example"),
			l7Flow("http", 8080, "POST", "/users", ""),
			l7Flow("http", 8080, "post", "/users", "api.example"),
		},
		want: apiHead + `  - http:
      hosts:
      - api.example
      methods:
      - GET
      paths:
      - /search
      - /static/app.js
      - /users/{id}
      - /users/{id}/orders/{id}
    name: from-cart-http-8080-get
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8080
      protocol: http
  - http:
      methods:
      - POST
      paths:
      - /users
    name: from-cart-http-8080-post
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8080
      protocol: http
`,
	}, {
		name:  "http: twenty slugs at one position become {id}; other paths stay",
		flows: append(slugFlows(20), get("/blog", ""), get("/static/app.js", "")),
		want: apiHead + `  - http:
      methods:
      - GET
      paths:
      - /blog
      - /blog/{id}
      - /static/app.js
    name: from-cart-http-8080-get
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8080
      protocol: http
`,
	}, {
		name:  "http: eight slugs stay",
		flows: slugFlows(8),
		want: apiHead + `  - http:
      methods:
      - GET
      paths:
      - /blog/post-aa
      - /blog/post-ba
      - /blog/post-ca
      - /blog/post-da
      - /blog/post-ea
      - /blog/post-fa
      - /blog/post-ga
      - /blog/post-ha
    name: from-cart-http-8080-get
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8080
      protocol: http
`,
	}, {
		name: "http: a cut path ends in {*}",
		flows: []*bulkheadv1.Flow{
			get(("/docs/" + strings.Repeat("chapter/", 40))[:MaxFlowResource-len(Cut)]+Cut, ""),
		},
		want: apiHead + `  - http:
      methods:
      - GET
      paths:
      - /docs/` + strings.Repeat("chapter/", 30) + `{*}
    name: from-cart-http-8080-get
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8080
      protocol: http
`,
	}, {
		name: "http2: gRPC calls teach a grpc matcher, other requests http",
		flows: []*bulkheadv1.Flow{
			l7Flow("http2", 9090, "POST", "/shop.v1.Cart/Get", ""),
			l7Flow("http2", 9090, "POST", "/shop.v1.Cart/Put", ""),
			l7Flow("http2", 9090, "POST", "/users/create", ""),
			l7Flow("http2", 9090, "GET", "/healthz", ""),
		},
		want: apiHead + `  - http:
      methods:
      - GET
      paths:
      - /healthz
    name: from-cart-http2-9090-get
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9090
      protocol: http2
  - grpc:
      methods:
      - shop.v1.Cart/Get
      - shop.v1.Cart/Put
    name: from-cart-http2-9090-grpc
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9090
      protocol: http2
  - http:
      methods:
      - POST
      paths:
      - /users/create
    name: from-cart-http2-9090-post
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9090
      protocol: http2
`,
	}, {
		name: "sql: one rule per verb with its tables and databases",
		flows: []*bulkheadv1.Flow{
			l7Flow("mysql", 3306, "SELECT", "orders", "shop", "users"),
			l7Flow("mysql", 3306, "SELECT", "shop.items", "shop"),
			l7Flow("mysql", 3306, "INSERT", "orders", "shop"),
			l7Flow("mysql", 3306, "BEGIN", "", "shop"),
			l7Flow("postgres", 5432, "COPY_PROGRAM", "logs", "app"),
			l7Flow("postgres", 5432, "UPDATE", "a", "app", "b", Cut), // more tables than a flow carries: any
			l7Flow("postgres", 5432, "UPDATE", "c", "app"),
		},
		want: apiHead + `  - name: from-cart-mysql-3306-begin
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
      - BEGIN
  - name: from-cart-mysql-3306-insert
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 3306
      protocol: mysql
    sql:
      databases:
      - shop
      tables:
      - orders
      verbs:
      - INSERT
  - name: from-cart-mysql-3306-select
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 3306
      protocol: mysql
    sql:
      databases:
      - shop
      tables:
      - orders
      - shop.items
      - users
      verbs:
      - SELECT
  - name: from-cart-postgres-5432-copy-program
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 5432
      protocol: postgres
    sql:
      databases:
      - app
      tables:
      - logs
      verbs:
      - COPY_PROGRAM
  - name: from-cart-postgres-5432-update
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 5432
      protocol: postgres
    sql:
      databases:
      - app
      verbs:
      - UPDATE
`,
	}, {
		name: "kafka: one rule per API, named as Kafka names it; topics and client ids",
		flows: []*bulkheadv1.Flow{
			l7Flow("kafka", 9092, "Produce", "orders", "shop-app"),
			l7Flow("kafka", 9092, "PRODUCE", "payments", "shop-app"),
			l7Flow("kafka", 9092, "Heartbeat", "", "shop-app"),
			l7Flow("kafka", 9092, "METADATA", "orders", ""),
		},
		want: apiHead + `  - kafka:
      apis:
      - Heartbeat
      clientIDs:
      - shop-app
    name: from-cart-kafka-9092-heartbeat
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9092
      protocol: kafka
  - kafka:
      apis:
      - Metadata
      topics:
      - orders
    name: from-cart-kafka-9092-metadata
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9092
      protocol: kafka
  - kafka:
      apis:
      - Produce
      clientIDs:
      - shop-app
      topics:
      - orders
      - payments
    name: from-cart-kafka-9092-produce
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 9092
      protocol: kafka
`,
	}, {
		name: "memcached: commands only, never keys",
		flows: []*bulkheadv1.Flow{
			l7Flow("memcached", 11211, "get", "session:*", ""),
			l7Flow("memcached", 11211, "SET", "session:2", ""),
			l7Flow("memcached", 11211, "version", "", ""),
		},
		want: apiHead + `  - memcached:
      commands:
      - get
      - set
      - version
    name: from-cart-memcached-11211
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 11211
      protocol: memcached
`,
	}, {
		name: "mongodb: one rule per command with collections and databases",
		flows: []*bulkheadv1.Flow{
			l7Flow("mongodb", 27017, "find", "orders", "shop"),
			l7Flow("mongodb", 27017, "FIND", "users", "shop"),
			l7Flow("mongodb", 27017, "ISMASTER", "", "admin"),
		},
		want: apiHead + `  - mongodb:
      collections:
      - orders
      - users
      commands:
      - find
      databases:
      - shop
    name: from-cart-mongodb-27017-find
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 27017
      protocol: mongodb
  - mongodb:
      commands:
      - isMaster
      databases:
      - admin
    name: from-cart-mongodb-27017-ismaster
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 27017
      protocol: mongodb
`,
	}, {
		name: "dns and tls: one rule per peer and port, names exact",
		flows: []*bulkheadv1.Flow{
			l7Flow("dns", 53, "A", "example.com.", ""),
			l7Flow("dns", 53, "AAAA", "Example.com", ""),
			l7Flow("dns", 53, "A", "api.example.com", ""),
			l7Flow("tls", 443, "CLIENT_HELLO", "api.example.com", "h2"),
			l7Flow("tls", 443, "CLIENT_HELLO", "*.weird", "h2"), // would be a wildcard
			l7Flow("dns", 53, "A", "*.example.com", ""),
			l7Flow("tls", 8443, "CLIENT_HELLO", "", ""), // no SNI: every name
		},
		want: apiHead + `  - dns:
      names:
      - api.example.com
      - example.com
      types:
      - A
      - AAAA
    name: from-cart-dns-53
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 53
      protocol: dns
  - name: from-cart-tls-443
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 443
      protocol: tls
    tls:
      serverNames:
      - api.example.com
  - name: from-cart-tls-8443
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 8443
      protocol: tls
`,
	}, {
		name: "nothing to learn",
		flows: []*bulkheadv1.Flow{
			with(get("/x", ""), func(f *bulkheadv1.Flow) { f.Connection, f.Verb, f.Resource = true, "", "" }),
			get("", ""),
			get("x", ""),
			get("/x", "Bad Host"),
			get("/x", "*.example.com"),
			l7Flow("mysql", 3306, "SELECT", "shop.*", ""),
			l7Flow("dns", 53, "A", ".", ""),
			l7Flow("kafka", 9092, "Produce", "orders*", ""),
			l7Flow("mysql", 3306, "SELECT", "my table", ""),
			l7Flow("gopher", 70, "GET", "/", ""),
			l7Flow("kafka", 9092, "Produce", "orders", strings.Repeat("c", MaxFlowAux-len(Cut))+Cut),
			l7Flow("kafka", 9092, "Produce", strings.Repeat("t", MaxFlowResource-len(Cut))+Cut, ""),
			l7Flow("mysql", 3306, "SELECT", "a", "", strings.Repeat("t", MaxFlowResource-len(Cut)-2)+Cut),
			get("/x", strings.Repeat("h", MaxFlowAux-len(Cut))+Cut),
			l7Flow("kafka", 9092, "Produce", "orders", "app\x01"),
			l7Flow("mongodb", 27017, "find", "orders\x7f", "shop"),
		},
		want: "",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkObserve(t, nil, c.flows, c.want) })
	}
}

// TestLearnedL7Deterministic learns the same flows at once and one at a time
// in the reverse order: the exports are equal, and they compile.
func TestLearnedL7Deterministic(t *testing.T) {
	withAllProtocols(t)
	flows := append(slugFlows(20),
		get("/users/1", "api.example"), get("/users/2", ""), get("/static/app.js", ""),
		l7Flow("http2", 9090, "POST", "/shop.v1.Cart/Get", ""),
		l7Flow("mysql", 3306, "SELECT", "orders", "shop", "users"),
		l7Flow("kafka", 9092, "Fetch", "orders", "app"),
		l7Flow("dns", 53, "A", "example.com", ""),
		l7Flow("memcached", 11211, "get", "k", ""),
		l7Flow("mongodb", 27017, "find", "orders", "shop"),
		l7Flow("tls", 443, "CLIENT_HELLO", "api.example.com", ""),
	)
	var exports [2][]byte
	for i := range exports {
		st := newStore(t)
		l := New(st, nil)
		if i == 1 {
			for j := len(flows) - 1; j >= 0; j-- {
				l.Observe("n", flows[j:j+1])
			}
		} else {
			l.Observe("n", flows)
		}
		exports[i] = []byte(export(t, st))
		if i == 1 {
			tab, err := identity.Parse([]byte("workloads:\n- {name: api, namespace: demo, ips: [198.18.0.30]}\n"))
			if err != nil {
				t.Fatal(err)
			}
			out, err := compile.Compile(compile.Input{Policies: st.List(), Workloads: tab.Workloads()})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(out.Proxies["api.demo"].GetIngress()); n != 8 {
				t.Fatalf("%d compiled rules, want 8", n)
			}
		}
	}
	if !bytes.Equal(exports[0], exports[1]) {
		t.Fatalf("exports differ:\n%s\n---\n%s", exports[0], exports[1])
	}
	if !bytes.Contains(exports[0], []byte("/blog/{id}")) {
		t.Fatalf("slugs not generalised:\n%s", exports[0])
	}
}
