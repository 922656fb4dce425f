package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// TestNACK: a proxy refuses (NACKs, with error_detail) a configuration it
// cannot compile and keeps enforcing the one it had; the next good one is
// ACKed and enforced. The control plane never serves such a configuration
// (it validates everything), so a test xDS server does: controlplane/xds fed
// directly, on the lab's host address.
func TestNACK(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	const ns, node = "demo", "redis.demo"
	l := newLab(t, ctx, 7)
	cart, err := l.AddHost("cart")
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.AddHost("redis")
	if err != nil {
		t.Fatal(err)
	}

	srv, addr := startXDS(t, ctx, l.HostAddr())
	ids := map[string]*bulkheadv1.Identity{
		ns + "/cart":  {Workload: "cart", Namespace: ns, Segment: ns + "/cart", Ips: []string{cart.Addr().String()}},
		ns + "/redis": {Workload: "redis", Namespace: ns, Segment: ns + "/redis", Ips: []string{server.Addr().String()}},
	}
	if err := srv.SetIdentities(ids); err != nil {
		t.Fatal(err)
	}
	policy := func(rev string, m bulkheadv1.Mode, protocol string) *bulkheadv1.ProxyPolicy {
		return &bulkheadv1.ProxyPolicy{
			Segment: "redis", Namespace: ns, Mode: m, Revision: rev,
			Ports: []*bulkheadv1.Port{{Port: 6379, Protocol: protocol}},
			Ingress: []*bulkheadv1.Rule{{
				Name:  ns + "/redis/from-cart",
				Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: ns + "/cart"}}},
				Ports: []*bulkheadv1.Port{{Port: 6379, Protocol: protocol}},
				Redis: &bulkheadv1.RedisMatch{Commands: []string{"GET", "PING", "SET"}},
			}},
		}
	}
	serve := func(p *bulkheadv1.ProxyPolicy) {
		t.Helper()
		if err := srv.SetProxyPolicies(map[string]*bulkheadv1.ProxyPolicy{node: p}); err != nil {
			t.Fatal(err)
		}
	}
	serve(policy("good-1", bulkheadv1.Mode_MODE_PROTECT, "redis"))

	startRedis(t, ctx, server)
	if out, err := server.Run(ctx, filepath.Join(binDir(t), "bulkhead-proxy"), "init", "--exclude-ports", strconv.Itoa(proxyAdminPort)); err != nil {
		t.Fatalf("install the redirect: %v\n%s", err, out)
	}
	proxy := startProxy(t, ctx, server, node, addr, filepath.Join(t.TempDir(), "cache"), "--insecure") // a plaintext test xDS server
	t.Cleanup(func() {
		if t.Failed() {
			dumpProcs(t, map[string]*lab.Proc{"bulkhead-proxy": proxy})
		}
	})
	acked := waitNode(t, ctx, srv, node, "good-1 acknowledged", func(ts xds.TypeStatus) bool {
		return ts.AckedVersion != "" && ts.AckedVersion == ts.SentVersion
	})
	if acked.Nacks != 0 {
		t.Errorf("NACKs before any bad configuration: %+v", acked)
	}
	redisAddr := netip.AddrPortFrom(server.Addr(), 6379)
	// A connection opened under the good policy, and used after each
	// update.
	old := dialRaw(t, ctx, cart, redisAddr)
	if rep, err := old.do("SET", key, value); err != nil || rep != okRep {
		t.Fatalf("SET under good-1: %q, %v", rep, err)
	}

	// enforcesGood1 checks good-1 on the old connection and a new one.
	enforcesGood1 := func(when string) {
		t.Helper()
		s := waitProxyPolicy(t, ctx, server, func(policySummary) bool { return true })
		if s.Revision != "good-1" || s.Mode != "protect" {
			t.Errorf("%s: the proxy enforces revision %q mode %s, want good-1 protect", when, s.Revision, s.Mode)
		}
		for i, c := range []*rawConn{old, dialRaw(t, ctx, cart, redisAddr)} {
			rep, err := c.do("FLUSHALL")
			checkDenied(t, fmt.Sprintf("%s: connection %d: FLUSHALL", when, i), rep, err, "flushall")
			rep, err = c.do("GET", key)
			checkReply(t, fmt.Sprintf("%s: connection %d: GET", when, i), rep, err, valueRep)
		}
	}
	enforcesGood1("good-1")

	// Bad configurations: each is NACKed with a reason, and good-1 stays.
	for _, bad := range []struct {
		name   string
		policy *bulkheadv1.ProxyPolicy
		detail string // in the NACK's error_detail
	}{
		// Were it applied, monitor (and an L4 port) would let FLUSHALL
		// through.
		{"unknown protocol", policy("bad-1", bulkheadv1.Mode_MODE_MONITOR, "gopher"), "gopher"},
		{"mode unspecified", policy("bad-2", bulkheadv1.Mode_MODE_UNSPECIFIED, "redis"), "mode"},
	} {
		before := nodeStatus(srv, node)
		serve(bad.policy)
		ts := waitNode(t, ctx, srv, node, bad.name+" NACKed", func(ts xds.TypeStatus) bool {
			return ts.Nacks > before.Nacks && ts.NackedVersion == ts.SentVersion && ts.SentVersion != before.SentVersion
		})
		if !strings.Contains(ts.LastError, bad.detail) {
			t.Errorf("%s: the NACK's error_detail %q does not mention %q", bad.name, ts.LastError, bad.detail)
		}
		if ts.AckedVersion != acked.AckedVersion {
			t.Errorf("%s: acknowledged version went from %s to %s", bad.name, acked.AckedVersion, ts.AckedVersion)
		}
		t.Logf("%s: NACKed: %s", bad.name, ts.LastError)
		enforcesGood1("after " + bad.name)
	}

	// A good update is ACKed and enforced, on the open connection too.
	good2 := policy("good-2", bulkheadv1.Mode_MODE_MONITOR, "redis")
	serve(good2)
	ts := waitNode(t, ctx, srv, node, "good-2 acknowledged", func(ts xds.TypeStatus) bool {
		return ts.AckedVersion == ts.SentVersion && ts.AckedVersion != acked.AckedVersion
	})
	t.Logf("good-2 acknowledged as version %s", ts.AckedVersion)
	s := waitProxyPolicy(t, ctx, server, func(s policySummary) bool { return s.Revision == "good-2" })
	if s.Mode != "monitor" {
		t.Errorf("good-2: mode %s, want monitor", s.Mode)
	}
	rep, err := old.do("DBSIZE")
	if err != nil || !strings.HasPrefix(rep, ":") {
		t.Errorf("DBSIZE (no rule) under monitor: %q, %v; want redis's integer", rep, err)
	}
	rep, err = old.do("GET", key)
	checkReply(t, "GET under good-2", rep, err, valueRep)
}

// newLab builds lab n, removed when the test ends (also on failure).
func newLab(t *testing.T, ctx context.Context, n int) *lab.Lab {
	t.Helper()
	l, err := lab.New(ctx, lab.Options{Prefix: labPrefix(n), Subnet: labSubnet(n), Log: testLog(t), Grace: time.Second, KeepDir: keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("clean up the lab: %v", err)
		}
	})
	return l
}

// startRedis starts redis-server in h on port 6379 and waits for it.
func startRedis(t *testing.T, ctx context.Context, h *lab.Host) *lab.Proc {
	t.Helper()
	p, err := h.Start(ctx, "redis-server", "--bind", "0.0.0.0", "--port", "6379",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := lab.WaitTCP(wctx, h, netip.AddrPortFrom(h.Addr(), 6379)); err != nil {
		t.Fatalf("%v\n%v", err, p.Err())
	}
	return p
}

// startXDS serves controlplane/xds (and a flow sink) on a free port of addr
// until the test ends.
func startXDS(t *testing.T, ctx context.Context, addr netip.Addr) (*xds.Server, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := xds.New(testLog(t), xds.Options{})
	gs := grpc.NewServer()
	srv.Register(gs)
	sink := &flowSink{}
	bulkheadv1.RegisterFlowServiceServer(gs, sink)
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		served <- gs.Serve(ln)
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = srv.Start(sctx)
	}()
	<-started
	t.Cleanup(func() {
		cancel()
		<-stopped
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("test xDS server: %v", err)
		}
	})
	return srv, ln.Addr().(*net.TCPAddr).AddrPort()
}

// flowSink accepts flow reports and counts the batches.
type flowSink struct {
	bulkheadv1.UnimplementedFlowServiceServer
	batches atomic.Int64
}

func (s *flowSink) Report(stream grpc.ClientStreamingServer[bulkheadv1.FlowBatch, bulkheadv1.ReportSummary]) error {
	var n uint64
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&bulkheadv1.ReportSummary{Accepted: n})
		}
		if err != nil {
			return err
		}
		s.batches.Add(1)
		n += uint64(len(b.GetFlows()))
	}
}

// nodeStatus is what the xDS server's callbacks recorded about node's
// ProxyPolicy; the zero value when nothing yet.
func nodeStatus(srv *xds.Server, node string) xds.TypeStatus {
	for _, n := range srv.Nodes() {
		if n.Node != node || !n.Connected {
			continue
		}
		for _, ts := range n.Types {
			if ts.Type == xds.TypeProxyPolicy {
				return ts
			}
		}
	}
	return xds.TypeStatus{}
}

// waitNode polls the node's ProxyPolicy status until cond holds.
func waitNode(t *testing.T, ctx context.Context, srv *xds.Server, node, what string, cond func(xds.TypeStatus) bool) xds.TypeStatus {
	t.Helper()
	var ts xds.TypeStatus
	err := poll(ctx, 10*time.Second, func(context.Context) (bool, error) {
		ts = nodeStatus(srv, node)
		return cond(ts), nil
	})
	if err != nil {
		t.Fatalf("%s: %v; status %+v", what, err, ts)
	}
	return ts
}
