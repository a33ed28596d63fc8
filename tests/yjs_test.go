package tests

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
	yjsproto "github.com/roomcast/roomcast/rooms/yjs"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// These tests drive the stock y-websocket client (tests/yjs/peer.mjs)
// against the real binary.

func yjsURL(s *testserver.Server) string { return s.WS + "/yjs" }

// connectSynced opens provider id for user (named with a capital) on url
// in room and waits until it is synced.
func connectSynced(t *testing.T, p *yjs.Peers, id, url, room, user string) {
	t.Helper()
	p.Connect(id, url, room, testserver.Token(t, user, strings.ToUpper(user[:1])+user[1:], 0, nil), nil)
	p.Await(wait, id+" synced", synced(id))
}

func synced(id string) func(yjs.Event) bool {
	return func(e yjs.Event) bool { return e.Ev == "synced" && e.ID == id }
}

// converged waits until every client's document has the same content and
// returns it.
func converged(t *testing.T, p *yjs.Peers, within time.Duration, ids ...string) yjs.Content {
	t.Helper()
	var first yjs.Content
	p.Eventually(within, "convergence of "+fmt.Sprint(ids), func() (bool, string) {
		first = p.Content(ids[0])
		for _, id := range ids[1:] {
			c := p.Content(id)
			if c.Text != first.Text || !reflect.DeepEqual(c.Map, first.Map) {
				return false, fmt.Sprintf("%s %q %v vs %s %q %v", ids[0], short(first.Text), first.Map, id, short(c.Text), c.Map)
			}
		}
		return true, ""
	})
	return first
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…" + strconv.Itoa(len(s))
	}
	return s
}

func TestYjsProvidersConvergeAcrossInstancesAndRestarts(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, nil)
	p := yjs.StartPeers(t)
	tokA, tokB := testserver.Token(t, "alice", "Alice", 0, nil), testserver.Token(t, "bob", "Bob", 0, nil)
	p.Connect("a", yjsURL(s[0]), "notes", tokA, nil)
	p.Connect("b", yjsURL(s[1]), "notes", tokB, nil)
	p.Await(wait, "a synced", synced("a"))
	p.Await(wait, "b synced", synced("b"))

	// Concurrent edits of one text and one map on both instances.
	for i := 0; i < 20; i++ {
		p.Do("insert", "a", map[string]any{"pos": 0, "text": fmt.Sprintf("a%d ", i)})
		p.Do("insert", "b", map[string]any{"text": fmt.Sprintf("b%d ", i)})
		p.Do("set", "a", map[string]any{"key": "k" + strconv.Itoa(i%5), "value": "a" + strconv.Itoa(i)})
		p.Do("set", "b", map[string]any{"key": "k" + strconv.Itoa(i%5), "value": map[string]any{"b": i}})
	}
	got := converged(t, p, wait, "a", "b")
	if len(got.Text) != 140 { // 20 inserts of 3 or 4 bytes from each side
		t.Fatalf("converged text is missing edits: %q", got.Text)
	}
	if len(got.Map) != 5 {
		t.Fatalf("converged map: %v", got.Map)
	}

	// A latecomer is synced with the same content.
	connectSynced(t, p, "c", yjsURL(s[0]), "notes", "carol")
	if c := p.Content("c"); c.Text != got.Text || !reflect.DeepEqual(c.Map, got.Map) {
		t.Fatalf("latecomer has %q %v, want %q %v", c.Text, c.Map, got.Text, got.Map)
	}

	// Everyone leaves, every instance restarts: the document is in Redis.
	for _, id := range []string{"a", "b", "c"} {
		p.Do("destroy", id, nil)
	}
	for i, srv := range s {
		addr := srv.Addr
		srv.Kill()
		s[i] = testserver.Start(t, testserver.Options{Addr: addr, Env: map[string]string{
			"ROOMCAST_REDIS_URL": r.URL(), "ROOMCAST_INSTANCE_ID": fmt.Sprint("re-", i),
			"ROOMCAST_PRESENCE_TTL": "3s", "ROOMCAST_HEARTBEAT": "1s",
		}})
	}
	p.Connect("d", yjsURL(s[1]), "notes", tokB, nil)
	p.Await(wait, "d synced after the restart", synced("d"))
	if d := p.Content("d"); d.Text != got.Text || !reflect.DeepEqual(d.Map, got.Map) {
		t.Fatalf("after every instance restarted, a new provider has %q %v, want %q %v", short(d.Text), d.Map, short(got.Text), got.Map)
	}
}

func TestYjsOfflineEditsReachEveryoneOnReconnect(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		p := yjs.StartPeers(t)
		connectSynced(t, p, "a", yjsURL(s[0]), "offline", "alice")
		connectSynced(t, p, "b", yjsURL(s[1]), "offline", "bob")
		p.Do("insert", "a", map[string]any{"text": "shared start. "})
		converged(t, p, wait, "a", "b")

		p.Do("disconnect", "a", nil)
		p.Do("insert", "a", map[string]any{"text": "typed offline by alice. "})
		p.Do("set", "a", map[string]any{"key": "offline", "value": true})
		p.Do("insert", "b", map[string]any{"pos": 0, "text": "bob meanwhile. "})
		time.Sleep(200 * time.Millisecond)
		if b := p.Content("b"); b.Map["offline"] != nil {
			t.Fatalf("bob has alice's offline edit before she reconnected: %v", b.Map)
		}
		p.Do("reconnect", "a", nil)
		got := converged(t, p, wait, "a", "b")
		if got.Map["offline"] != true || !strings.Contains(got.Text, "typed offline by alice. ") || !strings.Contains(got.Text, "bob meanwhile. ") {
			t.Fatalf("after the reconnect: %q %v", got.Text, got.Map)
		}
		// And a newcomer gets it from the store.
		connectSynced(t, p, "c", yjsURL(s[1]), "offline", "carol")
		if c := p.Content("c"); c.Text != got.Text {
			t.Fatalf("newcomer: %q, want %q", c.Text, got.Text)
		}
	})
}

// storedDocBytes is what Redis holds for the room's document: its base and
// its update log.
func storedDocBytes(t *testing.T, rc *redis.Client, room string) (base, log int64, entries int64) {
	t.Helper()
	ctx := context.Background()
	k := wire.RoomKeys("", room)
	base, err := rc.HStrLen(ctx, k.Doc, "base").Result()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := rc.LRange(ctx, k.DocLog, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		log += int64(len(m))
	}
	return base, log, int64(len(msgs))
}

func TestYjsStoredBytesStaySmallAfterManyEdits(t *testing.T) {
	t.Parallel()
	// Typing is paced by the rate limit (50 messages/s by default); this
	// test types 10,000 edits as fast as Node makes them.
	r, s := cluster(t, 1, map[string]string{"ROOMCAST_RATE": "20000"})
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "edits", "alice")
	// 10,000 small edits, one update each.
	for i := 0; i < 10; i++ {
		p.Do("edits", "a", map[string]any{"count": 1000, "seed": i + 1})
	}
	want := p.Content("a")
	connectSynced(t, p, "b", yjsURL(s[0]), "edits", "bob")
	converged(t, p, 60*time.Second, "a", "b")
	var base, log, n int64
	p.Eventually(60*time.Second, "every update stored", func() (bool, string) {
		base, log, n = storedDocBytes(t, rc, "edits")
		k := wire.RoomKeys("", "edits")
		seq, _ := rc.HGet(context.Background(), k.Doc, "seq").Uint64()
		return seq >= 10000, fmt.Sprintf("seq %d", seq)
	})
	stored := base + log
	t.Logf("10,000 edits: document %d bytes (Y.encodeStateAsUpdate), stored %d bytes (base %d + %d updates of %d bytes): %.2fx",
		want.Size, stored, base, n, log, float64(stored)/float64(want.Size))
	if stored > 3*int64(want.Size)+16<<10 {
		t.Fatalf("stored %d bytes for a document of %d", stored, want.Size)
	}
	// A newcomer after compaction has the same content.
	connectSynced(t, p, "c", yjsURL(s[0]), "edits", "carol")
	if c := p.Content("c"); c.Text != want.Text {
		t.Fatalf("newcomer after compaction: %q, want %q", short(c.Text), short(want.Text))
	}
}

// awareOf reports whether client's awareness state is in e.
func awareOf(e yjs.Event, client uint64) bool {
	_, ok := e.States[strconv.FormatUint(client, 10)]
	return ok
}

func TestYjsAwarenessAcrossInstancesAndOnCrash(t *testing.T) {
	t.Parallel()
	redisEngines(t, 3, nil, func(t *testing.T, s []*testserver.Server) {
		p := yjs.StartPeers(t)
		ca := p.Connect("a", yjsURL(s[0]), "aware", testserver.Token(t, "alice", "Alice", 0, nil), map[string]any{"awareness": map[string]any{"user": "Alice"}})
		cb := p.Connect("b", yjsURL(s[1]), "aware", testserver.Token(t, "bob", "Bob", 0, nil), map[string]any{"awareness": map[string]any{"user": "Bob"}})
		p.Await(wait, "a sees b", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "a" && awareOf(e, cb) })
		p.Await(wait, "b sees a", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "b" && awareOf(e, ca) })
		// A newcomer gets both at once.
		cc := p.Connect("c", yjsURL(s[2]), "aware", testserver.Token(t, "carol", "Carol", 0, nil), map[string]any{"awareness": map[string]any{"user": "Carol"}})
		p.Await(wait, "c sees a and b", func(e yjs.Event) bool {
			return e.Ev == "awareness" && e.ID == "c" && awareOf(e, ca) && awareOf(e, cb)
		})
		p.Await(wait, "a sees c", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "a" && awareOf(e, cc) })

		// A provider next to another on one instance: when it closes, its
		// neighbour sees it go too.
		cd := p.Connect("d", yjsURL(s[0]), "aware", testserver.Token(t, "dave", "Dave", 0, nil), map[string]any{"awareness": map[string]any{"user": "Dave"}})
		p.Await(wait, "a sees d", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "a" && awareOf(e, cd) })
		mark := p.Mark()
		p.Do("destroy", "d", nil)
		p.AwaitAfter(mark, wait, "a sees d removed (same instance)", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "a" && !awareOf(e, cd) })
		p.AwaitAfter(mark, wait, "b sees d removed", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "b" && !awareOf(e, cd) })

		// A provider that closes is removed for everyone, and only it: a
		// provider echoes the states of others, which are not its own.
		mark = p.Mark()
		p.Do("destroy", "b", nil)
		p.AwaitAfter(mark, wait, "a sees b removed", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "a" && !awareOf(e, cb) })
		p.AwaitAfter(mark, wait, "c sees b removed", func(e yjs.Event) bool { return e.Ev == "awareness" && e.ID == "c" && !awareOf(e, cb) })
		time.Sleep(300 * time.Millisecond)
		for id, want := range map[string][]uint64{"a": {ca, cc}, "c": {ca, cc}} {
			states := p.Do("states", id, nil)["states"].(map[string]any)
			for _, client := range want {
				if _, ok := states[strconv.FormatUint(client, 10)]; !ok || len(states) != 2 {
					t.Fatalf("after b closed, %s has states %v, want exactly a's and c's", id, states)
				}
			}
		}

		// Another user cannot speak for alice's client: mallory's message is
		// not relayed and alice's state stands.
		mallory := rawYjs(t, s[1], "aware", "mallory")
		spoof := yjsproto.AppendAwarenessMessage(nil, yjsproto.EncodeAwareness([]yjsproto.AwarenessEntry{{Client: ca, Clock: 1 << 20, State: []byte(`{"user":"Mallory"}`)}}))
		if err := mallory.WriteMessage(websocket.BinaryMessage, spoof); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if st := p.Do("states", "c", nil)["states"].(map[string]any)[strconv.FormatUint(ca, 10)]; fmt.Sprint(st) != "map[user:Alice]" {
			t.Fatalf("after another user's message for alice's client, c has %v for it", st)
		}

		// An instance killed with -9: its client's state goes once its
		// presence expires (PRESENCE_TTL 3s here), long before the client-side
		// 30 s timeout would drop it.
		killed := time.Now()
		mark = p.Mark()
		s[2].Kill()
		e := p.AwaitAfter(mark, 3*time.Second+15*time.Second, "a sees c removed after its instance died", func(e yjs.Event) bool {
			return e.Ev == "awareness" && e.ID == "a" && !awareOf(e, cc) && e.At.After(killed)
		})
		t.Logf("awareness of a client on a killed instance removed after %v", e.At.Sub(killed).Round(10*time.Millisecond))
		if d := e.At.Sub(killed); d > 25*time.Second {
			t.Fatalf("removed only after %v: that is the client's own timeout, not the server", d)
		}
	})
}

func TestYjsAndJSONTabOfOneUserAreOneMember(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		p := yjs.StartPeers(t)
		bob := testserver.Join(t, s[1].WS, "mixed", "bob", "Bob")
		connectSynced(t, p, "a", yjsURL(s[0]), "mixed", "alice")
		bob.Await(t, wait, "alice's join", isFrame("join", "alice"))
		tab := testserver.Join(t, s[1].WS, "mixed", "alice", "Alice")
		// The welcome's "me" is the member this join made: the Yjs socket and
		// the tab.
		if me := tab.Welcome.Me; me == nil || me.Conns != 2 {
			t.Fatalf("alice's JSON tab welcome: %s", tab.Welcome.Raw)
		}
		bob.Await(t, wait, "alice's update to 2 conns", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member != nil && f.Member.ID == "alice" && f.Member.Conns == 2
		})
		if n := count(bob, "join", "alice"); n != 1 {
			t.Fatalf("bob saw %d joins of alice", n)
		}
		p.Do("destroy", "a", nil)
		bob.Await(t, wait, "alice back to 1 conn", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member != nil && f.Member.ID == "alice" && f.Member.Conns == 1
		})
		if n := count(bob, "leave", "alice"); n != 0 {
			t.Fatalf("bob saw alice leave while her tab is open")
		}
	})
}

// rawYjs dials /yjs/{room} with a plain WebSocket client.
func rawYjs(t *testing.T, s *testserver.Server, room, user string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(s.WS+"/yjs/"+room+"?token="+testserver.Token(t, user, user, 0, nil), nil)
	if err != nil {
		t.Fatalf("dial yjs: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// closeCodeOf reads until the server closes ws and returns the code.
func closeCodeOf(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			t.Fatalf("socket ended without a close frame: %v", err)
		}
	}
}

func TestYjsInvalidFramesCloseOnlyThatSocket(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 1, map[string]string{"ROOMCAST_MAX_DOC_BYTES": "65536"})
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "bad", "alice")
	p.Do("insert", "a", map[string]any{"text": "keep me"})
	time.Sleep(100 * time.Millisecond)
	_, logBefore, nBefore := storedDocBytes(t, rc, "bad")

	big := make([]byte, 70000)
	big[0], big[1], big[2] = 0, 2, 0xff
	cases := []struct {
		name  string
		typ   int
		frame []byte
		code  int
	}{
		{"truncated varint", websocket.BinaryMessage, []byte{0, 2, 0x80}, 1007},
		{"update longer than the frame", websocket.BinaryMessage, []byte{0, 2, 10, 1, 2}, 1007},
		{"unknown message type", websocket.BinaryMessage, []byte{9, 0}, 1007},
		{"unknown sync type", websocket.BinaryMessage, []byte{0, 7, 0}, 1007},
		{"garbage update", websocket.BinaryMessage, []byte{0, 2, 3, 5, 5, 5}, 1007},
		{"trailing bytes", websocket.BinaryMessage, []byte{0, 2, 2, 0, 0, 42}, 1007},
		{"awareness with bad JSON", websocket.BinaryMessage, []byte{1, 6, 1, 7, 1, 2, '{', 'x'}, 1007},
		{"oversize", websocket.BinaryMessage, big, 1009},
		{"text frame", websocket.TextMessage, []byte(`{"type":"publish"}`), 1003},
	}
	for i, c := range cases {
		// One user each: a close for size makes its user back off.
		ws := rawYjs(t, s[0], "bad", fmt.Sprint("mallory-", i))
		if err := ws.WriteMessage(c.typ, c.frame); err != nil {
			t.Fatalf("%s: write: %v", c.name, err)
		}
		if code := closeCodeOf(t, ws); code != c.code {
			t.Errorf("%s: closed with %d, want %d", c.name, code, c.code)
		}
	}
	_, logAfter, nAfter := storedDocBytes(t, rc, "bad")
	if nAfter != nBefore || logAfter != logBefore {
		t.Fatalf("invalid frames changed the stored document: %d entries/%d bytes before, %d/%d after", nBefore, logBefore, nAfter, logAfter)
	}
	// The good provider was never disturbed, and its document is intact.
	if info := p.Do("info", "a", nil); len(info["closes"].([]any)) != 0 {
		t.Fatalf("the valid provider's socket closed: %v", info)
	}
	p.Do("insert", "a", map[string]any{"text": " and this"})
	connectSynced(t, p, "b", yjsURL(s[0]), "bad", "bob")
	if got := converged(t, p, wait, "a", "b"); got.Text != "keep me and this" {
		t.Fatalf("document after the invalid frames: %q", got.Text)
	}
}

func TestYjsRefusalsAnswerInHTTP(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	for _, c := range []struct {
		url  string
		want int
	}{
		{s.WS + "/yjs/bad%20room?token=" + testserver.Token(t, "u", "U", 0, nil), http.StatusBadRequest},
		{s.WS + "/yjs/room", http.StatusUnauthorized},
		{s.WS + "/yjs/room?token=" + testserver.Token(t, "u", "U", 0, []string{"other"}), http.StatusForbidden},
	} {
		_, resp, err := websocket.DefaultDialer.Dial(c.url, nil)
		if err == nil || resp == nil || resp.StatusCode != c.want {
			t.Errorf("%s: %v %v, want HTTP %d", c.url, err, resp, c.want)
		}
	}
}

func TestYjsIdleProviderStaysConnected(t *testing.T) {
	if testing.Short() {
		t.Skip("idles for minutes")
	}
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "idle", "alice")
	// y-websocket drops a socket that heard nothing for 30 s; four times
	// that with nobody else in the document.
	time.Sleep(2 * time.Minute)
	info := p.Do("info", "a", nil)
	if len(info["closes"].([]any)) != 0 || info["wsconnected"] != true {
		t.Fatalf("idle provider lost its socket: %v", info)
	}
}

// Single-instance mode keeps documents in the process: a provider that
// comes after everyone left gets the document.
func TestYjsMemoryEngineKeepsTheDocument(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "mem", "alice")
	connectSynced(t, p, "b", yjsURL(s), "mem", "bob")
	p.Do("insert", "a", map[string]any{"text": "from alice "})
	p.Do("set", "b", map[string]any{"key": "by", "value": "bob"})
	want := converged(t, p, wait, "a", "b")
	p.Do("destroy", "a", nil)
	p.Do("destroy", "b", nil)
	connectSynced(t, p, "c", yjsURL(s), "mem", "carol")
	if c := p.Content("c"); c.Text != want.Text || !reflect.DeepEqual(c.Map, want.Map) {
		t.Fatalf("after everyone left: %q %v, want %q %v", c.Text, c.Map, want.Text, want.Map)
	}
}

// DELETE /api/rooms/{room} deletes the document and closes its providers
// with 4010, once. A provider still open reconnects and sends its copy back
// (Yjs clients keep their document), so the document returns whole.
func TestYjsRoomDeletion(t *testing.T) {
	t.Parallel()
	_, s := cluster(t, 2, nil)
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "del", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "del", "bob")
	p.Do("insert", "a", map[string]any{"text": "before the delete"})
	converged(t, p, wait, "a", "b")
	mark := p.Mark()
	resp, body, err := testserver.Do(context.Background(), http.MethodDelete, s[0].URL+"/api/rooms/del", testserver.APIKey, "")
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v %s", err, resp, body)
	}
	for _, id := range []string{"a", "b"} {
		e := p.AwaitAfter(mark, wait, id+" closed with 4010", func(e yjs.Event) bool { return e.Ev == "close" && e.ID == id })
		if e.Code != 4010 || !strings.Contains(e.Reason, "room deleted") {
			t.Fatalf("%s closed with %d %q, want 4010 room deleted", id, e.Code, e.Reason)
		}
	}
	p.AwaitAfter(mark, wait, "a synced again", synced("a"))
	p.AwaitAfter(mark, wait, "b synced again", synced("b"))
	p.Do("insert", "b", map[string]any{"text": " and after"})
	if got := converged(t, p, wait, "a", "b"); got.Text != "before the delete and after" {
		t.Fatalf("after the delete: %q", got.Text)
	}
	time.Sleep(500 * time.Millisecond)
	closes := 0
	for _, e := range p.Events()[mark:] {
		if e.Ev == "close" {
			closes++
		}
	}
	if closes != 2 {
		t.Fatalf("%d closes after the delete, want one per provider", closes)
	}
}

// Redis flushed under connected providers (no pub/sub reconnect): the
// instances find the document gone when they re-assert their sessions,
// close the providers with 4010, and the providers' copies restore it.
func TestYjsDocumentRestoredAfterRedisFlush(t *testing.T) {
	t.Parallel()
	r, s := cluster(t, 2, nil)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "flush", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "flush", "bob")
	p.Do("insert", "a", map[string]any{"text": "work that must survive"})
	want := converged(t, p, wait, "a", "b")
	mark := p.Mark()
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	p.AwaitAfter(mark, 15*time.Second, "a closed with 4010", func(e yjs.Event) bool { return e.Ev == "close" && e.ID == "a" && e.Code == 4010 })
	p.AwaitAfter(mark, wait, "a synced again", synced("a"))
	// Nobody typed: a newcomer still gets the whole document.
	p.Eventually(wait, "the document back in Redis", func() (bool, string) {
		n, _ := rc.Exists(context.Background(), wire.RoomKeys("", "flush").Doc).Result()
		return n == 1, fmt.Sprint("exists ", n)
	})
	p.Connect("c", yjsURL(s[1]), "flush", testserver.Token(t, "carol", "Carol", 0, nil), nil)
	p.AwaitAfter(mark, wait, "c synced", synced("c"))
	if c := p.Content("c"); c.Text != want.Text {
		t.Fatalf("after the flush a newcomer has %q, want %q", c.Text, want.Text)
	}
}
