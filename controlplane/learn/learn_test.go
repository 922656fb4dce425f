package learn

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/google/go-cmp/cmp"
)

const (
	in  = bulkheadv1.Direction_DIRECTION_INGRESS
	out = bulkheadv1.Direction_DIRECTION_EGRESS
)

// redisFlow is a discover-mode Redis message from src to demo/redis.
func redisFlow(src, verb, sub string) *bulkheadv1.Flow {
	return &bulkheadv1.Flow{
		Direction: in, SrcIp: "198.18.0.20", SrcSegment: src, DstIp: "198.18.0.10", DstSegment: "demo/redis",
		DstPort: 6379, Protocol: "redis", Verb: verb, Sub: sub,
		Verdict: bulkheadv1.Verdict_VERDICT_VIOLATION, Mode: bulkheadv1.Mode_MODE_DISCOVER, Count: 1,
	}
}

func with(f *bulkheadv1.Flow, edit func(f *bulkheadv1.Flow)) *bulkheadv1.Flow {
	edit(f)
	return f
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// export is the store's export without the rules' learnedFrom (what
// provenance tests check on their own): the rules learning made.
func export(t *testing.T, st *store.Store) string {
	t.Helper()
	ps := st.List()
	for _, p := range ps {
		for _, rules := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
			for i := range rules {
				rules[i].LearnedFrom = nil
			}
		}
	}
	b, err := v1alpha1.MarshalYAML(ps)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func changed(st *store.Store) bool {
	select {
	case <-st.Changes():
		return true
	default:
		return false
	}
}

const head = "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata:\n"

func TestObserve(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, st *store.Store)
		flows []*bulkheadv1.Flow
		want  string // the export after learning
	}{{
		name: "commands with sub-commands, lower case, deduplicated",
		flows: []*bulkheadv1.Flow{
			redisFlow("demo/cart", "GET", ""),
			redisFlow("demo/cart", "set", ""),
			redisFlow("demo/cart", "CONFIG", "GET"),
			redisFlow("demo/cart", "get", ""),
			redisFlow("demo/cart", "Client", "SetName"),
			with(redisFlow("demo/cart", "KEYS", ""), func(f *bulkheadv1.Flow) { f.Resource = "user:*" }),
		},
		want: head + `  name: redis
  namespace: demo
spec:
  ingress:
  - name: from-cart-redis-6379
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - client|setname
      - config|get
      - get
      - keys
      - set
`,
	}, {
		name: "peers of other namespaces and unknown peers",
		flows: []*bulkheadv1.Flow{
			redisFlow("shop/web", "GET", ""),
			redisFlow("", "PING", ""),
			with(redisFlow("", "PING", ""), func(f *bulkheadv1.Flow) { f.SrcIp = "2001:db8::7" }),
			with(redisFlow("", "PING", ""), func(f *bulkheadv1.Flow) { f.SrcIp = "::ffff:198.18.0.21" }),
		},
		want: head + `  name: redis
  namespace: demo
spec:
  ingress:
  - name: from-198-18-0-20-redis-6379
    origin: learned
    peers:
    - cidr: 198.18.0.20/32
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - ping
  - name: from-198-18-0-21-redis-6379
    origin: learned
    peers:
    - cidr: 198.18.0.21/32
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - ping
  - name: from-2001-0db8-0000-0000-0000-0000-0000-0007-redis-6379
    origin: learned
    peers:
    - cidr: 2001:db8::7/128
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - ping
  - name: from-web.shop-redis-6379
    origin: learned
    peers:
    - namespace: shop
      segment: web
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - get
`,
	}, {
		name: "L4 flows learn a rule without matcher; Redis connections learn nothing",
		flows: []*bulkheadv1.Flow{
			with(redisFlow("demo/cart", "", ""), func(f *bulkheadv1.Flow) { f.Connection = true }),
			with(redisFlow("demo/cart", "", ""), func(f *bulkheadv1.Flow) { f.Connection, f.Protocol, f.DstPort = true, "tcp", 22 }),
			with(redisFlow("demo/cart", "", ""), func(f *bulkheadv1.Flow) { f.Connection, f.Protocol, f.DstPort = true, "", 23 }),
		},
		want: head + `  name: redis
  namespace: demo
spec:
  ingress:
  - name: from-cart-tcp-22
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 22
      protocol: tcp
  - name: from-cart-tcp-23
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 23
      protocol: tcp
`,
	}, {
		name: "egress flows teach the source's policy",
		flows: []*bulkheadv1.Flow{
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Direction = out }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Direction, f.DstSegment = out, "" }),
			with(redisFlow("", "GET", ""), func(f *bulkheadv1.Flow) { f.Direction = out }),
		},
		want: head + `  name: cart
  namespace: demo
spec:
  egress:
  - name: to-198-18-0-10-redis-6379
    origin: learned
    peers:
    - cidr: 198.18.0.10/32
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - get
  - name: to-redis-redis-6379
    origin: learned
    peers:
    - segment: redis
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - get
`,
	}, {
		name: "nothing to learn",
		flows: []*bulkheadv1.Flow{
			nil,
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Mode = bulkheadv1.Mode_MODE_MONITOR }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Verdict = bulkheadv1.Verdict_VERDICT_DENY }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Rule = "demo/redis/any" }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "" }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "redis" }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "a/b/c" }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Direction = bulkheadv1.Direction_DIRECTION_UNSPECIFIED }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstPort = 0 }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstPort = 70000 }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Protocol = "gopher" }),
			with(redisFlow("demo/cart", "GE T", ""), func(f *bulkheadv1.Flow) {}),
			with(redisFlow("", "GET", ""), func(f *bulkheadv1.Flow) { f.SrcIp = "not-an-ip" }),
			with(redisFlow("", "GET", ""), func(f *bulkheadv1.Flow) { f.SrcIp = "fe80::1%eth0" }),
			redisFlow("demo/Cart", "GET", ""),
			redisFlow("demo/cart", "", ""),
		},
		want: "",
	}, {
		name: "discover only: the store's mode decides too",
		setup: func(t *testing.T, st *store.Store) {
			if err := st.SetMode("demo", "redis", v1alpha1.ModeProtect); err != nil {
				t.Fatal(err)
			}
			if err := st.SetNamespaceMode("shop", v1alpha1.ModeMonitor); err != nil {
				t.Fatal(err)
			}
		},
		flows: []*bulkheadv1.Flow{
			redisFlow("demo/cart", "GET", ""),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "shop/cache" }),
			with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "demo/cache" }),
		},
		want: head + `  name: cache
  namespace: demo
spec:
  ingress:
  - name: from-cart-redis-6379
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - get
---
` + head + `  name: redis
  namespace: demo
spec:
  mode: protect
`,
	}, {
		name: "a user rule keeps its name",
		setup: func(t *testing.T, st *store.Store) {
			ps, err := v1alpha1.UnmarshalYAML([]byte(head + "  name: redis\n  namespace: demo\nspec:\n  ingress:\n  - name: from-cart-redis-6379\n    ports: [{port: 6379, protocol: redis}]\n    redis: {commands: [get]}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Apply(ps); err != nil {
				t.Fatal(err)
			}
		},
		flows: []*bulkheadv1.Flow{redisFlow("demo/cart", "DEL", "")},
		want: head + `  name: redis
  namespace: demo
spec:
  ingress:
  - name: from-cart-redis-6379
    origin: user
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - get
  - name: from-cart-redis-6379-learned
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands:
      - del
`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkObserve(t, c.setup, c.flows, c.want) })
	}
}

// checkObserve learns flows into a fresh store (after setup) and checks the
// export, that Changes signalled exactly when the export changed, that the
// same flows again change nothing and that applying the export changes
// nothing either.
func checkObserve(t *testing.T, setup func(t *testing.T, st *store.Store), flows []*bulkheadv1.Flow, want string) {
	t.Helper()
	st := newStore(t)
	if setup != nil {
		setup(t, st)
	}
	before := export(t, st)
	changed(st)
	l := New(st, nil)
	l.Observe("redis.demo", flows)
	got := export(t, st)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("export (-want +got):\n%s", diff)
	}
	if sig := changed(st); sig != (got != before) {
		t.Fatalf("Changes signalled %v, export changed %v", sig, got != before)
	}
	// The same flows again teach nothing: the export, provenance
	// included, stays byte for byte.
	raw, err := st.Export("")
	if err != nil {
		t.Fatal(err)
	}
	l.Observe("redis.demo", flows)
	if changed(st) {
		t.Fatal("the same flows changed the store again")
	}
	if again, _ := st.Export(""); !bytes.Equal(again, raw) {
		t.Fatalf("second export differs:\n%s", again)
	}
	// Applying the export changes nothing either.
	ps, err := v1alpha1.UnmarshalYAML(raw)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := st.Apply(ps); err != nil || len(names) != 0 || changed(st) {
		t.Fatalf("Apply(export) = %v, %v; want no change", names, err)
	}
}

func TestObserveSpreadOverBatches(t *testing.T) {
	st := newStore(t)
	l := New(st, nil)
	l.Observe("redis.demo", []*bulkheadv1.Flow{redisFlow("demo/cart", "GET", "")})
	l.Observe("redis.demo", []*bulkheadv1.Flow{redisFlow("demo/cart", "SET", ""), redisFlow("demo/cart", "GET", "")})
	if !changed(st) {
		t.Fatal("no change signalled")
	}
	l.Observe("redis.demo", []*bulkheadv1.Flow{redisFlow("demo/cart", "set", "")})
	if changed(st) {
		t.Fatal("a known command changed the store")
	}
	p, ok := st.Get("demo", "redis")
	if !ok || len(p.Spec.Ingress) != 1 {
		t.Fatalf("policy: %+v", p)
	}
	if diff := cmp.Diff([]string{"get", "set"}, p.Spec.Ingress[0].Redis.Commands); diff != "" {
		t.Fatalf("commands (-want +got):\n%s", diff)
	}
	if p.Status.LearnedRules != 1 {
		t.Fatalf("LearnedRules = %d", p.Status.LearnedRules)
	}
}

func TestLongNames(t *testing.T) {
	long := strings.Repeat("a", 63)
	f1 := with(redisFlow(long+"/"+long, "GET", ""), func(f *bulkheadv1.Flow) { f.DstSegment = "demo/redis" })
	f2 := with(redisFlow(long+"/"+long[:62]+"b", "GET", ""), func(f *bulkheadv1.Flow) {})
	st := newStore(t)
	New(st, nil).Observe("redis.demo", []*bulkheadv1.Flow{f1, f2})
	p, ok := st.Get("demo", "redis")
	if !ok || len(p.Spec.Ingress) != 2 {
		t.Fatalf("policy: %+v", p)
	}
	for _, r := range p.Spec.Ingress {
		if len(r.Name) > MaxName {
			t.Errorf("name %q is %d long", r.Name, len(r.Name))
		}
	}
	if p.Spec.Ingress[0].Name == p.Spec.Ingress[1].Name {
		t.Error("two long names collide")
	}
}

func TestExportDeterministic(t *testing.T) {
	flows := []*bulkheadv1.Flow{
		redisFlow("demo/cart", "SET", ""), redisFlow("shop/web", "GET", ""), redisFlow("", "CONFIG", "SET"),
		with(redisFlow("demo/cart", "GET", ""), func(f *bulkheadv1.Flow) { f.Direction = out }),
	}
	var exports [2][]byte
	for i := range exports {
		st := newStore(t)
		l := New(st, nil)
		if i == 1 {
			// The other order, one flow at a time.
			for j := len(flows) - 1; j >= 0; j-- {
				l.Observe("n", flows[j:j+1])
			}
		} else {
			l.Observe("n", flows)
		}
		exports[i] = []byte(export(t, st))
	}
	if !bytes.Equal(exports[0], exports[1]) {
		t.Fatalf("exports differ:\n%s\n---\n%s", exports[0], exports[1])
	}
}
