package rooms

import (
	"context"
	"fmt"
	"time"

	"github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/wire"
)

// memDoc is a room's document in the memory engine.
type memDoc struct {
	epoch    string
	baseSeq  uint64
	seq      uint64
	base     []byte
	log      [][]byte // updates baseSeq+1 … seq
	logBytes int64
	touched  time.Time
}

func (d *memDoc) append(msg []byte) {
	d.seq++
	d.log = append(d.log, msg)
	d.logBytes += int64(len(msg))
}

func (d *memDoc) result() DocAppend {
	return DocAppend{Position: Position{Epoch: d.epoch, Seq: d.seq}, BaseSeq: d.baseSeq, LogBytes: d.logBytes, BaseBytes: int64(len(d.base))}
}

// doc returns the room's live document, nil when it has none; b.docMu held.
// With a store, an idle document leaves memory with its room (evictIdle)
// and is loaded again from the store (resident).
func (b *MemoryBroker) docLocked(room string, now time.Time) *memDoc {
	d := b.docs[room]
	if d != nil && b.o.Store == nil && now.Sub(d.touched) >= b.o.DocTTL {
		delete(b.docs, room)
		return nil
	}
	return d
}

// fits refuses msg when it would take d (nil: no document yet) past
// MaxDocBytes; b.docMu held, so the check and the append are one step.
func (b *MemoryBroker) fits(d *memDoc, msg []byte) error {
	var stored, log int64
	if d != nil {
		log = d.logBytes
		stored = int64(len(d.base)) + log
	}
	if size := stored + int64(len(msg)); size > b.o.MaxDocBytes {
		return &DocTooLargeError{Limit: b.o.MaxDocBytes, Size: size, LogBytes: log}
	}
	return nil
}

// AppendUpdate implements Docs. It delivers under the room's delivery lock,
// so the room keeps one order whoever publishes. With a store, the update
// is written to it first.
func (b *MemoryBroker) AppendUpdate(ctx context.Context, room, exclude string, msg []byte) (DocAppend, error) {
	if b.down() {
		return DocAppend{}, ErrBrokerDown
	}
	r, err := b.room(ctx, room)
	if err != nil {
		return DocAppend{}, err
	}
	r.mu.Unlock()
	r.deliverMu.Lock()
	defer r.deliverMu.Unlock()
	now := b.now()
	b.docMu.Lock()
	d := b.docLocked(room, now)
	if err := b.fits(d, msg); err != nil {
		b.docMu.Unlock()
		return DocAppend{}, err
	}
	epoch, seq := NewEpoch(), uint64(1)
	if d != nil {
		epoch, seq = d.epoch, d.seq+1
	}
	msg = append([]byte(nil), msg...) // it is queued on sockets and kept
	if b.o.Store != nil {
		// The room's delivery lock keeps the document's epoch and seq
		// as they are while the store commits; b.docMu, which every
		// room needs, is not held.
		b.docMu.Unlock()
		err := b.storeWrite(ctx, store.Op{Kind: store.OpDocUpdate, Room: room, Epoch: epoch, Seq: seq, Data: msg})
		if err != nil {
			return DocAppend{}, fmt.Errorf("store update %d of the document of room %q: %w", seq, room, err)
		}
		b.docMu.Lock()
		d = b.docs[room]
	}
	if d == nil {
		d = &memDoc{epoch: epoch}
		b.docs[room] = d
	}
	d.append(msg)
	d.touched = now
	res := d.result()
	b.docMu.Unlock()
	if recv, ok := b.subscribed(room); ok {
		recv.Deliver(room, wire.SealDocUpdate(exclude, res.Position.Epoch, res.Position.Seq, msg))
	}
	return res, nil
}

// Doc implements Docs.
func (b *MemoryBroker) Doc(ctx context.Context, room string) (Doc, error) {
	if b.down() {
		return Doc{}, ErrBrokerDown
	}
	if _, err := b.resident(ctx, room, false); err != nil {
		return Doc{}, err
	}
	b.docMu.Lock()
	defer b.docMu.Unlock()
	d := b.docLocked(room, b.now())
	if d == nil {
		return Doc{}, nil
	}
	return Doc{
		Position:  Position{Epoch: d.epoch, Seq: d.seq},
		BaseSeq:   d.baseSeq,
		Base:      d.base,
		Updates:   append([][]byte(nil), d.log...),
		LogBytes:  d.logBytes,
		BaseBytes: int64(len(d.base)),
	}, nil
}

// DocUpdates implements Docs.
func (b *MemoryBroker) DocUpdates(ctx context.Context, room, epoch string, after uint64) ([][]byte, Position, bool, error) {
	if b.down() {
		return nil, Position{}, false, ErrBrokerDown
	}
	if _, err := b.resident(ctx, room, false); err != nil {
		return nil, Position{}, false, err
	}
	b.docMu.Lock()
	defer b.docMu.Unlock()
	d := b.docLocked(room, b.now())
	if d == nil {
		return nil, Position{}, false, nil
	}
	pos := Position{Epoch: d.epoch, Seq: d.seq}
	if d.epoch != epoch || after < d.baseSeq {
		return nil, pos, false, nil
	}
	if after >= d.seq {
		return nil, pos, true, nil
	}
	return append([][]byte(nil), d.log[after-d.baseSeq:]...), pos, true, nil
}

// CompactDoc implements Docs. With a store, the new base is written to it
// first (outside b.docMu).
func (b *MemoryBroker) CompactDoc(ctx context.Context, room string, at Position, base []byte) (bool, error) {
	if b.down() {
		return false, ErrBrokerDown
	}
	if _, err := b.resident(ctx, room, false); err != nil {
		return false, err
	}
	b.docMu.Lock()
	defer b.docMu.Unlock()
	d := b.docLocked(room, b.now())
	if d == nil || d.epoch != at.Epoch || at.Seq <= d.baseSeq || at.Seq > d.seq {
		return false, nil
	}
	if b.o.Store != nil {
		b.docMu.Unlock()
		err := b.storeWrite(ctx, store.Op{Kind: store.OpDocBase, Room: room, Epoch: at.Epoch, Seq: at.Seq, Data: base})
		b.docMu.Lock()
		if err != nil {
			return false, fmt.Errorf("store the compacted document of room %q: %w", room, err)
		}
		// Another compaction or a reset may have run meanwhile.
		if d = b.docs[room]; d == nil || d.epoch != at.Epoch || at.Seq <= d.baseSeq || at.Seq > d.seq {
			return false, nil
		}
	}
	n := at.Seq - d.baseSeq
	for _, m := range d.log[:n] {
		d.logBytes -= int64(len(m))
	}
	d.log = append([][]byte(nil), d.log[n:]...)
	d.base = base
	d.baseSeq = at.Seq
	return true, nil
}

// dropDoc forgets the room's document (Reset).
func (b *MemoryBroker) dropDoc(room string) {
	b.docMu.Lock()
	delete(b.docs, room)
	b.docMu.Unlock()
}

// sweepDocs forgets documents past their TTL.
func (b *MemoryBroker) sweepDocs(now time.Time) {
	b.docMu.Lock()
	defer b.docMu.Unlock()
	for name, d := range b.docs {
		if now.Sub(d.touched) >= b.o.DocTTL {
			delete(b.docs, name)
		}
	}
}
