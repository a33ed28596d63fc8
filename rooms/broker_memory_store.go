package rooms

import (
	"context"
	"errors"
	"time"

	"github.com/roomcast/roomcast/rooms/store"
)

// The memory engine with a store: what it loads from it and when it lets
// an idle room go from memory (the store keeps it).

// storeWriteTimeout bounds a write through the store. It is longer than a
// client operation's own deadline: a commit may wait behind a group
// holding a big document on a busy disk, and a write given up on while it
// commits would have the client send again what the store holds.
const storeWriteTimeout = 30 * time.Second

// storeWrite writes ops through the store, waiting for the commit up to
// storeWriteTimeout whatever the caller's deadline (but not past its
// cancellation: a server shutting down stops waiting).
func (b *MemoryBroker) storeWrite(ctx context.Context, ops ...store.Op) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()
	return b.o.Store.Write(wctx, ops...)
}

// fromStore builds the records of a room the store keeps: the room (with
// no epoch when the store holds no stream of it) and its document (nil
// when none).
func (b *MemoryBroker) fromStore(kept store.Room) (*memRoom, *memDoc) {
	now := b.now()
	r := &memRoom{touched: now}
	if kept.Epoch != "" {
		r.epoch, r.seq = kept.Epoch, kept.Seq
		for _, m := range kept.Messages {
			if b.o.HistorySize > 0 {
				r.push(StoredMessage{Seq: m.Seq, Frame: m.Frame, Exclude: m.Exclude}, b.o.HistorySize)
			}
		}
		if kept.State != nil {
			r.state = &State{Seq: kept.State.Seq, Data: kept.State.Data}
		}
	}
	if kept.Doc.Epoch == "" {
		return r, nil
	}
	d := &memDoc{epoch: kept.Doc.Epoch, baseSeq: kept.Doc.BaseSeq, seq: kept.Doc.Seq, base: kept.Doc.Base, log: kept.Doc.Updates, touched: now}
	for _, u := range d.log {
		d.logBytes += int64(len(u))
	}
	return r, d
}

// evictIdle lets rooms idle past their TTLs go from memory, with their
// documents: HistoryTTL after the last stored message, DocTTL after the
// document's last update. A room in use stays: one with subscribers,
// publish keys still in their window, or a write under way. b.mu held.
func (b *MemoryBroker) evictIdle(now time.Time) {
	for name, r := range b.rooms {
		if _, subscribed := b.subs[name]; subscribed {
			continue
		}
		if !r.deliverMu.TryLock() {
			continue // a write is under way
		}
		r.mu.Lock()
		idle := now.Sub(r.touched) >= b.o.HistoryTTL && len(r.keys) == 0
		if idle {
			b.docMu.Lock()
			if d := b.docs[name]; d != nil && now.Sub(d.touched) < b.o.DocTTL {
				idle = false
			} else {
				delete(b.docs, name)
			}
			b.docMu.Unlock()
		}
		if idle {
			r.dead = true
			delete(b.rooms, name)
		}
		r.mu.Unlock()
		r.deliverMu.Unlock()
	}
}
