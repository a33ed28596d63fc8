package main

import (
	"context"
	"testing"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/ydoc"
)

// TestJSONViewsKeepAViewByPosition: a room's view is made once per
// document position; a new position makes it again.
func TestJSONViewsKeepAViewByPosition(t *testing.T) {
	v := newJSONViews()
	ctx := context.Background()
	empty := []byte{0, 0} // no structs, no deletions
	at1 := ydoc.Snapshot{Position: rooms.Position{Epoch: "e", Seq: 1}, Doc: empty}
	got, err := v.view(ctx, "r", at1)
	if err != nil || string(got) != "{}" {
		t.Fatalf("first view: %q %v", got, err)
	}
	// Same position: the kept view, the document is not read again.
	at1.Doc = []byte{0xff}
	if got, err := v.view(ctx, "r", at1); err != nil || string(got) != "{}" {
		t.Fatalf("kept view: %q %v", got, err)
	}
	// A new position is made anew (and this document is not one).
	at2 := ydoc.Snapshot{Position: rooms.Position{Epoch: "e", Seq: 2}, Doc: []byte{0xff}}
	if _, err := v.view(ctx, "r", at2); err == nil {
		t.Fatal("a new position used the kept view")
	}
	// A cancelled request waits for no slot.
	for range cap(v.slots) {
		v.slots <- struct{}{}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := v.view(cancelled, "other", at1); err == nil {
		t.Fatal("made a view with every slot taken and the request gone")
	}
}
