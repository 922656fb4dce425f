package xds

import (
	"context"
	"slices"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// certInfo is what Nodes shows of a stream's client certificate.
type certInfo struct {
	serial   string
	notAfter time.Time
}

// peerCert is the verified client certificate of the stream's connection
// (zero without one).
func peerCert(ctx context.Context) certInfo {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return certInfo{}
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return certInfo{}
	}
	leaf := ti.State.VerifiedChains[0][0]
	return certInfo{serial: strings.ToLower(leaf.SerialNumber.Text(16)), notAfter: leaf.NotAfter}
}

// Authorizer names the node a stream's peer proved to be: on a TLS server
// the node id of its verified client certificate (ca.Authorizer); an error
// (a gRPC status, Unauthenticated) refuses the stream.
type Authorizer interface {
	NodeOf(ctx context.Context) (string, error)
}

// Refusal reasons (bulkhead_xds_refused_total{reason}).
const (
	refusedUnauthenticated = "unauthenticated"
	refusedNode            = "node_mismatch"
	refusedResource        = "foreign_resource"
)

// checkNames refuses a node id other than the one the stream's certificate
// proves, and a ProxyPolicy subscription naming another node than
// the one the stream's certificate proves (names of other types are not
// restricted: Identity is the shared wildcard set, Envoy's types come from
// the node's own snapshot).
func (t *tracker) checkNames(id int64, node *core.Node, typeURL string, names []string) error {
	if t.auth == nil {
		return nil
	}
	t.mu.Lock()
	st, ok := t.streams[id]
	peer := ""
	if ok {
		peer = st.peer
	}
	t.mu.Unlock()
	if nodeID := node.GetId(); nodeID != "" && nodeID != peer {
		t.metrics.refused.WithLabelValues(refusedNode).Inc()
		t.log.Warn("xds stream refused: node id differs from the certificate's", "certificate", peer, "node", truncate(nodeID, maxNodeID))
		return status.Errorf(codes.PermissionDenied, "node id %q is not the certificate's %q", truncate(nodeID, maxNodeID), peer)
	}
	if typeURL != TypeProxyPolicy {
		return nil
	}
	if i := slices.IndexFunc(names, func(n string) bool { return n != peer }); i >= 0 {
		t.metrics.refused.WithLabelValues(refusedResource).Inc()
		t.log.Warn("xds stream refused: subscription to another node's policy", "node", peer, "resource", truncate(names[i], maxNodeID))
		return status.Errorf(codes.PermissionDenied, "node %s may subscribe only to its own ProxyPolicy", peer)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
