package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
)

// The document behaviour table every Broker passes, memory and Redis alike.

func updateMsg(i int) []byte { return []byte(fmt.Sprintf("\x00\x02\x05upd%02d", i)) }

func testDocs(t *testing.T, newBroker newStreamBroker) {
	ctx := context.Background()
	room := func(t *testing.T) string { return strings.ReplaceAll(t.Name(), "/", ".") }

	t.Run("append, read, deliver in seq order", func(t *testing.T) {
		r := &envelopeReceiver{}
		b := newBroker(t, r, StreamOptions{HistorySize: 10})
		name := room(t)
		if d, err := b.Doc(ctx, name); err != nil || d.Position.Epoch != "" || len(d.Updates) != 0 {
			t.Fatalf("a room without a document: %+v %v", d, err)
		}
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		var epoch string
		for i := 1; i <= 5; i++ {
			res, err := b.AppendUpdate(ctx, name, "conn-1", updateMsg(i))
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				epoch = res.Position.Epoch
			}
			if res.Position != (Position{Epoch: epoch, Seq: uint64(i)}) || res.LogBytes != int64(i*len(updateMsg(i))) || res.BaseSeq != 0 {
				t.Fatalf("append %d: %+v", i, res)
			}
		}
		d, err := b.Doc(ctx, name)
		if err != nil || d.Position != (Position{Epoch: epoch, Seq: 5}) || len(d.Updates) != 5 || d.Base != nil {
			t.Fatalf("doc: %+v %v", d, err)
		}
		for i, u := range d.Updates {
			if string(u) != string(updateMsg(i+1)) {
				t.Fatalf("update %d is %q", i+1, u)
			}
		}
		waitFor(t, func() bool { return len(r.envelopes()) == 5 })
		for i, e := range r.envelopes() {
			if e.Doc != wire.DocUpdate || e.Stored() || e.Epoch != epoch || e.Seq != uint64(i+1) || e.Exclude != "conn-1" || string(e.Frame) != string(updateMsg(i+1)) {
				t.Fatalf("delivery %d: %+v", i+1, e)
			}
		}
		msgs, pos, ok, err := b.DocUpdates(ctx, name, epoch, 3)
		if err != nil || !ok || pos.Seq != 5 || len(msgs) != 2 || string(msgs[0]) != string(updateMsg(4)) {
			t.Fatalf("updates after 3: %q %+v %v %v", msgs, pos, ok, err)
		}
		if msgs, _, ok, _ := b.DocUpdates(ctx, name, epoch, 5); !ok || len(msgs) != 0 {
			t.Fatalf("updates after the last: %q %v", msgs, ok)
		}
		if _, _, ok, _ := b.DocUpdates(ctx, name, "other-epoch", 3); ok {
			t.Fatal("updates of another epoch reported ok")
		}
	})

	t.Run("compaction replaces a prefix of the log", func(t *testing.T) {
		b := newBroker(t, &envelopeReceiver{}, StreamOptions{HistorySize: 10})
		name := room(t)
		var pos Position
		for i := 1; i <= 4; i++ {
			res, err := b.AppendUpdate(ctx, name, "", updateMsg(i))
			if err != nil {
				t.Fatal(err)
			}
			pos = res.Position
		}
		at := Position{Epoch: pos.Epoch, Seq: 3}
		if ok, err := b.CompactDoc(ctx, name, at, []byte("BASE123")); err != nil || !ok {
			t.Fatalf("compact: %v %v", ok, err)
		}
		// The same compaction again, an older one and one of another epoch
		// do nothing (another instance got there first).
		for _, again := range []Position{at, {Epoch: pos.Epoch, Seq: 2}, {Epoch: "x", Seq: 4}, {Epoch: pos.Epoch, Seq: 9}} {
			if ok, err := b.CompactDoc(ctx, name, again, []byte("nope")); err != nil || ok {
				t.Fatalf("compact at %+v after 3: %v %v", again, ok, err)
			}
		}
		res, err := b.AppendUpdate(ctx, name, "", updateMsg(5))
		if err != nil || res.BaseSeq != 3 || res.BaseBytes != 7 || res.LogBytes != int64(2*len(updateMsg(4))) {
			t.Fatalf("append after compaction: %+v %v", res, err)
		}
		d, err := b.Doc(ctx, name)
		if err != nil || string(d.Base) != "BASE123" || d.BaseSeq != 3 || len(d.Updates) != 2 || string(d.Updates[0]) != string(updateMsg(4)) || d.Position.Seq != 5 {
			t.Fatalf("doc after compaction: %+v %v", d, err)
		}
		if _, _, ok, _ := b.DocUpdates(ctx, name, pos.Epoch, 2); ok {
			t.Fatal("updates compacted into the base reported as held")
		}
		if msgs, _, ok, _ := b.DocUpdates(ctx, name, pos.Epoch, 3); !ok || len(msgs) != 2 {
			t.Fatalf("updates after the base: %q %v", msgs, ok)
		}
	})

	t.Run("an update that would pass MaxDocBytes is refused and not delivered", func(t *testing.T) {
		r := &envelopeReceiver{}
		n := int64(len(updateMsg(1)))
		b := newBroker(t, r, StreamOptions{HistorySize: 10, MaxDocBytes: 3 * n})
		name := room(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		// Too large on its own: no document is started.
		big := append(updateMsg(0), make([]byte, 3*n)...)
		_, err := b.AppendUpdate(ctx, name, "", big)
		var tooLarge *DocTooLargeError
		if !errors.As(err, &tooLarge) || !errors.Is(err, ErrDocTooLarge) || tooLarge.Limit != 3*n || tooLarge.Size != int64(len(big)) || tooLarge.LogBytes != 0 {
			t.Fatalf("an update over the limit by itself: %v (%+v)", err, tooLarge)
		}
		if d, err := b.Doc(ctx, name); err != nil || d.Position.Epoch != "" {
			t.Fatalf("a refused first update started a document: %+v %v", d, err)
		}
		var pos Position
		for i := 1; i <= 3; i++ { // exactly the limit
			res, err := b.AppendUpdate(ctx, name, "", updateMsg(i))
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			pos = res.Position
		}
		_, err = b.AppendUpdate(ctx, name, "", updateMsg(4))
		if !errors.As(err, &tooLarge) || tooLarge.Size != 4*n || tooLarge.LogBytes != 3*n {
			t.Fatalf("the update past the limit: %v (%+v)", err, tooLarge)
		}
		d, err := b.Doc(ctx, name)
		if err != nil || d.Position != pos || len(d.Updates) != 3 || d.LogBytes != 3*n {
			t.Fatalf("the document changed: %+v %v", d, err)
		}
		// The limit counts what is stored: a compaction that makes room
		// lets the update in, and is never refused itself.
		if ok, err := b.CompactDoc(ctx, name, pos, []byte("B")); err != nil || !ok {
			t.Fatalf("compact at the limit: %v %v", ok, err)
		}
		res, err := b.AppendUpdate(ctx, name, "", updateMsg(4))
		if err != nil || res.Position.Seq != 4 || res.BaseBytes+res.LogBytes != 1+n {
			t.Fatalf("append after a compaction made room: %+v %v", res, err)
		}
		waitFor(t, func() bool { return len(r.envelopes()) == 4 })
		time.Sleep(50 * time.Millisecond)
		for i, e := range r.envelopes() {
			if e.Seq != uint64(i+1) || len(e.Frame) != int(n) {
				t.Fatalf("delivery %d: %+v (a refused update was published?)", i+1, e)
			}
		}
	})

	t.Run("reset deletes the document", func(t *testing.T) {
		b := newBroker(t, &envelopeReceiver{}, StreamOptions{HistorySize: 10})
		name := room(t)
		first, err := b.AppendUpdate(ctx, name, "", updateMsg(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Reset(ctx, name); err != nil {
			t.Fatal(err)
		}
		if d, err := b.Doc(ctx, name); err != nil || d.Position.Epoch != "" {
			t.Fatalf("doc after reset: %+v %v", d, err)
		}
		again, err := b.AppendUpdate(ctx, name, "", updateMsg(2))
		if err != nil || again.Position.Epoch == first.Position.Epoch || again.Position.Seq != 1 {
			t.Fatalf("first update after reset: %+v %v (before: %+v)", again, err, first)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMemoryDocs(t *testing.T) { testDocs(t, startMemoryBroker) }

func TestRedisDocs(t *testing.T) { testDocs(t, redisStreamBroker(redisproc.Start(t))) }

// The memory engine forgets a document DocTTL after its last update.
func TestMemoryDocExpires(t *testing.T) {
	b := NewMemoryBroker(StreamOptions{DocTTL: time.Hour})
	now := time.Now()
	b.now = func() time.Time { return now }
	ctx := context.Background()
	if err := b.Start(ctx, &envelopeReceiver{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.AppendUpdate(ctx, "r", "", updateMsg(1)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Minute)
	if d, _ := b.Doc(ctx, "r"); d.Position.Seq != 1 {
		t.Fatalf("before the TTL: %+v", d)
	}
	now = now.Add(2 * time.Minute)
	if d, _ := b.Doc(ctx, "r"); d.Position.Epoch != "" {
		t.Fatalf("after the TTL: %+v", d)
	}
}

// Redis expires a document's keys DOC_TTL after its last update.
func TestRedisDocTTL(t *testing.T) {
	srv := redisproc.Start(t)
	ro := fastOptions()
	ro.Stream = StreamOptions{DocTTL: time.Hour}
	b := startRedisBroker(t, srv, &envelopeReceiver{}, ro)
	ctx := context.Background()
	if _, err := b.AppendUpdate(ctx, "r", "", updateMsg(1)); err != nil {
		t.Fatal(err)
	}
	k := wire.RoomKeys(ro.Prefix, "r")
	for _, key := range []string{k.Doc, k.DocLog} {
		ttl, err := srv.Client(t).PTTL(ctx, key).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Fatalf("%s expires in %v (%v), want about 1h", key, ttl, err)
		}
	}
}
