package rooms

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roomcast/roomcast/rooms/wire"
)

// lossy sits between a broker and the Hub and drops the stored payloads
// whose seq it is told to, as a lost pub/sub connection would.
type lossy struct {
	h    *Hub
	mu   sync.Mutex
	drop map[uint64]bool
}

func (l *lossy) Deliver(room string, payload []byte) {
	if e, ok := wire.Open(payload); ok && e.Stored() {
		l.mu.Lock()
		d := l.drop[e.Seq]
		l.mu.Unlock()
		if d {
			return
		}
	}
	l.h.Deliver(room, payload)
}

func (l *lossy) Resync(rooms []string) { l.h.Resync(rooms) }

type gapRecord struct {
	mu   sync.Mutex
	gaps []string
}

func (g *gapRecord) add(_ string, missing uint64, filled bool) {
	g.mu.Lock()
	g.gaps = append(g.gaps, fmt.Sprintf("%d:%v", missing, filled))
	g.mu.Unlock()
}

func (g *gapRecord) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.gaps, ",")
}

func lossyHub(t *testing.T, size int, drop ...uint64) (*Hub, *MemoryBroker, *lossy, *gapRecord) {
	t.Helper()
	b := NewMemoryBroker(StreamOptions{HistorySize: size})
	g := &gapRecord{}
	h := NewHub(b, HubOptions{OnGap: g.add})
	l := &lossy{h: h, drop: map[uint64]bool{}}
	for _, s := range drop {
		l.drop[s] = true
	}
	if err := b.Start(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(h.Close) // first: its workers read from b
	return h, b, l, g
}

// closedWith waits until c is closing and returns its close code: a gap
// is filled, or found lost, by the room's worker.
func closedWith(t *testing.T, c *Conn) int {
	t.Helper()
	var code int
	eventually(t, "the connection closing", func() bool {
		var closing bool
		closing, code = c.Closing()
		return closing
	})
	return code
}

func joinedConn(t *testing.T, h *Hub, id string) (*Conn, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := NewConn(id, "r", "u", rec, ConnOptions{})
	if err := h.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c.StartAt([][]byte{[]byte("welcome")}, c.Position())
	return c, rec
}

func publishN(t *testing.T, h *Hub, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := h.PublishMessage(context.Background(), "r", msg(fmt.Sprint("m", i), true)); err != nil {
			t.Fatal(err)
		}
	}
}

func seqsOf(frames []string) string {
	var out []string
	for _, f := range frames {
		if i := strings.Index(f, `"seq":`); i >= 0 {
			out = append(out, strings.TrimSuffix(f[i+6:], "}"))
		}
	}
	return strings.Join(out, ",")
}

// A delivery after a gap is held back until the gap is filled from the
// history: every connection gets every stored message, in order.
func TestHubFillsGapsFromHistory(t *testing.T) {
	h, _, _, g := lossyHub(t, 100, 3, 4)
	c, rec := joinedConn(t, h, "c1")
	publishN(t, h, 1, 6)
	eventually(t, "six messages", func() bool { f, _ := rec.snapshot(); return len(f) == 7 })
	frames, _ := rec.snapshot()
	if got := seqsOf(frames); got != "1,2,3,4,5,6" {
		t.Fatalf("seqs %s", got)
	}
	if g.String() != "2:true" {
		t.Fatalf("gaps %s", g)
	}
	if closing, _ := c.Closing(); closing {
		t.Fatal("closed although the gap was filled")
	}
}

// Where the history no longer holds a gap, the room's connections are told
// to resume (4010) instead of being given a stream with a hole.
func TestHubGapBeyondHistoryClosesWithResync(t *testing.T) {
	h, _, l, g := lossyHub(t, 3)
	c, _ := joinedConn(t, h, "c1")
	publishN(t, h, 1, 1)
	l.mu.Lock()
	for s := uint64(2); s <= 6; s++ {
		l.drop[s] = true
	}
	l.mu.Unlock()
	publishN(t, h, 2, 7) // the history keeps 5,6,7: 2..4 are gone
	if code := closedWith(t, c); code != CloseResync {
		t.Fatalf("close code %d, want %d", code, CloseResync)
	}
	if g.String() != "5:false" {
		t.Fatalf("gaps %s", g)
	}
}

// Resync after a pub/sub gap delivers what was published meanwhile.
func TestHubResyncFillsTheTail(t *testing.T) {
	h, _, _, _ := lossyHub(t, 100, 2, 3)
	_, rec := joinedConn(t, h, "c1")
	publishN(t, h, 1, 3)
	h.Resync([]string{"r"})
	eventually(t, "three messages", func() bool { f, _ := rec.snapshot(); return len(f) == 4 })
	frames, _ := rec.snapshot()
	if got := seqsOf(frames); got != "1,2,3" {
		t.Fatalf("seqs %s", got)
	}
}

// A connection that starts at a position ahead of what it holds drops the
// held stored frames its replay already covers, and keeps later ones.
func TestConnStartAtDropsCoveredFrames(t *testing.T) {
	h, b, _, _ := lossyHub(t, 100)
	rec := &recorder{}
	c := NewConn("c1", "r", "u", rec, ConnOptions{})
	if err := h.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, 1, 4) // held: the welcome is not built yet
	hist, err := b.History(context.Background(), "r", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	first := [][]byte{[]byte("welcome")}
	for _, m := range hist.Messages {
		first = append(first, m.Frame)
	}
	c.StartAt(first, Position{Epoch: hist.Position.Epoch, Seq: 2})
	publishN(t, h, 5, 5)
	eventually(t, "five messages", func() bool { f, _ := rec.snapshot(); return len(f) == 6 })
	frames, _ := rec.snapshot()
	if frames[0] != "welcome" || seqsOf(frames) != "1,2,3,4,5" {
		t.Fatalf("frames %v", frames)
	}
}

// A reset (DELETE of the room) closes the room's connections with 4010.
func TestHubResetClosesConnections(t *testing.T) {
	h, b, _, _ := lossyHub(t, 100)
	c, rec := joinedConn(t, h, "c1")
	publishN(t, h, 1, 2)
	if _, err := b.Reset(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if _, code := c.Closing(); code != CloseResync {
		t.Fatalf("close code %d after a reset, want %d", code, CloseResync)
	}
	// The reason tells a deletion from a lost history.
	<-c.Done()
	rec.mu.Lock()
	reason := rec.reason
	rec.mu.Unlock()
	if reason != ReasonRoomDeleted {
		t.Fatalf("close reason %q, want %q", reason, ReasonRoomDeleted)
	}
	// A connection joining afterwards is at the new epoch and stays.
	c2, rec2 := joinedConn(t, h, "c2")
	publishN(t, h, 1, 1)
	eventually(t, "message", func() bool { f, _ := rec2.snapshot(); return len(f) == 2 })
	if closing, _ := c2.Closing(); closing {
		t.Fatal("new connection closed")
	}
}

// Stored messages that arrive while a live joiner's welcome is built are
// held and follow the welcome: the welcome is at the position the hub
// gave the connection, not at the one its held frames moved it to.
func TestConnLiveWelcomeKeepsHeldMessages(t *testing.T) {
	h, _, _, _ := lossyHub(t, 100)
	publishN(t, h, 1, 2)
	rec := &recorder{}
	c := NewConn("c1", "r", "u", rec, ConnOptions{})
	if err := h.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, 3, 4) // while the welcome is built
	start := c.StartPosition()
	if start.Seq != 2 {
		t.Fatalf("start position %+v, want seq 2", start)
	}
	c.StartAt([][]byte{[]byte("welcome")}, start)
	eventually(t, "two messages", func() bool { f, _ := rec.snapshot(); return len(f) == 3 })
	if frames, _ := rec.snapshot(); seqsOf(frames) != "3,4" {
		t.Fatalf("frames %v", frames)
	}
}

// A joiner whose welcome was read from an epoch a DELETE ended meanwhile
// is closed as deleted, not left on the deleted content.
func TestConnResetWhileJoining(t *testing.T) {
	h, b, _, _ := lossyHub(t, 100)
	publishN(t, h, 1, 2)
	rec := &recorder{}
	c := NewConn("c1", "r", "u", rec, ConnOptions{})
	if err := h.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	old := c.StartPosition()
	if _, err := b.Reset(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	c.StartAt([][]byte{[]byte("welcome")}, old)
	<-c.Done()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.closed != CloseResync || rec.reason != ReasonRoomDeleted {
		t.Fatalf("closed %d %q, want %d %q", rec.closed, rec.reason, CloseResync, ReasonRoomDeleted)
	}
}

// A gap whose fill finds the room in a newer epoch (deleted or lost
// meanwhile) moves the hub to that epoch from its start: the new epoch's
// messages are not dropped as if already delivered.
func TestHubGapIntoANewEpoch(t *testing.T) {
	h, b, _, _ := lossyHub(t, 100, 0) // the reset's announcement is lost
	c, _ := joinedConn(t, h, "c1")
	publishN(t, h, 1, 1)
	old := c.Position()
	if _, err := b.Reset(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	// A late delivery of the old epoch after a gap.
	h.Deliver("r", wire.SealStored("", old.Epoch, 5, false, []byte(`{"seq":5}`)))
	if code := closedWith(t, c); code != CloseResync {
		t.Fatalf("the old epoch's connection: close %d, want %d", code, CloseResync)
	}
	c2, rec2 := joinedConn(t, h, "c2")
	if p := c2.Position(); p.Epoch == old.Epoch || p.Seq != 0 {
		t.Fatalf("a joiner after the gap is at %+v", p)
	}
	publishN(t, h, 1, 2)
	eventually(t, "the new epoch's messages", func() bool { f, _ := rec2.snapshot(); return len(f) == 3 })
	if frames, _ := rec2.snapshot(); seqsOf(frames) != "1,2" {
		t.Fatalf("frames %v", frames)
	}
}

// A resync whose gap the history no longer holds closes the room's
// connections, and one joining afterwards starts at the room's top: the
// next message reaches it instead of closing it for the same gap.
func TestHubResyncBeyondHistory(t *testing.T) {
	h, _, l, g := lossyHub(t, 3)
	c, _ := joinedConn(t, h, "c1")
	publishN(t, h, 1, 1)
	l.mu.Lock()
	for s := uint64(2); s <= 8; s++ {
		l.drop[s] = true
	}
	l.mu.Unlock()
	publishN(t, h, 2, 8) // the history keeps 6..8
	h.Resync([]string{"r"})
	if code := closedWith(t, c); code != CloseResync {
		t.Fatalf("close %d, want %d", code, CloseResync)
	}
	if g.String() != "7:false" {
		t.Fatalf("gaps %s", g)
	}
	c2, rec2 := joinedConn(t, h, "c2")
	if p := c2.Position(); p.Seq != 8 {
		t.Fatalf("joiner after the resync at %+v, want seq 8", p)
	}
	publishN(t, h, 9, 9)
	eventually(t, "the next message", func() bool { f, _ := rec2.snapshot(); return len(f) == 2 })
	if closing, _ := c2.Closing(); closing {
		t.Fatal("the joiner was closed for the old gap")
	}
}
