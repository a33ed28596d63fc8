package rooms

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/store"
)

// The memory engine writing through a SQLite store behaves as without one
// (the same tables), and what it wrote comes back in a new engine.

func TestMemoryStreamWithStore(t *testing.T) { testStream(t, startStoredMemoryBroker) }

func TestMemoryDocsWithStore(t *testing.T) { testDocs(t, startStoredMemoryBroker) }

func openTestStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "rooms.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func startStoredMemoryBroker(t *testing.T, r Receiver, o StreamOptions) Broker {
	o.Store = openTestStore(t)
	return startMemoryBroker(t, r, o)
}

// TestMemoryEngineReloadsFromItsStore: a second engine on the same store
// (a restart) has the room's epoch, seq, history, state and document, and
// goes on from them; an engine that let an idle room go from memory loads
// it back the same.
func TestMemoryEngineReloadsFromItsStore(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	o := StreamOptions{HistorySize: 3, Store: st}
	b1 := startMemoryBroker(t, &envelopeReceiver{}, o)
	for i := 1; i <= 5; i++ {
		if _, err := b1.PublishMessage(ctx, "r", msg(fmt.Sprint("m", i), true)); err != nil {
			t.Fatal(err)
		}
	}
	p1, _ := b1.Position(ctx, "r")
	if err := b1.SaveState(ctx, "r", Position{p1.Epoch, 4}, []byte(`{"n":4}`)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := b1.AppendUpdate(ctx, "r", "", []byte{0, 2, 1, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	d1, _ := b1.Doc(ctx, "r")
	if ok, err := b1.CompactDoc(ctx, "r", Position{d1.Position.Epoch, 2}, []byte("base-2")); !ok || err != nil {
		t.Fatalf("compact: %v %v", ok, err)
	}
	_ = b1.Close()

	check := func(t *testing.T, b Broker) {
		t.Helper()
		h, err := b.History(ctx, "r", 0, 10)
		if err != nil || h.Position != p1 || len(h.Messages) != 3 || h.Messages[0].Seq != 3 || h.Complete {
			t.Fatalf("history: %+v %v (want position %+v, seqs 3-5)", h, err, p1)
		}
		if _, s, _ := b.State(ctx, "r"); s == nil || s.Seq != 4 || string(s.Data) != `{"n":4}` {
			t.Fatalf("state: %+v", s)
		}
		d, err := b.Doc(ctx, "r")
		if err != nil || d.Position != d1.Position || d.BaseSeq != 2 || string(d.Base) != "base-2" || len(d.Updates) != 1 {
			t.Fatalf("doc: %+v %v (want %+v)", d, err, d1.Position)
		}
	}
	b2 := startMemoryBroker(t, &envelopeReceiver{}, o)
	check(t, b2)
	if p, err := b2.PublishMessage(ctx, "r", msg("m6", true)); err != nil || p.Position != (Position{p1.Epoch, 6}) {
		t.Fatalf("publish after the restart: %+v %v", p, err)
	}
	if a, err := b2.AppendUpdate(ctx, "r", "", []byte{0, 2, 1, 9}); err != nil || a.Position != (Position{d1.Position.Epoch, 4}) {
		t.Fatalf("update after the restart: %+v %v", a, err)
	}

	// Idle past both TTLs, with no subscriber: out of memory, then back.
	mb := b2.(*MemoryBroker)
	mb.now = func() time.Time { return time.Now().Add(800 * time.Hour) }
	mb.sweep()
	mb.mu.RLock()
	_, resident := mb.rooms["r"]
	mb.mu.RUnlock()
	if resident {
		t.Fatal("an idle room stayed in memory")
	}
	if p, err := b2.Position(ctx, "r"); err != nil || p != (Position{p1.Epoch, 6}) {
		t.Fatalf("position after the room left memory: %+v %v", p, err)
	}
	if d, err := b2.Doc(ctx, "r"); err != nil || d.Position != (Position{d1.Position.Epoch, 4}) {
		t.Fatalf("doc after the room left memory: %+v %v", d, err)
	}
}

// The janitor sweeps at half the shorter TTL, within 1 s … 1 min.
func TestSweepIntervalFollowsTheTTLs(t *testing.T) {
	for _, c := range []struct {
		history, doc, want time.Duration
	}{
		{0, 0, time.Minute}, // the defaults: 24h and 720h
		{2 * time.Second, 2 * time.Second, time.Second},
		{10 * time.Second, time.Hour, 5 * time.Second},
		{time.Hour, 30 * time.Second, 15 * time.Second},
		{100 * time.Millisecond, time.Hour, time.Second},
		{3 * time.Minute, 5 * time.Minute, time.Minute},
	} {
		o := StreamOptions{HistoryTTL: c.history, DocTTL: c.doc}.withDefaults()
		if got := o.sweepInterval(); got != c.want {
			t.Errorf("HistoryTTL %v DocTTL %v: sweep every %v, want %v", c.history, c.doc, got, c.want)
		}
	}
}

// TestShortTTLsEvictPromptly: with TTLs of 2 s, an idle room and its
// document leave memory within a few seconds, not at the next minute, and
// load back whole.
func TestShortTTLsEvictPromptly(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBroker(StreamOptions{HistorySize: 10, HistoryTTL: 2 * time.Second, DocTTL: 2 * time.Second, Store: openTestStore(t)})
	if err := b.Start(ctx, &envelopeReceiver{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	p, err := b.PublishMessage(ctx, "idle", msg("m1", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "idle", "", []byte{0, 2, 1, 1}); err != nil {
		t.Fatal(err)
	}
	resident := func() (rooms, docs int) {
		b.mu.RLock()
		defer b.mu.RUnlock()
		b.docMu.Lock()
		defer b.docMu.Unlock()
		return len(b.rooms), len(b.docs)
	}
	start := time.Now()
	for {
		r, d := resident()
		if r == 0 && d == 0 {
			break
		}
		if time.Since(start) > 6*time.Second {
			t.Fatalf("after %v: %d rooms and %d documents still in memory", time.Since(start), r, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the idle room left memory after %v", time.Since(start).Round(100*time.Millisecond))
	if pos, _ := b.Position(ctx, "idle"); pos != p.Position {
		t.Fatalf("loaded back at %+v, was %+v", pos, p.Position)
	}
	if d, _ := b.Doc(ctx, "idle"); d.Position.Seq != 1 {
		t.Fatalf("document loaded back at %+v", d.Position)
	}
}

// lostOutcome is a store whose next Write commits and then reports a
// failure, as when the connection drops while COMMIT is answered.
type lostOutcome struct {
	store.Store
	armed bool
}

func (s *lostOutcome) Write(ctx context.Context, ops ...store.Op) error {
	err := s.Store.Write(ctx, ops...)
	if s.armed && err == nil {
		s.armed = false
		return errors.New("connection lost during COMMIT")
	}
	return err
}

// TestWriteWithALostOutcomeIsNotKept: a message and a Yjs update whose
// writes were committed but reported failed are refused to their senders,
// so the next ones take their seqs, and the store keeps what was
// delivered, not what was refused.
func TestWriteWithALostOutcomeIsNotKept(t *testing.T) {
	ctx := context.Background()
	st := &lostOutcome{Store: openTestStore(t)}
	o := StreamOptions{HistorySize: 10, Store: st}
	b := startMemoryBroker(t, &envelopeReceiver{}, o)
	if _, err := b.PublishMessage(ctx, "r", msg("m1", true)); err != nil {
		t.Fatal(err)
	}
	st.armed = true
	if _, err := b.PublishMessage(ctx, "r", msg("refused", true)); err == nil {
		t.Fatal("the publish whose write failed was acked")
	}
	p, err := b.PublishMessage(ctx, "r", msg("m2", true))
	if err != nil || p.Position.Seq != 2 {
		t.Fatalf("next publish: %+v %v", p, err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte{0, 2, 1, 1}); err != nil {
		t.Fatal(err)
	}
	st.armed = true
	if _, err := b.AppendUpdate(ctx, "r", "", []byte{0, 2, 1, 0xee}); err == nil {
		t.Fatal("the update whose write failed was taken")
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte{0, 2, 1, 2}); err != nil {
		t.Fatal(err)
	}

	kept, err := st.Load(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if kept.Seq != 2 || len(kept.Messages) != 2 || !strings.Contains(string(kept.Messages[1].Frame), "m2") {
		t.Fatalf("stored messages: %+v", kept.Messages)
	}
	if kept.Doc.Seq != 2 || len(kept.Doc.Updates) != 2 || kept.Doc.Updates[1][3] != 2 {
		t.Fatalf("stored document: %+v", kept.Doc)
	}
}
