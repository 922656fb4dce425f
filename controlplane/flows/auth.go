package flows

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Authorizer names the node a stream's peer proved to be (ca.Authorizer on
// a TLS server: its client certificate's node id); an error (a gRPC status,
// Unauthenticated) refuses the stream.
type Authorizer interface {
	NodeOf(ctx context.Context) (string, error)
}

// Endpoints tells which workload a reporter is and who owns an address, so
// that a node may only report flows it is an endpoint of. The control
// plane's latest compilation is one (controlplane/run).
type Endpoints interface {
	// Node is the segment key ("ns/segment") and the addresses of node's
	// workload; ok false for a node the control plane does not know.
	Node(node string) (segment string, ips []netip.Addr, ok bool)
	// Segment is the segment key of the workload that owns ip, "" when
	// none does.
	Segment(ip netip.Addr) string
}

// Reasons a flow is refused (bulkhead_flows_refused_total{reason}).
const (
	RefusedNode        = "node_mismatch" // the batch names another node than the certificate
	RefusedUnknownNode = "unknown_node"  // the reporter is no known workload
	RefusedNotEndpoint = "not_endpoint"  // the reporter is not the flow's endpoint on its side
	RefusedSegment     = "segment"       // a segment the flow names is not the one of its address
	RefusedRate        = "rate_limited"  // over the node's flow rate
)

// Default per-node flow rate (ServerOptions.FlowRate, FlowBurst): a proxy
// reports at most its aggregator's bound (10000 flows) per report interval
// (1s); the burst lets a proxy that was cut off send its held-back window.
const (
	DefaultFlowRate  = 10000
	DefaultFlowBurst = 20000
	// maxBuckets bounds the per-node rate state; idle full buckets are
	// forgotten first.
	maxBuckets = 8192
)

// endpointOf checks that node is the endpoint of f on the judging side
// (ingress: the destination, egress: the source), that the judging segment
// is the node's and that the peer's segment is the one owning its address.
// It returns the refusal reason, "" when the flow is the node's to report.
func endpointOf(ep Endpoints, node string, f *bulkheadv1.Flow) string {
	seg, ips, ok := ep.Node(node)
	if !ok {
		return RefusedUnknownNode
	}
	own, peer := f.GetDstIp(), f.GetSrcIp()
	ownSeg, peerSeg := f.GetDstSegment(), f.GetSrcSegment()
	if f.GetDirection() == bulkheadv1.Direction_DIRECTION_EGRESS {
		own, peer = peer, own
		ownSeg, peerSeg = peerSeg, ownSeg
	}
	ip, err := netip.ParseAddr(own)
	if err != nil {
		return RefusedNotEndpoint
	}
	ip = ip.Unmap()
	mine := ip.IsLoopback() // the reporter's own host (e.g. its DNS proxy's clients)
	for _, a := range ips {
		if a == ip {
			mine = true
			break
		}
	}
	if !mine {
		return RefusedNotEndpoint
	}
	if ownSeg != seg {
		return RefusedSegment
	}
	if pip, err := netip.ParseAddr(peer); err == nil && ep.Segment(pip.Unmap()) != peerSeg {
		return RefusedSegment
	}
	return ""
}

// limiter is a token bucket per node.
type limiter struct {
	rate  float64 // tokens per second; <= 0: unlimited
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// take takes up to n tokens of node's bucket and returns how many it got.
func (l *limiter) take(node string, n int) int {
	if l.rate <= 0 || n == 0 {
		return n
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[node]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.evictLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[node] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
	}
	b.last = now
	got := min(n, int(b.tokens))
	b.tokens -= float64(got)
	return got
}

// evictLocked forgets buckets that have refilled (they would start full
// again anyway), else the least recently used one.
func (l *limiter) evictLocked(now time.Time) {
	var oldest string
	var when time.Time
	for node, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, node)
			continue
		}
		if oldest == "" || b.last.Before(when) {
			oldest, when = node, b.last
		}
	}
	if len(l.buckets) >= maxBuckets && oldest != "" {
		delete(l.buckets, oldest)
	}
}

// logLimiter lets one log line through per interval and counts the rest.
type logLimiter struct {
	mu       sync.Mutex
	last     time.Time
	held     uint64
	interval time.Duration
}

// allow reports whether to log now, and how many lines were held back
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.held++
		return false, 0
	}
	held := l.held
	l.last, l.held = now, 0
	return true, held
}

// refuse counts n refused flows and logs (rate-limited) the refusal; f, when
// set, is an example.
func (s *Server) refuse(node, reason string, n int, f *bulkheadv1.Flow) {
	s.metrics.refused.WithLabelValues(reason).Add(float64(n))
	ok, held := s.refusals.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"node", truncate(node, maxNode), "reason", reason, "flows", n, "suppressed", held}
	if f != nil {
		args = append(args, "direction", directionName(f.GetDirection()), "src", f.GetSrcIp(), "srcSegment", f.GetSrcSegment(),
			"dst", f.GetDstIp(), "dstSegment", f.GetDstSegment(), "port", f.GetDstPort())
	}
	s.log.Warn("flows refused", args...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
