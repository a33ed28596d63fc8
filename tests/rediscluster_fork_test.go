package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/testserver"
)

// syncer keeps a room as the SDK does: it applies stored messages by seq,
// reconnects with its position when closed with 4010, and replaces what it
// holds when the resume is not recovered. It fails when one connection
// gives it two different messages under one seq: a stream that diverged
// without telling it.
type syncer struct {
	name  string
	inst  *testserver.Server
	room  string
	token string

	epoch  string
	held   map[uint64]string // seq -> data, of epoch
	cur    *testserver.Client
	read   int   // frames of cur applied
	closes []int // close codes of its connections
	resets int   // resumes not recovered: it replaced what it held
}

func newSyncer(t *testing.T, inst *testserver.Server, room, user string) *syncer {
	t.Helper()
	s := &syncer{name: user, inst: inst, room: room, token: testserver.Token(t, user, user, 0, nil)}
	t.Cleanup(func() {
		if s.cur != nil {
			s.cur.Close()
		}
	})
	if err := s.sync(); err != nil || s.cur == nil {
		t.Fatalf("%s: join: %v", user, err)
	}
	return s
}

// sync applies what the connection delivered and reconnects a closed one;
// a join refused (the cluster still fails over) is tried again next call.
func (s *syncer) sync() error {
	if s.cur != nil {
		if err := s.apply(); err != nil {
			return err
		}
		closed, code := s.cur.CloseCode()
		if !closed {
			return nil
		}
		s.closes = append(s.closes, code)
		s.cur = nil
		if code != 4010 {
			return fmt.Errorf("%s: closed with %d, not 4010", s.name, code)
		}
	}
	since := "start"
	if s.epoch != "" {
		var last uint64
		for seq := range s.held {
			last = max(last, seq)
		}
		since = fmt.Sprintf("%s:%d", s.epoch, last)
	}
	c, err := testserver.TryJoinURL(testserver.SinceURL(s.inst.WS, s.room, s.token, since, nil), nil)
	if err != nil {
		return nil
	}
	w := c.Welcome
	if w.Recovered == nil || !*w.Recovered {
		if s.epoch != "" {
			s.resets++
		}
		s.held = map[uint64]string{}
		if w.State != nil {
			return fmt.Errorf("%s: a state in the welcome, none was sent: %s", s.name, w.Raw)
		}
	}
	s.epoch, s.cur, s.read = w.Epoch, c, 0
	return s.apply()
}

func (s *syncer) apply() error {
	frames := s.cur.Frames()
	for _, f := range frames[s.read:] {
		if f.Type != "message" || f.Seq == 0 {
			continue
		}
		if d, ok := s.held[f.Seq]; ok && d != string(f.Data) {
			return fmt.Errorf("%s: seq %d of epoch %s delivered as %s and then as %s without a resync", s.name, f.Seq, s.epoch, d, f.Data)
		}
		s.held[f.Seq] = string(f.Data)
	}
	s.read = len(frames)
	return nil
}

// holds reports how what s holds differs from the room's history.
func (s *syncer) holds(page messagesPage) error {
	if s.cur == nil {
		return fmt.Errorf("%s: not connected", s.name)
	}
	if s.epoch != page.Epoch {
		return fmt.Errorf("%s: in epoch %s, the room in %s", s.name, s.epoch, page.Epoch)
	}
	want := map[uint64]string{}
	for _, m := range page.Messages {
		var f testserver.Frame
		if err := json.Unmarshal(m, &f); err != nil {
			return err
		}
		want[f.Seq] = string(f.Data)
	}
	if fmt.Sprint(s.held) != fmt.Sprint(want) {
		return fmt.Errorf("%s holds %v, the room %v", s.name, s.held, want)
	}
	return nil
}

// A master dies after subscribers saw seq 4 live but before its replica
// got it; the replica takes over without it and gives seq 4 to the next
// message, published through the other instance. Every instance that
// delivered the lost message moves the room to a new epoch that keeps
// the promoted replica's history: the clients that saw the lost message
// are closed with 4010 and, like every other client, end on the new epoch
// holding exactly what the room holds. No one keeps the lost message as
// seq 4 while others hold the new one.
func TestRedisClusterFailoverLosingDeliveredMessages(t *testing.T) {
	t.Parallel()
	c, s := redisCluster(t, 2, nil)
	a, b := s[0], s[1]
	const room = "forked"
	ctx := context.Background()
	master := c.MasterOfSlot(t, wire.Slot(clusterLayout.Room(room).Channel))
	replica := c.ReplicaOf(t, master)

	alice := newSyncer(t, a, room, "alice") // sees the lost message on A
	bob := newSyncer(t, b, room, "bob")     // sees it on B
	pub := testserver.Join(t, a.WS, room, "pub", "Pub")
	old := pub.Welcome.Epoch
	for i := 1; i <= 3; i++ {
		publishAcked(t, pub, map[string]any{"data": fmt.Sprint("kept-", i)})
	}
	replicaHas := func(n int64) error {
		var xlen *redis.IntCmd
		if _, err := replica.Client(t).Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ReadOnly(ctx) // a replica answers reads on this connection
			xlen = p.XLen(ctx, clusterLayout.Room(room).Stream)
			return nil
		}); err != nil {
			return err
		}
		if xlen.Val() != n {
			return fmt.Errorf("the replica holds %d messages, want %d", xlen.Val(), n)
		}
		return nil
	}
	eventually(t, wait, "the replica has the first three", func() error { return replicaHas(3) })

	// Seq 4 reaches the subscribers but not the replica: it is stopped,
	// and its link is cut first (what the master sent before would
	// still be in its socket). The publish is acknowledged once its WAIT
	// for a replica times out.
	replica.Pause(t)
	if n, err := master.Client(t).ClientKillByFilter(ctx, "TYPE", "replica").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE replica: %d killed, %v", n, err)
	}
	lost := publishAcked(t, pub, map[string]any{"data": "lost-4"})
	if lost.Seq != 4 {
		t.Fatalf("the message the failover loses has seq %d, want 4", lost.Seq)
	}
	for _, sy := range []*syncer{alice, bob} {
		eventually(t, wait, sy.name+" sees seq 4 live", func() error {
			if err := sy.sync(); err != nil {
				t.Fatal(err)
			}
			if sy.held[4] != `"lost-4"` {
				return fmt.Errorf("holds %v", sy.held)
			}
			return nil
		})
	}
	master.Kill()
	replica.Resume(t)
	if err := replica.Client(t).Do(ctx, "CLUSTER", "FAILOVER", "TAKEOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER TAKEOVER: %v", err)
	}
	slot := wire.Slot(clusterLayout.Room(room).Channel)
	eventually(t, 20*time.Second, "the replica promoted", func() error {
		if m := c.MasterOfSlot(t, slot); m == nil || m.Addr() != replica.Addr() {
			return fmt.Errorf("slot %d not served by the replica yet", slot)
		}
		return nil
	})
	if err := replicaHas(3); err != nil {
		t.Fatalf("the promoted replica: %v (it was to lose seq 4)", err)
	}
	for _, inst := range s {
		awaitReadyz(t, inst, 200, 20*time.Second)
	}

	// The next messages go through B (its HTTP API, with keys, sent
	// again until accepted while the cluster settles); the promoted
	// replica gives seq 4 to the first, unless the room moved to its new
	// epoch before.
	var sent []string
	for i := 4; i <= 6; i++ {
		data := fmt.Sprint("new-", i)
		body := fmt.Sprintf(`{"data":%q,"key":"k%d"}`, data, i)
		eventually(t, wait, "publish "+data+" through B", func() error {
			status, resp := httpCall(t, http.MethodPost, b.URL+"/api/rooms/"+room+"/messages", testserver.APIKey, body)
			if status != http.StatusAccepted {
				return fmt.Errorf("HTTP %d %s", status, resp)
			}
			return nil
		})
		sent = append(sent, strconv.Quote(data))
	}

	var page messagesPage
	eventually(t, 30*time.Second, "every client on the room's new epoch, holding what it holds", func() error {
		page = getMessages(t, a, room, "")
		if page.Epoch == old {
			return fmt.Errorf("the room is still in epoch %s", old)
		}
		for _, sy := range []*syncer{alice, bob} {
			if err := sy.sync(); err != nil {
				t.Fatal(err)
			}
			if err := sy.holds(page); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	for _, f := range page.frames(t) {
		got = append(got, string(f.Data))
	}
	want := `"kept-1","kept-2","kept-3",` + strings.Join(sent, ",")
	if strings.Join(got, ",") != want {
		t.Fatalf("the room holds %v, want %s", got, want)
	}
	for _, sy := range []*syncer{alice, bob} {
		if len(sy.closes) == 0 || sy.closes[len(sy.closes)-1] != 4010 {
			t.Fatalf("%s, who saw the lost seq 4, was closed with %v, want 4010", sy.name, sy.closes)
		}
		t.Logf("%s: closes %v, %d resyncs", sy.name, sy.closes, sy.resets)
	}
	// An instance that delivered the lost message found the fork (the
	// other may have learnt the new epoch from it first), and said so.
	if !strings.Contains(a.Output()+b.Output(), "room stream forked") {
		t.Error("no instance logged the fork")
	}
	if n := metric(t, a, "roomcast_stream_forks_total") + metric(t, b, "roomcast_stream_forks_total"); n < 1 {
		t.Errorf("roomcast_stream_forks_total is %v on both instances", n)
	}
	auditCommands(t, c, "MOVED", "CLUSTERDOWN", "READONLY", "TRYAGAIN")
}
