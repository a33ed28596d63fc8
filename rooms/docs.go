package rooms

import (
	"context"
	"errors"
	"fmt"
)

// Docs is the Yjs side of a Broker: each room's document, kept as a base
// (the merge of its first updates) and the updates that followed, with a
// Position as a room stream has: an epoch that changes when the document
// is lost or deleted, and a seq per stored update.
type Docs interface {
	// AppendUpdate stores msg (a y-websocket sync Update message) as the
	// room document's next update and publishes it to every instance as a
	// DocUpdate payload, in one step, so a document's pub/sub order is its
	// seq order. The document starts (with a new epoch) on its first
	// update. An update that would take the document's stored size (base
	// + log + msg) past StreamOptions.MaxDocBytes is neither stored nor
	// published: the error is a *DocTooLargeError, and the document is
	// unchanged.
	AppendUpdate(ctx context.Context, room, exclude string, msg []byte) (DocAppend, error)
	// Doc returns the room's document; an empty Doc (no epoch) when the
	// room has none.
	Doc(ctx context.Context, room string) (Doc, error)
	// CompactDoc replaces the updates up to at.Seq by base, their merge
	// with the document's base. It does nothing and returns false when the
	// document moved to another epoch or was compacted past at.Seq
	// meanwhile (by another instance).
	CompactDoc(ctx context.Context, room string, at Position, base []byte) (bool, error)
	// DocUpdates returns the stored update messages after seq, when the
	// document is still in epoch and holds them all after its base; ok is
	// false when they were compacted into the base (or the epoch is over).
	DocUpdates(ctx context.Context, room string, epoch string, after uint64) (msgs [][]byte, pos Position, ok bool, err error)
}

// Doc is a stored document: Base has the effect of every update up to
// BaseSeq (nil when nothing was compacted yet), Updates are the update
// messages BaseSeq+1 … Position.Seq in order.
type Doc struct {
	Position  Position
	BaseSeq   uint64
	Base      []byte
	Updates   [][]byte
	LogBytes  int64 // total size of Updates as stored
	BaseBytes int64
}

// DocAppend is the outcome of AppendUpdate: the update's position and the
// sizes a compaction is decided on.
type DocAppend struct {
	Position  Position
	BaseSeq   uint64
	LogBytes  int64
	BaseBytes int64
}

// ErrDocTooLarge is what a *DocTooLargeError is (errors.Is).
var ErrDocTooLarge = errors.New("document would pass its size limit")

// DocTooLargeError refuses an update: the document's stored size with it
// (Size) would pass Limit. LogBytes is the log's share of the stored size:
// above zero, a compaction may make room (it replaces base and log by
// their merge, which is never larger and is smaller once content was
// deleted).
type DocTooLargeError struct {
	Limit, Size, LogBytes int64
}

func (e *DocTooLargeError) Error() string {
	return fmt.Sprintf("document would be %d bytes stored, over its limit of %d; update not stored", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrDocTooLarge) hold.
func (e *DocTooLargeError) Is(target error) bool { return target == ErrDocTooLarge }
