package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/all"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// testParsed are the parsed protocols the tests compile with: those of
// protocols/all and the ones docs/contracts.md announces (some may not be
// listed by protocols/all yet).
var testParsed = append(parsedProtocols(), "http", "tls", "dns", "memcached", "mysql", "postgres", "kafka", "mongodb")

func mustCompileL7(t testing.TB, pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) *Policy {
	t.Helper()
	p, err := compile(pp, ids, testParsed)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

func exact(s string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Exact{Exact: s}}
}
func prefix(s string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Prefix{Prefix: s}}
}
func suffix(s string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Suffix{Suffix: s}}
}
func tmpl(s string) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Template{Template: s}}
}
func fold(p *bulkheadv1.Pattern) *bulkheadv1.Pattern { p.FoldCase = true; return p }

func pats(ps ...*bulkheadv1.Pattern) []*bulkheadv1.Pattern { return ps }

var (
	ipWebL7   = netip.MustParseAddr("198.18.2.10")
	ipAdminL7 = netip.MustParseAddr("198.18.2.11")
	ipBatch   = netip.MustParseAddr("198.18.2.12")
	ipDNS     = netip.MustParseAddr("198.18.255.53")
)

// l7Fixture is the policy of shop/api, with generic matchers on HTTP,
// MySQL, Kafka and memcached ports, and DNS in egress.
func l7Fixture(mode bulkheadv1.Mode) *bulkheadv1.ProxyPolicy {
	web := []*bulkheadv1.Peer{segPeer("shop/web")}
	return &bulkheadv1.ProxyPolicy{
		Segment: "api", Namespace: "shop", Mode: mode,
		Ports: []*bulkheadv1.Port{port(80, "http"), port(3306, "mysql"), port(9092, "kafka"), port(11211, "memcached"), port(8080, "tcp")},
		Ingress: []*bulkheadv1.Rule{
			{Name: "shop/api/a-web-read", Peers: web, Ports: []*bulkheadv1.Port{port(80, "http")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"GET", "HEAD"}, Resources: pats(tmpl("/users/{id}"), tmpl("/users/{id}/orders"), prefix("/static/"))},
				{Verbs: []string{"POST"}, Resources: pats(exact("/login")), Aux: pats(fold(exact("API.example.com")))},
			}},
			// Sorts first: GET /users/1 reports it.
			{Name: "shop/api/0-web-users", Peers: web, Ports: []*bulkheadv1.Port{port(80, "http")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"GET"}, Resources: pats(exact("/users/1"))},
			}},
			{Name: "shop/api/b-health", Ports: []*bulkheadv1.Port{port(80, "http")}, L7: []*bulkheadv1.L7Rule{
				{Resources: pats(exact("/healthz"))},
			}},
			{Name: "shop/api/c-admin", Peers: []*bulkheadv1.Peer{segPeer("shop/admin")}, Ports: []*bulkheadv1.Port{port(80, "http"), port(3306, "mysql")},
				L7: []*bulkheadv1.L7Rule{{}}},
			{Name: "shop/api/d-sql", Peers: web, Ports: []*bulkheadv1.Port{port(3306, "mysql")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"SELECT"}, Resources: pats(exact("users"), exact("orders"), fold(exact("Items"))), Aux: pats(exact("shop"))},
				{Verbs: []string{"insert"}, Resources: pats(exact("orders"))},
				{Verbs: []string{"BEGIN", "COMMIT"}},
			}},
			{Name: "shop/api/f-kafka", Peers: web, Ports: []*bulkheadv1.Port{port(9092, "kafka")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"PRODUCE"}, Resources: pats(prefix("orders.")), Aux: pats(exact("web"))},
				{Verbs: []string{"METADATA"}},
			}},
			{Name: "shop/api/g-batch", Peers: []*bulkheadv1.Peer{segPeer("shop/batch")}, Ports: []*bulkheadv1.Port{port(80, "http"), port(8080, "tcp")},
				L7: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}, Resources: pats(exact("/batch"))}}},
			{Name: "shop/api/h-files", Peers: web, Ports: []*bulkheadv1.Port{port(80, "http")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"GET"}, Resources: pats(tmpl("/files/{*}"), fold(tmpl("/Docs/{name}/{*}")))},
			}},
			{Name: "shop/api/i-cache", Peers: web, Ports: []*bulkheadv1.Port{port(11211, "memcached")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"get", "meta|debug"}, Resources: pats(suffix(":session"))},
			}},
		},
		Egress: []*bulkheadv1.Rule{
			{Name: "shop/api/to-dns", Peers: []*bulkheadv1.Peer{cidrPeer("198.18.255.0/24")}, Ports: []*bulkheadv1.Port{port(53, "dns")}, L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"A", "AAAA"}, Resources: pats(fold(suffix(".example.com")), exact("example.com"))},
			}},
		},
	}
}

func l7Identities() []*bulkheadv1.Identity {
	return []*bulkheadv1.Identity{
		{Workload: "web-1", Namespace: "shop", Segment: "shop/web", Ips: []string{ipWebL7.String()}},
		{Workload: "admin-1", Namespace: "shop", Segment: "shop/admin", Ips: []string{ipAdminL7.String()}},
		{Workload: "batch-1", Namespace: "shop", Segment: "shop/batch", Ips: []string{ipBatch.String()}},
	}
}

// frame builds a request: resources, then aux (after "@").
func frame(verb string, resources ...string) *l7.Frame {
	f := &l7.Frame{Dir: l7.DirRequest, Verb: []byte(verb)}
	for _, r := range resources {
		if a, ok := strings.CutPrefix(r, "@"); ok {
			f.Aux = []byte(a)
			continue
		}
		f.AddResource([]byte(r))
	}
	return f
}

func withSub(f *l7.Frame, sub string) *l7.Frame { f.Sub = []byte(sub); return f }

func overflow(f *l7.Frame) *l7.Frame {
	for f.NMore < len(f.More) {
		f.AddResource(f.Resource)
	}
	f.AddResource(f.Resource)
	if !f.Overflow {
		panic("no overflow")
	}
	return f
}

func TestGenericMessage(t *testing.T) {
	type tc struct {
		name   string
		dir    Direction
		peer   netip.Addr
		port   uint16
		f      *l7.Frame
		rule   string // "" when none allows
		reason Reason
	}
	const (
		a = "shop/api/a-web-read"
		z = "shop/api/0-web-users"
		b = "shop/api/b-health"
		c = "shop/api/c-admin"
		d = "shop/api/d-sql"
		k = "shop/api/f-kafka"
		g = "shop/api/g-batch"
		h = "shop/api/h-files"
		m = "shop/api/i-cache"
		n = "shop/api/to-dns"
	)
	long := strings.Repeat("x", MaxPatternLen+100)
	cases := []tc{
		{"template", Ingress, ipWebL7, 80, frame("GET", "/users/42"), a, None},
		{"verb any case", Ingress, ipWebL7, 80, frame("get", "/users/42"), a, None},
		{"lowest rule wins", Ingress, ipWebL7, 80, frame("GET", "/users/1"), z, None},
		{"lowest rule, other verb", Ingress, ipWebL7, 80, frame("HEAD", "/users/1"), a, None},
		{"template, deeper", Ingress, ipWebL7, 80, frame("GET", "/users/42/orders"), a, None},
		{"param needs a segment", Ingress, ipWebL7, 80, frame("GET", "/users//orders"), "", L7},
		{"param needs a non-empty segment", Ingress, ipWebL7, 80, frame("GET", "/users/"), "", L7},
		{"trailing slash", Ingress, ipWebL7, 80, frame("GET", "/users/42/"), "", L7},
		{"template is case sensitive", Ingress, ipWebL7, 80, frame("GET", "/USERS/42"), "", L7},
		{"prefix", Ingress, ipWebL7, 80, frame("HEAD", "/static/app.js"), a, None},
		{"prefix not reached", Ingress, ipWebL7, 80, frame("GET", "/static"), "", L7},
		{"verb not listed", Ingress, ipWebL7, 80, frame("DELETE", "/users/42"), "", L7},
		{"aux fold", Ingress, ipWebL7, 80, frame("POST", "/login", "@api.EXAMPLE.com"), a, None},
		{"aux mismatch", Ingress, ipWebL7, 80, frame("POST", "/login", "@evil.example.com"), "", L7},
		{"aux missing", Ingress, ipWebL7, 80, frame("POST", "/login"), "", L7},
		{"any verb, any peer", Ingress, ipUnknown, 80, frame("PUT", "/healthz"), b, None},
		{"any-peer rule, other path", Ingress, ipUnknown, 80, frame("GET", "/users/42"), "", L7},
		{"no resource needs a rule without resources", Ingress, ipWebL7, 80, frame("GET"), "", L7},
		{"empty L7Rule allows anything", Ingress, ipAdminL7, 80, frame("DELETE", "/users/42"), c, None},
		{"empty L7Rule allows no resource", Ingress, ipAdminL7, 80, frame(""), c, None},
		{"empty L7Rule allows overflow", Ingress, ipAdminL7, 3306, overflow(frame("DROP", "users")), c, None},
		{"rest template", Ingress, ipWebL7, 80, frame("GET", "/files/a/b"), h, None},
		{"rest template, trailing slash", Ingress, ipWebL7, 80, frame("GET", "/files/a/"), h, None},
		{"rest needs something", Ingress, ipWebL7, 80, frame("GET", "/files/"), "", L7},
		{"rest needs its slash", Ingress, ipWebL7, 80, frame("GET", "/files"), "", L7},
		{"fold template", Ingress, ipWebL7, 80, frame("GET", "/DOCS/Guide/x"), h, None},
		{"fold template, long segment", Ingress, ipWebL7, 80, frame("GET", "/docs/"+long+"/x"), h, None},
		{"long value", Ingress, ipWebL7, 80, frame("GET", "/static/"+long), a, None},
		{"sql tables", Ingress, ipWebL7, 3306, frame("SELECT", "users", "orders", "@shop"), d, None},
		{"sql fold table", Ingress, ipWebL7, 3306, frame("select", "ITEMS", "users", "@shop"), d, None},
		{"sql case-sensitive table", Ingress, ipWebL7, 3306, frame("SELECT", "Users", "@shop"), "", L7},
		{"sql one table not allowed", Ingress, ipWebL7, 3306, frame("SELECT", "users", "orders", "secrets", "@shop"), "", L7},
		{"sql other database", Ingress, ipWebL7, 3306, frame("SELECT", "users", "@billing"), "", L7},
		{"sql insert, any database", Ingress, ipWebL7, 3306, frame("INSERT", "orders", "@billing"), d, None},
		{"sql insert other table", Ingress, ipWebL7, 3306, frame("INSERT", "users"), "", L7},
		{"sql verb without resources", Ingress, ipWebL7, 3306, frame("BEGIN"), d, None},
		{"rule without resources covers any", Ingress, ipWebL7, 3306, frame("commit", "whatever"), d, None},
		{"overflow needs a rule without resources", Ingress, ipWebL7, 3306, overflow(frame("SELECT", "users", "@shop")), "", L7},
		{"overflow under a rule without resources", Ingress, ipWebL7, 3306, overflow(frame("BEGIN", "users")), d, None},
		{"admin's rule on mysql", Ingress, ipAdminL7, 3306, frame("DROP", "users"), c, None},
		{"kafka produce", Ingress, ipWebL7, 9092, frame("Produce", "orders.eu", "orders.us", "@web"), k, None},
		{"kafka other topic", Ingress, ipWebL7, 9092, frame("PRODUCE", "orders.eu", "payments", "@web"), "", L7},
		{"kafka other client", Ingress, ipWebL7, 9092, frame("PRODUCE", "orders.eu", "@batch"), "", L7},
		{"kafka metadata", Ingress, ipWebL7, 9092, frame("Metadata", "a", "b"), k, None},
		{"kafka metadata, all topics", Ingress, ipWebL7, 9092, frame("Metadata"), k, None},
		{"tcp port of an l7 rule", Ingress, ipBatch, 8080, frame("anything", "at", "all"), g, None},
		{"l7 port of the same rule", Ingress, ipBatch, 80, frame("GET", "/batch"), g, None},
		{"l7 port of the same rule, denied", Ingress, ipBatch, 80, frame("GET", "/other"), "", L7},
		{"memcached suffix", Ingress, ipWebL7, 11211, frame("get", "u1:session", "u2:session"), m, None},
		{"memcached sub-command", Ingress, ipWebL7, 11211, withSub(frame("meta", "u1:session"), "Debug"), m, None},
		{"memcached sub-command missing", Ingress, ipWebL7, 11211, frame("meta", "u1:session"), "", L7},
		{"memcached other key", Ingress, ipWebL7, 11211, frame("get", "u1:session", "u1:cart"), "", L7},
		{"no rule for the peer", Ingress, ipUnknown, 3306, frame("SELECT", "users"), "", NoRule},
		{"dns suffix", Egress, ipDNS, 53, frame("A", "www.example.com"), n, None},
		{"dns suffix folded", Egress, ipDNS, 53, frame("AAAA", "WWW.Example.COM"), n, None},
		{"dns exact", Egress, ipDNS, 53, frame("A", "example.com"), n, None},
		{"dns suffix is not a label match", Egress, ipDNS, 53, frame("A", "badexample.com"), "", L7},
		{"dns long name", Egress, ipDNS, 53, frame("A", long+".example.com"), n, None},
		{"dns other type", Egress, ipDNS, 53, frame("MX", "www.example.com"), "", L7},
	}
	for _, mode := range []bulkheadv1.Mode{bulkheadv1.Mode_MODE_DISCOVER, bulkheadv1.Mode_MODE_MONITOR, bulkheadv1.Mode_MODE_PROTECT} {
		p := mustCompileL7(t, l7Fixture(mode), l7Identities())
		md, _ := ModeFromProto(mode)
		for _, c := range cases {
			t.Run(md.String()+"/"+c.name, func(t *testing.T) {
				conn := p.Inbound(c.peer, c.port)
				if c.dir == Egress {
					conn = p.Outbound(c.peer, c.port)
				}
				if got, w := conn.Message(c.f), want(md, c.rule, c.reason); got != w {
					t.Errorf("Message(%q %q) = %+v, want %+v", c.f.Verb, c.f.Resource, got, w)
				}
			})
		}
	}
}

func TestGenericCompileRejects(t *testing.T) {
	rule := func(pp *bulkheadv1.ProxyPolicy) *bulkheadv1.Rule { return pp.Ingress[0] }
	many := func(n int, p func(i int) *bulkheadv1.Pattern) []*bulkheadv1.Pattern {
		out := make([]*bulkheadv1.Pattern, n)
		for i := range out {
			out[i] = p(i)
		}
		return out
	}
	const r0 = `ingress[0] "shop/api/a-web-read"`
	cases := []struct {
		name   string
		mutate func(pp *bulkheadv1.ProxyPolicy)
		want   string
	}{
		{"l7 without parsed port", func(pp *bulkheadv1.ProxyPolicy) {
			rule(pp).Ports = []*bulkheadv1.Port{port(80, "tcp"), port(6379, "redis")}
		},
			r0 + `.l7: l7 matcher on a rule with no port of a parsed protocol other than redis`},
		{"nil l7 rule", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[1] = nil }, r0 + ".l7[1]: nil l7 rule"},
		{"pattern unset", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[1] = &bulkheadv1.Pattern{} },
			r0 + ".l7[0].resources[1]: no exact, prefix, suffix or template set"},
		{"nil pattern", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[1].Aux[0] = nil }, r0 + ".l7[1].aux[0]: no exact"},
		{"empty exact", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = exact("") },
			r0 + ".l7[0].resources[0].exact: empty pattern"},
		{"empty aux prefix", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[1].Aux[0] = fold(prefix("")) }, ".l7[1].aux[0].prefix: empty pattern"},
		{"pattern too long", func(pp *bulkheadv1.ProxyPolicy) {
			rule(pp).L7[0].Resources[0] = prefix(strings.Repeat("a", MaxPatternLen+1))
		}, fmt.Sprintf(".resources[0].prefix: %d bytes, at most %d", MaxPatternLen+1, MaxPatternLen)},
		{"control character", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = exact("/a\nb") }, "control characters"},
		{"glob suffix", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = suffix("*.example.com") },
			`.suffix: "*.example.com": patterns are literal, write the suffix without '*' (".example.com")`},
		{"glob prefix", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = prefix("/api/*") }, `without '*' ("/api/")`},
		{"rest not last", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = tmpl("/a/{*}/b") },
			`.resources[0].template: "/a/{*}/b": "{*}" must be the last segment`},
		{"empty parameter", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = tmpl("/users/{}") }, `bad parameter "{}"`},
		{"bad parameter name", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = tmpl("/users/{a b}") }, `bad parameter "{a b}"`},
		{"unterminated parameter", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = tmpl("/users/{id") },
			`segment "{id": '{' and '}' only enclose a whole segment`},
		{"parameter inside a segment", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Resources[0] = tmpl("/users/u{id}") }, `segment "u{id}"`},
		{"too many segments", func(pp *bulkheadv1.ProxyPolicy) {
			rule(pp).L7[0].Resources[0] = tmpl(strings.Repeat("/a", MaxTemplateSegments))
		}, fmt.Sprintf("%d segments, at most %d", MaxTemplateSegments+1, MaxTemplateSegments)},
		{"empty verb", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Verbs[1] = "" }, r0 + `.l7[0].verbs[1]: "": empty verb name`},
		{"verb with space", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Verbs[1] = "QUERY A" }, "verb names are printable ASCII without spaces"},
		{"verb too long", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Verbs[1] = strings.Repeat("V", l7.MaxVerb+1) }, "verb name longer than 64 bytes"},
		{"empty sub-command", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Verbs[1] = "GET|" }, "empty sub-command"},
		{"too many verbs", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7[0].Verbs = make([]string, MaxCommands+1) },
			fmt.Sprintf(".l7[0].verbs: %d verbs, at most %d", MaxCommands+1, MaxCommands)},
		{"too many l7 rules", func(pp *bulkheadv1.ProxyPolicy) { rule(pp).L7 = make([]*bulkheadv1.L7Rule, MaxL7Rules+1) },
			fmt.Sprintf("%s.l7: %d rules, at most %d", r0, MaxL7Rules+1, MaxL7Rules)},
		{"too many patterns", func(pp *bulkheadv1.ProxyPolicy) {
			rule(pp).L7[0].Resources = many(MaxPatterns+1, func(i int) *bulkheadv1.Pattern { return exact(fmt.Sprint("/", i)) })
		}, fmt.Sprintf(".l7[0].resources: %d patterns, at most %d", MaxPatterns+1, MaxPatterns)},
		{"too many patterns in all", func(pp *bulkheadv1.ProxyPolicy) {
			ps := many(MaxPatterns, func(i int) *bulkheadv1.Pattern { return exact(fmt.Sprint("/", i)) })
			rule(pp).L7 = nil
			for range MaxRulePatterns/MaxPatterns + 1 {
				rule(pp).L7 = append(rule(pp).L7, &bulkheadv1.L7Rule{Resources: ps})
			}
		}, fmt.Sprintf("%s.l7: %d patterns in all, at most %d", r0, MaxRulePatterns+MaxPatterns, MaxRulePatterns)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pp := l7Fixture(bulkheadv1.Mode_MODE_PROTECT)
			c.mutate(pp)
			p, err := compile(pp, l7Identities(), testParsed)
			if err == nil {
				t.Fatal("compile accepted it")
			}
			if p != nil {
				t.Error("compile returned a policy with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not contain %q", err, c.want)
			}
		})
	}
}

// TestProtocolNames checks that Compile accepts exactly "tcp" and the names
// of protocols/all.
func TestProtocolNames(t *testing.T) {
	names := []string{"tcp", ""}
	for _, p := range all.Protocols() {
		names = append(names, p.Name)
	}
	for _, name := range names {
		pp := &bulkheadv1.ProxyPolicy{Segment: "api", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT,
			Ports:   []*bulkheadv1.Port{port(1000, name)},
			Ingress: []*bulkheadv1.Rule{{Name: "shop/api/r", Ports: []*bulkheadv1.Port{port(1000, name)}}}}
		if _, err := Compile(pp, nil); err != nil {
			t.Errorf("protocol %q: %v", name, err)
		}
	}
	for _, name := range []string{"gopher", "TCP", "Redis", " redis"} {
		if _, ok := all.ByName(name); ok {
			continue
		}
		pp := &bulkheadv1.ProxyPolicy{Segment: "api", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT,
			Ports: []*bulkheadv1.Port{port(1000, name)}}
		_, err := Compile(pp, nil)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unknown protocol %q (want one of ", name)) || !strings.Contains(err.Error(), "tcp") {
			t.Errorf("protocol %q: error %v", name, err)
		}
	}
}

// TestGenericSharedPort: a port on which one rule speaks redis and another
// a generic protocol judges a message by either matcher.
func TestGenericSharedPort(t *testing.T) {
	pp := &bulkheadv1.ProxyPolicy{Segment: "api", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ingress: []*bulkheadv1.Rule{
			{Name: "shop/api/a", Ports: []*bulkheadv1.Port{port(7000, "redis")}, Redis: redis("GET")},
			{Name: "shop/api/b", Ports: []*bulkheadv1.Port{port(7000, "memcached")}, L7: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}, Resources: pats(exact("k"))}, {Verbs: []string{"SET"}}}},
			// L7Rules do not apply to a redis port; without a Redis matcher
			// the rule allows every command there.
			{Name: "shop/api/c", Ports: []*bulkheadv1.Port{port(7001, "redis"), port(7002, "http")}, L7: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}}}},
		}}
	p := mustCompileL7(t, pp, nil)
	c := p.Inbound(ipUnknown, 7000)
	for _, tc := range []struct {
		f    *l7.Frame
		rule string
	}{
		{frame("get", "x"), "shop/api/a"},
		{frame("SET", "x"), "shop/api/b"},
		{frame("DEL", "k"), ""},
	} {
		if got, w := c.Message(tc.f), want(Protect, tc.rule, L7); got != w {
			t.Errorf("%s %s: %+v, want %+v", tc.f.Verb, tc.f.Resource, got, w)
		}
	}
	c1 := p.Inbound(ipUnknown, 7001)
	if got := c1.Message(frame("FLUSHALL")); got.Rule != "shop/api/c" {
		t.Errorf("redis port of an l7 rule: %+v", got)
	}
	c2 := p.Inbound(ipUnknown, 7002)
	if got := c2.Message(frame("POST", "/")); got.Verdict != Deny {
		t.Errorf("http port of an l7 rule: %+v", got)
	}
}

func TestGenericZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts are not meaningful under -cover or -race")
	}
	p := mustCompileL7(t, l7Fixture(bulkheadv1.Mode_MODE_PROTECT), l7Identities())
	long := strings.Repeat("y", 2*MaxPatternLen)
	for _, tc := range []struct {
		name string
		c    Conn
		fs   []*l7.Frame
	}{
		{"http", p.Inbound(ipWebL7, 80), []*l7.Frame{frame("GET", "/users/42"), frame("GET", "/users/1"), frame("post", "/login", "@API.example.com"),
			frame("DELETE", "/users/42"), frame("GET", "/static/"+long), frame("GET", "/nope")}},
		{"templates", p.Inbound(ipWebL7, 80), []*l7.Frame{frame("GET", "/users/42/orders"), frame("GET", "/files/a/b/c"),
			frame("GET", "/DOCS/Guide/x"), frame("GET", "/docs/"+long+"/x"), frame("GET", "/users//orders")}},
		{"sql", p.Inbound(ipWebL7, 3306), []*l7.Frame{frame("SELECT", "users", "orders", "ITEMS", "@shop"), frame("SELECT", "users", "secrets", "@shop"),
			frame("BEGIN"), overflow(frame("SELECT", "users"))}},
		{"dns", p.Outbound(ipDNS, 53), []*l7.Frame{frame("A", "www.example.com"), frame("AAAA", "A.B.EXAMPLE.COM"), frame("A", "evil.com"),
			frame("A", long+".example.com")}},
		{"kafka", p.Inbound(ipWebL7, 9092), []*l7.Frame{frame("Produce", "orders.eu", "orders.us", "@web"), frame("Metadata")}},
	} {
		if n := testing.AllocsPerRun(200, func() {
			for _, f := range tc.fs {
				_ = tc.c.Message(f)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
		}
	}
}

func TestGenericBigPolicy(t *testing.T) {
	// Many rules and patterns: the answer must not depend on scanning.
	pp, ids := bigL7Policy(300)
	p := mustCompileL7(t, pp, ids)
	c := p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 80)
	for _, tc := range []struct {
		f    *l7.Frame
		rule string
	}{
		{frame("GET", "/svc077/items/9"), "demo/api/from-s077"},
		{frame("GET", "/svc078/items/9"), ""},
		{frame("GET", "/shared/x"), "demo/api/any-shared"},
		{frame("POST", "/svc077/items"), "demo/api/from-s077"},
		{frame("POST", "/svc077/items/9"), ""},
	} {
		if got, w := c.Message(tc.f), want(Protect, tc.rule, L7); got != w {
			t.Errorf("%s %s: %+v, want %+v", tc.f.Verb, tc.f.Resource, got, w)
		}
	}
	if names := p.RuleNames(Ingress); !slices.IsSorted(names) || len(names) != 301 {
		t.Errorf("RuleNames: %d", len(names))
	}
}

// bigL7Policy has n HTTP rules, one per peer segment s000…, and one any-peer
// rule, and n identities.
func bigL7Policy(n int) (*bulkheadv1.ProxyPolicy, []*bulkheadv1.Identity) {
	pp := &bulkheadv1.ProxyPolicy{Segment: "api", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ports: []*bulkheadv1.Port{port(80, "http")}}
	pp.Ingress = append(pp.Ingress, &bulkheadv1.Rule{Name: "demo/api/any-shared", Ports: []*bulkheadv1.Port{port(80, "http")},
		L7: []*bulkheadv1.L7Rule{{Verbs: []string{"GET"}, Resources: pats(prefix("/shared/"))}}})
	var ids []*bulkheadv1.Identity
	for i := range n {
		seg := fmt.Sprintf("demo/s%03d", i)
		svc := fmt.Sprintf("/svc%03d", i)
		pp.Ingress = append(pp.Ingress, &bulkheadv1.Rule{Name: fmt.Sprintf("demo/api/from-s%03d", i),
			Peers: []*bulkheadv1.Peer{segPeer(seg)}, Ports: []*bulkheadv1.Port{port(80, "http")},
			L7: []*bulkheadv1.L7Rule{
				{Verbs: []string{"GET", "HEAD"}, Resources: pats(tmpl(svc+"/items/{id}"), exact(svc+"/items"), prefix(svc+"/static/"))},
				{Verbs: []string{"POST"}, Resources: pats(exact(svc + "/items"))},
			}})
		ids = append(ids, &bulkheadv1.Identity{Workload: fmt.Sprint("w", i), Namespace: "demo", Segment: seg,
			Ips: []string{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()}})
	}
	return pp, ids
}

func BenchmarkGenericMessage(b *testing.B) {
	pp, ids := bigL7Policy(500)
	p := mustCompileL7(b, pp, ids)
	fx := mustCompileL7(b, l7Fixture(bulkheadv1.Mode_MODE_PROTECT), l7Identities())
	for _, tc := range []struct {
		name string
		c    Conn
		f    *l7.Frame
	}{
		{"http-template", p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 80), frame("GET", "/svc077/items/12345")},
		{"http-exact", p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 80), frame("POST", "/svc077/items")},
		{"http-denied", p.Inbound(netip.AddrFrom4([4]byte{198, 18, 0, 77}), 80), frame("GET", "/svc078/items/1")},
		{"sql-3-tables", fx.Inbound(ipWebL7, 3306), frame("SELECT", "users", "orders", "items", "@shop")},
		{"dns-suffix-fold", fx.Outbound(ipDNS, 53), frame("A", "api.eu.Example.com")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = tc.c.Message(tc.f)
			}
		})
	}
}

func BenchmarkCompileL7(b *testing.B) {
	pp, ids := bigL7Policy(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compile(pp, ids, testParsed); err != nil {
			b.Fatal(err)
		}
	}
}
