package ydoc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Snapshot is a document merged (and compacted) up to Position. It is
// never changed once made: Doc may be sent as it is.
type Snapshot struct {
	Position rooms.Position // Epoch "" when the room has no document
	Doc      []byte         // the whole document as one Yjs update
	sv       yjs.StateVector
	whole    *wholeStep2 // shared by the copies of one snapshot; nil in the zero value
}

// wholeStep2 is the step 2 message holding a whole snapshot, made once
// for every joiner that has nothing yet.
type wholeStep2 struct {
	once sync.Once
	msg  []byte
}

func newSnapshot(pos rooms.Position, doc []byte, sv yjs.StateVector) Snapshot {
	return Snapshot{Position: pos, Doc: doc, sv: sv, whole: new(wholeStep2)}
}

// step2 returns the sync step 2 message answering a client whose state
// vector is sv: what it lacks of the document. A client that has nothing
// (an empty state vector, every new provider) gets the snapshot as it is,
// in one message shared with every other such client.
func (sn Snapshot) step2(sv yjs.StateVector) ([]byte, error) {
	if len(sv) == 0 {
		if sn.whole == nil {
			return yjs.AppendSyncMessage(nil, yjs.SyncStep2, sn.Doc), nil
		}
		sn.whole.once.Do(func() { sn.whole.msg = yjs.AppendSyncMessage(nil, yjs.SyncStep2, sn.Doc) })
		return sn.whole.msg, nil
	}
	diff, err := yjs.DiffUpdate(sn.Doc, sv)
	if err != nil {
		return nil, fmt.Errorf("diff the document: %w", err)
	}
	return yjs.AppendSyncMessage(nil, yjs.SyncStep2, diff), nil
}

// snapshots is a document's cached snapshot.
type snapshots struct {
	// lock serialises snapshot reads: a 1-slot semaphore, so that a
	// joiner waiting behind a slow compaction gives up with its context.
	lock     chan struct{}
	cache    Snapshot // guarded by lock
	cacheGen uint64   // the value of gen when cache was made; guarded by lock
	// gen moves when the document is lost or deleted: a cache made
	// before is not used. Dropping the cache this way never waits for
	// lock, so a delivery never waits behind a compaction.
	gen atomic.Uint64
}

// Snapshot returns the room's document merged into one update: from the
// cache of the room's local providers when it has some, else read and
// merged afresh (nothing is kept or written).
func (e *Engine) Snapshot(ctx context.Context, room string) (Snapshot, error) {
	return e.roomOrDetached(room).snapshot(ctx)
}

// snapshot returns the document merged up to now: the cache plus the
// updates stored since, or a fresh read when the cache is of another epoch
// or its updates were compacted away.
func (r *docRoom) snapshot(ctx context.Context) (Snapshot, error) {
	select {
	case r.lock <- struct{}{}:
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("wait for the document's snapshot: %w", ctx.Err())
	}
	defer func() { <-r.lock }()
	if gen := r.gen.Load(); r.cacheGen != gen {
		r.cache, r.cacheGen = Snapshot{}, gen
	}
	b := r.e.o.Broker
	if c := r.cache; c.Position.Epoch != "" {
		msgs, pos, ok, err := b.DocUpdates(ctx, r.name, c.Position.Epoch, c.Position.Seq)
		if err != nil {
			return Snapshot{}, err
		}
		if ok {
			if len(msgs) == 0 {
				return c, nil
			}
			return r.merge(c.Doc, msgs, pos)
		}
	}
	doc, err := b.Doc(ctx, r.name)
	if err != nil {
		return Snapshot{}, err
	}
	if doc.Position.Epoch == "" {
		r.cache = newSnapshot(rooms.Position{}, yjs.EmptyUpdate, yjs.StateVector{})
		return r.cache, nil
	}
	// The delivery position is never taken from a read: an update stored
	// before it may still be on its way, and the first delivery after the
	// subscription is the baseline.
	return r.merge(doc.Base, doc.Updates, doc.Position)
}

// merge compacts base and the update messages msgs into the cached
// snapshot at pos. r.lock is held.
func (r *docRoom) merge(base []byte, msgs [][]byte, pos rooms.Position) (Snapshot, error) {
	us := make([][]byte, 0, len(msgs)+1)
	if len(base) > 0 {
		us = append(us, base)
	}
	for i, m := range msgs {
		u, err := updateOf(m)
		if err != nil {
			// Never expected (every entry was validated before it was
			// stored); one bad entry must not make the document unreadable.
			r.e.log.Error("skipped a stored document entry", "room", r.name, "seq", pos.Seq-uint64(len(msgs)-1-i), "err", err)
			continue
		}
		us = append(us, u)
	}
	doc, err := yjs.Compact(us)
	if err != nil {
		return Snapshot{}, fmt.Errorf("merge the document's updates: %w", err)
	}
	sv, err := yjs.StateVectorOf(doc)
	if err != nil {
		return Snapshot{}, fmt.Errorf("state vector of the document: %w", err)
	}
	r.cache = newSnapshot(pos, doc, sv)
	return r.cache, nil
}

// updateOf returns the update inside a stored sync Update message.
func updateOf(msg []byte) ([]byte, error) {
	if len(msg) < 3 || msg[0] != yjs.MessageSync || msg[1] != yjs.SyncUpdate {
		return nil, errors.New("stored document entry is not a sync update message")
	}
	n, k := binary.Uvarint(msg[2:])
	if k <= 0 || uint64(len(msg)-2-k) != n {
		return nil, errors.New("stored document entry has a bad length")
	}
	return msg[2+k:], nil
}

// Append stores and publishes an update message (a y-websocket sync
// Update) to the room's document from outside its providers (HTTP): it
// reaches every provider on every instance. See append.
func (e *Engine) Append(ctx context.Context, room string, msg []byte) error {
	return e.append(ctx, e.roomOrDetached(room), "", msg)
}

// append stores and publishes an update message sent by the connection
// exclude ("" for none: it reaches every provider), and compacts the
// document in the background once its updates outweigh its base.
//
// The broker's MaxDocBytes bounds what is stored: base + log + this
// update. When the update would pass it and the document has a log, the
// document is compacted first (the merge drops deleted content, so a
// document near the limit that was mostly edited makes room) and the
// update tried once more; still over, it is refused (rooms.ErrDocTooLarge)
// and nothing changed.
func (e *Engine) append(ctx context.Context, r *docRoom, exclude string, msg []byte) error {
	b := e.o.Broker
	res, err := b.AppendUpdate(ctx, r.name, exclude, msg)
	var tooLarge *rooms.DocTooLargeError
	if errors.As(err, &tooLarge) && tooLarge.LogBytes > 0 {
		if cerr := e.compact(ctx, r); cerr != nil {
			e.log.Warn("compact a document at its size limit", "room", r.name, "err", cerr)
			return err
		}
		res, err = b.AppendUpdate(ctx, r.name, exclude, msg)
	}
	if err != nil {
		return err
	}
	e.o.Events.DocStored(r.name, res.Position, res.BaseBytes+res.LogBytes)
	if res.LogBytes < max(res.BaseBytes, compactMinBytes) {
		return nil
	}
	r.mu.Lock()
	busy := r.compacting
	r.compacting = true
	r.mu.Unlock()
	if busy {
		return nil
	}
	e.async(func() {
		defer func() { r.mu.Lock(); r.compacting = false; r.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(e.ctx, compactTimeout)
		defer cancel()
		if err := e.compact(ctx, r); err != nil {
			e.log.Warn("compact document", "room", r.name, "err", err)
		}
	})
	return nil
}

// compact writes the document's merge as its new base. Another instance
// compacting at the same time makes this one a no-op.
func (e *Engine) compact(ctx context.Context, r *docRoom) error {
	start := time.Now()
	snap, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if snap.Position.Epoch == "" {
		return nil
	}
	ok, err := e.o.Broker.CompactDoc(ctx, r.name, snap.Position, snap.Doc)
	if err != nil {
		return err
	}
	if ok {
		e.o.Events.DocCompacted(r.name)
		e.log.Debug("compacted document", "room", r.name, "seq", snap.Position.Seq, "bytes", len(snap.Doc), "took", time.Since(start).String())
	}
	return nil
}
