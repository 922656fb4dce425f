package explain

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/explain"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	workloads = []identity.Workload{
		{Name: "api", Namespace: "demo", IPs: []netip.Addr{netip.MustParseAddr("198.18.8.1")},
			Ports: []identity.Port{{Port: 8080, Protocol: "http"}, {Port: 6379, Protocol: "redis"}, {Port: 5432, Protocol: "postgres"}}},
		{Name: "cart", Namespace: "demo", IPs: []netip.Addr{netip.MustParseAddr("198.18.8.10")}},
		{Name: "web", Namespace: "demo", IPs: []netip.Addr{netip.MustParseAddr("198.18.8.11")}},
		{Name: "job", Namespace: "other", IPs: []netip.Addr{netip.MustParseAddr("198.18.8.12")}},
	}
	sources = []string{"198.18.8.10", "198.18.8.11", "198.18.8.12", "198.18.9.1", "198.18.10.1"}
	peers   = [][]v1alpha1.Peer{
		nil, {{Segment: "cart"}}, {{Segment: "web"}}, {{Namespace: "other"}}, {{CIDR: "198.18.9.0/24"}},
		{{Segment: "cart"}, {CIDR: "198.18.10.0/24"}},
	}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func subset(rng *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if rng.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

// randomRule returns a rule with one port and, often, its protocol's matcher.
func randomRule(rng *rand.Rand, i int) v1alpha1.Rule {
	r := v1alpha1.Rule{Name: fmt.Sprintf("r%02d", i), Peers: pick(rng, peers)}
	switch rng.IntN(5) {
	case 0:
		r.Ports = []v1alpha1.PortProtocol{{Port: pick(rng, []int32{8080, 6379, 5432}), Protocol: "tcp"}}
	case 1:
		r.Ports = []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}
		if c := subset(rng, []string{"get", "set", "config|get", "config"}); len(c) > 0 {
			r.Redis = &v1alpha1.RedisMatch{Commands: c}
		}
	case 2:
		r.Ports = []v1alpha1.PortProtocol{{Port: 5432, Protocol: "postgres"}}
		if rng.IntN(4) > 0 {
			r.SQL = &v1alpha1.SQLMatch{
				Verbs:     subset(rng, []string{"SELECT", "INSERT", "BEGIN"}),
				Tables:    subset(rng, []string{"orders", "shop.*", "items"}),
				Databases: subset(rng, []string{"shop", "crm"}),
			}
		}
	default:
		r.Ports = []v1alpha1.PortProtocol{{Port: 8080, Protocol: "http"}}
		if rng.IntN(5) > 0 {
			r.HTTP = &v1alpha1.HTTPMatch{
				Methods: subset(rng, []string{"GET", "POST", "DELETE"}),
				Paths:   subset(rng, []string{"/users/{id}", "/orders", "/static/*", "/files/{*}"}),
				Hosts:   subset(rng, []string{"api.demo", "*.example.test"}),
			}
		}
	}
	return r
}

type frame struct {
	port                uint16
	verb, sub, res, aux string
	more                []string
	overflow            bool
}

func randomFrame(rng *rand.Rand) frame {
	switch rng.IntN(3) {
	case 0:
		f := frame{port: 6379, verb: pick(rng, []string{"GET", "set", "CONFIG", "DEL"})}
		if f.verb == "CONFIG" {
			f.sub = pick(rng, []string{"GET", "SET", "get"})
		}
		f.res = pick(rng, []string{"", "k1"})
		return f
	case 1:
		f := frame{port: 5432, verb: pick(rng, []string{"SELECT", "INSERT", "BEGIN", "DELETE"}),
			res: pick(rng, []string{"", "orders", "shop.items", "items", "ORDERS"}), aux: pick(rng, []string{"shop", "crm", "SHOP", ""})}
		if f.res != "" && rng.IntN(3) == 0 {
			f.more = []string{pick(rng, []string{"items", "shop.x", "orders", "other"})}
		}
		f.overflow = f.res != "" && rng.IntN(8) == 0
		return f
	}
	return frame{port: 8080, verb: pick(rng, []string{"GET", "POST", "DELETE", "get", "PUT"}),
		res: pick(rng, []string{"/users/1", "/users/1/x", "/users/", "/orders", "/static/a.css", "/files/a/b", "/files/", ""}),
		aux: pick(rng, []string{"api.demo", "x.example.test", "example.test", ""})}
}

// TestExplainMatchesEngine compiles random policies of demo/api for the
// proxy (controlplane/compile → dataplane/enforce) and for explain, and
// compares rule, reason and verdict on random messages and connections.
func TestExplainMatchesEngine(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 1))
	ids := map[string]bool{}
	compared, allowed, policies := 0, 0, 0
	for iter := range 300 {
		mode := pick(rng, []v1alpha1.Mode{v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect})
		p := &v1alpha1.SegmentPolicy{
			TypeMeta:   v1alpha1.TypeMetaSegmentPolicy(),
			ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "demo"},
			Spec:       v1alpha1.SegmentPolicySpec{Mode: mode},
		}
		for i := range rng.IntN(6) {
			p.Spec.Ingress = append(p.Spec.Ingress, randomRule(rng, i))
		}
		if p.Validate() != nil {
			continue
		}
		settings := store.Settings{DefaultMode: v1alpha1.ModeDiscover}
		out, err := compile.Compile(compile.Input{Policies: []*v1alpha1.SegmentPolicy{p}, Workloads: workloads, Settings: settings})
		if err != nil {
			t.Fatalf("iteration %d: compile: %v", iter, err)
		}
		identities := identitiesOf(out)
		pol, err := enforce.Compile(out.Proxies["api.demo"], identities)
		if err != nil {
			t.Fatalf("iteration %d: enforce: %v", iter, err)
		}
		resolve := func(a netip.Addr) (string, bool) {
			for _, id := range identities {
				for _, ip := range id.GetIps() {
					if ip == a.String() {
						return id.GetSegment(), true
					}
				}
			}
			return "", false
		}
		ev, err := explain.New([]*v1alpha1.SegmentPolicy{p}, settings, resolve)
		if err != nil {
			t.Fatalf("iteration %d: explain: %v", iter, err)
		}
		policies++
		for range 40 {
			src := pick(rng, sources)
			fr := randomFrame(rng)
			conn := pol.Inbound(netip.MustParseAddr(src), fr.port)
			flow := explain.Flow{SrcIP: src, DstIP: "198.18.8.1", Port: uint32(fr.port), Verb: fr.verb, Sub: fr.sub,
				Resource: fr.res, Aux: fr.aux, More: fr.more, Overflow: fr.overflow}

			// The connection.
			cd := conn.Connect()
			cflow := flow
			cflow.Connection = true
			ce := ev.Explain(cflow)
			check(t, iter, p, cflow, cd, ce)

			var f l7.Frame
			f.Dir = l7.DirRequest
			f.Verb, f.Sub, f.Aux = bytesOrNil(fr.verb), bytesOrNil(fr.sub), bytesOrNil(fr.aux)
			f.Resource = bytesOrNil(fr.res)
			for i, m := range fr.more {
				f.More[i] = []byte(m)
			}
			f.NMore, f.Overflow = len(fr.more), fr.overflow
			d := conn.Message(&f)
			ex := ev.Explain(flow)
			check(t, iter, p, flow, d, ex)
			compared++
			if d.Rule != "" {
				allowed++
			}
			if !ex.Allowed() && ex.Reason == explain.ReasonL7 && len(ex.Near) == 0 {
				t.Fatalf("iteration %d: an l7 denial without near misses: %+v", iter, ex)
			}
			ids[d.Rule] = true
		}
	}
	// The generator must exercise both outcomes and many rules.
	if policies < 200 || allowed < compared/10 || compared-allowed < compared/10 || len(ids) < 5 {
		t.Fatalf("weak generator: %d policies, %d messages, %d allowed, %d rule names", policies, compared, allowed, len(ids))
	}
	t.Logf("%d policies, %d messages compared, %d allowed", policies, compared, allowed)
}

func check(t *testing.T, iter int, p *v1alpha1.SegmentPolicy, f explain.Flow, d enforce.Decision, ex explain.Explanation) {
	t.Helper()
	reason := d.Reason.String()
	if d.Reason == enforce.None {
		reason = ""
	}
	if d.Rule != ex.Rule || reason != ex.Reason || d.Verdict.String() != ex.Verdict || d.Enforced != ex.Enforced {
		t.Fatalf("iteration %d: flow %+v\nengine:  rule %q reason %q verdict %s enforced %v\nexplain: rule %q reason %q verdict %s enforced %v\npolicy: %+v",
			iter, f, d.Rule, reason, d.Verdict, d.Enforced, ex.Rule, ex.Reason, ex.Verdict, ex.Enforced, p.Spec)
	}
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
