package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Hub owns the rooms of this instance and fans payloads out to their local
// connections. It subscribes the broker to a room on the room's first local
// connection and unsubscribes after its last.
type Hub struct {
	broker Broker
	log    *slog.Logger

	mu    sync.Mutex
	rooms map[string]*room

	onResync func(rooms []string)
}

type room struct {
	name string
	refs int // Add calls in flight or done and not yet removed; guarded by Hub.mu

	subMu      sync.Mutex // serialises Subscribe/Unsubscribe of this room
	subscribed bool

	mu    sync.RWMutex
	conns map[*Conn]struct{}
}

// HubOptions configure a Hub.
type HubOptions struct {
	Logger *slog.Logger
	// OnResync is called by Resync with the local rooms that may have
	// missed payloads; it typically sends each a fresh presence snapshot.
	OnResync func(rooms []string)
}

// NewHub returns a hub publishing through b. Call b.Start(ctx, hub) to
// connect them.
func NewHub(b Broker, o HubOptions) *Hub {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Hub{broker: b, log: o.Logger, rooms: make(map[string]*room), onResync: o.OnResync}
}

var _ Receiver = (*Hub)(nil)

// Add puts c into its room, subscribing the broker first when c is the
// room's first local connection. Once Add returns, every payload published
// to the room reaches c's queue.
func (h *Hub) Add(ctx context.Context, c *Conn) error {
	h.mu.Lock()
	r := h.rooms[c.Room]
	if r == nil {
		r = &room{name: c.Room, conns: make(map[*Conn]struct{})}
		h.rooms[c.Room] = r
	}
	r.refs++
	h.mu.Unlock()

	r.subMu.Lock()
	if !r.subscribed {
		if err := h.broker.Subscribe(ctx, c.Room); err != nil {
			r.subMu.Unlock()
			h.release(r)
			return fmt.Errorf("subscribe room %q: %w", c.Room, err)
		}
		r.subscribed = true
	}
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	r.subMu.Unlock()
	return nil
}

// Remove takes c out of its room, unsubscribing the broker when it was the
// room's last local connection.
func (h *Hub) Remove(ctx context.Context, c *Conn) {
	h.mu.Lock()
	r := h.rooms[c.Room]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.subMu.Lock()
	r.mu.Lock()
	_, present := r.conns[c]
	delete(r.conns, c)
	empty := len(r.conns) == 0
	r.mu.Unlock()
	if !present {
		r.subMu.Unlock()
		return
	}
	if empty && r.subscribed {
		if err := h.broker.Unsubscribe(ctx, c.Room); err != nil {
			h.log.Warn("unsubscribe room", "room", c.Room, "err", err)
		}
		r.subscribed = false
	}
	r.subMu.Unlock()
	h.release(r)
}

func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	if r.refs == 0 && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
}

// Publish sends frame to everyone in room on every instance, except the
// connection exclude (empty for none).
func (h *Hub) Publish(ctx context.Context, room, exclude string, frame []byte) error {
	if err := h.broker.Publish(ctx, room, Envelope(exclude, frame)); err != nil {
		return fmt.Errorf("publish to room %q: %w", room, err)
	}
	return nil
}

// Deliver enqueues a broker payload on every local connection of room.
func (h *Hub) Deliver(roomName string, payload []byte) {
	exclude, frame, ok := OpenEnvelope(payload)
	if !ok {
		h.log.Warn("dropped payload that is not an envelope", "room", roomName, "bytes", len(payload))
		return
	}
	h.Broadcast(roomName, exclude, frame)
}

// Broadcast enqueues frame on this instance's connections of room only.
func (h *Hub) Broadcast(roomName, exclude string, frame []byte) {
	h.mu.Lock()
	r := h.rooms[roomName]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.RLock()
	for c := range r.conns {
		if exclude != "" && c.ID == exclude {
			continue
		}
		c.Send(frame)
	}
	r.mu.RUnlock()
}

// Resync forwards a broker gap to OnResync.
func (h *Hub) Resync(rooms []string) {
	h.log.Warn("broker gap: resyncing rooms", "rooms", len(rooms))
	if h.onResync != nil {
		h.onResync(rooms)
	}
}

// Rooms returns the names of the rooms with local connections.
func (h *Hub) Rooms() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.rooms))
	for name := range h.rooms {
		out = append(out, name)
	}
	return out
}

// Conns returns the local connections of room, or of every room when room
// is empty.
func (h *Hub) Conns(roomName string) []*Conn {
	h.mu.Lock()
	rs := make([]*room, 0, len(h.rooms))
	for name, r := range h.rooms {
		if roomName == "" || name == roomName {
			rs = append(rs, r)
		}
	}
	h.mu.Unlock()
	var out []*Conn
	for _, r := range rs {
		r.mu.RLock()
		for c := range r.conns {
			out = append(out, c)
		}
		r.mu.RUnlock()
	}
	return out
}
