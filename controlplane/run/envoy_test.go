package run

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

const envoyWorkloads = `workloads:
- {name: api, namespace: demo, ips: [198.18.0.30], ports: [{port: 8080, protocol: http}], sidecar: envoy}
- {name: web, namespace: demo, ips: [198.18.0.31]}
`

// TestRunEnvoy: a workload with `sidecar: envoy` gets its listeners over
// ADS, its bootstrap from the admin server, and its access logs become
// flows; a workload without gets none.
func TestRunEnvoy(t *testing.T) {
	dir := t.TempDir()
	wfile := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(wfile, []byte(envoyWorkloads), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	tokFile := testTokenFile(t)
	go func() {
		done <- Run(ctx, Config{
			StateDir: filepath.Join(dir, "state"), WorkloadsFile: wfile,
			AdminAuth:    AdminAuthConfig{TokenFile: tokFile},
			Trust:        TrustConfig{Insecure: true}, // trust_test.go covers TLS
			GRPCListener: listen(t), AdminListener: listen(t),
			Ready: func(a Addrs) { ready <- a },
		}, testLog(t))
	}()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	base := "http://" + addrs.Admin.String()

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
	if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: &core.Node{Id: "api.demo"}, TypeUrl: xds.TypeListener}); err != nil {
		t.Fatal(err)
	}
	r, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range r.GetResources() {
		var l listenerv3.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			t.Fatal(err)
		}
		names = append(names, l.GetName())
	}
	slices.Sort(names)
	if want := []string{envoy.VirtualInbound, "bulkhead/inbound/198.18.0.30:8080"}; !slices.Equal(names, want) {
		t.Errorf("listeners = %v, want %v", names, want)
	}

	// The bootstrap: Envoy's for api (its sidecar field), gRPC's on request.
	code, body := httpDo(t, "GET", base+"/v1/envoy/bootstrap?node=api.demo", "")
	if code != 200 {
		t.Fatalf("bootstrap: %d %s", code, body)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(body, &b); err != nil {
		t.Fatalf("bootstrap is not an Envoy bootstrap: %v\n%s", err, body)
	}
	if err := envoy.Validate(&b); err != nil {
		t.Errorf("bootstrap: %v", err)
	}
	ep := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if b.GetNode().GetId() != "api.demo" || ep.GetAddress()+":"+strconv.Itoa(int(ep.GetPortValue())) != addrs.GRPC.String() {
		t.Errorf("bootstrap node %q, control plane %v", b.GetNode().GetId(), ep)
	}
	code, body = httpDo(t, "GET", base+"/v1/envoy/bootstrap?node=api.demo&kind=grpc&xds=bulkhead.bulkhead-system.svc:15010", "")
	var g struct {
		Template string `json:"server_listener_resource_name_template"`
		Servers  []struct {
			URI string `json:"server_uri"`
		} `json:"xds_servers"`
	}
	if code != 200 || json.Unmarshal(body, &g) != nil || g.Template != envoy.GRPCListenerTemplate || g.Servers[0].URI != "bulkhead.bulkhead-system.svc:15010" {
		t.Errorf("grpc bootstrap: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/v1/envoy/bootstrap?node=", ""); code != 400 || !strings.Contains(string(body), "node id") {
		t.Errorf("bootstrap without node: %d %s", code, body)
	}
	if code, _ := httpDo(t, "POST", base+"/v1/envoy/bootstrap?node=api.demo", ""); code != 405 {
		t.Errorf("POST bootstrap: %d", code)
	}

	// An access log entry of api becomes a flow in discover mode.
	als, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(sctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(ip string, port uint32) *core.Address {
		return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: ip, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}}
	}
	if err := als.Send(&accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &core.Node{Id: "api.demo"}, LogName: envoy.AccessLogName},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{{
				CommonProperties: &accesslogdatav3.AccessLogCommon{DownstreamRemoteAddress: addr("198.18.0.31", 5000), DownstreamLocalAddress: addr("198.18.0.30", 8080)},
				Request:          &accesslogdatav3.HTTPRequestProperties{RequestMethod: core.RequestMethod_GET, Path: "/orders"},
			}},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := als.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := httpDo(t, "GET", base+"/v1/flows?segment=demo/api", "")
		if strings.Contains(string(body), `"/orders"`) && strings.Contains(string(body), `"demo/web"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow from the access log: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	scancel()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
