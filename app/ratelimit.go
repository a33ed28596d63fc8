package main

import "time"

// rateLimit is a connection's token bucket (rate/s, burst 2×rate) plus the
// record of recent drops that decides when a flooding client is cut off.
// It is used by the connection's reader only.
type rateLimit struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	drops  []time.Time // ring of the latest drop times, allocated on first drop
	next   int
}

// dropWindow is the window in which more than 2×rate drops close the socket.
const dropWindow = 10 * time.Second

func newRateLimit(rate int, now time.Time) *rateLimit {
	return &rateLimit{rate: float64(rate), burst: float64(2 * rate), tokens: float64(2 * rate), last: now}
}

// allow takes a token for a frame at now. When there is none it records a
// drop and reports whether the drops within dropWindow now exceed 2×rate.
func (l *rateLimit) allow(now time.Time) (ok, cutOff bool) {
	l.refill(now)
	if l.tokens >= 1 {
		l.tokens--
		return true, false
	}
	if l.drops == nil {
		l.drops = make([]time.Time, int(l.burst)+1)
	}
	// The ring holds the last 2×rate+1 drops; the oldest of them within the
	// window means more than 2×rate drops in it.
	l.drops[l.next] = now
	l.next = (l.next + 1) % len(l.drops)
	oldest := l.drops[l.next]
	return false, !oldest.IsZero() && now.Sub(oldest) <= dropWindow
}

// delay takes a token for a frame at now, or tells how long until one is
// due. A Yjs socket's reader waits that long instead of dropping the
// frame: an update is never discarded, the sender is slowed down.
func (l *rateLimit) delay(now time.Time) time.Duration {
	l.refill(now)
	if l.tokens >= 1 {
		l.tokens--
		return 0
	}
	return time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}

// refill adds the tokens earned since the last frame, up to the burst.
func (l *rateLimit) refill(now time.Time) {
	l.tokens += now.Sub(l.last).Seconds() * l.rate
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	l.last = now
}
