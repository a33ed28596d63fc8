package rooms

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writesRecorder is a Transport that keeps each write's frames and time.
type writesRecorder struct {
	mu     sync.Mutex
	writes [][]string
	at     []time.Time
}

func (r *writesRecorder) WriteFrames(fs [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := make([]string, len(fs))
	for i, f := range fs {
		w[i] = string(f)
	}
	r.writes = append(r.writes, w)
	r.at = append(r.at, time.Now())
	return nil
}
func (r *writesRecorder) WriteControl(byte, []byte) error { return nil }
func (r *writesRecorder) WriteClose(int, string) error    { return nil }
func (r *writesRecorder) Abort()                          {}

func (r *writesRecorder) get() ([][]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.writes...), append([]time.Time(nil), r.at...)
}

func isP(f []byte) bool { return bytes.HasPrefix(f, []byte("p")) }

func coalescingRoom(t *testing.T, o HubOptions, n int) (*Hub, []*writesRecorder) {
	t.Helper()
	o.Coalesce = isP
	b := NewMemoryBroker(StreamOptions{})
	h := NewHub(b, o)
	ctx := context.Background()
	if err := b.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	recs := make([]*writesRecorder, n)
	for i := range recs {
		recs[i] = &writesRecorder{}
		c := NewConn(fmt.Sprint("c", i), "room", "u", recs[i], ConnOptions{})
		if err := h.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Start(nil)
	}
	return h, recs
}

func waitWrites(t *testing.T, r *writesRecorder, n int) ([][]string, []time.Time) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if w, at := r.get(); len(w) >= n {
			return w, at
		}
	}
	w, _ := r.get()
	t.Fatalf("%d writes, want %d: %v", len(w), n, w)
	return nil, nil
}

// Presence frames of a room published within the window reach each socket
// in one write, in order.
func TestCoalescedFramesShareOneWrite(t *testing.T) {
	h, recs := coalescingRoom(t, HubOptions{CoalesceWindow: 50 * time.Millisecond}, 3)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		f := fmt.Sprintf("p%d", i)
		want = append(want, f)
		if err := h.Publish(ctx, "room", "", []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs {
		w, _ := waitWrites(t, r, 2) // the (empty) start, then the batch
		if got := strings.Join(w[len(w)-1], ","); got != strings.Join(want, ",") || len(w) != 2 {
			t.Fatalf("writes %v, want one of %v", w, want)
		}
	}
}

// A busy room's batches are paced: a frame that comes soon after a batch
// waits for CoalesceEvery since it, together with the frames behind it; a
// frame into a quiet room waits the window only.
func TestCoalescePacesABusyRoom(t *testing.T) {
	const window, every = 20 * time.Millisecond, 300 * time.Millisecond
	h, recs := coalescingRoom(t, HubOptions{CoalesceWindow: window, CoalesceEvery: every}, 2)
	ctx := context.Background()
	pub := func(f string) time.Time {
		t.Helper()
		at := time.Now()
		if err := h.Publish(ctx, "room", "", []byte(f)); err != nil {
			t.Fatal(err)
		}
		return at
	}
	r := recs[0]
	pub("pA")
	_, at := waitWrites(t, r, 2)
	first := at[1]
	pub("pB")
	time.Sleep(30 * time.Millisecond)
	pub("pC")
	w, at := waitWrites(t, r, 3)
	if got := strings.Join(w[2], ","); got != "pB,pC" {
		t.Fatalf("second batch %v", w)
	}
	if d := at[2].Sub(first); d < every-5*time.Millisecond {
		t.Fatalf("second batch %v after the first, want at least %v", d, every)
	}
	time.Sleep(every + 50*time.Millisecond) // quiet again
	sent := pub("pD")
	_, at = waitWrites(t, r, 4)
	if d := at[3].Sub(sent); d > every/2 {
		t.Fatalf("a frame into a quiet room waited %v", d)
	}
	if w, _ := waitWrites(t, recs[1], 4); len(w) != 4 {
		t.Fatalf("the other socket's writes: %v", w)
	}
}

// A room with CoalesceMax frames waiting sends them at once, window or
// not; the frames after them wait for the next batch, in order.
func TestCoalesceMaxSendsAFullBatchAtOnce(t *testing.T) {
	h, recs := coalescingRoom(t, HubOptions{CoalesceWindow: time.Hour, CoalesceMax: 4}, 2)
	ctx := context.Background()
	pub := func(from, to int) {
		for i := from; i < to; i++ {
			if err := h.Publish(ctx, "room", "", []byte(fmt.Sprintf("p%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	frames := func(r *writesRecorder) string {
		w, _ := r.get()
		var all []string
		for _, x := range w {
			for _, f := range x {
				if f != "" { // the start's empty welcome
					all = append(all, f)
				}
			}
		}
		return strings.Join(all, ",")
	}
	waitFor := func(want string) {
		t.Helper()
		for _, r := range recs {
			for deadline := time.Now().Add(5 * time.Second); frames(r) != want && time.Now().Before(deadline); {
				time.Sleep(2 * time.Millisecond)
			}
			if got := frames(r); got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		}
	}
	pub(0, 4)
	waitFor("p0,p1,p2,p3")
	pub(4, 6)
	time.Sleep(30 * time.Millisecond)
	for _, r := range recs {
		if got := frames(r); got != "p0,p1,p2,p3" {
			t.Fatalf("frames after a full batch did not wait: %s", got)
		}
	}
	h.Flush("room")
	waitFor("p0,p1,p2,p3,p4,p5")
}

// A connection added while frames wait gets only the frames after it: its
// welcome is read after its own join, which follows them.
func TestCoalesceSkipsFramesBeforeAJoin(t *testing.T) {
	h, recs := coalescingRoom(t, HubOptions{CoalesceWindow: time.Hour}, 1)
	ctx := context.Background()
	pub := func(f string) {
		if err := h.Publish(ctx, "room", "", []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	frames := func(r *writesRecorder) string {
		w, _ := r.get()
		var all []string
		for _, x := range w {
			for _, f := range x {
				if f != "" { // the first member's empty welcome
					all = append(all, f)
				}
			}
		}
		return strings.Join(all, ",")
	}
	waitFor := func(r *writesRecorder, want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); frames(r) != want && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		if got := frames(r); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	pub("p0")
	pub("p1")
	late := &writesRecorder{}
	c := NewConn("late", "room", "u", late, ConnOptions{})
	if err := h.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	pub("p2")
	h.Flush("room")
	c.Start([]byte("welcome"))
	waitFor(recs[0], "p0,p1,p2")
	waitFor(late, "welcome,p2")
	// The next batch goes to both whole.
	pub("p3")
	pub("p4")
	h.Flush("room")
	waitFor(recs[0], "p0,p1,p2,p3,p4")
	waitFor(late, "welcome,p2,p3,p4")
}
