package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/rooms"
	roomstore "github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Timing of the Yjs side.
const (
	yjsKeepAlive  = 10 * time.Second // an idle provider hears from us this often (it gives up after 30 s)
	awarenessWait = 2 * time.Second  // for instances to confirm a user's awareness after a presence change
	// A document is compacted once the updates after its base outweigh
	// the base (and at least this many bytes): stored bytes stay within
	// about twice the document's size, and each compaction's cost is paid
	// for by as many bytes of updates.
	compactMinBytes = 8 << 10
	// Awareness a connection may hold: a provider has one client, a tab
	// with several documents a few; what is beyond is not relayed.
	maxAwarenessStates = 16
	maxAwarenessState  = 16 << 10 // bytes of one state's JSON
)

// yconn is a local Yjs connection.
type yconn struct {
	*rooms.Conn
	// step2 is the number (rooms.Conn.SendTracked) of the last step 2
	// sent in answer to the client's step 1; the reader's only.
	step2 uint64
}

// awClient is the latest awareness state of one Yjs client (clientID) of a
// document, and the connection that owns it: the first to announce it.
// y-websocket providers echo every state they receive, so a connection
// also sends states of clients it does not own; those are never its own.
type awClient struct {
	clock      uint64
	state      []byte
	conn, user string
	local      bool      // conn is on this instance
	seen       time.Time // last announced by its owner
}

// ydocs is this instance's side of the rooms' Yjs documents: for each room
// with a local Yjs connection, the position delivered, a cached merge of
// the document, and the awareness states of the other instances' clients.
type ydocs struct {
	s *Server

	mu      sync.Mutex
	rooms   map[string]*docRoom
	asyncMu sync.Mutex
	stopped bool           // wait was called: no more async work
	wg      sync.WaitGroup // async work: compactions, awareness queries and answers
}

type docRoom struct {
	name  string
	d     *ydocs
	refs  int // attached connections; guarded by ydocs.mu
	conns map[string]*yconn

	mu      sync.Mutex // guards everything below
	epoch   string     // the document's epoch as delivered here ("" before the first)
	seq     uint64
	clients map[uint64]*awClient // every known awareness state
	// owned holds the clients of r.clients by the connection that owns
	// them (awClient.conn), so that a connection's count is not a walk
	// over the room.
	owned      map[string]map[uint64]struct{}
	compacting bool
	verify     map[string]*time.Timer // user -> pending awareness check

	// snapLock serialises snapshot reads: a 1-slot semaphore, so that a
	// joiner waiting behind a slow compaction gives up with its context.
	snapLock chan struct{}
	cache    snapshot // guarded by snapLock
	cacheGen uint64   // the value of gen when cache was made; guarded by snapLock
	// gen moves when the document is lost or deleted: a cache made
	// before is not used. Dropping the cache this way never waits for
	// snapLock, so a delivery never waits behind a compaction.
	gen atomic.Uint64
}

// snapshot is the document merged (and compacted) up to pos.
type snapshot struct {
	pos   rooms.DocPosition
	doc   []byte
	sv    yjs.StateVector
	whole *wholeStep2 // shared by the copies of one snapshot; nil in the zero value
}

// wholeStep2 is the step 2 message holding a whole snapshot, made once
// for every joiner that has nothing yet.
type wholeStep2 struct {
	once sync.Once
	msg  []byte
}

func newSnapshot(pos rooms.DocPosition, doc []byte, sv yjs.StateVector) snapshot {
	return snapshot{pos: pos, doc: doc, sv: sv, whole: new(wholeStep2)}
}

// step2 returns the sync step 2 message answering a client whose state
// vector is sv: what it lacks of the document. A client that has nothing
// (an empty state vector, every new provider) gets the snapshot as it is,
// in one message shared with every other such client.
func (sn snapshot) step2(sv yjs.StateVector) ([]byte, error) {
	if len(sv) == 0 {
		if sn.whole == nil {
			return yjs.AppendSyncMessage(nil, yjs.SyncStep2, sn.doc), nil
		}
		sn.whole.once.Do(func() { sn.whole.msg = yjs.AppendSyncMessage(nil, yjs.SyncStep2, sn.doc) })
		return sn.whole.msg, nil
	}
	diff, err := yjs.DiffUpdate(sn.doc, sv)
	if err != nil {
		return nil, fmt.Errorf("diff the document: %w", err)
	}
	return yjs.AppendSyncMessage(nil, yjs.SyncStep2, diff), nil
}

func newYdocs(s *Server) *ydocs { return &ydocs{s: s, rooms: make(map[string]*docRoom)} }

func (d *ydocs) room(name string) *docRoom {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rooms[name]
}

// attach registers yc in its room's document. The room's first local
// connection asks the other instances for the awareness of theirs.
func (d *ydocs) attach(ctx context.Context, yc *yconn) *docRoom {
	d.mu.Lock()
	r := d.rooms[yc.Room]
	first := r == nil
	if first {
		r = newDocRoom(yc.Room, d)
		d.rooms[yc.Room] = r
	}
	r.refs++
	r.conns[yc.ID] = yc
	d.mu.Unlock()
	if first {
		d.query(ctx, yc.Room, "")
	}
	return r
}

// roomOrDetached returns the room's document as its local connections
// share it, or, when it has none here, a detached one for a single read or
// write from outside (HTTP): nothing of it is kept.
func (d *ydocs) roomOrDetached(name string) *docRoom {
	if r := d.room(name); r != nil {
		return r
	}
	return newDocRoom(name, d)
}

func newDocRoom(name string, d *ydocs) *docRoom {
	return &docRoom{name: name, d: d, conns: make(map[string]*yconn), clients: make(map[uint64]*awClient),
		owned: make(map[string]map[uint64]struct{}), verify: make(map[string]*time.Timer), snapLock: make(chan struct{}, 1)}
}

// detach removes yc: its awareness states are removed for everyone.
func (d *ydocs) detach(ctx context.Context, yc *yconn) {
	d.mu.Lock()
	r := d.rooms[yc.Room]
	d.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		gone := r.dropConnLocked(yc.ID)
		r.mu.Unlock()
		if len(gone) > 0 {
			msg := yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(gone))
			// The local peers get it now: once yc is gone, the payload's
			// return trip would find no local connection to relay for.
			d.send(r, yc.ID, msg)
			d.publishAwareness(ctx, yc.Room, yc.ID, yc.User, msg)
		}
	}
	d.mu.Lock()
	r = d.rooms[yc.Room]
	if r != nil && r.conns[yc.ID] == yc {
		delete(r.conns, yc.ID)
		r.refs--
		if r.refs == 0 {
			delete(d.rooms, yc.Room)
			r.mu.Lock()
			for _, t := range r.verify {
				t.Stop()
			}
			r.mu.Unlock()
		}
	}
	d.mu.Unlock()
}

// snapshot returns the document merged up to now: the cache plus the
// updates stored since, or a fresh read when the cache is of another epoch
// or its updates were compacted away.
func (r *docRoom) snapshot(ctx context.Context) (snapshot, error) {
	select {
	case r.snapLock <- struct{}{}:
	case <-ctx.Done():
		return snapshot{}, fmt.Errorf("wait for the document's snapshot: %w", ctx.Err())
	}
	defer func() { <-r.snapLock }()
	if gen := r.gen.Load(); r.cacheGen != gen {
		r.cache, r.cacheGen = snapshot{}, gen
	}
	b := r.d.s.broker
	if c := r.cache; c.pos.Epoch != "" {
		msgs, pos, ok, err := b.DocUpdates(ctx, r.name, c.pos.Epoch, c.pos.Seq)
		if err != nil {
			return snapshot{}, err
		}
		if ok {
			if len(msgs) == 0 {
				return c, nil
			}
			return r.merge(c.doc, msgs, pos)
		}
	}
	doc, err := b.Doc(ctx, r.name)
	if err != nil {
		return snapshot{}, err
	}
	if doc.Position.Epoch == "" {
		r.cache = newSnapshot(rooms.DocPosition{}, yjs.EmptyUpdate, yjs.StateVector{})
		return r.cache, nil
	}
	// The delivery position is never taken from a read: an update stored
	// before it may still be on its way, and the first delivery after the
	// subscription is the baseline.
	return r.merge(doc.Base, doc.Updates, doc.Position)
}

// merge compacts base and the update messages msgs into the cached
// snapshot at pos. r.snapLock is held.
func (r *docRoom) merge(base []byte, msgs [][]byte, pos rooms.DocPosition) (snapshot, error) {
	us := make([][]byte, 0, len(msgs)+1)
	if len(base) > 0 {
		us = append(us, base)
	}
	for i, m := range msgs {
		u, err := updateOf(m)
		if err != nil {
			// Never expected (every entry was validated before it was
			// stored); one bad entry must not make the document unreadable.
			r.d.s.log.Error("skipped a stored document entry", "room", r.name, "seq", pos.Seq-uint64(len(msgs)-1-i), "err", err)
			continue
		}
		us = append(us, u)
	}
	doc, err := yjs.Compact(us)
	if err != nil {
		return snapshot{}, fmt.Errorf("merge the document's updates: %w", err)
	}
	sv, err := yjs.StateVectorOf(doc)
	if err != nil {
		return snapshot{}, fmt.Errorf("state vector of the document: %w", err)
	}
	r.cache = newSnapshot(pos, doc, sv)
	return r.cache, nil
}

// append stores and publishes an update message sent by the connection
// exclude ("" for none: it reaches every provider), and compacts the
// document in the background once its updates outweigh its base.
//
// MAX_DOC_BYTES bounds what is stored: base + log + this update. When the
// update would pass it and the document has a log, the document is
// compacted first (the merge drops deleted content, so a document near the
// limit that was mostly edited makes room) and the update tried once more;
// still over, it is refused (rooms.ErrDocTooLarge) and nothing changed.
func (d *ydocs) append(ctx context.Context, r *docRoom, exclude string, msg []byte) error {
	res, err := d.s.broker.AppendUpdate(ctx, r.name, exclude, msg)
	var tooLarge *rooms.DocTooLargeError
	if errors.As(err, &tooLarge) && tooLarge.LogBytes > 0 {
		if cerr := d.compact(ctx, r); cerr != nil {
			d.s.log.Warn("compact a document at its size limit", "room", r.name, "err", cerr)
			return err
		}
		res, err = d.s.broker.AppendUpdate(ctx, r.name, exclude, msg)
	}
	if err != nil {
		return err
	}
	d.s.metrics.yjsUpdates.Inc()
	d.s.versions.changed(r.name, roomstore.VersionDoc)
	d.s.webhooks.DocUpdated(ctx, r.name, res.Position.Epoch, res.Position.Seq, res.BaseBytes+res.LogBytes)
	if res.LogBytes < max(res.BaseBytes, compactMinBytes) {
		return nil
	}
	r.mu.Lock()
	busy := r.compacting
	r.compacting = true
	r.mu.Unlock()
	if busy {
		return nil
	}
	d.async(func() {
		defer func() { r.mu.Lock(); r.compacting = false; r.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(d.s.ctx, 30*time.Second)
		defer cancel()
		if err := d.compact(ctx, r); err != nil {
			d.s.log.Warn("compact document", "room", r.name, "err", err)
		}
	})
	return nil
}

// async runs f on a goroutine that wait waits for. Deliveries use it for
// what publishes: a publish from inside a delivery could wait on the room
// being delivered. f must end soon once the server's context is done.
func (d *ydocs) async(f func()) {
	d.asyncMu.Lock()
	defer d.asyncMu.Unlock()
	if d.stopped {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// compact writes the document's merge as its new base. Another instance
// compacting at the same time makes this one a no-op.
func (d *ydocs) compact(ctx context.Context, r *docRoom) error {
	start := time.Now()
	snap, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if snap.pos.Epoch == "" {
		return nil
	}
	ok, err := d.s.broker.CompactDoc(ctx, r.name, snap.pos, snap.doc)
	if err != nil {
		return err
	}
	if ok {
		d.s.metrics.yjsCompactions.Inc()
		d.s.log.Debug("compacted document", "room", r.name, "seq", snap.pos.Seq, "bytes", len(snap.doc), "took", time.Since(start).String())
	}
	return nil
}

// deliver is the Hub's OnDoc: every document payload of a room, in order.
func (d *ydocs) deliver(room string, e wire.Envelope) {
	r := d.room(room)
	if r == nil {
		return
	}
	switch e.Doc {
	case wire.DocUpdate:
		d.deliverUpdate(r, e)
	case wire.DocAwareness:
		d.deliverAwareness(r, e)
	case wire.DocQuery:
		if e.Exclude != d.s.cfg.InstanceID {
			user := string(e.Frame)
			d.async(func() { d.answerQuery(r, user) })
		}
	}
}

func (d *ydocs) deliverUpdate(r *docRoom, e wire.Envelope) {
	r.mu.Lock()
	switch {
	case r.epoch == "":
		r.epoch, r.seq = e.Epoch, e.Seq
	case e.Epoch != r.epoch:
		// The document was lost (Redis restarted empty) or deleted and
		// started again: the providers reconnect and send what they hold.
		old := r.epoch
		r.epoch, r.seq = e.Epoch, e.Seq
		r.mu.Unlock()
		d.s.log.Warn("document has a new epoch; its providers resync", "room", r.name, "old", old, "new", e.Epoch)
		d.closeAll(r, "document lost: reconnect and send your copy")
		return
	case e.Seq <= r.seq:
		r.mu.Unlock()
		return // delivered already (by a gap fill)
	case e.Seq > r.seq+1:
		from := r.seq
		r.seq = e.Seq
		r.mu.Unlock()
		d.fill(r, e.Epoch, from, e.Seq-1)
		d.send(r, e.Exclude, e.Frame)
		return
	default:
		r.seq = e.Seq
	}
	r.mu.Unlock()
	d.send(r, e.Exclude, e.Frame)
}

// fill sends the local connections the updates after seq from up to to,
// which this instance missed.
func (d *ydocs) fill(r *docRoom, epoch string, from, to uint64) {
	ctx, cancel := context.WithTimeout(d.s.ctx, opTimeout)
	defer cancel()
	d.s.metrics.yjsGaps.Inc()
	msgs, _, ok, err := d.s.broker.DocUpdates(ctx, r.name, epoch, from)
	d.sendMissed(ctx, r, msgs, ok, err, from, to)
}

// sendMissed sends the local connections what a read of the updates after
// seq from found, up to to. Where they were compacted into the base (!ok)
// or could not be read, the whole document goes out as one update:
// updates are idempotent.
func (d *ydocs) sendMissed(ctx context.Context, r *docRoom, msgs [][]byte, ok bool, readErr error, from, to uint64) {
	if readErr == nil && ok {
		for i, m := range msgs {
			if from+uint64(i)+1 > to {
				break
			}
			d.send(r, "", m)
		}
		return
	}
	if err := d.sendWhole(ctx, r); err != nil {
		d.s.log.Warn("document gap cannot be filled; its providers resync", "room", r.name, "err", errors.Join(readErr, err))
		d.closeAll(r, "missed document updates: reconnect")
	}
}

// sendWhole sends the local connections the whole document as one update
// (nothing when there is none).
func (d *ydocs) sendWhole(ctx context.Context, r *docRoom) error {
	snap, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if snap.pos.Epoch != "" {
		d.send(r, "", yjs.AppendSyncMessage(nil, yjs.SyncUpdate, snap.doc))
	}
	return nil
}

// resync follows a broker gap: updates published meanwhile are filled in,
// and the other instances are asked for their awareness again.
func (d *ydocs) resync(roomNames []string) {
	ctx, cancel := context.WithTimeout(d.s.ctx, opTimeout)
	defer cancel()
	for _, name := range roomNames {
		r := d.room(name)
		if r == nil {
			continue
		}
		r.mu.Lock()
		epoch, seq := r.epoch, r.seq
		r.mu.Unlock()
		if epoch != "" {
			msgs, pos, ok, err := d.s.broker.DocUpdates(ctx, name, epoch, seq)
			switch {
			case err != nil:
				d.s.log.Warn("document resync", "room", name, "err", err)
			case pos.Epoch != "" && pos.Epoch != epoch:
				r.mu.Lock()
				r.epoch, r.seq = pos.Epoch, pos.Seq
				r.mu.Unlock()
				d.closeAll(r, "document lost: reconnect and send your copy")
			case !ok && pos.Epoch == "":
				// Gone from the store (Redis restarted empty): the
				// providers put it back.
				r.mu.Lock()
				r.epoch, r.seq = "", 0
				r.mu.Unlock()
				d.closeAll(r, "document lost: reconnect and send your copy")
			default:
				if !ok {
					d.s.metrics.yjsGaps.Inc() // compacted away: the whole document
				}
				d.sendMissed(ctx, r, msgs, ok, nil, seq, pos.Seq)
				r.mu.Lock()
				r.seq = max(r.seq, pos.Seq)
				r.mu.Unlock()
			}
		} else if err := d.sendWhole(ctx, r); err != nil {
			// Nothing delivered here yet, so no position to fill from:
			// the whole document, once (updates are idempotent).
			d.s.log.Warn("document resync", "room", name, "err", err)
		}
		r.mu.Lock()
		d.verifyLocked(r, "")
		r.mu.Unlock()
	}
}

// deleted is the Hub's OnRoomDeleted: the document is gone and its local
// providers were closed, so the next document of the room (a new epoch)
// starts a new delivery position instead of looking like a lost one.
func (d *ydocs) deleted(room string) {
	r := d.room(room)
	if r == nil {
		return
	}
	r.mu.Lock()
	r.epoch, r.seq = "", 0
	r.mu.Unlock()
	r.gen.Add(1)
}

func (d *ydocs) closeAll(r *docRoom, reason string) {
	r.gen.Add(1)
	d.s.hub.EachDoc(r.name, func(c *rooms.Conn) { c.Close(rooms.CloseResync, reason) })
}

// send queues frame on every local Yjs connection of r but exclude.
func (d *ydocs) send(r *docRoom, exclude string, frame []byte) {
	d.s.hub.EachDoc(r.name, func(c *rooms.Conn) {
		if c.ID != exclude {
			c.Send(frame)
		}
	})
}

// awareness handles a client's awareness message: the states that are new
// (a higher clock than known) are recorded and relayed to every client of
// the document; echoes of states everyone has go no further.
func (d *ydocs) awareness(ctx context.Context, r *docRoom, yc *yconn, update []byte) error {
	entries, err := yjs.ParseAwareness(update)
	if err != nil {
		return fmt.Errorf("parse awareness: %w", err) // ParseMessage checked it already
	}
	r.mu.Lock()
	fresh := r.applyLocked(entries, yc.ID, yc.User, true, time.Now())
	r.mu.Unlock()
	if len(fresh) > 0 {
		d.publishAwareness(ctx, r.name, yc.ID, yc.User, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(fresh)))
	}
	return nil
}

// applyLocked records entries announced by conn (of user) and returns those
// that changed something. r.mu is held.
func (r *docRoom) applyLocked(entries []yjs.AwarenessEntry, conn, user string, local bool, now time.Time) []yjs.AwarenessEntry {
	var fresh []yjs.AwarenessEntry
	for _, e := range entries {
		cur := r.clients[e.Client]
		null := string(e.State) == "null"
		switch {
		case cur != nil && cur.user != user:
			continue // another user's client: only its own connections speak for it
		case len(e.State) > maxAwarenessState:
			continue
		case cur == nil && null:
			continue // the removal of a state nobody has
		case cur == nil && len(r.owned[conn]) >= maxAwarenessStates:
			continue // beyond what one connection may announce
		case cur != nil && e.Clock < cur.clock:
			continue // older than what we have
		case cur != nil && e.Clock == cur.clock && !null:
			if cur.conn == conn {
				cur.seen = now // its owner confirms it (an answer to a query)
			}
			continue // an echo
		}
		// Kept: the entry aliases a read buffer or a payload.
		e.State = append([]byte(nil), e.State...)
		switch {
		case null:
			delete(r.clients, e.Client)
			r.disownLocked(cur.conn, e.Client)
		case cur == nil:
			r.clients[e.Client] = &awClient{clock: e.Clock, state: e.State, conn: conn, user: user, local: local, seen: now}
			r.ownLocked(conn, e.Client)
		default:
			// The same user's newer connection (a reconnect whose old
			// socket has not ended yet) takes the state over.
			if cur.conn != conn {
				r.disownLocked(cur.conn, e.Client)
				r.ownLocked(conn, e.Client)
			}
			cur.clock, cur.state, cur.conn, cur.local, cur.seen = e.Clock, e.State, conn, local, now
		}
		fresh = append(fresh, e)
	}
	return fresh
}

// ownLocked records that conn owns client's state. r.mu is held.
func (r *docRoom) ownLocked(conn string, client uint64) {
	set := r.owned[conn]
	if set == nil {
		set = make(map[uint64]struct{}, 1)
		r.owned[conn] = set
	}
	set[client] = struct{}{}
}

// disownLocked records that conn no longer owns client's state. r.mu is
// held.
func (r *docRoom) disownLocked(conn string, client uint64) {
	if set := r.owned[conn]; set != nil {
		delete(set, client)
		if len(set) == 0 {
			delete(r.owned, conn)
		}
	}
}

// dropConnLocked removes the states conn owns and returns their removal
// entries, at a cost of its own states, not the room's. r.mu is held.
func (r *docRoom) dropConnLocked(conn string) []yjs.AwarenessEntry {
	var gone []yjs.AwarenessEntry
	for client := range r.owned[conn] {
		if c := r.clients[client]; c != nil {
			delete(r.clients, client)
			gone = append(gone, yjs.AwarenessEntry{Client: client, Clock: c.clock + 1, State: []byte("null")})
		}
	}
	delete(r.owned, conn)
	return gone
}

// dropLocked removes the states for which match holds and returns their
// removal entries (clock + 1, state null). r.mu is held.
func (r *docRoom) dropLocked(match func(*awClient) bool) []yjs.AwarenessEntry {
	var gone []yjs.AwarenessEntry
	for client, c := range r.clients {
		if match(c) {
			delete(r.clients, client)
			r.disownLocked(c.conn, client)
			gone = append(gone, yjs.AwarenessEntry{Client: client, Clock: c.clock + 1, State: []byte("null")})
		}
	}
	return gone
}

// publishAwareness sends an awareness message of conn to every instance:
// the payload is varString instance, varString user, then the message.
func (d *ydocs) publishAwareness(ctx context.Context, room, conn, user string, msg []byte) {
	inst := d.s.cfg.InstanceID
	b := binary.AppendUvarint(make([]byte, 0, len(inst)+len(user)+len(msg)+8), uint64(len(inst)))
	b = append(b, inst...)
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	b = append(b, msg...)
	if err := d.s.broker.Publish(ctx, room, wire.SealDoc(conn, wire.DocAwareness, b)); err != nil {
		d.s.log.Warn("publish awareness", "room", room, "conn", conn, "err", err)
	}
}

// query asks every instance to announce the awareness of its connections
// of user in room (every user when empty).
func (d *ydocs) query(ctx context.Context, room, user string) {
	if err := d.s.broker.Publish(ctx, room, wire.SealDoc(d.s.cfg.InstanceID, wire.DocQuery, []byte(user))); err != nil {
		d.s.log.Warn("ask for awareness", "room", room, "err", err)
	}
}

// deliverAwareness relays an awareness payload to the local connections:
// one of a local connection as it is (its states were recorded when it
// arrived), one of another instance's connection with only what is new.
func (d *ydocs) deliverAwareness(r *docRoom, e wire.Envelope) {
	inst, rest, ok1 := varString(e.Frame)
	user, msg, ok2 := varString(rest)
	if !ok1 || !ok2 {
		d.s.log.Warn("dropped a malformed awareness payload", "room", r.name)
		return
	}
	if inst == d.s.cfg.InstanceID {
		// Recorded when it arrived from the client: relay only.
		d.send(r, e.Exclude, msg)
		return
	}
	m, err := yjs.ParseMessage(msg)
	if err != nil || m.Type != yjs.MessageAwareness {
		d.s.log.Warn("dropped an invalid awareness payload", "room", r.name, "err", err)
		return
	}
	entries, _ := yjs.ParseAwareness(m.Payload)
	r.mu.Lock()
	fresh := r.applyLocked(entries, e.Exclude, user, false, time.Now())
	r.mu.Unlock()
	if len(fresh) > 0 {
		d.send(r, e.Exclude, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(fresh)))
	}
}

// varString splits a lib0 varString off b.
func varString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// answerQuery announces the awareness states owned by this instance's
// connections of user (all when empty) in r, one payload per connection.
func (d *ydocs) answerQuery(r *docRoom, user string) {
	type owned struct {
		user    string
		entries []yjs.AwarenessEntry
	}
	byConn := make(map[string]*owned)
	r.mu.Lock()
	for client, c := range r.clients {
		if !c.local || (user != "" && c.user != user) {
			continue
		}
		o := byConn[c.conn]
		if o == nil {
			o = &owned{user: c.user}
			byConn[c.conn] = o
		}
		o.entries = append(o.entries, yjs.AwarenessEntry{Client: client, Clock: c.clock, State: c.state})
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(d.s.ctx, opTimeout)
	defer cancel()
	for conn, o := range byConn {
		d.publishAwareness(ctx, r.name, conn, o.user, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(o.entries)))
	}
}

// awarenessFor returns an awareness message with every known state of the
// document's clients but those owned by except (nil for all), or nil when
// there are none.
func (r *docRoom) awarenessFor(except *yconn) []byte {
	var all []yjs.AwarenessEntry
	r.mu.Lock()
	for client, c := range r.clients {
		if except == nil || c.conn != except.ID {
			all = append(all, yjs.AwarenessEntry{Client: client, Clock: c.clock, State: c.state})
		}
	}
	r.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	return yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(all))
}

// observePresence is fed every presence frame of the rooms (Hub Observe).
// When a user leaves, the awareness states of their connections on other
// instances go at once; when they lose a connection but stay, the
// instances are asked which of their states still stand, and the rest go
// after awarenessWait. This is how the states of an instance that crashed
// are removed: its connections' presence expires.
func (d *ydocs) observePresence(room string, frame []byte) {
	r := d.room(room)
	if r == nil {
		return
	}
	var f struct {
		Type   string `json:"type"`
		Member struct {
			ID string `json:"id"`
		} `json:"member"`
	}
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	user := f.Member.ID
	r.mu.Lock()
	defer r.mu.Unlock()
	switch f.Type {
	case "sync":
		// Events may have been lost: every remote state must be confirmed.
		for _, c := range r.clients {
			if !c.local {
				d.verifyLocked(r, "")
				break
			}
		}
	case "leave":
		gone := r.dropLocked(func(c *awClient) bool { return !c.local && c.user == user })
		d.sendRemoved(r, gone)
	case "update":
		for _, c := range r.clients {
			if !c.local && c.user == user {
				d.verifyLocked(r, user)
				break
			}
		}
	}
}

// verifyLocked asks the instances to announce again the states of user's
// connections ("" for every user), and removes the remote states not
// confirmed within awarenessWait. r.mu is held.
func (d *ydocs) verifyLocked(r *docRoom, user string) {
	if _, pending := r.verify[user]; pending {
		return
	}
	asked := time.Now()
	r.verify[user] = time.AfterFunc(awarenessWait, func() {
		r.mu.Lock()
		delete(r.verify, user)
		gone := r.dropLocked(func(c *awClient) bool {
			return !c.local && (user == "" || c.user == user) && c.seen.Before(asked)
		})
		r.mu.Unlock()
		d.sendRemoved(r, gone)
	})
	d.async(func() {
		ctx, cancel := context.WithTimeout(d.s.ctx, opTimeout)
		d.query(ctx, r.name, user)
		cancel()
	})
}

func (d *ydocs) sendRemoved(r *docRoom, gone []yjs.AwarenessEntry) {
	if len(gone) == 0 {
		return
	}
	d.s.log.Info("removed awareness of connections gone from presence", "room", r.name, "states", len(gone))
	d.send(r, "", yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(gone)))
}

// keepAlive sends every local Yjs connection a message that changes
// nothing, so an idle provider does not give up on its socket.
func (d *ydocs) keepAlive(ctx context.Context) {
	t := time.NewTicker(yjsKeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.mu.Lock()
			names := make([]string, 0, len(d.rooms))
			for name := range d.rooms {
				names = append(names, name)
			}
			d.mu.Unlock()
			for _, name := range names {
				d.s.hub.EachDoc(name, func(c *rooms.Conn) { c.Send(keepAliveFrame) })
			}
		}
	}
}

// wait waits for the async work (call after the server's context ended).
func (d *ydocs) wait() {
	d.asyncMu.Lock()
	d.stopped = true
	d.asyncMu.Unlock()
	d.wg.Wait()
}
