package xdsclient

import (
	"math/rand/v2"
	"time"
)

// backoff yields exponentially growing, jittered waits: the n-th wait is
// drawn from [d/2, d] with d = min·2ⁿ bounded by max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff {
	return &backoff{min: lo, max: hi, cur: lo}
}

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *backoff) reset() { b.cur = b.min }
