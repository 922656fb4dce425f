package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

const twoPolicies = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: redis
  namespace: demo
spec:
  mode: monitor
  ingress:
  - name: from-cart
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands: [get, set]
  - name: from-admin
    origin: learned
    peers:
    - segment: admin
    ports:
    - port: 6379
      protocol: redis
---
apiVersion: bulkhead.io/v1alpha1
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

const badPolicies = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: redis
  namespace: demo
spec:
  mode: lockdown
  ingress:
  - name: from-cart
    ports:
    - port: 70000
---
apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: Web
  namespace: shop
spec: {}
`

type env struct {
	st       *store.Store
	rec      *flows.Recorder
	srv      *httptest.Server
	segments []compile.SegmentInfo
	health   error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rec: flows.NewRecorder(flows.Options{})}
	h := NewHandler(Deps{
		Store:    st,
		Segments: func() []compile.SegmentInfo { return e.segments },
		Flows:    e.rec,
		Nodes: func() []xds.NodeStatus {
			return []xds.NodeStatus{{Node: "redis.demo", Connected: true, Streams: 1, Types: []xds.TypeStatus{{Type: xds.TypeProxyPolicy, SentVersion: "v2", AckedVersion: "v1", NackedVersion: "v2", Nacks: 1, LastError: "bad"}}}}
		},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "bulkhead_up 1\n") }),
		Health:  func() error { return e.health },
	})
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request and returns the status, content type and body.
func (e *env) do(t *testing.T, method, path string, body io.Reader) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// wantError checks an error answer's status and that its JSON names each
// of the fragments.
func wantError(t *testing.T, code int, b []byte, wantCode int, fragments ...string) errorBody {
	t.Helper()
	if code != wantCode {
		t.Fatalf("status %d, want %d; body %s", code, wantCode, b)
	}
	eb := decode[errorBody](t, b)
	if eb.Error == "" {
		t.Fatalf("error body without error: %s", b)
	}
	for _, f := range fragments {
		if !strings.Contains(eb.Error, f) {
			t.Errorf("error %q does not name %q", eb.Error, f)
		}
	}
	return eb
}

func TestApplyListExport(t *testing.T) {
	e := newEnv(t)
	code, ctype, b := e.do(t, "GET", "/v1/policies", nil)
	if code != 200 || ctype != "application/json" || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("empty list: %d %s %s", code, ctype, b)
	}

	code, _, b = e.do(t, "POST", "/v1/policies/apply", strings.NewReader(twoPolicies))
	if code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	if diff := cmp.Diff(ApplyResult{Changed: []string{"demo/redis", "shop/web"}, Unchanged: []string{}}, decode[ApplyResult](t, b)); diff != "" {
		t.Errorf("first apply (-want +got):\n%s", diff)
	}
	code, _, b = e.do(t, "POST", "/v1/policies/apply", strings.NewReader(twoPolicies))
	if diff := cmp.Diff(ApplyResult{Changed: []string{}, Unchanged: []string{"demo/redis", "shop/web"}}, decode[ApplyResult](t, b)); code != 200 || diff != "" {
		t.Errorf("second apply: %d (-want +got):\n%s", code, diff)
	}

	code, _, b = e.do(t, "GET", "/v1/policies", nil)
	ps := decode[[]v1alpha1.SegmentPolicy](t, b)
	if code != 200 || len(ps) != 2 || ps[0].Name != "redis" || ps[0].Status.LearnedRules != 1 || len(ps[0].Spec.Ingress) != 2 {
		t.Errorf("list: %d %+v", code, ps)
	}

	want, err := e.st.Export("")
	if err != nil {
		t.Fatal(err)
	}
	code, ctype, b = e.do(t, "GET", "/v1/policies/export", nil)
	if code != 200 || ctype != "text/yaml" || !bytes.Equal(b, want) {
		t.Errorf("export: %d %s\n%s\nwant\n%s", code, ctype, b, want)
	}
	code, _, b = e.do(t, "GET", "/v1/policies/export?namespace=shop", nil)
	if got, err := v1alpha1.UnmarshalYAML(b); code != 200 || err != nil || len(got) != 1 || got[0].Name != "web" {
		t.Errorf("export shop: %d %v %s", code, err, b)
	}
	code, _, b = e.do(t, "GET", "/v1/policies/export?namespace=Not_A_Label", nil)
	wantError(t, code, b, 400, "Not_A_Label")
}

func TestApplyRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	code, _, b := e.do(t, "POST", "/v1/policies/apply", strings.NewReader(badPolicies))
	eb := wantError(t, code, b, 400, "spec.mode", "lockdown", "70000", "demo/redis", "metadata.name")
	if len(eb.Problems) != 3 {
		t.Errorf("problems = %q, want every problem listed", eb.Problems)
	}
	if len(e.st.List()) != 0 {
		t.Error("a refused apply stored something")
	}

	dup := twoPolicies + "---\n" + twoPolicies[:strings.Index(twoPolicies, "---")]
	code, _, b = e.do(t, "POST", "/v1/policies/apply", strings.NewReader(dup))
	wantError(t, code, b, 400, "demo/redis", "twice")

	for name, body := range map[string]string{
		"not yaml":      "{{{",
		"unknown field": "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: a, namespace: b}\nspec: {bogus: 1}\n",
		"wrong kind":    "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
		"empty":         "",
	} {
		t.Run(name, func(t *testing.T) {
			code, _, b := e.do(t, "POST", "/v1/policies/apply", strings.NewReader(body))
			wantError(t, code, b, 400)
		})
	}

	big := strings.NewReader(strings.Repeat("#", v1alpha1.MaxPolicyFile+1))
	code, _, b = e.do(t, "POST", "/v1/policies/apply", big)
	wantError(t, code, b, 413)
}

func TestModes(t *testing.T) {
	e := newEnv(t)
	code, _, b := e.do(t, "PUT", "/v1/segments/demo/cart/mode", strings.NewReader(`{"mode":"protect"}`))
	if code != 200 {
		t.Fatalf("set segment mode: %d %s", code, b)
	}
	if diff := cmp.Diff(ModeResult{Namespace: "demo", Name: "cart", Mode: "protect"}, decode[ModeResult](t, b)); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	if m := e.st.EffectiveMode("demo", "cart"); m != v1alpha1.ModeProtect {
		t.Errorf("store mode of demo/cart = %q", m)
	}
	code, _, b = e.do(t, "PUT", "/v1/namespaces/shop/mode", strings.NewReader(`{"mode":"monitor"}`))
	if code != 200 || e.st.Settings().NamespaceModes["shop"] != v1alpha1.ModeMonitor {
		t.Errorf("set namespace mode: %d %s; settings %+v", code, b, e.st.Settings())
	}

	for _, tc := range []struct {
		name, path, body string
		code             int
		fragment         string
	}{
		{"unknown mode", "/v1/segments/demo/cart/mode", `{"mode":"lockdown"}`, 400, "lockdown"},
		{"unknown field", "/v1/segments/demo/cart/mode", `{"mode":"protect","x":1}`, 400, "x"},
		{"not json", "/v1/namespaces/shop/mode", `mode=protect`, 400, "mode"},
		{"bad namespace", "/v1/namespaces/Shop/mode", `{"mode":"protect"}`, 400, "Shop"},
		{"bad names", "/v1/segments/De_mo/Cart/mode", `{"mode":"protect"}`, 400, "De_mo"},
		{"too big", "/v1/namespaces/shop/mode", `{"mode":"` + strings.Repeat("p", MaxModeBody) + `"}`, 413, "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, b := e.do(t, "PUT", tc.path, strings.NewReader(tc.body))
			wantError(t, code, b, tc.code, tc.fragment)
		})
	}
	if m := e.st.EffectiveMode("demo", "cart"); m != v1alpha1.ModeProtect {
		t.Errorf("refused requests changed demo/cart's mode to %q", m)
	}
}

func TestSegments(t *testing.T) {
	e := newEnv(t)
	if code, _, b := e.do(t, "POST", "/v1/policies/apply", strings.NewReader(twoPolicies)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	if err := e.st.SetNamespaceMode("shop", v1alpha1.ModeProtect); err != nil {
		t.Fatal(err)
	}
	e.st.RecordViolations("demo/redis", 4)
	e.st.RecordViolations("demo/cart", 2)

	// Before the first compilation: the store's policies.
	code, _, b := e.do(t, "GET", "/v1/segments", nil)
	want := []Segment{
		{Namespace: "demo", Name: "redis", Mode: "monitor", Workloads: []string{}, Rules: 2, Learned: 1, Violations: 4},
		{Namespace: "shop", Name: "web", Mode: "protect", Workloads: []string{}, Rules: 1},
	}
	if diff := cmp.Diff(want, decode[[]Segment](t, b)); code != 200 || diff != "" {
		t.Errorf("segments before compilation: %d (-want +got):\n%s", code, diff)
	}

	e.segments = []compile.SegmentInfo{
		{Namespace: "demo", Name: "cart", Mode: "discover", Workloads: []string{"cart"}},
		{Namespace: "demo", Name: "redis", Mode: "monitor", Workloads: []string{"redis-0", "redis-1"}},
		{Namespace: "shop", Name: "web", Mode: "protect"},
	}
	code, _, b = e.do(t, "GET", "/v1/segments", nil)
	want = []Segment{
		{Namespace: "demo", Name: "cart", Mode: "discover", Workloads: []string{"cart"}, Violations: 2},
		{Namespace: "demo", Name: "redis", Mode: "monitor", Workloads: []string{"redis-0", "redis-1"}, Rules: 2, Learned: 1, Violations: 4},
		{Namespace: "shop", Name: "web", Mode: "protect", Workloads: []string{}, Rules: 1},
	}
	if diff := cmp.Diff(want, decode[[]Segment](t, b)); code != 200 || diff != "" {
		t.Errorf("segments: %d (-want +got):\n%s", code, diff)
	}
}

func TestFlowsViolationsProxies(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(verb string, v bulkheadv1.Verdict, dst string, sec int) *bulkheadv1.Flow {
		return &bulkheadv1.Flow{
			Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.10", SrcSegment: "demo/cart",
			DstIp: "198.18.0.20", DstSegment: dst, DstPort: 6379, Protocol: "redis", Verb: verb, Verdict: v,
			Mode: bulkheadv1.Mode_MODE_MONITOR, Count: 1,
			FirstSeen: timestamppb.New(t0), LastSeen: timestamppb.New(t0.Add(time.Duration(sec) * time.Second)),
		}
	}
	e.rec.Record("redis.demo", []*bulkheadv1.Flow{
		mk("GET", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/redis", 1),
		mk("FLUSHALL", bulkheadv1.Verdict_VERDICT_VIOLATION, "demo/redis", 2),
		mk("KEYS", bulkheadv1.Verdict_VERDICT_DENY, "shop/cache", 3),
	})
	verbs := func(b []byte) []string {
		var out []string
		for _, r := range decode[[]flows.Record](t, b) {
			out = append(out, r.Verb)
		}
		return out
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/v1/flows", []string{"KEYS", "FLUSHALL", "GET"}},
		{"/v1/flows?segment=demo/redis", []string{"FLUSHALL", "GET"}},
		{"/v1/flows?limit=1", []string{"KEYS"}},
		{"/v1/violations", []string{"KEYS", "FLUSHALL"}},
		{"/v1/violations?segment=shop/cache&limit=5", []string{"KEYS"}},
		{"/v1/violations?segment=nope/nope", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, _, b := e.do(t, "GET", tc.path, nil)
			if diff := cmp.Diff(tc.want, verbs(b), cmpopts.EquateEmpty()); code != 200 || diff != "" {
				t.Errorf("%d (-want +got):\n%s", code, diff)
			}
		})
	}
	for _, q := range []string{"limit=x", "limit=-1", "limit=100001"} {
		code, _, b := e.do(t, "GET", "/v1/flows?"+q, nil)
		wantError(t, code, b, 400, "limit")
	}

	code, _, b := e.do(t, "GET", "/v1/proxies", nil)
	nodes := decode[[]xds.NodeStatus](t, b)
	if code != 200 || len(nodes) != 1 || nodes[0].Node != "redis.demo" || nodes[0].Types[0].Nacks != 1 || nodes[0].Types[0].LastError != "bad" {
		t.Errorf("proxies: %d %s", code, b)
	}
}

func TestRoutingErrorsHealthMetrics(t *testing.T) {
	e := newEnv(t)
	code, _, b := e.do(t, "GET", "/v1/nothing", nil)
	wantError(t, code, b, 404, "/v1/nothing")

	req, _ := http.NewRequest("DELETE", e.srv.URL+"/v1/policies", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, b, 405, "DELETE")
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow = %q", allow)
	}
	code, _, b = e.do(t, "GET", "/v1/policies/apply", nil)
	wantError(t, code, b, 405, "POST")

	code, _, b = e.do(t, "GET", "/healthz", nil)
	if code != 200 || !strings.Contains(string(b), "ok") {
		t.Errorf("healthz: %d %s", code, b)
	}
	e.health = errors.New("store unreadable")
	code, _, b = e.do(t, "GET", "/healthz", nil)
	wantError(t, code, b, 503, "store unreadable")

	code, _, b = e.do(t, "GET", "/metrics", nil)
	if code != 200 || string(b) != "bulkhead_up 1\n" {
		t.Errorf("metrics: %d %s", code, b)
	}
}
