package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
)

// The stream behaviour table every Broker passes, memory and Redis alike.

type envelopeReceiver struct {
	mu  sync.Mutex
	got []wire.Envelope
}

func (r *envelopeReceiver) Deliver(_ string, payload []byte) {
	e, ok := wire.Open(payload)
	if !ok {
		panic("not an envelope: " + string(payload))
	}
	e.Frame = append([]byte(nil), e.Frame...)
	r.mu.Lock()
	r.got = append(r.got, e)
	r.mu.Unlock()
}

func (r *envelopeReceiver) Resync([]string) {}

func (r *envelopeReceiver) envelopes() []wire.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wire.Envelope(nil), r.got...)
}

type newStreamBroker func(t *testing.T, r Receiver, o StreamOptions) Broker

func msg(id string, stored bool) Message {
	return Message{ID: id, Frame: []byte(`{"type":"message","id":"` + id + `"}`), Stored: stored}
}

func testStream(t *testing.T, newBroker newStreamBroker) {
	ctx := context.Background()
	room := func(t *testing.T) string { return strings.ReplaceAll(t.Name(), "/", ".") }

	t.Run("seq and frames", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 100})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		p0, err := b.Position(ctx, name)
		if err != nil || p0.Epoch == "" || p0.Seq != 0 {
			t.Fatalf("position of a new room: %+v %v", p0, err)
		}
		for i := 1; i <= 3; i++ {
			p, err := b.PublishMessage(ctx, name, msg(fmt.Sprint("m", i), true))
			if err != nil || p.Position != (Position{p0.Epoch, uint64(i)}) || p.ID != fmt.Sprint("m", i) || p.Duplicate {
				t.Fatalf("publish %d: %+v %v", i, p, err)
			}
		}
		if p, err := b.PublishMessage(ctx, name, msg("eph", false)); err != nil || p.Position.Seq != 0 {
			t.Fatalf("ephemeral publish: %+v %v", p, err)
		}
		eventually(t, "4 deliveries", func() bool { return len(r.envelopes()) == 4 })
		got := r.envelopes()
		for i, e := range got[:3] {
			want := fmt.Sprintf(`{"type":"message","id":"m%d","seq":%d}`, i+1, i+1)
			if e.Epoch != p0.Epoch || e.Seq != uint64(i+1) || string(e.Frame) != want {
				t.Fatalf("delivery %d: %+v %s, want %s", i, e, e.Frame, want)
			}
		}
		if e := got[3]; e.Stored() || string(e.Frame) != `{"type":"message","id":"eph"}` {
			t.Fatalf("ephemeral delivery: %+v %s", e, e.Frame)
		}
	})

	t.Run("keys", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 100})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		m := msg("first", true)
		m.Key = "k1"
		p1, err := b.PublishMessage(ctx, name, m)
		if err != nil {
			t.Fatal(err)
		}
		m2 := msg("second", true)
		m2.Key = "k1"
		p2, err := b.PublishMessage(ctx, name, m2)
		if err != nil || !p2.Duplicate || p2.ID != "first" || p2.Position != p1.Position {
			t.Fatalf("re-sent key: %+v %v, want the first %+v", p2, err, p1)
		}
		m3 := msg("third", true)
		m3.Key = "k2"
		if p3, err := b.PublishMessage(ctx, name, m3); err != nil || p3.Duplicate || p3.Position.Seq != 2 {
			t.Fatalf("other key: %+v %v", p3, err)
		}
		eventually(t, "2 deliveries", func() bool { return len(r.envelopes()) >= 2 })
		if got := r.envelopes(); len(got) != 2 {
			t.Fatalf("%d deliveries, want 2", len(got))
		}
	})

	t.Run("history", func(t *testing.T) {
		b := newBroker(t, &envelopeReceiver{}, StreamOptions{HistorySize: 5})
		name := room(t)
		for i := 1; i <= 8; i++ {
			if _, err := b.PublishMessage(ctx, name, msg(fmt.Sprint("m", i), true)); err != nil {
				t.Fatal(err)
			}
		}
		check := func(after uint64, limit int, complete bool, seqs string) {
			t.Helper()
			h, err := b.History(ctx, name, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range h.Messages {
				got = append(got, fmt.Sprint(m.Seq))
				if !strings.Contains(string(m.Frame), fmt.Sprintf(`"seq":%d}`, m.Seq)) {
					t.Fatalf("frame of seq %d: %s", m.Seq, m.Frame)
				}
			}
			if h.Complete != complete || strings.Join(got, ",") != seqs || h.Position.Seq != 8 {
				t.Fatalf("History(after %d, limit %d) = complete %v seqs %v top %d; want %v %q 8", after, limit, h.Complete, got, h.Position.Seq, complete, seqs)
			}
		}
		check(0, 100, false, "4,5,6,7,8") // trimmed to the latest 5
		check(2, 100, false, "4,5,6,7,8")
		check(3, 100, true, "4,5,6,7,8")
		check(5, 2, true, "6,7")
		check(8, 100, true, "")
		check(9, 100, false, "") // ahead of the room
	})

	t.Run("state", func(t *testing.T) {
		b := newBroker(t, &envelopeReceiver{}, StreamOptions{HistorySize: 100})
		name := room(t)
		pos0, st, err := b.State(ctx, name)
		if err != nil || st != nil {
			t.Fatalf("state of a new room: %v %v", st, err)
		}
		p0e := pos0.Epoch
		for i := 1; i <= 5; i++ {
			if _, err := b.PublishMessage(ctx, name, msg(fmt.Sprint("m", i), true)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.SaveState(ctx, name, Position{"another-epoch", 5}, []byte(`{}`)); !errors.Is(err, ErrStaleState) {
			t.Fatalf("state of another epoch: %v", err)
		}
		if err := b.SaveState(ctx, name, Position{p0e, 6}, []byte(`{}`)); !errors.Is(err, ErrStaleState) {
			t.Fatalf("state ahead of the room: %v", err)
		}
		if err := b.SaveState(ctx, name, Position{p0e, 4}, []byte(`{"n":4}`)); err != nil {
			t.Fatal(err)
		}
		if err := b.SaveState(ctx, name, Position{p0e, 3}, []byte(`{"n":3}`)); !errors.Is(err, ErrStaleState) {
			t.Fatalf("older state: %v", err)
		}
		if err := b.SaveState(ctx, name, Position{p0e, 5}, []byte(`{"n":5}`)); err != nil {
			t.Fatal(err)
		}
		p, st, err := b.State(ctx, name)
		if err != nil || st == nil || st.Seq != 5 || string(st.Data) != `{"n":5}` || p.Seq != 5 {
			t.Fatalf("State: %+v %+v %v", p, st, err)
		}
	})

	t.Run("state requests", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 4}) // due once 2 follow the state
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ {
			if _, err := b.PublishMessage(ctx, name, msg(fmt.Sprint("m", i), true)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "4 deliveries", func() bool { return len(r.envelopes()) == 4 })
		var due []string
		for _, e := range r.envelopes() {
			due = append(due, fmt.Sprint(e.StateDue))
		}
		// Due at 2, then not again within the retry period.
		if strings.Join(due, ",") != "false,true,false,false" {
			t.Fatalf("state due flags %v", due)
		}
		pick, err := b.ClaimStateRequest(ctx, name, 2, []string{"c1"})
		if err != nil || pick != "c1" {
			t.Fatalf("first claim: %q %v", pick, err)
		}
		// The one asked last is not asked again, here or elsewhere.
		if pick, err := b.ClaimStateRequest(ctx, name, 3, []string{"c1"}); err != nil || pick != "" {
			t.Fatalf("claim with only the client asked before: %q %v", pick, err)
		}
	})

	t.Run("fork", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 100})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		m := msg("m1", true)
		m.Key = "k1"
		p1, err := b.PublishMessage(ctx, name, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.PublishMessage(ctx, name, msg("m2", true)); err != nil {
			t.Fatal(err)
		}
		if err := b.SaveState(ctx, name, p1.Position, []byte(`{"s":1}`)); err != nil {
			t.Fatal(err)
		}
		old := p1.Position.Epoch
		if mb, ok := b.(*MemoryBroker); ok && mb.o.Store != nil {
			// Written through before delivery: it cannot fork, and says so.
			if p, err := b.Fork(ctx, name, old); err == nil {
				t.Fatalf("Fork with a store: %+v, want a refusal", p)
			}
			return
		}
		p, err := b.Fork(ctx, name, old)
		if err != nil || p.Epoch == old || p.Seq != 2 {
			t.Fatalf("Fork: %+v %v, want a new epoch at seq 2", p, err)
		}
		// History and state stay, under the new epoch.
		pos, st, err := b.State(ctx, name)
		if err != nil || pos != p || st == nil || st.Seq != 1 || string(st.Data) != `{"s":1}` {
			t.Fatalf("after Fork: %+v %+v %v", pos, st, err)
		}
		h, err := b.History(ctx, name, 0, 10)
		if err != nil || !h.Complete || len(h.Messages) != 2 || h.Position != p {
			t.Fatalf("history after Fork: %+v %v", h, err)
		}
		eventually(t, "the announcement", func() bool { return len(r.envelopes()) == 3 })
		if e := r.envelopes()[2]; e.Epoch != p.Epoch || e.Seq != 2 || len(e.Frame) != 0 {
			t.Fatalf("announcement %+v", e)
		}
		// A key of the forked epoch still names its publish.
		if again, err := b.PublishMessage(ctx, name, m); err != nil || !again.Duplicate || again.Position != (Position{p.Epoch, 1}) {
			t.Fatalf("publish again after the fork: %+v %v", again, err)
		}
		// A state of the forked epoch is stale.
		if err := b.SaveState(ctx, name, Position{old, 2}, []byte(`{}`)); !errors.Is(err, ErrStaleState) {
			t.Fatalf("state of the forked epoch: %v", err)
		}
		// A fork of an epoch the room left changes nothing.
		if again, err := b.Fork(ctx, name, old); err != nil || again != p {
			t.Fatalf("Fork of the old epoch again: %+v %v, want %+v", again, err, p)
		}
		if p3, err := b.PublishMessage(ctx, name, msg("m3", true)); err != nil || p3.Position != (Position{p.Epoch, 3}) {
			t.Fatalf("first publish after the fork: %+v %v", p3, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 100})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		p1, err := b.PublishMessage(ctx, name, msg("m1", true))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.SaveState(ctx, name, p1.Position, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		p, err := b.Reset(ctx, name)
		if err != nil || p.Epoch == p1.Position.Epoch || p.Seq != 0 {
			t.Fatalf("Reset: %+v %v", p, err)
		}
		pos, st, err := b.State(ctx, name)
		if err != nil || st != nil || pos != p {
			t.Fatalf("after Reset: %+v %+v %v", pos, st, err)
		}
		eventually(t, "the announcement", func() bool { return len(r.envelopes()) == 2 })
		if e := r.envelopes()[1]; e.Epoch != p.Epoch || e.Seq != 0 || len(e.Frame) != 0 {
			t.Fatalf("announcement %+v", e)
		}
		if p2, err := b.PublishMessage(ctx, name, msg("m2", true)); err != nil || p2.Position != (Position{p.Epoch, 1}) {
			t.Fatalf("first publish of the new epoch: %+v %v", p2, err)
		}
	})

	t.Run("peeks write nothing", func(t *testing.T) {
		b := newBroker(t, &envelopeReceiver{}, StreamOptions{HistorySize: 100})
		name := room(t)
		for i := 0; i < 2; i++ {
			if p, st, err := b.PeekState(ctx, name); err != nil || p != (Position{}) || st != nil {
				t.Fatalf("peek at the state of an absent room: %+v %v %v", p, st, err)
			}
			if h, err := b.PeekHistory(ctx, name, 0, 10); err != nil || h.Position != (Position{}) || len(h.Messages) != 0 {
				t.Fatalf("peek at the history of an absent room: %+v %v", h, err)
			}
		}
		// A room in use reads as with State and History.
		p0, err := b.Position(ctx, name)
		if err != nil || p0.Epoch == "" {
			t.Fatalf("position: %+v %v", p0, err)
		}
		if _, err := b.PublishMessage(ctx, name, msg("m1", true)); err != nil {
			t.Fatal(err)
		}
		if p, _, err := b.PeekState(ctx, name); err != nil || p != (Position{p0.Epoch, 1}) {
			t.Fatalf("peek at the state of a room in use: %+v %v", p, err)
		}
		if h, err := b.PeekHistory(ctx, name, 0, 10); err != nil || h.Position != (Position{p0.Epoch, 1}) || len(h.Messages) != 1 || !h.Complete {
			t.Fatalf("peek at the history of a room in use: %+v %v", h, err)
		}
	})

	t.Run("storing off", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		if p, err := b.PublishMessage(ctx, name, msg("m", true)); err != nil || p.Position.Seq != 0 {
			t.Fatalf("publish with storing off: %+v %v", p, err)
		}
		eventually(t, "delivery", func() bool { return len(r.envelopes()) == 1 })
		if e := r.envelopes()[0]; e.Stored() {
			t.Fatalf("stored with storing off: %+v", e)
		}
	})
}

func TestMemoryStream(t *testing.T) { testStream(t, startMemoryBroker) }

func TestRedisStream(t *testing.T) { testStream(t, redisStreamBroker(redisproc.Start(t))) }

// startMemoryBroker is a newStreamBroker of the memory engine.
func startMemoryBroker(t *testing.T, r Receiver, o StreamOptions) Broker {
	b := NewMemoryBroker(o)
	if err := b.Start(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// redisStreamBroker returns a newStreamBroker of Redis brokers on srv.
func redisStreamBroker(srv *redisproc.Server) newStreamBroker {
	return func(t *testing.T, r Receiver, o StreamOptions) Broker {
		ro := fastOptions()
		ro.Stream = o
		return startRedisBroker(t, srv, r, ro)
	}
}

// The memory engine forgets a room's history HistoryTTL after its last
// stored message: a new epoch starts.
func TestMemoryStreamExpires(t *testing.T) {
	b := NewMemoryBroker(StreamOptions{HistorySize: 10, HistoryTTL: time.Hour})
	now := time.Now()
	b.now = func() time.Time { return now }
	ctx := context.Background()
	if err := b.Start(ctx, &envelopeReceiver{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.PublishMessage(ctx, "r", msg("m", true))
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Minute)
	if pos, _ := b.Position(ctx, "r"); pos != p.Position {
		t.Fatalf("before the TTL: %+v, want %+v", pos, p.Position)
	}
	now = now.Add(2 * time.Minute)
	if pos, _ := b.Position(ctx, "r"); pos.Epoch == p.Position.Epoch || pos.Seq != 0 {
		t.Fatalf("after the TTL: %+v, want a new epoch", pos)
	}
}
