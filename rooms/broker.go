package rooms

import (
	"context"
	"errors"
)

// Broker carries opaque payloads for a room to every instance subscribed to
// that room, including the publishing one. Payloads of one room arrive in
// the order the broker accepted them.
type Broker interface {
	// Start begins delivering subscribed rooms' payloads to r. It returns
	// once the broker is ready to subscribe.
	Start(ctx context.Context, r Receiver) error
	// Publish hands payload to the broker for room. It does not wait for
	// remote delivery; it may return ErrBrokerDown when the broker cannot
	// accept payloads.
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
}

// Receiver is what a Broker delivers to; the Hub is one.
type Receiver interface {
	// Deliver is called for every payload of a subscribed room, in the
	// room's order; payloads of one room come from one goroutine at a
	// time, different rooms may be delivered concurrently. It must not
	// block.
	Deliver(room string, payload []byte)
	// Resync is called after a gap in which payloads for rooms may have
	// been lost (for example a pub/sub reconnect), once the subscriptions
	// are active again, in order with the rooms' payloads.
	Resync(rooms []string)
}

// ErrBrokerDown is returned when the broker cannot accept a payload.
var ErrBrokerDown = errors.New("rooms: broker unavailable")
