package tests

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// cluster starts n instances on one private Redis.
func cluster(t *testing.T, n int, env map[string]string) (*redisproc.Server, []*testserver.Server) {
	t.Helper()
	r := redisproc.Start(t)
	return r, instances(t, r.URL(), n, env)
}

// redisCluster starts n instances on one private Redis Cluster of 3
// masters and 3 replicas.
func redisCluster(t *testing.T, n int, env map[string]string) (*redisproc.Cluster, []*testserver.Server) {
	t.Helper()
	c := startCluster(t)
	return c, instances(t, c.URL(), n, env)
}

// redisEngines runs f on n instances sharing a private Redis, and on n
// instances sharing a private Redis Cluster: every behaviour that holds
// across instances holds on both.
func redisEngines(t *testing.T, n int, env map[string]string, f func(t *testing.T, s []*testserver.Server)) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		_, s := cluster(t, n, env)
		f(t, s)
	})
	t.Run("redis-cluster", func(t *testing.T) {
		t.Parallel()
		_, s := redisCluster(t, n, env)
		f(t, s)
	})
}

// clusterSlots bounds the Redis Clusters the tests run at once: each is
// six redis-server processes, and their start-up is what costs.
var clusterSlots = make(chan struct{}, 4)

// startCluster starts a private Redis Cluster, at most cap(clusterSlots)
// at a time; the slot is held until the test ends.
func startCluster(t *testing.T) *redisproc.Cluster {
	t.Helper()
	clusterSlots <- struct{}{}
	t.Cleanup(func() { <-clusterSlots })
	return redisproc.StartCluster(t)
}

// instances starts n instances on the Redis at url.
func instances(t *testing.T, url string, n int, env map[string]string) []*testserver.Server {
	t.Helper()
	var out []*testserver.Server
	for i := 0; i < n; i++ {
		e := map[string]string{
			"ROOMCAST_REDIS_URL":    url,
			"ROOMCAST_INSTANCE_ID":  fmt.Sprint("inst-", string(rune('a'+i))),
			"ROOMCAST_PRESENCE_TTL": "3s",
			"ROOMCAST_HEARTBEAT":    "1s",
		}
		for k, v := range env {
			e[k] = v
		}
		out = append(out, testserver.Start(t, testserver.Options{Env: e}))
	}
	return out
}

func isFrame(typ, user string) func(testserver.Frame) bool {
	return func(f testserver.Frame) bool { return f.Type == typ && f.Member != nil && f.Member.ID == user }
}

func count(c *testserver.Client, typ, user string) int {
	n := 0
	for _, f := range c.Frames() {
		if isFrame(typ, user)(f) {
			n++
		}
	}
	return n
}

func TestClusterMessagesAndPresenceAcrossInstances(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		a, b := s[0], s[1]
		alice := testserver.Join(t, a.WS, "doc", "alice", "Alice")
		bob := testserver.Join(t, b.WS, "doc", "bob", "Bob")
		if len(bob.Welcome.Members) != 2 {
			t.Fatalf("bob's welcome on B misses alice on A: %s", bob.Welcome.Raw)
		}
		alice.Await(t, wait, "bob's join", isFrame("join", "bob"))

		alice.Send(t, map[string]any{"type": "publish", "data": "from A"})
		if m := bob.AwaitType(t, "message", wait); string(m.Data) != `"from A"` || m.From.User != "alice" {
			t.Fatalf("bob got %s", m.Raw)
		}
		bob.Send(t, map[string]any{"type": "publish", "data": "from B"})
		if m := alice.AwaitType(t, "message", wait); string(m.Data) != `"from B"` {
			t.Fatalf("alice got %s", m.Raw)
		}

		// carol: one tab on each instance is one member with two connections.
		carolA := testserver.Join(t, a.WS, "doc", "carol", "Carol")
		carolB := testserver.Join(t, b.WS, "doc", "carol", "Carol")
		if me := carolB.Welcome.Me; me.Conns != 2 {
			t.Fatalf("carol's second tab: me.conns=%d", me.Conns)
		}
		alice.Await(t, wait, "carol conns=2", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "carol" && f.Member.Conns == 2
		})
		carolA.Close()
		bob.Await(t, wait, "carol conns=1", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "carol" && f.Member.Conns == 1
		})
		carolB.Close()
		for _, c := range []*testserver.Client{alice, bob} {
			l := c.Await(t, wait, "carol's leave", isFrame("leave", "carol"))
			if l.Reason != "closed" {
				t.Fatalf("leave reason %q", l.Reason)
			}
			if n := count(c, "join", "carol"); n != 1 {
				t.Fatalf("%d joins of carol, want 1", n)
			}
		}
		ctx := context.Background()
		for _, inst := range s {
			m, err := testserver.Members(ctx, inst.URL, "doc")
			if err != nil {
				t.Fatal(err)
			}
			if got := m.String(); got != "alice(Alice,1,{}) bob(Bob,1,{})" {
				t.Fatalf("members on %s: %s", inst.Addr, got)
			}
		}
	})
}

// Two tabs of one user open at the same instant on two instances, then
// close at the same instant: exactly one join and one leave per round.
func TestClusterSimultaneousTabsExactlyOneJoinAndLeave(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		obsA := testserver.Join(t, s[0].WS, "race", "observer-a", "")
		obsB := testserver.Join(t, s[1].WS, "race", "observer-b", "")
		const rounds = 20
		for round := 0; round < rounds; round++ {
			user := fmt.Sprint("racer-", round)
			tabs := make([]*testserver.Client, 2)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range tabs {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					<-start
					c, err := testserver.TryJoinURL(testserver.WSURL(s[i].WS, "race", testserver.Token(t, user, user, 0, nil)), nil)
					if err != nil {
						t.Error(err)
						return
					}
					tabs[i] = c
				}(i)
			}
			close(start)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			for _, o := range []*testserver.Client{obsA, obsB} {
				o.Await(t, wait, user+" conns=2", func(f testserver.Frame) bool {
					return f.Member != nil && f.Member.ID == user && f.Member.Conns == 2
				})
			}
			start = make(chan struct{})
			for _, tab := range tabs {
				wg.Add(1)
				go func(c *testserver.Client) { defer wg.Done(); <-start; c.Close() }(tab)
			}
			close(start)
			wg.Wait()
			for _, o := range []*testserver.Client{obsA, obsB} {
				o.Await(t, wait, user+" leave", isFrame("leave", user))
			}
		}
		for _, o := range []*testserver.Client{obsA, obsB} {
			for round := 0; round < rounds; round++ {
				user := fmt.Sprint("racer-", round)
				if j, l := count(o, "join", user), count(o, "leave", user); j != 1 || l != 1 {
					t.Errorf("%s saw %d joins and %d leaves of %s", o.Welcome.Me.ID, j, l, user)
				}
			}
		}
	})
}

// kill -9 of an instance: its users leave with reason timeout on the
// survivors within PRESENCE_TTL + 5 s, exactly once, and A keeps serving.
func TestClusterCrashedInstanceUsersTimeOut(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		a, b := s[0], s[1]
		watcher := testserver.Join(t, a.WS, "crash", "watcher", "")
		victims := []string{"v1", "v2", "v3"}
		for _, v := range victims {
			testserver.Join(t, b.WS, "crash", v, v)
			watcher.Await(t, wait, v+" join", isFrame("join", v))
		}
		// One victim also has a tab on A: it must stay online.
		testserver.Join(t, a.WS, "crash", "v3", "v3")
		watcher.Await(t, wait, "v3 conns=2", func(f testserver.Frame) bool {
			return f.Member != nil && f.Member.ID == "v3" && f.Member.Conns == 2
		})

		killed := time.Now()
		b.Kill()
		for _, v := range victims[:2] {
			l := watcher.Await(t, 3*time.Second+5*time.Second, v+" timeout leave", isFrame("leave", v))
			if l.Reason != "timeout" {
				t.Fatalf("leave of %s with reason %q, want timeout", v, l.Reason)
			}
		}
		t.Logf("crashed instance's users left after %v (TTL 3s)", time.Since(killed).Round(10*time.Millisecond))
		watcher.Await(t, wait, "v3 conns=1", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "v3" && f.Member.Conns == 1
		})
		// Exactly once, even with the sweeper running on every tick since.
		late := testserver.Join(t, a.WS, "crash", "late", "")
		watcher.Await(t, wait, "late join", isFrame("join", "late"))
		for _, v := range victims[:2] {
			if n := count(watcher, "leave", v); n != 1 {
				t.Fatalf("%d leaves of %s, want 1", n, v)
			}
		}
		if got := testserver.ModelOf(late.Welcome.Members).String(); got != "late(late,1,{}) v3(v3,1,{}) watcher(watcher,1,{})" {
			t.Fatalf("members after the crash: %s", got)
		}
		watcher.Send(t, map[string]any{"type": "publish", "data": 1})
		late.AwaitType(t, "message", wait)
	})
}

func readyz(t *testing.T, s *testserver.Server) int {
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func awaitReadyz(t *testing.T, s *testserver.Server, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for readyz(t, s) != want {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of %s did not turn %d within %v", s.Addr, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Redis restarts empty: instances turn unready, then re-assert their live
// connections within a heartbeat, and messages flow again. The rooms'
// history went with Redis: connected clients are closed with 4010, and
// resuming with their old position gives recovered:false in a new epoch.
func TestClusterSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, map[string]string{"ROOMCAST_LEAVE_GRACE": "5s"})
	alice := testserver.Join(t, s[0].WS, "restart", "alice", "Alice")
	bob := testserver.Join(t, s[1].WS, "restart", "bob", "Bob")
	alice.Await(t, wait, "bob's join", isFrame("join", "bob"))
	ack := publishAcked(t, alice, map[string]any{"data": "before"})
	awaitSeq(t, bob, ack.Seq)
	oldEpoch := alice.Welcome.Epoch

	r.Kill()
	for _, inst := range s {
		awaitReadyz(t, inst, 503, 10*time.Second)
	}
	r.Restart(t)
	for _, inst := range s {
		awaitReadyz(t, inst, 200, 10*time.Second)
	}
	// Their positions name a history Redis lost: both are told to resync,
	// and come back (as the SDK does) within the leave grace.
	for i, c := range []*testserver.Client{alice, bob} {
		if code := c.WaitClose(t, 10*time.Second); code != 4010 {
			t.Fatalf("client %d closed with %d after the restart, want 4010", i, code)
		}
	}
	pos := fmt.Sprintf("%s:%d", oldEpoch, ack.Seq)
	alice = testserver.JoinSince(t, s[0].WS, "restart", "alice", "Alice", pos, nil)
	bob = testserver.JoinSince(t, s[1].WS, "restart", "bob", "Bob", pos, nil)
	for _, c := range []*testserver.Client{alice, bob} {
		if w := c.Welcome; w.Recovered == nil || *w.Recovered || w.Epoch == oldEpoch || w.Epoch == "" {
			t.Fatalf("resume after the restart: %s; want recovered false in a new epoch", w.Raw)
		}
	}
	// Presence is re-asserted (the sessions came back within the grace).
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := testserver.Members(ctx, s[0].URL, "restart")
		if err == nil && m.String() == "alice(Alice,1,{}) bob(Bob,1,{})" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members not re-asserted after the restart: %v %v", m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Messages flow again both ways (retry: the broker may still be resubscribing).
	deliver := func(from, to *testserver.Client, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			from.Send(t, map[string]any{"type": "publish", "data": text})
			if _, err := to.TryAwait(500*time.Millisecond, func(f testserver.Frame) bool { return f.Type == "message" && string(f.Data) == `"`+text+`"` }); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no message %q after the Redis restart", text)
			}
		}
	}
	deliver(alice, bob, "a2b")
	deliver(bob, alice, "b2a")
	// Nobody who came back was reported as gone: the grace covered it.
	for _, c := range []*testserver.Client{alice, bob} {
		fence(t, c) // presence frames wait a moment to share a write
		if m := c.Model(); m.String() != "alice(Alice,1,{}) bob(Bob,1,{})" {
			t.Fatalf("%s's sidebar after the restart: %s", c.Welcome.Me.ID, m)
		}
		for _, f := range c.Frames() {
			if f.Type == "leave" {
				t.Fatalf("%s saw a leave after the restart: %s", c.Welcome.Me.ID, f.Raw)
			}
		}
	}
}

// While users churn on three instances, each client's welcome + events
// model equals GET /members once the room is quiet.
func TestClusterSnapshotConvergence(t *testing.T) {
	t.Parallel()
	redisEngines(t, 3, nil, func(t *testing.T, s []*testserver.Server) {
		var observers []*testserver.Client
		var wg sync.WaitGroup
		var mu sync.Mutex
		for g := 0; g < 9; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 6; i++ {
					inst := s[(g+i)%3]
					user := fmt.Sprint("u", (g*7+i)%5)
					c, err := testserver.TryJoinURL(testserver.WSURL(inst.WS, "converge", testserver.Token(t, user, user, 0, nil)), nil)
					if err != nil {
						t.Error(err)
						return
					}
					if err := c.WS.WriteJSON(map[string]any{"type": "presence", "meta": map[string]any{"g": g, "i": i}}); err != nil {
						t.Error(err)
						return
					}
					if i%2 == 0 {
						c.Close()
					} else {
						mu.Lock()
						observers = append(observers, c)
						mu.Unlock()
					}
				}
			}(g)
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		t.Cleanup(func() {
			for _, o := range observers {
				o.Close()
			}
		})
		ctx := context.Background()
		var want string
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, err := testserver.Members(ctx, s[0].URL, "converge")
			if err != nil {
				t.Fatal(err)
			}
			want = m.String()
			agree := true
			for _, inst := range s[1:] {
				if o, err := testserver.Members(ctx, inst.URL, "converge"); err != nil || o.String() != want {
					agree = false
				}
			}
			for _, o := range observers {
				if o.Model().String() != want {
					agree = false
				}
			}
			if agree {
				break
			}
			if time.Now().After(deadline) {
				for _, o := range observers {
					if got := o.Model().String(); got != want {
						t.Errorf("%s on %s: %s\nwant %s", o.Welcome.Me.ID, o.Welcome.Instance, got, want)
					}
				}
				t.Fatal("models did not converge")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// LEAVE_GRACE: a user whose last tab closes and who comes back on another
// instance within the grace causes no leave and no join; one who stays away
// leaves once, with reason closed, after the grace.
func TestClusterLeaveGraceAcrossInstances(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, map[string]string{"ROOMCAST_LEAVE_GRACE": "2s"}, func(t *testing.T, s []*testserver.Server) {
		watcher := testserver.Join(t, s[0].WS, "grace", "watcher", "")
		tab := testserver.Join(t, s[0].WS, "grace", "dana", "Dana")
		watcher.Await(t, wait, "dana's join", isFrame("join", "dana"))
		tab.Close()
		watcher.Await(t, wait, "dana reconnecting (conns 0)", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "dana" && f.Member.Conns == 0
		})
		back := testserver.Join(t, s[1].WS, "grace", "dana", "Dana")
		watcher.Await(t, wait, "dana back (conns 1)", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "dana" && f.Member.Conns == 1
		})
		// Past the grace: still no leave and only the first join.
		if _, err := watcher.TryAwait(3*time.Second, isFrame("leave", "dana")); err == nil {
			t.Fatal("dana left although she came back within the grace")
		}
		if n := count(watcher, "join", "dana"); n != 1 {
			t.Fatalf("%d joins of dana, want 1", n)
		}
		closed := time.Now()
		back.Close()
		l := watcher.Await(t, 2*time.Second+3*time.Second, "dana's leave after the grace", isFrame("leave", "dana"))
		if l.Reason != "closed" {
			t.Fatalf("leave reason %q", l.Reason)
		}
		if d := time.Since(closed); d < 2*time.Second-100*time.Millisecond {
			t.Fatalf("leave %v after the close, before the 2s grace", d)
		}
		if n := count(watcher, "leave", "dana"); n != 1 {
			t.Fatalf("%d leaves of dana", n)
		}
	})
}

// Redis flushed (the pub/sub connection survives, so no gap is seen): a
// user who leaves before the next heartbeat re-asserts the room must not
// stay in anyone's sidebar, and users still connected come back.
func TestClusterRedisFlushLeavesNoGhost(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, nil)
	alice := testserver.Join(t, s[0].WS, "flush", "alice", "Alice")
	bob := testserver.Join(t, s[1].WS, "flush", "bob", "Bob")
	carol := testserver.Join(t, s[1].WS, "flush", "carol", "Carol")
	alice.Await(t, wait, "carol's join", isFrame("join", "carol"))
	if err := r.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	carol.Close() // before any heartbeat: the store no longer knows her
	want := "alice(Alice,1,{}) bob(Bob,1,{})"
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := testserver.Members(context.Background(), s[0].URL, "flush")
		if err == nil && m.String() == want && alice.Model().String() == want && bob.Model().String() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the flush: members %v (%v), alice sees %s, bob sees %s; want %s", m, err, alice.Model(), bob.Model(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
