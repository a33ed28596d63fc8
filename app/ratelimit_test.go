package main

import (
	"testing"
	"time"
)

func TestRateLimitBurstThenRate(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimit(10, now)
	for i := 0; i < 20; i++ {
		if ok, _ := l.allow(now); !ok {
			t.Fatalf("frame %d of the burst refused", i)
		}
	}
	if ok, _ := l.allow(now); ok {
		t.Fatal("frame over the burst allowed")
	}
	now = now.Add(100 * time.Millisecond)
	if ok, _ := l.allow(now); !ok {
		t.Fatal("refill of one token after 1/rate refused")
	}
}

func TestRateLimitCutOffAfterTwiceRateDrops(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimit(5, now)
	for i := 0; i < 10; i++ {
		l.allow(now)
	}
	// 2×rate = 10 drops are tolerated, the 11th within 10 s cuts off.
	for i := 1; i <= 10; i++ {
		if ok, cut := l.allow(now); ok || cut {
			t.Fatalf("drop %d: ok=%v cut=%v", i, ok, cut)
		}
	}
	if _, cut := l.allow(now); !cut {
		t.Fatal("11th drop within the window did not cut off")
	}
}

func TestRateLimitDropsSpreadOutDoNotCutOff(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimit(1, now)
	for i := 0; i < 50; i++ {
		now = now.Add(6 * time.Second)
		// Spend the refilled tokens; the next frame is the round's one drop.
		for {
			ok, cut := l.allow(now)
			if cut {
				t.Fatalf("round %d: cut off with one drop every 6 s", i)
			}
			if !ok {
				break
			}
		}
	}
}

func TestRateLimitDelay(t *testing.T) {
	now := time.Unix(0, 0)
	l := newRateLimit(10, now)
	for i := 0; i < 20; i++ {
		if d := l.delay(now); d != 0 {
			t.Fatalf("frame %d of the burst delayed %v", i, d)
		}
	}
	d := l.delay(now)
	if d <= 0 || d > 100*time.Millisecond {
		t.Fatalf("frame past the burst: delay %v, want (0, 100ms]", d)
	}
	if d := l.delay(now.Add(d)); d != 0 {
		t.Fatalf("after waiting, delay %v", d)
	}
}
