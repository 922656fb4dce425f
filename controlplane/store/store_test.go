package store

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const redisPolicy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: redis
  namespace: demo
spec:
  mode: protect
  ingress:
  - name: from-cart
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands: [GET, set]
`

const webPolicy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: web
  namespace: shop
spec:
  egress:
  - name: to-redis
    peers:
    - segment: redis
      namespace: demo
    ports:
    - port: 6379
      protocol: redis
`

func policies(t *testing.T, docs ...string) []*v1alpha1.SegmentPolicy {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML([]byte(strings.Join(docs, "---\n")))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drained reports whether Changes had a signal, and empties it.
func drained(s *Store) bool {
	select {
	case <-s.Changes():
		return true
	default:
		return false
	}
}

// files lists the regular files under dir, relative, and fails on any
// temporary file.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("temporary file left: %s", path)
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func specs(ps []*v1alpha1.SegmentPolicy) []*v1alpha1.SegmentPolicy {
	out := make([]*v1alpha1.SegmentPolicy, len(ps))
	for i, p := range ps {
		out[i] = p.DeepCopy()
		out[i].Status = v1alpha1.SegmentPolicyStatus{}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	changed, err := s.Apply(policies(t, redisPolicy, webPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"demo/redis", "shop/web"}, changed); diff != "" {
		t.Fatalf("changed (-want +got):\n%s", diff)
	}
	if err := s.SetMode("demo", "cart", v1alpha1.ModeMonitor); err != nil {
		t.Fatal(err)
	}
	if err := s.SetNamespaceMode("shop", v1alpha1.ModeProtect); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDefaultMode(v1alpha1.ModeMonitor); err != nil {
		t.Fatal(err)
	}
	learned := []v1alpha1.Rule{{Name: "from-web.shop-redis-6379", Peers: []v1alpha1.Peer{{Segment: "web", Namespace: "shop"}},
		Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{Commands: []string{"get"}}}}
	if ok, err := s.MergeLearned("demo", "redis", Ingress, learned); err != nil || !ok {
		t.Fatalf("MergeLearned = %v, %v", ok, err)
	}
	s.RecordViolations("demo/redis", 3)

	want := []string{
		"policies/demo/cart.yaml",
		"policies/demo/redis.yaml",
		"policies/shop/web.yaml",
		"settings.yaml",
	}
	if diff := cmp.Diff(want, files(t, dir)); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	cart, err := os.ReadFile(filepath.Join(dir, "policies/demo/cart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantCart := "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata:\n  name: cart\n  namespace: demo\nspec:\n  mode: monitor\n"
	if string(cart) != wantCart {
		t.Fatalf("cart.yaml:\n%s\nwant:\n%s", cart, wantCart)
	}

	s2 := open(t, dir)
	if diff := cmp.Diff(specs(s.List()), specs(s2.List())); diff != "" {
		t.Fatalf("reopened store differs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(s.Settings(), s2.Settings()); diff != "" {
		t.Fatalf("reopened settings differ (-want +got):\n%s", diff)
	}
	e1, _ := s.Export("")
	e2, _ := s2.Export("")
	if string(e1) != string(e2) {
		t.Fatalf("exports differ:\n%s\n---\n%s", e1, e2)
	}
	if strings.Contains(string(e1), "status") || strings.Contains(string(e1), "violations") {
		t.Fatalf("export shows status:\n%s", e1)
	}
	// The export applied to the reopened store changes nothing.
	drained(s2)
	changed, err = s2.Apply(policies(t, string(e1)))
	if err != nil || len(changed) != 0 || drained(s2) {
		t.Fatalf("Apply(export) = %v, %v; want no change", changed, err)
	}
}

func TestStatus(t *testing.T) {
	s := open(t, t.TempDir())
	if _, err := s.Apply(policies(t, redisPolicy)); err != nil {
		t.Fatal(err)
	}
	learned := []v1alpha1.Rule{{Name: "from-api-redis-6379", Peers: []v1alpha1.Peer{{Segment: "api"}},
		Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{Commands: []string{"get"}}}}
	if _, err := s.MergeLearned("demo", "redis", Ingress, learned); err != nil {
		t.Fatal(err)
	}
	drained(s)
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.RecordHits([]Hit{
		{SegmentKey: "demo/redis", Rule: "from-cart", Count: 2, Last: t1},
		{SegmentKey: "demo/redis", Rule: "demo/redis/from-cart", Count: 3, Last: t1.Add(-time.Hour)},
		{SegmentKey: "demo/redis", Rule: "no-such-rule", Count: 9, Last: t1},
		{SegmentKey: "demo/nothing", Rule: "from-cart", Count: 9, Last: t1},
	})
	s.RecordViolations("demo/redis", 4)
	s.RecordViolations("demo/redis", 1)
	s.RecordViolations("demo/no-policy", 7)
	s.RecordViolations("bad-key", 7)
	if drained(s) {
		t.Fatal("status updates signalled Changes")
	}
	p, ok := s.Get("demo", "redis")
	if !ok {
		t.Fatal("Get: not found")
	}
	want := v1alpha1.SegmentPolicyStatus{
		IngressRules: 2, LearnedRules: 1, Violations: 5,
		Rules: []v1alpha1.RuleStatus{{Name: "from-cart", Hits: 5, LastHit: timePtr(t1)}},
	}
	if diff := cmp.Diff(want, p.Status); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
	if got := s.Violations("demo/no-policy"); got != 7 {
		t.Fatalf("Violations(no policy) = %d, want 7", got)
	}
	// Re-applying the policy (which drops the learned rule) keeps the
	// status of the rules that remain.
	if _, err := s.Apply(policies(t, redisPolicy)); err != nil {
		t.Fatal(err)
	}
	p, _ = s.Get("demo", "redis")
	want.IngressRules, want.LearnedRules = 1, 0
	if diff := cmp.Diff(want, p.Status); diff != "" {
		t.Fatalf("status after apply (-want +got):\n%s", diff)
	}
	// The caller's copy is its own.
	p.Spec.Ingress[0].Name = "changed"
	p.Status.Rules[0].Hits = 100
	if q, _ := s.Get("demo", "redis"); q.Spec.Ingress[0].Name != "from-cart" || q.Status.Rules[0].Hits != 5 {
		t.Fatal("a caller's change reached the store")
	}
}

func TestApply(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Apply(policies(t, redisPolicy)); err != nil {
		t.Fatal(err)
	}
	drained(s)
	before, _ := os.ReadFile(filepath.Join(dir, "policies/demo/redis.yaml"))
	info, _ := os.Stat(filepath.Join(dir, "policies/demo/redis.yaml"))

	// Same content, written differently: not a change, not rewritten.
	same := strings.Replace(redisPolicy, "commands: [GET, set]", "commands: [set, get, SET]", 1)
	changed, err := s.Apply(policies(t, same))
	if err != nil || len(changed) != 0 || drained(s) {
		t.Fatalf("Apply(same) = %v, %v, want no change and no signal", changed, err)
	}
	info2, _ := os.Stat(filepath.Join(dir, "policies/demo/redis.yaml"))
	if !os.SameFile(info, info2) {
		t.Fatal("unchanged policy was rewritten")
	}

	for name, batch := range map[string][]string{
		"one invalid":  {webPolicy, strings.Replace(redisPolicy, "mode: protect", "mode: enforce", 1)},
		"duplicate":    {webPolicy, webPolicy},
		"bad protocol": {strings.Replace(webPolicy, "protocol: redis", "protocol: gopher", 1)},
	} {
		t.Run(name, func(t *testing.T) {
			changed, err := s.Apply(policies(t, batch...))
			if err == nil {
				t.Fatalf("Apply accepted an invalid batch, changed %v", changed)
			}
			if len(changed) != 0 || drained(s) {
				t.Fatalf("invalid batch changed %v", changed)
			}
			if got := files(t, dir); len(got) != 1 {
				t.Fatalf("files after a failed apply: %v", got)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "policies/demo/redis.yaml"))
			if string(after) != string(before) {
				t.Fatal("a failed apply rewrote a file")
			}
			if _, ok := s.Get("shop", "web"); ok {
				t.Fatal("a failed apply stored a policy")
			}
		})
	}
	_, err = s.Apply(policies(t, strings.Replace(redisPolicy, "mode: protect", "mode: enforce", 1)))
	if err == nil || !strings.Contains(err.Error(), "demo/redis: spec.mode") {
		t.Fatalf("error %v does not name the policy and field", err)
	}

	// A real change is written and signalled.
	changed, err = s.Apply(policies(t, strings.Replace(redisPolicy, "mode: protect", "mode: monitor", 1), webPolicy))
	if err != nil || !drained(s) {
		t.Fatalf("Apply = %v, %v; want a signal", changed, err)
	}
	if diff := cmp.Diff([]string{"demo/redis", "shop/web"}, changed); diff != "" {
		t.Fatalf("changed (-want +got):\n%s", diff)
	}
	if m := s.EffectiveMode("demo", "redis"); m != v1alpha1.ModeMonitor {
		t.Fatalf("mode %q after apply", m)
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Apply(policies(t, redisPolicy)); err != nil {
		t.Fatal(err)
	}
	drained(s)
	if err := s.Delete("demo", "redis"); err != nil {
		t.Fatal(err)
	}
	if !drained(s) {
		t.Fatal("Delete did not signal")
	}
	if err := s.Delete("demo", "redis"); err == nil {
		t.Fatal("second Delete succeeded")
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files after delete: %v", got)
	}
	if len(open(t, dir).List()) != 0 {
		t.Fatal("deleted policy came back")
	}
}

func TestModes(t *testing.T) {
	s := open(t, t.TempDir())
	check := func(ns, name string, want v1alpha1.Mode) {
		t.Helper()
		if got := s.EffectiveMode(ns, name); got != want {
			t.Errorf("EffectiveMode(%s/%s) = %q, want %q", ns, name, got, want)
		}
	}
	check("demo", "redis", v1alpha1.ModeDiscover)
	must(t, s.SetDefaultMode(v1alpha1.ModeMonitor))
	check("demo", "redis", v1alpha1.ModeMonitor)
	must(t, s.SetNamespaceMode("demo", v1alpha1.ModeProtect))
	check("demo", "redis", v1alpha1.ModeProtect)
	check("other", "redis", v1alpha1.ModeMonitor)
	must(t, s.SetMode("demo", "redis", v1alpha1.ModeDiscover))
	check("demo", "redis", v1alpha1.ModeDiscover)
	must(t, s.SetMode("demo", "redis", ""))
	check("demo", "redis", v1alpha1.ModeProtect)
	must(t, s.SetNamespaceMode("demo", ""))
	check("demo", "redis", v1alpha1.ModeMonitor)
	if st := s.Settings(); st.NamespaceModes != nil {
		t.Errorf("namespace modes %v after removal", st.NamespaceModes)
	}

	drained(s)
	must(t, s.SetDefaultMode(v1alpha1.ModeMonitor))
	must(t, s.SetMode("demo", "redis", ""))
	if drained(s) {
		t.Error("setting the same modes signalled")
	}
	for name, err := range map[string]error{
		"default":       s.SetDefaultMode("enforce"),
		"namespace":     s.SetNamespaceMode("demo", "enforce"),
		"namespace key": s.SetNamespaceMode("Demo", v1alpha1.ModeProtect),
		"segment":       s.SetMode("demo", "redis", "enforce"),
		"segment name":  s.SetMode("demo", "Redis", v1alpha1.ModeProtect),
	} {
		if err == nil {
			t.Errorf("%s: bad mode accepted", name)
		}
	}
	if drained(s) {
		t.Error("refused modes signalled")
	}
	// Settings returns a copy.
	must(t, s.SetNamespaceMode("demo", v1alpha1.ModeProtect))
	st := s.Settings()
	st.NamespaceModes["demo"] = v1alpha1.ModeDiscover
	check("demo", "other", v1alpha1.ModeProtect)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsBadFiles(t *testing.T) {
	cases := map[string]struct {
		path, content, want string
	}{
		"not yaml":        {"policies/demo/redis.yaml", "spec: [", "policies/demo/redis.yaml"},
		"invalid policy":  {"policies/demo/redis.yaml", strings.Replace(redisPolicy, "port: 6379", "port: 0", 1), "not a port"},
		"unknown field":   {"policies/demo/redis.yaml", strings.Replace(redisPolicy, "mode: protect", "mode: protect\n  bogus: 1", 1), "unknown field"},
		"wrong name":      {"policies/demo/cache.yaml", redisPolicy, "its path says demo/cache"},
		"wrong namespace": {"policies/prod/redis.yaml", redisPolicy, "its path says prod/redis"},
		"two policies":    {"policies/demo/redis.yaml", redisPolicy + "---\n" + redisPolicy, "2 policies"},
		"empty":           {"policies/demo/redis.yaml", "", "0 policies"},
		"settings":        {"settings.yaml", "defaultMode: enforce\n", "settings.yaml"},
		"settings field":  {"settings.yaml", "defaultMod: protect\n", "unknown field"},
		"settings ns":     {"settings.yaml", "namespaceModes: {Demo: protect}\n", "not a DNS label"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			good := filepath.Join(dir, "policies/shop/web.yaml")
			must(t, os.MkdirAll(filepath.Dir(good), 0o755))
			must(t, os.WriteFile(good, []byte(webPolicy), 0o644))
			bad := filepath.Join(dir, c.path)
			must(t, os.MkdirAll(filepath.Dir(bad), 0o755))
			must(t, os.WriteFile(bad, []byte(c.content), 0o644))
			s, err := Open(dir, nil)
			if err == nil {
				t.Fatalf("Open succeeded with %d policies", len(s.List()))
			}
			if !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open() = %v\nwant it to name %s and say %q", err, bad, c.want)
			}
		})
	}
}

func TestOpenCleansAndIgnores(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Apply(policies(t, redisPolicy)); err != nil {
		t.Fatal(err)
	}
	// An interrupted write leaves a temporary file; a person leaves a note.
	stale := filepath.Join(dir, "policies/demo/.redis.yaml"+tempMarker+"123")
	must(t, os.WriteFile(stale, []byte("half a poli"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, ".settings.yaml"+tempMarker+"9"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "policies/demo/README.md"), []byte("notes"), 0o644))
	s2 := open(t, dir)
	if len(s2.List()) != 1 {
		t.Fatalf("%d policies", len(s2.List()))
	}
	if diff := cmp.Diff([]string{"policies/demo/README.md", "policies/demo/redis.yaml"}, files(t, dir)); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
}

func TestMergeLearned(t *testing.T) {
	redis := func(name string, peer v1alpha1.Peer, cmds ...string) v1alpha1.Rule {
		r := v1alpha1.Rule{Name: name, Peers: []v1alpha1.Peer{peer}, Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}}
		if len(cmds) > 0 {
			r.Redis = &v1alpha1.RedisMatch{Commands: cmds}
		}
		return r
	}
	cart := v1alpha1.Peer{Segment: "cart"}
	type step struct {
		dir         Direction
		rules       []v1alpha1.Rule
		wantChanged bool
	}
	cases := []struct {
		name    string
		initial string // a policy applied first, or ""
		steps   []step
		want    string // the exported spec of demo/redis
	}{{
		name:  "creates the policy without a mode",
		steps: []step{{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "GET", "config|GET")}, true}},
		want: `spec:
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
      - config|get
      - get
`,
	}, {
		name: "merges commands, then learns nothing new",
		steps: []step{
			{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "get")}, true},
			{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "set", "GET")}, true},
			{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "set"), redis("from-cart-redis-6379", cart, "get")}, false},
		},
		want: `spec:
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
      - set
`,
	}, {
		name:    "never touches a user rule",
		initial: "spec:\n  mode: discover\n  ingress:\n  - name: from-cart-redis-6379\n    ports: [{port: 6379, protocol: redis}]\n    redis: {commands: [get]}\n",
		steps: []step{
			{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "del")}, true},
			{Ingress, []v1alpha1.Rule{redis("from-cart-redis-6379", cart, "del")}, false},
		},
		want: `spec:
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
  mode: discover
`,
	}, {
		name: "every command absorbs a list; egress kept apart",
		steps: []step{
			{Egress, []v1alpha1.Rule{redis("to-cache-redis-6379", v1alpha1.Peer{Segment: "cache"}, "get")}, true},
			{Egress, []v1alpha1.Rule{redis("to-cache-redis-6379", v1alpha1.Peer{Segment: "cache"})}, true},
			{Egress, []v1alpha1.Rule{redis("to-cache-redis-6379", v1alpha1.Peer{Segment: "cache"}, "set")}, false},
		},
		want: `spec:
  egress:
  - name: to-cache-redis-6379
    origin: learned
    peers:
    - segment: cache
    ports:
    - port: 6379
      protocol: redis
`,
	}, {
		name: "ports and peers united",
		steps: []step{
			{Ingress, []v1alpha1.Rule{{Name: "from-10-0-0-1-tcp", Peers: []v1alpha1.Peer{{CIDR: "198.18.0.1/32"}}, Ports: []v1alpha1.PortProtocol{{Port: 80}}}}, true},
			{Ingress, []v1alpha1.Rule{{Name: "from-10-0-0-1-tcp", Peers: []v1alpha1.Peer{{CIDR: "198.18.0.2/32"}}, Ports: []v1alpha1.PortProtocol{{Port: 22, Protocol: "tcp"}}}}, true},
			{Ingress, []v1alpha1.Rule{{Name: "from-10-0-0-1-tcp", Peers: []v1alpha1.Peer{{CIDR: "198.18.0.1/32"}}, Ports: []v1alpha1.PortProtocol{{Port: 80, Protocol: "tcp"}}}}, false},
		},
		want: `spec:
  ingress:
  - name: from-10-0-0-1-tcp
    origin: learned
    peers:
    - cidr: 198.18.0.1/32
    - cidr: 198.18.0.2/32
    ports:
    - port: 22
      protocol: tcp
    - port: 80
      protocol: tcp
`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			if c.initial != "" {
				if _, err := s.Apply(policies(t, "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: redis, namespace: demo}\n"+c.initial)); err != nil {
					t.Fatal(err)
				}
			}
			for i, st := range c.steps {
				drained(s)
				info, _ := os.Stat(filepath.Join(dir, "policies/demo/redis.yaml"))
				changed, err := s.MergeLearned("demo", "redis", st.dir, st.rules)
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
			out, err := s.Export("demo")
			if err != nil {
				t.Fatal(err)
			}
			head := "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata:\n  name: redis\n  namespace: demo\n"
			if diff := cmp.Diff(head+c.want, string(out)); diff != "" {
				t.Fatalf("export (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeLearnedRefuses(t *testing.T) {
	s := open(t, t.TempDir())
	good := v1alpha1.Rule{Name: "from-cart-tcp-80", Peers: []v1alpha1.Peer{{Segment: "cart"}}, Ports: []v1alpha1.PortProtocol{{Port: 80}}}
	bad := v1alpha1.Rule{Name: "from-cart-tcp-0", Peers: []v1alpha1.Peer{{Segment: "cart"}}, Ports: []v1alpha1.PortProtocol{{Port: 0}}}
	if _, err := s.MergeLearned("demo", "redis", Ingress, []v1alpha1.Rule{good, bad}); err == nil || !strings.Contains(err.Error(), "demo/redis") {
		t.Fatalf("MergeLearned(bad) = %v", err)
	}
	if _, err := s.MergeLearned("demo", "redis", 0, []v1alpha1.Rule{good}); err == nil {
		t.Fatal("MergeLearned(no direction) succeeded")
	}
	if _, err := s.MergeLearned("Demo", "redis", Ingress, []v1alpha1.Rule{good}); err == nil {
		t.Fatal("MergeLearned(bad namespace) succeeded")
	}
	if len(s.List()) != 0 || drained(s) {
		t.Fatal("a refused merge changed the store")
	}
}

// TestConcurrent runs writers and readers together; run with -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const workers, rounds = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for i := range rounds {
				p := policies(t, strings.NewReplacer("name: web", fmt.Sprintf("name: web-%d", w), "to-redis", fmt.Sprintf("to-redis-%d", i)).Replace(webPolicy))
				if _, err := s.Apply(p); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range rounds {
				r := v1alpha1.Rule{Name: "from-cart-redis-6379", Peers: []v1alpha1.Peer{{Segment: "cart"}},
					Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}},
					Redis: &v1alpha1.RedisMatch{Commands: []string{fmt.Sprintf("cmd%d", w*rounds+i)}}}
				if _, err := s.MergeLearned("demo", "redis", Ingress, []v1alpha1.Rule{r}); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				s.RecordHits([]Hit{{SegmentKey: "demo/redis", Rule: "from-cart-redis-6379", Count: 1}})
				s.RecordViolations("demo/redis", 1)
				for _, p := range s.List() {
					if err := p.Validate(); err != nil {
						errs <- err
					}
				}
				if _, err := s.Export(""); err != nil {
					errs <- err
				}
				_ = s.Settings()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p, ok := s.Get("demo", "redis")
	if !ok || len(p.Spec.Ingress) != 1 || len(p.Spec.Ingress[0].Redis.Commands) != workers*rounds {
		t.Fatalf("learned rule lost commands: %+v", p)
	}
	if p.Status.Violations != workers*rounds {
		t.Fatalf("violations = %d, want %d", p.Status.Violations, workers*rounds)
	}
	if len(s.List()) != workers+1 {
		t.Fatalf("%d policies, want %d", len(s.List()), workers+1)
	}
	files(t, dir)
	if diff := cmp.Diff(specs(s.List()), specs(open(t, dir).List())); diff != "" {
		t.Fatalf("reopened store differs (-want +got):\n%s", diff)
	}
}

func TestSettingsMode(t *testing.T) {
	cases := []struct {
		name string
		s    Settings
		ns   string
		want v1alpha1.Mode
	}{
		{"unset", Settings{}, "demo", v1alpha1.ModeDiscover},
		{"cluster", Settings{DefaultMode: v1alpha1.ModeMonitor}, "demo", v1alpha1.ModeMonitor},
		{"namespace", Settings{DefaultMode: v1alpha1.ModeMonitor, NamespaceModes: map[string]v1alpha1.Mode{"demo": v1alpha1.ModeProtect}}, "demo", v1alpha1.ModeProtect},
		{"other namespace", Settings{NamespaceModes: map[string]v1alpha1.Mode{"demo": v1alpha1.ModeProtect}}, "shop", v1alpha1.ModeDiscover},
	}
	for _, c := range cases {
		if got := c.s.Mode(c.ns); got != c.want {
			t.Errorf("%s: Mode(%s) = %q, want %q", c.name, c.ns, got, c.want)
		}
	}
}

func timePtr(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }
