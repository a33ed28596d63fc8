package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

type versionInfo struct {
	ID    int64   `json:"id"`
	At    int64   `json:"at"`
	Kind  string  `json:"kind"`
	Seq   *uint64 `json:"seq"`
	Bytes int64   `json:"bytes"`
}

// listVersions reads the room's versions with the API key.
func listVersions(t testing.TB, s *testserver.Server, room string) []versionInfo {
	t.Helper()
	st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/versions", testserver.APIKey, "")
	if st != http.StatusOK {
		t.Fatalf("GET versions of %s: %d %s", room, st, b)
	}
	var out struct {
		Room     string        `json:"room"`
		Versions []versionInfo `json:"versions"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Room != room || out.Versions == nil {
		t.Fatalf("versions of %s: %s (%v)", room, b, err)
	}
	for i, v := range out.Versions {
		// Newest first by the time a version was taken; two instances
		// may commit theirs in the other order, so ids may not follow.
		if i > 0 && (v.At > out.Versions[i-1].At || v.ID == out.Versions[i-1].ID) {
			t.Fatalf("versions not newest first: %s", b)
		}
		if v.Bytes <= 0 || (v.Kind == "doc") != (v.Seq == nil) || (v.Kind != "doc" && v.Kind != "state") {
			t.Fatalf("version %d: %+v in %s", i, v, b)
		}
	}
	return out.Versions
}

// versionDoc reads a document version and what it holds.
func versionDoc(t testing.TB, s *testserver.Server, room string, id int64) docContent {
	t.Helper()
	st, ct, b := binaryCall(t, http.MethodGet, fmt.Sprintf("%s/api/rooms/%s/versions/%d", s.URL, room, id), testserver.APIKey, nil)
	if st != http.StatusOK || ct != "application/octet-stream" {
		t.Fatalf("GET version %d of %s: %d %s %q", id, room, st, ct, b)
	}
	return readDoc(t, b)
}

func awaitVersions(t testing.TB, s *testserver.Server, room string, n int) []versionInfo {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		vs := listVersions(t, s, room)
		if len(vs) == n {
			return vs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d versions, want %d: %+v", room, len(vs), n, vs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVersionsPacedAndPruned: a document edited without pause for 3.5 s
// with VERSION_INTERVAL 1s gets a version at most once a second, only the
// newest VERSIONS (3) are kept, and the newest, taken after the last
// edit, is the document as it is.
func TestVersionsPacedAndPruned(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_VERSION_INTERVAL": "1s", "ROOMCAST_VERSIONS": "3"}})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "paced", "alice")
	start := time.Now()
	for i := 0; time.Since(start) < 3500*time.Millisecond; i++ {
		p.Do("insert", "a", map[string]any{"text": fmt.Sprintf("edit %d. ", i)})
		time.Sleep(50 * time.Millisecond)
	}
	held := p.Content("a")
	// The last edits are in the version at the end of their interval.
	time.Sleep(1500 * time.Millisecond)
	vs := listVersions(t, s, "paced")
	if len(vs) != 3 {
		t.Fatalf("%d versions, want the newest 3: %+v", len(vs), vs)
	}
	for i := 1; i < len(vs); i++ {
		if gap := vs[i-1].At - vs[i].At; gap < 990 {
			t.Fatalf("versions %d ms apart, VERSION_INTERVAL is 1s: %+v", gap, vs)
		}
	}
	// At least four were taken (one at the first edit, then one a second):
	// the first is gone.
	if oldest := vs[len(vs)-1].At; oldest < start.UnixMilli()+900 {
		t.Fatalf("the oldest version kept is from %d ms after the first edit: none was pruned", oldest-start.UnixMilli())
	}
	if got := versionDoc(t, s, "paced", vs[0].ID); got.Text != held.Text {
		t.Fatalf("newest version: %q, the document is %q", got.Text, held.Text)
	}
	if got := getDoc(t, s, "paced"); got.Text != held.Text {
		t.Fatalf("GET doc %q, provider %q", got.Text, held.Text)
	}
}

// TestVersionsOnLastLeave: with a long VERSION_INTERVAL, a room's first
// change gets a version, later ones none until the last member leaves;
// each version reads back as the document or state it was. A member
// leaving without changes adds none.
func TestVersionsOnLastLeave(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROOMCAST_VERSION_INTERVAL": "1h",
		"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "roomcast.db")}
	s := testserver.Start(t, testserver.Options{Env: env})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "leave", "alice")
	p.Do("insert", "a", map[string]any{"text": "first"})
	vs := awaitVersions(t, s, "leave", 1)
	if got := versionDoc(t, s, "leave", vs[0].ID); got.Text != "first" {
		t.Fatalf("first version: %q", got.Text)
	}
	p.Do("insert", "a", map[string]any{"text": " second"})
	p.Do("set", "a", map[string]any{"key": "k", "value": "v"})
	converged(t, p, wait, "a")
	time.Sleep(300 * time.Millisecond)
	if vs := listVersions(t, s, "leave"); len(vs) != 1 {
		t.Fatalf("a version within VERSION_INTERVAL: %+v", vs)
	}
	p.Do("destroy", "a", nil)
	vs = awaitVersions(t, s, "leave", 2)
	if got := versionDoc(t, s, "leave", vs[0].ID); got.Text != "first second" || got.Map["k"] != "v" {
		t.Fatalf("version on the last leave: %q %v", got.Text, got.Map)
	}
	if got := versionDoc(t, s, "leave", vs[1].ID); got.Text != "first" {
		t.Fatalf("the first version changed: %q", got.Text)
	}

	// A state version: its seq and data.
	c := testserver.JoinSince(t, s.WS, "board", "bob", "Bob", "start", nil)
	c.Send(t, map[string]any{"type": "publish", "ref": "m", "data": map[string]any{"stroke": 1}})
	c.Await(t, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "m" })
	if a := sendState(t, c, 1, map[string]any{"strokes": 1}); a.Type != "ack" {
		t.Fatalf("state: %s", a.Raw)
	}
	bv := awaitVersions(t, s, "board", 1)
	if bv[0].Kind != "state" || *bv[0].Seq != 1 {
		t.Fatalf("state version: %+v", bv[0])
	}
	st, b := httpCall(t, http.MethodGet, fmt.Sprintf("%s/api/rooms/board/versions/%d", s.URL, bv[0].ID), testserver.APIKey, "")
	var sv struct {
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &sv) != nil || sv.Seq != 1 || !sameJSON(sv.Data, `{"strokes":1}`) {
		t.Fatalf("GET state version: %d %s", st, b)
	}
	// Leaving without a change since: no version.
	c.Close()
	time.Sleep(500 * time.Millisecond)
	if vs := listVersions(t, s, "board"); len(vs) != 1 {
		t.Fatalf("versions after a leave with nothing new: %+v", vs)
	}
	// Another room's version, and ids that are none.
	for _, path := range []string{"/api/rooms/board/versions/" + fmt.Sprint(vs[0].ID), "/api/rooms/board/versions/999999"} {
		st, b := httpCall(t, http.MethodGet, s.URL+path, testserver.APIKey, "")
		if st != http.StatusNotFound {
			t.Fatalf("GET %s: %d %s", path, st, b)
		}
		assertErrorBody(t, b, "not_found")
	}
	if st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/board/versions/latest", testserver.APIKey, ""); st != http.StatusBadRequest {
		t.Fatalf("GET version latest: %d %s", st, b)
	}

	// Versions outlive a restart.
	s.Kill()
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
	if vs := listVersions(t, s, "leave"); len(vs) != 2 || versionDoc(t, s, "leave", vs[0].ID).Text != "first second" {
		t.Fatalf("versions after a restart: %+v", vs)
	}
}

// TestVersionsAndStoredRoomsWithoutAStore: a server that keeps nothing
// for good lists no versions and answers stored rooms with 400 no_store.
func TestVersionsAndStoredRoomsWithoutAStore(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_STORE": "memory", "ROOMCAST_VERSION_INTERVAL": "1s"}})
	if st, b := postDoc(t, s, "fleeting", testserver.APIKey, makeUpdate(t, "gone at exit", nil)); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	if vs := listVersions(t, s, "fleeting"); len(vs) != 0 {
		t.Fatalf("versions without a store: %+v", vs)
	}
	st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/fleeting/versions/1", testserver.APIKey, "")
	if st != http.StatusNotFound {
		t.Fatalf("GET a version without a store: %d %s", st, b)
	}
	assertErrorBody(t, b, "not_found")
	st, b = httpCall(t, http.MethodGet, s.URL+"/api/rooms?stored=1", testserver.APIKey, "")
	if st != http.StatusBadRequest {
		t.Fatalf("stored rooms without a store: %d %s", st, b)
	}
	assertErrorBody(t, b, "no_store")
}

type storedRoomInfo struct {
	Room       string `json:"room"`
	Members    *int   `json:"members"`
	Updated    int64  `json:"updated"`
	DocBytes   int64  `json:"doc_bytes"`
	StateBytes int64  `json:"state_bytes"`
}

// storedRooms pages through every stored room, limit at a time.
func storedRooms(t testing.TB, s *testserver.Server, limit int) ([]storedRoomInfo, int) {
	t.Helper()
	var all []storedRoomInfo
	cursor, pages := "", 0
	for {
		q := url.Values{"stored": {"1"}, "limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms?"+q.Encode(), testserver.APIKey, "")
		var page struct {
			Rooms  []storedRoomInfo `json:"rooms"`
			Cursor *string          `json:"cursor"`
		}
		if st != http.StatusOK || json.Unmarshal(b, &page) != nil || page.Rooms == nil || len(page.Rooms) > limit {
			t.Fatalf("stored rooms page %d: %d %s", pages, st, b)
		}
		pages++
		all = append(all, page.Rooms...)
		if page.Cursor == nil {
			return all, pages
		}
		if *page.Cursor == "" || pages > 100 {
			t.Fatalf("stored rooms: cursor %q after %d pages", *page.Cursor, pages)
		}
		cursor = *page.Cursor
	}
}

// TestStoredRooms: every room the store holds, paged with the cursor,
// each exactly once, with its members now (0 after everyone left) and
// its sizes.
func TestStoredRooms(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		room := fmt.Sprintf("kept-%d", i)
		want[room] = true
		c := testserver.JoinSince(t, s.WS, room, "alice", "Alice", "start", nil)
		c.Send(t, map[string]any{"type": "publish", "ref": "m", "data": i})
		c.Await(t, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "m" })
		if i == 0 {
			if a := sendState(t, c, 1, map[string]any{"drawn": strings.Repeat("x", 100)}); a.Type != "ack" {
				t.Fatalf("state: %s", a.Raw)
			}
		}
		c.Close()
	}
	if st, b := postDoc(t, s, "kept-doc", testserver.APIKey, makeUpdate(t, "a document", nil)); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	want["kept-doc"] = true
	busy := testserver.JoinSince(t, s.WS, "kept-busy", "bob", "Bob", "start", nil)
	busy.Send(t, map[string]any{"type": "publish", "ref": "m", "data": "here"})
	busy.Await(t, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "m" })
	want["kept-busy"] = true

	deadline := time.Now().Add(wait)
	for {
		all, pages := storedRooms(t, s, 2)
		seen := map[string]storedRoomInfo{}
		problem := ""
		for _, r := range all {
			if _, dup := seen[r.Room]; dup {
				t.Fatalf("room %s listed twice: %+v", r.Room, all)
			}
			seen[r.Room] = r
			if r.Members == nil || r.Updated < time.Now().Add(-time.Minute).UnixMilli() {
				t.Fatalf("room %+v", r)
			}
			wantMembers := 0
			if r.Room == "kept-busy" {
				wantMembers = 1
			}
			if *r.Members != wantMembers {
				problem = fmt.Sprintf("%s has %d members, want %d", r.Room, *r.Members, wantMembers)
			}
		}
		if len(seen) != len(want) || pages != (len(want)+1)/2 {
			t.Fatalf("%d rooms in %d pages, want %v: %+v", len(seen), pages, want, all)
		}
		for room := range want {
			if _, ok := seen[room]; !ok {
				t.Fatalf("%s not listed: %+v", room, all)
			}
		}
		if seen["kept-doc"].DocBytes <= 0 || seen["kept-0"].StateBytes < 100 || seen["kept-1"].DocBytes != 0 {
			t.Fatalf("sizes: %+v", all)
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if all, pages := storedRooms(t, s, 1000); len(all) != len(want) || pages != 1 {
		t.Fatalf("one page of 1000: %d rooms in %d pages", len(all), pages)
	}
	for _, q := range []string{"limit=1001", "limit=0", "limit=ten", "cursor=" + url.QueryEscape("not a cursor!"), "stored=maybe"} {
		if !strings.HasPrefix(q, "stored=") {
			q = "stored=1&" + q
		}
		st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms?"+q, testserver.APIKey, "")
		if st != http.StatusBadRequest {
			t.Fatalf("GET /api/rooms?%s: %d %s", q, st, b)
		}
		assertErrorBody(t, b, "bad_request")
	}
}

// TestWriteBehindVersionsAreTheDocumentAtTheirTime: two instances on
// Redis with PostgreSQL written behind, VERSION_INTERVAL 1s. Providers on
// both instances take turns typing, each edit waiting for a version to be
// taken after it. Every document version, decoded with yjs, is the text
// as it was after one of the edits, the versions follow the edits in
// order, the newest is the text after the last one, and a state version
// is the state that was sent. A Redis flush changes none of it.
func TestWriteBehindVersionsAreTheDocumentAtTheirTime(t *testing.T) {
	yjs.Ensure(t)
	t.Parallel()
	r, s := cluster(t, 2, writeBehindEnv(t, map[string]string{"ROOMCAST_VERSION_INTERVAL": "1s"}))
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "essay", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "essay", "bob")
	docVersions := func(inst *testserver.Server) []versionInfo {
		var out []versionInfo
		for _, v := range listVersions(t, inst, "essay") {
			if v.Kind == "doc" {
				out = append(out, v)
			}
		}
		return out
	}
	// states[i] is the text after edit i.
	var states []string
	for i := range 5 {
		id := []string{"a", "b"}[i%2]
		before := len(docVersions(s[0]))
		p.Do("insert", id, map[string]any{"text": fmt.Sprintf("edit %d by %s. ", i, id)})
		states = append(states, converged(t, p, wait, "a", "b").Text)
		eventually(t, wait, fmt.Sprint("a version after edit ", i), func() error {
			if n := len(docVersions(s[0])); n <= before {
				return fmt.Errorf("%d versions", n)
			}
			return nil
		})
	}
	at := func(text string) int {
		for i, st := range states {
			if st == text {
				return i
			}
		}
		return -1
	}
	check := func(inst *testserver.Server) error {
		t.Helper()
		vs := docVersions(inst)
		last, seen := -1, map[int]bool{}
		for j := len(vs) - 1; j >= 0; j-- { // oldest first
			text := versionDoc(t, inst, "essay", vs[j].ID).Text
			i := at(text)
			if i < 0 || i < last {
				t.Fatalf("version %d (%d of %d, oldest first) on %s is %q: not the text after an edit, or older than the version before it (edit %d); the texts were %q",
					vs[j].ID, len(vs)-j, len(vs), inst.Addr, text, last, states)
			}
			last, seen[i] = i, true
		}
		if last != len(states)-1 || len(seen) < 3 {
			return fmt.Errorf("versions on %s hold the texts after edits %v; want the last (%d) among at least 3", inst.Addr, seen, len(states)-1)
		}
		return nil
	}
	for _, inst := range s {
		eventually(t, wait, "the versions", func() error { return check(inst) })
	}

	// A state version is the state sent.
	b := writeBoard(t, s[1], "essay")
	var sv versionInfo
	eventually(t, wait, "a state version", func() error {
		for _, v := range listVersions(t, s[0], "essay") {
			if v.Kind == "state" {
				sv = v
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	readState := func(inst *testserver.Server) {
		t.Helper()
		st, body := httpCall(t, http.MethodGet, fmt.Sprintf("%s/api/rooms/essay/versions/%d", inst.URL, sv.ID), testserver.APIKey, "")
		var got struct {
			Seq  uint64          `json:"seq"`
			Data json.RawMessage `json:"data"`
		}
		if st != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Seq != b.seqs[2] || !sameJSON(got.Data, b.state) || *sv.Seq != b.seqs[2] {
			t.Fatalf("state version %+v on %s: %d %s; want %s at %d", sv, inst.Addr, st, body, b.state, b.seqs[2])
		}
	}
	readState(s[0])

	// The versions are the store's: Redis losing the room changes none.
	if err := r.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, inst := range s {
		if err := check(inst); err != nil {
			t.Fatal(err)
		}
		readState(inst)
	}
}
