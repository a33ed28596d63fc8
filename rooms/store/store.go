// Package store keeps rooms for good: each room's position (epoch and last
// seq), the stored messages of its history window, its latest state, its
// Yjs document (a base and the updates after it) and its versions. It is
// what outlives a restart, a crash, a Redis flush and the hot tier's TTLs.
//
// Two implementations sit side by side: SQLite (one instance, the default
// without Redis; the store is then the engine's log, written before an
// ack) and PostgreSQL (shared by a cluster; written behind Redis by one
// instance at a time). Both share one behaviour table in store_test.go.
//
// Writes are batches of Ops applied in order in one transaction; batches
// from many callers are committed together by one writer (group commit),
// and Write returns once its batch is durable.
package store

import (
	"context"
	"errors"
	"time"
)

// Store is the durable copy of every room.
type Store interface {
	// Load returns what is kept of room; Room.Epoch is "" when the store
	// holds nothing of it.
	Load(ctx context.Context, room string) (Room, error)
	// Write applies ops in order, atomically, and returns once they are
	// durable (committed). An op of a room in another epoch than the one
	// the store holds, other than Reset and Snapshot, fails the batch with
	// ErrEpoch and changes nothing.
	Write(ctx context.Context, ops ...Op) error
	// Versions lists the room's versions, newest first (by the time they
	// were taken: two instances may commit theirs in the other order).
	Versions(ctx context.Context, room string) ([]Version, error)
	// Version returns one version with its data (the Yjs update of the
	// whole document, or the state's JSON); ErrNotFound when absent.
	Version(ctx context.Context, room string, id int64) (Version, []byte, error)
	// Rooms lists the rooms the store holds, by name, after cursor (""
	// from the start), at most limit; next is "" after the last page.
	Rooms(ctx context.Context, cursor string, limit int) (rooms []RoomInfo, next string, err error)
	// Ping checks that the store answers (for /readyz).
	Ping(ctx context.Context) error
	// Close stops the writer after the batches already handed to it and
	// closes the database.
	Close() error
}

// Errors of the store.
var (
	ErrEpoch    = errors.New("store: the room is in another epoch")
	ErrNotFound = errors.New("store: not found")
	ErrClosed   = errors.New("store: closed")
	// ErrBadCursor is a Rooms cursor that no listing gave.
	ErrBadCursor = errors.New("store: bad rooms cursor")
)

// Room is what the store keeps of one room.
type Room struct {
	Name  string
	Epoch string // "" when the store holds nothing of the room
	Seq   uint64 // last stored message's seq in Epoch
	// Messages are the stored messages of the history window, in seq
	// order (the newest ones, at most the Keep of the last Message op).
	Messages []Message
	State    *State // nil when none
	Doc      Doc
	Updated  time.Time
}

// Message is one stored message: its frame as delivered (seq included)
// and the connection it was not sent to ("" for none).
type Message struct {
	Seq     uint64
	Frame   []byte
	Exclude string
}

// State is the latest state of a room: the effect of every stored message
// up to Seq.
type State struct {
	Seq  uint64
	Data []byte
}

// Doc is a room's Yjs document: Base has the effect of every update up to
// BaseSeq, Updates are the update messages (y-websocket sync Update
// messages) BaseSeq+1 … Seq in order. Epoch is "" when there is none.
type Doc struct {
	Epoch   string
	Seq     uint64
	BaseSeq uint64
	Base    []byte
	Updates [][]byte
}

// Bytes is the document's stored size.
func (d Doc) Bytes() int64 {
	n := int64(len(d.Base))
	for _, u := range d.Updates {
		n += int64(len(u))
	}
	return n
}

// OpKind says what an Op does.
type OpKind int

const (
	// OpMessage appends the stored message Seq/Frame/Exclude: the room's
	// position becomes Epoch:Seq (the room starts in Epoch when the store
	// holds none), and only the newest Keep messages are kept.
	OpMessage OpKind = iota + 1
	// OpState keeps Data as the room's state at Seq (in Epoch), replacing
	// an older one; a state older than the kept one is ignored.
	OpState
	// OpDocUpdate appends Data (an update message) as the document's
	// update Seq in Epoch (the document starts in Epoch when it has none).
	OpDocUpdate
	// OpDocBase replaces the document's base with Data, the merge of
	// every update up to Seq, and drops those updates; ignored when the
	// store holds no document of the room (deleted meanwhile) or when the
	// document was compacted past Seq already.
	OpDocBase
	// OpReset forgets the room's messages, state and document and puts it
	// in Epoch at seq 0 (a deleted room, or a history lost for good). Its
	// versions stay.
	OpReset
	// OpDelete removes the room and everything of it, versions included.
	OpDelete
	// OpVersion records a version of Kind at At with Data (and Seq for a
	// state), keeping the newest Keep versions of the room.
	OpVersion
	// OpSnapshot replaces everything kept of the room (but its versions)
	// with Snapshot, unless the store holds the same epoch at a seq and
	// document seq at least as far (write-behind from several instances:
	// the furthest copy wins, an older one never overwrites it); of two
	// copies as far, a later state is kept.
	OpSnapshot
	// OpWebhookPut keeps webhook event Seq (its key in the queue) of Room
	// with record Data, due At, replacing one of the same key (see
	// WebhookEvents).
	OpWebhookPut
	// OpWebhookDelete forgets webhook event Seq.
	OpWebhookDelete
)

// Op is one change to one room.
type Op struct {
	Kind    OpKind
	Room    string
	Epoch   string
	Seq     uint64
	Data    []byte
	Exclude string // OpMessage
	Keep    int    // OpMessage: history size; OpVersion: versions kept
	At      time.Time
	Version VersionKind // OpVersion
	// Snapshot is OpSnapshot's room: Epoch, Seq, Messages, State and Doc.
	Snapshot *Room
}

// VersionKind is what a version holds.
type VersionKind string

const (
	VersionDoc   VersionKind = "doc"   // the whole Yjs document as one update
	VersionState VersionKind = "state" // a state, with its seq
)

// Version describes one kept version of a room.
type Version struct {
	ID    int64
	At    time.Time
	Kind  VersionKind
	Seq   uint64 // the state's seq (state versions)
	Bytes int64
}

// RoomInfo is one room of a Rooms listing.
type RoomInfo struct {
	Room       string
	Updated    time.Time
	DocBytes   int64
	StateBytes int64
}
