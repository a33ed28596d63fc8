package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
)

func TestRedisStore(t *testing.T) {
	srv := redisproc.Start(t)
	n := 0
	testStore(t, func(t *testing.T, o Options) *storeEnv {
		n++
		prefix := fmt.Sprintf("t%d:", n)
		clock := newFakeClock()
		o.Now = clock.Now
		return &storeEnv{
			newStore: func() Store {
				return NewRedisStore(srv.Client(t), RedisOptions{Options: o, Prefix: prefix})
			},
			frames: subscribeFrames(t, srv.Client(t), prefix),
			clock:  clock,
			wipe: func() {
				// Our private server only. SCRIPT FLUSH too, as after a
				// restart, so the NOSCRIPT path runs.
				c := srv.Client(t)
				if err := c.FlushAll(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
				if err := c.ScriptFlush(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// subscribeFrames collects the presence frames published on every room
// channel under prefix, through a real pub/sub subscription.
func subscribeFrames(t *testing.T, c *redis.Client, prefix string) *frameLog {
	t.Helper()
	ctx := context.Background()
	ps := c.PSubscribe(ctx, prefix+"*")
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil { // the psubscribe confirmation
		t.Fatalf("psubscribe: %v", err)
	}
	log := &frameLog{}
	fenceChannel := prefix + "fence"
	fences := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				return
			}
			m, ok := msg.(*redis.Message)
			if !ok {
				continue
			}
			if m.Channel == fenceChannel {
				fences <- m.Payload
				continue
			}
			e, ok := wire.Open([]byte(m.Payload))
			if !ok || e.Exclude != "" || e.Stored() {
				log.add("not an unstored envelope for everyone: " + m.Payload)
				continue
			}
			log.add(string(e.Frame))
		}
	}()
	t.Cleanup(func() {
		_ = ps.Close()
		<-done
	})
	n := 0
	log.fence = func(t *testing.T) {
		t.Helper()
		n++
		token := strconv.Itoa(n)
		if err := c.Publish(ctx, fenceChannel, token).Err(); err != nil {
			t.Fatalf("publish fence: %v", err)
		}
		select {
		case got := <-fences:
			if got != token {
				t.Fatalf("fence %s arrived, want %s", got, token)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("fence did not arrive")
		}
	}
	return log
}

// Two tabs of one user on two instances, opened and closed at the same
// instant, 20 rounds: exactly one join and one leave per round.
func TestRedisStoreTabsRace(t *testing.T) {
	srv := redisproc.Start(t)
	const prefix = "race:"
	log := subscribeFrames(t, srv.Client(t), prefix)
	instances := []Store{
		NewRedisStore(srv.Client(t), RedisOptions{Prefix: prefix}),
		NewRedisStore(srv.Client(t), RedisOptions{Prefix: prefix}),
	}
	const tabs = 8
	ctx := context.Background()
	together := func(f func(i int, s Store) error) {
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := range tabs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				if err := f(i, instances[i%2]); err != nil {
					t.Error(err)
				}
			}()
		}
		close(gate)
		wg.Wait()
	}
	for round := range 20 {
		together(func(i int, s Store) error {
			_, err := s.Join(ctx, Session{Room: room, Conn: fmt.Sprintf("r%d-c%d", round, i), User: "ann", Name: "Ann"})
			return err
		})
		together(func(i int, s Store) error {
			return s.Leave(ctx, room, fmt.Sprintf("r%d-c%d", round, i), "ann")
		})
		var types []string
		var conns []int
		for _, f := range log.take(t) {
			var fr struct {
				Type   string
				Member Member
			}
			if err := json.Unmarshal([]byte(f), &fr); err != nil {
				t.Fatalf("frame %s: %v", f, err)
			}
			types = append(types, fr.Type)
			conns = append(conns, fr.Member.Conns)
		}
		if len(types) != 2*tabs || types[0] != "join" || types[len(types)-1] != "leave" {
			t.Fatalf("round %d: frames %v", round, types)
		}
		for i, typ := range types[1 : len(types)-1] {
			if typ != "update" {
				t.Fatalf("round %d: frame %d is %s, want update (all: %v)", round, i+1, typ, types)
			}
		}
		// The counts walk up then down by one: frames leave in the order
		// of the changes.
		for i, n := range conns {
			want := i + 1
			if i >= tabs {
				want = 2*tabs - 1 - i
			}
			if n != want {
				t.Fatalf("round %d: conns %v", round, conns)
			}
		}
		checkMembers(t, instances[0])
	}
}

// A crashed instance stops heartbeating; another instance's sweep sees its
// conns lapse on the Redis clock and publishes the timeout leave.
func TestRedisStoreCrashTimeout(t *testing.T) {
	srv := redisproc.Start(t)
	const prefix = "crash:"
	log := subscribeFrames(t, srv.Client(t), prefix)
	crashed := NewRedisStore(srv.Client(t), RedisOptions{Options: Options{TTL: 300 * time.Millisecond}, Prefix: prefix})
	alive := NewRedisStore(srv.Client(t), RedisOptions{Options: Options{TTL: 300 * time.Millisecond}, Prefix: prefix})
	ctx := context.Background()
	start := time.Now()
	joined, err := crashed.Join(ctx, Session{Room: room, Conn: "c1", User: "ann", Name: "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.UnixMilli(joined.Since).Sub(start); d < -time.Second || d > time.Second {
		t.Fatalf("since %d is not Redis now", joined.Since)
	}
	// The heartbeat gives the room's keys their safety-net TTL, all alike.
	if err := crashed.Heartbeat(ctx, []Session{{Room: room, Conn: "c1", User: "ann", Name: "Ann"}}); err != nil {
		t.Fatal(err)
	}
	keep := 2*300*time.Millisecond + time.Minute
	for _, key := range []string{prefix + "{" + room + "}:conns", prefix + "{" + room + "}:members", prefix + "due"} {
		if ttl := srv.Client(t).PTTL(ctx, key).Val(); ttl <= keep-time.Second || ttl > keep {
			t.Fatalf("%s has safety-net TTL %v, want %v", key, ttl, keep)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := alive.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if ms, _ := alive.Members(ctx, room); len(ms) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("crashed instance's member never left")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	if took < 300*time.Millisecond {
		t.Fatalf("left after %v, before the TTL", took)
	}
	t.Logf("crashed instance's member left %v after its last heartbeat (TTL 300ms, sweeping every 20ms)", took.Round(time.Millisecond))
	joined.Conns = 0
	want := []string{string(Frame("join", room, Member{ID: "ann", Name: "Ann", Role: RoleWrite, Meta: json.RawMessage("{}"), Conns: 1, Since: joined.Since}, "")),
		string(Frame("leave", room, joined, ReasonTimeout))}
	got := log.take(t)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames\n got  %q\n want %q", got, want)
	}
	checkRooms(t, alive)
}

type countingHook struct{ cmds, pipelines atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

// One instance with 10,000 conns in 100 rooms: a heartbeat tick is one
// round trip, a sweep with nothing due is one more.
func TestRedisStoreHeartbeatRoundTrips(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	hook := &countingHook{}
	c.AddHook(hook)
	s := NewRedisStore(c, RedisOptions{})
	var sessions []Session
	for i := range 10_000 {
		sessions = append(sessions, Session{Room: fmt.Sprintf("room-%d", i%100), Conn: fmt.Sprintf("conn-%d", i), User: fmt.Sprintf("user-%d", i%2500), Name: "N"})
	}
	ctx := context.Background()
	if err := s.Heartbeat(ctx, sessions); err != nil { // adds them all (and loads the script)
		t.Fatal(err)
	}
	rs, err := s.Rooms(ctx)
	if err != nil || len(rs) != 100 || rs[0].Members != 25 {
		t.Fatalf("rooms %v, %v", rs, err)
	}
	if err := s.Sweep(ctx); err != nil { // loads its script
		t.Fatal(err)
	}
	hook.cmds.Store(0)
	hook.pipelines.Store(0)
	start := time.Now()
	if err := s.Heartbeat(ctx, sessions); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if c, p := hook.cmds.Load(), hook.pipelines.Load(); c != 0 || p != 1 {
		t.Fatalf("heartbeat of 10,000 conns: %d commands and %d pipelines, want one pipeline", c, p)
	}
	t.Logf("heartbeat of 10,000 conns in 100 rooms: 1 round trip, %v", took)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// One pipeline holding one call per sweep index: one on a single Redis.
	if c, p := hook.cmds.Load(), hook.pipelines.Load(); c != 0 || p != 2 {
		t.Fatalf("sweep with nothing due: %d commands, %d more pipelines; want 1 pipeline", c, p-1)
	}
}

func TestRedisClock(t *testing.T) {
	var c redisClock
	if _, ok := c.read(); ok {
		t.Fatal("a clock without a reading reads")
	}
	start := time.Now()
	c.observe(1_000_000, start, start.Add(4*time.Millisecond))
	ms, ok := c.read()
	if elapsed := time.Since(start.Add(2 * time.Millisecond)).Milliseconds(); !ok || ms < 1_000_000+elapsed-1 || ms > 1_000_000+elapsed+1 {
		t.Fatalf("read %d %v, want 1,000,000 + %d ms", ms, ok, elapsed)
	}
	// A reading with a longer round trip that agrees is not taken; one
	// with a shorter round trip is; one that disagrees (the Redis clock
	// was set) is taken whatever its round trip.
	later := start.Add(time.Second)
	c.observe(1_001_003, later, later.Add(10*time.Millisecond))
	if c.ms != 1_000_000 {
		t.Fatalf("took a worse reading: ms %d", c.ms)
	}
	c.observe(1_001_001, later, later.Add(2*time.Millisecond))
	if c.ms != 1_001_001 {
		t.Fatalf("did not take a better reading: ms %d", c.ms)
	}
	c.observe(5_000_000, later, later.Add(10*time.Millisecond))
	if c.ms != 5_000_000 {
		t.Fatalf("did not take the reading of a clock that was set: ms %d", c.ms)
	}
	c.observe(1, later, later.Add(maxClockTrip+time.Millisecond))
	if c.ms != 5_000_000 {
		t.Fatalf("took a reading with a round trip over %v: ms %d", maxClockTrip, c.ms)
	}
}

// Without Options.Now the store uses the Redis clock: scripts call TIME
// until a sweep has read it, and are given it after.
func TestRedisStoreUsesTheRedisClock(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	s := NewRedisStore(c, RedisOptions{})
	redisNow := func() int64 {
		t.Helper()
		tm, err := c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	join := func(conn string) (Member, cost) {
		t.Helper()
		var m Member
		var err error
		got := measure(t, c, func() {
			m, err = s.Join(ctx, Session{Room: room, Conn: conn, User: "user-" + conn, Name: "N"})
		})
		if err != nil {
			t.Fatal(err)
		}
		return m, got
	}
	join("warm-up") // loads the script
	before := redisNow()
	m, got := join("c1")
	after := redisNow()
	if got.perCommand["time"] != 1 || m.Since < before || m.Since > after {
		t.Fatalf("before a sweep: since %d not in [%d, %d], or %v", m.Since, before, after, got)
	}
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	before = redisNow()
	m, got = join("c2")
	after = redisNow()
	// The clock's estimate is off by at most half its reading's round
	// trip, and the ms cuts: a loaded machine's slow reading widens it.
	s.clock.mu.Lock()
	slack := (s.clock.trip/2 + 2*time.Millisecond).Milliseconds()
	s.clock.mu.Unlock()
	if got.perCommand["time"] != 0 || m.Since < before-slack || m.Since > after+slack {
		t.Fatalf("after a sweep: since %d not in [%d, %d] ± %d ms, or %v", m.Since, before, after, slack, got)
	}
}

// A heartbeat carries more conns of one room than a script handles in one
// chunk: all are kept, and those lost are added back, in order.
func TestRedisStoreHeartbeatOfAThousandConnsInOneRoom(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	var reasserted []string
	s := NewRedisStore(c, RedisOptions{OnReassert: func(_ context.Context, rooms []string) { reasserted = append(reasserted, rooms...) }})
	var sessions []Session
	for i := range 1200 {
		sessions = append(sessions, Session{Room: room, Conn: fmt.Sprint("c", i), User: fmt.Sprint("u", i%300), Name: "N"})
	}
	for _, sess := range sessions[:700] {
		if _, err := s.Join(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Heartbeat(ctx, sessions); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(reasserted) != "["+room+"]" {
		t.Fatalf("reasserted %v", reasserted)
	}
	ms, err := s.Members(ctx, room)
	if err != nil || len(ms) != 300 {
		t.Fatalf("%d members, %v", len(ms), err)
	}
	for _, m := range ms {
		if m.Conns != 4 {
			t.Fatalf("member %+v, want 4 conns", m)
		}
	}
	reasserted = nil
	if err := s.Heartbeat(ctx, sessions); err != nil || reasserted != nil {
		t.Fatalf("second heartbeat: %v, reasserted %v", err, reasserted)
	}
	if n := c.ZCard(ctx, s.layout.Room(room).Conns).Val(); n != 1200 {
		t.Fatalf("%d conns held", n)
	}
}

// The last conn of a room leaving into a leave grace keeps the room's keys
// (the grace entry among them) under the TTL the last heartbeat gave them:
// no heartbeat comes to an empty room.
func TestRedisStoreGraceKeepsTheSafetyNet(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	s := NewRedisStore(c, RedisOptions{Options: Options{LeaveGrace: 5 * time.Second}})
	sess := Session{Room: room, Conn: "c1", User: "ann", Name: "Ann"}
	if _, err := s.Join(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, []Session{sess}); err != nil {
		t.Fatal(err)
	}
	if err := s.Leave(ctx, room, "c1", "ann"); err != nil {
		t.Fatal(err)
	}
	k := s.layout.Room(room)
	for _, key := range []string{k.Conns, k.Members, s.layout.DueIndex(room)} {
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 {
			t.Fatalf("%s has no safety-net TTL after the leave: %v", key, ttl)
		}
	}
	if n := c.ZCard(ctx, k.Conns).Val(); n != 1 {
		t.Fatalf("conns holds %d timers, want the grace entry", n)
	}
}
