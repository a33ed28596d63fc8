package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// repeat runs step(0), step(1), … on a goroutine counted in wg until stop
// is closed or step returns false.
func repeat(wg *sync.WaitGroup, stop <-chan struct{}, step func(i int) bool) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if !step(i) {
				return
			}
		}
	}()
}

// clusterLayout is the layout the instances use on a cluster.
var clusterLayout = wire.Layout{Partitions: wire.DefaultPartitions}

// roomsPerMaster returns, for each current master, rooms named
// "<prefix>-<n>" whose slot it serves, perMaster of each.
func roomsPerMaster(t *testing.T, c *redisproc.Cluster, prefix string, perMaster int) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	masters := c.Masters(t)
	for n := 0; len(out) < len(masters) || !full(out, perMaster); n++ {
		room := fmt.Sprintf("%s-%d", prefix, n)
		m := c.MasterOfSlot(t, wire.Slot(clusterLayout.Room(room).Channel)).Addr()
		if len(out[m]) < perMaster {
			out[m] = append(out[m], room)
		}
		if n > 10000 {
			t.Fatalf("no rooms found for every master: %v", out)
		}
	}
	return out
}

func full(m map[string][]string, n int) bool {
	for _, rs := range m {
		if len(rs) < n {
			return false
		}
	}
	return true
}

// infoSection returns the "name:value" lines of an INFO section.
func infoSection(t *testing.T, c *redis.Client, section string) map[string]string {
	t.Helper()
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// auditCommands fails the test if any node of the cluster ran a command
// a Redis Cluster refuses or broadcasts (KEYS, SCAN, MGET, plain PUBLISH)
// or answered any error but NOSCRIPT (CROSSSLOT, a script touching
// another slot, …). It reads INFO commandstats and errorstats, which count
// every call since the node started, so nothing can hide.
func auditCommands(t *testing.T, c *redisproc.Cluster, allowed ...string) {
	t.Helper()
	allowed = append(allowed, "NOSCRIPT")
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		cl := n.Client(t)
		for name := range infoSection(t, cl, "commandstats") {
			cmd := strings.TrimPrefix(name, "cmdstat_")
			switch cmd {
			case "keys", "scan", "mget", "publish", "subscribe", "psubscribe", "flushall", "flushdb":
				t.Errorf("node %s ran %s, which a cluster refuses across slots or broadcasts to every node", n.Addr(), strings.ToUpper(cmd))
			}
		}
		for name, v := range infoSection(t, cl, "errorstats") {
			kind := strings.TrimPrefix(name, "errorstat_")
			if !slices.Contains(allowed, kind) {
				t.Errorf("node %s answered %s errors: %s", n.Addr(), kind, v)
			}
		}
	}
}

// Rooms on every master, members on two instances: messages, presence,
// history and the room list work across the shards, each instance holds
// one sharded pub/sub connection per master, and nothing ran a command a
// cluster refuses.
func TestRedisClusterRoomsOnEveryShard(t *testing.T) {
	t.Parallel()
	c, s := redisCluster(t, 2, nil)
	a, b := s[0], s[1]
	byMaster := roomsPerMaster(t, c, "shard", 2)
	if len(byMaster) != 3 {
		t.Fatalf("rooms on %d masters, want 3", len(byMaster))
	}
	var all []string
	for _, rs := range byMaster {
		all = append(all, rs...)
	}
	slices.Sort(all)
	type pair struct{ alice, bob *testserver.Client }
	clients := map[string]pair{}
	for _, room := range all {
		alice := testserver.Join(t, a.WS, room, "alice", "Alice")
		bob := testserver.Join(t, b.WS, room, "bob", "Bob")
		if len(bob.Welcome.Members) != 2 {
			t.Fatalf("room %s: bob's welcome on B misses alice on A: %s", room, bob.Welcome.Raw)
		}
		alice.Await(t, wait, room+": bob's join", isFrame("join", "bob"))
		clients[room] = pair{alice, bob}
	}
	for _, room := range all {
		p := clients[room]
		ack := publishAcked(t, p.alice, map[string]any{"data": "stored in " + room})
		if m := p.bob.AwaitType(t, "message", wait); m.Seq != ack.Seq || string(m.Data) != strconv.Quote("stored in "+room) {
			t.Fatalf("room %s: bob got %s, want seq %d", room, m.Raw, ack.Seq)
		}
		p.bob.Send(t, map[string]any{"type": "publish", "data": "ephemeral from B", "ephemeral": true})
		if m := p.alice.AwaitType(t, "message", wait); string(m.Data) != `"ephemeral from B"` {
			t.Fatalf("room %s: alice got %s", room, m.Raw)
		}
		// The stored message replays on the other instance.
		late := testserver.JoinSince(t, b.WS, room, "carol", "Carol", "start", nil)
		late.Await(t, wait, room+": replay", func(f testserver.Frame) bool { return f.Type == "message" && f.Seq == ack.Seq })
		late.Close()
		p.alice.Await(t, wait, room+": carol's leave", isFrame("leave", "carol"))
	}

	// The room list reads every partition's index, on every master.
	status, body := httpCall(t, http.MethodGet, a.URL+"/api/rooms", testserver.APIKey, "")
	var list struct {
		Rooms []struct {
			Room    string `json:"room"`
			Members int    `json:"members"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(body, &list); status != 200 || err != nil {
		t.Fatalf("/api/rooms: HTTP %d %s %v", status, body, err)
	}
	var listed []string
	for _, r := range list.Rooms {
		if r.Members != 2 {
			t.Errorf("room %s listed with %d members, want 2", r.Room, r.Members)
		}
		listed = append(listed, r.Room)
	}
	if !slices.Equal(listed, all) {
		t.Fatalf("/api/rooms lists %v, want %v", listed, all)
	}

	// One sharded pub/sub connection per master per instance, holding
	// exactly that master's rooms.
	ctx := context.Background()
	for _, m := range c.Masters(t) {
		mc := m.Client(t)
		subs := 0
		list, err := mc.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			if strings.Contains(line, " ssub=") && !strings.Contains(line, " ssub=0 ") {
				subs++
			}
		}
		if subs != 2 {
			t.Errorf("master %s holds %d sharded pub/sub connections, want 2 (one per instance)\n%s", m.Addr(), subs, list)
		}
		chans, err := mc.PubSubShardChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, room := range byMaster[m.Addr()] {
			want = append(want, clusterLayout.Room(room).Channel)
		}
		slices.Sort(chans)
		slices.Sort(want)
		if !slices.Equal(chans, want) {
			t.Errorf("master %s serves shard channels %v, want %v", m.Addr(), chans, want)
		}
		if n, err := mc.DBSize(ctx).Result(); err != nil || n == 0 {
			t.Errorf("master %s holds %d keys (%v): its rooms' keys are elsewhere", m.Addr(), n, err)
		}
	}
	auditCommands(t, c)
}

// kill -9 of a master while messages and joins flow: its replica takes
// over, /readyz comes back, messages flow again, every acknowledged stored
// message is still in the history, and once the dust settles no ghost is
// left.
func TestRedisClusterMasterFailover(t *testing.T) {
	t.Parallel()
	c, s := redisCluster(t, 2, map[string]string{"ROOMCAST_RATE": "1000"})
	a, b := s[0], s[1]
	slot := wire.Slot(clusterLayout.Room("failover").Channel)
	victim := c.MasterOfSlot(t, slot)
	replica := c.ReplicaOf(t, victim)
	// A control room on another master keeps working throughout.
	control := ""
	for n := 0; control == ""; n++ {
		r := fmt.Sprint("control-", n)
		if c.MasterOfSlot(t, wire.Slot(clusterLayout.Room(r).Channel)).Addr() != victim.Addr() {
			control = r
		}
	}

	alice := testserver.Join(t, a.WS, "failover", "alice", "Alice")
	bob := testserver.Join(t, b.WS, "failover", "bob", "Bob")
	alice.Await(t, wait, "bob's join", isFrame("join", "bob"))
	epoch := alice.Welcome.Epoch

	// Alice publishes stored messages without pause and keeps what was
	// acknowledged; refused publishes (the master is down) are expected.
	type acked struct {
		seq  uint64
		data string
	}
	var (
		mu      sync.Mutex
		acks    []acked
		refused atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	repeat(&wg, stop, func(i int) bool {
		ref := fmt.Sprint("m", i)
		data := fmt.Sprint("msg-", i)
		if err := alice.WS.WriteJSON(map[string]any{"type": "publish", "ref": ref, "data": data}); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return false
		}
		f, err := alice.TryAwait(8*time.Second, func(f testserver.Frame) bool {
			return (f.Type == "ack" || f.Type == "error") && f.Ref == ref
		})
		if err != nil {
			t.Errorf("publish %d: no answer: %v", i, err)
			return false
		}
		if f.Type == "error" {
			refused.Add(1)
			time.Sleep(50 * time.Millisecond)
			return true
		}
		mu.Lock()
		acks = append(acks, acked{f.Seq, strconv.Quote(data)})
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		return true
	})
	// Users come and go on B meanwhile.
	var churned atomic.Int64
	repeat(&wg, stop, func(i int) bool {
		u := fmt.Sprint("churn-", i)
		cl, err := testserver.TryJoinURL(testserver.WSURL(b.WS, "failover", testserver.Token(t, u, u, 0, nil)), nil)
		if err == nil {
			churned.Add(1)
			time.Sleep(30 * time.Millisecond)
			cl.Close()
		}
		time.Sleep(20 * time.Millisecond)
		return true
	})

	time.Sleep(time.Second)
	killed := time.Now()
	victim.Kill()
	eventually(t, 20*time.Second, "the replica promoted", func() error {
		if m := c.MasterOfSlot(t, slot); m == nil || m.Addr() != replica.Addr() {
			return fmt.Errorf("slot %d not served by the replica yet", slot)
		}
		return nil
	})
	promoted := time.Since(killed)
	for _, inst := range s {
		awaitReadyz(t, inst, 200, 20*time.Second)
	}
	ready := time.Since(killed)
	time.Sleep(time.Second) // messages and joins flow on the new master
	close(stop)
	wg.Wait()
	t.Logf("replica promoted after %v, /readyz 200 on both after %v; %d publishes acknowledged, %d refused meanwhile, %d churn joins",
		promoted.Round(10*time.Millisecond), ready.Round(10*time.Millisecond), len(acks), refused.Load(), churned.Load())

	// Messages flow again, both ways, in both rooms.
	live := publishAcked(t, alice, map[string]any{"data": "after failover"})
	bob.Await(t, wait, "the message after the failover", func(f testserver.Frame) bool { return f.Type == "message" && f.Seq == live.Seq })
	bob.Send(t, map[string]any{"type": "publish", "data": "bob after failover"})
	alice.Await(t, wait, "bob's message after the failover", func(f testserver.Frame) bool {
		return f.Type == "message" && string(f.Data) == `"bob after failover"`
	})
	ctlA := testserver.Join(t, a.WS, control, "alice", "Alice")
	ctlB := testserver.Join(t, b.WS, control, "bob", "Bob")
	ctlA.Await(t, wait, "bob's join in the control room", isFrame("join", "bob"))
	ctlB.Send(t, map[string]any{"type": "publish", "data": "control"})
	ctlA.AwaitType(t, "message", wait)

	// Every acknowledged stored message is resumable from the start.
	if live.Epoch != "" && live.Epoch != epoch {
		t.Fatalf("the room's epoch changed from %s to %s: the replica lost its history", epoch, live.Epoch)
	}
	replay := testserver.JoinSince(t, a.WS, "failover", "reader", "Reader", "start", nil)
	replay.Await(t, wait, "the replay up to the live message", func(f testserver.Frame) bool { return f.Type == "message" && f.Seq == live.Seq })
	got := map[uint64]string{}
	for _, f := range storedMessages(replay) {
		got[f.Seq] = string(f.Data)
	}
	mu.Lock()
	for _, m := range acks {
		if got[m.seq] != m.data {
			t.Errorf("acknowledged message seq %d %s is %q in the history", m.seq, m.data, got[m.seq])
		}
	}
	mu.Unlock()
	replay.Close()

	// No ghost: once the presence TTL has passed, both instances list
	// exactly who is connected, and so do the clients' own views.
	want := "alice(Alice,1,{}) bob(Bob,1,{})"
	eventually(t, 15*time.Second, "no ghost after the failover", func() error {
		for _, inst := range s {
			m, err := testserver.Members(context.Background(), inst.URL, "failover")
			if err != nil {
				return err
			}
			if got := m.String(); got != want {
				return fmt.Errorf("members on %s: %s", inst.Addr, got)
			}
		}
		return nil
	})
	fresh := testserver.Join(t, b.WS, "failover", "dave", "Dave")
	if got := testserver.ModelOf(fresh.Welcome.Members).String(); got != "alice(Alice,1,{}) bob(Bob,1,{}) dave(Dave,1,{})" {
		t.Fatalf("a fresh join sees %s", got)
	}
	// The failover may leave connection errors and redirections behind,
	// never a cross-slot one.
	auditCommands(t, c, "MOVED", "CLUSTERDOWN", "READONLY", "TRYAGAIN")
}

// A resharding moves a partition's slot, keys and all, to another master
// while its room is in use: the instances follow the slot (Redis takes
// the old master's sharded subscriptions away), messages flow again, the
// history is intact and presence is unchanged.
func TestRedisClusterResharding(t *testing.T) {
	t.Parallel()
	c, s := redisCluster(t, 2, nil)
	a, b := s[0], s[1]
	const room = "moving"
	slot := wire.Slot(clusterLayout.Room(room).Channel)
	from := c.MasterOfSlot(t, slot)
	var to *redisproc.Node
	for _, m := range c.Masters(t) {
		if m.Addr() != from.Addr() {
			to = m
			break
		}
	}
	alice := testserver.Join(t, a.WS, room, "alice", "Alice")
	bob := testserver.Join(t, b.WS, room, "bob", "Bob")
	alice.Await(t, wait, "bob's join", isFrame("join", "bob"))
	var before []testserver.Frame
	for i := range 5 {
		before = append(before, publishAcked(t, alice, map[string]any{"data": fmt.Sprint("before-", i)}))
	}
	awaitSeq(t, bob, before[4].Seq)

	c.MoveSlot(t, slot, to)
	if m := c.MasterOfSlot(t, slot); m == nil || m.Addr() != to.Addr() {
		t.Fatalf("slot %d still on %v after the move", slot, m)
	}
	// Every instance follows the slot: its shard channel is subscribed on
	// the new master by both, and on the old one by nobody.
	ch := clusterLayout.Room(room).Channel
	ctx := context.Background()
	eventually(t, 10*time.Second, "the room's channel on the new master", func() error {
		n, err := to.Client(t).PubSubShardNumSub(ctx, ch).Result()
		if err != nil {
			return err
		}
		if n[ch] != 2 {
			return fmt.Errorf("%d subscribers of %s on the new master", n[ch], ch)
		}
		if old, _ := from.Client(t).PubSubShardNumSub(ctx, ch).Result(); old[ch] != 0 {
			return fmt.Errorf("%d subscribers of %s left on the old master", old[ch], ch)
		}
		return nil
	})
	after := publishAcked(t, alice, map[string]any{"data": "after the move"})
	if after.Seq != before[4].Seq+1 {
		t.Fatalf("first message after the move has seq %d, want %d: the history did not move with the slot", after.Seq, before[4].Seq+1)
	}
	awaitSeq(t, bob, after.Seq)
	bob.Send(t, map[string]any{"type": "publish", "data": "bob after the move", "ephemeral": true})
	alice.Await(t, wait, "bob's message after the move", func(f testserver.Frame) bool {
		return f.Type == "message" && string(f.Data) == `"bob after the move"`
	})
	replay := testserver.JoinSince(t, b.WS, room, "carol", "Carol", "start", nil)
	replay.Await(t, wait, "the replay", func(f testserver.Frame) bool { return f.Type == "message" && f.Seq == after.Seq })
	if got := len(storedMessages(replay)); got != 6 {
		t.Fatalf("replay after the move holds %d stored messages, want 6", got)
	}
	if got := testserver.ModelOf(replay.Welcome.Members).String(); got != "alice(Alice,1,{}) bob(Bob,1,{}) carol(Carol,1,{})" {
		t.Fatalf("members after the move: %s", got)
	}
	auditCommands(t, c, "MOVED", "ASK", "TRYAGAIN")
}

// A stored message is acknowledged only once a replica of its master has
// it (WAIT 1): with the replica stuck, the first publish waits out
// ReplicaWait (200 ms) and is acknowledged anyway (it is on the master),
// the instance says so in its log, and later publishes no longer wait.
func TestRedisClusterStoredMessagesWaitForAReplica(t *testing.T) {
	t.Parallel()
	c, s := redisCluster(t, 1, nil)
	const room = "replicated"
	master := c.MasterOfSlot(t, wire.Slot(clusterLayout.Room(room).Channel))
	replica := c.ReplicaOf(t, master)
	alice := testserver.Join(t, s[0].WS, room, "alice", "Alice")
	publishAcked(t, alice, map[string]any{"data": "replicated"})
	// On a busy machine the replica may already have been slower than
	// ReplicaWait: the instance then skips the wait for 10 s. Start once
	// a publish's wait succeeded (no new log line).
	const slowLine = "no replica confirmed stored payloads in time"
	for attempt := 0; strings.Contains(s[0].Output(), slowLine); attempt++ {
		if attempt == 3 {
			t.Fatal("the replica keeps missing ReplicaWait before it is paused")
		}
		n := strings.Count(s[0].Output(), slowLine)
		time.Sleep(11 * time.Second)
		publishAcked(t, alice, map[string]any{"data": "replicated again"})
		if strings.Count(s[0].Output(), slowLine) == n {
			break
		}
	}
	logged := strings.Count(s[0].Output(), slowLine)

	replica.Pause(t)
	defer replica.Resume(t)
	start := time.Now()
	first := publishAcked(t, alice, map[string]any{"data": "replica stuck"})
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("the publish was acknowledged after %v, before its WAIT could time out: the ack did not wait for the replica", took)
	}
	for i := range 5 {
		publishAcked(t, alice, map[string]any{"data": fmt.Sprint("after ", i)})
	}
	eventually(t, wait, "the log names the master without a replica", func() error {
		if strings.Count(s[0].Output(), slowLine) <= logged {
			return fmt.Errorf("not logged")
		}
		return nil
	})
	replica.Resume(t)
	// The replica catches up and has every message.
	eventually(t, wait, "the replica has the messages", func() error {
		ctx := context.Background()
		var xlen *redis.IntCmd
		if _, err := replica.Client(t).Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ReadOnly(ctx) // a replica answers reads on this connection
			xlen = p.XLen(ctx, clusterLayout.Room(room).Stream)
			return nil
		}); err != nil {
			return err
		}
		n := xlen.Val()
		if uint64(n) != first.Seq+5 {
			return fmt.Errorf("replica holds %d messages, want %d", n, first.Seq+5)
		}
		return nil
	})
}
