// Package ydoc is the rooms' Yjs documents on one instance: the document
// of each room with local Yjs (y-websocket) connections, those
// connections, the snapshot they sync from, the updates they store
// (through rooms.Docs), the position up to which the document's updates
// were delivered here, and the awareness states of every instance's
// clients. The Hub routes it every document payload (it is the Hub's
// rooms.DocHandler); the HTTP/WebSocket edge hands it the connections
// and the messages they read.
package ydoc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Timing and sizes of the Yjs side.
const (
	keepAliveInterval = 10 * time.Second // an idle provider hears from us this often (it gives up after 30 s)
	awarenessWait     = 2 * time.Second  // for instances to confirm a user's awareness after a presence change
	// A document is compacted once the updates after its base outweigh
	// the base (and at least this many bytes): stored bytes stay within
	// about twice the document's size, and each compaction's cost is paid
	// for by as many bytes of updates.
	compactMinBytes = 8 << 10
	compactTimeout  = 30 * time.Second
	// Awareness a connection may hold: a provider has one client, a tab
	// with several documents a few; what is beyond is not relayed.
	maxAwarenessStates = 16
	maxAwarenessState  = 16 << 10 // bytes of one state's JSON
)

// keepAliveFrame is an awareness message with no entries: y-websocket
// closes a socket that received nothing for 30 s, and this changes nothing
// on the client.
var keepAliveFrame = []byte{yjs.MessageAwareness, 1, 0}

// Broker is what the engine needs of a rooms.Broker: the stored documents,
// and unstored payloads (awareness) to every instance.
type Broker interface {
	rooms.Docs
	Publish(ctx context.Context, room string, payload []byte) error
}

// Events is told what the engine did, for metrics and the rooms' versions.
// Its methods must not block.
type Events interface {
	// DocStored: an update was stored in room's document, which is now at
	// at and holds bytes (its base and log).
	DocStored(room string, at rooms.Position, bytes int64)
	// DocCompacted: this instance compacted room's document.
	DocCompacted(room string)
	// DocGap: updates of room's document were missed here and are sent
	// again (from the log, or as the whole document).
	DocGap(room string)
}

// Options configure an Engine.
type Options struct {
	Broker Broker
	// Instance names this instance in the awareness payloads and queries
	// it publishes; it must differ from every other instance's.
	Instance string
	// Logger zero value (nil) means slog.Default().
	Logger *slog.Logger
	// Events zero value (nil) means nobody is told.
	Events Events
	// OpTimeout bounds a broker call made for one client or one
	// delivery. Zero value means 5s.
	OpTimeout time.Duration
}

// Engine is this instance's side of the rooms' Yjs documents.
type Engine struct {
	o   Options
	log *slog.Logger

	// ctx ends with Close: the async work's deadline.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	rooms   map[string]*docRoom
	asyncMu sync.Mutex
	stopped bool           // Close was called: no more async work
	wg      sync.WaitGroup // async work: compactions, awareness queries and answers
}

var _ rooms.DocHandler = (*Engine)(nil)

// New returns an engine; Run keeps its providers alive, Close stops it.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Events == nil {
		o.Events = noEvents{}
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{o: o, log: o.Logger, ctx: ctx, cancel: cancel, rooms: make(map[string]*docRoom)}
}

type noEvents struct{}

func (noEvents) DocStored(string, rooms.Position, int64) {}
func (noEvents) DocCompacted(string)                     {}
func (noEvents) DocGap(string)                           {}

// docRoom is one room's document as this instance's connections share it.
type docRoom struct {
	name string
	e    *Engine
	refs int // attached connections; guarded by Engine.mu

	connMu sync.RWMutex // guards conns; taken after Engine.mu
	conns  map[string]*Conn

	mu      sync.Mutex // guards the position and the awareness below
	pos     rooms.Position
	clients map[uint64]*awClient // every known awareness state
	// owned holds the clients of r.clients by the connection that owns
	// them (awClient.conn), so that a connection's count is not a walk
	// over the room.
	owned      map[string]map[uint64]struct{}
	compacting bool
	verify     map[string]*time.Timer // user -> pending awareness check

	snapshots
}

func newDocRoom(name string, e *Engine) *docRoom {
	return &docRoom{name: name, e: e, conns: make(map[string]*Conn), clients: make(map[uint64]*awClient),
		owned: make(map[string]map[uint64]struct{}), verify: make(map[string]*time.Timer),
		snapshots: snapshots{lock: make(chan struct{}, 1)}}
}

func (e *Engine) room(name string) *docRoom {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rooms[name]
}

// roomOrDetached returns the room's document as its local connections
// share it, or, when it has none here, a detached one for a single read or
// write from outside (HTTP): nothing of it is kept.
func (e *Engine) roomOrDetached(name string) *docRoom {
	if r := e.room(name); r != nil {
		return r
	}
	return newDocRoom(name, e)
}

// attach registers c in its room's document. The room's first local
// connection asks the other instances for the awareness of theirs.
func (e *Engine) attach(ctx context.Context, c *Conn) *docRoom {
	e.mu.Lock()
	r := e.rooms[c.Room]
	first := r == nil
	if first {
		r = newDocRoom(c.Room, e)
		e.rooms[c.Room] = r
	}
	r.refs++
	r.connMu.Lock()
	r.conns[c.ID] = c
	r.connMu.Unlock()
	e.mu.Unlock()
	if first {
		e.query(ctx, c.Room, "")
	}
	return r
}

// Leave removes c from its room's document: its awareness states are
// removed for everyone.
func (e *Engine) Leave(ctx context.Context, c *Conn) {
	r := e.room(c.Room)
	if r != nil {
		r.mu.Lock()
		gone := r.dropConnLocked(c.ID)
		r.mu.Unlock()
		if len(gone) > 0 {
			msg := yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(gone))
			// The local peers get it now: once c is gone, the payload's
			// return trip would find no local connection to relay for.
			r.send(c.ID, msg)
			e.publishAwareness(ctx, c.Room, c.ID, c.User, msg)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r = e.rooms[c.Room]
	if r == nil {
		return
	}
	r.connMu.Lock()
	mine := r.conns[c.ID] == c
	if mine {
		delete(r.conns, c.ID)
	}
	r.connMu.Unlock()
	if !mine {
		return
	}
	r.refs--
	if r.refs == 0 {
		delete(e.rooms, c.Room)
		r.mu.Lock()
		for _, t := range r.verify {
			t.Stop()
		}
		r.mu.Unlock()
	}
}

// send queues frame on every local Yjs connection of r but exclude.
func (r *docRoom) send(exclude string, frame []byte) {
	r.connMu.RLock()
	defer r.connMu.RUnlock()
	for id, c := range r.conns {
		if id != exclude {
			c.Send(frame)
		}
	}
}

// closeAll closes r's local connections so that their providers
// reconnect and sync afresh; the cached snapshot is not used again.
func (r *docRoom) closeAll(reason string) {
	r.gen.Add(1)
	r.connMu.RLock()
	defer r.connMu.RUnlock()
	for _, c := range r.conns {
		c.Close(rooms.CloseResync, reason)
	}
}

// async runs f on a goroutine that Close waits for. Deliveries use it for
// what publishes: a publish from inside a delivery could wait on the room
// being delivered. f must end soon once e.ctx is done.
func (e *Engine) async(f func()) {
	e.asyncMu.Lock()
	defer e.asyncMu.Unlock()
	if e.stopped {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// opContext returns a context for one broker call made for the engine
// itself (a delivery, a query, a keep-alive), ending with Close.
func (e *Engine) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.o.OpTimeout)
}

// Run sends every local Yjs connection a message that changes nothing
// every keepAliveInterval, so an idle provider does not give up on its
// socket, until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(keepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.mu.Lock()
			rs := make([]*docRoom, 0, len(e.rooms))
			for _, r := range e.rooms {
				rs = append(rs, r)
			}
			e.mu.Unlock()
			for _, r := range rs {
				r.send("", keepAliveFrame)
			}
		}
	}
}

// Close ends the async work (compactions, awareness queries) and waits
// for it. Call it once the connections are gone.
func (e *Engine) Close() {
	e.asyncMu.Lock()
	e.stopped = true
	e.asyncMu.Unlock()
	e.cancel()
	e.wg.Wait()
}
