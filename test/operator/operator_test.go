package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/explain"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
	"github.com/bulkhead-io/bulkhead/controlplane/run"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const workloads = `workloads:
- name: cart
  namespace: demo
  ips: [198.18.7.10]
- name: api
  namespace: demo
  ips: [198.18.7.20]
  ports: [{port: 8080, protocol: http}]
- name: db
  namespace: demo
  ips: [198.18.7.30]
  ports: [{port: 6379, protocol: redis}]
`

const apiPolicy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: api
  namespace: demo
spec:
  mode: monitor
  ingress:
  - name: from-cart-http-8080-get
    origin: learned
    peers: [{segment: cart}]
    ports: [{port: 8080, protocol: http}]
    http: {methods: [GET], paths: ["/users/{id}"]}
  - name: from-cart-http-8080-post
    origin: learned
    peers: [{segment: cart}]
    ports: [{port: 8080, protocol: http}]
    http: {methods: [POST], paths: ["/orders"]}
`

// env is a running control plane.
type env struct {
	t      *testing.T
	admin  string
	state  string // the control plane's state dir, holding its admin token
	conn   *grpc.ClientConn
	client *cli.Client
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	wl := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wl, []byte(workloads), 0o600); err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run.Run(ctx, run.Config{
			StateDir: filepath.Join(dir, "state"), WorkloadsFile: wl,
			GRPCListener: gl, AdminListener: al,
			Trust:   run.TrustConfig{Insecure: true}, // this test reports flows as several nodes
			History: run.HistoryConfig{Options: history.Options{Window: 20 * time.Millisecond}},
		}, nil)
	}()
	e := &env{t: t, admin: "http://" + al.Addr().String(), state: filepath.Join(dir, "state")}
	t.Cleanup(func() {
		if e.conn != nil {
			e.conn.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	e.client, err = cli.NewClient(e.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.client.Healthz(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("control plane not healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(e.state, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	e.client = e.client.WithToken(strings.TrimSpace(string(tok)))
	e.conn, err = grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// report sends flows as one proxy report.
func (e *env) report(node string, flows ...*bulkheadv1.Flow) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := bulkheadv1.NewFlowServiceClient(e.conn).Report(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.Send(&bulkheadv1.FlowBatch{Node: node, Flows: flows}); err != nil {
		e.t.Fatal(err)
	}
	sum, err := st.CloseAndRecv()
	if err != nil {
		e.t.Fatal(err)
	}
	if sum.GetRejected() != 0 || sum.GetAccepted() != uint64(len(flows)) {
		e.t.Fatalf("report: %v", sum)
	}
}

// cli runs the bulkhead CLI and returns its exit status and output.
func (e *env) cli(args ...string) (int, string) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), append([]string{"--server", e.admin, "--state-dir", e.state}, args...), cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String() + errOut.String()
}

// waitHistory waits until the history holds n flows.
func (e *env) waitHistory(n int) []history.Record {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := e.client.History(context.Background(), cli.HistoryQuery{Aggregate: true})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("history holds %d flows, want %d", len(recs), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpFlow(verb, path string, verdict bulkheadv1.Verdict, rule, reason string, count uint64) *bulkheadv1.Flow {
	now := timestamppb.Now()
	return &bulkheadv1.Flow{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     "198.18.7.10", SrcSegment: "demo/cart", DstIp: "198.18.7.20", DstSegment: "demo/api",
		DstPort: 8080, Protocol: "http", Verb: verb, Resource: path, Aux: "api.demo",
		Verdict: verdict, Mode: bulkheadv1.Mode_MODE_MONITOR, Rule: rule, Reason: reason,
		Count: count, Bytes: 100 * count, FirstSeen: now, LastSeen: now,
	}
}

func find(recs []history.Record, verb string) history.Record {
	for _, r := range recs {
		if r.Verb == verb {
			return r
		}
	}
	return history.Record{}
}

func TestExplainReplayDrift(t *testing.T) {
	e := start(t)
	dir := t.TempDir()
	apply := filepath.Join(dir, "api.yaml")
	if err := os.WriteFile(apply, []byte(apiPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := e.cli("policy", "apply", "-f", apply); code != 0 {
		t.Fatalf("apply: %d %s", code, out)
	}
	e.report("api.demo",
		httpFlow("GET", "/users/1", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/api/from-cart-http-8080-get", "", 3),
		httpFlow("POST", "/orders", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/api/from-cart-http-8080-post", "", 2),
		httpFlow("DELETE", "/users/1", bulkheadv1.Verdict_VERDICT_VIOLATION, "", "l7_not_allowed", 1),
	)
	recs := e.waitHistory(3)

	// Every violation record carries segment, mode, reason and L7 fields.
	viol, err := e.client.History(context.Background(), cli.HistoryQuery{Violations: true})
	if err != nil || len(viol) != 1 {
		t.Fatalf("violations: %+v %v", viol, err)
	}
	if v := viol[0]; v.Segment != "demo/api" || v.Mode != "monitor" || v.Reason != "l7_not_allowed" || v.Verb != "DELETE" || v.Resource != "/users/1" || v.Aux != "api.demo" {
		t.Fatalf("violation record: %+v", v)
	}

	t.Run("explain", func(t *testing.T) {
		// A recorded, allowed flow names its rule.
		code, out := e.cli("explain", "--id", find(recs, "GET").ID)
		if code != 0 || !strings.Contains(out, "rule:      demo/api/from-cart-http-8080-get (origin learned)") || !strings.Contains(out, "decision:  allow") {
			t.Fatalf("explain --id: %d\n%s", code, out)
		}
		// A violation: the nearest rule and the field that differs.
		code, out = e.cli("explain", "-n", "demo", "--id", viol[0].ID)
		if code != 0 || !strings.Contains(out, "decision:  violation (mode monitor of demo/api") ||
			!strings.Contains(out, "nearest:   demo/api/from-cart-http-8080-get (origin learned) differs on verb: verbs GET") {
			t.Fatalf("explain violation: %d\n%s", code, out)
		}
		// A flow given as flags: from an IP, a wrong path.
		code, out = e.cli("explain", "-n", "demo", "--from", "198.18.7.10", "--to", "api", "--port", "8080",
			"--protocol", "http", "--verb", "GET", "--resource", "/admin", "-o", "json")
		var res struct {
			explain.Explanation
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("explain -o json: %d\n%s", code, out)
		}
		if res.Verdict != "violation" || res.Reason != explain.ReasonL7 || len(res.Near) == 0 ||
			res.Near[0].Rule != "demo/api/from-cart-http-8080-get" || strings.Join(res.Near[0].Differs, ",") != "resource" ||
			res.Flow.SrcSegment != "demo/cart" {
			t.Fatalf("explain: %+v", res)
		}
		// Another peer: no rule admits it.
		code, out = e.cli("explain", "-n", "demo", "--from", "db", "--to", "api", "--port", "8080", "--protocol", "http", "--verb", "GET", "--resource", "/users/2")
		if code != 0 || !strings.Contains(out, "none (no_rule") || !strings.Contains(out, "differs on peer") {
			t.Fatalf("explain other peer: %d\n%s", code, out)
		}
	})

	live, err := e.client.Export(context.Background(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	git := filepath.Join(dir, "git")
	if err := os.MkdirAll(filepath.Join(git, "demo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(git, "demo", "api.yaml"), live, 0o600); err != nil {
		t.Fatal(err)
	}
	draft := cutRule(t, live, "from-cart-http-8080-post")

	t.Run("replay", func(t *testing.T) {
		f := filepath.Join(dir, "draft.yaml")
		if err := os.WriteFile(f, draft, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := e.cli("replay", "--policy", f, "-o", "json")
		var rep explain.ReplayReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("replay: %d\n%s", code, out)
		}
		var got *explain.Group
		for _, g := range rep.Groups {
			if g.Rule == "demo/api/from-cart-http-8080-post" {
				got = g
			}
		}
		if got == nil || got.Flows != 1 || got.Count != 2 || len(got.Examples) != 1 || got.Examples[0].ID != find(recs, "POST").ID || got.Segment != "demo/api" {
			t.Fatalf("replay groups: %+v", rep.Groups)
		}
		// The GET flow stays allowed; the violation stays a violation.
		if rep.Evaluated != 3 || rep.Denied != 2 {
			t.Fatalf("replay: evaluated %d, denied %d", rep.Evaluated, rep.Denied)
		}
		code, out = e.cli("replay", "--policy", f)
		if code != 0 || !strings.Contains(out, "demo/api/from-cart-http-8080-post") {
			t.Fatalf("replay text: %d\n%s", code, out)
		}
	})

	t.Run("drift", func(t *testing.T) {
		if code, out := e.cli("drift", "--against", git); code != 0 || !strings.Contains(out, "no drift") {
			t.Fatalf("drift on the live policy: %d\n%s", code, out)
		}
		// A rule removed from the folder.
		cutDir := filepath.Join(dir, "git-cut")
		os.MkdirAll(cutDir, 0o755)
		if err := os.WriteFile(filepath.Join(cutDir, "api.yaml"), draft, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := e.cli("drift", "--against", cutDir)
		if code != 1 || !strings.Contains(out, "demo/api ingress from-cart-http-8080-post (origin learned)") ||
			!strings.Contains(out, "flows seen at runtime that the folder's policy would deny") {
			t.Fatalf("drift, rule removed: %d\n%s", code, out)
		}
		code, out = e.cli("drift", "--against", cutDir, "--format", "github")
		if code != 1 || !strings.Contains(out, "::error file="+filepath.Join(cutDir, "api.yaml")+",title=Bulkhead drift%3A live rule missing::") {
			t.Fatalf("drift --format github: %d\n%s", code, out)
		}
		// A runtime flow the folder does not allow: the db segment is in
		// discover mode, learns it, and the folder knows nothing of it.
		now := timestamppb.Now()
		e.report("db.demo", &bulkheadv1.Flow{
			Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
			SrcIp:     "198.18.7.20", SrcSegment: "demo/api", DstIp: "198.18.7.30", DstSegment: "demo/db",
			DstPort: 6379, Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW,
			Mode: bulkheadv1.Mode_MODE_DISCOVER, Reason: "no_rule", Count: 5, FirstSeen: now, LastSeen: now,
		})
		e.waitHistory(4)
		code, out = e.cli("drift", "--against", git, "--format", "json")
		var rep explain.DriftReport
		if code != 1 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("drift after a new flow: %d\n%s", code, out)
		}
		if len(rep.Denied) != 1 || rep.Denied[0].Segment != "demo/db" || rep.Denied[0].Flows != 1 ||
			len(rep.NotInGit) != 1 || rep.NotInGit[0].Policy != "demo/db" || rep.NotInGit[0].Origin != "learned" {
			t.Fatalf("drift after a new flow: %+v", rep)
		}
	})
}

// cutRule removes the rule named name from exported policies.
func cutRule(t *testing.T, yaml []byte, name string) []byte {
	t.Helper()
	ps, err := v1alpha1.UnmarshalYAML(yaml)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range ps {
		p.Spec.Ingress = slices.DeleteFunc(p.Spec.Ingress, func(r v1alpha1.Rule) bool { return r.Name == name })
		n += len(p.Spec.Ingress)
	}
	out, err := v1alpha1.MarshalYAML(ps)
	if err != nil || bytes.Contains(out, []byte(name)) || n == 0 {
		t.Fatalf("could not cut %s: %v\n%s", name, err, out)
	}
	return out
}
