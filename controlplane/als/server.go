// Package als is the control plane's gRPC Access Log Service for Envoy
// sidecars. Envoy streams one StreamAccessLogsMessage after another (the
// first names the node); the server turns each message's HTTP entries into
// the flow records bulkhead-proxy reports (Convert) and hands them to the
// flows server's Ingest, so that recording, violations, rule hits and
// learning treat Envoy sidecars like bulkhead-proxy.
//
// The verdict of an entry comes from the RBAC filter's dynamic metadata
// under "envoy.filters.http.rbac". controlplane/envoy gives the rules of
// each mode a stat prefix that Envoy puts in front of those keys:
// "…enforced_engine_result" (rules_stat_prefix "bulkhead_protect_") is
// protect — "denied" is a deny, else the rule in
// "…enforced_effective_policy_id" allowed it; a response whose details
// start with "rbac_access_denied" is a deny too; shadow results prefixed
// "bulkhead_monitor_" are monitor — "denied" is a violation; prefixed
// "bulkhead_discover_" discover — everything is allowed and
// "…shadow_effective_policy_id" names the rule when one matched. A flow no
// rule allowed gets the reason bulkhead-proxy would give: "no_rule" when
// no ingress rule admits its peer on its port, else "l7_not_allowed".
//
// Envoy expects no answer and reconnects when the stream ends; the server
// ends every stream when it stops.
package als

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/streams"
)

// Sink takes the flows of one message; *flows.Server is one.
type Sink interface {
	Ingest(node string, flows []*bulkheadv1.Flow) (accepted, rejected int, err error)
}

// Limits.
const (
	// DefaultMaxEntries bounds the entries of one message (the flows
	// server's batch bound).
	DefaultMaxEntries = 4096
	maxNode           = 253
)

// Options tunes a Server. The zero value uses the defaults.
type Options struct {
	// MaxEntries bounds the HTTP entries of one message; a longer message
	// ends the stream with InvalidArgument. Zero: DefaultMaxEntries.
	MaxEntries int
	// Registerer receives the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Now tells the time of entries without a start time. Nil: time.Now.
	Now func() time.Time
	// Authorizer, when set, binds each stream to the node its peer proves
	// (its client certificate): a stream without one is refused
	// (Unauthenticated), a message naming another node ends it with
	// PermissionDenied. Nil: node ids are self-declared (plaintext mode).
	Authorizer Authorizer
}

// Authorizer names the node a stream's peer proved to be (ca.Authorizer on
// a TLS server); an error (Unauthenticated) refuses the stream.
type Authorizer interface {
	NodeOf(ctx context.Context) (string, error)
}

// Server is the Access Log Service.
type Server struct {
	accesslogv3.UnimplementedAccessLogServiceServer

	sink    Sink
	view    func() *View
	log     *slog.Logger
	opts    Options
	metrics *metrics

	stopOnce sync.Once
	stopping chan struct{}
}

var _ accesslogv3.AccessLogServiceServer = (*Server)(nil)

// NewServer builds a Server that feeds sink. view returns the latest
// compiled View (nil: every node is unknown and its entries are skipped).
// It starts no goroutines.
func NewServer(sink Sink, view func() *View, log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		sink: sink, view: view, opts: opts,
		log:      log.With("component", "als"),
		metrics:  newMetrics(opts.Registerer),
		stopping: make(chan struct{}),
	}
}

// Register serves the Access Log Service on gs.
func (s *Server) Register(gs *grpc.Server) { accesslogv3.RegisterAccessLogServiceServer(gs, s) }

// Start blocks until ctx is done, then ends every open stream with
// Unavailable (Envoy reconnects), so that a graceful stop of the gRPC
// server does not wait for sidecars. It returns nil.
func (s *Server) Start(ctx context.Context) error {
	<-ctx.Done()
	s.stopOnce.Do(func() { close(s.stopping) })
	return nil
}

// StreamAccessLogs receives one sidecar's access logs until it hangs up.
func (s *Server) StreamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	peer := ""
	if s.opts.Authorizer != nil {
		var err error
		if peer, err = s.opts.Authorizer.NodeOf(stream.Context()); err != nil {
			if _, ok := status.FromError(err); !ok {
				err = status.Error(codes.Unauthenticated, err.Error())
			}
			return err
		}
	}
	rx := streams.NewReceiver(stream.Recv, s.stopping)
	defer rx.Close()
	node := ""
	warned := false
	for {
		m, err := rx.Next()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		if id := m.GetIdentifier().GetNode().GetId(); id != "" {
			if len(id) > maxNode {
				return status.Errorf(codes.InvalidArgument, "node id is %d bytes, at most %d", len(id), maxNode)
			}
			if node != "" && id != node {
				return status.Errorf(codes.InvalidArgument, "node id changed on the stream from %q to %q", node, id)
			}
			if s.opts.Authorizer != nil && id != peer {
				s.log.Warn("access log stream refused: node id differs from the certificate's", "certificate", peer, "node", id)
				return status.Errorf(codes.PermissionDenied, "node id %q is not the certificate's %q", id, peer)
			}
			node = id
		}
		if node == "" {
			return status.Error(codes.InvalidArgument, "the first message must identify the node")
		}
		if tcp := m.GetTcpLogs().GetLogEntry(); len(tcp) > 0 {
			s.metrics.entries.WithLabelValues("skipped").Add(float64(len(tcp)))
		}
		entries := m.GetHttpLogs().GetLogEntry()
		if len(entries) == 0 {
			continue
		}
		if len(entries) > s.opts.MaxEntries {
			s.metrics.entries.WithLabelValues("rejected").Add(float64(len(entries)))
			return status.Errorf(codes.InvalidArgument, "%d entries in one message, at most %d", len(entries), s.opts.MaxEntries)
		}
		var v *View
		if s.view != nil {
			v = s.view()
		}
		flows, skipped := Convert(node, v, entries, s.opts.Now())
		if skipped > 0 {
			s.metrics.entries.WithLabelValues("skipped").Add(float64(skipped))
			if !warned {
				warned = true
				s.log.Warn("access log entries skipped: unknown node or no addresses", "node", node, "skipped", skipped)
			}
		}
		if len(flows) == 0 {
			continue
		}
		n := len(entries) - skipped
		accepted, rejected, err := s.sink.Ingest(node, flows)
		if err != nil {
			s.metrics.entries.WithLabelValues("rejected").Add(float64(n))
			return err
		}
		if rejected > 0 {
			s.log.Warn("access log flows rejected", "node", node, "accepted", accepted, "rejected", rejected)
			s.metrics.entries.WithLabelValues("rejected").Add(float64(rejected))
		}
		s.metrics.entries.WithLabelValues("accepted").Add(float64(n))
		s.metrics.flows.Add(float64(accepted))
	}
}
