package rooms

import (
	"context"
	"errors"
)

// Broker carries a room's payloads to every instance subscribed to that
// room, including the publishing one, and owns the room's stream: the
// stored messages with their positions, and the room's state. Payloads of
// one room arrive in the order the broker accepted them, so stored
// messages arrive in seq order (with gaps only where a connection to the
// broker was lost; the Hub fills them from History).
type Broker interface {
	// Start begins delivering subscribed rooms' payloads to r. It returns
	// once the broker is ready to subscribe.
	Start(ctx context.Context, r Receiver) error
	// Publish hands an unstored payload (a wire envelope) to the broker
	// for room. It does not wait for remote delivery; it may return
	// ErrBrokerDown when the broker cannot accept payloads.
	Publish(ctx context.Context, room string, payload []byte) error
	// Subscribe makes this instance receive the room's payloads. It returns
	// only once the subscription is active, so a caller that reads a
	// snapshot afterwards misses no event that follows it.
	Subscribe(ctx context.Context, room string) error
	// Unsubscribe stops delivery of the room's payloads to this instance.
	Unsubscribe(ctx context.Context, room string) error
	// Ready returns nil when the broker can publish and deliver.
	Ready(ctx context.Context) error
	// Close stops the broker's goroutines and waits for them.
	Close() error

	Stream
	Docs
}

// Stream is the durable side of a Broker: positions, history and state.
type Stream interface {
	// PublishMessage stores m (unless it is not Stored) and publishes it,
	// in one step, so the room's pub/sub order is its seq order. A
	// message whose Key was published within KeyWindow is neither stored
	// nor published again: the result is the first one's, Duplicate set.
	PublishMessage(ctx context.Context, room string, m Message) (Published, error)
	// Position returns the room's epoch and latest seq, starting a new
	// epoch when the room has none.
	Position(ctx context.Context, room string) (Position, error)
	// History returns up to limit stored messages after seq after (from
	// the oldest held when the history no longer reaches back that far).
	History(ctx context.Context, room string, after uint64, limit int) (History, error)
	// SaveState keeps data as the room's state at epoch:seq, or returns
	// ErrStaleState when the room holds a later state, seq is ahead of
	// the room's, or the room is in another epoch (the state describes a
	// history that was deleted or lost).
	SaveState(ctx context.Context, room string, at Position, data []byte) error
	// State returns the room's position and its latest state, if any.
	State(ctx context.Context, room string) (Position, *State, error)
	// PeekHistory and PeekState are History and State for readers from
	// outside the room (the HTTP API): they write nothing, so a room
	// without a stream (never used, expired) answers an empty Position
	// and stays absent.
	PeekHistory(ctx context.Context, room string, after uint64, limit int) (History, error)
	PeekState(ctx context.Context, room string) (Position, *State, error)
	// Reset forgets the room's history and state and starts a new epoch;
	// every instance closes the room's connections with CloseResync.
	Reset(ctx context.Context, room string) (Position, error)
	// ClaimStateRequest picks the connection to ask for the room's state at
	// seq among candidates (this instance's state=1 connections, in random
	// order), or "" when another instance claimed the request or the only
	// candidate is the one asked last time, which did not answer. One
	// connection is asked per request, cluster-wide.
	ClaimStateRequest(ctx context.Context, room string, seq uint64, candidates []string) (string, error)
	// Fork moves the room, if it is still in epoch from, to a new epoch
	// that keeps its history, state and seq, and announces it on the
	// room's channel (position "<epoch>:<seq>", empty frame): instances
	// delivered messages of from that the room no longer holds (a failover
	// lost them and gave their seqs to others), so every connection of
	// from resyncs. A room in another epoch is left as it is and its
	// position returned: the other epoch is newer.
	Fork(ctx context.Context, room, from string) (Position, error)
}

// Receiver is what a Broker delivers to; the Hub is one.
type Receiver interface {
	// Deliver is called for every payload of a subscribed room, in the
	// room's order; payloads of one room come from one goroutine at a
	// time, different rooms may be delivered concurrently. It must not
	// block: one Deliver call may be all that stands between the broker
	// and the payloads of many rooms.
	Deliver(room string, payload []byte)
	// Resync is called after a gap in which payloads for rooms may have
	// been lost (for example a pub/sub reconnect), once the subscriptions
	// are active again, in order with the rooms' payloads.
	Resync(rooms []string)
}

// ErrBrokerDown is returned when the broker cannot accept a payload.
var ErrBrokerDown = errors.New("rooms: broker unavailable")

// ErrStaleState is returned by SaveState for a state older than the room's
// or ahead of the room's seq.
var ErrStaleState = errors.New("rooms: state older than the stored one or ahead of the room")
