package learn

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

var clock = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// bounded is a store whose demo/redis policy has learning bounds lb.
func bounded(t *testing.T, lb *v1alpha1.Learning) *store.Store {
	t.Helper()
	st := newStore(t)
	p := &v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Learning: lb}}
	p.Namespace, p.Name = "demo", "redis"
	if _, err := st.Apply([]*v1alpha1.SegmentPolicy{p}); err != nil {
		t.Fatal(err)
	}
	return st
}

func at(d time.Duration) *metav1.Time {
	t := metav1.NewTime(clock.Add(d))
	return &t
}

// TestLearningBounds: a policy's spec.learning refuses flows outside its
// window and, with from: enforced, from peers still in discover or without
// a segment; refused flows are counted by reason and handed to Refused;
// allowed ones are learned as before.
func TestLearningBounds(t *testing.T) {
	type refusal struct{ Node, Src, Reason string }
	cases := []struct {
		name    string
		lb      *v1alpha1.Learning
		setup   func(st *store.Store) error
		flow    *bulkheadv1.Flow
		learned bool
		reason  string
	}{
		{name: "no bounds: today's behaviour", flow: redisFlow("demo/cart", "GET", ""), learned: true},
		{name: "from any", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromAny}, flow: redisFlow("demo/cart", "GET", ""), learned: true},
		{name: "inside the window", lb: &v1alpha1.Learning{Window: &v1alpha1.LearningWindow{NotBefore: at(-time.Hour), NotAfter: at(time.Hour)}},
			flow: redisFlow("demo/cart", "GET", ""), learned: true},
		{name: "after the window", lb: &v1alpha1.Learning{Window: &v1alpha1.LearningWindow{NotAfter: at(-time.Second)}},
			flow: redisFlow("demo/cart", "GET", ""), reason: v1alpha1.RefusedWindow},
		{name: "before the window", lb: &v1alpha1.Learning{Window: &v1alpha1.LearningWindow{NotBefore: at(time.Minute)}},
			flow: redisFlow("demo/cart", "GET", ""), reason: v1alpha1.RefusedWindow},
		{name: "enforced: peer in discover", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromEnforced},
			flow: redisFlow("demo/cart", "GET", ""), reason: v1alpha1.RefusedPeerLearns},
		{name: "enforced: peer without a segment", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromEnforced},
			flow: redisFlow("", "GET", ""), reason: v1alpha1.RefusedPeerUnknown},
		{name: "enforced: peer in monitor", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromEnforced},
			setup: func(st *store.Store) error { return st.SetMode("demo", "cart", v1alpha1.ModeMonitor) },
			flow:  redisFlow("demo/cart", "GET", ""), learned: true},
		{name: "enforced: peer's namespace in protect", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromEnforced},
			setup: func(st *store.Store) error { return st.SetNamespaceMode("shop", v1alpha1.ModeProtect) },
			flow:  redisFlow("shop/web", "GET", ""), learned: true},
		{name: "enforced and a closed window: the window first", lb: &v1alpha1.Learning{From: v1alpha1.LearnFromEnforced,
			Window: &v1alpha1.LearningWindow{NotAfter: at(-time.Hour)}},
			setup: func(st *store.Store) error { return st.SetMode("demo", "cart", v1alpha1.ModeMonitor) },
			flow:  redisFlow("demo/cart", "GET", ""), reason: v1alpha1.RefusedWindow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := bounded(t, c.lb)
			if c.setup != nil {
				if err := c.setup(st); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			var got []refusal
			l := NewWithOptions(st, nil, Options{Registerer: reg, Now: func() time.Time { return clock },
				Refused: func(node string, f *bulkheadv1.Flow, reason string) {
					got = append(got, refusal{node, f.SrcSegment, reason})
				}})
			l.Observe("redis.demo", []*bulkheadv1.Flow{c.flow})
			p, _ := st.Get("demo", "redis")
			if learned := len(p.Spec.Ingress) > 0; learned != c.learned {
				t.Fatalf("learned %v, want %v: %+v", learned, c.learned, p.Spec.Ingress)
			}
			var want []refusal
			if c.reason != "" {
				want = []refusal{{"redis.demo", c.flow.SrcSegment, c.reason}}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Refused calls (-want +got):\n%s", diff)
			}
			for _, r := range []string{v1alpha1.RefusedWindow, v1alpha1.RefusedPeerLearns, v1alpha1.RefusedPeerUnknown} {
				n := counter(t, reg, r)
				if w := 0.0; r == c.reason {
					w = 1
					if n != w {
						t.Errorf("bulkhead_learn_refused_total{reason=%q} = %v, want %v", r, n, w)
					}
				} else if n != w {
					t.Errorf("bulkhead_learn_refused_total{reason=%q} = %v, want %v", r, n, w)
				}
			}
		})
	}
}

// TestLearningValidate: bad bounds are refused by validation.
func TestLearningValidate(t *testing.T) {
	for name, lb := range map[string]*v1alpha1.Learning{
		"unknown from":    {From: "friends"},
		"inverted window": {Window: &v1alpha1.LearningWindow{NotBefore: at(time.Hour), NotAfter: at(0)}},
	} {
		p := &v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Learning: lb}}
		p.Namespace, p.Name = "demo", "redis"
		if err := p.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

// TestProvenance: a learned rule records the node and flow that taught it
// first; later flows from another node widen the rule but keep the first
// teacher; a re-export is byte-identical when nothing new was learned.
func TestProvenance(t *testing.T) {
	st := newStore(t)
	l := New(st, nil)
	first := redisFlow("demo/cart", "GET", "")
	first.FirstSeen = timestamppb.New(clock.Add(1500 * time.Millisecond))
	l.Observe("cart-1.demo", []*bulkheadv1.Flow{first})
	want := &v1alpha1.LearnedFrom{
		Node: "cart-1.demo", Peer: "demo/cart", Flow: "demo/cart -> demo/redis:6379/redis GET",
		Time: at(time.Second),
	}
	check := func(when string) {
		t.Helper()
		p, _ := st.Get("demo", "redis")
		if len(p.Spec.Ingress) != 1 {
			t.Fatalf("%s: rules %+v", when, p.Spec.Ingress)
		}
		if diff := cmp.Diff(want, p.Spec.Ingress[0].LearnedFrom); diff != "" {
			t.Errorf("%s: learnedFrom (-want +got):\n%s", when, diff)
		}
	}
	check("first flow")
	exp1, _ := st.Export("")

	// Another node teaches a new command for the same rule.
	second := redisFlow("demo/cart", "SET", "")
	second.FirstSeen = timestamppb.New(clock.Add(time.Hour))
	l.Observe("cart-2.demo", []*bulkheadv1.Flow{second})
	p, _ := st.Get("demo", "redis")
	if got := p.Spec.Ingress[0].Redis.Commands; !cmp.Equal(got, []string{"get", "set"}) {
		t.Fatalf("commands %v", got)
	}
	check("after a second teacher")

	// Nothing new: the export stays byte for byte, time included.
	exp2, _ := st.Export("")
	l.Observe("cart-3.demo", []*bulkheadv1.Flow{redisFlow("demo/cart", "GET", ""), second})
	exp3, _ := st.Export("")
	if !bytes.Equal(exp2, exp3) {
		t.Fatalf("re-export differs:\n%s\n---\n%s", exp2, exp3)
	}
	if !bytes.Contains(exp1, []byte("node: cart-1.demo")) || !bytes.Contains(exp3, []byte("time: \"2026-11-27T12:00:01Z\"")) {
		t.Errorf("export lacks the provenance:\n%s", exp3)
	}

	// An address without a segment is named by its address; an over-long
	// node id is cut to its bound.
	long := string(bytes.Repeat([]byte("n"), 400))
	l.Observe(long, []*bulkheadv1.Flow{with(redisFlow("", "GET", ""), func(f *bulkheadv1.Flow) { f.DstPort = 6380 })})
	p, _ = st.Get("demo", "redis")
	var lf *v1alpha1.LearnedFrom
	for _, r := range p.Spec.Ingress {
		if r.Ports[0].Port == 6380 {
			lf = r.LearnedFrom
		}
	}
	if lf == nil || lf.Peer != "198.18.0.20" || len(lf.Node) != v1alpha1.MaxLearnedFromNode || lf.Time != nil {
		t.Errorf("unknown peer's learnedFrom: %+v", lf)
	}
}

// counter reads bulkhead_learn_refused_total{reason} from reg.
func counter(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bulkhead_learn_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no bulkhead_learn_refused_total{reason=%q}", reason)
	return 0
}
