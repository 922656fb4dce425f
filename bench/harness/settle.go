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
//
// Only RSS is polled (from /proc): scraping the proxy's /metrics every
// 250 ms would itself leave garbage on its heap, memory a proxy scraped
// every 15–30 s in production does not hold. Instead every reading waits
// at least settleMin, well past Bulkhead's parkAfter (1 s), so that the
// connections have parked; the goroutine count read afterwards (one scrape)
// shows that they did.
const (
	settlePoll   = 250 * time.Millisecond  // between two readings
	settleStable = time.Second             // how long the readings must not move
	settleMin    = 2500 * time.Millisecond // the least the harness waits
	settleMax    = 10 * time.Second        // the most the harness waits
)

// settleTolerance is how far RSS may move between readings and still count
// as stable: 1% of it, at least 128 KiB (a few pages come and go).
func settleTolerance(rss int64) int64 { return max(rss/100, 128<<10) }

// settle polls the resident memory of pid every settlePoll until it has
// been stable for settleStable (within settleTolerance) and settleMin has
// passed, at most settleMax. It returns how long it waited and whether the
// proxy settled.
func (b *bench) settle(ctx context.Context, pid int) (waited time.Duration, ok bool, err error) {
	start := time.Now()
	var (
		refRSS int64
		since  time.Time
	)
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		rss, err := procRSS(pid)
		if err != nil {
			return time.Since(start), false, err
		}
		now := time.Now()
		d := rss - refRSS
		switch {
		case since.IsZero() || d > settleTolerance(refRSS) || -d > settleTolerance(refRSS):
			refRSS, since = rss, now
		case now.Sub(since) >= settleStable && now.Sub(start) >= settleMin:
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
	s := fmt.Sprintf("RSS read once the proxy had settled: polled (from /proc, not /metrics) every %s after the last connection opened, at least %s and until it had not moved (within 1%%) for %s, at most %s (waited %s–%s)",
		settlePoll, settleMin, settleStable, settleMax, lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond))
	if unsettled > 0 {
		s += fmt.Sprintf("; **%d readings did not settle** within %s and were taken then", unsettled, settleMax)
	}
	return s
}
