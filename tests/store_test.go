package tests

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/rooms/store/storetest"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// storeKinds are the stores a single instance runs on: each test of this
// file runs its scenario on both, each time on a new file or database.
var storeKinds = []struct {
	name string
	url  func(t *testing.T) string // ROOMCAST_STORE
}{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "data", "roomcast.db") }},
	{"postgres", postgresStore},
}

// postgresStore is ROOMCAST_STORE for a fresh PostgreSQL database, dropped
// when t ends.
func postgresStore(t *testing.T) string { return storetest.PostgresDB(t, "roomcast_e2e") }

// TestStoreKeepsEverythingAcrossKill9: one instance on its store (SQLite,
// or PostgreSQL without Redis). Acked stored messages, a state and Yjs
// updates another provider received, then kill -9 at once and a restart
// on the same store: the same epoch and seq, a resume is recovered, and
// the board and the document are whole.
func TestStoreKeepsEverythingAcrossKill9(t *testing.T) {
	t.Parallel()
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			keepsEverythingAcrossKill9(t, map[string]string{"ROOMCAST_STORE": k.url(t)})
		})
	}
}

func keepsEverythingAcrossKill9(t *testing.T, env map[string]string) {
	s := testserver.Start(t, testserver.Options{Env: env})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "notes", "alice")
	connectSynced(t, p, "b", yjsURL(s), "notes", "bob")

	c := testserver.JoinSince(t, s.WS, "board", "alice", "Alice", "start", nil)
	welcome := c.Welcome
	const n = 40
	for i := 1; i <= n; i++ {
		c.Send(t, map[string]any{"type": "publish", "ref": fmt.Sprint("m", i), "data": map[string]any{"stroke": i}})
	}
	var last testserver.Frame
	for i := 1; i <= n; i++ {
		ref := fmt.Sprint("m", i)
		last = c.Await(t, wait, "ack "+ref, func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == ref })
	}
	if last.Seq != n {
		t.Fatalf("last ack %s", last.Raw)
	}
	if a := sendState(t, c, 30, map[string]any{"strokes": 30}); a.Type != "ack" {
		t.Fatalf("state: %s", a.Raw)
	}
	for i := 0; i < 10; i++ {
		p.Do("insert", "a", map[string]any{"text": fmt.Sprintf("line %d. ", i)})
	}
	p.Do("set", "b", map[string]any{"key": "title", "value": "kept"})
	got := converged(t, p, wait, "a", "b")

	s.Kill() // SIGKILL: nothing is flushed on the way out
	c.Close()
	p.Do("destroy", "a", nil)
	p.Do("destroy", "b", nil)
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})

	// The same epoch and seq: a resume from seq 20 is recovered, with
	// every message after it.
	r := testserver.JoinSince(t, s.WS, "board", "alice", "Alice", fmt.Sprintf("%s:%d", welcome.Epoch, 20), nil)
	w := r.Welcome
	if w.Epoch != welcome.Epoch || w.Seq != n || w.Recovered == nil || !*w.Recovered {
		t.Fatalf("welcome after the restart: %s (epoch before %s)", w.Raw, welcome.Epoch)
	}
	for i := 21; i <= n; i++ {
		m := r.AwaitType(t, "message", wait)
		if m.Seq != uint64(i) || !strings.Contains(string(m.Data), fmt.Sprintf(`"stroke":%d`, i)) {
			t.Fatalf("message %d after the restart: %s", i, m.Raw)
		}
	}
	// A board opened from the start gets the state and what follows it.
	b := testserver.JoinSince(t, s.WS, "board", "bob", "Bob", "start", nil)
	bw := b.Welcome
	if bw.State == nil || bw.State.Seq != 30 || !sameJSON(bw.State.Data, `{"strokes":30}`) {
		t.Fatalf("state after the restart: %s", bw.Raw)
	}
	for i := 31; i <= n; i++ {
		if m := b.AwaitType(t, "message", wait); m.Seq != uint64(i) {
			t.Fatalf("after the state: %s", m.Raw)
		}
	}
	page := getMessages(t, s, "board", "since=0&limit=1000")
	if page.Epoch != welcome.Epoch || page.Seq != n || len(page.Messages) != n {
		t.Fatalf("history after the restart: epoch %s seq %d, %d messages", page.Epoch, page.Seq, len(page.Messages))
	}
	// The document is whole.
	connectSynced(t, p, "c", yjsURL(s), "notes", "carol")
	if cc := p.Content("c"); cc.Text != got.Text || cc.Map["title"] != "kept" {
		t.Fatalf("document after the restart: %q %v, want %q", cc.Text, cc.Map, got.Text)
	}
	// And a new stored message goes on from the same position.
	b.Send(t, map[string]any{"type": "publish", "ref": "next", "data": "after"})
	if a := b.Await(t, wait, "ack next", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "next" }); a.Seq != n+1 {
		t.Fatalf("first publish after the restart: %s", a.Raw)
	}
}

// TestStoreDeleteForgetsTheRoom: DELETE removes the room from the store
// too: after a restart it has neither history nor state, and its new
// epoch is not the old one.
func TestStoreDeleteForgetsTheRoom(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "roomcast.db")}
	s := testserver.Start(t, testserver.Options{Env: env})
	c := testserver.Join(t, s.WS, "gone", "alice", "")
	c.Send(t, map[string]any{"type": "publish", "ref": "p", "data": 1})
	ack := c.Await(t, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "p" })
	before := getMessages(t, s, "gone", "")
	if st, body := httpCall(t, http.MethodDelete, s.URL+"/api/rooms/gone", testserver.APIKey, ""); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	c.Close()
	s.Kill()
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
	after := getMessages(t, s, "gone", "")
	if len(after.Messages) != 0 || after.Seq != 0 || (after.Epoch != "" && after.Epoch == before.Epoch) || ack.Seq != 1 {
		t.Fatalf("after DELETE and a restart: %+v (before: epoch %s)", after, before.Epoch)
	}
}
