package main

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/roomcast/roomcast/rooms"
)

// The backoff after a socket is closed for size. y-websocket reconnects
// after every close whatever its code, and its first sync sends the
// refused update again: without a pause between, a client over the limit
// would spin. So a user and room whose socket was closed for size (1009)
// or for the in-flight budget (1013) get HTTP 429 on upgrades for a
// growing interval, on the instance that closed it.
const (
	sizeBackoffFirst = 2 * time.Second
	sizeBackoffMax   = 60 * time.Second
	// After an interval ends, a user and room closed again within this
	// long wait twice as long; after a quiet period as long, they start at
	// sizeBackoffFirst again.
	sizeBackoffQuiet = 2 * time.Minute
	// At most this many users and rooms are remembered: a flood of users
	// cannot grow the map, it only pushes out the entries that end first.
	sizeBackoffEntries = 10000
)

type backoffKey struct{ user, room string }

type backoffEntry struct {
	interval time.Duration
	until    time.Time // upgrades are refused before
}

// sizeBackoff is the instance's memory of who was closed for size.
type sizeBackoff struct {
	mu      sync.Mutex
	entries map[backoffKey]*backoffEntry
	limit   int
}

func newSizeBackoff() *sizeBackoff {
	return &sizeBackoff{entries: make(map[backoffKey]*backoffEntry), limit: sizeBackoffEntries}
}

// closed records that a socket of user in room was closed for size at now
// and returns how long its upgrades are refused.
func (b *sizeBackoff) closed(user, room string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := backoffKey{user, room}
	e := b.entries[k]
	switch {
	case e != nil && now.Before(e.until.Add(sizeBackoffQuiet)):
		if now.Before(e.until) {
			// Another socket of theirs, closed within the same interval:
			// it is one refusal, not two.
			return e.until.Sub(now)
		}
		e.interval = min(2*e.interval, sizeBackoffMax)
	case e != nil:
		e.interval = sizeBackoffFirst
	default:
		if len(b.entries) >= b.limit {
			b.makeRoomLocked(now)
		}
		e = &backoffEntry{interval: sizeBackoffFirst}
		b.entries[k] = e
	}
	e.until = now.Add(e.interval)
	return e.interval
}

// refused returns how long upgrades of user in room are still refused; 0
// admits them.
func (b *sizeBackoff) refused(user, room string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[backoffKey{user, room}]
	if e == nil || !now.Before(e.until) {
		return 0
	}
	return e.until.Sub(now)
}

// makeRoomLocked forgets the entries past their quiet period, or else the
// one whose refusal ends first; b.mu held.
func (b *sizeBackoff) makeRoomLocked(now time.Time) {
	var first backoffKey
	var firstUntil time.Time
	for k, e := range b.entries {
		if !now.Before(e.until.Add(sizeBackoffQuiet)) {
			delete(b.entries, k)
			continue
		}
		if firstUntil.IsZero() || e.until.Before(firstUntil) {
			first, firstUntil = k, e.until
		}
	}
	if len(b.entries) >= b.limit {
		delete(b.entries, first)
	}
}

// closeTryAgain (1013) closes a socket whose frame would pass the
// instance's in-flight budget: the frame may fit once others are read.
const closeTryAgain = 1013

// closeForSize closes conn with code and reason and makes its user and
// room back off.
func (s *Server) closeForSize(conn *rooms.Conn, code int, reason string) {
	wait := s.backoff.closed(conn.User, conn.Room, time.Now())
	s.logConn(slog.LevelInfo, conn, "closed for size", "code", code, "reason", reason, "backoff", wait.String())
	conn.Close(code, reason)
}

// closeOverBudget closes conn for a frame its Reader refused: with the
// frames other sockets are reading, it would pass MAX_INFLIGHT_BYTES.
func (s *Server) closeOverBudget(conn *rooms.Conn) {
	s.closeForSize(conn, closeTryAgain, fmt.Sprintf("server busy: frames being read would pass %s (ROOMCAST_MAX_INFLIGHT_BYTES); send it again later", byteSize(s.cfg.MaxInflightBytes)))
}

// byteSize writes n the way the settings are usually given: 64 MiB,
// 256 KiB, or bytes.
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
