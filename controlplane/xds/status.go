package xds

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NodeStatus is what the control plane knows about one xDS node.
type NodeStatus struct {
	// Node is the node id the client sent ("workload.namespace").
	Node string `json:"node"`
	// Connected is true while the node has at least one open stream.
	Connected bool `json:"connected"`
	// Streams is the number of open streams.
	Streams int `json:"streams"`
	// LastSeen is when the node last opened, used or closed a stream.
	LastSeen time.Time `json:"lastSeen"`
	// Types holds one entry per resource type the node asked for, sorted
	// by type URL.
	Types []TypeStatus `json:"types"`
	// CertSerial and CertNotAfter describe the client certificate of the
	// node's most recently opened stream (hexadecimal serial; empty in
	// plaintext mode). A renewed certificate shows once the node makes a
	// new connection.
	CertSerial   string    `json:"certSerial,omitempty"`
	CertNotAfter time.Time `json:"certNotAfter,omitzero"`
}

// TypeStatus is the state of one resource type on one node.
type TypeStatus struct {
	// Type is the type URL.
	Type string `json:"type"`
	// Delta is true when the node last asked for the type on a delta
	// stream.
	Delta bool `json:"delta"`
	// SentVersion is the version of the last response sent.
	SentVersion string `json:"sentVersion"`
	// AckedVersion is the last version the node accepted.
	AckedVersion string `json:"ackedVersion"`
	// NackedVersion is the last version the node rejected, if any.
	NackedVersion string `json:"nackedVersion,omitempty"`
	// Nacks counts the rejections.
	Nacks uint64 `json:"nacks"`
	// LastError is the error detail of the last rejection.
	LastError string `json:"lastError,omitempty"`
	// LastNack is when the last rejection arrived.
	LastNack time.Time `json:"lastNack,omitzero"`
}

// Limits on what a client may make the tracker remember.
const (
	maxNodeID    = 253
	maxErrDetail = 1024
	sentRing     = 8 // responses remembered per stream and type to match ACKs by nonce
)

type sentResp struct{ nonce, version string }

type streamState struct {
	node  string
	peer  string // the node id the peer's certificate proves (with an Authorizer)
	cert  certInfo
	delta bool
	sent  map[string]*[sentRing]sentResp // by type URL
	next  map[string]int
}

func (st *streamState) remember(typeURL, nonce, version string) {
	ring := st.sent[typeURL]
	if ring == nil {
		ring = new([sentRing]sentResp)
		st.sent[typeURL] = ring
	}
	i := st.next[typeURL]
	ring[i%sentRing] = sentResp{nonce, version}
	st.next[typeURL] = i + 1
}

func (st *streamState) versionOf(typeURL, nonce string) (string, bool) {
	ring := st.sent[typeURL]
	if ring == nil || nonce == "" {
		return "", false
	}
	for _, r := range ring {
		if r.nonce == nonce {
			return r.version, true
		}
	}
	return "", false
}

type nodeState struct {
	cert     certInfo
	streams  int
	lastSeen time.Time
	types    map[string]*TypeStatus
}

// tracker keeps per stream and per node state from the server's callbacks.
// The callbacks run synchronously on the streams' goroutines.
type tracker struct {
	auth     Authorizer // nil: node ids are self-declared (plaintext)
	log      *slog.Logger
	metrics  *metrics
	maxNodes int
	now      func() time.Time

	mu      sync.Mutex
	streams map[int64]*streamState
	nodes   map[string]*nodeState
}

func newTracker(log *slog.Logger, m *metrics, maxNodes int) *tracker {
	return &tracker{
		log:      log,
		metrics:  m,
		maxNodes: maxNodes,
		now:      time.Now,
		streams:  map[int64]*streamState{},
		nodes:    map[string]*nodeState{},
	}
}

func knownType(typeURL string) bool {
	return typeURL == TypeProxyPolicy || typeURL == TypeIdentity || isEnvoyType(typeURL)
}

func (t *tracker) callbacks() serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return t.open(ctx, id, false)
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return t.open(ctx, id, true)
		},
		StreamClosedFunc:      func(id int64, _ *core.Node) { t.closed(id) },
		DeltaStreamClosedFunc: func(id int64, _ *core.Node) { t.closed(id) },
		StreamRequestFunc: func(id int64, r *discovery.DiscoveryRequest) error {
			if r.GetTypeUrl() == TypeProxyPolicy && slices.Contains(r.GetResourceNames(), "*") {
				return status.Error(codes.InvalidArgument, errWildcardPolicy.Error())
			}
			if err := t.checkNames(id, r.GetNode(), r.GetTypeUrl(), r.GetResourceNames()); err != nil {
				return err
			}
			nacked, err := t.request(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetVersionInfo(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
			if nacked != "" && isEnvoyType(r.GetTypeUrl()) {
				// A SotW NACK carries the last version the client
				// accepted; the snapshot cache would answer it at once
				// with the rejected snapshot again, in a loop until the
				// next snapshot (go-control-plane issue #962). Saying
				// that the client holds the rejected version parks the
				// watch until the configuration changes.
				r.VersionInfo = nacked
			}
			return err
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, r *discovery.DiscoveryResponse) {
			t.sent(id, r.GetTypeUrl(), r.GetNonce(), r.GetVersionInfo())
		},
		StreamDeltaRequestFunc: func(id int64, r *discovery.DeltaDiscoveryRequest) error {
			if r.GetTypeUrl() == TypeProxyPolicy && slices.Contains(r.GetResourceNamesSubscribe(), "*") {
				return status.Error(codes.InvalidArgument, errWildcardPolicy.Error())
			}
			if err := t.checkNames(id, r.GetNode(), r.GetTypeUrl(), r.GetResourceNamesSubscribe()); err != nil {
				return err
			}
			// Delta requests carry no version: an ACK names the response
			// by nonce, and the tracker knows that response's version. (A
			// delta NACK is not answered again: the stream's state already
			// holds the versions sent.)
			_, err := t.request(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), "", r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
			return err
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, r *discovery.DeltaDiscoveryResponse) {
			t.sent(id, r.GetTypeUrl(), r.GetNonce(), r.GetSystemVersionInfo())
		},
	}
}

// open records a new stream; with an Authorizer, a stream whose peer proves
// no node is refused.
func (t *tracker) open(ctx context.Context, id int64, delta bool) error {
	peer := ""
	if t.auth != nil {
		var err error
		if peer, err = t.auth.NodeOf(ctx); err != nil {
			t.metrics.refused.WithLabelValues(refusedUnauthenticated).Inc()
			t.log.Debug("xds stream refused", "error", err)
			if _, ok := status.FromError(err); !ok {
				err = status.Error(codes.Unauthenticated, err.Error())
			}
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[id] = &streamState{peer: peer, cert: peerCert(ctx), delta: delta, sent: map[string]*[sentRing]sentResp{}, next: map[string]int{}}
	t.metrics.streams.WithLabelValues(streamKind(delta)).Inc()
	return nil
}

func (t *tracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	delete(t.streams, id)
	t.metrics.streams.WithLabelValues(streamKind(st.delta)).Dec()
	if n := t.nodes[st.node]; st.node != "" && n != nil {
		n.streams--
		n.lastSeen = t.now()
		if n.streams == 0 {
			t.log.Info("xds node disconnected", "node", st.node)
		}
	}
}

// request records one discovery request: the node's identity on its first
// request, and an ACK or NACK when it answers a response (has a nonce). For
// a NACK of a known response it returns the rejected version.
func (t *tracker) request(id int64, node *core.Node, typeURL, nonce, ackVersion, errDetail string, nack bool) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return "", status.Error(codes.Internal, "unknown stream")
	}
	nodeID := node.GetId()
	switch {
	case nodeID == "" && st.node == "":
		return "", status.Error(codes.InvalidArgument, "the first request must carry node.id")
	case nodeID == "":
		nodeID = st.node
	case len(nodeID) > maxNodeID:
		return "", status.Errorf(codes.InvalidArgument, "node id is %d bytes, at most %d", len(nodeID), maxNodeID)
	case st.node != "" && nodeID != st.node:
		return "", status.Errorf(codes.InvalidArgument, "node id changed on the stream from %q to %q", st.node, nodeID)
	case t.auth != nil && nodeID != st.peer:
		t.metrics.refused.WithLabelValues(refusedNode).Inc()
		t.log.Warn("xds stream refused: node id differs from the certificate's", "certificate", st.peer, "node", nodeID)
		return "", status.Errorf(codes.PermissionDenied, "node id %q is not the certificate's %q", nodeID, st.peer)
	}
	now := t.now()
	n := t.nodes[nodeID]
	if st.node == "" {
		st.node = nodeID
		if n == nil {
			t.evictLocked()
			n = &nodeState{types: map[string]*TypeStatus{}}
			t.nodes[nodeID] = n
		}
		n.streams++
		if st.cert.serial != "" {
			n.cert = st.cert
		}
		if n.streams == 1 {
			t.log.Info("xds node connected", "node", nodeID, "delta", st.delta)
		}
	}
	n.lastSeen = now
	if !knownType(typeURL) {
		return "", nil
	}
	ts := n.types[typeURL]
	if ts == nil {
		ts = &TypeStatus{Type: typeURL}
		n.types[typeURL] = ts
	}
	ts.Delta = st.delta
	if nonce == "" {
		return "", nil // a (re)subscription, not an answer
	}
	version, found := st.versionOf(typeURL, nonce)
	if !nack {
		if st.delta || ackVersion == "" {
			ackVersion = version
		}
		if ackVersion != "" || found {
			ts.AckedVersion = ackVersion
		}
		return "", nil
	}
	if len(errDetail) > maxErrDetail {
		errDetail = errDetail[:maxErrDetail] + "…"
	}
	errDetail = strings.ToValidUTF8(errDetail, "\uFFFD")
	ts.Nacks++
	ts.NackedVersion = version
	ts.LastError = errDetail
	ts.LastNack = now
	t.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
	t.log.Warn("xds node rejected a config", "node", nodeID, "type", typeLabel(typeURL), "version", version, "nonce", nonce, "error", errDetail)
	return version, nil
}

func (t *tracker) sent(id int64, typeURL, nonce, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok || !knownType(typeURL) {
		return
	}
	st.remember(typeURL, nonce, version)
	if n := t.nodes[st.node]; n != nil {
		ts := n.types[typeURL]
		if ts == nil {
			ts = &TypeStatus{Type: typeURL, Delta: st.delta}
			n.types[typeURL] = ts
		}
		ts.SentVersion = version
	}
}

// evictLocked forgets the least recently seen disconnected node when the
// table is full.
func (t *tracker) evictLocked() {
	if len(t.nodes) < t.maxNodes {
		return
	}
	var oldest string
	var when time.Time
	for id, n := range t.nodes {
		if n.streams == 0 && (oldest == "" || n.lastSeen.Before(when)) {
			oldest, when = id, n.lastSeen
		}
	}
	if oldest != "" {
		delete(t.nodes, oldest)
	}
}

// connected reports whether node has an open stream.
func (t *tracker) connected(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[node]
	return n != nil && n.streams > 0
}

func (t *tracker) snapshot() []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]NodeStatus, 0, len(t.nodes))
	for id, n := range t.nodes {
		ns := NodeStatus{Node: id, Connected: n.streams > 0, Streams: n.streams, LastSeen: n.lastSeen, Types: make([]TypeStatus, 0, len(n.types)),
			CertSerial: n.cert.serial, CertNotAfter: n.cert.notAfter}
		for _, ts := range n.types {
			ns.Types = append(ns.Types, *ts)
		}
		slices.SortFunc(ns.Types, func(a, b TypeStatus) int { return strings.Compare(a.Type, b.Type) })
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func streamKind(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

// typeLabel is a bounded metric label for a type URL.
func typeLabel(typeURL string) string {
	switch typeURL {
	case TypeProxyPolicy:
		return "ProxyPolicy"
	case TypeIdentity:
		return "Identity"
	case TypeListener:
		return "Listener"
	case TypeRoute:
		return "RouteConfiguration"
	case TypeCluster:
		return "Cluster"
	case TypeEndpoint:
		return "ClusterLoadAssignment"
	}
	return "other"
}
