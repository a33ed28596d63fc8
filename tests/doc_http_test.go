package tests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// docContent is a whole document read with the real yjs: its text and map.
type docContent struct {
	Text    string         `json:"text"`
	Map     map[string]any `json:"map"`
	Pending bool           `json:"pending"`
}

// docTool runs tests/yjs/doc-tool.mjs with req and decodes its answer.
func docTool(t testing.TB, req any, out any) {
	t.Helper()
	yjs.Ensure(t)
	in, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := json.Unmarshal(yjs.Node(t, ctx, in, "doc-tool.mjs"), out); err != nil {
		t.Fatalf("doc-tool answer: %v", err)
	}
}

// readDoc applies update to a fresh Y.Doc and returns what it holds.
func readDoc(t testing.TB, update []byte) docContent {
	t.Helper()
	var c docContent
	docTool(t, map[string]any{"read": []string{base64.StdEncoding.EncodeToString(update)}}, &c)
	if c.Pending {
		t.Fatalf("the document needs updates it does not hold (pending structs)")
	}
	return c
}

// makeUpdate returns a fresh document (its own client) holding text and m,
// encoded as one update.
func makeUpdate(t testing.TB, text string, m map[string]any) []byte {
	t.Helper()
	var r struct{ Update string }
	docTool(t, map[string]any{"make": map[string]any{"text": text, "map": m}}, &r)
	b, err := base64.StdEncoding.DecodeString(r.Update)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// binaryCall performs one HTTP request with a binary body (nil for none)
// and returns the status, the Content-Type and the body.
func binaryCall(t testing.TB, method, url, bearer string, body []byte) (int, string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// getDoc reads the room's document over HTTP with the API key.
func getDoc(t testing.TB, s *testserver.Server, room string) docContent {
	t.Helper()
	st, ct, b := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/doc", testserver.APIKey, nil)
	if st != http.StatusOK || ct != "application/octet-stream" {
		t.Fatalf("GET doc of %s: %d %s %q", room, st, ct, b)
	}
	return readDoc(t, b)
}

func postDoc(t testing.TB, s *testserver.Server, room, bearer string, update []byte) (int, []byte) {
	t.Helper()
	st, _, b := binaryCall(t, http.MethodPost, s.URL+"/api/rooms/"+room+"/doc", bearer, update)
	return st, b
}

// sameContent reports whether a provider's document and one read over
// HTTP hold the same text and map.
func sameContent(p yjs.Content, d docContent) bool {
	pm, dm := p.Map, d.Map
	if len(pm) == 0 && len(dm) == 0 {
		return p.Text == d.Text
	}
	return p.Text == d.Text && reflect.DeepEqual(pm, dm)
}

// TestDocOverHTTP on one instance with its SQLite store: GET gives exactly
// what the providers hold, also after a restart; a room without a
// document is 404; POST reaches every provider and a late joiner, with a
// body far over the message limit; an invalid body is 400 and changes
// nothing.
func TestDocOverHTTP(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "roomcast.db")}
	s := testserver.Start(t, testserver.Options{Env: env})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "notes", "alice")
	connectSynced(t, p, "b", yjsURL(s), "notes", "bob")
	for i := 0; i < 30; i++ {
		p.Do("insert", "a", map[string]any{"text": fmt.Sprintf("a%d ", i)})
		p.Do("insert", "b", map[string]any{"text": fmt.Sprintf("b%d ", i), "pos": 0})
	}
	p.Do("edits", "a", map[string]any{"seed": 7, "count": 200})
	p.Do("set", "b", map[string]any{"key": "title", "value": "over http"})
	held := converged(t, p, wait, "a", "b")
	if got := getDoc(t, s, "notes"); !sameContent(held, got) {
		t.Fatalf("GET doc: %q %v, the providers hold %q %v", got.Text, got.Map, held.Text, held.Map)
	}

	st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/no-doc-here/doc", testserver.APIKey, "")
	if st != http.StatusNotFound {
		t.Fatalf("GET doc of a room without one: %d %s", st, b)
	}
	assertErrorBody(t, b, "not_found")
	// Reading wrote nothing: the room is still unknown to the store.
	if st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms?stored=1", testserver.APIKey, ""); st != http.StatusOK || strings.Contains(string(b), "no-doc-here") {
		t.Fatalf("stored rooms after reading a missing document: %d %s", st, b)
	}

	// 200 KiB of text in one update: three times the body limit of the
	// other routes (MAX_MESSAGE_BYTES 64 KiB).
	big := strings.Repeat("posted over http. ", 200<<10/18)
	up := makeUpdate(t, big, map[string]any{"from": "server"})
	if st, b := postDoc(t, s, "notes", testserver.APIKey, up); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	var after yjs.Content
	p.Eventually(wait, "the posted update reaches both providers", func() (bool, string) {
		after = p.Content("a")
		bc := p.Content("b")
		ok := strings.Contains(after.Text, big) && after.Map["from"] == "server" && after.Text == bc.Text && bc.Map["from"] == "server"
		return ok, fmt.Sprintf("a %d chars, b %d chars", len(after.Text), len(bc.Text))
	})
	connectSynced(t, p, "late", yjsURL(s), "notes", "carol")
	if c := p.Content("late"); c.Text != after.Text || c.Map["from"] != "server" {
		t.Fatalf("late joiner: %d chars %v, want %d chars", len(c.Text), c.Map, len(after.Text))
	}

	// Not a Yjs update: refused, and the document is as it was.
	before := getDoc(t, s, "notes")
	for _, bad := range [][]byte{[]byte(`{"text":"hello"}`), {0xff, 0xff, 0xff}, up[:len(up)/2]} {
		st, b := postDoc(t, s, "notes", testserver.APIKey, bad)
		if st != http.StatusBadRequest {
			t.Fatalf("POST doc of %d bad bytes: %d %s", len(bad), st, b)
		}
		assertErrorBody(t, b, "bad_request")
	}
	if st, b := postDoc(t, s, "notes", testserver.APIKey, []byte{}); st != http.StatusBadRequest {
		t.Fatalf("POST doc without a body: %d %s", st, b)
	}
	if got := getDoc(t, s, "notes"); !reflect.DeepEqual(got, before) {
		t.Fatalf("an invalid body changed the document: %d chars, was %d", len(got.Text), len(before.Text))
	}

	// A restart keeps the document, and GET still gives it whole.
	p.Do("destroy", "a", nil)
	p.Do("destroy", "b", nil)
	p.Do("destroy", "late", nil)
	s.Kill()
	s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
	if got := getDoc(t, s, "notes"); got.Text != after.Text || got.Map["from"] != "server" || got.Map["title"] != "over http" {
		t.Fatalf("GET doc after a restart: %d chars %v, want %d chars", len(got.Text), got.Map, len(after.Text))
	}
}

// TestDocPostOverTheLimit: an update that would take the document past
// MAX_DOC_BYTES is 413, names the limit and is not stored.
func TestDocPostOverTheLimit(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_DOC_BYTES": "65536"}})
	small := makeUpdate(t, strings.Repeat("a", 40<<10), nil)
	if st, b := postDoc(t, s, "capped", testserver.APIKey, small); st != http.StatusNoContent {
		t.Fatalf("POST 40 KiB: %d %s", st, b)
	}
	for _, size := range []int{30 << 10, 200 << 10} { // passes with the document; passes alone
		up := makeUpdate(t, strings.Repeat("b", size), nil)
		st, b := postDoc(t, s, "capped", testserver.APIKey, up)
		if st != http.StatusRequestEntityTooLarge {
			t.Fatalf("POST %d bytes over the limit: %d %s", len(up), st, b)
		}
		assertErrorBody(t, b, "too_large")
		if !strings.Contains(string(b), "64 KiB") {
			t.Fatalf("413 does not name the limit: %s", b)
		}
	}
	if got := getDoc(t, s, "capped"); got.Text != strings.Repeat("a", 40<<10) {
		t.Fatalf("the document after refused updates: %d chars", len(got.Text))
	}
	// The other routes keep their own body limit.
	st, b := httpCall(t, http.MethodPost, s.URL+"/api/rooms/capped/messages", testserver.APIKey, `{"data":"`+strings.Repeat("x", 100<<10)+`"}`)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST messages over the body limit: %d %s", st, b)
	}
	assertErrorBody(t, b, "too_large")
}

// TestDocOverHTTPAcrossInstances: on Redis and on a Redis Cluster, GET on
// one instance gives what providers on both hold, and POST on one reaches
// the providers of both and a late joiner.
func TestDocOverHTTPAcrossInstances(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		p := yjs.StartPeers(t)
		connectSynced(t, p, "a", yjsURL(s[0]), "shared", "alice")
		connectSynced(t, p, "b", yjsURL(s[1]), "shared", "bob")
		for i := 0; i < 20; i++ {
			p.Do("insert", "a", map[string]any{"text": fmt.Sprintf("a%d ", i)})
			p.Do("insert", "b", map[string]any{"text": fmt.Sprintf("b%d ", i), "pos": 0})
		}
		p.Do("set", "a", map[string]any{"key": "k", "value": "v"})
		held := converged(t, p, wait, "a", "b")
		for i, inst := range s {
			if got := getDoc(t, inst, "shared"); !sameContent(held, got) {
				t.Fatalf("GET doc on instance %d: %q %v, providers hold %q %v", i, got.Text, got.Map, held.Text, held.Map)
			}
		}
		up := makeUpdate(t, "from the API. ", map[string]any{"posted": true})
		if st, b := postDoc(t, s[0], "shared", testserver.APIKey, up); st != http.StatusNoContent {
			t.Fatalf("POST doc: %d %s", st, b)
		}
		var want yjs.Content
		p.Eventually(wait, "the posted update on both instances", func() (bool, string) {
			want = p.Content("a")
			bc := p.Content("b")
			ok := strings.Contains(want.Text, "from the API. ") && want.Map["posted"] == true && bc.Text == want.Text && bc.Map["posted"] == true
			return ok, fmt.Sprintf("a %q, b %q", want.Text, bc.Text)
		})
		connectSynced(t, p, "late", yjsURL(s[1]), "shared", "carol")
		if c := p.Content("late"); c.Text != want.Text || c.Map["posted"] != true {
			t.Fatalf("late joiner: %q %v, want %q", c.Text, c.Map, want.Text)
		}
		if got := getDoc(t, s[1], "shared"); !sameContent(want, got) {
			t.Fatalf("GET doc after the POST: %q %v, want %q %v", got.Text, got.Map, want.Text, want.Map)
		}
		if st, b := postDoc(t, s[1], "shared", testserver.APIKey, []byte("not an update")); st != http.StatusBadRequest {
			t.Fatalf("POST invalid body: %d %s", st, b)
		}
	})
}

// TestDocVersionAndStoredRoutesRefusals: each new route refuses a request
// without credentials and one with another room's token, with the error
// body and nothing of the room's data; stored rooms take the API key only.
func TestDocVersionAndStoredRoutesRefusals(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	up := makeUpdate(t, "secret text", nil)
	if st, b := postDoc(t, s, "private", testserver.APIKey, up); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	other := testserver.Token(t, "eve", "Eve", 0, []string{"elsewhere"})
	mine := testserver.Token(t, "alice", "Alice", 0, []string{"private"})
	routes := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/api/rooms/private/doc", nil},
		{http.MethodPost, "/api/rooms/private/doc", makeUpdate(t, "intruder", nil)},
		{http.MethodGet, "/api/rooms/private/versions", nil},
		{http.MethodGet, "/api/rooms/private/versions/1", nil},
	}
	for _, r := range routes {
		for _, c := range []struct {
			bearer, code string
			status       int
		}{{"", "token_missing", 401}, {"garbage", "token_invalid", 401}, {other, "room_not_allowed", 403}} {
			st, _, b := binaryCall(t, r.method, s.URL+r.path, c.bearer, r.body)
			if st != c.status || bytes.Contains(b, []byte("secret")) {
				t.Fatalf("%s %s with %q: %d %s", r.method, r.path, c.code, st, b)
			}
			assertErrorBody(t, b, c.code)
		}
	}
	// A token of the room reads and writes its document.
	if st, _, b := binaryCall(t, http.MethodPost, s.URL+"/api/rooms/private/doc", mine, makeUpdate(t, "mine ", nil)); st != http.StatusNoContent {
		t.Fatalf("POST doc with the room's token: %d %s", st, b)
	}
	if st, _, b := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/private/doc", mine, nil); st != http.StatusOK {
		t.Fatalf("GET doc with the room's token: %d %s", st, b)
	} else if c := readDoc(t, b); !strings.Contains(c.Text, "secret text") || !strings.Contains(c.Text, "mine ") || strings.Contains(c.Text, "intruder") {
		t.Fatalf("document: %q", c.Text)
	}
	// Stored rooms: the API key only.
	for _, bearer := range []string{"", mine} {
		st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms?stored=1", bearer, "")
		if st != http.StatusUnauthorized || strings.Contains(string(b), "private") {
			t.Fatalf("stored rooms without the API key: %d %s", st, b)
		}
		assertErrorBody(t, b, "api_key_required")
	}
}

// TestDocJSONOverHTTP: GET doc?format=json answers the document's
// top-level types as yjs's toJSON() gives them (compared with what the
// real yjs reads from the binary GET), 404 for a room without a
// document, 400 for another format, and takes the credentials of the
// binary GET.
func TestDocJSONOverHTTP(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	text := "hello 😀 \"json\" <p>\n"
	m := map[string]any{"title": "a map", "n": 2.5, "list": []any{1, "two", nil}, "nested": map[string]any{"ok": true}, "10": "index key"}
	if st, b := postDoc(t, s, "jsonroom", testserver.APIKey, makeUpdate(t, text, m)); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	if st, b := postDoc(t, s, "jsonroom", testserver.APIKey, makeUpdate(t, "second writer. ", map[string]any{"title": "later"})); st != http.StatusNoContent {
		t.Fatalf("POST doc: %d %s", st, b)
	}
	url := s.URL + "/api/rooms/jsonroom/doc?format=json"
	st, ct, b := binaryCall(t, http.MethodGet, url, testserver.APIKey, nil)
	if st != http.StatusOK || !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET doc as JSON: %d %s %s", st, ct, b)
	}
	var got struct {
		Text string         `json:"text"`
		Map  map[string]any `json:"map"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("GET doc as JSON: not JSON: %v\n%s", err, b)
	}
	want := getDoc(t, s, "jsonroom") // what the real yjs reads from the binary GET
	if got.Text != want.Text || !reflect.DeepEqual(got.Map, want.Map) {
		t.Fatalf("GET doc as JSON: %s\nyjs reads text %q map %v", b, want.Text, want.Map)
	}
	if !strings.Contains(got.Text, text) || !strings.Contains(got.Text, "second writer. ") {
		t.Fatalf("GET doc as JSON: text %q", got.Text)
	}

	st, _, b = binaryCall(t, http.MethodGet, s.URL+"/api/rooms/no-doc-here/doc?format=json", testserver.APIKey, nil)
	if st != http.StatusNotFound {
		t.Fatalf("GET JSON doc of a room without one: %d %s", st, b)
	}
	assertErrorBody(t, b, "not_found")
	st, _, b = binaryCall(t, http.MethodGet, s.URL+"/api/rooms/jsonroom/doc?format=xml", testserver.APIKey, nil)
	if st != http.StatusBadRequest {
		t.Fatalf("GET doc in an unknown format: %d %s", st, b)
	}
	assertErrorBody(t, b, "bad_request")

	other := testserver.Token(t, "eve", "Eve", 0, []string{"elsewhere"})
	for _, c := range []struct {
		bearer, code string
		status       int
	}{{"", "token_missing", 401}, {"garbage", "token_invalid", 401}, {other, "room_not_allowed", 403}} {
		st, _, b := binaryCall(t, http.MethodGet, url, c.bearer, nil)
		if st != c.status || bytes.Contains(b, []byte("hello")) {
			t.Fatalf("GET JSON doc with %q: %d %s", c.code, st, b)
		}
		assertErrorBody(t, b, c.code)
	}
	mine := testserver.Token(t, "alice", "Alice", 0, []string{"jsonroom"})
	if st, _, b := binaryCall(t, http.MethodGet, url, mine, nil); st != http.StatusOK || !bytes.Contains(b, []byte("second writer")) {
		t.Fatalf("GET JSON doc with the room's token: %d %s", st, b)
	}
}

// costlyDoc is a valid Yjs update on which integration costs about n²
// steps: client 0 writes "abt" (b inserted between a and t); clients
// 1..n each insert a "w" after b whose right origin is the "z" the client
// below wrote after t, so yjs integrates the "w"s from the lowest client
// up and each one passes all those before it.
func costlyDoc(n int) []byte {
	var b []byte
	uv := func(v uint64) {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		b = append(b, byte(v))
	}
	str := func(s string) { uv(uint64(len(s))); b = append(b, s...) }
	const refString, origin, right = 4, 0x80, 0x40
	uv(uint64(n + 1)) // client sections, highest client first
	for c := n; c >= 1; c-- {
		uv(2)
		uv(uint64(c))
		uv(0)
		if c > 1 { // w: origin 0:2 (b), right origin (c-1):1 (its z)
			b = append(b, refString|origin|right)
			uv(0)
			uv(2)
			uv(uint64(c - 1))
			uv(1)
		} else {
			b = append(b, refString|origin)
			uv(0)
			uv(2)
		}
		str("w")
		b = append(b, refString|origin) // z: origin 0:1 (t)
		uv(0)
		uv(1)
		str("z")
	}
	uv(3)
	uv(0)
	uv(0)
	b = append(b, refString, 1) // a, in the top-level type "text"
	str("text")
	str("a")
	b = append(b, refString|origin, 0, 0) // t after a
	str("t")
	b = append(b, refString|origin|right, 0, 0, 0, 1) // b between a and t
	str("b")
	uv(0) // no deletes
	return b
}

// TestDocJSONOverBudget: a valid document whose integration would cost
// more than the view's budget is stored and served as an update, and
// its JSON view is 422 with the reason; a smaller one of the same shape
// is viewed.
func TestDocJSONOverBudget(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	for _, c := range []struct {
		room   string
		n      int
		status int
	}{{"costly-small", 300, http.StatusOK}, {"costly-big", 5000, http.StatusUnprocessableEntity}} {
		if st, b := postDoc(t, s, c.room, testserver.APIKey, costlyDoc(c.n)); st != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", c.room, st, b)
		}
		st, _, b := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+c.room+"/doc?format=json", testserver.APIKey, nil)
		if st != c.status {
			t.Fatalf("GET %s as JSON: %d %.300s", c.room, st, b)
		}
		if st == http.StatusOK {
			want := "ab" + strings.Repeat("w", c.n) + "t" + strings.Repeat("z", c.n)
			if got := readDoc(t, getDocBytes(t, s, c.room)); got.Text != want || !bytes.Contains(b, []byte(`"text":"`+want+`"`)) {
				t.Fatalf("GET %s as JSON: %.200s; yjs reads %.200q", c.room, b, got.Text)
			}
			continue
		}
		assertErrorBody(t, b, "bad_request")
		if !strings.Contains(string(b), "too costly") {
			t.Fatalf("422 without the reason: %s", b)
		}
	}
}

// getDocBytes reads the room's document as one update with the API key.
func getDocBytes(t testing.TB, s *testserver.Server, room string) []byte {
	t.Helper()
	st, _, b := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/doc", testserver.APIKey, nil)
	if st != http.StatusOK {
		t.Fatalf("GET doc of %s: %d %s", room, st, b)
	}
	return b
}
