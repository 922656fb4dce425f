package explain

import (
	"slices"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

const policies = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: demo}
spec:
  mode: protect
  ingress:
  - name: get-users
    origin: learned
    peers: [{segment: cart}]
    ports: [{port: 8080, protocol: http}]
    http: {methods: [GET], paths: ["/users/{id}"], hosts: [api.demo]}
  - name: redis-any
    peers: [{cidr: 198.18.5.0/24}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [get, "config|get"]}
  egress:
  - name: to-db
    peers: [{segment: db}]
    ports: [{port: 5432, protocol: postgres}]
    sql: {verbs: [SELECT], tables: [orders]}
`

func evaluator(t *testing.T) *Evaluator {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML([]byte(policies))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := New(ps, store.Settings{DefaultMode: v1alpha1.ModeMonitor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestExplain(t *testing.T) {
	ev := evaluator(t)
	cases := []struct {
		name          string
		flow          Flow
		verdict, rule string
		reason        string
		differs       []string
	}{
		{"allowed", Flow{SrcSegment: "demo/cart", DstSegment: "demo/api", Port: 8080, Protocol: "http", Verb: "GET", Resource: "/users/7", Aux: "api.demo"},
			"allow", "demo/api/get-users", "", nil},
		{"wrong path", Flow{SrcSegment: "demo/cart", DstSegment: "demo/api", Port: 8080, Protocol: "http", Verb: "GET", Resource: "/admin", Aux: "api.demo"},
			"deny", "", ReasonL7, []string{FieldResource}},
		{"wrong verb and host", Flow{SrcSegment: "demo/cart", DstSegment: "demo/api", Port: 8080, Protocol: "http", Verb: "POST", Resource: "/users/7", Aux: "evil"},
			"deny", "", ReasonL7, []string{FieldVerb, FieldAux}},
		{"wrong peer", Flow{SrcSegment: "demo/web", DstSegment: "demo/api", Port: 8080, Protocol: "http", Verb: "GET", Resource: "/users/7", Aux: "api.demo"},
			"deny", "", ReasonNoRule, []string{FieldPeer}},
		{"redis sub-command", Flow{SrcIP: "198.18.5.9", DstSegment: "demo/api", Port: 6379, Protocol: "redis", Verb: "CONFIG", Sub: "SET"},
			"deny", "", ReasonL7, []string{FieldVerb}},
		{"redis allowed", Flow{SrcIP: "198.18.5.9", DstSegment: "demo/api", Port: 6379, Protocol: "redis", Verb: "config", Sub: "get"},
			"allow", "demo/api/redis-any", "", nil},
		{"egress join", Flow{Direction: "egress", SrcSegment: "demo/api", DstSegment: "demo/db", Port: 5432, Protocol: "postgres", Verb: "SELECT", Resource: "orders", More: []string{"users"}},
			"deny", "", ReasonL7, []string{FieldResource}},
		{"egress allowed", Flow{Direction: "egress", SrcSegment: "demo/api", DstSegment: "demo/db", Port: 5432, Protocol: "postgres", Verb: "select", Resource: "orders"},
			"allow", "demo/api/to-db", "", nil},
		{"connection", Flow{SrcSegment: "demo/cart", DstSegment: "demo/api", Port: 8080, Connection: true},
			"allow", "demo/api/get-users", "", nil},
		{"segment without policy", Flow{SrcSegment: "demo/api", DstSegment: "demo/db", Port: 5432, Connection: true},
			"violation", "", ReasonNoRule, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex := ev.Explain(c.flow)
			if ex.Verdict != c.verdict || ex.Rule != c.rule || ex.Reason != c.reason {
				t.Fatalf("got %s %q %q, want %s %q %q", ex.Verdict, ex.Rule, ex.Reason, c.verdict, c.rule, c.reason)
			}
			if c.differs != nil && (len(ex.Near) == 0 || !slices.Equal(ex.Near[0].Differs, c.differs)) {
				t.Fatalf("near: %+v, want first differing on %v", ex.Near, c.differs)
			}
		})
	}
}

func TestFlowOfCutList(t *testing.T) {
	r := history.Record{}
	r.Direction, r.DstPort, r.Protocol, r.Verb, r.Resource = "ingress", 5432, "postgres", "SELECT", "a"
	r.MoreResources = []string{"b", "..."}
	f := FlowOf(&r)
	if !f.Overflow || !slices.Equal(f.More, []string{"b"}) || f.Connection {
		t.Fatalf("%+v", f)
	}
	r.Verb, r.Protocol = "", "tcp"
	if f := FlowOf(&r); !f.Connection {
		t.Fatalf("a tcp flow without verb is a connection: %+v", f)
	}
}

func TestDriftModes(t *testing.T) {
	ps, _ := v1alpha1.UnmarshalYAML([]byte(policies))
	live, _ := v1alpha1.UnmarshalYAML([]byte(policies))
	live[0].Spec.Mode = v1alpha1.ModeMonitor
	rep, err := Drift(ps, live, store.Settings{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || len(rep.Modes) != 1 || rep.Modes[0].Git != "protect" || len(rep.Unused) != 3 || len(rep.Changed) != 0 {
		t.Fatalf("%+v", rep)
	}
}
