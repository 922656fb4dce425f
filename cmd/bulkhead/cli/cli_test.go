package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// fakeAdmin implements the admin API paths the CLI calls, over a store of
// policies it parses and exports with v1alpha1 like the control plane.
type fakeAdmin struct {
	t  *testing.T
	mu sync.Mutex
	// policies are the live policies, with status.
	policies []*v1alpha1.SegmentPolicy
	segments []Segment
	flows    []FlowRecord
	proxies  []ProxyStatus
	// requests records "METHOD path?query body" of each call.
	requests []string
}

func newFakeAdmin(t *testing.T) (*fakeAdmin, *httptest.Server) {
	t.Helper()
	f := &fakeAdmin{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	req := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		req += "?" + r.URL.RawQuery
	}
	if len(body) > 0 && r.URL.Path != "/v1/policies/apply" {
		req += " " + string(body)
	}
	f.requests = append(f.requests, req)
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	fail := func(code int, msg string, problems ...string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"error": msg, "problems": problems})
	}
	switch p := r.URL.Path; {
	case r.Method == "GET" && p == "/healthz":
		writeJSON(map[string]string{"status": "ok"})
	case r.Method == "GET" && p == "/v1/policies":
		writeJSON(f.policies)
	case r.Method == "GET" && p == "/v1/policies/export":
		ns := r.URL.Query().Get("namespace")
		var sel []*v1alpha1.SegmentPolicy
		for _, p := range f.policies {
			if ns == "" || p.Namespace == ns {
				sel = append(sel, p)
			}
		}
		b, err := v1alpha1.MarshalYAML(sel)
		if err != nil {
			fail(500, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/yaml")
		w.Write(b)
	case r.Method == "POST" && p == "/v1/policies/apply":
		ps, err := v1alpha1.UnmarshalYAML(body)
		if err != nil {
			fail(400, "parse policies: "+err.Error())
			return
		}
		var probs []string
		for _, p := range ps {
			if err := p.Validate(); err != nil {
				probs = append(probs, p.Namespace+"/"+p.Name+": "+err.Error())
			}
		}
		if len(probs) > 0 {
			fail(400, strings.Join(probs, "; "), probs...)
			return
		}
		res := ApplyResult{Changed: []string{}, Unchanged: []string{}}
		for _, p := range ps {
			key := p.Namespace + "/" + p.Name
			old := f.find(p.Namespace, p.Name)
			if old != nil && equalExport(old, p) {
				res.Unchanged = append(res.Unchanged, key)
				continue
			}
			res.Changed = append(res.Changed, key)
			if old != nil {
				old.Spec = p.Spec
			} else {
				f.policies = append(f.policies, p)
			}
		}
		writeJSON(res)
	case r.Method == "GET" && p == "/v1/segments":
		writeJSON(f.segments)
	case r.Method == "PUT" && strings.HasPrefix(p, "/v1/segments/") && strings.HasSuffix(p, "/mode"),
		r.Method == "PUT" && strings.HasPrefix(p, "/v1/namespaces/") && strings.HasSuffix(p, "/mode"):
		var m struct{ Mode string }
		if err := json.Unmarshal(body, &m); err != nil {
			fail(400, err.Error())
			return
		}
		writeJSON(m)
	case r.Method == "GET" && (p == "/v1/flows" || p == "/v1/violations"):
		writeJSON(f.flows)
	case r.Method == "GET" && p == "/v1/proxies":
		writeJSON(f.proxies)
	default:
		fail(404, "no such resource: "+p)
	}
}

func (f *fakeAdmin) find(ns, name string) *v1alpha1.SegmentPolicy {
	for _, p := range f.policies {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}

func (f *fakeAdmin) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

func equalExport(a, b *v1alpha1.SegmentPolicy) bool {
	x, _ := v1alpha1.MarshalYAML([]*v1alpha1.SegmentPolicy{a})
	y, _ := v1alpha1.MarshalYAML([]*v1alpha1.SegmentPolicy{b})
	return bytes.Equal(x, y)
}

// run executes the CLI against srv and returns exit status, stdout, stderr.
func run(t *testing.T, srv *httptest.Server, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), append([]string{"--server", srv.URL}, args...),
		Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func redisPolicy(ns, name string, mode v1alpha1.Mode) *v1alpha1.SegmentPolicy {
	hit := metav1.NewTime(time.Now().Add(-90 * time.Second))
	return &v1alpha1.SegmentPolicy{
		TypeMeta:   v1alpha1.TypeMetaSegmentPolicy(),
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.SegmentPolicySpec{
			Mode: mode,
			Ingress: []v1alpha1.Rule{{
				Name:   "from-cart-redis-6379",
				Origin: v1alpha1.OriginLearned,
				Peers:  []v1alpha1.Peer{{Segment: "cart"}},
				Ports:  []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}},
				Redis:  &v1alpha1.RedisMatch{Commands: []string{"get", "set"}},
			}},
		},
		Status: v1alpha1.SegmentPolicyStatus{
			Violations: 3,
			Rules:      []v1alpha1.RuleStatus{{Name: "from-cart-redis-6379", Hits: 42, LastHit: &hit}},
		},
	}
}

func TestModeGet(t *testing.T) {
	f, srv := newFakeAdmin(t)
	f.segments = []Segment{
		{Namespace: "demo", Name: "cart", Mode: "discover", Workloads: []string{"cart"}},
		{Namespace: "demo", Name: "redis", Mode: "protect", Workloads: []string{"redis"}, Rules: 2, Learned: 2, Violations: 7},
		{Namespace: "other", Name: "db", Mode: "monitor"},
	}
	code, out, _ := run(t, srv, "", "mode", "get", "-n", "demo")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "NAME    MODE       WORKLOADS   RULES   LEARNED   VIOLATIONS\n" +
		"cart    discover   cart        0       0         0\n" +
		"redis   protect    redis       2       2         7\n"
	if out != want {
		t.Errorf("mode get -n demo:\n%s\nwant:\n%s", out, want)
	}

	_, out, _ = run(t, srv, "", "mode", "get", "-A")
	if !strings.HasPrefix(out, "NAMESPACE") || !strings.Contains(out, "other       db") {
		t.Errorf("mode get -A:\n%s", out)
	}

	_, out, _ = run(t, srv, "", "mode", "get", "redis", "-n", "demo", "-o", "json")
	var s Segment
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Mode != "protect" || s.Violations != 7 {
		t.Errorf("mode get redis -o json = %q (%v)", out, err)
	}
	_, out, _ = run(t, srv, "", "mode", "get", "other/db", "-o", "yaml")
	if !strings.Contains(out, "mode: monitor") {
		t.Errorf("mode get other/db -o yaml:\n%s", out)
	}

	code, _, errOut := run(t, srv, "", "mode", "get", "nope", "-n", "demo")
	if code != 1 || !strings.Contains(errOut, "segment demo/nope not found") {
		t.Errorf("mode get nope: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, srv, "", "mode", "get", "-o", "xml")
	if code != 1 || !strings.Contains(errOut, `--output "xml"`) {
		t.Errorf("-o xml: exit %d, stderr %q", code, errOut)
	}
}

func TestModeSet(t *testing.T) {
	f, srv := newFakeAdmin(t)
	code, out, errOut := run(t, srv, "", "mode", "set", "redis", "protect", "-n", "demo")
	if code != 0 || out != "segment demo/redis: mode protect\n" {
		t.Errorf("mode set: exit %d, out %q, err %q", code, out, errOut)
	}
	if got, want := f.lastRequest(), `PUT /v1/segments/demo/redis/mode {"mode":"protect"}`; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	run(t, srv, "", "mode", "set", "prod/db", "monitor")
	if got, want := f.lastRequest(), `PUT /v1/segments/prod/db/mode {"mode":"monitor"}`; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	code, out, _ = run(t, srv, "", "mode", "set", "--namespace-default", "monitor", "-n", "demo")
	if code != 0 || out != "namespace demo: default mode monitor\n" {
		t.Errorf("mode set --namespace-default: exit %d, out %q", code, out)
	}
	if got, want := f.lastRequest(), `PUT /v1/namespaces/demo/mode {"mode":"monitor"}`; got != want {
		t.Errorf("request %q, want %q", got, want)
	}

	n := len(f.requests)
	for _, args := range [][]string{
		{"mode", "set", "redis", "block"},
		{"mode", "set", "redis"},
		{"mode", "set", "--namespace-default", "protect", "redis"},
		{"mode", "set", "Redis_1", "protect"},
		{"mode", "set", "a/b/c", "protect"},
	} {
		if code, _, errOut := run(t, srv, "", args...); code != 1 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 1 and an error", args, code, errOut)
		}
	}
	if len(f.requests) != n {
		t.Errorf("bad invocations sent %d requests", len(f.requests)-n)
	}
}

func TestPolicyExport(t *testing.T) {
	f, srv := newFakeAdmin(t)
	f.policies = []*v1alpha1.SegmentPolicy{redisPolicy("demo", "redis", "protect"), redisPolicy("prod", "redis", "")}
	want, _ := v1alpha1.MarshalYAML(f.policies[:1])

	code, out, _ := run(t, srv, "", "policy", "export", "-n", "demo")
	if code != 0 || out != string(want) {
		t.Errorf("export: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	if got := f.lastRequest(); got != "GET /v1/policies/export?namespace=demo" {
		t.Errorf("request %q", got)
	}
	run(t, srv, "", "policy", "export", "-A")
	if got := f.lastRequest(); got != "GET /v1/policies/export" {
		t.Errorf("export -A: request %q", got)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	if code, out, _ := run(t, srv, "", "policy", "export", "-n", "demo", "-f", file); code != 0 || out != "" {
		t.Errorf("export -f: exit %d, stdout %q", code, out)
	}
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, want) {
		t.Errorf("export -f wrote %q (%v), want %q", b, err, want)
	}
}

func TestPolicyApplyAndDiff(t *testing.T) {
	f, srv := newFakeAdmin(t)
	f.policies = []*v1alpha1.SegmentPolicy{redisPolicy("demo", "redis", "protect")}
	dir := t.TempDir()
	live, _ := v1alpha1.MarshalYAML(f.policies)

	// The export itself is no change.
	same := filepath.Join(dir, "same.yaml")
	os.WriteFile(same, live, 0o644)
	if code, out, errOut := run(t, srv, "", "policy", "diff", "-f", same); code != 0 || out != "" {
		t.Errorf("diff of the export: exit %d, out %q, err %q", code, out, errOut)
	}

	// The same policy written differently (order, case, defaults) is no
	// change either: both sides are normalised.
	messy := `# hand-written
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {namespace: demo, name: redis}
spec:
  mode: protect
  ingress:
  - name: from-cart-redis-6379
    origin: learned
    peers: [{segment: cart}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [SET, get, GET]}
`
	if code, out, _ := run(t, srv, messy, "policy", "diff", "-f", "-"); code != 0 || out != "" {
		t.Errorf("diff of an equivalent file: exit %d, out %q", code, out)
	}

	// A change shows as a unified diff, exit 1; apply configures it, and
	// then the diff is empty.
	changed := strings.Replace(messy, "[SET, get, GET]", "[get, set, del]", 1)
	changed += `---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {namespace: demo, name: cart}
spec: {mode: monitor}
`
	code, out, _ := run(t, srv, changed, "policy", "diff", "-f", "-")
	if code != 1 {
		t.Errorf("diff of a change: exit %d, want 1", code)
	}
	for _, want := range []string{"--- live\n+++ stdin\n", "+      - del\n", "+  name: cart\n", "@@ -1,"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut := run(t, srv, changed, "policy", "apply", "-f", "-")
	if code != 0 || out != "segmentpolicy demo/cart configured\nsegmentpolicy demo/redis configured\n" {
		t.Errorf("apply: exit %d, out %q, err %q", code, out, errOut)
	}
	file := filepath.Join(dir, "changed.yaml")
	os.WriteFile(file, []byte(changed), 0o644)
	if code, out, _ := run(t, srv, "", "policy", "diff", "-f", file); code != 0 || out != "" {
		t.Errorf("diff after apply: exit %d, out %q", code, out)
	}
	code, out, _ = run(t, srv, "", "policy", "apply", "-f", file)
	if code != 0 || out != "segmentpolicy demo/cart unchanged\nsegmentpolicy demo/redis unchanged\n" {
		t.Errorf("second apply: exit %d, out %q", code, out)
	}

	// Errors: the server's problems, one per line, exit 1; diff's trouble
	// exits 2.
	bad := strings.Replace(changed, "mode: monitor", "mode: block", 1)
	bad = strings.Replace(bad, "port: 6379", "port: 0", 1)
	code, _, errOut = run(t, srv, bad, "policy", "apply", "-f", "-")
	if code != 1 || !strings.Contains(errOut, "400 Bad Request") || !strings.Contains(errOut, "2 problems:\n  demo/redis") {
		t.Errorf("apply of a bad file: exit %d, stderr:\n%s", code, errOut)
	}
	if code, _, errOut = run(t, srv, "kind: Pod\n", "policy", "diff", "-f", "-"); code != 2 || !strings.Contains(errOut, "stdin: document 1") {
		t.Errorf("diff of a bad file: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = run(t, srv, "", "policy", "apply"); code != 1 || !strings.Contains(errOut, "-f FILE is required") {
		t.Errorf("apply without -f: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ = run(t, srv, "", "policy", "diff", "-f", filepath.Join(dir, "missing.yaml")); code != 2 {
		t.Errorf("diff of a missing file: exit %d, want 2", code)
	}
}

func TestPolicyGet(t *testing.T) {
	f, srv := newFakeAdmin(t)
	f.policies = []*v1alpha1.SegmentPolicy{redisPolicy("demo", "redis", "protect"), redisPolicy("demo", "db", "")}
	f.segments = []Segment{{Namespace: "demo", Name: "db", Mode: "monitor"}, {Namespace: "demo", Name: "redis", Mode: "protect"}}
	code, out, _ := run(t, srv, "", "policy", "get", "redis", "-n", "demo")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "NAME    MODE      INGRESS   EGRESS   LEARNED   VIOLATIONS\n" +
		"redis   protect   1         0        1         3\n" +
		"\n" +
		"RULE                   DIRECTION   ORIGIN    PEERS   PORTS        L7               HITS   LAST HIT\n" +
		"from-cart-redis-6379   ingress     learned   cart    6379/redis   redis: get,set   42     90s\n"
	if out != want {
		t.Errorf("policy get redis:\n%s\nwant:\n%s", out, want)
	}
	_, out, _ = run(t, srv, "", "policy", "get", "-n", "demo")
	if !strings.Contains(out, "POLICY   RULE") || !strings.Contains(out, "db       from-cart-redis-6379") || !strings.Contains(out, "db      monitor (default)") {
		t.Errorf("policy get (all of demo):\n%s", out)
	}
	_, out, _ = run(t, srv, "", "policy", "get", "redis", "-n", "demo", "-o", "yaml")
	if !strings.Contains(out, "kind: SegmentPolicy") || !strings.Contains(out, "hits: 42") {
		t.Errorf("policy get -o yaml:\n%s", out)
	}
	if code, _, errOut := run(t, srv, "", "policy", "get", "nope", "-n", "demo"); code != 1 || !strings.Contains(errOut, "demo/nope not found") {
		t.Errorf("get nope: exit %d, %q", code, errOut)
	}
}

func TestFlowsAndViolations(t *testing.T) {
	f, srv := newFakeAdmin(t)
	now := time.Now()
	f.flows = []FlowRecord{{
		Direction: "ingress", SrcIP: "198.18.0.3", SrcSegment: "demo/cart", DstIP: "198.18.0.4", DstSegment: "demo/redis",
		DstPort: 6379, Protocol: "redis", Verb: "config", Sub: "set", Verdict: "deny", Mode: "protect",
		Reason: "no rule", Count: 2, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-5 * time.Second),
	}, {
		Direction: "ingress", SrcIP: "198.18.0.3", SrcSegment: "demo/web", DstIP: "198.18.0.5", DstSegment: "demo/api",
		DstPort: 80, Protocol: "http", Verb: "GET", Resource: "/admin", Aux: "api.example", Verdict: "deny", Mode: "protect",
		Reason: "l7_not_allowed", Count: 1, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-5 * time.Second),
	}}
	code, out, _ := run(t, srv, "", "violations", "-n", "demo", "--limit", "5")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := f.lastRequest(); got != "GET /v1/violations?limit=5&segment=demo" {
		t.Errorf("request %q", got)
	}
	for _, want := range []string{"REASON", "L7", "demo/cart (198.18.0.3)", "demo/redis (198.18.0.4:6379)", "config set", "deny", "no rule", "5s",
		"GET /admin (api.example)", "l7_not_allowed"} {
		if !strings.Contains(out, want) {
			t.Errorf("violations lack %q:\n%s", want, out)
		}
	}
	run(t, srv, "", "flows", "--segment", "redis", "-n", "demo")
	if got := f.lastRequest(); got != "GET /v1/flows?segment=demo%2Fredis" {
		t.Errorf("flows --segment: request %q", got)
	}
	_, out, _ = run(t, srv, "", "flows", "-A", "-o", "json")
	if got := f.lastRequest(); got != "GET /v1/flows" {
		t.Errorf("flows -A: request %q", got)
	}
	var recs []FlowRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 2 || recs[0].Sub != "set" || recs[1].Resource != "/admin" || recs[1].Aux != "api.example" {
		t.Errorf("flows -o json = %q (%v)", out, err)
	}
	f.flows = nil
	if _, out, _ = run(t, srv, "", "flows"); out != "No flows found.\n" {
		t.Errorf("no flows: %q", out)
	}
	if code, _, _ := run(t, srv, "", "flows", "--limit", "-1"); code != 1 {
		t.Errorf("--limit -1: exit %d", code)
	}
}

func TestL7Detail(t *testing.T) {
	for name, tc := range map[string]struct {
		rec  FlowRecord
		want string
	}{
		"connection":     {FlowRecord{Protocol: "tcp"}, ""},
		"redis":          {FlowRecord{Verb: "GET"}, "GET"},
		"redis sub":      {FlowRecord{Verb: "CONFIG", Sub: "SET"}, "CONFIG SET"},
		"http":           {FlowRecord{Verb: "GET", Resource: "/users/{id}", Aux: "api.example"}, "GET /users/{id} (api.example)"},
		"http, no host":  {FlowRecord{Verb: "POST", Resource: "/form"}, "POST /form"},
		"tls":            {FlowRecord{Verb: "CLIENT_HELLO", Resource: "api.example.test", Aux: "h2"}, "CLIENT_HELLO api.example.test (h2)"},
		"tls, no sni":    {FlowRecord{Verb: "CLIENT_HELLO"}, "CLIENT_HELLO"},
		"more":           {FlowRecord{Verb: "SELECT", Resource: "orders", MoreResources: []string{"items", "..."}, Aux: "shop"}, "SELECT orders,items,... (shop)"},
		"escape control": {FlowRecord{Verb: "GET", Resource: "/a\x1b[31mred\x7f\u0085"}, `GET /a\x1b[31mred\x7f\u0085`},
		"escape bytes":   {FlowRecord{Verb: "get", Resource: "k\xff\xfe", Aux: "caf\u00e9"}, `get k\xff\xfe (café)`},
	} {
		if got := l7Detail(tc.rec); got != tc.want {
			t.Errorf("%s: l7Detail = %q, want %q", name, got, tc.want)
		}
	}
}

func TestProxies(t *testing.T) {
	f, srv := newFakeAdmin(t)
	f.proxies = []ProxyStatus{{
		Node: "redis.demo", Connected: true, Streams: 1, LastSeen: time.Now(),
		Types: []TypeStatus{
			{Type: "type.googleapis.com/bulkhead.v1.Identity", SentVersion: "7", AckedVersion: "7"},
			{Type: "type.googleapis.com/bulkhead.v1.ProxyPolicy", SentVersion: "x0123456789abcdef", AckedVersion: "x0123456789abcdef", Nacks: 1, LastError: "bad rule"},
		},
	}}
	code, out, _ := run(t, srv, "", "proxies")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"NODE", "redis.demo", "yes", "…456789abcdef", "bad rule"} {
		if !strings.Contains(out, want) {
			t.Errorf("proxies lack %q:\n%s", want, out)
		}
	}
}

func TestServer(t *testing.T) {
	_, srv := newFakeAdmin(t)
	t.Setenv("BULKHEAD_SERVER", srv.URL)
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"proxies"}, Streams{Out: &out, Err: io.Discard}); code != 0 || out.String() != "No proxies found.\n" {
		t.Errorf("with BULKHEAD_SERVER: exit %d, %q", code, out.String())
	}
	var errb bytes.Buffer
	if code := Execute(context.Background(), []string{"--server", "127.0.0.1:1", "proxies"}, Streams{Out: io.Discard, Err: &errb}); code != 1 || !strings.Contains(errb.String(), "want http://") {
		t.Errorf("bad --server: exit %d, %q", code, errb.String())
	}
	if code, _, errOut := run(t, srv, "", "mode", "get", "--server", srv.URL+"/nothing-here"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("404: exit %d, %q", code, errOut)
	}
}
