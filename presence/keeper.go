package presence

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Keeper tracks this instance's live sessions and, every heartbeat, keeps
// them alive in the Store (re-adding any the store lost, e.g. after a Redis
// flush) and sweeps expired ones from every instance.
type Keeper struct {
	store    Store
	interval time.Duration
	sweepInt time.Duration
	log      *slog.Logger
	onError  func(error)

	// tick is held exclusively by a heartbeat and shared by Join and
	// Leave, so a heartbeat never re-adds a session that is leaving.
	tick sync.RWMutex

	mu       sync.Mutex
	sessions map[sessionKey]Session
	inRoom   map[string]int // live sessions per room
}

type sessionKey struct{ room, conn string }

// KeeperOptions configure a Keeper. Zero values: Interval 10s,
// SweepInterval 1s (or Interval, when shorter).
type KeeperOptions struct {
	Interval time.Duration
	// SweepInterval is how often expired connections and ended leave
	// graces are swept. It is shorter than the heartbeat so that a crashed
	// instance's users leave soon after their TTL and a grace ends on time;
	// a sweep with nothing due is one cheap call.
	SweepInterval time.Duration
	Logger        *slog.Logger
	// OnTick is called after every heartbeat with its error (nil on
	// success), e.g. to count failures.
	OnTick func(error)
}

// NewKeeper returns a keeper for store.
func NewKeeper(store Store, o KeeperOptions) *Keeper {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = min(time.Second, o.Interval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Keeper{store: store, interval: o.Interval, sweepInt: o.SweepInterval, log: o.Logger, onError: o.OnTick, sessions: make(map[sessionKey]Session), inRoom: make(map[string]int)}
}

// Join adds a live session of this instance to the store and keeps it
// alive until Leave.
func (k *Keeper) Join(ctx context.Context, s Session) (Member, error) {
	k.tick.RLock()
	defer k.tick.RUnlock()
	k.mu.Lock()
	// With a live session of this instance in the room, the room is in
	// the sweep index already (its timers keep it there).
	s.Indexed = k.inRoom[s.Room] > 0
	k.mu.Unlock()
	m, err := k.store.Join(ctx, s)
	if err != nil {
		return Member{}, err
	}
	s.Indexed = false // a re-assert after a flush must index the room again
	k.mu.Lock()
	if _, had := k.sessions[sessionKey{s.Room, s.Conn}]; !had {
		k.inRoom[s.Room]++
	}
	k.sessions[sessionKey{s.Room, s.Conn}] = s
	k.mu.Unlock()
	return m, nil
}

// Leave removes a session whose socket ended.
func (k *Keeper) Leave(ctx context.Context, room, conn string) error {
	k.tick.RLock()
	defer k.tick.RUnlock()
	k.mu.Lock()
	s, ok := k.sessions[sessionKey{room, conn}]
	delete(k.sessions, sessionKey{room, conn})
	if ok {
		if k.inRoom[room]--; k.inRoom[room] <= 0 {
			delete(k.inRoom, room)
		}
	}
	k.mu.Unlock()
	if !ok {
		return nil
	}
	return k.store.Leave(ctx, room, conn, s.User)
}

// SetMeta replaces the meta of the session's user; a later re-assert uses
// it. ErrUnknownConn for a session this keeper does not hold.
func (k *Keeper) SetMeta(ctx context.Context, room, conn string, meta json.RawMessage) (Member, error) {
	k.mu.Lock()
	s, ok := k.sessions[sessionKey{room, conn}]
	k.mu.Unlock()
	if !ok {
		if _, err := ValidateMeta(meta); err != nil {
			return Member{}, err
		}
		return Member{}, ErrUnknownConn
	}
	m, err := k.store.SetMeta(ctx, room, conn, s.User, meta)
	if err != nil {
		return Member{}, err
	}
	k.mu.Lock()
	if s, ok := k.sessions[sessionKey{room, conn}]; ok {
		s.Meta = m.Meta
		k.sessions[sessionKey{room, conn}] = s
	}
	k.mu.Unlock()
	return m, nil
}

// Sessions returns a copy of the tracked sessions.
func (k *Keeper) Sessions() []Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Session, 0, len(k.sessions))
	for _, s := range k.sessions {
		out = append(out, s)
	}
	return out
}

// Run heartbeats every Interval and sweeps every SweepInterval until ctx
// ends.
func (k *Keeper) Run(ctx context.Context) {
	beat := time.NewTicker(k.interval)
	defer beat.Stop()
	sweep := time.NewTicker(k.sweepInt)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			k.Tick(ctx)
		case <-sweep.C:
			k.report(k.sweep(ctx))
		}
	}
}

// Tick runs one heartbeat and one sweep.
func (k *Keeper) Tick(ctx context.Context) {
	k.tick.Lock()
	err := k.store.Heartbeat(ctx, k.Sessions())
	k.tick.Unlock()
	if err != nil {
		k.log.Warn("presence heartbeat failed", "err", err)
	}
	k.report(errors.Join(err, k.sweep(ctx)))
}

func (k *Keeper) sweep(ctx context.Context) error {
	err := k.store.Sweep(ctx)
	if err != nil {
		k.log.Warn("presence sweep failed", "err", err)
	}
	return err
}

func (k *Keeper) report(err error) {
	if k.onError != nil {
		k.onError(err)
	}
}

// LeaveAll removes every session of this instance, as on shutdown. Users
// with a connection on another instance stay online.
func (k *Keeper) LeaveAll(ctx context.Context) error {
	var firstErr error
	for _, s := range k.Sessions() {
		if err := k.Leave(ctx, s.Room, s.Conn); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
