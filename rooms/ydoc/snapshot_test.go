package ydoc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A joiner waiting for the snapshot behind a slow compaction gives up
// with its context instead of waiting without limit.
func TestDocSnapshotHonoursTheContext(t *testing.T) {
	e := New(Options{})
	defer e.Close()
	r := newDocRoom("r", e)
	e.rooms["r"] = r
	r.lock <- struct{}{} // a compaction holds the snapshot
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.snapshot(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("snapshot behind a held lock: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("snapshot gave up after %v", d)
	}
	// Dropping the cache (a deleted or lost document) never waits for it.
	done := make(chan struct{})
	gen := r.gen.Load()
	go func() {
		e.RoomDeleted("r")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("dropping the cache waited for the snapshot lock")
	}
	if r.gen.Load() == gen {
		t.Fatal("the deleted document's cache is still in use")
	}
}
