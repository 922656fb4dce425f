package flows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/controlplane/streams"
)

// Observer learns from flows; *learn.Learner is one.
type Observer interface {
	Observe(node string, flows []*bulkheadv1.Flow)
}

// HitRecorder keeps rule hits and violation counts; *store.Store is one.
type HitRecorder interface {
	RecordHits(hits []store.Hit)
	RecordViolations(segmentKey string, n int64)
}

// Limits on one batch and its flows. Longer fields make a flow invalid.
const (
	DefaultMaxBatch = 4096
	maxNode         = 253
	maxIP           = 64
	maxSegment      = 253
	maxProtocol     = 32
	maxVerb         = 64 // l7.MaxVerb
	maxRule         = 512
	maxReason       = 256
	maxResource     = 256 // Flow.resource, each of Flow.more_resources
	maxAux          = 128
	maxMore         = 15 // l7.MaxResources - 1
)

// ServerOptions tunes a Server. The zero value uses the defaults.
type ServerOptions struct {
	// MaxBatch bounds the flows of one batch; a longer batch ends the
	// stream with InvalidArgument. Zero: DefaultMaxBatch.
	MaxBatch int
	// Registerer receives the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Authorizer, when set, binds each Report stream to the node its peer
	// proves (auth.go): a stream without one is refused (Unauthenticated),
	// a batch naming another node ends it with PermissionDenied. Nil: node
	// ids are self-declared (plaintext mode).
	Authorizer Authorizer
	// Endpoints, when set, refuses flows the reporting node is not an
	// endpoint of (see Endpoints); refused flows are neither recorded nor
	// learned, and are counted (bulkhead_flows_refused_total{reason}) and
	// logged (at most once a second).
	Endpoints Endpoints
	// FlowRate and FlowBurst are the token bucket of flows each node may
	// report; the excess is refused (reason rate_limited). Zero:
	// DefaultFlowRate, DefaultFlowBurst; a negative FlowRate: unlimited.
	FlowRate  float64
	FlowBurst int
	// Now is the rate limiter's clock; nil: time.Now.
	Now func() time.Time
}

// Server receives flow reports (bulkheadv1.FlowService). For each batch it
// records the valid flows in the Recorder, hands them to the Observer,
// counts rule hits and violations in the HitRecorder, and logs and counts
// violations. Invalid flows are dropped and counted as rejected.
type Server struct {
	bulkheadv1.UnimplementedFlowServiceServer

	rec      *Recorder
	learner  Observer
	hits     HitRecorder
	log      *slog.Logger
	maxBatch int
	metrics  *metrics
	sinks    []Sink // see sink.go
	auth     Authorizer
	ep       Endpoints
	limit    *limiter
	refusals logLimiter

	stopOnce sync.Once
	stopping chan struct{} // closed by Start when its context ends
}

var _ bulkheadv1.FlowServiceServer = (*Server)(nil)

// NewServer builds a Server. learner and hits may be nil (not used).
func NewServer(rec *Recorder, learner Observer, hits HitRecorder, log *slog.Logger, opts ServerOptions) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.FlowRate == 0 {
		opts.FlowRate = DefaultFlowRate
	}
	if opts.FlowBurst <= 0 {
		opts.FlowBurst = DefaultFlowBurst
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		auth: opts.Authorizer, ep: opts.Endpoints,
		limit:    newLimiter(opts.FlowRate, opts.FlowBurst, opts.Now),
		refusals: logLimiter{interval: time.Second},
		rec:      rec, learner: learner, hits: hits,
		log:      log.With("component", "flows"),
		maxBatch: opts.MaxBatch,
		metrics:  newMetrics(opts.Registerer, rec),
		stopping: make(chan struct{}),
	}
}

// Register serves the FlowService on gs.
func (s *Server) Register(gs *grpc.Server) { bulkheadv1.RegisterFlowServiceServer(gs, s) }

// Report receives batches until the client closes its side, then answers
// with how many flows it accepted and rejected. A batch without a node id or
// with more than MaxBatch flows ends the stream with InvalidArgument.
func (s *Server) Report(stream grpc.ClientStreamingServer[bulkheadv1.FlowBatch, bulkheadv1.ReportSummary]) error {
	var sum bulkheadv1.ReportSummary
	peer := ""
	if s.auth != nil {
		var err error
		if peer, err = s.auth.NodeOf(stream.Context()); err != nil {
			if _, ok := status.FromError(err); !ok {
				err = status.Error(codes.Unauthenticated, err.Error())
			}
			return err
		}
	}
	rx := streams.NewReceiver(stream.Recv, s.stopping)
	defer rx.Close()
	for {
		b, err := rx.Next()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&sum)
		}
		if err != nil {
			return err
		}
		if s.auth != nil && b.GetNode() != peer {
			s.refuse(peer, RefusedNode, len(b.GetFlows()), nil)
			return status.Errorf(codes.PermissionDenied, "batch names node %q, the certificate %q", truncate(b.GetNode(), maxNode), peer)
		}
		if err := s.batch(b, &sum); err != nil {
			return err
		}
	}
}

// Start blocks until ctx is done, then ends every open Report stream with
// Unavailable so that a graceful stop of the gRPC server does not wait for
// proxies to hang up; they reconnect to another replica or when this one
// returns.
func (s *Server) Start(ctx context.Context) error {
	<-ctx.Done()
	s.stopOnce.Do(func() { close(s.stopping) })
	return nil
}

func (s *Server) batch(b *bulkheadv1.FlowBatch, sum *bulkheadv1.ReportSummary) error {
	node := b.GetNode()
	if node == "" || len(node) > maxNode {
		s.metrics.rejected.Add(float64(len(b.GetFlows())))
		return status.Errorf(codes.InvalidArgument, "batch: node id must be 1 to %d bytes, got %d", maxNode, len(node))
	}
	if n := len(b.GetFlows()); n > s.maxBatch {
		s.metrics.rejected.Add(float64(n))
		return status.Errorf(codes.InvalidArgument, "batch from %s: %d flows, at most %d", node, n, s.maxBatch)
	}
	if d := b.GetDropped(); d > 0 {
		s.metrics.dropped.Add(float64(d))
		s.log.Warn("proxy dropped flows: its table was full", "node", node, "dropped", d)
	}
	flows := make([]*bulkheadv1.Flow, 0, len(b.GetFlows()))
	var firstErr error
	rejected, refused := 0, 0 // invalid; refused by the endpoint check or the rate (counted by refuse)
	for i, f := range b.GetFlows() {
		if err := validFlow(f); err != nil {
			rejected++
			if firstErr == nil {
				firstErr = fmt.Errorf("flow %d: %w", i, err)
			}
			continue
		}
		if s.ep != nil {
			if reason := endpointOf(s.ep, node, f); reason != "" {
				refused++
				s.refuse(node, reason, 1, f)
				continue
			}
		}
		flows = append(flows, f)
	}
	if got := s.limit.take(node, len(flows)); got < len(flows) {
		refused += len(flows) - got
		s.refuse(node, RefusedRate, len(flows)-got, nil)
		flows = flows[:got]
	}
	if rejected > 0 {
		s.log.Warn("rejected invalid flows", "node", node, "rejected", rejected, "first", firstErr)
	}
	sum.Accepted += uint64(len(flows))
	sum.Rejected += uint64(rejected + refused)
	s.metrics.received.Add(float64(len(flows)))
	s.metrics.rejected.Add(float64(rejected))
	if len(flows) == 0 {
		return nil
	}

	s.rec.Record(node, flows)
	for _, k := range s.sinks {
		k.Add(node, flows)
	}
	if s.learner != nil {
		s.learner.Observe(node, flows)
	}
	var hits []store.Hit
	hitIndex := map[[2]string]int{}
	violations := map[string]int64{}
	for _, f := range flows {
		if IsViolation(f) {
			s.violation(node, f)
			violations[judgingSegment(f)] += int64(max(f.GetCount(), 1))
			continue
		}
		if f.GetRule() == "" {
			continue
		}
		key := [2]string{ruleSegment(f), f.GetRule()}
		last := time.Time{}
		if ts := f.GetLastSeen(); ts != nil && ts.IsValid() {
			last = ts.AsTime()
		}
		if i, ok := hitIndex[key]; ok {
			hits[i].Count += int64(f.GetCount())
			if last.After(hits[i].Last) {
				hits[i].Last = last
			}
			continue
		}
		hitIndex[key] = len(hits)
		hits = append(hits, store.Hit{SegmentKey: key[0], Rule: key[1], Count: int64(f.GetCount()), Last: last})
	}
	if s.hits != nil {
		if len(hits) > 0 {
			s.hits.RecordHits(hits)
		}
		for seg, n := range violations {
			if seg != "" {
				s.hits.RecordViolations(seg, n)
			}
		}
	}
	return nil
}

// violation logs and counts one violation flow.
func (s *Server) violation(node string, f *bulkheadv1.Flow) {
	verdict, mode := verdictName(f.GetVerdict()), ModeName(f.GetMode())
	s.metrics.violations.WithLabelValues(verdict, mode).Add(float64(max(f.GetCount(), 1)))
	// Discover mode reports every flow no rule allows yet while it learns:
	// those are expected, so they log at debug.
	level := slog.LevelInfo
	switch {
	case f.GetVerdict() == bulkheadv1.Verdict_VERDICT_DENY:
		level = slog.LevelWarn
	case f.GetMode() == bulkheadv1.Mode_MODE_DISCOVER:
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return
	}
	s.log.Log(ctx, level, "violation",
		"segment", judgingSegment(f), "mode", mode, "verdict", verdict,
		"direction", directionName(f.GetDirection()),
		"src", f.GetSrcIp(), "srcSegment", f.GetSrcSegment(),
		"dst", f.GetDstIp(), "dstSegment", f.GetDstSegment(), "port", f.GetDstPort(),
		"protocol", f.GetProtocol(), "verb", f.GetVerb(), "sub", f.GetSub(),
		"rule", f.GetRule(), "reason", f.GetReason(), "count", f.GetCount(), "node", node)
}

// judgingSegment is the segment whose mode judged the flow: the destination
// for ingress (judged at its sidecar), the source for egress.
func judgingSegment(f *bulkheadv1.Flow) string {
	if f.GetDirection() == bulkheadv1.Direction_DIRECTION_EGRESS {
		return f.GetSrcSegment()
	}
	return f.GetDstSegment()
}

// ruleSegment is the policy a compiled rule ("namespace/policy/rule")
// belongs to, else the judging segment.
func ruleSegment(f *bulkheadv1.Flow) string {
	if ns, rest, ok := strings.Cut(f.GetRule(), "/"); ok {
		if name, _, ok := strings.Cut(rest, "/"); ok {
			return ns + "/" + name
		}
	}
	return judgingSegment(f)
}

// validFlow checks a flow's enums and bounds every string.
func validFlow(f *bulkheadv1.Flow) error {
	if f == nil {
		return errors.New("nil flow")
	}
	switch f.GetDirection() {
	case bulkheadv1.Direction_DIRECTION_INGRESS, bulkheadv1.Direction_DIRECTION_EGRESS:
	default:
		return fmt.Errorf("direction %v", f.GetDirection())
	}
	switch f.GetVerdict() {
	case bulkheadv1.Verdict_VERDICT_ALLOW, bulkheadv1.Verdict_VERDICT_VIOLATION, bulkheadv1.Verdict_VERDICT_DENY:
	default:
		return fmt.Errorf("verdict %v", f.GetVerdict())
	}
	if m := f.GetMode(); m < bulkheadv1.Mode_MODE_UNSPECIFIED || m > bulkheadv1.Mode_MODE_PROTECT {
		return fmt.Errorf("mode %v", m)
	}
	if f.GetDstPort() > 65535 {
		return fmt.Errorf("dst_port %d", f.GetDstPort())
	}
	for _, ip := range [...]string{f.GetSrcIp(), f.GetDstIp()} {
		if len(ip) > maxIP {
			return fmt.Errorf("ip of %d bytes", len(ip))
		}
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("ip: %w", err)
		}
	}
	for _, c := range [...]struct {
		name string
		v    string
		max  int
	}{
		{"src_segment", f.GetSrcSegment(), maxSegment},
		{"dst_segment", f.GetDstSegment(), maxSegment},
		{"protocol", f.GetProtocol(), maxProtocol},
		{"verb", f.GetVerb(), maxVerb},
		{"sub", f.GetSub(), maxVerb},
		{"rule", f.GetRule(), maxRule},
		{"reason", f.GetReason(), maxReason},
		{"resource", f.GetResource(), maxResource},
		{"aux", f.GetAux(), maxAux},
	} {
		if len(c.v) > c.max {
			return fmt.Errorf("%s of %d bytes, at most %d", c.name, len(c.v), c.max)
		}
	}
	more := f.GetMoreResources()
	if len(more) > maxMore {
		return fmt.Errorf("%d more_resources, at most %d", len(more), maxMore)
	}
	for _, r := range more {
		if len(r) > maxResource {
			return fmt.Errorf("more_resources entry of %d bytes, at most %d", len(r), maxResource)
		}
	}
	return validDstName(f)
}
