package run

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// TestRunReportBatchAtItsWorst: a proxy's report batch of 1000 flows, each
// with every L7 field at its bound, is over gRPC's default 4 MiB and is
// accepted (MaxGRPCMessage), where the default would refuse it and the
// proxy resend it for ever.
func TestRunReportBatchAtItsWorst(t *testing.T) {
	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(workloads), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan Addrs, 1)
	cfg := Config{StateDir: filepath.Join(dir, "state"), WorkloadsFile: wfile, AdminAuth: AdminAuthConfig{TokenFile: testTokenFile(t)},
		Trust: TrustConfig{Insecure: true}} // trust_test.go covers TLS
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
	conn, err := grpc.NewClient(addrs.GRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxGRPCMessage)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	now := timestamppb.Now()
	batch := &bulkheadv1.FlowBatch{Node: "redis.demo"}
	for i := range 1000 {
		more := make([]string, 15)
		for j := range more {
			more[j] = strings.Repeat(string(rune('a'+j)), 255) + string(rune('a'+i%26))
		}
		batch.Flows = append(batch.Flows, &bulkheadv1.Flow{
			Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
			SrcIp:     "198.18.0.10", SrcSegment: "demo/cart", DstIp: "198.18.0.20", DstSegment: "demo/redis", DstPort: 6379,
			Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_PROTECT,
			Rule: "demo/redis/from-cart", Count: 1, FirstSeen: now, LastSeen: now,
			Resource: strings.Repeat("r", 250) + time.Duration(i).String(), Aux: strings.Repeat("x", 128), MoreResources: more,
		})
	}
	if n := proto.Size(batch); n <= 4<<20 || n > MaxGRPCMessage {
		t.Fatalf("batch of %d bytes: want over 4 MiB, within %d", n, MaxGRPCMessage)
	}
	fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Send(batch); err != nil {
		t.Fatal(err)
	}
	sum, err := fs.CloseAndRecv()
	if err != nil || sum.GetAccepted() != 1000 {
		t.Fatalf("report: %v %v", sum, err)
	}
}
