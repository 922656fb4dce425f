package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Defaults of Options; a zero field takes its default.
const (
	DefaultInterval     = time.Second
	DefaultMaxBatch     = 1000
	DefaultMaxPending   = 10000
	DefaultTimeout      = 10 * time.Second
	DefaultFinalTimeout = 2 * time.Second
	DefaultMaxBackoff   = 30 * time.Second
)

// Options tune a Reporter. The zero value means every default.
type Options struct {
	// Interval between drains of the Aggregator. Default 1s.
	Interval time.Duration
	// MaxBatch is the most flows in one FlowBatch message. Default 1000.
	MaxBatch int
	// MaxPending is the most flows kept while the control plane cannot
	// be reached; beyond it the oldest are dropped and counted. Default
	// 10000.
	MaxPending int
	// Timeout bounds one report (open the stream, send, CloseAndRecv).
	// Default 10s.
	Timeout time.Duration
	// FinalTimeout bounds the last report, after Start's context ends.
	// Default 2s.
	FinalTimeout time.Duration
	// MaxBackoff caps the wait between failed reports. The first wait is
	// Interval; each failure doubles it; each wait is jittered down by up
	// to half. Default 30s.
	MaxBackoff time.Duration
	// Revision returns the revision of the policy in force, sent with each
	// window's flows (FlowBatch.revision). Nil: "".
	Revision func() string
	// Resolve returns the segment key ("ns/segment") of an address, or ""
	// when it is not a known workload; it fills Flow.src_segment and
	// dst_segment when a window is drained. Nil: segments stay empty.
	Resolve func(ip netip.Addr) string
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FinalTimeout <= 0 {
		o.FinalTimeout = DefaultFinalTimeout
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.Interval {
		o.MaxBackoff = o.Interval
	}
	return o
}

// Reporter drains an Aggregator periodically and streams the flows to the
// control plane; see the package documentation. Build it with NewReporter
// and run it with Start.
type Reporter struct {
	agg    *Aggregator
	client bulkheadv1.FlowServiceClient
	node   string
	opts   Options
	log    *slog.Logger

	started atomic.Bool

	// mu guards the state below and is held for the whole of a report, so
	// that Flush and Start's ticks do not interleave.
	mu       sync.Mutex
	pending  []window // oldest first
	npending int      // flows in pending
	lost     uint64   // records dropped and not yet reported
	backoff  time.Duration
	retryAt  time.Time
	failing  bool
}

// window is the flows of one drain, with the revision they were judged
// under.
type window struct {
	revision string
	flows    []*bulkheadv1.Flow
}

// NewReporter returns a Reporter that reports agg's flows as node through
// client. A nil log means slog.Default(). It starts nothing.
func NewReporter(agg *Aggregator, client bulkheadv1.FlowServiceClient, node string, opts Options, log *slog.Logger) *Reporter {
	if log == nil {
		log = slog.Default()
	}
	return &Reporter{agg: agg, client: client, node: node, opts: opts.withDefaults(), log: log}
}

// Start drains and reports every Interval until ctx is done, then makes a
// last drain and report within FinalTimeout and returns nil. A failed report
// keeps its flows for the next one, which waits for the backoff. Start may
// be called once.
func (r *Reporter) Start(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("report: reporter already started")
	}
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.FinalTimeout)
			err := r.Flush(fctx)
			cancel()
			if err != nil {
				r.mu.Lock()
				n := r.npending
				r.mu.Unlock()
				r.log.Warn("final flow report failed; flows lost", "err", err, "flows", n)
			}
			return nil
		case now := <-t.C:
			r.tick(ctx, now)
		}
	}
}

// tick drains the window and reports unless a backoff is running.
func (r *Reporter) tick(ctx context.Context, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked(now)
	if now.Before(r.retryAt) {
		return
	}
	r.doneLocked(r.sendLocked(ctx))
}

// Flush drains the window and reports everything pending now, ignoring any
// backoff. It returns the report's error; the flows are then kept for the
// next report.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked(time.Now())
	err := r.sendLocked(ctx)
	r.doneLocked(err)
	return err
}

// drainLocked moves the Aggregator's window into the pending buffer.
func (r *Reporter) drainLocked(now time.Time) {
	flows, dropped := r.agg.Drain(now)
	r.lost += dropped
	if len(flows) == 0 {
		return
	}
	if res := r.opts.Resolve; res != nil {
		segs := make(map[string]string)
		seg := func(ip string) string {
			s, ok := segs[ip]
			if !ok {
				if a, err := netip.ParseAddr(ip); err == nil {
					s = res(a)
				}
				segs[ip] = s
			}
			return s
		}
		for _, f := range flows {
			f.SrcSegment = seg(f.SrcIp)
			f.DstSegment = seg(f.DstIp)
		}
	}
	w := window{flows: flows}
	if r.opts.Revision != nil {
		w.revision = r.opts.Revision()
	}
	r.pending = append(r.pending, w)
	r.npending += len(flows)
	for r.npending > r.opts.MaxPending {
		oldest := &r.pending[0]
		n := min(r.npending-r.opts.MaxPending, len(oldest.flows))
		clear(oldest.flows[:n])
		oldest.flows = oldest.flows[n:]
		r.npending -= n
		r.lost += uint64(n)
		if len(oldest.flows) == 0 {
			r.pending[0] = window{}
			r.pending = r.pending[1:]
		}
	}
}

// sendLocked reports everything pending on one stream and releases it once
// the server's summary acknowledges it.
func (r *Reporter) sendLocked(ctx context.Context) error {
	if len(r.pending) == 0 && r.lost == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	stream, err := r.client.Report(ctx)
	if err != nil {
		return fmt.Errorf("report: open stream: %w", err)
	}
	lost := r.lost
	send := func(b *bulkheadv1.FlowBatch) error {
		b.Dropped, lost = lost, 0
		if err := stream.Send(b); err != nil {
			if errors.Is(err, io.EOF) {
				// The stream ended; its status says why.
				if _, err = stream.CloseAndRecv(); err == nil {
					err = io.ErrUnexpectedEOF
				}
			}
			return fmt.Errorf("report: send: %w", err)
		}
		return nil
	}
	if len(r.pending) == 0 {
		if err := send(&bulkheadv1.FlowBatch{Node: r.node}); err != nil {
			return err
		}
	}
	for _, w := range r.pending {
		for i := 0; i < len(w.flows); i += r.opts.MaxBatch {
			b := &bulkheadv1.FlowBatch{Node: r.node, Revision: w.revision, Flows: w.flows[i:min(i+r.opts.MaxBatch, len(w.flows))]}
			if err := send(b); err != nil {
				return err
			}
		}
	}
	sum, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("report: close stream: %w", err)
	}
	if sum.GetRejected() > 0 {
		r.log.Warn("control plane rejected flows", "accepted", sum.GetAccepted(), "rejected", sum.GetRejected())
	}
	r.log.Debug("flows reported", "flows", r.npending, "dropped", r.lost, "accepted", sum.GetAccepted())
	clear(r.pending)
	r.pending = r.pending[:0]
	r.npending = 0
	r.lost = 0
	return nil
}

// doneLocked updates the backoff after a report.
func (r *Reporter) doneLocked(err error) {
	if err == nil {
		if r.failing {
			r.log.Info("flow reports resumed")
		}
		r.failing, r.backoff, r.retryAt = false, 0, time.Time{}
		return
	}
	r.backoff = min(max(2*r.backoff, r.opts.Interval), r.opts.MaxBackoff)
	wait := r.backoff/2 + rand.N(r.backoff/2+1)
	r.retryAt = time.Now().Add(wait)
	if !r.failing {
		r.log.Warn("flow report failed; keeping flows and retrying", "err", err, "retry_in", wait, "pending", r.npending)
	} else {
		r.log.Debug("flow report failed", "err", err, "retry_in", wait, "pending", r.npending)
	}
	r.failing = true
}
