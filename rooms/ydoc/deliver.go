package ydoc

import (
	"context"
	"errors"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// DeliverDoc takes every document payload of a room, in the room's order
// (rooms.DocHandler).
func (e *Engine) DeliverDoc(room string, env wire.Envelope) {
	r := e.room(room)
	if r == nil {
		return
	}
	switch env.Doc {
	case wire.DocUpdate:
		e.deliverUpdate(r, env)
	case wire.DocAwareness:
		e.deliverAwareness(r, env)
	case wire.DocQuery:
		if env.Exclude != e.o.Instance {
			user := string(env.Frame)
			e.async(func() { e.answerQuery(r, user) })
		}
	}
}

// deliverUpdate sends a stored update to the local connections, once and
// in order: the position decides, as for a room's stored messages.
func (e *Engine) deliverUpdate(r *docRoom, env wire.Envelope) {
	at := rooms.Position{Epoch: env.Epoch, Seq: env.Seq}
	r.mu.Lock()
	from := r.pos
	switch from.StepTo(at) {
	case rooms.StepNewEpoch:
		// The document was lost (Redis restarted empty) or deleted and
		// started again: the providers reconnect and send what they hold.
		r.pos = at
		r.mu.Unlock()
		e.log.Warn("document has a new epoch; its providers resync", "room", r.name, "old", from.Epoch, "new", at.Epoch)
		r.closeAll("document lost: reconnect and send your copy")
		return
	case rooms.StepDelivered:
		r.mu.Unlock()
		return // delivered already (by a gap fill)
	case rooms.StepGap:
		// The missed updates are read off the delivery goroutine, which
		// serves other rooms too: updates apply in any order (a provider
		// keeps one whose dependencies it lacks until they come), so this
		// one goes out now and the fill after it.
		r.pos = at
		r.mu.Unlock()
		if byReference(env) {
			e.async(func() { e.fill(r, at.Epoch, from.Seq, at.Seq, "", true) })
			return
		}
		r.send(env.Exclude, env.Frame)
		e.async(func() { e.fill(r, at.Epoch, from.Seq, at.Seq-1, "", true) })
		return
	}
	r.pos = at // the first delivery here (the baseline), or the next
	r.mu.Unlock()
	if byReference(env) {
		e.async(func() { e.fill(r, at.Epoch, at.Seq-1, at.Seq, env.Exclude, false) })
		return
	}
	r.send(env.Exclude, env.Frame)
}

// byReference reports whether env is an update published without its
// bytes (a big one: Redis would cut a subscriber holding many of them);
// the engine reads it from the document, off the delivery goroutine.
func byReference(env wire.Envelope) bool { return len(env.Frame) == 0 }

// fill sends the local connections but exclude the updates after seq from
// up to to, which this instance missed (gap) or was told of by reference.
func (e *Engine) fill(r *docRoom, epoch string, from, to uint64, exclude string, gap bool) {
	ctx, cancel := e.opContext()
	defer cancel()
	if gap {
		e.o.Events.DocGap(r.name)
	}
	msgs, _, ok, err := e.o.Broker.DocUpdates(ctx, r.name, epoch, from)
	e.sendMissed(ctx, r, msgs, ok, err, from, to, exclude)
}

// sendMissed sends the local connections but exclude what a read of the
// updates after seq from found, up to to. Where they were compacted into
// the base (!ok) or could not be read, the whole document goes out as one
// update, to every connection: updates are idempotent.
func (e *Engine) sendMissed(ctx context.Context, r *docRoom, msgs [][]byte, ok bool, readErr error, from, to uint64, exclude string) {
	if readErr == nil && ok {
		for i, m := range msgs {
			if from+uint64(i)+1 > to {
				break
			}
			r.send(exclude, m)
		}
		return
	}
	if err := r.sendWhole(ctx); err != nil {
		e.log.Warn("document gap cannot be filled; its providers resync", "room", r.name, "err", errors.Join(readErr, err))
		r.closeAll("missed document updates: reconnect")
	}
}

// sendWhole sends the local connections the whole document as one update
// (nothing when there is none).
func (r *docRoom) sendWhole(ctx context.Context) error {
	snap, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if snap.Position.Epoch != "" {
		r.send("", yjs.AppendSyncMessage(nil, yjs.SyncUpdate, snap.Doc))
	}
	return nil
}

// Resync follows a broker gap (rooms.DocHandler): updates published
// meanwhile are filled in, and the other instances are asked for their
// awareness again.
func (e *Engine) Resync(roomNames []string) {
	for _, name := range roomNames {
		r := e.room(name)
		if r == nil {
			continue
		}
		// Each room with its own deadline, off the delivery goroutine.
		e.async(func() {
			ctx, cancel := e.opContext()
			defer cancel()
			e.resync(ctx, r)
			r.mu.Lock()
			e.verifyLocked(r, "")
			r.mu.Unlock()
		})
	}
}

func (e *Engine) resync(ctx context.Context, r *docRoom) {
	r.mu.Lock()
	from := r.pos
	r.mu.Unlock()
	if from.Epoch == "" {
		// Nothing delivered here yet, so no position to fill from: the
		// whole document, once (updates are idempotent).
		if err := r.sendWhole(ctx); err != nil {
			e.log.Warn("document resync", "room", r.name, "err", err)
		}
		return
	}
	msgs, pos, ok, err := e.o.Broker.DocUpdates(ctx, r.name, from.Epoch, from.Seq)
	switch {
	case err != nil:
		// Not known what was missed: the providers reconnect and sync.
		e.log.Warn("document resync failed; its providers reconnect", "room", r.name, "err", err)
		r.closeAll("missed document updates: reconnect")
	case pos.Epoch != "" && pos.Epoch != from.Epoch:
		r.mu.Lock()
		r.pos = pos
		r.mu.Unlock()
		r.closeAll("document lost: reconnect and send your copy")
	case !ok && pos.Epoch == "":
		// Gone from the store (Redis restarted empty): the providers put
		// it back.
		r.mu.Lock()
		r.pos = rooms.Position{}
		r.mu.Unlock()
		r.closeAll("document lost: reconnect and send your copy")
	default:
		if !ok {
			e.o.Events.DocGap(r.name) // compacted away: the whole document
		}
		e.sendMissed(ctx, r, msgs, ok, nil, from.Seq, pos.Seq, "")
		r.mu.Lock()
		r.pos.Seq = max(r.pos.Seq, pos.Seq)
		r.mu.Unlock()
	}
}

// RoomDeleted closes the room's local providers: the document went with
// the room (rooms.DocHandler). The next document of the room (a new
// epoch) starts a new delivery position instead of looking like a lost
// one.
func (e *Engine) RoomDeleted(room string) {
	r := e.room(room)
	if r == nil {
		return
	}
	r.closeAll("room deleted: its document too")
	r.mu.Lock()
	r.pos = rooms.Position{}
	r.mu.Unlock()
}
