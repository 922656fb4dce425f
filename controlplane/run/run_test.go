package run

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const workloads = `workloads:
- name: redis
  namespace: demo
  ips: [198.18.0.20]
  ports: [{port: 6379, protocol: redis}]
- name: cart
  namespace: demo
  ips: [198.18.0.10]
`

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// httpDo sends a request to the admin API and returns status and body.
func httpDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// testToken is the admin token of the tests' control planes.
const testToken = "test-admin-token-0123456789"

// testTokenFile writes testToken to a file for AdminAuthConfig.TokenFile.
func testTokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRun runs the whole control plane on 127.0.0.1 and drives it as a
// proxy and an operator would: ADS, a flow report that teaches a rule, a
// mode switch over the admin API, a workloads file change; then stops it and
// checks that no goroutine is left.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(workloads), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	tokFile := testTokenFile(t)
	go func() {
		done <- Run(ctx, Config{
			StateDir:      filepath.Join(dir, "state"),
			WorkloadsFile: wfile,
			AdminAuth:     AdminAuthConfig{TokenFile: tokFile},
			Trust:         TrustConfig{Insecure: true}, // trust_test.go covers TLS
			GRPCListener:  listen(t),
			AdminListener: listen(t),
			PollInterval:  20 * time.Millisecond,
			Ready:         func(a Addrs) { ready <- a },
		}, testLog(t))
	}()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	base := "http://" + addrs.Admin.String()
	if code, b := httpDo(t, "GET", base+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, b)
	}

	conn, err := grpc.NewClient(addrs.GRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	policies := make(chan *bulkheadv1.ProxyPolicy, 16)
	adsDone := make(chan error, 1)
	go func() {
		defer close(policies)
		for {
			r, err := ads.Recv()
			if err != nil {
				adsDone <- err
				return
			}
			for _, a := range r.GetResources() {
				p := new(bulkheadv1.ProxyPolicy)
				if err := a.UnmarshalTo(p); err != nil {
					adsDone <- err
					return
				}
				policies <- p
			}
			if err := ads.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: xds.TypeProxyPolicy, ResourceNames: []string{"redis.demo"}, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
				adsDone <- err
				return
			}
		}
	}()
	if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: &core.Node{Id: "redis.demo"}, TypeUrl: xds.TypeProxyPolicy, ResourceNames: []string{"redis.demo"}}); err != nil {
		t.Fatal(err)
	}
	// next waits for a ProxyPolicy that satisfies ok, skipping others.
	next := func(what string, ok func(*bulkheadv1.ProxyPolicy) bool) *bulkheadv1.ProxyPolicy {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case p, open := <-policies:
				if !open {
					t.Fatalf("%s: ADS stream ended: %v", what, <-adsDone)
				}
				if ok(p) {
					return p
				}
			case <-timeout:
				t.Fatalf("%s: no such ProxyPolicy within 5s", what)
			}
		}
	}
	p := next("initial policy", func(p *bulkheadv1.ProxyPolicy) bool { return true })
	if p.GetMode() != bulkheadv1.Mode_MODE_DISCOVER || p.GetSegment() != "redis" || len(p.GetIngress()) != 0 || len(p.GetPorts()) != 1 {
		t.Fatalf("initial policy = %v", p)
	}

	// A discover-mode flow from cart teaches a rule, which reaches the proxy.
	fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := timestamppb.Now()
	if err := fs.Send(&bulkheadv1.FlowBatch{Node: "redis.demo", Revision: p.GetRevision(), Flows: []*bulkheadv1.Flow{{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     "198.18.0.10", SrcSegment: "demo/cart", DstIp: "198.18.0.20", DstSegment: "demo/redis", DstPort: 6379,
		Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_VIOLATION, Mode: bulkheadv1.Mode_MODE_DISCOVER,
		Reason: "no rule for peer", Count: 3, Bytes: 42, FirstSeen: now, LastSeen: now,
	}}}); err != nil {
		t.Fatal(err)
	}
	if sum, err := fs.CloseAndRecv(); err != nil || sum.GetAccepted() != 1 {
		t.Fatalf("report: %v %v", sum, err)
	}
	p = next("learned rule", func(p *bulkheadv1.ProxyPolicy) bool { return len(p.GetIngress()) > 0 })
	if r := p.GetIngress()[0]; len(r.GetPeers()) != 1 || r.GetPeers()[0].GetSegment() != "demo/cart" ||
		len(r.GetRedis().GetCommands()) != 1 || !strings.EqualFold(r.GetRedis().GetCommands()[0], "get") {
		t.Errorf("learned rule = %v", r)
	}

	// The operator switches the segment to protect.
	if code, b := httpDo(t, "PUT", base+"/v1/segments/demo/redis/mode", `{"mode":"protect"}`); code != 200 {
		t.Fatalf("set mode: %d %s", code, b)
	}
	next("protect", func(p *bulkheadv1.ProxyPolicy) bool { return p.GetMode() == bulkheadv1.Mode_MODE_PROTECT })

	// A new workload in the file shows up in the segments.
	if err := os.WriteFile(wfile, []byte(workloads+"- name: cart-2\n  namespace: demo\n  segment: cart\n  ips: [198.18.0.11]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, b := httpDo(t, "GET", base+"/v1/segments", "")
		var segs []admin.Segment
		if err := json.Unmarshal(b, &segs); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range segs {
			found = found || (s.Name == "cart" && len(s.Workloads) == 2)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cart-2 not in segments within 5s: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for path, want := range map[string]string{
		"/v1/flows":      `"verb": "GET"`,
		"/v1/violations": `"reason": "no rule for peer"`,
		"/v1/proxies":    `"node": "redis.demo"`,
		"/v1/policies":   `"learnedRules": 1`,
		"/metrics":       "bulkhead_flows_received_total 1",
	} {
		if code, b := httpDo(t, "GET", base+path, ""); code != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, want %q in\n%s", path, code, want, b)
		}
	}

	// Stopping ends the open ADS stream too.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	for range policies {
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("workloads: [{name: Bad}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy := listen(t)
	defer busy.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state dir", Config{}, "state dir"},
		{"missing workloads file", Config{StateDir: dir, WorkloadsFile: filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"bad workloads file", Config{StateDir: dir, WorkloadsFile: bad}, "Bad"},
		{"bad default mode", Config{StateDir: dir, DefaultMode: "lockdown"}, "lockdown"},
		{"address in use", Config{StateDir: dir, GRPCAddr: busy.Addr().String(), AdminListener: listen(t)}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
