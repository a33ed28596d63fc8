package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/store/storetest"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// TestPostgresOutageLosesNothing: one instance on PostgreSQL, edits going
// on while the database is unreachable for a few seconds. Meanwhile
// /readyz answers 503 naming only the store, keyed publishes are refused
// with "unavailable" and none of them reaches anyone, and a Yjs update
// that could not be stored closes its socket with 1011. Once the database
// is back: every publish re-sent with its key is acked once, the room's
// stream has no gap and no duplicate, the provider's edit lands, and all
// of it is in the store (a kill -9 and a restart show it).
func TestPostgresOutageLosesNothing(t *testing.T) {
	t.Parallel()
	dbURL := postgresStore(t)
	env := map[string]string{"ROOMCAST_STORE": dbURL}
	s := testserver.Start(t, testserver.Options{Env: env})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "notes", "alice")
	connectSynced(t, p, "b", yjsURL(s), "notes", "bob")
	p.Do("insert", "a", map[string]any{"text": "before. "})
	converged(t, p, wait, "a", "b")

	f := follow(t, s, "board", "watcher")
	pub := startKeyedPublisher(testserver.Join(t, s.WS, "board", "writer", ""), "k", 60, 100*time.Millisecond)
	pub.awaitAcked(t, 10)

	restore := storetest.Outage(t, dbURL)
	down := time.Now()
	awaitStoreNotReady(t, s, dbURL)
	// An edit made while the database is away: its update cannot be
	// stored, so its socket closes with 1011 and the provider sends it
	// again on every reconnect.
	mark := p.Mark()
	p.Do("insert", "a", map[string]any{"text": "during the outage. "})
	p.AwaitAfter(mark, 10*time.Second, "a's socket closed with 1011", func(e yjs.Event) bool {
		return e.Ev == "close" && e.ID == "a" && e.Code == 1011
	})
	refusedBefore := pub.refusedCount()
	eventually(t, 10*time.Second, "a keyed publish refused while the store is down", func() error {
		if pub.refusedCount() == refusedBefore {
			return fmt.Errorf("%d refusals", refusedBefore)
		}
		return nil
	})
	if d := time.Since(down); d < 3*time.Second {
		time.Sleep(3*time.Second - d)
	}
	ackedDown := pub.ackedCount()
	restore()
	up := time.Now()
	s.WaitReady(t, 10*time.Second)
	t.Logf("PostgreSQL away for %v; /readyz 200 again %v after it came back", up.Sub(down).Round(100*time.Millisecond), time.Since(up).Round(100*time.Millisecond))

	acked := pub.wait(t)
	for seq := uint64(1); seq <= uint64(len(acked)); seq++ {
		if acked[seq] == "" {
			t.Fatalf("acked seqs have a gap at %d", seq)
		}
	}
	awaitAll(t, 20*time.Second, []*follower{f}, acked)
	got := converged(t, p, 20*time.Second, "a", "b")
	if !strings.Contains(got.Text, "during the outage. ") {
		t.Fatalf("the edit made during the outage is lost: %q", got.Text)
	}
	t.Logf("%d publishes refused or unanswered while the store was down (%d acked before it came back); a closed %v", pub.refusedCount(), ackedDown, closesOf(p, "a"))

	// All of it is in the store, not only in memory.
	s.Kill()
	p.Do("destroy", "a", nil)
	p.Do("destroy", "b", nil)
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
	page := getMessages(t, s, "board", "since=0&limit=1000")
	frames := page.frames(t)
	if page.Seq != uint64(len(acked)) || len(frames) != len(acked) {
		t.Fatalf("after a restart: seq %d, %d messages; %d were acked", page.Seq, len(frames), len(acked))
	}
	for _, m := range frames {
		if acked[m.Seq] != m.ID {
			t.Fatalf("stored seq %d is message %s, the ack said %s", m.Seq, m.ID, acked[m.Seq])
		}
	}
	connectSynced(t, p, "c", yjsURL(s), "notes", "carol")
	if c := p.Content("c"); c.Text != got.Text {
		t.Fatalf("document after a restart: %q, want %q", c.Text, got.Text)
	}
}

// awaitStoreNotReady waits until s's /readyz answers 503 naming the
// store, and nothing more about it.
func awaitStoreNotReady(t *testing.T, s *testserver.Server, dbURL string) {
	t.Helper()
	eventually(t, 5*time.Second, "/readyz 503 with the store down", func() error {
		st, body := httpCall(t, http.MethodGet, s.URL+"/readyz", "", "")
		if st != http.StatusServiceUnavailable {
			return fmt.Errorf("HTTP %d %s", st, body)
		}
		assertErrorBody(t, body, "not_ready")
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		low := strings.ToLower(e.Error.Message)
		if !strings.Contains(low, "store") || strings.Contains(low, storetest.DBName(dbURL)) ||
			strings.Contains(low, "127.0.0.1") || strings.Contains(low, "sqlstate") || strings.Contains(low, "connect") {
			t.Fatalf("/readyz body says more than the part: %s", body)
		}
		return nil
	})
}

// TestWriteBehindPostgresOutageLosesNothing: two instances on Redis with
// PostgreSQL written behind them, edits going on while PostgreSQL is
// unreachable for a few seconds. Redis is the hot path: publishes are
// acked and edits relayed all along, while /readyz answers 503 naming the
// store on both instances and the saves fail. Once PostgreSQL is back
// /readyz answers 200 and every room is saved: a Redis flush then shows
// the store has all of it, every acked message once, the state, and the
// document with the edits made during the outage.
func TestWriteBehindPostgresOutageLosesNothing(t *testing.T) {
	yjs.Ensure(t)
	t.Parallel()
	env := writeBehindEnv(t, nil)
	dbURL := env["ROOMCAST_STORE"]
	r, s := cluster(t, 2, env)
	rc := r.Client(t)
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "notes", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "notes", "bob")
	p.Do("insert", "a", map[string]any{"text": "before. "})
	converged(t, p, wait, "a", "b")
	f := follow(t, s[1], "board", "watcher")
	pub := startKeyedPublisher(testserver.Join(t, s[0].WS, "board", "writer", ""), "k", 60, 100*time.Millisecond)
	pub.awaitAcked(t, 10)
	// A room already in Redis goes on while the store is away (a room
	// Redis does not hold cannot be loaded then: its join is refused).
	kept, kc := writeBoardStaying(t, s[1], "stateboard")
	awaitSaved(t, rc, s)
	saveErrors := func() float64 {
		n := 0.0
		for _, inst := range s {
			n += max(metric(t, inst, `roomcast_store_saves_total{outcome="error"}`), 0)
		}
		return n
	}
	if n := saveErrors(); n != 0 {
		t.Fatalf("%v failed saves before the outage", n)
	}

	ackedUp := pub.ackedCount()
	restore := storetest.Outage(t, dbURL)
	down := time.Now()
	for _, inst := range s {
		awaitStoreNotReady(t, inst, dbURL)
	}
	// Edits while the store is away: Redis takes them, the saves of them
	// fail and are retried.
	p.Do("insert", "a", map[string]any{"text": "during the outage on A. "})
	p.Do("insert", "b", map[string]any{"text": "during the outage on B. "})
	text := converged(t, p, wait, "a", "b").Text
	more := publishAcked(t, kc, map[string]any{"data": "during"})
	if a := sendState(t, kc, more.Seq, map[string]any{"shapes": 4}); a.Type != "ack" {
		t.Fatalf("state refused while the store is down: %s", a.Raw)
	}
	kc.Close()
	kept.seqs, kept.data, kept.state = append(kept.seqs, more.Seq), append(kept.data, `"during"`), `{"shapes":4}`
	// Everyone leaves the document: its save on the last leave fails too.
	p.Do("destroy", "a", nil)
	p.Do("destroy", "b", nil)
	eventually(t, 20*time.Second, "saves failing for 3 s", func() error {
		if n := saveErrors(); n < 2 || time.Since(down) < 3*time.Second {
			return fmt.Errorf("%v failed saves %v after the store went", n, time.Since(down).Round(100*time.Millisecond))
		}
		return nil
	})
	for _, inst := range s {
		if st, body := httpCall(t, http.MethodGet, inst.URL+"/readyz", "", ""); st != http.StatusServiceUnavailable {
			t.Fatalf("/readyz of %s with the store still down: %d %s", inst.Addr, st, body)
		}
	}
	ackedDown := pub.ackedCount() - ackedUp
	restore()
	up := time.Now()
	for _, inst := range s {
		inst.WaitReady(t, 10*time.Second)
	}
	t.Logf("PostgreSQL away for %v (%v failed saves, %d messages acked meanwhile); /readyz 200 again %v after it came back",
		up.Sub(down).Round(100*time.Millisecond), saveErrors(), ackedDown, time.Since(up).Round(100*time.Millisecond))
	acked := pub.wait(t)
	awaitAll(t, 20*time.Second, []*follower{f}, acked)
	awaitSaved(t, rc, s)
	t.Logf("every room saved %v after PostgreSQL came back", time.Since(up).Round(100*time.Millisecond))

	// Redis loses everything: the store has it all.
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, inst := range s {
		page := getMessages(t, inst, "board", "since=0&limit=1000")
		frames := page.frames(t)
		if page.Epoch != f.epoch || page.Seq != uint64(len(acked)) || len(frames) != len(acked) {
			t.Fatalf("from the store on %s: %s:%d with %d messages; %d were acked in %s", inst.Addr, page.Epoch, page.Seq, len(frames), len(acked), f.epoch)
		}
		for _, m := range frames {
			if acked[m.Seq] != m.ID {
				t.Fatalf("stored seq %d is message %s, the ack said %s", m.Seq, m.ID, acked[m.Seq])
			}
		}
	}
	checkBoard(t, s[0], kept)
	checkHistory(t, s[1], kept)
	checkDoc(t, p, s[0], "notes", "c", text)
}

// closesOf lists the close codes provider id saw.
func closesOf(p *yjs.Peers, id string) []int {
	var out []int
	for _, e := range p.Events() {
		if e.Ev == "close" && e.ID == id {
			out = append(out, e.Code)
		}
	}
	return out
}
