package run

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// TestRunLearnRefused: a flow that demo/redis's learning bounds refuse (its
// peer, demo/cart, still learns) teaches nothing, is counted in
// bulkhead_learn_refused_total and is listed as a violation with reason
// learn_refused:peer_learning; once cart is in monitor the same flow
// teaches a rule that names its teacher.
func TestRunLearnRefused(t *testing.T) {
	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(workloads), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{StateDir: filepath.Join(dir, "state"), WorkloadsFile: wfile, AdminAuth: AdminAuthConfig{TokenFile: testTokenFile(t)},
		Trust: TrustConfig{Insecure: true}} // trust_test.go covers TLS
	ready := make(chan Addrs, 1)
	cfg.GRPCListener, cfg.AdminListener = listen(t), listen(t)
	cfg.Ready = func(a Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testLog(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	base := "http://" + addrs.Admin.String()
	const policy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: redis, namespace: demo}
spec:
  mode: discover
  learning: {from: enforced}
`
	if code, b := httpDo(t, "POST", base+"/v1/policies/apply", policy); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	conn, err := grpc.NewClient(addrs.GRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	report := func() {
		t.Helper()
		fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := timestamppb.New(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
		if err := fs.Send(&bulkheadv1.FlowBatch{Node: "redis.demo", Flows: []*bulkheadv1.Flow{{
			Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
			SrcIp:     "198.18.0.10", SrcSegment: "demo/cart", DstIp: "198.18.0.20", DstSegment: "demo/redis", DstPort: 6379,
			Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_DISCOVER,
			Count: 1, FirstSeen: now, LastSeen: now,
		}}}); err != nil {
			t.Fatal(err)
		}
		if sum, err := fs.CloseAndRecv(); err != nil || sum.GetAccepted() != 1 {
			t.Fatalf("report: %v %v", sum, err)
		}
	}
	report()
	code, b := httpDo(t, "GET", base+"/v1/violations?segment=demo/redis", "")
	var viols []flows.Record
	if err := json.Unmarshal(b, &viols); code != 200 || err != nil {
		t.Fatalf("violations: %d %s %v", code, b, err)
	}
	if len(viols) != 1 || viols[0].Reason != "learn_refused:peer_learning" || viols[0].Node != "redis.demo" {
		t.Fatalf("violations: %+v", viols)
	}
	if _, b := httpDo(t, "GET", base+"/metrics", ""); !strings.Contains(string(b), `bulkhead_learn_refused_total{reason="peer_learning"} 1`) {
		t.Errorf("metrics lack the refusal:\n%s", b)
	}
	if _, b := httpDo(t, "GET", base+"/v1/policies/export?namespace=demo", ""); strings.Contains(string(b), "from-cart") {
		t.Fatalf("a refused flow was learned:\n%s", b)
	}

	if code, b := httpDo(t, "PUT", base+"/v1/segments/demo/cart/mode", `{"mode":"monitor"}`); code != 200 {
		t.Fatalf("mode: %d %s", code, b)
	}
	report()
	_, b = httpDo(t, "GET", base+"/v1/policies/export?namespace=demo", "")
	for _, want := range []string{"name: from-cart-redis-6379", "node: redis.demo", "flow: demo/cart -> demo/redis:6379/redis GET", `time: "2026-11-27T12:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("export lacks %q:\n%s", want, b)
		}
	}
}
