package harness

import (
	"context"
	"fmt"
	"time"
)

// How the idle scenario waits for a proxy to settle before it reads its
// memory: an operator's idle connection is idle for minutes, and a proxy
// may release what a connection holds only some time after it went quiet
// (Bulkhead parks a connection's goroutines after a second of silence).
const (
	settlePoll   = 250 * time.Millisecond // between two readings
	settleStable = time.Second            // how long the readings must not move
	settleMax    = 10 * time.Second       // the most the harness waits
)

// settleTolerance is how far RSS may move between readings and still count
// as stable: 1% of it, at least 128 KiB (a few pages come and go).
func settleTolerance(rss int64) int64 { return max(rss/100, 128<<10) }

// settle polls the resident memory of pid and, with goroutines (Bulkhead),
// the goroutine count of the proxy's /metrics every settlePoll, until both
// have been stable for settleStable (RSS within settleTolerance, the same
// goroutine count), at most settleMax. It returns how long it waited and
// whether the proxy settled.
func (b *bench) settle(ctx context.Context, pid int, goroutines bool) (waited time.Duration, ok bool, err error) {
	start := time.Now()
	var (
		refRSS int64
		refG   float64
		since  time.Time
	)
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		rss, err := procRSS(pid)
		if err != nil {
			return time.Since(start), false, err
		}
		var g float64
		if goroutines {
			if _, _, g, err = b.goRuntime(ctx); err != nil {
				return time.Since(start), false, err
			}
		}
		now := time.Now()
		d := rss - refRSS
		switch {
		case since.IsZero() || g != refG || d > settleTolerance(refRSS) || -d > settleTolerance(refRSS):
			refRSS, refG, since = rss, g, now
		case now.Sub(since) >= settleStable:
			return now.Sub(start), true, nil
		}
		if now.Sub(start) >= settleMax {
			return now.Sub(start), false, nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false, fmt.Errorf("settle: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// settleNote says, for the report, how the idle scenario's readings were
// taken and how long the proxies took to settle.
func settleNote(rows []IdleRow) string {
	var lo, hi time.Duration
	unsettled := 0
	first := true
	for _, row := range rows {
		for _, p := range row.Points {
			if first || p.Settle < lo {
				lo = p.Settle
			}
			if first || p.Settle > hi {
				hi = p.Settle
			}
			first = false
			if !p.Settled {
				unsettled++
			}
		}
	}
	s := fmt.Sprintf("RSS read once the proxy had settled: polled every %s after the last connection opened, until its RSS (within 1%%) and, for Bulkhead, its goroutine count had not moved for %s, at most %s (waited %s–%s)",
		settlePoll, settleStable, settleMax, lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond))
	if unsettled > 0 {
		s += fmt.Sprintf("; **%d readings did not settle** within %s and were taken then", unsettled, settleMax)
	}
	return s
}
