package promote

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// syncBuffer is a log sink safe for the loop's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// harness runs a Promoter on a real store, one check per step.
type harness struct {
	t     *testing.T
	st    *store.Store
	p     *Promoter
	clk   *clock
	t0    time.Time
	ticks chan time.Time
	logs  *syncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, clk: &clock{}, t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), ticks: make(chan time.Time), logs: &syncBuffer{}}
	h.clk.Set(h.t0)
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.p = New(st, log, Options{Now: h.clk.Now, Tick: h.ticks})
	h.p.stepped = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.p.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start = %v", err)
		}
	})
	return h
}

// step sets the clock to t0+at and runs one check, returning when it is done.
func (h *harness) step(at time.Duration) {
	h.t.Helper()
	now := h.t0.Add(at)
	h.clk.Set(now)
	h.ticks <- now
	<-h.p.stepped
}

func (h *harness) wantMode(key string, want v1alpha1.Mode) {
	h.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	if got := h.st.EffectiveMode(ns, name); got != want {
		h.t.Fatalf("mode of %s = %s, want %s", key, got, want)
	}
}

func (h *harness) wantCondition(key, reason string, status metav1.ConditionStatus) {
	h.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	p, ok := h.st.Get(ns, name)
	if !ok {
		h.t.Fatalf("no policy %s", key)
	}
	c := meta.FindStatusCondition(p.Status.Conditions, ConditionType)
	if c == nil || c.Reason != reason || c.Status != status {
		h.t.Fatalf("condition of %s = %+v, want reason %s status %s", key, c, reason, status)
	}
}

func learnedRule(verb string) v1alpha1.Rule {
	return v1alpha1.Rule{
		Name: "from-web-redis-6379", Origin: v1alpha1.OriginLearned,
		Peers: []v1alpha1.Peer{{Segment: "web"}},
		Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: v1alpha1.ProtocolRedis}},
		Redis: &v1alpha1.RedisMatch{Commands: []string{verb}},
	}
}

func policy(name string, pr *v1alpha1.Promotion) *v1alpha1.SegmentPolicy {
	p := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), Spec: v1alpha1.SegmentPolicySpec{Mode: v1alpha1.ModeDiscover, Promotion: pr}}
	p.Name, p.Namespace = name, "shop"
	return p
}

func TestLoopPromotesAndVeto(t *testing.T) {
	h := newHarness(t)
	pr := &v1alpha1.Promotion{Enabled: true, LearnQuiet: dur(time.Minute), ViolationQuiet: dur(2 * time.Minute), MinMessages: i64(5)}
	if _, err := h.st.Apply([]*v1alpha1.SegmentPolicy{policy("cart", pr), policy("plain", nil)}); err != nil {
		t.Fatal(err)
	}
	const cart = "shop/cart"

	h.step(0) // watching begins
	if _, err := h.st.MergeLearned("shop", "cart", store.Ingress, []v1alpha1.Rule{learnedRule("get")}); err != nil {
		t.Fatal(err)
	}
	h.step(30 * time.Second) // a rule learned now
	h.step(80 * time.Second)
	h.wantMode(cart, v1alpha1.ModeDiscover)
	h.wantCondition(cart, ReasonLearning, metav1.ConditionFalse)

	h.step(90 * time.Second) // one minute without learning
	h.wantMode(cart, v1alpha1.ModeMonitor)
	h.wantCondition(cart, ReasonPromoted, metav1.ConditionTrue)

	// Violations keep arriving: no promotion.
	h.st.RecordHits([]store.Hit{{SegmentKey: cart, Rule: "from-web-redis-6379", Count: 3, Last: h.t0}})
	for at := 100 * time.Second; at <= 300*time.Second; at += 40 * time.Second {
		h.st.RecordViolations(cart, 1)
		h.step(at)
		h.wantMode(cart, v1alpha1.ModeMonitor)
		h.wantCondition(cart, ReasonViolations, metav1.ConditionFalse)
	}
	// Last violation seen at 300s; quiet from 420s, but 3 messages < 5.
	h.step(420 * time.Second)
	h.wantMode(cart, v1alpha1.ModeMonitor)
	h.wantCondition(cart, ReasonTooFewMessages, metav1.ConditionFalse)
	h.st.RecordHits([]store.Hit{{SegmentKey: cart, Rule: "from-web-redis-6379", Count: 2, Last: h.t0}})
	h.step(430 * time.Second)
	h.wantMode(cart, v1alpha1.ModeProtect)
	h.wantCondition(cart, ReasonPromoted, metav1.ConditionTrue)
	h.step(440 * time.Second)
	h.wantCondition(cart, ReasonReached, metav1.ConditionTrue)
	h.wantMode("shop/plain", v1alpha1.ModeDiscover)

	recs := h.p.Records()
	if len(recs) != 2 || recs[0].To != v1alpha1.ModeProtect || recs[1].To != v1alpha1.ModeMonitor || recs[1].From != v1alpha1.ModeDiscover ||
		!recs[0].Time.Equal(h.t0.Add(430*time.Second)) || !recs[1].Time.Equal(h.t0.Add(90*time.Second)) {
		t.Fatalf("Records = %+v", recs)
	}
	if logs := h.logs.String(); strings.Count(logs, "segment promoted") != 2 {
		t.Errorf("log lines of promotions: %d, want 2\n%s", strings.Count(logs, "segment promoted"), logs)
	}

	// An operator lowers the mode: that is a veto, kept in the spec.
	if err := h.st.SetMode("shop", "cart", v1alpha1.ModeMonitor); err != nil {
		t.Fatal(err)
	}
	h.step(500 * time.Second)
	h.step(time.Hour)
	h.wantMode(cart, v1alpha1.ModeMonitor)
	h.wantCondition(cart, ReasonVetoed, metav1.ConditionFalse)
	if p, _ := h.st.Get("shop", "cart"); !p.Spec.Promotion.Vetoed {
		t.Fatal("spec.promotion.vetoed not set after a demotion")
	}
	if recs := h.p.Records(); len(recs) != 3 || recs[0].Reason != ReasonVetoed {
		t.Fatalf("Records = %+v", recs)
	}
}

func TestVetoStopsPromotion(t *testing.T) {
	h := newHarness(t)
	pr := &v1alpha1.Promotion{Enabled: true, LearnQuiet: dur(time.Minute), ViolationQuiet: dur(time.Minute), MinMessages: i64(0)}
	if _, err := h.st.Apply([]*v1alpha1.SegmentPolicy{policy("api", pr), policy("web", pr)}); err != nil {
		t.Fatal(err)
	}
	h.step(0)
	if err := h.p.Veto("shop", "api", "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Veto("shop", "nope", "test"); err == nil {
		t.Error("Veto of a segment without policy succeeded")
	}
	for _, at := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour} {
		h.step(at)
	}
	h.wantMode("shop/api", v1alpha1.ModeDiscover)
	h.wantCondition("shop/api", ReasonVetoed, metav1.ConditionFalse)
	h.wantMode("shop/web", v1alpha1.ModeProtect) // the other one went on

	// The veto survives a restart: it is in the spec, on disk.
	p, _ := h.st.Get("shop", "api")
	if p.Spec.Promotion == nil || !p.Spec.Promotion.Vetoed || !p.Spec.Promotion.Enabled {
		t.Fatalf("spec.promotion = %+v", p.Spec.Promotion)
	}
}
