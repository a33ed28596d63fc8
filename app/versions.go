package main

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	roomstore "github.com/roomcast/roomcast/rooms/store"
)

// versionTimeout bounds the taking of one room's versions: reading the
// document or state and writing it to the store.
const versionTimeout = 30 * time.Second

// versionDrain is how long shutdown waits for the versions being taken
// before it cancels them.
const versionDrain = 3 * time.Second

// versions takes the versions of the rooms with a store: a room being
// changed gets one at once, then at most one per VERSION_INTERVAL while
// changes go on, and one when its last local member leaves with changes
// not in a version yet. A version is taken on its own goroutine, never on
// the path that delivers or stores the change that asked for it.
type versions struct {
	s        *Server
	st       roomstore.Store
	interval time.Duration
	keep     int

	ctx    context.Context // ends when wait gives up on the versions under way
	cancel context.CancelFunc

	mu      sync.Mutex
	rooms   map[string]*roomVersions // rooms changed within the last interval
	stopped bool
	wg      sync.WaitGroup // versions under way
}

// roomVersions is where one room stands: when its last version was taken
// and what changed since. A room is forgotten one interval after its last
// version when nothing changed meanwhile.
type roomVersions struct {
	last       time.Time
	doc, state bool        // changed since the last version began
	timer      *time.Timer // the end of the interval after last
	gen        uint64      // which timer is current: a stopped one may still fire
	taking     bool
	leaving    bool // the last member left while a version was under way
}

func (e *roomVersions) dirty() bool { return e.doc || e.state }

func newVersions(s *Server, st roomstore.Store) *versions {
	ctx, cancel := context.WithCancel(context.Background())
	return &versions{s: s, st: st, interval: s.cfg.VersionInterval, keep: s.cfg.Versions,
		ctx: ctx, cancel: cancel, rooms: make(map[string]*roomVersions)}
}

// changed records that the room's document or state changed. A nil
// versions (no store) records nothing.
func (v *versions) changed(room string, kind roomstore.VersionKind) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	e := v.rooms[room]
	if e == nil {
		e = &roomVersions{}
		v.rooms[room] = e
	}
	switch kind {
	case roomstore.VersionDoc:
		e.doc = true
	case roomstore.VersionState:
		e.state = true
	}
	if e.taking || e.timer != nil {
		return // the version under way or the end of the interval takes it
	}
	// No version of the room within the interval.
	v.takeLocked(room, e)
}

// left is told that the room's last local connection went: its changes
// not in a version yet get one now, whatever the interval.
func (v *versions) left(room string) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.rooms[room]
	if v.stopped || e == nil || !e.dirty() {
		return
	}
	if e.taking {
		e.leaving = true
		return
	}
	v.takeLocked(room, e)
}

// takeLocked starts taking the versions of what changed in the room.
// v.mu is held.
func (v *versions) takeLocked(room string, e *roomVersions) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.gen++
	doc, state := e.doc, e.state
	e.doc, e.state, e.taking, e.leaving = false, false, true, false
	at := time.Now()
	e.last = at
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.take(room, doc, state, at)
		v.mu.Lock()
		defer v.mu.Unlock()
		e.taking = false
		if v.stopped {
			return
		}
		if e.leaving && e.dirty() {
			v.takeLocked(room, e)
			return
		}
		e.leaving = false
		gen := e.gen
		e.timer = time.AfterFunc(time.Until(e.last.Add(v.interval)), func() { v.intervalEnded(room, gen) })
	}()
}

// intervalEnded takes a version of what changed during the interval, or
// forgets a room that did not change.
func (v *versions) intervalEnded(room string, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.rooms[room]
	if v.stopped || e == nil || e.gen != gen || e.taking {
		return
	}
	e.timer = nil
	if e.dirty() {
		v.takeLocked(room, e)
		return
	}
	delete(v.rooms, room)
}

// take writes a version of the room's document (doc) and of its state
// (state) as they are now.
func (v *versions) take(room string, doc, state bool, at time.Time) {
	ctx, cancel := context.WithTimeout(v.ctx, versionTimeout)
	defer cancel()
	if doc {
		if err := v.takeDoc(ctx, room, at); err != nil {
			v.s.log.Warn("take a version of the document", "room", room, "err", err)
		}
	}
	if state {
		if err := v.takeState(ctx, room, at); err != nil {
			v.s.log.Warn("take a version of the state", "room", room, "err", err)
		}
	}
}

func (v *versions) takeDoc(ctx context.Context, room string, at time.Time) error {
	snap, err := v.s.docs.Snapshot(ctx, room)
	if err != nil {
		return err
	}
	if snap.Position.Epoch == "" {
		return nil // deleted meanwhile
	}
	return v.st.Write(ctx, roomstore.Op{Kind: roomstore.OpVersion, Room: room, At: at, Version: roomstore.VersionDoc, Data: snap.Doc, Keep: v.keep})
}

func (v *versions) takeState(ctx context.Context, room string, at time.Time) error {
	_, st, err := v.s.broker.PeekState(ctx, room)
	if err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	return v.st.Write(ctx, roomstore.Op{Kind: roomstore.OpVersion, Room: room, At: at, Version: roomstore.VersionState, Seq: st.Seq, Data: st.Data, Keep: v.keep})
}

// wait takes the versions still owed (rooms changed since their last one),
// then waits for every version under way, giving up on them after
// versionDrain. Nothing is taken afterwards.
func (v *versions) wait() {
	if v == nil {
		return
	}
	v.mu.Lock()
	for room, e := range v.rooms {
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		if !e.taking && e.dirty() {
			v.takeLocked(room, e)
		}
	}
	v.stopped = true
	v.mu.Unlock()
	done := make(chan struct{})
	go func() { v.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(versionDrain):
		v.s.log.Warn("shutdown: versions still being taken; cancelled")
		v.cancel()
		<-done
	}
	v.cancel()
}

// --- HTTP API of versions ---

// versionJSON is one version of a listing.
type versionJSON struct {
	ID    int64  `json:"id"`
	At    int64  `json:"at"` // unix ms
	Kind  string `json:"kind"`
	Seq   uint64 `json:"seq,omitempty"`
	Bytes int64  `json:"bytes"`
}

// listVersions answers the room's versions, newest first. A server
// without a store keeps none: the list is empty.
func (s *Server) listVersions(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	out := []versionJSON{}
	if s.roomStore != nil {
		vs, err := s.roomStore.Versions(c.UserContext(), room)
		if err != nil {
			return s.unavailable(c, "list versions", err)
		}
		for _, v := range vs {
			vj := versionJSON{ID: v.ID, At: v.At.UnixMilli(), Kind: string(v.Kind), Bytes: v.Bytes}
			if v.Kind == roomstore.VersionState {
				vj.Seq = v.Seq
			}
			out = append(out, vj)
		}
	}
	return c.JSON(fiber.Map{"room": room, "versions": out})
}

// getVersion answers one version: a document's as the Yjs update of the
// whole document, a state's as {"seq","data"}.
func (s *Server) getVersion(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "a version id is a positive integer (from GET /api/rooms/{room}/versions)")
	}
	if s.roomStore == nil {
		return refuse(fiber.StatusNotFound, codeNotFound, "no such version: this server keeps no versions (ROOMCAST_STORE)")
	}
	v, data, err := s.roomStore.Version(c.UserContext(), room, id)
	switch {
	case errors.Is(err, roomstore.ErrNotFound):
		return refuse(fiber.StatusNotFound, codeNotFound, "no such version of this room")
	case err != nil:
		return s.unavailable(c, "read version", err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	if v.Kind == roomstore.VersionDoc {
		c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
		return c.Send(data)
	}
	return c.JSON(fiber.Map{"seq": v.Seq, "data": json.RawMessage(data)})
}
