package rooms

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
)

// stallingBroker is a memory broker whose History of one room waits until
// released, as a Redis shard that stopped answering would.
type stallingBroker struct {
	*MemoryBroker
	room    string
	entered chan struct{} // closed once a History of room waits
	release chan struct{}
	once    sync.Once
}

func newStallingBroker(t *testing.T, room string) *stallingBroker {
	b := &stallingBroker{MemoryBroker: NewMemoryBroker(StreamOptions{HistorySize: 100}), room: room,
		entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.unblock)
	return b
}

func (b *stallingBroker) unblock() {
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func (b *stallingBroker) History(ctx context.Context, room string, after uint64, limit int) (History, error) {
	if room == b.room {
		b.once.Do(func() { close(b.entered) })
		select {
		case <-b.release:
		case <-ctx.Done():
			return History{}, ctx.Err()
		}
	}
	return b.MemoryBroker.History(ctx, room, after, limit)
}

// shardReader delivers every room's payloads from one goroutine, as the
// Redis broker's reader of a shard does, and drops the stored payloads it
// is told to (a pub/sub gap).
type shardReader struct {
	h    *Hub
	in   chan func()
	mu   sync.Mutex
	drop map[string]bool // "room/seq"
}

func newShardReader(t *testing.T, h *Hub) *shardReader {
	s := &shardReader{h: h, in: make(chan func(), 1024), drop: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range s.in {
			f()
		}
	}()
	t.Cleanup(func() { close(s.in); <-done })
	return s
}

func (s *shardReader) dropSeqs(room string, seqs ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range seqs {
		s.drop[fmt.Sprint(room, "/", seq)] = true
	}
}

func (s *shardReader) Deliver(room string, payload []byte) {
	if e, ok := wire.Open(payload); ok && e.Stored() {
		s.mu.Lock()
		d := s.drop[fmt.Sprint(room, "/", e.Seq)]
		s.mu.Unlock()
		if d {
			return
		}
	}
	s.in <- func() { s.h.Deliver(room, payload) }
}

func (s *shardReader) Resync(rooms []string) { s.in <- func() { s.h.Resync(rooms) } }

func joinRoom(t *testing.T, h *Hub, id, room string) (*Conn, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := NewConn(id, room, "u", rec, ConnOptions{})
	if err := h.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c.StartAt([][]byte{[]byte("welcome")}, c.Position())
	return c, rec
}

func publishTo(t *testing.T, h *Hub, room string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := h.PublishMessage(context.Background(), room, msg(fmt.Sprint(room, i), true)); err != nil {
			t.Fatal(err)
		}
	}
}

func awaitSeqs(t *testing.T, rec *recorder, want string) {
	t.Helper()
	eventually(t, "seqs "+want, func() bool { f, _ := rec.snapshot(); return seqsOf(f) == want })
}

// stalledHub is a hub whose room "slow" has a gap (seqs 1 and 2 lost on
// the way) that its worker is filling from a History that does not
// answer until the broker is unblocked.
func stalledHub(t *testing.T, o HubOptions) (*Hub, *stallingBroker, *shardReader, *Conn, *recorder) {
	t.Helper()
	b := newStallingBroker(t, "slow")
	h := NewHub(b, o)
	reader := newShardReader(t, h)
	if err := b.Start(context.Background(), reader); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(h.Close)
	t.Cleanup(b.unblock) // first: the hub's worker waits on it
	c, rec := joinRoom(t, h, "s1", "slow")
	reader.dropSeqs("slow", 1, 2)
	publishTo(t, h, "slow", 1, 3)
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the gap of room slow was never read from the history")
	}
	return h, b, reader, c, rec
}

// A room whose gap fill waits on the broker holds up no other room
// delivered from the same goroutine, and gets every message in order once
// the broker answers.
func TestHubSlowFillDoesNotDelayOtherRooms(t *testing.T) {
	h, b, _, slow, slowRec := stalledHub(t, HubOptions{})
	_, fastRec := joinRoom(t, h, "f1", "fast")
	publishTo(t, h, "fast", 1, 3)
	awaitSeqs(t, fastRec, "1,2,3") // while slow's History still waits
	publishTo(t, h, "slow", 4, 5)  // held behind the gap
	if f, _ := slowRec.snapshot(); seqsOf(f) != "" {
		t.Fatalf("room slow got %v before its gap was filled", f)
	}
	b.unblock()
	awaitSeqs(t, slowRec, "1,2,3,4,5")
	if closing, _ := slow.Closing(); closing {
		t.Fatal("room slow's connection closed although its gap was filled")
	}
}

// Messages arriving while a room's gap is filled wait up to the hold
// bound, by count and by bytes; past it they are dropped and read from
// the history: the connection still gets every one, in order.
func TestHubHoldBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    HubOptions
		held int
	}{
		{"count", HubOptions{HoldMessages: 2}, 2},
		{"bytes", HubOptions{HoldBytes: 60}, 1}, // a frame is ~40 bytes
		{"bytes across rooms", HubOptions{HoldBytesTotal: 60}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, b, _, _, rec := stalledHub(t, tc.o)
			publishTo(t, h, "slow", 4, 8)
			r := h.room("slow")
			// The reader goroutine has delivered them once a fence
			// published after them arrived.
			_, fenceRec := joinRoom(t, h, "f1", "fence")
			publishTo(t, h, "fence", 1, 1)
			awaitSeqs(t, fenceRec, "1")
			r.streamMu.Lock()
			held, dropping := len(r.st.held), r.st.dropping
			r.streamMu.Unlock()
			if held != tc.held || !dropping {
				t.Fatalf("held %d (dropping %v), want %d and the rest dropped", held, dropping, tc.held)
			}
			b.unblock()
			awaitSeqs(t, rec, "1,2,3,4,5,6,7,8")
			r.streamMu.Lock()
			left := h.held.Load()
			r.streamMu.Unlock()
			if left != 0 {
				t.Fatalf("%d bytes still counted as held after the fill", left)
			}
		})
	}
}

// The room's worker quits when the room's last connection leaves, also
// in the middle of a fill, and Close waits for the workers.
func TestHubWorkerStopsWithTheRoom(t *testing.T) {
	h, _, _, c, _ := stalledHub(t, HubOptions{})
	h.Remove(context.Background(), c)
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waits for the worker of a room nobody follows")
	}
}

// A stored message whose seq this instance delivered with other content
// (a failover lost the first and gave its seq to the second) moves the
// room to a new epoch that keeps its history: the connection that holds
// the lost one is closed with 4010 and a joiner resumes from the room's
// history. The same message delivered twice changes nothing.
func TestHubForkOnAReusedSeq(t *testing.T) {
	var forks []string
	var mu sync.Mutex
	b := NewMemoryBroker(StreamOptions{HistorySize: 100})
	h := NewHub(b, HubOptions{OnFork: func(room string) { mu.Lock(); forks = append(forks, room); mu.Unlock() }})
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(h.Close)
	c, rec := joinedConn(t, h, "c1")
	publishN(t, h, 1, 2)
	awaitSeqs(t, rec, "1,2")
	old := c.Position()
	hist, err := b.History(context.Background(), "r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}

	h.Deliver("r", wire.SealStored("", old.Epoch, 2, false, hist.Messages[1].Frame))
	if closing, _ := c.Closing(); closing {
		t.Fatal("closed for a message delivered again unchanged")
	}

	h.Deliver("r", wire.SealStored("", old.Epoch, 2, false, []byte(`{"type":"message","room":"r","data":"other","seq":2}`)))
	if code := closedWith(t, c); code != CloseResync {
		t.Fatalf("close %d, want %d", code, CloseResync)
	}
	<-c.Done()
	rec.mu.Lock()
	reason := rec.reason
	rec.mu.Unlock()
	if reason != ReasonForked {
		t.Fatalf("close reason %q, want %q", reason, ReasonForked)
	}
	mu.Lock()
	if strings.Join(forks, ",") != "r" {
		t.Fatalf("OnFork calls %v, want one for r", forks)
	}
	mu.Unlock()

	pos, err := b.Position(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if pos.Epoch == old.Epoch || pos.Seq != 2 {
		t.Fatalf("room at %+v after the fork, want a new epoch at seq 2", pos)
	}
	after, err := b.History(context.Background(), "r", 0, 10)
	if err != nil || len(after.Messages) != 2 || string(after.Messages[1].Frame) != string(hist.Messages[1].Frame) {
		t.Fatalf("history after the fork: %+v %v", after, err)
	}
	c2, rec2 := joinedConn(t, h, "c2")
	if p := c2.Position(); p != pos {
		t.Fatalf("joiner at %+v, want %+v", p, pos)
	}
	publishN(t, h, 3, 3)
	awaitSeqs(t, rec2, "3")
	// A late envelope of the forked epoch reaches nobody.
	h.Deliver("r", wire.SealStored("", old.Epoch, 4, false, []byte(`{"type":"message","room":"r","seq":4}`)))
	publishN(t, h, 4, 4)
	awaitSeqs(t, rec2, "3,4")
	if closing, _ := c2.Closing(); closing {
		t.Fatal("the joiner of the new epoch was closed")
	}
}

// promotedView is a memory broker whose History shows what a promoted
// replica would: without the last lose messages, or with other frames
// under some seqs.
type promotedView struct {
	*MemoryBroker
	mu      sync.Mutex
	lose    uint64
	replace map[uint64][]byte
}

func (b *promotedView) History(ctx context.Context, room string, after uint64, limit int) (History, error) {
	h, err := b.MemoryBroker.History(ctx, room, after, limit)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil || b.lose == 0 && len(b.replace) == 0 {
		return h, err
	}
	h.Position.Seq -= b.lose
	var kept []StoredMessage
	for _, m := range h.Messages {
		if m.Seq > h.Position.Seq {
			break
		}
		if f, ok := b.replace[m.Seq]; ok {
			m.Frame = f
		}
		kept = append(kept, m)
	}
	h.Messages = kept
	h.Complete = after == h.Position.Seq || len(kept) > 0 && kept[0].Seq == after+1
	return h, nil
}

// A resync after a pub/sub gap finds the room forked when the history is
// behind the last message delivered, or holds another one under its seq:
// the room moves to a new epoch and its connections resync. A resync that
// finds the history as delivered changes nothing.
func TestHubResyncFindsAFork(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lose    uint64
		replace map[uint64][]byte
		forks   bool
	}{
		{"history as delivered", 0, nil, false},
		{"history behind", 1, nil, true},
		{"another message under the last seq", 0, map[uint64][]byte{3: []byte(`{"type":"message","id":"other","seq":3}`)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &promotedView{MemoryBroker: NewMemoryBroker(StreamOptions{HistorySize: 100})}
			forks := 0
			var mu sync.Mutex
			h := NewHub(b, HubOptions{OnFork: func(string) { mu.Lock(); forks++; mu.Unlock() }})
			if err := b.Start(context.Background(), h); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			t.Cleanup(h.Close)
			c, rec := joinedConn(t, h, "c1")
			publishN(t, h, 1, 3)
			awaitSeqs(t, rec, "1,2,3")
			old := c.Position()
			b.mu.Lock()
			b.lose, b.replace = tc.lose, tc.replace
			b.mu.Unlock()
			h.Resync([]string{"r"})
			if !tc.forks {
				// The resync is done once the room's worker is: a
				// message published after it arrives in order.
				b.mu.Lock()
				b.lose, b.replace = 0, nil
				b.mu.Unlock()
				publishN(t, h, 4, 4)
				awaitSeqs(t, rec, "1,2,3,4")
				mu.Lock()
				defer mu.Unlock()
				if closing, _ := c.Closing(); closing || forks != 0 {
					t.Fatalf("closing %v, %d forks, for a history as delivered", closing, forks)
				}
				return
			}
			if code := closedWith(t, c); code != CloseResync {
				t.Fatalf("close %d, want %d", code, CloseResync)
			}
			<-c.Done()
			rec.mu.Lock()
			reason := rec.reason
			rec.mu.Unlock()
			if reason != ReasonForked {
				t.Fatalf("close reason %q, want %q", reason, ReasonForked)
			}
			mu.Lock()
			defer mu.Unlock()
			if forks != 1 {
				t.Fatalf("%d forks counted, want 1", forks)
			}
			if pos, err := b.Position(context.Background(), "r"); err != nil || pos.Epoch == old.Epoch {
				t.Fatalf("room at %+v (%v) after the fork, want a new epoch", pos, err)
			}
		})
	}
}
