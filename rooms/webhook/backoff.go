package webhook

import (
	"math/rand/v2"
	"time"
)

// Backoff is the schedule of retries after failed attempts: the wait
// after attempt n (1 for the first) is Base×2^(n-1), at most Max, with
// full jitter over its upper half, so instances that failed together do
// not come back together.
type Backoff struct {
	Base time.Duration // zero value means 1 s
	Max  time.Duration // zero value means 10 min
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Minute
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	return b
}

// ceiling is the wait after attempt n before jitter.
func (b Backoff) ceiling(n int) time.Duration {
	b = b.withDefaults()
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Wait returns the wait after failed attempt n (n ≥ 1): within
// [ceiling/2, ceiling], where ceiling doubles from Base up to Max.
func (b Backoff) Wait(n int) time.Duration {
	c := b.ceiling(max(n, 1))
	half := c / 2
	return half + rand.N(c-half+1)
}
