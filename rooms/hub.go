package rooms

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
)

// Hub owns the rooms of this instance and fans payloads out to their local
// connections. It subscribes the broker to a room on the room's first local
// connection and unsubscribes after its last. Close stops the goroutines it
// started.
//
// For stored messages the Hub is the gate every delivery passes: it keeps
// the position up to which this instance delivered each room, fills a gap
// from the broker's History before delivering on (on the room's worker,
// see hub_stream.go), and each connection takes a stored frame only as
// its next one (Conn.SendStored).
type Hub struct {
	broker Broker
	log    *slog.Logger
	o      HubOptions

	mu    sync.Mutex
	rooms map[string]*room

	seed maphash.Seed // of the delivered frames' hashes (fork detection)
	held atomic.Int64 // bytes of stored frames waiting in every room (HoldBytesTotal)

	// The rooms' workers (hub_stream.go): started under wmu unless closed.
	ctx    context.Context
	cancel context.CancelFunc
	wmu    sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

type room struct {
	name string
	refs int // Add calls in flight or done and not yet removed; guarded by Hub.mu

	subMu      sync.Mutex // serialises Subscribe/Unsubscribe of this room
	subscribed bool
	inited     bool // the stream position below was read after subscribing; guarded by subMu

	// streamMu serialises stored deliveries with connections taking
	// their starting position. It is never held across a round trip.
	streamMu sync.Mutex
	epoch    string
	seq      uint64 // last stored message delivered here
	st       roomStream

	mu    sync.RWMutex
	conns map[*Conn]struct{}
	// docs are the room's Yjs connections: they hold the subscription
	// and are listed by Conns, but what they receive is the DocHandler's.
	docs map[*Conn]struct{}

	// Coalesced frames (presence) wait here for one write per socket.
	flushMu sync.Mutex // held while a batch goes out, so batches keep their order
	pmu     sync.Mutex
	pending [][]byte
	ptimer  *time.Timer
	sentAt  time.Time // when the last batch of coalesced frames went out
	// late holds the connections added while frames were pending, with
	// how many: they skip those. Their welcome is read after their own
	// join, which comes after those frames, so it holds them already.
	late map[*Conn]int

	// Count-mode connections (Conn.PresenceCount) get the member count at
	// most once per CountInterval; guarded by pmu.
	ncount int // count-mode connections in conns; guarded by mu
	ctimer *time.Timer
}

// HubOptions configure a Hub.
type HubOptions struct {
	Logger *slog.Logger
	// OnResync is called by Resync with the local rooms that may have
	// missed payloads, once their rooms' workers were given the fill of
	// their stored messages (which may still run); it typically sends
	// each a fresh presence snapshot.
	OnResync func(rooms []string)
	// FillLimit is the most stored messages read from History in one
	// call while filling a gap. Zero value means 1000.
	FillLimit int
	// HoldMessages and HoldBytes bound the stored messages of a room
	// that wait while its worker fills a gap; later ones are dropped and
	// read from the history once the held ones are delivered. Zero values
	// mean 1000 and 4 MiB. HoldBytesTotal bounds them across every room
	// of the hub (many rooms filling at once after a broker gap); zero
	// means 64 MiB.
	HoldMessages   int
	HoldBytes      int
	HoldBytesTotal int64
	// OnFork, if set, is called when this instance finds that a room's
	// history no longer holds a message it delivered (a failover lost it
	// and gave its seq to another): the room moves to a new epoch.
	OnFork func(room string)
	// OnGap, if set, is called for each gap in a room's stored messages:
	// filled reports whether History held every missing message (if not,
	// the room's connections are closed with CloseResync).
	OnGap func(room string, missing uint64, filled bool)
	// Observe, if set, sees every unstored frame delivered to a room, in
	// the room's order, before its connections do (the presence replica).
	Observe func(room string, frame []byte)
	// OnUnsubscribed, if set, is called when the room's last local
	// connection left and its frames stop arriving.
	OnUnsubscribed func(room string)
	// Coalesce, if set, picks the unstored frames (presence) that wait up
	// to CoalesceWindow to reach each socket together with the room's
	// others: a burst of joins costs one write per socket, not one per
	// join. They keep their order among themselves.
	Coalesce       func(frame []byte) bool
	CoalesceWindow time.Duration
	// CoalesceEvery, when longer than CoalesceWindow, paces a busy room:
	// its batches go out at most once per CoalesceEvery. A frame that
	// finds the room quiet still waits CoalesceWindow only; in a burst
	// (a batch went out less than CoalesceEvery ago) it waits for the
	// next batch, at most CoalesceEvery. Each batch costs one write per
	// socket of the room, whatever the number of frames in it.
	CoalesceEvery time.Duration
	// CoalesceMax is the most frames a batch holds: a room with that many
	// waiting sends them at once, so a storm into a large room keeps its
	// writes (and each socket's queue) small. Zero value means 64.
	CoalesceMax int
	// Docs, if set, owns the rooms' documents: it gets every document
	// payload of a room, the room's deletion and the broker's gaps.
	Docs DocHandler
	// Count returns the room's member count for count-mode connections
	// (false when unknown); CountInterval is the least time between two
	// count frames of a room. Zero value means 1s.
	Count         func(room string) (int, bool)
	CountInterval time.Duration
}

// DocHandler is the document engine (rooms/ydoc) as the Hub sees it: the
// Hub routes every document payload (wire.Envelope.Doc set) to it, and
// the events of a room's stream that concern its document. The engine
// keeps its connections' view of the document: the Hub never sends them
// anything.
type DocHandler interface {
	// DeliverDoc gets every document payload of a room, in the room's
	// order.
	DeliverDoc(room string, e wire.Envelope)
	// RoomDeleted is called when a room's reset (deletion) is delivered,
	// after its message connections were told.
	RoomDeleted(room string)
	// Resync is called after a broker gap, once the rooms' stored
	// messages were filled in and before HubOptions.OnResync, with the
	// local rooms that may have missed payloads.
	Resync(rooms []string)
}

// NewHub returns a hub publishing through b. Call b.Start(ctx, hub) to
// connect them.
func NewHub(b Broker, o HubOptions) *Hub {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FillLimit <= 0 {
		o.FillLimit = 1000
	}
	if o.HoldMessages <= 0 {
		o.HoldMessages = 1000
	}
	if o.HoldBytesTotal <= 0 {
		o.HoldBytesTotal = 64 << 20
	}
	if o.HoldBytes <= 0 {
		o.HoldBytes = 4 << 20
	}
	if o.CoalesceWindow <= 0 {
		o.CoalesceWindow = 20 * time.Millisecond
	}
	if o.CoalesceMax <= 0 {
		o.CoalesceMax = 64
	}
	if o.CountInterval <= 0 {
		o.CountInterval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{broker: b, log: o.Logger, o: o, rooms: make(map[string]*room), seed: maphash.MakeSeed(), ctx: ctx, cancel: cancel}
}

var _ Receiver = (*Hub)(nil)

// Add puts c into its room, subscribing the broker first when c is the
// room's first local connection. Once Add returns, every payload published
// to the room reaches c's queue, and c's position (Conn.Position) is where
// this instance's delivery of the room's stored messages stands: every
// stored message after it will reach c, in order.
func (h *Hub) Add(ctx context.Context, c *Conn) error {
	h.mu.Lock()
	r := h.rooms[c.Room]
	if r == nil {
		r = &room{name: c.Room, conns: make(map[*Conn]struct{}), docs: make(map[*Conn]struct{})}
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
	if !r.inited {
		// Read after subscribing: every stored message after pos arrives
		// through the subscription.
		pos, err := h.broker.Position(ctx, c.Room)
		if err != nil {
			r.mu.RLock()
			empty := len(r.conns)+len(r.docs) == 0
			r.mu.RUnlock()
			if empty {
				if uerr := h.broker.Unsubscribe(ctx, c.Room); uerr != nil {
					h.log.Warn("unsubscribe room", "room", c.Room, "err", uerr)
				}
				r.subscribed = false
			}
			r.subMu.Unlock()
			h.release(r)
			return fmt.Errorf("read position of room %q: %w", c.Room, err)
		}
		r.streamMu.Lock()
		switch {
		case r.epoch == "":
			r.epoch, r.seq = pos.Epoch, pos.Seq
		case r.epoch == pos.Epoch:
			r.seq = max(r.seq, pos.Seq)
		}
		r.streamMu.Unlock()
		r.inited = true
	}
	r.streamMu.Lock()
	c.setPosition(Position{Epoch: r.epoch, Seq: r.seq})
	r.mu.Lock()
	if c.Doc {
		r.docs[c] = struct{}{}
	} else {
		r.conns[c] = struct{}{}
		if c.PresenceCount {
			r.ncount++
		}
		r.pmu.Lock()
		if n := len(r.pending); n > 0 {
			if r.late == nil {
				r.late = make(map[*Conn]int)
			}
			r.late[c] = n
		}
		r.pmu.Unlock()
	}
	r.mu.Unlock()
	r.streamMu.Unlock()
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
	set := r.conns
	if c.Doc {
		set = r.docs
	}
	_, present := set[c]
	delete(set, c)
	if present && c.PresenceCount && !c.Doc {
		r.ncount--
	}
	empty := len(r.conns)+len(r.docs) == 0
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
		// Deliveries stop: the position must be read again.
		r.inited = false
		r.streamMu.Lock()
		h.stopStreamLocked(r)
		r.streamMu.Unlock()
		// Presence frames waiting for the room's sockets are of a room
		// this instance no longer follows.
		r.flushMu.Lock()
		r.pmu.Lock()
		if r.ptimer != nil {
			r.ptimer.Stop()
		}
		if r.ctimer != nil {
			r.ctimer.Stop()
		}
		r.pending, r.ptimer, r.ctimer, r.late = nil, nil, nil, nil
		r.pmu.Unlock()
		r.flushMu.Unlock()
		if h.o.OnUnsubscribed != nil {
			h.o.OnUnsubscribed(c.Room)
		}
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

// Publish sends an unstored frame to everyone in room on every instance,
// except the connection exclude (empty for none).
func (h *Hub) Publish(ctx context.Context, room, exclude string, frame []byte) error {
	if err := h.broker.Publish(ctx, room, wire.Seal(exclude, frame)); err != nil {
		return fmt.Errorf("publish to room %q: %w", room, err)
	}
	return nil
}

// PublishMessage stores (unless m.Stored is false) and publishes a message
// frame to the room.
func (h *Hub) PublishMessage(ctx context.Context, room string, m Message) (Published, error) {
	p, err := h.broker.PublishMessage(ctx, room, m)
	if err != nil {
		return p, fmt.Errorf("publish message to room %q: %w", room, err)
	}
	return p, nil
}

// Deliver enqueues a broker payload on every local connection of room. It
// does in-memory work only: a stored message that needs a round trip first
// waits for the room's worker (hub_stream.go), not on this goroutine.
func (h *Hub) Deliver(roomName string, payload []byte) {
	e, ok := wire.Open(payload)
	if !ok {
		h.log.Warn("dropped payload that is not an envelope", "room", roomName, "bytes", len(payload))
		return
	}
	if e.Doc != 0 {
		if h.o.Docs != nil {
			h.o.Docs.DeliverDoc(roomName, e)
		}
		return
	}
	if !e.Stored() {
		if h.o.Observe != nil {
			h.o.Observe(roomName, e.Frame)
		}
		h.Broadcast(roomName, e.Exclude, e.Frame)
		return
	}
	h.deliverStored(roomName, e)
}

// position is where the delivery of r's stored messages stands.
// r.streamMu is held.
func (r *room) position() Position { return Position{Epoch: r.epoch, Seq: r.seq} }

func (h *Hub) room(name string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[name]
}

// Broadcast enqueues an unstored frame on this instance's connections of
// room only (coalesced with the room's others when Coalesce picks it).
func (h *Hub) Broadcast(roomName, exclude string, frame []byte) {
	r := h.room(roomName)
	if r == nil {
		return
	}
	if exclude == "" && h.o.Coalesce != nil && h.o.Coalesce(frame) {
		r.pmu.Lock()
		r.pending = append(r.pending, frame)
		switch {
		case len(r.pending) == h.o.CoalesceMax:
			// Full: out now, off the delivering goroutine (a flush
			// may be running). Frames behind these join them until
			// the flush takes them.
			if r.ptimer != nil {
				r.ptimer.Stop()
			}
			r.ptimer = time.AfterFunc(0, func() { h.flushCoalesced(r) })
		case r.ptimer == nil:
			wait := h.o.CoalesceWindow
			if h.o.CoalesceEvery > wait && !r.sentAt.IsZero() {
				wait = max(wait, time.Until(r.sentAt.Add(h.o.CoalesceEvery)))
			}
			r.ptimer = time.AfterFunc(wait, func() { h.flushCoalesced(r) })
		}
		r.pmu.Unlock()
		return
	}
	var xs uint64
	if exclude != "" {
		xs = idSum(exclude)
	}
	r.mu.RLock()
	for c := range r.conns {
		if c.excluded(exclude, xs) {
			continue
		}
		c.Send(frame)
	}
	r.mu.RUnlock()
}

// Flush sends the room's coalesced frames now: a pong that answers a
// client's ping then follows every frame sent before the ping arrived.
func (h *Hub) Flush(roomName string) {
	r := h.room(roomName)
	if r == nil {
		return
	}
	r.pmu.Lock()
	if len(r.pending) > 0 && r.ptimer != nil {
		r.ptimer.Stop()
	}
	r.pmu.Unlock()
	// Also with nothing pending: a flush the timer started may still be
	// sending, and flushCoalesced waits for it.
	h.flushCoalesced(r)
}

// flushCoalesced sends the room's waiting frames to each of its sockets in
// one batch.
func (h *Hub) flushCoalesced(r *room) {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.pmu.Lock()
	frames, late := r.pending, r.late
	r.pending, r.ptimer, r.late = nil, nil, nil
	if len(frames) > 0 {
		r.sentAt = time.Now()
	}
	r.pmu.Unlock()
	if len(frames) == 0 {
		return
	}
	r.mu.RLock()
	counting := r.ncount > 0
	for c := range r.conns {
		if c.PresenceCount {
			continue
		}
		if skip := late[c]; skip > 0 {
			if skip < len(frames) {
				c.SendBatch(frames[skip:])
			}
			continue
		}
		c.SendBatch(frames)
	}
	r.mu.RUnlock()
	if counting && h.o.Count != nil {
		r.pmu.Lock()
		if r.ctimer == nil {
			r.ctimer = time.AfterFunc(h.o.CountInterval, func() { h.sendCount(r) })
		}
		r.pmu.Unlock()
	}
}

// sendCount sends the room's count-mode connections its member count: the
// presence changed since the last one (a welcome may have counted some of
// the changes, so the count is sent even when it is the last one again).
func (h *Hub) sendCount(r *room) {
	n, ok := h.o.Count(r.name)
	r.pmu.Lock()
	r.ctimer = nil
	r.pmu.Unlock()
	if !ok {
		return
	}
	frame := CountFrame(r.name, n)
	r.mu.RLock()
	for c := range r.conns {
		if c.PresenceCount {
			c.Send(frame)
		}
	}
	r.mu.RUnlock()
}

// CountFrame is the frame that tells a count-mode connection the room's
// member count.
func CountFrame(room string, n int) []byte {
	b := append([]byte(`{"type":"count","room":`), strconv.Quote(room)...)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '}')
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
		for c := range r.docs {
			out = append(out, c)
		}
		r.mu.RUnlock()
	}
	return out
}
