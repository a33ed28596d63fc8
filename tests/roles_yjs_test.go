package tests

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// TestYjsReadOnlyProviderEditsGoNowhere: a y-websocket provider whose token
// only reads the room edits its own copy. No other provider, no late
// joiner and no restart ever sees the edit, while its awareness reaches
// everyone and it still receives the writers' edits. One instance on its
// SQLite store, killed and restarted on the same file.
func TestYjsReadOnlyProviderEditsGoNowhere(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "data", "roomcast.db")}
	s := testserver.Start(t, testserver.Options{Env: env})
	p := yjs.StartPeers(t)
	const room = "viewed"
	connectSynced(t, p, "w", yjsURL(s), room, "wanda")
	p.Connect("r", yjsURL(s), room, roleToken(t, "rhea", nil, []string{room}), nil)
	p.Await(wait, "reader synced", synced("r"))

	p.Do("insert", "w", map[string]any{"text": "written. "})
	converged(t, p, wait, "w", "r")

	// The reader types, then changes its awareness: the server reads the
	// socket's frames in order, so once the writer sees the awareness,
	// the reader's update was read (and dropped) before it.
	p.Do("insert", "r", map[string]any{"text": "READER EDIT. "})
	p.Do("set", "r", map[string]any{"key": "reader", "value": true})
	mark := p.Mark()
	p.Do("awareness", "r", map[string]any{"state": map[string]any{"user": map[string]any{"name": "Rhea"}, "after": "edit"}})
	p.AwaitAfter(mark, wait, "the reader's awareness at the writer", func(e yjs.Event) bool {
		if e.Ev != "awareness" || e.ID != "w" {
			return false
		}
		for _, st := range e.States {
			if m, ok := st.(map[string]any); ok && m["after"] == "edit" {
				return true
			}
		}
		return false
	})
	// The writer goes on; the reader still receives.
	p.Do("insert", "w", map[string]any{"pos": 0, "text": "more. "})
	p.Eventually(wait, "the writer's edit at the reader", func() (bool, string) {
		c := p.Content("r")
		return strings.Contains(c.Text, "more. "), c.Text
	})
	noReaderEdit := func(who string, c yjs.Content) {
		t.Helper()
		if strings.Contains(c.Text, "READER") || c.Map["reader"] != nil {
			t.Fatalf("%s sees the read-only provider's edit: %q %v", who, c.Text, c.Map)
		}
		if !strings.Contains(c.Text, "written. ") || !strings.Contains(c.Text, "more. ") {
			t.Fatalf("%s lacks the writer's edits: %q", who, c.Text)
		}
	}
	noReaderEdit("the writer", p.Content("w"))
	connectSynced(t, p, "late", yjsURL(s), room, "lena")
	noReaderEdit("a late joiner", p.Content("late"))

	// Over HTTP too, and after a restart on the same store.
	s.Kill()
	for _, id := range []string{"w", "r", "late"} {
		p.Do("destroy", id, nil)
	}
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
	connectSynced(t, p, "after", yjsURL(s), room, "otto")
	noReaderEdit("a provider after the restart", p.Content("after"))
}
