package xds

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	cpxds "github.com/bulkhead-io/bulkhead/controlplane/xds"
)

// clientsArg marks a run of the test binary as the fan-out's clients:
//
//	<test binary> xds-clients <server addr> <n> <delta>
//
// It connects one ADS client per node of fixture(n), each on its own
// connection, prints "ready" once every one has its route configuration,
// then for each "arm" line on stdin prints "armed" and, once every client
// has ACKed a new route configuration, "acks" and the Unix nanosecond
// times of the ACKs. It exits when stdin closes.
const clientsArg = "xds-clients"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == clientsArg {
		os.Exit(runClients(os.Args[2:]))
	}
	os.Exit(m.Run())
}

type client struct {
	node  string
	armed atomic.Bool
	got   chan time.Time // when the first route response after arming was ACKed
	conn  *grpc.ClientConn
	done  chan struct{}
}

func runClients(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: xds-clients <addr> <n> <delta>")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	delta := args[2] == "true"
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{}, n)
	var clients []*client
	for _, w := range fixture(n, v1alpha1.ModeProtect, false).Workloads {
		c := &client{node: identity.NodeID(w), got: make(chan time.Time, 1), done: make(chan struct{})}
		if c.conn, err = grpc.NewClient(args[0], grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.conn.Close()
		clients = append(clients, c)
		if delta {
			go c.runDelta(ctx, ready)
		} else {
			go c.runSotW(ctx, ready)
		}
	}
	for range n {
		<-ready
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "arm" {
			continue
		}
		for _, c := range clients {
			c.armed.Store(true)
		}
		fmt.Println("armed")
		var b strings.Builder
		b.WriteString("acks")
		for _, c := range clients {
			fmt.Fprintf(&b, " %d", (<-c.got).UnixNano())
		}
		fmt.Println(b.String())
	}
	cancel()
	for _, c := range clients {
		<-c.done
	}
	return 0
}

var routeName = envoy.InboundRouteName(appPort)

// runSotW subscribes to the node's listeners (wildcard) and its route
// configuration, and ACKs every response.
func (c *client) runSotW(ctx context.Context, ready chan<- struct{}) {
	defer close(c.done)
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return
	}
	node := &core.Node{Id: c.node}
	if s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: cpxds.TypeListener}) != nil ||
		s.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: cpxds.TypeRoute, ResourceNames: []string{routeName}}) != nil {
		return
	}
	first := true
	for {
		r, err := s.Recv()
		if err != nil {
			return
		}
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
		if r.GetTypeUrl() == cpxds.TypeRoute {
			req.ResourceNames = []string{routeName}
		}
		if s.Send(req) != nil {
			return
		}
		c.routeACKed(r.GetTypeUrl(), &first, ready)
	}
}

// runDelta is runSotW on a delta stream.
func (c *client) runDelta(ctx context.Context, ready chan<- struct{}) {
	defer close(c.done)
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return
	}
	node := &core.Node{Id: c.node}
	if s.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: cpxds.TypeListener}) != nil ||
		s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: cpxds.TypeRoute, ResourceNamesSubscribe: []string{routeName}}) != nil {
		return
	}
	first := true
	for {
		r, err := s.Recv()
		if err != nil {
			return
		}
		if s.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}) != nil {
			return
		}
		c.routeACKed(r.GetTypeUrl(), &first, ready)
	}
}

func (c *client) routeACKed(typeURL string, first *bool, ready chan<- struct{}) {
	if typeURL != cpxds.TypeRoute {
		return
	}
	if *first {
		*first = false
		ready <- struct{}{}
		return
	}
	if c.armed.CompareAndSwap(true, false) {
		c.got <- time.Now()
	}
}
