package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// MemoryStore is the Store of a single instance. Presence frames are
// published while the store's lock is held, so they leave in the order of
// the changes.
type MemoryStore struct {
	o   Options
	pub Publisher

	mu    sync.Mutex
	rooms map[string]*memRoom
}

type memRoom struct {
	users map[string]*memUser
	conns map[string]*memConn
}

type memUser struct {
	m          Member // Conns kept current
	graceUntil time.Time
}

type memConn struct {
	user    string
	expires time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an in-memory store publishing through pub.
func NewMemoryStore(o Options, pub Publisher) *MemoryStore {
	return &MemoryStore{o: o.withDefaults(), pub: pub, rooms: make(map[string]*memRoom)}
}

// Join implements Store.
func (s *MemoryStore) Join(ctx context.Context, sess Session) (Member, error) {
	if err := checkConn(sess.Conn); err != nil {
		return Member{}, err
	}
	meta, err := ValidateMeta(sess.Meta)
	if err != nil {
		return Member{}, err
	}
	sess.Meta = meta
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joinLocked(ctx, sess)
}

func (s *MemoryStore) joinLocked(ctx context.Context, sess Session) (Member, error) {
	now := s.o.Now()
	r := s.rooms[sess.Room]
	if r == nil {
		r = &memRoom{users: make(map[string]*memUser), conns: make(map[string]*memConn)}
		s.rooms[sess.Room] = r
	}
	if c, ok := r.conns[sess.Conn]; ok {
		c.expires = now.Add(s.o.TTL)
		return r.users[c.user].m, nil
	}
	r.conns[sess.Conn] = &memConn{user: sess.User, expires: now.Add(s.o.TTL)}
	u := r.users[sess.User]
	if u == nil {
		u = &memUser{m: Member{ID: sess.User, Name: sess.Name, Role: sessionRole(sess), Meta: sess.Meta, Conns: 1, Since: now.UnixMilli()}}
		r.users[sess.User] = u
		if s.o.Events != nil {
			s.o.Events.MemberJoined(sess.Room, memberJSON(u.m), len(r.users) == 1)
		}
		return u.m, s.publish(ctx, sess.Room, Frame("join", sess.Room, u.m, ""))
	}
	u.m.Conns++
	if sessionRole(sess) == RoleWrite {
		u.m.Role = RoleWrite
	}
	u.graceUntil = time.Time{}
	return u.m, s.publish(ctx, sess.Room, Frame("update", sess.Room, u.m, ""))
}

func memberJSON(m Member) []byte {
	b, _ := json.Marshal(m) // a Member always encodes
	return b
}

// Leave implements Store.
func (s *MemoryStore) Leave(ctx context.Context, room, conn, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[room]; r == nil || r.conns[conn] == nil || r.conns[conn].user != user {
		return nil
	}
	return s.removeLocked(ctx, room, conn, ReasonClosed)
}

func (s *MemoryStore) removeLocked(ctx context.Context, room, conn, reason string) error {
	r := s.rooms[room]
	if r == nil {
		return nil
	}
	c, ok := r.conns[conn]
	if !ok {
		return nil
	}
	delete(r.conns, conn)
	u := r.users[c.user]
	u.m.Conns--
	if u.m.Conns > 0 {
		return s.publish(ctx, room, Frame("update", room, u.m, ""))
	}
	if reason == ReasonClosed && s.o.LeaveGrace > 0 {
		u.graceUntil = s.o.Now().Add(s.o.LeaveGrace)
		return s.publish(ctx, room, Frame("update", room, u.m, ""))
	}
	return s.dropUserLocked(ctx, room, r, c.user, reason)
}

func (s *MemoryStore) dropUserLocked(ctx context.Context, room string, r *memRoom, user, reason string) error {
	u := r.users[user]
	delete(r.users, user)
	if len(r.users) == 0 {
		delete(s.rooms, room)
	}
	if s.o.Events != nil {
		s.o.Events.MemberLeft(room, memberJSON(u.m), reason, len(r.users) == 0)
	}
	return s.publish(ctx, room, Frame("leave", room, u.m, reason))
}

// SetMeta implements Store.
func (s *MemoryStore) SetMeta(ctx context.Context, room, conn, user string, meta json.RawMessage) (Member, error) {
	meta, err := ValidateMeta(meta)
	if err != nil {
		return Member{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil || r.conns[conn] == nil || r.conns[conn].user != user {
		return Member{}, ErrUnknownConn
	}
	u := r.users[user]
	u.m.Meta = meta
	return u.m, s.publish(ctx, room, Frame("update", room, u.m, ""))
}

// Members implements Store.
func (s *MemoryStore) Members(_ context.Context, room string) ([]Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Member{}
	if r := s.rooms[room]; r != nil {
		for _, u := range r.users {
			out = append(out, u.m)
		}
	}
	sortMembers(out)
	return out, nil
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Since != ms[j].Since {
			return ms[i].Since < ms[j].Since
		}
		return ms[i].ID < ms[j].ID
	})
}

// Rooms implements Store.
func (s *MemoryStore) Rooms(context.Context) ([]RoomCount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RoomCount, 0, len(s.rooms))
	for name, r := range s.rooms {
		out = append(out, RoomCount{Room: name, Members: len(r.users)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Room < out[j].Room })
	return out, nil
}

// Heartbeat implements Store.
func (s *MemoryStore) Heartbeat(ctx context.Context, sessions []Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range sessions {
		if _, err := s.joinLocked(ctx, sess); err != nil {
			return err
		}
	}
	return nil
}

// Sweep implements Store.
func (s *MemoryStore) Sweep(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for name, r := range s.rooms {
		for id, c := range r.conns {
			if now.After(c.expires) {
				keep(s.removeLocked(ctx, name, id, ReasonTimeout))
			}
		}
		for id, u := range r.users {
			if u.m.Conns == 0 && !u.graceUntil.IsZero() && now.After(u.graceUntil) {
				keep(s.dropUserLocked(ctx, name, r, id, ReasonClosed))
			}
		}
	}
	return firstErr
}

func (s *MemoryStore) publish(ctx context.Context, room string, frame []byte) error {
	if err := s.pub.Publish(ctx, room, "", frame); err != nil {
		return fmt.Errorf("publish presence of room %q: %w", room, err)
	}
	return nil
}
