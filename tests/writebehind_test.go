package tests

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/store/storetest"
	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// Redis + PostgreSQL: Redis is the hot tier, the store is written behind
// it, and a room Redis lost comes back from the store in its epoch.

// writeBehindEnv is the environment of instances on one PostgreSQL store
// behind Redis, with extra on top.
func writeBehindEnv(t *testing.T, extra map[string]string) map[string]string {
	env := map[string]string{"ROOMCAST_STORE": storetest.PostgresDB(t, "roomcast_wb"), "ROOMCAST_STORE_DELAY": "1s"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// awaitSaved waits until no room is left unsaved (the dirty index is
// empty) and the instances counted at least one save.
func awaitSaved(t *testing.T, rc redis.UniversalClient, s []*testserver.Server) {
	t.Helper()
	layout := wire.Layout{}
	if _, ok := rc.(*redis.ClusterClient); ok {
		layout.Partitions = wire.DefaultPartitions
	}
	eventually(t, 20*time.Second, "every room saved to the store", func() error {
		ctx := context.Background()
		var cards []*redis.IntCmd
		_, err := rc.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, idx := range layout.DirtyIndexes() {
				cards = append(cards, pl.ZCard(ctx, idx))
			}
			return nil
		})
		if err != nil {
			return err
		}
		var n int64
		for _, c := range cards {
			n += c.Val()
		}
		if n > 0 {
			return fmt.Errorf("%d rooms unsaved", n)
		}
		saves := 0.0
		for _, inst := range s {
			saves += max(metric(t, inst, `roomcast_store_saves_total{outcome="ok"}`), 0) // -1: none yet
		}
		if saves == 0 {
			return fmt.Errorf("no save counted")
		}
		return nil
	})
}

// board is what a JSON client wrote to a room: its position after each
// stored message and its state.
type board struct {
	room  string
	epoch string
	seqs  []uint64
	data  []string
	state string
}

// writeBoard publishes three stored messages and a state on inst, and
// leaves.
func writeBoard(t *testing.T, inst *testserver.Server, room string) board {
	t.Helper()
	b, c := writeBoardStaying(t, inst, room)
	c.Close()
	return b
}

// writeBoardStaying is writeBoard without leaving.
func writeBoardStaying(t *testing.T, inst *testserver.Server, room string) (board, *testserver.Client) {
	t.Helper()
	c := testserver.Join(t, inst.WS, room, "alice", "Alice")
	b := board{room: room, epoch: c.Welcome.Epoch, state: `{"shapes":3}`}
	for i := range 3 {
		text := fmt.Sprint("shape-", i)
		ack := publishAcked(t, c, map[string]any{"data": text})
		b.seqs = append(b.seqs, ack.Seq)
		b.data = append(b.data, `"`+text+`"`)
	}
	if f := sendState(t, c, b.seqs[2], map[string]any{"shapes": 3}); f.Type != "ack" {
		t.Fatalf("state refused: %s", f.Raw)
	}
	return b, c
}

// checkBoard fails unless inst has the board back: a client resuming
// from its first message gets the rest in the same epoch (recovered), one
// from the start gets the state.
func checkBoard(t *testing.T, inst *testserver.Server, b board) {
	t.Helper()
	since := fmt.Sprintf("%s:%d", b.epoch, b.seqs[0])
	last := b.seqs[len(b.seqs)-1]
	again := testserver.JoinSince(t, inst.WS, b.room, "bob", "Bob", since, nil)
	defer again.Close()
	w := again.Welcome
	if w.Recovered == nil || !*w.Recovered || w.Epoch != b.epoch || w.Seq != last {
		t.Fatalf("resume from %s on %s: welcome %s; want recovered at %s:%d", since, inst.Addr, w.Raw, b.epoch, last)
	}
	awaitSeq(t, again, last)
	var got []string
	for _, f := range storedMessages(again) {
		got = append(got, string(f.Data))
	}
	if want := strings.Join(b.data[1:], ","); strings.Join(got, ",") != want {
		t.Fatalf("resumed with %v, want %s", got, want)
	}
	fresh := testserver.JoinSince(t, inst.WS, b.room, "carol", "Carol", "start", nil)
	defer fresh.Close()
	if st := fresh.Welcome.State; st == nil || st.Seq != last || compactJSON(st.Data) != b.state {
		t.Fatalf("a fresh client's welcome %s; want state %s at seq %d", fresh.Welcome.Raw, b.state, last)
	}
}

// checkHistory fails unless inst's GET messages has the board's
// messages, each once, in its epoch.
func checkHistory(t *testing.T, inst *testserver.Server, b board) {
	t.Helper()
	page := getMessages(t, inst, b.room, "since=0&limit=1000")
	var seqs []uint64
	var data []string
	for _, f := range page.frames(t) {
		seqs = append(seqs, f.Seq)
		data = append(data, string(f.Data))
	}
	last := b.seqs[len(b.seqs)-1]
	if page.Epoch != b.epoch || page.Seq != last || fmt.Sprint(seqs) != fmt.Sprint(b.seqs) || fmt.Sprint(data) != fmt.Sprint(b.data) {
		t.Fatalf("history of %s on %s: %s:%d with %v %v; want %s:%d with %v %v", b.room, inst.Addr, page.Epoch, page.Seq, seqs, data, b.epoch, last, b.seqs, b.data)
	}
}

// writeDoc types into a room's document from a provider on each of two
// instances, waits for them to agree, and has both leave; it returns the
// text.
func writeDoc(t *testing.T, p *yjs.Peers, s []*testserver.Server, room string) string {
	t.Helper()
	connectSynced(t, p, room+"-a", yjsURL(s[0]), room, "alice")
	connectSynced(t, p, room+"-b", yjsURL(s[1]), room, "bob")
	p.Do("insert", room+"-a", map[string]any{"text": "kept by the store; "})
	p.Do("insert", room+"-b", map[string]any{"text": "typed on the other instance"})
	want := converged(t, p, wait, room+"-a", room+"-b")
	p.Do("destroy", room+"-a", nil)
	p.Do("destroy", room+"-b", nil)
	return want.Text
}

// checkDoc fails unless a fresh provider on inst gets text.
func checkDoc(t *testing.T, p *yjs.Peers, inst *testserver.Server, room, id, text string) {
	t.Helper()
	connectSynced(t, p, id, yjsURL(inst), room, "dave")
	if c := p.Content(id); c.Text != text {
		t.Fatalf("a fresh provider on %s has %q, want %q", inst.Addr, c.Text, text)
	}
}

// A board and a document written, saved and then lost from Redis come
// back from the store in their epochs, whichever way Redis lost them.
func TestWriteBehindLostRedisComesBack(t *testing.T) {
	yjs.Ensure(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		lose func(t *testing.T, r *redisproc.Server, rc *redis.Client)
	}{
		{"flushall", nil, func(t *testing.T, r *redisproc.Server, rc *redis.Client) {
			if err := rc.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restarted empty", nil, func(t *testing.T, r *redisproc.Server, rc *redis.Client) {
			r.Kill()
			r.Restart(t)
		}},
		{"ttl passed", map[string]string{"ROOMCAST_HISTORY_TTL": "2s", "ROOMCAST_DOC_TTL": "2s"}, func(t *testing.T, r *redisproc.Server, rc *redis.Client) {
			eventually(t, 20*time.Second, "the rooms gone from Redis", func() error {
				keys, err := rc.Keys(context.Background(), "*{board}*").Result()
				if err != nil {
					return err
				}
				docs, err := rc.Keys(context.Background(), "*{doc}*").Result()
				if err != nil {
					return err
				}
				if len(keys)+len(docs) > 0 {
					return fmt.Errorf("still held: %v %v", keys, docs)
				}
				return nil
			})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, s := cluster(t, 2, writeBehindEnv(t, c.env))
			rc := r.Client(t)
			p := yjs.StartPeers(t)
			b := writeBoard(t, s[0], "board")
			text := writeDoc(t, p, s, "doc")
			awaitSaved(t, rc, s)

			c.lose(t, r, rc)
			for _, inst := range s {
				inst.WaitReady(t, 15*time.Second)
			}
			// Both instances have it all, each message once, and the
			// room goes on in its epoch.
			for i, inst := range s {
				checkBoard(t, inst, b)
				checkDoc(t, p, inst, "doc", fmt.Sprint("doc-fresh-", i), text)
				checkHistory(t, inst, b)
			}
			erin := testserver.Join(t, s[0].WS, "board", "erin", "")
			if next := publishAcked(t, erin, map[string]any{"data": "after"}); erin.Welcome.Epoch != b.epoch || next.Seq != b.seqs[2]+1 {
				t.Fatalf("a publish after the loss: welcome %s, ack %s; want %s:%d", erin.Welcome.Raw, next.Raw, b.epoch, b.seqs[2]+1)
			}
			// The versions were taken from Redis and kept by the store.
			for _, room := range []string{"board", "doc"} {
				if vs := listVersions(t, s[1], room); len(vs) == 0 {
					t.Fatalf("no versions of %s", room)
				}
			}
		})
	}
}

// An instance killed right after its clients' edits, before it saved
// them: the surviving instance saves them.
func TestWriteBehindSurvivorSavesACrashedInstancesRooms(t *testing.T) {
	yjs.Ensure(t)
	r, s := cluster(t, 2, writeBehindEnv(t, map[string]string{"ROOMCAST_STORE_DELAY": "3s"}))
	rc := r.Client(t)
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "doc", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "doc", "bob")
	// Nobody leaves the crashed instance's rooms: nothing asks it to save
	// them before its STORE_DELAY.
	b, _ := writeBoardStaying(t, s[0], "board")
	p.Do("insert", "a", map[string]any{"text": "typed just before the crash"})
	text := converged(t, p, wait, "a", "b").Text
	s[0].Kill()
	if n := metric(t, s[1], `roomcast_store_saves_total{outcome="ok"}`); n > 0 {
		t.Fatalf("%v saves before STORE_DELAY", n)
	}
	// Bob stays on the survivor: it saves on its own, after STORE_DELAY.
	awaitSaved(t, rc, s[1:])
	p.Do("destroy", "b", nil)

	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	checkBoard(t, s[1], b)
	checkDoc(t, p, s[1], "doc", "c", text)
}

// Two instances that miss the same room at once load it back once and
// agree: many JSON clients and providers of both instances join it at the
// same moment after each flush. Every client resumes in the kept epoch
// (recovered), every provider gets the document, the store's parts are
// written to Redis once (roomcast_store_loads_total counts one load of the
// stream and one of the document over both instances), and the history
// holds each message once.
func TestWriteBehindTwoInstancesAgreeOnAnEpoch(t *testing.T) {
	yjs.Ensure(t)
	r, s := cluster(t, 2, writeBehindEnv(t, nil))
	rc := r.Client(t)
	p := yjs.StartPeers(t)
	b := writeBoard(t, s[0], "room")
	text := writeDoc(t, p, s, "room")
	awaitSaved(t, rc, s)
	loads := func(part string) float64 {
		n := 0.0
		for _, inst := range s {
			n += max(metric(t, inst, `roomcast_store_loads_total{part="`+part+`"}`), 0) // -1: none yet
		}
		return n
	}
	const perInstance = 6
	since := fmt.Sprintf("%s:%d", b.epoch, b.seqs[0])
	for round := range 3 {
		if err := rc.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		streams, docs := loads("stream"), loads("doc")
		start := make(chan struct{})
		var wg sync.WaitGroup
		clients := make([]*testserver.Client, 2*perInstance)
		errs := make([]error, len(clients))
		for i := range clients {
			inst := s[i%2]
			u := testserver.SinceURL(inst.WS, "room", testserver.Token(t, fmt.Sprint("u", i), "", 0, nil), since, nil)
			wg.Go(func() {
				<-start
				clients[i], errs[i] = testserver.TryJoinURL(u, nil)
			})
		}
		close(start)
		var ids []string
		for i := range perInstance {
			for j, inst := range s {
				id := fmt.Sprintf("r%d-%d-%d", round, i, j)
				ids = append(ids, id)
				p.Connect(id, yjsURL(inst), "room", testserver.Token(t, "p"+id, "", 0, nil), nil)
			}
		}
		wg.Wait()
		for i, c := range clients {
			if errs[i] != nil {
				t.Fatalf("round %d, client %d: %v", round, i, errs[i])
			}
			w := c.Welcome
			if w.Recovered == nil || !*w.Recovered || w.Epoch != b.epoch || w.Seq != b.seqs[2] {
				t.Fatalf("round %d, client %d on %s: welcome %s; want recovered at %s:%d", round, i, w.Instance, w.Raw, b.epoch, b.seqs[2])
			}
			awaitSeq(t, c, b.seqs[2])
			var got []string
			for _, f := range storedMessages(c) {
				got = append(got, string(f.Data))
			}
			if want := strings.Join(b.data[1:], ","); strings.Join(got, ",") != want {
				t.Fatalf("round %d, client %d resumed with %v, want %s", round, i, got, want)
			}
			c.Close()
		}
		for _, id := range ids {
			p.Await(wait, id+" synced", synced(id))
			if c := p.Content(id); c.Text != text {
				t.Fatalf("round %d: provider %s has %q, want %q", round, id, c.Text, text)
			}
			p.Do("destroy", id, nil)
		}
		if n, m := loads("stream")-streams, loads("doc")-docs; n != 1 || m != 1 {
			t.Fatalf("round %d: the stream loaded %v times, the document %v times; want once each", round, n, m)
		}
		for i, inst := range s {
			checkHistory(t, inst, b)
			if g := getState(t, inst, "room"); g.Epoch != b.epoch || g.Seq != b.seqs[2] || g.State == nil {
				t.Fatalf("round %d, instance %d: state %s", round, i, g.raw)
			}
			if d := getDoc(t, inst, "room"); d.Text != text {
				t.Fatalf("round %d, instance %d: GET doc %q, want %q", round, i, d.Text, text)
			}
		}
	}
}

// The same on a Redis Cluster: the dirty indexes are per partition, and a
// room every master lost comes back from the store in its epoch.
func TestWriteBehindOnARedisCluster(t *testing.T) {
	yjs.Ensure(t)
	c, s := redisCluster(t, 2, writeBehindEnv(t, nil))
	cc := c.Client(t)
	p := yjs.StartPeers(t)
	b := writeBoard(t, s[0], "board")
	text := writeDoc(t, p, s, "doc")
	awaitSaved(t, cc, s)
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBoard(t, s[1], b)
	checkDoc(t, p, s[1], "doc", "doc-fresh", text)
}

// A deleted room is deleted from the store too: a Redis that loses the
// new epoch does not load the old room back.
func TestWriteBehindDeleteForgetsTheRoom(t *testing.T) {
	r, s := cluster(t, 2, writeBehindEnv(t, nil))
	rc := r.Client(t)
	b := writeBoard(t, s[0], "gone")
	awaitSaved(t, rc, s)
	if st, body := httpCall(t, http.MethodDelete, s[0].URL+"/api/rooms/gone", testserver.APIKey, ""); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	awaitSaved(t, rc, s)
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	after := getMessages(t, s[1], "gone", "")
	if len(after.Messages) != 0 || after.Seq != 0 || after.Epoch == b.epoch {
		t.Fatalf("after DELETE and a flush: %+v (before: epoch %s)", after, b.epoch)
	}
	if st, body := httpCall(t, http.MethodGet, s[1].URL+"/api/rooms/gone/state", testserver.APIKey, ""); st != http.StatusOK || !strings.Contains(string(body), `"state":null`) {
		t.Fatalf("after DELETE and a flush the state: %d %s", st, body)
	}
}
