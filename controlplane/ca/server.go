package ca

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// ServerOptions tunes a Server. The zero value uses the defaults.
type ServerOptions struct {
	// Registerer receives the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// MaxNodes bounds how many nodes Issued remembers (the oldest issue is
	// forgotten first). Zero: 4096.
	MaxNodes int
	// Rate and Burst bound Issue requests (all callers together, before the
	// credential is checked: a TokenReview costs the API server a call);
	// the excess is answered ResourceExhausted and the proxy retries with
	// backoff. Zero: DefaultIssueRate, DefaultIssueBurst; a negative Rate:
	// unlimited.
	Rate  float64
	Burst int
}

// Defaults of ServerOptions: renewals of a few thousand proxies are spread
// over their lifetimes; a burst covers a node's pods restarting at once.
const (
	DefaultIssueRate  = 100
	DefaultIssueBurst = 1000
)

// Server serves CertificateService.Issue.
type Server struct {
	bulkheadv1.UnimplementedCertificateServiceServer

	ca       *CA
	auth     Authenticator
	log      *slog.Logger
	metrics  *metrics
	maxNodes int
	refusals logLimiter
	limit    rateBucket

	mu     sync.Mutex
	issued map[string]Issued
}

var _ bulkheadv1.CertificateServiceServer = (*Server)(nil)

// Issued describes the last certificate issued to a node.
type Issued struct {
	Node string `json:"node"`
	// Serial is the certificate's serial number, hexadecimal.
	Serial   string    `json:"serial"`
	Time     time.Time `json:"time"`
	NotAfter time.Time `json:"notAfter"`
	// Count is how many certificates the node obtained since the start.
	Count uint64 `json:"count"`
}

// NewServer builds the Issue server; auth checks each request's credential.
func NewServer(c *CA, auth Authenticator, log *slog.Logger, opts ServerOptions) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = 4096
	}
	if opts.Rate == 0 {
		opts.Rate = DefaultIssueRate
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultIssueBurst
	}
	return &Server{
		limit: rateBucket{rate: opts.Rate, burst: float64(opts.Burst), tokens: float64(opts.Burst)},
		ca:    c, auth: auth, log: log.With("component", "ca"),
		metrics: newMetrics(opts.Registerer), maxNodes: opts.MaxNodes,
		issued: map[string]Issued{},
	}
}

// Register serves the CertificateService on gs.
func (s *Server) Register(gs *grpc.Server) { bulkheadv1.RegisterCertificateServiceServer(gs, s) }

// Issue checks the credential for the node and signs the CSR.
func (s *Server) Issue(ctx context.Context, req *bulkheadv1.IssueRequest) (*bulkheadv1.IssueResponse, error) {
	if !s.limit.take(time.Now()) {
		s.metrics.issued.WithLabelValues("limited").Inc()
		return nil, status.Error(codes.ResourceExhausted, "too many certificate requests; retry later")
	}
	node := req.GetNode()
	if _, _, err := SplitNode(node); err != nil {
		s.metrics.issued.WithLabelValues("invalid").Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if n := len(req.GetCsr()); n == 0 || n > MaxCSR {
		s.metrics.issued.WithLabelValues("invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "csr of %d bytes: want 1 to %d", n, MaxCSR)
	}
	if len(req.GetToken()) > MaxToken {
		s.metrics.issued.WithLabelValues("invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "token longer than %d bytes", MaxToken)
	}
	if err := s.auth.Authenticate(ctx, node, req.GetToken()); err != nil {
		s.metrics.issued.WithLabelValues("denied").Inc()
		if s.refusals.allow(time.Now()) {
			s.log.Warn("certificate refused", "node", node, "error", err, "suppressed", s.refusals.suppressed())
		}
		if errors.Is(err, ErrDenied) {
			return nil, status.Errorf(codes.PermissionDenied, "certificate for %s: %v", node, err)
		}
		return nil, status.Errorf(codes.Unavailable, "certificate for %s: checking the credential: %v", node, err)
	}
	cert, chain, err := s.ca.Sign(node, req.GetCsr())
	if err != nil {
		s.metrics.issued.WithLabelValues("invalid").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "certificate for %s: %v", node, err)
	}
	s.metrics.issued.WithLabelValues("ok").Inc()
	serial := strings.ToLower(cert.SerialNumber.Text(16))
	s.remember(node, serial, cert.NotAfter)
	s.log.Info("certificate issued", "node", node, "serial", serial, "notAfter", cert.NotAfter)
	return &bulkheadv1.IssueResponse{
		CertificateChain: chain,
		CaBundle:         s.ca.Bundle(),
		NotAfter:         timestamppb.New(cert.NotAfter),
	}, nil
}

func (s *Server) remember(node, serial string, notAfter time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.issued[node]
	if !ok && len(s.issued) >= s.maxNodes {
		var oldest string
		var when time.Time
		for n, is := range s.issued {
			if oldest == "" || is.Time.Before(when) {
				oldest, when = n, is.Time
			}
		}
		delete(s.issued, oldest)
	}
	s.issued[node] = Issued{Node: node, Serial: serial, Time: time.Now(), NotAfter: notAfter, Count: prev.Count + 1}
}

// Issued reports the last certificate issued to each node, sorted by node.
func (s *Server) Issued() []Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Issued, 0, len(s.issued))
	for _, is := range s.issued {
		out = append(out, is)
	}
	slices.SortFunc(out, func(a, b Issued) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// logLimiter lets one log line through per second and counts the rest.
type logLimiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped uint64
	report  uint64
}

func (l *logLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < time.Second {
		l.dropped++
		return false
	}
	l.last, l.report, l.dropped = now, l.dropped, 0
	return true
}

// suppressed is how many lines were held back before the last allowed one.
func (l *logLimiter) suppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.report
}

// rateBucket is one token bucket.
type rateBucket struct {
	rate, burst float64 // rate <= 0: unlimited

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *rateBucket) take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		if dt := now.Sub(b.last).Seconds(); dt > 0 {
			b.tokens = min(b.burst, b.tokens+dt*b.rate)
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
