package tests

import (
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
