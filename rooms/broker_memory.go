package rooms

import (
	"context"
	"errors"
	"sync"
	"time"

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

// janitor drops rooms whose history expired, once a minute.
func (b *MemoryBroker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(time.Minute)
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
	b.sweepDocs(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, r := range b.rooms {
		r.mu.Lock()
		for k, e := range r.keys {
			if now.Sub(e.at) >= KeyWindow {
				delete(r.keys, k)
			}
		}
		if now.Sub(r.touched) >= b.o.HistoryTTL && len(r.keys) == 0 {
			r.dead = true
			delete(b.rooms, name)
		}
		r.mu.Unlock()
	}
}

// room returns the room's record locked (r.mu), creating it and expiring
// an old history on the way.
func (b *MemoryBroker) room(name string) *memRoom {
	for {
		b.mu.RLock()
		r := b.rooms[name]
		b.mu.RUnlock()
		if r == nil {
			b.mu.Lock()
			if r = b.rooms[name]; r == nil {
				r = &memRoom{}
				b.rooms[name] = r
			}
			b.mu.Unlock()
		}
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		now := b.now()
		if r.epoch == "" || now.Sub(r.touched) >= b.o.HistoryTTL {
			r.resetLocked(now)
		}
		return r
	}
}

// peekRoom returns the room's record locked (r.mu) when it has a live
// stream, or nil, creating and resetting nothing.
func (b *MemoryBroker) peekRoom(name string) *memRoom {
	b.mu.RLock()
	r := b.rooms[name]
	b.mu.RUnlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.dead || r.epoch == "" || b.now().Sub(r.touched) >= b.o.HistoryTTL {
		r.mu.Unlock()
		return nil
	}
	return r
}

func (r *memRoom) resetLocked(now time.Time) {
	r.epoch = NewEpoch()
	r.seq, r.start, r.n = 0, 0, 0
	r.ring = nil
	r.state = nil
	r.touched = now
	r.stateReqAt, r.stateReqSeq, r.asked = time.Time{}, 0, ""
	r.keys = nil
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
func (b *MemoryBroker) Publish(_ context.Context, room string, payload []byte) error {
	if b.down() {
		return ErrBrokerDown
	}
	recv, ok := b.subscribed(room)
	if !ok {
		return nil
	}
	r := b.room(room)
	r.mu.Unlock()
	r.deliverMu.Lock()
	recv.Deliver(room, payload)
	r.deliverMu.Unlock()
	return nil
}

// lockedRoom returns the room with its delivery lock and data lock held.
func (b *MemoryBroker) lockedRoom(room string) *memRoom {
	for {
		r := b.room(room)
		r.mu.Unlock()
		r.deliverMu.Lock()
		r.mu.Lock()
		if !r.dead {
			if now := b.now(); now.Sub(r.touched) >= b.o.HistoryTTL {
				r.resetLocked(now)
			}
			return r
		}
		r.mu.Unlock()
		r.deliverMu.Unlock()
	}
}

// PublishMessage implements Stream.
func (b *MemoryBroker) PublishMessage(_ context.Context, room string, m Message) (Published, error) {
	if b.down() {
		return Published{}, ErrBrokerDown
	}
	r := b.lockedRoom(room)
	defer r.deliverMu.Unlock()
	now := b.now()
	if m.Key != "" {
		if e, ok := r.keys[m.Key]; ok && now.Sub(e.at) < KeyWindow && e.epoch == r.epoch {
			r.mu.Unlock()
			p := e.p
			p.Duplicate = true
			return p, nil
		}
	}
	p := Published{ID: m.ID}
	var payload []byte
	if m.Stored && b.o.HistorySize > 0 {
		r.seq++
		frame := withSeq(m.Frame, r.seq)
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
func (b *MemoryBroker) Position(_ context.Context, room string) (Position, error) {
	if b.down() {
		return Position{}, ErrBrokerDown
	}
	r := b.room(room)
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, nil
}

// History implements Stream.
func (b *MemoryBroker) History(_ context.Context, room string, after uint64, limit int) (History, error) {
	if b.down() {
		return History{}, ErrBrokerDown
	}
	r := b.room(room)
	defer r.mu.Unlock()
	return r.historyLocked(after, limit), nil
}

// PeekHistory implements Stream.
func (b *MemoryBroker) PeekHistory(_ context.Context, room string, after uint64, limit int) (History, error) {
	if b.down() {
		return History{}, ErrBrokerDown
	}
	r := b.peekRoom(room)
	if r == nil {
		return History{}, nil
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

// SaveState implements Stream.
func (b *MemoryBroker) SaveState(_ context.Context, room string, at Position, data []byte) error {
	if b.down() {
		return ErrBrokerDown
	}
	r := b.room(room)
	defer r.mu.Unlock()
	seq := at.Seq
	if at.Epoch != r.epoch || seq > r.seq || r.state != nil && seq < r.state.Seq {
		return ErrStaleState
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
func (b *MemoryBroker) State(_ context.Context, room string) (Position, *State, error) {
	if b.down() {
		return Position{}, nil, ErrBrokerDown
	}
	r := b.room(room)
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, r.state, nil
}

// PeekState implements Stream.
func (b *MemoryBroker) PeekState(_ context.Context, room string) (Position, *State, error) {
	if b.down() {
		return Position{}, nil, ErrBrokerDown
	}
	r := b.peekRoom(room)
	if r == nil {
		return Position{}, nil, nil
	}
	defer r.mu.Unlock()
	return Position{Epoch: r.epoch, Seq: r.seq}, r.state, nil
}

// Reset implements Stream.
func (b *MemoryBroker) Reset(_ context.Context, room string) (Position, error) {
	if b.down() {
		return Position{}, ErrBrokerDown
	}
	r := b.lockedRoom(room)
	defer r.deliverMu.Unlock()
	r.resetLocked(b.now())
	pos := Position{Epoch: r.epoch}
	r.mu.Unlock()
	b.dropDoc(room)
	if recv, ok := b.subscribed(room); ok {
		recv.Deliver(room, wire.SealStored("", pos.Epoch, 0, false, nil))
	}
	return pos, nil
}

// ClaimStateRequest implements Stream: one instance, so only the
// connection asked last time is avoided.
func (b *MemoryBroker) ClaimStateRequest(_ context.Context, room string, _ uint64, candidates []string) (string, error) {
	r := b.room(room)
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
