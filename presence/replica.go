package presence

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Replica is this instance's copy of the presence of the rooms it serves.
// It is loaded from the Store once when a room is first needed, then kept
// up to date by the room's own presence frames (Observe), which arrive in
// the room's order: every frame carries the whole member, so applying the
// frames that follow any snapshot, in order, gives the room as it is.
// Welcomes are built from it, so a join reads nothing from the Store, and
// the joiners of a burst share one encoding of the member list (at most
// one per window and room; a joiner of a quiet room waits for none).
type Replica struct {
	store  Store
	window time.Duration

	mu    sync.Mutex
	rooms map[string]*replicaRoom
}

type replicaRoom struct {
	mu        sync.Mutex
	load      *replicaLoad // the current (or last good) load; nil before one started or after one failed
	held      [][]byte     // frames observed while loading, applied after it
	members   map[string]replicaMember
	waiters   []*snapshotWaiter
	timer     *time.Timer
	encodedAt time.Time // the last flush that encoded the member list
	// list is the encoded member list while it is current (nil once a
	// frame changed the members): a welcome re-sends it as it is.
	list json.RawMessage
	// order is the members oldest first while sorted is set: a join (the
	// newest member, as a rule) is appended, a leave cut out, anything
	// else has the next list sort them again.
	order  []listEntry
	sorted bool
}

type listEntry struct {
	since int64
	id    string
	enc   []byte
}

func (a listEntry) compare(b listEntry) int {
	if c := cmp.Compare(a.since, b.since); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// replicaMember is a member with its JSON encoding, made once when its
// frame is applied: a list is the concatenation of its members' encodings,
// so a busy room is not re-encoded member by member for every joiner.
type replicaMember struct {
	Member
	enc []byte
}

// replicaLoad is one attempt at loading a room.
type replicaLoad struct {
	done chan struct{} // closed when the attempt ended
	err  error         // set before done is closed
}

type snapshotWaiter struct {
	user  string
	count bool                // wants the member count only, not the list
	done  chan snapshotResult // buffered 1
}

type snapshotResult struct {
	members json.RawMessage // nil for a count waiter
	me      Member
	count   int
}

// ReplicaOptions configure a Replica.
type ReplicaOptions struct {
	// Window is the least time between two encodings of a room's member
	// list: the joiners of a burst share one. Zero value means 10ms.
	Window time.Duration
}

// NewReplica returns a replica loading rooms from store.
func NewReplica(store Store, o ReplicaOptions) *Replica {
	if o.Window <= 0 {
		o.Window = 10 * time.Millisecond
	}
	return &Replica{store: store, window: o.Window, rooms: make(map[string]*replicaRoom)}
}

// ErrNotReplicated is returned by Snapshot when the member did not show up
// in time; the caller reads the Store instead.
var ErrNotReplicated = errors.New("presence: member not yet in the replica")

func (r *Replica) room(name string, create bool) *replicaRoom {
	r.mu.Lock()
	defer r.mu.Unlock()
	rr := r.rooms[name]
	if rr == nil && create {
		rr = &replicaRoom{members: make(map[string]replicaMember)}
		r.rooms[name] = rr
	}
	return rr
}

// Forget drops a room this instance no longer serves (no frames of it
// arrive any more).
func (r *Replica) Forget(room string) {
	r.mu.Lock()
	rr := r.rooms[room]
	delete(r.rooms, room)
	r.mu.Unlock()
	if rr != nil {
		rr.mu.Lock()
		if rr.timer != nil {
			rr.timer.Stop()
		}
		for _, w := range rr.waiters {
			close(w.done)
		}
		rr.waiters = nil
		rr.mu.Unlock()
	}
}

// Observe applies one of the room's frames, in the room's order: join,
// update, leave and sync change the replica, other frames are ignored.
func (r *Replica) Observe(room string, frame []byte) {
	if !IsPresenceFrame(frame) {
		return
	}
	rr := r.room(room, false)
	if rr == nil {
		return // not served yet: a load will read the Store after this
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if !rr.loaded() {
		if rr.load != nil { // in flight: applied after it
			rr.held = append(rr.held, bytes.Clone(frame))
		}
		return
	}
	rr.apply(frame)
	if len(rr.waiters) > 0 {
		r.scheduleLocked(rr)
	}
}

// Reset replaces a room's members (a fresh read after the replica may
// have missed frames).
func (r *Replica) Reset(room string, members []Member) {
	rr := r.room(room, false)
	if rr == nil {
		return
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if !rr.loaded() {
		return // the load reads after this anyway
	}
	rr.set(members)
}

// Count returns how many members the room has, when the replica holds it.
func (r *Replica) Count(room string) (int, bool) {
	rr := r.room(room, false)
	if rr == nil {
		return 0, false
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if !rr.loaded() {
		return 0, false
	}
	return len(rr.members), true
}

func (rr *replicaRoom) loaded() bool {
	if rr.load == nil {
		return false
	}
	select {
	case <-rr.load.done:
		return rr.load.err == nil
	default:
		return false
	}
}

// presenceFrame is what the replica reads of a frame.
type presenceFrame struct {
	Type    string   `json:"type"`
	Member  Member   `json:"member"`
	Members []Member `json:"members"`
}

func (rr *replicaRoom) apply(frame []byte) {
	var f presenceFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		return
	}
	switch f.Type {
	case "join", "update":
		rr.put(f.Member)
	case "leave":
		rr.remove(f.Member.ID)
	case "sync":
		rr.set(f.Members)
	}
}

// put adds or replaces m, encoding it as a welcome lists it.
func (rr *replicaRoom) put(m Member) {
	if len(m.Meta) == 0 {
		m.Meta = json.RawMessage("{}")
	}
	enc, err := json.Marshal(m)
	if err != nil {
		return // Meta came from a frame that parsed: it is valid JSON
	}
	_, known := rr.members[m.ID]
	rr.members[m.ID] = replicaMember{m, enc}
	rr.list = nil
	e := listEntry{m.Since, m.ID, enc}
	if known || !rr.sorted || (len(rr.order) > 0 && rr.order[len(rr.order)-1].compare(e) > 0) {
		rr.sorted, rr.order = false, nil
		return
	}
	rr.order = append(rr.order, e)
}

// remove takes the member id out.
func (rr *replicaRoom) remove(id string) {
	if _, ok := rr.members[id]; !ok {
		return
	}
	delete(rr.members, id)
	rr.list = nil
	if rr.sorted {
		rr.order = slices.DeleteFunc(rr.order, func(e listEntry) bool { return e.id == id })
	}
}

// set replaces every member with members.
func (rr *replicaRoom) set(members []Member) {
	clear(rr.members)
	rr.list, rr.order, rr.sorted = nil, nil, len(members) == 0
	for _, m := range members {
		rr.put(m)
	}
}

// encoded returns the member list, oldest first, as a JSON array: the
// cached one while no frame changed the members since.
func (rr *replicaRoom) encoded() json.RawMessage {
	if rr.list != nil {
		return rr.list
	}
	if !rr.sorted {
		rr.order = make([]listEntry, 0, len(rr.members))
		for _, m := range rr.members {
			rr.order = append(rr.order, listEntry{m.Since, m.ID, m.enc})
		}
		slices.SortFunc(rr.order, listEntry.compare)
		rr.sorted = true
	}
	n := 2
	for _, e := range rr.order {
		n += len(e.enc) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, e := range rr.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.enc...)
	}
	rr.list = append(b, ']')
	return rr.list
}

// IsPresenceFrame reports whether frame is a join, leave, update or sync
// frame (the frames the server builds start with their type).
func IsPresenceFrame(frame []byte) bool {
	return bytes.HasPrefix(frame, []byte(`{"type":"join"`)) || bytes.HasPrefix(frame, []byte(`{"type":"update"`)) ||
		bytes.HasPrefix(frame, []byte(`{"type":"leave"`)) || bytes.HasPrefix(frame, []byte(`{"type":"sync"`))
}

// load reads the room from the Store once; frames observed meanwhile are
// applied on top.
func (r *Replica) load(ctx context.Context, room string) (*replicaRoom, error) {
	rr := r.room(room, true)
	rr.mu.Lock()
	if l := rr.load; l != nil {
		rr.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if l.err != nil {
			return nil, l.err
		}
		return rr, nil
	}
	l := &replicaLoad{done: make(chan struct{})}
	rr.load = l
	rr.mu.Unlock()

	members, err := r.store.Members(ctx, room)

	rr.mu.Lock()
	defer rr.mu.Unlock()
	if err != nil {
		l.err = fmt.Errorf("load presence replica: %w", err)
		close(l.done)
		// The next joiner tries again, and reads the store after every
		// frame held so far.
		rr.load, rr.held = nil, nil
		return nil, l.err
	}
	for _, m := range members {
		rr.put(m)
	}
	for _, f := range rr.held {
		rr.apply(f)
	}
	rr.held = nil
	close(l.done)
	return rr, nil
}

// Snapshot returns the room's members, encoded as a JSON array, oldest
// first, and user's member, once the replica holds user (whose join the
// caller has just published). Joiners waiting at the same moment share
// one encoding. It returns ErrNotReplicated if user does not show up
// within wait.
func (r *Replica) Snapshot(ctx context.Context, room, user string, wait time.Duration) (json.RawMessage, Member, error) {
	res, err := r.snapshot(ctx, room, user, false, wait)
	return res.members, res.me, err
}

// SnapshotCount is Snapshot for a welcome that shows the member count
// only: the room's member count once the replica holds user, without
// encoding the list.
func (r *Replica) SnapshotCount(ctx context.Context, room, user string, wait time.Duration) (int, error) {
	res, err := r.snapshot(ctx, room, user, true, wait)
	return res.count, err
}

func (r *Replica) snapshot(ctx context.Context, room, user string, count bool, wait time.Duration) (snapshotResult, error) {
	rr, err := r.load(ctx, room)
	if err != nil {
		return snapshotResult{}, err
	}
	w := &snapshotWaiter{user: user, count: count, done: make(chan snapshotResult, 1)}
	rr.mu.Lock()
	if m, ok := rr.members[user]; ok && count {
		// Nothing to encode, so nothing to share: no need to wait.
		n := len(rr.members)
		rr.mu.Unlock()
		return snapshotResult{me: m.Member, count: n}, nil
	}
	rr.waiters = append(rr.waiters, w)
	r.scheduleLocked(rr)
	rr.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case res, ok := <-w.done:
		if !ok {
			return snapshotResult{}, ErrNotReplicated
		}
		return res, nil
	case <-t.C:
	case <-ctx.Done():
	}
	rr.mu.Lock()
	for i, x := range rr.waiters {
		if x == w {
			rr.waiters = append(rr.waiters[:i], rr.waiters[i+1:]...)
			break
		}
	}
	rr.mu.Unlock()
	select {
	case res, ok := <-w.done: // answered meanwhile
		if ok {
			return res, nil
		}
	default:
	}
	return snapshotResult{}, ErrNotReplicated
}

// scheduleLocked arranges a flush: at once when the room was not encoded
// within the window (a quiet room's joiner does not wait), else when the
// window since the last encoding ends (a burst's joiners share it).
func (r *Replica) scheduleLocked(rr *replicaRoom) {
	if rr.timer != nil {
		return
	}
	wait := max(0, r.window-time.Since(rr.encodedAt))
	rr.timer = time.AfterFunc(wait, func() { r.flush(rr) })
}

// flush encodes the room once for every waiter whose member it holds.
func (r *Replica) flush(rr *replicaRoom) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.timer = nil
	if len(rr.waiters) == 0 {
		return
	}
	var ready, rest []*snapshotWaiter
	for _, w := range rr.waiters {
		if _, ok := rr.members[w.user]; ok {
			ready = append(ready, w)
		} else {
			rest = append(rest, w)
		}
	}
	rr.waiters = rest
	if len(ready) == 0 {
		return // Observe schedules again when frames arrive
	}
	var enc json.RawMessage
	for _, w := range ready {
		if !w.count && enc == nil {
			if rr.list == nil {
				rr.encodedAt = time.Now()
			}
			enc = rr.encoded()
		}
	}
	for _, w := range ready {
		res := snapshotResult{me: rr.members[w.user].Member, count: len(rr.members)}
		if !w.count {
			res.members = enc
		}
		w.done <- res
	}
}
