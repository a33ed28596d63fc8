package main

import (
	"fmt"
	"testing"
	"time"
)

func TestSizeBackoffGrowsAndResets(t *testing.T) {
	b := newSizeBackoff()
	now := time.Unix(1000, 0)
	if d := b.refused("u", "r", now); d != 0 {
		t.Fatalf("refused before any close: %v", d)
	}
	want := []time.Duration{2, 4, 8, 16, 32, 60, 60}
	for i, w := range want {
		if d := b.closed("u", "r", now); d != w*time.Second {
			t.Fatalf("close %d: backoff %v, want %v", i+1, d, w*time.Second)
		}
		if d := b.refused("u", "r", now.Add(time.Second)); d != w*time.Second-time.Second {
			t.Fatalf("close %d: refused for %v a second later", i+1, d)
		}
		if d := b.refused("other", "r", now); d != 0 {
			t.Fatalf("another user of the room refused for %v", d)
		}
		// A second close within the interval is the same refusal.
		if d := b.closed("u", "r", now.Add(time.Second)); d != w*time.Second-time.Second {
			t.Fatalf("close %d again within its interval: %v", i+1, d)
		}
		now = now.Add(w * time.Second)
		if d := b.refused("u", "r", now); d != 0 {
			t.Fatalf("close %d: still refused after its interval: %v", i+1, d)
		}
	}
	// A quiet period starts over.
	now = now.Add(sizeBackoffQuiet)
	if d := b.closed("u", "r", now); d != sizeBackoffFirst {
		t.Fatalf("after a quiet period: %v", d)
	}
}

func TestSizeBackoffIsBounded(t *testing.T) {
	b := newSizeBackoff()
	b.limit = 100
	now := time.Unix(1000, 0)
	for i := range 1000 {
		b.closed(fmt.Sprint("user-", i), "r", now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(b.entries) > 100 {
		t.Fatalf("%d entries, bound 100", len(b.entries))
	}
	// The newest are kept; the ones ending first went.
	if d := b.refused("user-999", "r", now.Add(time.Second)); d <= 0 {
		t.Fatal("the newest entry was pushed out")
	}
	if d := b.refused("user-0", "r", now.Add(time.Second)); d != 0 {
		t.Fatal("the oldest entry is still there")
	}
	// Past their quiet period, all are forgotten to make room at once.
	b.closed("late", "r", now.Add(time.Hour))
	if len(b.entries) != 1 {
		t.Fatalf("%d entries after every other expired", len(b.entries))
	}
}
