package rooms

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/tests/redisproc"
)

// The Redis broker writing behind to a store (SQLite here: the broker
// only needs the Store seam; the end-to-end tests use PostgreSQL).

func writeBehindBroker(t *testing.T, srv *redisproc.Server, kept store.Store) *RedisBroker {
	t.Helper()
	o := fastOptions()
	o.Stream = StreamOptions{HistorySize: 100, Store: kept}
	o.StoreDelay = 100 * time.Millisecond
	return startRedisBroker(t, srv, newRecordingReceiver(), o)
}

func dirtyRooms(t *testing.T, rc *redis.Client) []string {
	t.Helper()
	rooms, err := rc.ZRange(context.Background(), "test:dirty", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return rooms
}

// A room written, saved, then lost from Redis comes back from the store in
// its epoch: position, history, state and document.
func TestRedisBrokerWriteBehindRestoresALostRoom(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	kept := openTestStore(t)
	b := writeBehindBroker(t, srv, kept)

	var last Published
	for _, f := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		p, err := b.PublishMessage(ctx, "r", Message{Frame: []byte(f), Stored: true})
		if err != nil {
			t.Fatal(err)
		}
		last = p
	}
	if err := b.SaveState(ctx, "r", last.Position, []byte(`{"s":3}`)); err != nil {
		t.Fatal(err)
	}
	app, err := b.AppendUpdate(ctx, "r", "", []byte("update-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dirtyRooms(t, rc); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("dirty rooms %v, want [r]", got)
	}
	eventually(t, "the room saved", func() bool { return len(dirtyRooms(t, rc)) == 0 })
	if r, err := kept.Load(ctx, "r"); err != nil || r.Seq != 3 || r.State == nil || r.Doc.Seq != 1 {
		t.Fatalf("store holds %+v (%v)", r, err)
	}

	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	pos, err := b.Position(ctx, "r")
	if err != nil || pos != last.Position {
		t.Fatalf("position after flush %+v (%v), want %+v", pos, err, last.Position)
	}
	h, err := b.History(ctx, "r", 1, 10)
	if err != nil || !h.Complete || len(h.Messages) != 2 || h.Messages[1].Seq != 3 {
		t.Fatalf("history after flush %+v (%v)", h, err)
	}
	_, st, err := b.State(ctx, "r")
	if err != nil || st == nil || string(st.Data) != `{"s":3}` {
		t.Fatalf("state after flush %+v (%v)", st, err)
	}
	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	d, err := b.Doc(ctx, "r")
	if err != nil || d.Position != app.Position || len(d.Updates) != 1 || string(d.Updates[0]) != "update-1" {
		t.Fatalf("document after flush %+v (%v), want at %+v", d, err, app.Position)
	}
	// The next update goes on in the document's epoch.
	next, err := b.AppendUpdate(ctx, "r", "", []byte("update-2"))
	if err != nil || next.Position.Epoch != app.Position.Epoch || next.Position.Seq != 2 {
		t.Fatalf("append after flush %+v (%v)", next, err)
	}
	// A restore marks nothing dirty; the append did.
	if got := dirtyRooms(t, rc); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("dirty rooms %v, want [r]", got)
	}
}

// Two instances that miss the same room at once agree on one epoch, with
// the store holding the room and without.
func TestRedisBrokerWriteBehindOneEpochForTwoInstances(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	kept := openTestStore(t)
	a := writeBehindBroker(t, srv, kept)
	b := writeBehindBroker(t, srv, kept)
	p, err := a.PublishMessage(ctx, "kept", Message{Frame: []byte(`{}`), Stored: true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the room saved", func() bool { return len(dirtyRooms(t, rc)) == 0 })
	for range 5 {
		if err := rc.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for _, room := range []string{"kept", "new"} {
			var wg sync.WaitGroup
			got := make([]Position, 2)
			for i, br := range []*RedisBroker{a, b} {
				wg.Go(func() {
					pos, err := br.Position(ctx, room)
					if err != nil {
						t.Error(err)
					}
					got[i] = pos
				})
			}
			wg.Wait()
			if got[0] != got[1] || got[0].Epoch == "" {
				t.Fatalf("room %s: instances at %+v and %+v", room, got[0], got[1])
			}
			if room == "kept" && got[0] != p.Position {
				t.Fatalf("kept room at %+v, want %+v", got[0], p.Position)
			}
		}
	}
}

// Without a store, nothing is marked and a lost room starts a new epoch,
// as before.
func TestRedisBrokerWithoutStoreMarksNothing(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	o := fastOptions()
	o.Stream = StreamOptions{HistorySize: 100}
	b := startRedisBroker(t, srv, newRecordingReceiver(), o)
	p, err := b.PublishMessage(ctx, "r", Message{Frame: []byte(`{}`), Stored: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte("u")); err != nil {
		t.Fatal(err)
	}
	if n := rc.Exists(ctx, "test:dirty").Val(); n != 0 {
		t.Fatal("a room was marked dirty without a store")
	}
	_ = rc.FlushAll(ctx).Err()
	pos, err := b.Position(ctx, "r")
	if err != nil || pos.Epoch == p.Position.Epoch || pos.Seq != 0 {
		t.Fatalf("position after flush %+v (%v), want a new epoch", pos, err)
	}
}

// The stream and document behaviour tables hold with a store behind Redis.
func TestRedisStreamWithStore(t *testing.T) {
	testStream(t, redisStoredBroker(redisproc.Start(t)))
}

func TestRedisDocsWithStore(t *testing.T) {
	testDocs(t, redisStoredBroker(redisproc.Start(t)))
}

func redisStoredBroker(srv *redisproc.Server) newStreamBroker {
	return func(t *testing.T, r Receiver, o StreamOptions) Broker {
		ro := fastOptions()
		o.Store = openTestStore(t)
		ro.Stream = o
		ro.StoreDelay = 100 * time.Millisecond
		return startRedisBroker(t, srv, r, ro)
	}
}

// downStore is a store whose writes fail while down is set.
type downStore struct {
	store.Store
	down atomic.Bool
}

func (s *downStore) Write(ctx context.Context, ops ...store.Op) error {
	if s.down.Load() {
		return errors.New("store unreachable")
	}
	return s.Store.Write(ctx, ops...)
}

// brokerOverADownStore starts a broker writing behind a store that is down
// (kept.down), saving 100 ms after a change, and counts its failed saves.
func brokerOverADownStore(t *testing.T, srv *redisproc.Server, so StreamOptions) (*RedisBroker, *downStore, *atomic.Int64) {
	t.Helper()
	kept := &downStore{Store: openTestStore(t)}
	kept.down.Store(true)
	failures := new(atomic.Int64)
	o := fastOptions()
	so.Store = kept
	o.Stream = so
	o.StoreDelay = 100 * time.Millisecond
	o.OnSave = func(_ string, err error) {
		if err != nil {
			failures.Add(1)
		}
	}
	return startRedisBroker(t, srv, newRecordingReceiver(), o), kept, failures
}

// While the store is down, rooms stay marked and the saver retries; once
// it is back, the backlog is written.
func TestRedisBrokerWriteBehindRetriesWhileTheStoreIsDown(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	b, kept, failures := brokerOverADownStore(t, srv, StreamOptions{HistorySize: 100})
	p, err := b.PublishMessage(ctx, "r", Message{Frame: []byte(`{}`), Stored: true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed save", func() bool { return failures.Load() > 0 })
	if got := dirtyRooms(t, rc); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("dirty rooms %v while the store is down, want [r]", got)
	}
	kept.down.Store(false)
	eventually(t, "the room saved", func() bool { return len(dirtyRooms(t, rc)) == 0 })
	if r, err := kept.Load(ctx, "r"); err != nil || r.Epoch != p.Position.Epoch || r.Seq != 1 {
		t.Fatalf("store holds %+v (%v)", r, err)
	}
}

// Close saves every dirty room before it returns, however recent.
func TestRedisBrokerWriteBehindSavesOnClose(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	kept := openTestStore(t)
	o := fastOptions()
	o.Stream = StreamOptions{HistorySize: 100, Store: kept}
	o.StoreDelay = time.Hour
	b := startRedisBroker(t, srv, newRecordingReceiver(), o)
	if _, err := b.PublishMessage(ctx, "r", Message{Frame: []byte(`{}`), Stored: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte("u")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dirtyRooms(t, rc); len(got) != 0 {
		t.Fatalf("dirty rooms %v after Close", got)
	}
	if r, err := kept.Load(ctx, "r"); err != nil || r.Seq != 1 || r.Doc.Seq != 1 {
		t.Fatalf("store holds %+v (%v)", r, err)
	}
}

// A dirty room's changed keys keep no TTL until it is saved: a hot-tier
// TTL shorter than the time the store is down loses nothing. Once saved,
// they get their TTL back.
func TestRedisBrokerWriteBehindUnsavedRoomsOutliveTheirTTL(t *testing.T) {
	srv := redisproc.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	b, kept, failures := brokerOverADownStore(t, srv, StreamOptions{HistorySize: 100, HistoryTTL: 300 * time.Millisecond, DocTTL: 300 * time.Millisecond})
	p, err := b.PublishMessage(ctx, "r", Message{Frame: []byte(`{}`), Stored: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SaveState(ctx, "r", p.Position, []byte(`{"s":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte("u")); err != nil {
		t.Fatal(err)
	}
	k := b.keys("r")
	ttls := func() []time.Duration {
		var out []time.Duration
		for _, key := range []string{k.Meta, k.Stream, k.State, k.Doc, k.DocLog} {
			d, err := rc.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	for i, d := range ttls() {
		if d != -1 {
			t.Fatalf("key %d of the unsaved room has TTL %v, want none: %v", i, d, ttls())
		}
	}
	// Two failed saves are at least a second: well past the TTLs.
	eventually(t, "two failed saves", func() bool { return failures.Load() >= 2 })
	kept.down.Store(false)
	eventually(t, "the room saved", func() bool { return len(dirtyRooms(t, rc)) == 0 })
	r, err := kept.Load(ctx, "r")
	if err != nil || r.Epoch != p.Position.Epoch || r.Seq != 1 || len(r.Messages) != 1 || r.State == nil || string(r.State.Data) != `{"s":1}` || r.Doc.Seq != 1 {
		t.Fatalf("store holds %+v (%v)", r, err)
	}
	for i, d := range ttls() {
		if d <= 0 && d != -2 { // -2: expired already
			t.Fatalf("key %d of the saved room has TTL %v, want one: %v", i, d, ttls())
		}
	}
	eventually(t, "the saved room gone from Redis", func() bool {
		n, err := rc.Exists(ctx, k.Meta, k.Stream, k.State, k.Doc, k.DocLog).Result()
		return err == nil && n == 0
	})
}
