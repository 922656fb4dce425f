package flows

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// observed records what the Server hands to its Observer.
type observed struct {
	mu    sync.Mutex
	nodes []string
	flows int
}

func (o *observed) Observe(node string, flows []*bulkheadv1.Flow) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nodes = append(o.nodes, node)
	o.flows += len(flows)
}

type env struct {
	rec    *Recorder
	obs    *observed
	st     *store.Store
	reg    *prometheus.Registry
	client bulkheadv1.FlowServiceClient
}

func newEnv(t *testing.T, opts ServerOptions) *env {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{{
		Name: "from-cart", Peers: []v1alpha1.Peer{{Segment: "cart"}},
		Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}},
	}}}}
	p.Name, p.Namespace = "redis", "demo"
	if _, err := st.Apply([]*v1alpha1.SegmentPolicy{p}); err != nil {
		t.Fatal(err)
	}
	e := &env{rec: NewRecorder(Options{}), obs: &observed{}, st: st, reg: prometheus.NewRegistry()}
	opts.Registerer = e.reg
	srv := NewServer(e.rec, e.obs, st, nil, opts)
	gs := grpc.NewServer()
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.GracefulStop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e.client = bulkheadv1.NewFlowServiceClient(conn)
	return e
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestReport(t *testing.T) {
	e := newEnv(t, ServerOptions{})
	stream, err := e.client.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	allowed := flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 3, 0, time.Second)
	allowed2 := flow("SET", bulkheadv1.Verdict_VERDICT_ALLOW, 2, 0, 2*time.Second)
	violation := flow("FLUSHALL", bulkheadv1.Verdict_VERDICT_VIOLATION, 4, 0, time.Second)
	deny := flow("CONFIG", bulkheadv1.Verdict_VERDICT_DENY, 1, 0, time.Second)
	deny.Sub, deny.Mode = "SET", bulkheadv1.Mode_MODE_PROTECT
	badIP := flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0)
	badIP.SrcIp = "not-an-ip"
	noVerdict := flow("GET", bulkheadv1.Verdict_VERDICT_UNSPECIFIED, 1, 0, 0)
	longVerb := flow(strings.Repeat("A", 65), bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0)
	for _, b := range []*bulkheadv1.FlowBatch{
		{Node: "redis.demo", Flows: []*bulkheadv1.Flow{allowed, violation, badIP}},
		{Node: "redis.demo", Flows: []*bulkheadv1.Flow{allowed2, deny, noVerdict, longVerb}, Dropped: 2},
	} {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetAccepted() != 4 || sum.GetRejected() != 3 {
		t.Errorf("summary = %v, want 4 accepted, 3 rejected", sum)
	}

	if diff := cmp.Diff([]string{"CONFIG/deny/1", "FLUSHALL/violation/4"}, verbs(e.rec.Violations(Filter{}))); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if got := len(e.rec.Flows(Filter{})); got != 4 {
		t.Errorf("%d flow records, want 4", got)
	}
	e.obs.mu.Lock()
	if diff := cmp.Diff([]string{"redis.demo", "redis.demo"}, e.obs.nodes); diff != "" || e.obs.flows != 4 {
		t.Errorf("observer got nodes %v (diff %s) and %d flows, want 4", e.obs.nodes, diff, e.obs.flows)
	}
	e.obs.mu.Unlock()

	p, ok := e.st.Get("demo", "redis")
	if !ok {
		t.Fatal("policy demo/redis gone")
	}
	if len(p.Status.Rules) != 1 || p.Status.Rules[0].Name != "from-cart" || p.Status.Rules[0].Hits != 5 {
		t.Errorf("rule status = %+v, want from-cart with 5 hits", p.Status.Rules)
	} else if last := p.Status.Rules[0].LastHit; last == nil || !last.Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("last hit = %v, want %v", last, t0.Add(2*time.Second))
	}
	if got := e.st.Violations("demo/redis"); got != 5 {
		t.Errorf("store violations of demo/redis = %d, want 5", got)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bulkhead_flows_received_total", nil, 4},
		{"bulkhead_flows_rejected_total", nil, 3},
		{"bulkhead_flows_proxy_dropped_total", nil, 2},
		{"bulkhead_violations_total", []string{"monitor", "violation"}, 4},
		{"bulkhead_violations_total", []string{"protect", "deny"}, 1},
		{"bulkhead_flows_records", nil, 4},
	} {
		if got := counter(t, e.reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestReportRefusesBadBatches(t *testing.T) {
	e := newEnv(t, ServerOptions{MaxBatch: 2})
	for _, tc := range []struct {
		name  string
		batch *bulkheadv1.FlowBatch
	}{
		{"too many flows", &bulkheadv1.FlowBatch{Node: "redis.demo", Flows: []*bulkheadv1.Flow{
			flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0),
			flow("SET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0),
			flow("DEL", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0),
		}}},
		{"no node", &bulkheadv1.FlowBatch{Flows: []*bulkheadv1.Flow{flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0)}}},
		{"long node", &bulkheadv1.FlowBatch{Node: strings.Repeat("n", 254)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := e.client.Report(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.batch); err != nil {
				t.Fatal(err)
			}
			_, err = stream.CloseAndRecv()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
	if got := len(e.rec.Flows(Filter{})); got != 0 {
		t.Errorf("%d flows recorded from refused batches", got)
	}
	if got := counter(t, e.reg, "bulkhead_flows_rejected_total"); got != 4 {
		t.Errorf("bulkhead_flows_rejected_total = %v, want 4", got)
	}
}

func TestValidFlowBoundsL7(t *testing.T) {
	ok := sqlFlow("SELECT", strings.Repeat("d", maxAux), strings.Repeat("t", maxResource))
	for range maxMore {
		ok.MoreResources = append(ok.MoreResources, strings.Repeat("m", maxResource))
	}
	if err := validFlow(ok); err != nil {
		t.Fatalf("flow at the bounds: %v", err)
	}
	for name, edit := range map[string]func(f *bulkheadv1.Flow){
		"resource":             func(f *bulkheadv1.Flow) { f.Resource += "x" },
		"aux":                  func(f *bulkheadv1.Flow) { f.Aux += "x" },
		"more_resources":       func(f *bulkheadv1.Flow) { f.MoreResources = append(f.MoreResources, "x") },
		"more_resources entry": func(f *bulkheadv1.Flow) { f.MoreResources[3] += "x" },
	} {
		f := proto.Clone(ok).(*bulkheadv1.Flow)
		edit(f)
		if err := validFlow(f); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s over its bound: %v", name, err)
		}
	}
}
