package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a lock-free latency histogram in microseconds with log-linear
// buckets (64 sub-buckets per power of two: under 1.6 % error), written
// concurrently by every reader goroutine with one atomic add per value
// (no shared total: counts are summed when read).
type hist struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64 // ns
}

const (
	histSub     = 64
	histBuckets = 2*histSub + 40*histSub
)

func histIndex(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us>>e is in [64, 128)
	i := 2*histSub + (e-1)*histSub + int(us>>e) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histValue is the middle of bucket i, in µs.
func histValue(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	e := (i-2*histSub)/histSub + 1
	m := (i-2*histSub)%histSub + histSub
	lo := uint64(m) << e
	return float64(lo) + float64(uint64(1)<<e)/2
}

func newHist() *hist { return &hist{} }

// record adds one latency.
func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	h.counts[histIndex(us)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// latencies are percentiles in milliseconds.
type latencies struct {
	N    uint64  `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// count is how many values were recorded.
func (h *hist) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// quantile returns the q-quantile in µs (0 when empty).
func (h *hist) quantile(q float64) float64 {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return histValue(i)
		}
	}
	return float64(h.max.Load()) / 1e3
}

func (h *hist) summary() latencies {
	n := h.count()
	if n == 0 {
		return latencies{}
	}
	var sum float64
	for i := range h.counts {
		sum += float64(h.counts[i].Load()) * histValue(i)
	}
	maxMS := float64(h.max.Load()) / 1e6
	clip := func(us float64) float64 { // a bucket's middle may pass the max
		ms := us / 1e3
		if ms > maxMS {
			return maxMS
		}
		return ms
	}
	return latencies{
		N:    n,
		Mean: sum / float64(n) / 1e3,
		P50:  clip(h.quantile(0.50)),
		P95:  clip(h.quantile(0.95)),
		P99:  clip(h.quantile(0.99)),
		P999: clip(h.quantile(0.999)),
		Max:  maxMS,
	}
}
