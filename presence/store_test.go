package presence

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The behaviour table every Store implementation must pass: memory (here)
// and Redis (store_redis_test.go).

// storeEnv is one backend under test.
type storeEnv struct {
	// newStore returns another instance on the same backend state, as a
	// second roomcast instance would hold.
	newStore func() Store
	frames   *frameLog
	clock    *fakeClock
	// wipe loses all presence state, as a Redis flush or restart does; nil
	// for a backend that cannot lose state.
	wipe func()
}

type newStoreEnv func(t *testing.T, o Options) *storeEnv

// frameLog collects the presence frames a backend published.
type frameLog struct {
	mu     sync.Mutex
	frames []string
	// fence waits until every frame published before it was called is
	// in the log.
	fence func(t *testing.T)
}

func (l *frameLog) add(frame string) {
	l.mu.Lock()
	l.frames = append(l.frames, frame)
	l.mu.Unlock()
}

// take returns the frames published so far and empties the log.
func (l *frameLog) take(t *testing.T) []string {
	t.Helper()
	if l.fence != nil {
		l.fence(t)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.frames
	l.frames = nil
	return out
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recordingPublisher is the memory store's Publisher in tests.
type recordingPublisher struct{ log *frameLog }

func (p recordingPublisher) Publish(_ context.Context, _, _ string, frame []byte) error {
	p.log.add(string(frame))
	return nil
}

func memoryStoreEnv(t *testing.T, o Options) *storeEnv {
	clock := newFakeClock()
	o.Now = clock.Now
	log := &frameLog{}
	s := NewMemoryStore(o, recordingPublisher{log})
	return &storeEnv{newStore: func() Store { return s }, frames: log, clock: clock}
}

func TestMemoryStore(t *testing.T) { testStore(t, memoryStoreEnv) }

const room = "lobby"

func frame(typ string, m Member, reason string) string {
	return string(Frame(typ, room, m, reason))
}

// syncFrame is the sync frame of room with members, as the server
// encodes it.
func syncFrame(t *testing.T, members ...Member) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Type    string   `json:"type"`
		Room    string   `json:"room"`
		Members []Member `json:"members"`
	}{"sync", room, members})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkFrames(t *testing.T, env *storeEnv, want ...string) {
	t.Helper()
	got := env.frames.take(t)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frames:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func checkMembers(t *testing.T, s Store, want ...Member) {
	t.Helper()
	got, err := s.Members(context.Background(), room)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if want == nil {
		want = []Member{}
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("members:\n got  %s\n want %s", gb, wb)
	}
}

func checkRooms(t *testing.T, s Store, want ...RoomCount) {
	t.Helper()
	got, err := s.Rooms(context.Background())
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	if want == nil {
		want = []RoomCount{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rooms: got %v, want %v", got, want)
	}
}

func mustJoin(t *testing.T, s Store, conn, user string) Member {
	t.Helper()
	m, err := s.Join(context.Background(), Session{Room: room, Conn: conn, User: user, Name: "Name " + user})
	if err != nil {
		t.Fatalf("Join %s/%s: %v", conn, user, err)
	}
	return m
}

func mustLeave(t *testing.T, s Store, conn, user string) {
	t.Helper()
	if err := s.Leave(context.Background(), room, conn, user); err != nil {
		t.Fatalf("Leave %s: %v", conn, err)
	}
}

func member(user string, conns int, since time.Time) Member {
	return Member{ID: user, Name: "Name " + user, Role: RoleWrite, Meta: json.RawMessage("{}"), Conns: conns, Since: since.UnixMilli()}
}

func readMember(user string, conns int, since time.Time) Member {
	m := member(user, conns, since)
	m.Role = RoleRead
	return m
}

func testStore(t *testing.T, newEnv newStoreEnv) {
	ctx := context.Background()

	t.Run("join update leave", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second})
		s := env.newStore()
		t0 := env.clock.Now()

		got := mustJoin(t, s, "c1", "ann")
		checkFrames(t, env, frame("join", member("ann", 1, t0), ""))
		if want := member("ann", 1, t0); !reflect.DeepEqual(got, want) {
			t.Fatalf("Join returned %+v, want %+v", got, want)
		}
		mustJoin(t, s, "c2", "ann")
		checkFrames(t, env, frame("update", member("ann", 2, t0), ""))

		// Joining a conn the store holds only refreshes it.
		mustJoin(t, s, "c2", "ann")
		checkFrames(t, env)

		env.clock.Add(time.Millisecond)
		t1 := env.clock.Now()
		mustJoin(t, s, "c3", "bob")
		checkFrames(t, env, frame("join", member("bob", 1, t1), ""))
		checkMembers(t, s, member("ann", 2, t0), member("bob", 1, t1))
		checkRooms(t, s, RoomCount{Room: room, Members: 2})

		// A conn is left only by its own user.
		mustLeave(t, s, "c1", "bob")
		checkFrames(t, env)
		mustLeave(t, s, "c1", "ann")
		checkFrames(t, env, frame("update", member("ann", 1, t0), ""))
		mustLeave(t, s, "c2", "ann")
		checkFrames(t, env, frame("leave", member("ann", 0, t0), ReasonClosed))
		mustLeave(t, s, "c2", "ann") // unknown by now: nothing happens
		checkFrames(t, env)
		checkMembers(t, s, member("bob", 1, t1))

		mustLeave(t, s, "c3", "bob")
		checkFrames(t, env, frame("leave", member("bob", 0, t1), ReasonClosed))
		checkMembers(t, s)
		checkRooms(t, s)
	})

	t.Run("roles", func(t *testing.T) {
		env := newEnv(t, Options{})
		s := env.newStore()
		t0 := env.clock.Now()
		join := func(conn, user, role string) Member {
			t.Helper()
			m, err := s.Join(ctx, Session{Room: room, Conn: conn, User: user, Name: "Name " + user, Role: role})
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		if got := join("c1", "viv", RoleRead); !reflect.DeepEqual(got, readMember("viv", 1, t0)) {
			t.Fatalf("Join returned %+v", got)
		}
		checkFrames(t, env, frame("join", readMember("viv", 1, t0), ""))
		// Another read tab keeps the member read; a meta change too.
		join("c2", "viv", RoleRead)
		checkFrames(t, env, frame("update", readMember("viv", 2, t0), ""))
		if _, err := s.SetMeta(ctx, room, "c2", "viv", json.RawMessage(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		m := readMember("viv", 2, t0)
		m.Meta = json.RawMessage(`{"x":1}`)
		checkFrames(t, env, frame("update", m, ""))
		checkMembers(t, s, m)
		// A write tab makes the member write.
		join("c3", "viv", RoleWrite)
		m.Role, m.Conns = RoleWrite, 3
		checkFrames(t, env, frame("update", m, ""))
		// ... and a read tab after it does not take that back.
		join("c4", "viv", RoleRead)
		m.Conns = 4
		checkFrames(t, env, frame("update", m, ""))
		join("c5", "wes", "")
		checkFrames(t, env, frame("join", member("wes", 1, t0), ""))
		checkMembers(t, s, m, member("wes", 1, t0))
	})

	t.Run("members oldest first then by id", func(t *testing.T) {
		env := newEnv(t, Options{})
		s := env.newStore()
		t0 := env.clock.Now()
		mustJoin(t, s, "c1", "zed")
		mustJoin(t, s, "c2", "amy")
		env.clock.Add(time.Second)
		mustJoin(t, s, "c3", "bob")
		env.frames.take(t)
		checkMembers(t, s, member("amy", 1, t0), member("zed", 1, t0), member("bob", 1, t0.Add(time.Second)))
	})

	t.Run("two tabs on two instances are one member", func(t *testing.T) {
		env := newEnv(t, Options{})
		a, b := env.newStore(), env.newStore()
		t0 := env.clock.Now()
		mustJoin(t, a, "a1", "ann")
		mustJoin(t, b, "b1", "ann")
		checkFrames(t, env,
			frame("join", member("ann", 1, t0), ""),
			frame("update", member("ann", 2, t0), ""))
		checkMembers(t, a, member("ann", 2, t0))
		checkMembers(t, b, member("ann", 2, t0))
		mustLeave(t, b, "b1", "ann")
		mustLeave(t, a, "a1", "ann")
		checkFrames(t, env,
			frame("update", member("ann", 1, t0), ""),
			frame("leave", member("ann", 0, t0), ReasonClosed))
		checkMembers(t, a)
	})

	t.Run("leave grace", func(t *testing.T) {
		env := newEnv(t, Options{LeaveGrace: 5 * time.Second})
		a, b := env.newStore(), env.newStore()
		t0 := env.clock.Now()
		mustJoin(t, a, "c1", "ann")
		mustLeave(t, a, "c1", "ann")
		checkFrames(t, env,
			frame("join", member("ann", 1, t0), ""),
			frame("update", member("ann", 0, t0), ""))
		checkMembers(t, a, member("ann", 0, t0))
		checkRooms(t, a, RoomCount{Room: room, Members: 1})

		// Back within the grace, on another instance: no leave, no join.
		env.clock.Add(4 * time.Second)
		if err := a.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		mustJoin(t, b, "c2", "ann")
		checkFrames(t, env, frame("update", member("ann", 1, t0), ""))

		mustLeave(t, b, "c2", "ann")
		checkFrames(t, env, frame("update", member("ann", 0, t0), ""))
		env.clock.Add(5*time.Second + time.Millisecond)
		var wg sync.WaitGroup
		for _, s := range []Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Sweep(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		checkFrames(t, env, frame("leave", member("ann", 0, t0), ReasonClosed))
		checkMembers(t, a)
		checkRooms(t, a)
	})

	t.Run("back within the grace and staying past its end", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second, LeaveGrace: 5 * time.Second})
		s := env.newStore()
		t0 := env.clock.Now()
		sess := Session{Room: room, Conn: "c1", User: "ann", Name: "Name ann"}
		mustJoin(t, s, "c1", "ann")
		mustJoin(t, s, "c2", "ann")
		mustLeave(t, s, "c2", "ann")
		mustLeave(t, s, "c1", "ann")
		env.clock.Add(2 * time.Second)
		mustJoin(t, s, "c3", "ann")
		checkFrames(t, env,
			frame("join", member("ann", 1, t0), ""),
			frame("update", member("ann", 2, t0), ""),
			frame("update", member("ann", 1, t0), ""),
			frame("update", member("ann", 0, t0), ""),
			frame("update", member("ann", 1, t0), ""))
		// The grace that ended, and later the TTL of the conns that left,
		// change nothing.
		sess.Conn = "c3"
		for range 4 {
			env.clock.Add(4 * time.Second)
			if err := s.Heartbeat(ctx, []Session{sess}); err != nil {
				t.Fatal(err)
			}
			if err := s.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		checkFrames(t, env)
		checkMembers(t, s, member("ann", 1, t0))
		// A new grace after it runs its own course.
		mustLeave(t, s, "c3", "ann")
		env.clock.Add(5 * time.Second)
		if err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env, frame("update", member("ann", 0, t0), ""))
		env.clock.Add(time.Millisecond)
		if err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env, frame("leave", member("ann", 0, t0), ReasonClosed))
		checkMembers(t, s)
		checkRooms(t, s)
	})

	t.Run("timeout swept exactly once by concurrent sweepers", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second})
		a, b := env.newStore(), env.newStore()
		t0 := env.clock.Now()
		mustJoin(t, a, "a1", "ann")
		mustJoin(t, a, "a2", "ann")
		mustJoin(t, b, "b1", "bob")
		env.frames.take(t)

		env.clock.Add(6 * time.Second)
		if err := b.Heartbeat(ctx, []Session{{Room: room, Conn: "b1", User: "bob", Name: "Name bob"}}); err != nil {
			t.Fatal(err)
		}
		// Not expired yet at exactly TTL.
		env.clock.Add(4 * time.Second)
		if err := b.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env)

		env.clock.Add(time.Millisecond) // a1 and a2 lapsed: instance a crashed
		var wg sync.WaitGroup
		for range 4 {
			for _, s := range []Store{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Sweep(ctx); err != nil {
						t.Error(err)
					}
				}()
			}
		}
		wg.Wait()
		checkFrames(t, env,
			frame("update", member("ann", 1, t0), ""),
			frame("leave", member("ann", 0, t0), ReasonTimeout))
		checkMembers(t, b, member("bob", 1, t0))
		checkRooms(t, b, RoomCount{Room: room, Members: 1})
	})

	t.Run("meta", func(t *testing.T) {
		env := newEnv(t, Options{})
		s := env.newStore()
		t0 := env.clock.Now()
		name := `Zoë <"the" & /best/>`
		m, err := s.Join(ctx, Session{Room: room, Conn: "c1", User: "u/<1>", Name: name, Meta: json.RawMessage(`{ "color" : "red", "tag": "<b>" }`)})
		if err != nil {
			t.Fatal(err)
		}
		want := Member{ID: "u/<1>", Name: name, Role: RoleWrite, Meta: json.RawMessage(`{"color":"red","tag":"\u003cb\u003e"}`), Conns: 1, Since: t0.UnixMilli()}
		checkFrames(t, env, frame("join", want, ""))
		if string(Frame("join", room, m, "")) != frame("join", want, "") {
			t.Fatalf("Join returned %+v", m)
		}

		// Replace, not merge.
		m, err = s.SetMeta(ctx, room, "c1", "u/<1>", json.RawMessage(`{"cursor":[1, 2.5,{"x":null}]}`))
		if err != nil {
			t.Fatal(err)
		}
		want.Meta = json.RawMessage(`{"cursor":[1,2.5,{"x":null}]}`)
		checkFrames(t, env, frame("update", want, ""))
		if string(Frame("update", room, m, "")) != frame("update", want, "") {
			t.Fatalf("SetMeta returned %+v", m)
		}
		checkMembers(t, s, want)

		big := json.RawMessage(`{"x":"` + strings.Repeat("a", MaxMetaBytes) + `"}`)
		if _, err := s.SetMeta(ctx, room, "c1", "u/<1>", big); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("SetMeta too large: err %v, want ErrTooLarge", err)
		}
		if _, err := s.SetMeta(ctx, room, "c1", "u/<1>", json.RawMessage(`[1]`)); !errors.Is(err, ErrNotObject) {
			t.Fatalf("SetMeta array: err %v, want ErrNotObject", err)
		}
		if _, err := s.SetMeta(ctx, room, "nope", "u/<1>", json.RawMessage(`{}`)); !errors.Is(err, ErrUnknownConn) {
			t.Fatalf("SetMeta unknown conn: err %v, want ErrUnknownConn", err)
		}
		if _, err := s.SetMeta(ctx, room, "c1", "someone else", json.RawMessage(`{}`)); !errors.Is(err, ErrUnknownConn) {
			t.Fatalf("SetMeta for another user's conn: err %v, want ErrUnknownConn", err)
		}
		for _, conn := range []string{"", "a\nb"} {
			if _, err := s.Join(ctx, Session{Room: room, Conn: conn, User: "x"}); !errors.Is(err, ErrBadConn) {
				t.Fatalf("Join conn %q: err %v, want ErrBadConn", conn, err)
			}
		}
		if _, err := s.Join(ctx, Session{Room: room, Conn: "c2", User: "x", Meta: big}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Join too large: err %v, want ErrTooLarge", err)
		}
		checkFrames(t, env)
		checkMembers(t, s, want)

		// An empty meta is the empty object.
		if _, err := s.SetMeta(ctx, room, "c1", "u/<1>", nil); err != nil {
			t.Fatal(err)
		}
		want.Meta = json.RawMessage(`{}`)
		checkFrames(t, env, frame("update", want, ""))
	})

	t.Run("heartbeat re-adds lost sessions", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second})
		s := env.newStore()
		sessions := []Session{
			{Room: room, Conn: "c1", User: "ann", Name: "Name ann"},
			{Room: room, Conn: "c2", User: "ann", Name: "Name ann"},
			{Room: room, Conn: "c3", User: "bob", Name: "Name bob"},
		}
		for _, sess := range sessions {
			if _, err := s.Join(ctx, sess); err != nil {
				t.Fatal(err)
			}
		}
		env.frames.take(t)
		if err := s.Heartbeat(ctx, sessions); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env)
		if env.wipe == nil {
			return // this backend cannot lose state
		}
		env.wipe()
		checkMembers(t, s)
		env.clock.Add(time.Second)
		t1 := env.clock.Now()
		if err := s.Heartbeat(ctx, sessions); err != nil {
			t.Fatal(err)
		}
		// The re-adds' events, then the room's member list in the same
		// step: nothing can come between them.
		checkFrames(t, env,
			frame("join", member("ann", 1, t1), ""),
			frame("update", member("ann", 2, t1), ""),
			frame("join", member("bob", 1, t1), ""),
			syncFrame(t, member("ann", 2, t1), member("bob", 1, t1)))
		checkMembers(t, s, member("ann", 2, t1), member("bob", 1, t1))
		checkRooms(t, s, RoomCount{Room: room, Members: 2})
		if err := s.Heartbeat(ctx, sessions); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env)
	})

	t.Run("re-adds on two instances after a loss", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second})
		if env.wipe == nil {
			return // this backend cannot lose state
		}
		a, b := env.newStore(), env.newStore()
		ann := Session{Room: room, Conn: "c1", User: "ann", Name: "Name ann"}
		bob := Session{Room: room, Conn: "c2", User: "bob", Name: "Name bob"}
		cat := Session{Room: room, Conn: "c3", User: "cat", Name: "Name cat"}
		for _, j := range []struct {
			s    Store
			sess Session
		}{{a, ann}, {b, bob}, {b, cat}} {
			if _, err := j.s.Join(ctx, j.sess); err != nil {
				t.Fatal(err)
			}
		}
		env.frames.take(t)
		env.wipe()
		// cat's last socket closes while the store has forgotten her: no
		// leave says so, the member lists do.
		if err := b.Leave(ctx, room, cat.Conn, cat.User); err != nil {
			t.Fatal(err)
		}
		checkFrames(t, env)
		env.clock.Add(time.Second)
		t1 := env.clock.Now()
		if err := a.Heartbeat(ctx, []Session{ann}); err != nil {
			t.Fatal(err)
		}
		if err := b.Heartbeat(ctx, []Session{bob}); err != nil {
			t.Fatal(err)
		}
		// Each list is the room as of its place among the events: a later
		// re-add follows the list that does not hold it yet.
		checkFrames(t, env,
			frame("join", member("ann", 1, t1), ""),
			syncFrame(t, member("ann", 1, t1)),
			frame("join", member("bob", 1, t1), ""),
			syncFrame(t, member("ann", 1, t1), member("bob", 1, t1)))
	})

	t.Run("heartbeat keeps sessions past their TTL", func(t *testing.T) {
		env := newEnv(t, Options{TTL: 10 * time.Second})
		s := env.newStore()
		t0 := env.clock.Now()
		sess := Session{Room: room, Conn: "c1", User: "ann", Name: "Name ann"}
		if _, err := s.Join(ctx, sess); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			env.clock.Add(5 * time.Second)
			if err := s.Heartbeat(ctx, []Session{sess}); err != nil {
				t.Fatal(err)
			}
			if err := s.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		checkFrames(t, env, frame("join", member("ann", 1, t0), ""))
		checkMembers(t, s, member("ann", 1, t0))
	})
}
