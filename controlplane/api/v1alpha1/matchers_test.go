package v1alpha1

import (
	"strings"
	"testing"
)

func TestValidPathPattern(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/healthz": true, "/static/*": true, "/users/{id}": true, "/files/{*}": true,
		"/users/{id}/orders": true, "": false, "healthz": false, "/a/*/b": false, "/{*}/x": false,
		"/users/{}": false, "/users/{id": false, "/a b": false, "/a?x=1": false, "/x*y": false,
	} {
		if got := validPathPattern(p); got != want {
			t.Errorf("validPathPattern(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestMatcherNeedsItsProtocol(t *testing.T) {
	p := &SegmentPolicy{}
	p.Name, p.Namespace = "web", "shop"
	p.Spec.Ingress = []Rule{{
		Name:  "r",
		Ports: []PortProtocol{{Port: 80, Protocol: ProtocolRedis}},
		HTTP:  &HTTPMatch{Methods: []string{"get"}, Paths: []string{"nope"}, Hosts: []string{"Bad Host"}},
		SQL:   &SQLMatch{Verbs: []string{"SELECT"}},
	}}
	err := p.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"http: http matcher on a rule with no http or http2 port",
		"sql: sql matcher on a rule with no mysql or postgres port",
		`http.methods[0]: "get"`, `http.paths[0]: "nope"`, `http.hosts[0]: "Bad Host"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestNormalizeMatchers(t *testing.T) {
	r := Rule{HTTP: &HTTPMatch{Methods: []string{"post", "GET", "GET"}, Hosts: []string{"B.example", "a.example"}}}
	r.Normalize()
	if got := strings.Join(r.HTTP.Methods, ","); got != "GET,POST" {
		t.Errorf("methods %s", got)
	}
	if got := strings.Join(r.HTTP.Hosts, ","); got != "a.example,b.example" {
		t.Errorf("hosts %s", got)
	}
}

func TestMixedProtocolsNeedTheirOwnRules(t *testing.T) {
	p := &SegmentPolicy{}
	p.Name, p.Namespace = "web", "shop"
	p.Spec.Ingress = []Rule{{
		Name:  "r",
		Ports: []PortProtocol{{Port: 80, Protocol: ProtocolHTTP}, {Port: 3306, Protocol: ProtocolMySQL}, {Port: 22}},
		HTTP:  &HTTPMatch{Methods: []string{"GET"}},
	}}
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), `protocol "mysql" has no matcher in this rule`) {
		t.Fatalf("Validate() = %v", err)
	}
	if strings.Contains(err.Error(), `"tcp"`) {
		t.Errorf("plain tcp ports must stay allowed beside matchers: %v", err)
	}
}

func TestPatternBoundsMatchTheEngine(t *testing.T) {
	long := "/" + strings.Repeat("a/", 64)
	if validPathPattern(long) {
		t.Errorf("a %d-segment path was accepted", MaxPathSegments+1)
	}
	if validPathPattern("/" + strings.Repeat("a", MaxPathPattern)) {
		t.Error("an over-long path was accepted")
	}
	if validPathPattern("/a\x01b") {
		t.Error("a control character was accepted")
	}
}
