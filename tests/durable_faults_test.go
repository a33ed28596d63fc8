package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// A history that is gone starts a new epoch, and a position of the old
// one is never taken as resumed: a restarted memory instance, a Redis
// restarted without persistence, a flushed Redis.
func TestEpochAfterRestart(t *testing.T) {
	t.Parallel()
	// oldPosition publishes one stored message and returns the position
	// after it.
	oldPosition := func(t *testing.T, c *testserver.Client) (epoch, pos string) {
		ack := publishAcked(t, c, map[string]any{"data": "old", "echo": true})
		holdsSeq(t, c, ack.Seq)
		return c.Welcome.Epoch, fmt.Sprintf("%s:%d", c.Welcome.Epoch, ack.Seq)
	}
	// notRecovered resumes at pos on inst and checks the welcome names a
	// fresh epoch at seq 0, with nothing replayed: the next stored
	// message is seq 1.
	notRecovered := func(t *testing.T, inst *testserver.Server, room, oldEpoch, pos string) *testserver.Client {
		t.Helper()
		c := testserver.JoinSince(t, inst.WS, room, "back", "Back", pos, nil)
		if w := c.Welcome; w.Recovered == nil || *w.Recovered || w.Epoch == "" || w.Epoch == oldEpoch || w.Seq != 0 || w.State != nil {
			t.Fatalf("resume at %s after the history went: %s; want recovered false in a new epoch at seq 0", pos, w.Raw)
		}
		ack := publishAcked(t, c, map[string]any{"data": "new", "echo": true})
		holdsSeq(t, c, 1)
		if got := storedMessages(c); len(got) != 1 || ack.Seq != 1 || string(got[0].Data) != `"new"` {
			t.Fatalf("stored messages after the failed resume: %v (ack %s); want only the new epoch's seq 1", seqsOf(got), ack.Raw)
		}
		return c
	}

	t.Run("memory restart", func(t *testing.T) {
		t.Parallel()
		s := testserver.Start(t, testserver.Options{})
		c := testserver.Join(t, s.WS, "epoch", "u", "U")
		oldEpoch, pos := oldPosition(t, c)
		if err, _ := s.Stop(10 * time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		s = testserver.Start(t, testserver.Options{Addr: s.Addr})
		if p := getMessages(t, s, "epoch", ""); p.Epoch == oldEpoch || p.Seq != 0 || len(p.Messages) != 0 {
			t.Fatalf("history after the restart: epoch %s seq %d, %d messages", p.Epoch, p.Seq, len(p.Messages))
		}
		notRecovered(t, s, "epoch", oldEpoch, pos)
	})

	t.Run("redis restart", func(t *testing.T) {
		t.Parallel()
		r, s := cluster(t, 2, nil)
		c := testserver.Join(t, s[0].WS, "epoch", "u", "U")
		watcher := testserver.Join(t, s[1].WS, "epoch", "w", "W")
		oldEpoch, pos := oldPosition(t, c)
		r.Stop()
		for _, inst := range s {
			awaitReadyz(t, inst, 503, 10*time.Second)
		}
		r.Restart(t)
		for _, inst := range s {
			awaitReadyz(t, inst, 200, 10*time.Second)
		}
		for _, cl := range []*testserver.Client{c, watcher} {
			if code := cl.WaitClose(t, 10*time.Second); code != 4010 {
				t.Fatalf("a client of the lost history closed with %d, want 4010", code)
			}
		}
		for i, inst := range s {
			if p := getMessages(t, inst, "epoch", ""); p.Epoch == oldEpoch || p.Seq != 0 || len(p.Messages) != 0 {
				t.Fatalf("history on instance %d after the restart: epoch %s seq %d, %d messages", i, p.Epoch, p.Seq, len(p.Messages))
			}
		}
		back := notRecovered(t, s[1], "epoch", oldEpoch, pos)
		// A live join on the other instance is in the new epoch too.
		live := testserver.Join(t, s[0].WS, "epoch", "live", "Live")
		if live.Welcome.Epoch != back.Welcome.Epoch || live.Welcome.Seq != 1 {
			t.Fatalf("live join after the restart: %s; want %s:1", live.Welcome.Raw, back.Welcome.Epoch)
		}
	})

	t.Run("redis flush", func(t *testing.T) {
		t.Parallel()
		r, s := cluster(t, 2, nil)
		c := testserver.Join(t, s[0].WS, "epoch", "u", "U")
		watcher := testserver.Join(t, s[1].WS, "epoch", "w", "W")
		oldEpoch, pos := oldPosition(t, c)
		awaitSeq(t, watcher, 1)
		if err := r.Client(t).FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		// The pub/sub connections survive a flush: the instances learn of
		// the new epoch from its first message, and close the clients of
		// the old one so they resync.
		status, body := httpCall(t, "POST", s[1].URL+"/api/rooms/epoch/messages", testserver.APIKey, `{"data":"after the flush"}`)
		if status != 202 {
			t.Fatalf("POST after the flush: HTTP %d %s", status, body)
		}
		for _, cl := range []*testserver.Client{c, watcher} {
			if code := cl.WaitClose(t, 10*time.Second); code != 4010 {
				t.Fatalf("a client of the flushed history closed with %d, want 4010", code)
			}
			for _, f := range storedMessages(cl) {
				if f.Seq > 1 || string(f.Data) != `"old"` {
					t.Fatalf("a client of the old epoch got %s from the new one", f.Raw)
				}
			}
		}
		back := testserver.JoinSince(t, s[0].WS, "epoch", "back", "Back", pos, nil)
		if w := back.Welcome; w.Recovered == nil || *w.Recovered || w.Epoch == oldEpoch || w.Seq != 1 {
			t.Fatalf("resume at %s after the flush: %s; want recovered false in a new epoch at seq 1", pos, w.Raw)
		}
		if f := back.AwaitType(t, "message", wait); f.Seq != 1 || string(f.Data) != `"after the flush"` {
			t.Fatalf("after the failed resume: %s; want the new epoch's seq 1", f.Raw)
		}
	})
}

// CLIENT KILL TYPE pubsub cuts every instance's pub/sub connection while
// a publisher on A publishes stored messages steadily: no subscriber on A
// or B misses one or gets one twice. The server is expected to fill the
// gap from the history itself; a 4010 close and a resume that fills it
// would also keep the stream whole (logged when it happens).
func TestPubSubKilledNoGap(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, map[string]string{"ROOMCAST_RATE": "1000"})
	a, b := s[0], s[1]
	var fs []*follower
	for i, inst := range []*testserver.Server{a, a, b, b} {
		fs = append(fs, follow(t, inst, "kill", fmt.Sprint("sub-", i)))
	}
	pub := testserver.Join(t, a.WS, "kill", "pub", "Pub")
	p := startKeyedPublisher(pub, "kill", 150, 4*time.Millisecond)
	rc := r.Client(t)
	for _, at := range []int{30, 90} {
		p.awaitAcked(t, at)
		n, err := rc.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
		if err != nil || n < 2 {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d killed, %v; want both instances' connections", n, err)
		}
	}
	acked := p.wait(t)
	awaitAll(t, 15*time.Second, fs, acked)
	if gaps := metric(t, a, "roomcast_broker_gaps_total") + metric(t, b, "roomcast_broker_gaps_total"); gaps < 2 {
		t.Logf("broker gaps counted: %v (the kills may have been seen as fewer gaps)", gaps)
	}
}

// Redis freezes (SIGSTOP) for 3 s, later for 6 s, while a publisher on A publishes:
// publishes meanwhile may be refused with "unavailable", and the publisher
// sends them again with the same key, as the SDK does. Once Redis is back
// every subscriber on A and B has every acked message exactly once, in seq
// order, and none was stored twice.
func TestRedisStallNoLossNoDuplicate(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, map[string]string{
		"ROOMCAST_RATE":         "1000",
		"ROOMCAST_PRESENCE_TTL": "15s",
		"ROOMCAST_HEARTBEAT":    "1s",
	})
	a, b := s[0], s[1]
	var fs []*follower
	for i, inst := range []*testserver.Server{a, a, b, b} {
		fs = append(fs, follow(t, inst, "stall", fmt.Sprint("sub-", i)))
	}
	pub := testserver.Join(t, a.WS, "stall", "pub", "Pub")
	const n = 100
	p := startKeyedPublisher(pub, "stall", n, 10*time.Millisecond)
	// The stalls themselves are the fault: Redis answers nothing for 3 s
	// (publishes wait), then for 6 s, past the Redis client's 5 s read
	// timeout (publishes are refused though Redis may still run them).
	for _, st := range []struct {
		after int
		stall time.Duration
	}{{20, 3 * time.Second}, {50, 6 * time.Second}} {
		p.awaitAcked(t, st.after)
		r.Pause(t)
		time.Sleep(st.stall)
		r.Resume(t)
		t.Logf("redis resumed after %v; %d messages acked", st.stall, p.ackedCount())
	}
	acked := p.wait(t)
	p.mu.Lock()
	t.Logf("%d publishes refused or unanswered and sent again", p.refused)
	p.mu.Unlock()
	awaitAll(t, 20*time.Second, fs, acked)
	for _, inst := range s {
		page := getMessages(t, inst, "stall", "limit=1000")
		if len(page.Messages) != n || page.Seq != n {
			t.Fatalf("history on %s holds %d messages up to seq %d; want each of the %d keys stored once", inst.Addr, len(page.Messages), page.Seq, n)
		}
	}
}

// CLIENT KILL TYPE normal cuts the instances' command connections (the
// publisher's pipeline among them) while a publisher on A publishes: a
// publish cut off may be refused though Redis ran it, and the publisher
// sends it again with its key. Every subscriber ends with every acked
// message exactly once, in order, and none was stored twice.
func TestRedisCommandConnectionsKilled(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, map[string]string{"ROOMCAST_RATE": "1000"})
	a, b := s[0], s[1]
	var fs []*follower
	for i, inst := range []*testserver.Server{a, a, b, b} {
		fs = append(fs, follow(t, inst, "cmdkill", fmt.Sprint("sub-", i)))
	}
	pub := testserver.Join(t, a.WS, "cmdkill", "pub", "Pub")
	const n = 150
	p := startKeyedPublisher(pub, "cmdkill", n, 2*time.Millisecond)
	rc := r.Client(t)
	for _, at := range []int{20, 60, 100} {
		p.awaitAcked(t, at)
		if err := rc.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
			t.Fatalf("CLIENT KILL TYPE normal: %v", err)
		}
	}
	acked := p.wait(t)
	p.mu.Lock()
	t.Logf("%d publishes refused or unanswered and sent again", p.refused)
	p.mu.Unlock()
	awaitAll(t, 15*time.Second, fs, acked)
	for _, inst := range s {
		if page := getMessages(t, inst, "cmdkill", "limit=1000"); len(page.Messages) != n || page.Seq != n {
			t.Fatalf("history on %s holds %d messages up to seq %d; want each of the %d keys stored once", inst.Addr, len(page.Messages), page.Seq, n)
		}
	}
}
