package presence

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
)

// The scripts share presence_lib.lua, which is prepended to each, and take
// the same KEYS and leading ARGV (see presence_lib.lua).
var (
	//go:embed presence_lib.lua
	presenceLib string
	//go:embed join.lua
	joinLua string
	//go:embed leave.lua
	leaveLua string
	//go:embed set_meta.lua
	setMetaLua string
	//go:embed heartbeat.lua
	heartbeatLua string
	//go:embed sweep.lua
	sweepLua string
	//go:embed due_rooms.lua
	dueRoomsLua string

	joinScript      = wire.NewScript(wire.WebhookLua + presenceLib + joinLua)
	leaveScript     = wire.NewScript(wire.WebhookLua + presenceLib + leaveLua)
	setMetaScript   = wire.NewScript(wire.WebhookLua + presenceLib + setMetaLua)
	heartbeatScript = wire.NewScript(wire.WebhookLua + presenceLib + heartbeatLua)
	sweepScript     = wire.NewScript(wire.WebhookLua + presenceLib + sweepLua)
	dueRoomsScript  = redis.NewScript(dueRoomsLua)
)

// sweepBatch bounds the conns (and graces) one sweep script call ends, so a
// crashed instance with many conns in one room does not stall Redis.
const sweepBatch = 1000

// RedisStore is the Store of a cluster: presence lives in Redis and every
// change and its frame happen in one Lua script, so joins and leaves are
// published exactly once across instances. Frames go straight from Redis
// to the room's broker channel (wire.Keys.Channel), not through a Publisher.
type RedisStore struct {
	client redis.UniversalClient
	o      Options
	layout wire.Layout
	log    *slog.Logger
	// serverTime: no Options.Now was given, so every instance uses the
	// Redis clock (see now).
	serverTime bool
	clock      redisClock
	keep       time.Duration
	onReassert func(ctx context.Context, rooms []string)
	webhooks   *Webhooks
}

// redisClock is this instance's reading of the Redis clock: the Redis time
// a sweep's TIME returned, and the local monotonic time it was taken at
// (the middle of that round trip). now() runs it forward, so joins, leaves
// and heartbeats carry the Redis time in their arguments and do not call
// TIME themselves; its error is half the round trip of the reading it
// keeps, and every sweep (each SweepInterval) takes a new one.
type redisClock struct {
	mu    sync.Mutex
	at    time.Time     // local time of the reading, with its monotonic clock
	ms    int64         // the Redis time then, unix ms
	trip  time.Duration // the reading's round trip
	valid bool
}

// maxClockTrip bounds the round trip of a reading the clock takes: its error
// is at most half of it.
const maxClockTrip = 200 * time.Millisecond

// observe takes a reading of redisMs, read by Redis between start and
// end, unless the one held is better: a shorter round trip, under a minute
// old, and agreeing with this one within both errors (else the Redis clock
// was set, or another Redis took over, and the new reading is right).
func (c *redisClock) observe(redisMs int64, start, end time.Time) {
	trip := end.Sub(start)
	if trip < 0 || trip > maxClockTrip {
		return
	}
	mid := start.Add(trip / 2)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && trip > c.trip && mid.Sub(c.at) < time.Minute {
		predicted := c.ms + mid.Sub(c.at).Milliseconds()
		// TIME is cut to ms by the script and the elapsed time here: 2 ms more.
		slack := ((trip+c.trip)/2 + 2*time.Millisecond).Milliseconds()
		if d := redisMs - predicted; d >= -slack && d <= slack {
			return
		}
	}
	c.at, c.ms, c.trip, c.valid = mid, redisMs, trip, true
}

// read returns the Redis time now, unix ms, and false before any reading.
func (c *redisClock) read() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return 0, false
	}
	return c.ms + time.Since(c.at).Milliseconds(), true
}

var _ Store = (*RedisStore)(nil)

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// Options: TTL (zero value 30s) and LeaveGrace (zero value none). Now
	// nil (the zero value) means the scripts use Redis server time, so
	// all instances share one clock; set it only to control time in tests.
	Options
	// Prefix starts every key and channel name. Zero value means
	// wire.DefaultPrefix. It must match the broker's prefix.
	Prefix string
	// Partitions is the number of room partitions when the client is a
	// *redis.ClusterClient (see wire.Layout); zero value means
	// wire.DefaultPartitions. It must match the broker's.
	Partitions int
	// Logger zero value means slog.Default().
	Logger *slog.Logger
	// OnReassert, if set, is called by Heartbeat with the rooms in which
	// it had to re-add sessions the store had lost (a flush, a restart),
	// e.g. to check what else Redis lost with them. The heartbeat has
	// already sent those rooms their member list (a sync frame, published
	// with the re-adds: a user whose last socket closed while the store
	// had forgotten it leaves no leave behind).
	OnReassert func(ctx context.Context, rooms []string)
	// Webhooks, when set, makes every join and leave queue its webhook
	// events in the script that decides it (rooms/webhook).
	Webhooks *Webhooks
}

// Webhooks configure the webhook events a RedisStore queues.
type Webhooks struct {
	// VacateDelay is how long an emptied room waits before room.vacated.
	VacateDelay time.Duration
	// MaxPending bounds each webhook queue (one per partition); 0 none.
	MaxPending int
}

// NewRedisStore returns a store on client. Room keys expire on their own
// (a safety net) 2×TTL + LeaveGrace + 1 minute after the last heartbeat of
// a connection in the room.
func NewRedisStore(client redis.UniversalClient, o RedisOptions) *RedisStore {
	serverTime := o.Now == nil
	if o.Prefix == "" {
		o.Prefix = wire.DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opts := o.Options.withDefaults()
	return &RedisStore{
		client:     client,
		o:          opts,
		layout:     wire.ClusterLayout(client, o.Prefix, o.Partitions),
		log:        o.Logger,
		serverTime: serverTime,
		keep:       2*opts.TTL + opts.LeaveGrace + time.Minute,
		onReassert: o.OnReassert,
		webhooks:   o.Webhooks,
	}
}

// Keys of a room (see presence_lib.lua). The room's hash tag keeps them,
// the room's channel and its sweep index in one Redis Cluster slot.
func (s *RedisStore) roomKeys(room string) []string {
	k := s.layout.Room(room)
	if s.webhooks == nil {
		return []string{k.Conns, k.Members, s.layout.DueIndex(room)}
	}
	q := s.layout.WebhookQueue(room)
	return []string{k.Conns, k.Members, s.layout.DueIndex(room), q.Due, q.Events, q.Order, q.Meta, k.WebhookVacate}
}

// script returns sc in the form for the store's layout.
func (s *RedisStore) script(sc wire.Script) *redis.Script { return sc.For(s.layout) }

// now is the time argument of a script: Options.Now when set, else the
// Redis clock as this instance reads it, or "0" (the script reads TIME)
// before the first reading.
func (s *RedisStore) now() string {
	if !s.serverTime {
		return strconv.FormatInt(s.o.Now().UnixMilli(), 10)
	}
	if ms, ok := s.clock.read(); ok {
		return strconv.FormatInt(ms, 10)
	}
	return "0"
}

// args returns the ARGV every room script starts with, then extra.
func (s *RedisStore) args(room string, extra ...any) []any {
	a := make([]any, 0, 7+len(extra))
	a = append(a,
		s.now(),
		s.o.TTL.Milliseconds(),
		s.o.LeaveGrace.Milliseconds(),
		s.keep.Milliseconds(),
		room,
		jsonString(room),
		s.layout.Room(room).Channel,
	)
	a = append(a, extra...)
	if s.webhooks != nil {
		a = append(a, s.webhooks.VacateDelay.Milliseconds(), s.webhooks.MaxPending)
	}
	return a
}

// sessionArgs are a session's script arguments: conn, user, then id, name,
// role and meta encoded exactly as Frame encodes them.
func sessionArgs(sess Session) []any {
	return []any{sess.Conn, sess.User, jsonString(sess.User), jsonString(sess.Name), sessionRole(sess), compactMeta(sess.Meta)}
}

func jsonString(v string) string {
	b, _ := json.Marshal(v) // a string always encodes
	return string(b)
}

// compactMeta returns validated meta as Frame writes it: encoding/json
// compacts (and HTML-escapes) a RawMessage it marshals.
func compactMeta(meta json.RawMessage) string {
	b, err := json.Marshal(meta)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// Join implements Store.
func (s *RedisStore) Join(ctx context.Context, sess Session) (Member, error) {
	if err := checkConn(sess.Conn); err != nil {
		return Member{}, err
	}
	meta, err := ValidateMeta(sess.Meta)
	if err != nil {
		return Member{}, err
	}
	sess.Meta = meta
	index := "1"
	if sess.Indexed {
		index = "0"
	}
	res, err := s.script(joinScript).Run(ctx, s.client, s.roomKeys(sess.Room), s.args(sess.Room, append(sessionArgs(sess), index)...)...).Text()
	if err != nil {
		return Member{}, fmt.Errorf("presence: join conn %s to room %q: %w", sess.Conn, sess.Room, err)
	}
	return decodeMember(res)
}

// Leave implements Store.
func (s *RedisStore) Leave(ctx context.Context, room, conn, user string) error {
	if err := s.script(leaveScript).Run(ctx, s.client, s.roomKeys(room), s.args(room, conn, user)...).Err(); err != nil {
		return fmt.Errorf("presence: leave conn %s from room %q: %w", conn, room, err)
	}
	return nil
}

// SetMeta implements Store.
func (s *RedisStore) SetMeta(ctx context.Context, room, conn, user string, meta json.RawMessage) (Member, error) {
	meta, err := ValidateMeta(meta)
	if err != nil {
		return Member{}, err
	}
	res, err := s.script(setMetaScript).Run(ctx, s.client, s.roomKeys(room), s.args(room, conn, user, compactMeta(meta))...).Text()
	if errors.Is(err, redis.Nil) {
		return Member{}, ErrUnknownConn
	}
	if err != nil {
		return Member{}, fmt.Errorf("presence: set meta of conn %s in room %q: %w", conn, room, err)
	}
	return decodeMember(res)
}

func decodeMember(s string) (Member, error) {
	var m Member
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return Member{}, fmt.Errorf("presence: decode member from redis: %w", err)
	}
	return m, nil
}

// Members implements Store: one HGETALL, so counts and records agree.
func (s *RedisStore) Members(ctx context.Context, room string) ([]Member, error) {
	vals, err := s.client.HGetAll(ctx, s.layout.Room(room).Members).Result()
	if err != nil {
		return nil, fmt.Errorf("presence: read members of room %q: %w", room, err)
	}
	out := make([]Member, 0, len(vals))
	for user, v := range vals {
		m, err := parseMember(user, v)
		if err != nil {
			return nil, fmt.Errorf("presence: member %q of room %q: %w", user, room, err)
		}
		out = append(out, m)
	}
	sortMembers(out)
	return out, nil
}

// parseMember reads a member value "conns\nsince\nid\nname\nrole\nmeta"
// (see presence_lib.lua), or one written before roles, without role: a
// write member's.
func parseMember(user, v string) (Member, error) {
	parts := strings.SplitN(v, "\n", 6)
	if len(parts) == 5 {
		parts = append(parts[:4], RoleWrite, parts[4])
	}
	if len(parts) != 6 {
		return Member{}, errors.New("malformed member value")
	}
	conns, err := strconv.Atoi(parts[0])
	if err != nil {
		return Member{}, fmt.Errorf("malformed conns: %w", err)
	}
	since, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Member{}, fmt.Errorf("malformed since: %w", err)
	}
	m := Member{ID: user, Conns: conns, Since: since, Role: parts[4], Meta: json.RawMessage(parts[5])}
	if err := json.Unmarshal([]byte(parts[3]), &m.Name); err != nil {
		return Member{}, fmt.Errorf("malformed name: %w", err)
	}
	return m, nil
}

// Rooms implements Store from the sweep indexes, which hold every room
// with a connection or a leave grace (and may hold rooms emptied since):
// one pipeline reads them all (one per partition on a cluster), then one
// pipeline of HLEN, two round trips.
func (s *RedisStore) Rooms(ctx context.Context) ([]RoomCount, error) {
	indexes := s.layout.DueIndexes()
	reads := make([]*redis.StringSliceCmd, len(indexes))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, idx := range indexes {
			reads[i] = p.ZRange(ctx, idx, 0, -1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("presence: read %d sweep indexes: %w", len(indexes), err)
	}
	var names []string
	for _, r := range reads {
		names = append(names, r.Val()...)
	}
	out := make([]RoomCount, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	lens := make([]*redis.IntCmd, len(names))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			lens[i] = p.HLen(ctx, s.layout.Room(name).Members)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("presence: count members of %d rooms: %w", len(names), err)
	}
	for i, name := range names {
		if n := int(lens[i].Val()); n > 0 {
			out = append(out, RoomCount{Room: name, Members: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Room < out[j].Room })
	return out, nil
}

// Heartbeat implements Store: one pipeline with one heartbeat script call
// per room, so one round trip however many sessions (two when Redis lost
// the scripts, e.g. after a restart).
func (s *RedisStore) Heartbeat(ctx context.Context, sessions []Session) error {
	byRoom := make(map[string][]any)
	order := []string{}
	for _, sess := range sessions {
		if checkConn(sess.Conn) != nil {
			continue // never joined
		}
		meta, err := ValidateMeta(sess.Meta)
		if err != nil {
			meta = json.RawMessage("{}")
		}
		sess.Meta = meta
		if _, ok := byRoom[sess.Room]; !ok {
			order = append(order, sess.Room)
		}
		byRoom[sess.Room] = append(byRoom[sess.Room], sessionArgs(sess)...)
	}
	if len(order) == 0 {
		return nil
	}
	calls := make([]scriptCall, 0, len(order))
	for _, room := range order {
		calls = append(calls, scriptCall{s.script(heartbeatScript), s.roomKeys(room), s.args(room, byRoom[room]...)})
	}
	cmds, err := s.runAll(ctx, calls)
	if err != nil {
		return fmt.Errorf("presence: heartbeat %d sessions in %d rooms: %w", len(sessions), len(order), err)
	}
	readded := 0
	var lostRooms []string
	for i, c := range cmds {
		if n, _ := c.Int(); n > 0 {
			readded += n
			lostRooms = append(lostRooms, order[i])
		}
	}
	if readded > 0 {
		// Redis was flushed or restarted, or this instance stalled past
		// the TTL and was swept.
		s.log.Warn("presence: heartbeat re-added sessions the store had lost", "sessions", readded, "rooms", len(lostRooms))
		if s.onReassert != nil {
			s.onReassert(ctx, lostRooms)
		}
	}
	return nil
}

// Sweep implements Store: one pipeline reads the rooms due from every
// sweep index (one per partition on a cluster), then one pipeline of sweep
// script calls for them. The reads also take readings of the Redis clock
// (see redisClock), and each room's sweep uses the time its index's read
// returned: on a cluster, the clock of the room's own master.
func (s *RedisStore) Sweep(ctx context.Context) error {
	const maxRooms = 1000 // per index and pass
	indexes := s.layout.DueIndexes()
	for range 100 { // bounded: each pass ends up to sweepBatch entries per room
		now := "0"
		if !s.serverTime {
			now = s.now()
		}
		reads := make([]scriptCall, len(indexes))
		for i, idx := range indexes {
			reads[i] = scriptCall{dueRoomsScript, []string{idx}, []any{now, maxRooms}}
		}
		start := time.Now()
		cmds, err := s.runAll(ctx, reads)
		if err != nil {
			return fmt.Errorf("presence: list rooms due for sweep in %d indexes: %w", len(indexes), err)
		}
		end := time.Now()
		more := false
		var calls []scriptCall
		for _, c := range cmds {
			res, err := c.StringSlice()
			if err == nil && len(res) == 0 {
				err = errors.New("empty reply")
			}
			if err != nil {
				return fmt.Errorf("presence: list rooms due for sweep: %w", err)
			}
			at, due := res[0], res[1:]
			if s.serverTime {
				if ms, err := strconv.ParseInt(at, 10, 64); err == nil {
					s.clock.observe(ms, start, end)
				}
			}
			more = more || len(due) == maxRooms
			for _, room := range due {
				a := s.args(room, sweepBatch)
				a[0] = at
				calls = append(calls, scriptCall{s.script(sweepScript), s.roomKeys(room), a})
			}
		}
		if len(calls) == 0 {
			return nil
		}
		cmds, err = s.runAll(ctx, calls)
		if err != nil {
			return fmt.Errorf("presence: sweep %d rooms: %w", len(calls), err)
		}
		for _, c := range cmds {
			if n, _ := c.Int(); n > 0 {
				more = true
			}
		}
		if !more {
			return nil
		}
	}
	return nil
}

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// runAll runs calls in one pipeline by SHA. Calls Redis answered NOSCRIPT
// (it restarted or its scripts were flushed) did nothing; they are loaded
// and run once more in a second pipeline.
func (s *RedisStore) runAll(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	pending := make([]int, len(calls))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; ; attempt++ {
		p := s.client.Pipeline()
		for _, i := range pending {
			c := calls[i]
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		if _, err := p.Exec(ctx); err != nil && !isNoScript(err) {
			return nil, err
		}
		var missing []int
		var firstErr error
		for _, i := range pending {
			err := cmds[i].Err()
			switch {
			case err == nil:
			case isNoScript(err):
				missing = append(missing, i)
			case firstErr == nil:
				firstErr = err
			}
		}
		if firstErr != nil {
			return nil, firstErr
		}
		if len(missing) == 0 {
			return cmds, nil
		}
		if attempt > 0 {
			return nil, fmt.Errorf("scripts still missing after loading: %w", cmds[missing[0]].Err())
		}
		loaded := map[*redis.Script]bool{}
		for _, i := range missing {
			sc := calls[i].script
			if !loaded[sc] {
				if err := sc.Load(ctx, s.client).Err(); err != nil {
					return nil, fmt.Errorf("load script: %w", err)
				}
				loaded[sc] = true
			}
		}
		pending = missing
	}
}

func isNoScript(err error) bool {
	return redis.HasErrorPrefix(err, "NOSCRIPT")
}
