package rooms

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a Transport that keeps what was written.
type recorder struct {
	mu      sync.Mutex
	frames  []string
	closed  int
	reason  string
	block   chan struct{} // when set, WriteFrames waits on it
	entered chan struct{} // when set, WriteFrames signals it first
	abort   atomic.Bool
}

func (r *recorder) WriteFrames(fs [][]byte) error {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range fs {
		r.frames = append(r.frames, string(f))
	}
	return nil
}
func (r *recorder) WriteControl(byte, []byte) error { return nil }
func (r *recorder) WriteClose(code int, reason string) error {
	r.mu.Lock()
	r.closed, r.reason = code, reason
	r.mu.Unlock()
	return nil
}
func (r *recorder) Abort() { r.abort.Store(true) }

func (r *recorder) snapshot() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.frames...), r.closed
}

func newHub(t *testing.T) *Hub {
	t.Helper()
	b := NewMemoryBroker(StreamOptions{})
	h := NewHub(b, HubOptions{})
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestConnWelcomeFirstThenHeldFrames(t *testing.T) {
	h := newHub(t)
	rec := &recorder{}
	c := NewConn("c1", "r", "u", rec, ConnOptions{})
	ctx := context.Background()
	if err := h.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, "r", "", []byte("early")); err != nil {
		t.Fatal(err)
	}
	c.Start([]byte("welcome"))
	c.Close(CloseNormal, "")
	<-c.Done()
	c.Wait()
	frames, code := rec.snapshot()
	if fmt.Sprint(frames) != "[welcome early]" || code != CloseNormal {
		t.Fatalf("frames %v close %d", frames, code)
	}
}

func TestPublishSkipsExcludedConn(t *testing.T) {
	h := newHub(t)
	ctx := context.Background()
	recs := []*recorder{{}, {}}
	conns := make([]*Conn, 2)
	for i := range conns {
		conns[i] = NewConn(fmt.Sprint("c", i), "r", "u", recs[i], ConnOptions{})
		if err := h.Add(ctx, conns[i]); err != nil {
			t.Fatal(err)
		}
		conns[i].Start([]byte("w"))
	}
	if err := h.Publish(ctx, "r", "c0", []byte("m")); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close(CloseNormal, "")
		<-c.Done()
		c.Wait()
	}
	a, _ := recs[0].snapshot()
	b, _ := recs[1].snapshot()
	if fmt.Sprint(a) != "[w]" || fmt.Sprint(b) != "[w m]" {
		t.Fatalf("c0 %v c1 %v", a, b)
	}
}

func TestFullQueueClosesTooSlowWithoutBlockingTheRoom(t *testing.T) {
	h := newHub(t)
	ctx := context.Background()
	stuck := &recorder{block: make(chan struct{})}
	slow := NewConn("slow", "r", "u", stuck, ConnOptions{QueueSize: 4})
	fast := &recorder{}
	ok := NewConn("ok", "r", "v", fast, ConnOptions{QueueSize: 1000})
	for _, c := range []*Conn{slow, ok} {
		if err := h.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Start([]byte("w"))
	}
	for i := 0; i < 100; i++ {
		if err := h.Publish(ctx, "r", "", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if closing, code := slow.Closing(); !closing || code != CloseTooSlow {
		t.Fatalf("slow conn: closing=%v code=%d", closing, code)
	}
	close(stuck.block)
	<-slow.Done()
	slow.Wait()
	if _, code := stuck.snapshot(); code != CloseTooSlow {
		t.Fatalf("slow conn got close %d", code)
	}
	ok.Close(CloseNormal, "")
	<-ok.Done()
	ok.Wait()
	if frames, _ := fast.snapshot(); len(frames) != 101 {
		t.Fatalf("healthy conn got %d frames, want 101", len(frames))
	}
}

// countingBroker counts subscriptions so the test can check one per room.
type countingBroker struct {
	*MemoryBroker
	subs, unsubs atomic.Int64
	active       sync.Map
	t            *testing.T
}

func (b *countingBroker) Subscribe(ctx context.Context, room string) error {
	b.subs.Add(1)
	if _, loaded := b.active.LoadOrStore(room, true); loaded {
		b.t.Errorf("room %s subscribed twice", room)
	}
	return b.MemoryBroker.Subscribe(ctx, room)
}

func (b *countingBroker) Unsubscribe(ctx context.Context, room string) error {
	b.unsubs.Add(1)
	if _, ok := b.active.LoadAndDelete(room); !ok {
		b.t.Errorf("room %s unsubscribed while not subscribed", room)
	}
	return b.MemoryBroker.Unsubscribe(ctx, room)
}

func TestConcurrentJoinLeaveKeepsOneSubscriptionPerRoom(t *testing.T) {
	b := &countingBroker{MemoryBroker: NewMemoryBroker(StreamOptions{}), t: t}
	h := NewHub(b, HubOptions{})
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var delivered atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				room := fmt.Sprint("room-", (g+i)%3)
				c := NewConn(fmt.Sprint(g, "-", i), room, "u", &recorder{}, ConnOptions{})
				if err := h.Add(ctx, c); err != nil {
					t.Error(err)
					return
				}
				c.Start(nil)
				if err := h.Publish(ctx, room, "", []byte("x")); err != nil {
					t.Error(err)
				}
				delivered.Add(1)
				h.Remove(ctx, c)
				c.Close(CloseNormal, "")
				<-c.Done()
				c.Wait()
			}
		}(g)
	}
	wg.Wait()
	if n := len(h.Rooms()); n != 0 {
		t.Fatalf("%d rooms left after everyone left", n)
	}
	if s, u := b.subs.Load(), b.unsubs.Load(); s != u || s == 0 {
		t.Fatalf("subscribes %d, unsubscribes %d", s, u)
	}
	b.active.Range(func(k, _ any) bool { t.Errorf("room %v still subscribed", k); return true })
}

func TestSlowConnAbortedWhenWriterStaysStuck(t *testing.T) {
	const grace = 100 * time.Millisecond
	stuck := &recorder{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := NewConn("slow", "r", "u", stuck, ConnOptions{QueueSize: 1, Timings: CloseTimings{Grace: grace}})
	c.Start([]byte("w"))
	<-stuck.entered // the writer is now stuck on "w"
	if !c.Send([]byte("x")) {
		t.Fatal("first frame behind the stuck one refused")
	}
	if c.Send([]byte("y")) {
		t.Fatal("frame over the queue bound accepted")
	}
	start := time.Now()
	for !stuck.abort.Load() {
		if time.Since(start) > grace+5*time.Second {
			t.Fatal("stuck socket never aborted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stuck.block)
	c.Wait()
}

// inlineRecorder writes inline until told the socket is full; then it
// keeps the frame as pending, like a socket buffer taking nothing.
type inlineRecorder struct {
	recorder
	full    atomic.Bool
	pending []string
	inline  atomic.Int64
}

func (r *inlineRecorder) TryWrite(frame []byte) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full.Load() || len(r.pending) > 0 {
		r.pending = append(r.pending, string(frame))
		return false, nil
	}
	r.inline.Add(1)
	r.frames = append(r.frames, string(frame))
	return true, nil
}

func (r *inlineRecorder) WriteFrames(fs [][]byte) error {
	r.mu.Lock()
	r.frames = append(r.frames, r.pending...)
	r.pending = nil
	r.mu.Unlock()
	return r.recorder.WriteFrames(fs)
}

// Inline writes, a partial inline write and queued frames from many
// goroutines keep one order per sender and lose nothing.
func TestInlineWritesKeepOrderAndLoseNothing(t *testing.T) {
	rec := &inlineRecorder{}
	c := NewConn("c", "r", "u", rec, ConnOptions{QueueSize: 1 << 16})
	c.Start([]byte("w"))
	c.Wait()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if i == 250 && g == 0 {
					rec.full.Store(true)
				}
				if i == 300 && g == 0 {
					rec.full.Store(false)
				}
				if !c.Send([]byte(fmt.Sprintf("%d:%d", g, i))) {
					t.Error("send refused")
					return
				}
			}
		}(g)
	}
	wg.Wait()
	c.Close(CloseNormal, "")
	<-c.Done()
	c.Wait()
	frames, code := rec.snapshot()
	if code != CloseNormal || len(frames) != 1+8*500 {
		t.Fatalf("%d frames, close %d", len(frames), code)
	}
	next := make([]int, 8)
	for _, f := range frames[1:] {
		var g, i int
		fmt.Sscanf(f, "%d:%d", &g, &i)
		if i != next[g] {
			t.Fatalf("sender %d: frame %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	if rec.inline.Load() == 0 {
		t.Fatal("no frame was written inline")
	}
}

// Before its welcome a connection is never dropped for a full queue: the
// held events are discarded and Start asks for a fresh snapshot.
func TestHeldOverflowAsksForFreshSnapshot(t *testing.T) {
	rec := &recorder{}
	c := NewConn("c", "r", "u", rec, ConnOptions{QueueSize: 4})
	for i := 0; i < 10; i++ {
		if !c.Send([]byte(fmt.Sprint(i))) {
			t.Fatalf("held frame %d refused", i)
		}
	}
	if closing, _ := c.Closing(); closing {
		t.Fatal("connection dropped before its welcome")
	}
	if c.Start([]byte("stale welcome")) {
		t.Fatal("Start accepted a welcome older than dropped events")
	}
	if !c.Start([]byte("fresh welcome")) {
		t.Fatal("Start refused the fresh welcome")
	}
	c.Close(CloseNormal, "")
	<-c.Done()
	c.Wait()
	frames, _ := rec.snapshot()
	// 0..7 overflowed twice (4 kept, then dropped at the 5th, and so on);
	// what survives follows the fresh welcome.
	if frames[0] != "fresh welcome" || len(frames) > 5 {
		t.Fatalf("frames %v", frames)
	}
}

// Closed before its welcome (shutdown during a join): the close frame is
// all the connection gets, never held events after it.
func TestCloseBeforeStartSendsOnlyTheClose(t *testing.T) {
	rec := &recorder{}
	c := NewConn("c", "r", "u", rec, ConnOptions{})
	c.Send([]byte("event-before-welcome"))
	c.Close(CloseGoingAway, "server shutting down")
	<-c.Done()
	c.Start([]byte("welcome"))
	c.Wait()
	if frames, code := rec.snapshot(); len(frames) != 0 || code != CloseGoingAway {
		t.Fatalf("frames %v close %d; want only the close frame", frames, code)
	}
}
