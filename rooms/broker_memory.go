package rooms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/wire"
)

// MemoryBroker is the Broker of a single instance. Each room keeps its
// stored messages in a bounded ring, and every payload of a room, stored
// or not, is delivered under the room's delivery lock in the publisher's
// goroutine: one room has one order, whoever publishes.
type MemoryBroker struct {
	o StreamOptions

	mu     sync.RWMutex
	recv   Receiver
	subs   map[string]struct{}
	rooms  map[string]*memRoom
	docMu  sync.Mutex
	docs   map[string]*memDoc
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup

	now func() time.Time
}

type memRoom struct {
	deliverMu sync.Mutex // held while a payload of the room is delivered

	mu       sync.Mutex
	dead     bool // dropped by the janitor: look the room up again
	epoch    string
	seq      uint64
	ring     []StoredMessage // circular, cap HistorySize
	start, n int
	touched  time.Time // last stored message, or the epoch's start
	state    *State
	// The outstanding state request: when it went out and for which seq.
	stateReqAt  time.Time
	stateReqSeq uint64
	asked       string // the connection asked last
	keys        map[string]keyEntry
	forkedFrom  string // the epoch Fork renamed: its keys still answer
}

type keyEntry struct {
	p     Published
	epoch string // a key stands for its publish in this epoch only
	at    time.Time
}

var _ Broker = (*MemoryBroker)(nil)

// NewMemoryBroker returns an in-memory broker with its stream configured
// by o.
func NewMemoryBroker(o StreamOptions) *MemoryBroker {
	return &MemoryBroker{
		o:     o.withDefaults(),
		subs:  make(map[string]struct{}),
		rooms: make(map[string]*memRoom),
		docs:  make(map[string]*memDoc),
		stop:  make(chan struct{}),
		now:   time.Now,
	}
}

// Start implements Broker. It starts the janitor that forgets expired
// rooms; Close stops it.
func (b *MemoryBroker) Start(_ context.Context, r Receiver) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recv != nil {
		return errors.New("rooms: memory broker already started")
	}
	if b.closed {
		return ErrBrokerDown
	}
	b.recv = r
	b.wg.Add(1)
	go b.janitor()
	return nil
}

// janitor drops rooms whose history expired (or, with a store, lets idle
// rooms go from memory) every sweepInterval.
func (b *MemoryBroker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(b.o.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.sweep()
		}
	}
}

func (b *MemoryBroker) sweep() {
	now := b.now()
	if b.o.Store != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.expireKeys(now)
		b.evictIdle(now)
		return
	}
	b.sweepDocs(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireKeys(now)
	for name, r := range b.rooms {
		r.mu.Lock()
		if now.Sub(r.touched) >= b.o.HistoryTTL && len(r.keys) == 0 {
			r.dead = true
			delete(b.rooms, name)
		}
		r.mu.Unlock()
	}
}

// expireKeys forgets publish keys past their window. b.mu held.
func (b *MemoryBroker) expireKeys(now time.Time) {
	for _, r := range b.rooms {
		r.mu.Lock()
		for k, e := range r.keys {
			if now.Sub(e.at) >= KeyWindow {
				delete(r.keys, k)
			}
		}
		r.mu.Unlock()
	}
}

// room returns the room's record locked (r.mu), creating it (loaded from
// the store, when there is one) and expiring an old history on the way.
func (b *MemoryBroker) room(ctx context.Context, name string) (*memRoom, error) {
	for {
		r, err := b.resident(ctx, name, true)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		now := b.now()
		if r.epoch == "" || b.o.Store == nil && now.Sub(r.touched) >= b.o.HistoryTTL {
			r.resetLocked(now)
		}
		return r, nil
	}
}

// resident returns the room's record in memory, loading it from the store
// when it is not; with create, a room the store does not hold either gets
// an empty record, else nil. No lock is held while the store is read: two
// loads of one room may run at once, and the first to finish is kept.
func (b *MemoryBroker) resident(ctx context.Context, name string, create bool) (*memRoom, error) {
	b.mu.RLock()
	r := b.rooms[name]
	b.mu.RUnlock()
	if r != nil {
		return r, nil
	}
	var doc *memDoc
	fresh := &memRoom{}
	if b.o.Store != nil {
		kept, err := b.o.Store.Load(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("load room %q from the store: %w", name, err)
		}
		fresh, doc = b.fromStore(kept)
		if fresh.epoch == "" && doc == nil && !create {
			return nil, nil
		}
	} else if !create {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r = b.rooms[name]; r != nil {
		return r, nil // another load won: what this one read may be older
	}
	// The document goes in with the room, before a writer can find the
	// room and start a new document.
	if doc != nil {
		b.docMu.Lock()
		if b.docs[name] == nil {
			b.docs[name] = doc
		}
		b.docMu.Unlock()
	}
	b.rooms[name] = fresh
	return fresh, nil
}

// peekRoom returns the room's record locked (r.mu) when it has a live
// stream, or nil, starting and resetting nothing (a room the store holds
// is loaded).
func (b *MemoryBroker) peekRoom(ctx context.Context, name string) (*memRoom, error) {
	r, err := b.resident(ctx, name, false)
	if r == nil || err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.dead || r.epoch == "" || b.o.Store == nil && b.now().Sub(r.touched) >= b.o.HistoryTTL {
		r.mu.Unlock()
		return nil, nil
	}
	return r, nil
}

func (r *memRoom) resetLocked(now time.Time) {
	r.epoch = NewEpoch()
	r.seq, r.start, r.n = 0, 0, 0
	r.ring = nil
	r.state = nil
	r.touched = now
	r.stateReqAt, r.stateReqSeq, r.asked = time.Time{}, 0, ""
	r.keys = nil
	r.forkedFrom = ""
}

func (b *MemoryBroker) subscribed(room string) (Receiver, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.subs[room]
	return b.recv, ok && !b.closed
}

func (b *MemoryBroker) down() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed || b.recv == nil
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(ctx context.Context, room string, payload []byte) error {
	if b.down() {
		return ErrBrokerDown
	}
	recv, ok := b.subscribed(room)
	if !ok {
		return nil
	}
	r, err := b.room(ctx, room)
	if err != nil {
		return err
	}
	r.mu.Unlock()
	r.deliverMu.Lock()
	recv.Deliver(room, payload)
	r.deliverMu.Unlock()
	return nil
}

// lockedRoom returns the room with its delivery lock and data lock held.
func (b *MemoryBroker) lockedRoom(ctx context.Context, room string) (*memRoom, error) {
	for {
		r, err := b.room(ctx, room)
		if err != nil {
			return nil, err
		}
		r.mu.Unlock()
		r.deliverMu.Lock()
		r.mu.Lock()
		if !r.dead {
			if now := b.now(); b.o.Store == nil && now.Sub(r.touched) >= b.o.HistoryTTL {
				r.resetLocked(now)
			}
			return r, nil
		}
		r.mu.Unlock()
		r.deliverMu.Unlock()
	}
}

// PublishMessage implements Stream. With a store, a stored message is
// written to it before it is delivered or acknowledged; the room's
// delivery lock, held meanwhile, keeps its messages in seq order.
func (b *MemoryBroker) PublishMessage(ctx context.Context, room string, m Message) (Published, error) {
	if b.down() {
		return Published{}, ErrBrokerDown
	}
	r, err := b.lockedRoom(ctx, room)
	if err != nil {
		return Published{}, err
	}
	defer r.deliverMu.Unlock()
	now := b.now()
	if m.Key != "" {
		if e, ok := r.keys[m.Key]; ok && now.Sub(e.at) < KeyWindow && (e.epoch == r.epoch || e.epoch == r.forkedFrom) {
			r.mu.Unlock()
			p := e.p
			p.Duplicate = true
			if p.Position.Seq != 0 {
				p.Position.Epoch = r.epoch
			}
			return p, nil
		}
	}
	p := Published{ID: m.ID}
	var payload []byte
	if m.Stored && b.o.HistorySize > 0 {
		seq := r.seq + 1
		frame := withSeq(m.Frame, seq)
		if b.o.Store != nil {
			// Only this room waits for the commit: its delivery lock
			// keeps seq and epoch as they are meanwhile.
			epoch := r.epoch
			r.mu.Unlock()
			err := b.storeWrite(ctx, store.Op{Kind: store.OpMessage, Room: room, Epoch: epoch, Seq: seq, Data: frame, Exclude: m.Exclude, Keep: b.o.HistorySize})
			if err != nil {
				return Published{}, fmt.Errorf("store message %d of room %q: %w", seq, room, err)
			}
			r.mu.Lock()
		}
		r.seq = seq
		r.push(StoredMessage{Seq: r.seq, Frame: frame, Exclude: m.Exclude}, b.o.HistorySize)
		r.touched = now
		due := false
		var stateSeq uint64
		if r.state != nil {
			stateSeq = r.state.Seq
		}
		if r.seq-stateSeq >= b.o.stateThreshold() && now.Sub(r.stateReqAt) >= stateRequestRetry {
			r.stateReqAt, r.stateReqSeq = now, r.seq
			due = true
		}
		p.Position = Position{Epoch: r.epoch, Seq: r.seq}
		payload = wire.SealStored(m.Exclude, r.epoch, r.seq, due, frame)
	} else {
		payload = wire.Seal(m.Exclude, m.Frame)
	}
	if m.Key != "" {
		if r.keys == nil {
			r.keys = make(map[string]keyEntry)
		}
		r.keys[m.Key] = keyEntry{p: p, epoch: r.epoch, at: now}
	}
	r.mu.Unlock()
	if recv, ok := b.subscribed(room); ok {
		recv.Deliver(room, payload)
	}
	return p, nil
}

// push appends m to the ring, overwriting the oldest once size are held.
func (r *memRoom) push(m StoredMessage, size int) {
	if r.n < size {
		r.ring = append(r.ring, m)
		r.n++
		return
	}
	r.ring[r.start] = m
	r.start = (r.start + 1) % r.n
}

func (r *memRoom) at(i int) StoredMessage { return r.ring[(r.start+i)%r.n] }

// Position implements Stream.
func (b *MemoryBroker) Position(ctx context.Context, room string) (Position, error) {
	if b.down() {
		return Position{}, ErrBrokerDown
	}
	r, err := b.room(ctx, room)
	if err != nil {
		return Position{}, err
	}
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, nil
}

// History implements Stream.
func (b *MemoryBroker) History(ctx context.Context, room string, after uint64, limit int) (History, error) {
	if b.down() {
		return History{}, ErrBrokerDown
	}
	r, err := b.room(ctx, room)
	if err != nil {
		return History{}, err
	}
	defer r.mu.Unlock()
	return r.historyLocked(after, limit), nil
}

// PeekHistory implements Stream.
func (b *MemoryBroker) PeekHistory(ctx context.Context, room string, after uint64, limit int) (History, error) {
	if b.down() {
		return History{}, ErrBrokerDown
	}
	r, err := b.peekRoom(ctx, room)
	if r == nil || err != nil {
		return History{}, err
	}
	defer r.mu.Unlock()
	return r.historyLocked(after, limit), nil
}

func (r *memRoom) historyLocked(after uint64, limit int) History {
	h := History{Position: Position{Epoch: r.epoch, Seq: r.seq}}
	if after > r.seq {
		return h
	}
	if after == r.seq {
		h.Complete = true
		return h
	}
	if r.n == 0 {
		return h
	}
	first := r.at(0).Seq
	h.Complete = after+1 >= first
	for i := int(max(after+1, first) - first); i < r.n && len(h.Messages) < limit; i++ {
		h.Messages = append(h.Messages, r.at(i))
	}
	return h
}

// SaveState implements Stream. With a store, the state is written to it
// before it is kept.
func (b *MemoryBroker) SaveState(ctx context.Context, room string, at Position, data []byte) error {
	if b.down() {
		return ErrBrokerDown
	}
	r, err := b.lockedRoom(ctx, room)
	if err != nil {
		return err
	}
	defer r.deliverMu.Unlock()
	defer r.mu.Unlock()
	seq := at.Seq
	if at.Epoch != r.epoch || seq > r.seq || r.state != nil && seq < r.state.Seq {
		return ErrStaleState
	}
	if b.o.Store != nil {
		// The delivery lock keeps the room's position and state as they
		// are while the store commits.
		r.mu.Unlock()
		err := b.storeWrite(ctx, store.Op{Kind: store.OpState, Room: room, Epoch: at.Epoch, Seq: seq, Data: data})
		r.mu.Lock()
		if err != nil {
			return fmt.Errorf("store the state of room %q: %w", room, err)
		}
	}
	r.state = &State{Seq: seq, Data: data}
	r.asked = "" // a state arrived: whoever was asked may be asked again
	if r.stateReqSeq != 0 && seq >= r.stateReqSeq {
		// Answered: the next request goes out as soon as it is due,
		// not a retry period later.
		r.stateReqAt, r.stateReqSeq = time.Time{}, 0
	}
	return nil
}

// State implements Stream.
func (b *MemoryBroker) State(ctx context.Context, room string) (Position, *State, error) {
	if b.down() {
		return Position{}, nil, ErrBrokerDown
	}
	r, err := b.room(ctx, room)
	if err != nil {
		return Position{}, nil, err
	}
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, r.state, nil
}

// PeekState implements Stream.
func (b *MemoryBroker) PeekState(ctx context.Context, room string) (Position, *State, error) {
	if b.down() {
		return Position{}, nil, ErrBrokerDown
	}
	r, err := b.peekRoom(ctx, room)
	if r == nil || err != nil {
		return Position{}, nil, err
	}
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, r.state, nil
}

// Reset implements Stream. With a store, the room is deleted from it
// first: its next stored message starts it again in the new epoch.
func (b *MemoryBroker) Reset(ctx context.Context, room string) (Position, error) {
	if b.down() {
		return Position{}, ErrBrokerDown
	}
	r, err := b.lockedRoom(ctx, room)
	if err != nil {
		return Position{}, err
	}
	defer r.deliverMu.Unlock()
	if b.o.Store != nil {
		r.mu.Unlock()
		if err := b.storeWrite(ctx, store.Op{Kind: store.OpDelete, Room: room}); err != nil {
			return Position{}, fmt.Errorf("delete room %q from the store: %w", room, err)
		}
		r.mu.Lock()
	}
	r.resetLocked(b.now())
	pos := Position{Epoch: r.epoch}
	r.mu.Unlock()
	b.dropDoc(room)
	if recv, ok := b.subscribed(room); ok {
		recv.Deliver(room, wire.SealStored("", pos.Epoch, 0, false, nil))
	}
	return pos, nil
}

// Fork implements Stream. The memory engine's stream is one process's and
// never forks by itself; asked to, it renames the epoch as Redis does.
// With a store it refuses: the store holds the room under its epoch, and
// every stored message is written there before it is delivered.
func (b *MemoryBroker) Fork(ctx context.Context, room, from string) (Position, error) {
	if b.down() {
		return Position{}, ErrBrokerDown
	}
	if b.o.Store != nil {
		return Position{}, errors.New("rooms: fork: the memory engine writes every stored message through to its store before delivering it, so its history cannot fork")
	}
	r, err := b.lockedRoom(ctx, room)
	if err != nil {
		return Position{}, err
	}
	defer r.deliverMu.Unlock()
	if r.epoch != from {
		pos := Position{Epoch: r.epoch, Seq: r.seq}
		r.mu.Unlock()
		return pos, nil
	}
	r.forkedFrom, r.epoch = r.epoch, NewEpoch()
	pos := Position{Epoch: r.epoch, Seq: r.seq}
	r.mu.Unlock()
	if recv, ok := b.subscribed(room); ok {
		recv.Deliver(room, wire.SealStored("", pos.Epoch, pos.Seq, false, nil))
	}
	return pos, nil
}

// ClaimStateRequest implements Stream: one instance, so only the
// connection asked last time is avoided.
func (b *MemoryBroker) ClaimStateRequest(ctx context.Context, room string, _ uint64, candidates []string) (string, error) {
	r, err := b.room(ctx, room)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	for _, c := range candidates {
		if c != r.asked {
			r.asked = c
			return c, nil
		}
	}
	return "", nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(_ context.Context, room string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBrokerDown
	}
	b.subs[room] = struct{}{}
	return nil
}

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(_ context.Context, room string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, room)
	return nil
}

// Ready implements Broker.
func (b *MemoryBroker) Ready(context.Context) error {
	if b.down() {
		return ErrBrokerDown
	}
	return nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.recv != nil
	b.mu.Unlock()
	close(b.stop)
	if started {
		b.wg.Wait()
	}
	return nil
}
