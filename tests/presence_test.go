package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// presenceOf returns the presence frames about user that c has read so far.
func presenceOf(c *testserver.Client, user string) (joins, leaves, updates []testserver.Frame) {
	for _, f := range c.Frames() {
		if f.Member == nil || f.Member.ID != user {
			continue
		}
		switch f.Type {
		case "join":
			joins = append(joins, f)
		case "leave":
			leaves = append(leaves, f)
		case "update":
			updates = append(updates, f)
		}
	}
	return
}

// TestTwoTabs: one user with two tabs is one member: one join (conns 1),
// an update with conns 2 for the second tab, an update with conns 1 when
// one closes, exactly one leave when the second closes.
func TestTwoTabs(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	obs := testserver.Join(t, s.WS, "doc", "observer", "")

	tab1 := testserver.Join(t, s.WS, "doc", "alice", "Alice")
	if w := tab1.Welcome; w.Room != "doc" || len(w.Conn) != 36 || w.Instance == "" || w.Me == nil || w.Me.Conns != 1 ||
		len(w.Members) != 2 || testserver.ModelOf(w.Members)["observer"].ID == "" || testserver.ModelOf(w.Members)["alice"].Conns != 1 {
		t.Fatalf("welcome: %s", w.Raw)
	}
	if j := obs.Await(t, wait, "alice's join", func(f testserver.Frame) bool { return f.Member != nil && f.Member.ID == "alice" }); j.Type != "join" || j.Member.Conns != 1 || j.Member.Name != "Alice" {
		t.Fatalf("first presence frame about alice: %s", j.Raw)
	}
	tab2 := testserver.Join(t, s.WS, "doc", "alice", "Alice")
	if tab2.Welcome.Me == nil || tab2.Welcome.Me.Conns != 2 || tab2.Welcome.Conn == tab1.Welcome.Conn || len(tab2.Welcome.Members) != 2 {
		t.Fatalf("second tab's welcome: %s", tab2.Welcome.Raw)
	}
	if u := obs.Await(t, wait, "alice's update", func(f testserver.Frame) bool { return f.Member != nil && f.Member.ID == "alice" }); u.Type != "update" || u.Member.Conns != 2 {
		t.Fatalf("presence frame for the second tab: %s, want update conns 2", u.Raw)
	}
	if ms := testserver.ModelOf(members(t, s, "doc")); len(ms) != 2 || ms["alice"].Conns != 2 {
		t.Fatalf("members: %v", ms)
	}
	// A message from one tab reaches the other (same user, other connection).
	tab1.Send(t, map[string]any{"type": "publish", "data": "to my other tab"})
	if m := tab2.AwaitType(t, "message", wait); m.From.Conn != tab1.Welcome.Conn {
		t.Fatalf("message: %s", m.Raw)
	}

	tab1.Close()
	if u := obs.Await(t, wait, "alice's update", func(f testserver.Frame) bool { return f.Member != nil && f.Member.ID == "alice" }); u.Type != "update" || u.Member.Conns != 1 {
		t.Fatalf("presence frame for the first tab closing: %s, want update conns 1", u.Raw)
	}
	tab2.Close()
	if l := obs.Await(t, wait, "alice's leave", func(f testserver.Frame) bool { return f.Member != nil && f.Member.ID == "alice" }); l.Type != "leave" || l.Reason != "closed" {
		t.Fatalf("presence frame for the last tab closing: %s, want leave closed", l.Raw)
	}
	// Fence: anything about alice the server had queued is read by now.
	testserver.Join(t, s.WS, "doc", "carol", "")
	obs.Await(t, wait, "carol's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member.ID == "carol" })
	fence(t, obs)
	joins, leaves, updates := presenceOf(obs, "alice")
	if len(joins) != 1 || len(leaves) != 1 || len(updates) != 2 {
		t.Fatalf("observer saw %d joins, %d leaves, %d updates of alice; want 1, 1, 2", len(joins), len(leaves), len(updates))
	}
	if ms := testserver.ModelOf(members(t, s, "doc")); len(ms) != 2 || ms["observer"].ID == "" || ms["carol"].ID == "" {
		t.Fatalf("members after alice left: %v", ms)
	}
}

// TestTabsAtOnce: many tabs of one user opening at the same moment yield
// exactly one join, and closing at the same moment exactly one leave.
func TestTabsAtOnce(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	obs := testserver.Join(t, s.WS, "doc", "observer", "")
	url := testserver.WSURL(s.WS, "doc", testserver.Token(t, "alice", "", 0, nil))

	const tabs = 8
	for round := 0; round < 3; round++ {
		clients := make([]*testserver.Client, tabs)
		errs := make([]error, tabs)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); clients[i], errs[i] = testserver.TryJoinURL(url, nil) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, wait, "alice has all tabs", func() error {
			for _, m := range members(t, s, "doc") {
				if m.ID == "alice" && m.Conns == tabs {
					return nil
				}
			}
			return fmt.Errorf("members %v", members(t, s, "doc"))
		})
		for _, c := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		wg.Wait()
		obs.Await(t, wait, "alice's leave", func(f testserver.Frame) bool { return f.Type == "leave" && f.Member.ID == "alice" })
	}
	fence(t, obs)
	joins, leaves, updates := presenceOf(obs, "alice")
	if len(joins) != 3 || len(leaves) != 3 {
		t.Fatalf("3 rounds of %d tabs: observer saw %d joins and %d leaves of alice, want 3 and 3", tabs, len(joins), len(leaves))
	}
	// Between a join and its leave, the updates count the tabs up then down.
	if len(updates) != 3*2*(tabs-1) {
		t.Fatalf("observer saw %d updates of alice, want %d", len(updates), 3*2*(tabs-1))
	}
	if ms := members(t, s, "doc"); len(ms) != 1 {
		t.Fatalf("members: %v", ms)
	}
}

// TestSnapshotPlusEvents: clients that join while other users churn
// (joining, updating meta, leaving, from several goroutines) and apply
// their welcome snapshot and then every event hold exactly what
// GET /api/rooms/{room}/members says once the room is quiet.
func TestSnapshotPlusEvents(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	const room = "busy"
	first := testserver.Join(t, s.WS, room, "watcher-0", "")

	const churners, rounds = 6, 6
	var wg sync.WaitGroup
	errc := make(chan error, churners)
	for g := 0; g < churners; g++ {
		user := fmt.Sprintf("churn-%d", g)
		url := testserver.WSURL(s.WS, room, testserver.Token(t, user, strings.ToUpper(user), 0, nil))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- churn(url, g, rounds)
		}()
	}
	// More watchers arrive in the middle of the churn: after the first
	// has seen 10, 40 and 70 frames of it.
	watchers := []*testserver.Client{first}
	for i, after := range []int{10, 40, 70} {
		eventually(t, wait, "churn under way", func() error {
			if n := len(first.Frames()); n < after {
				return fmt.Errorf("%d frames", n)
			}
			return nil
		})
		watchers = append(watchers, testserver.Join(t, s.WS, room, fmt.Sprintf("watcher-%d", i+1), ""))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Quiet: every churner ended with its tabs of even g open and meta set.
	want := map[string]int{}
	for i := range watchers {
		want[fmt.Sprintf("watcher-%d", i)] = 1
	}
	for g := 0; g < churners; g += 2 {
		want[fmt.Sprintf("churn-%d", g)] = 2
	}
	var api []testserver.Member
	eventually(t, wait, "the room settles", func() error {
		api = members(t, s, room)
		got := map[string]int{}
		for _, m := range api {
			got[m.ID] = m.Conns
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("members %v, want %v", got, want)
		}
		return nil
	})
	for _, m := range api {
		if g := strings.TrimPrefix(m.ID, "churn-"); g != m.ID && compactJSON(m.Meta) != fmt.Sprintf(`{"g":%s,"round":%d}`, g, rounds) {
			t.Fatalf("%s has meta %s", m.ID, m.Meta)
		}
	}
	want2 := testserver.ModelOf(api).Full()
	for i, w := range watchers {
		// Fence: frames sent to the watcher before the pong are all read;
		// the room is quiet, so the model is final.
		fence(t, w)
		m := w.Model()
		t.Logf("watcher-%d: %d members in its welcome, %d frames after", i, len(w.Welcome.Members), len(w.Frames())-1)
		if got := m.Full(); got != want2 {
			t.Fatalf("watcher-%d's model differs from GET members:\nmodel: %s\nAPI:   %s", i, got, want2)
		}
	}
}

// churn joins and leaves a room as one user, with one or two tabs and meta
// updates; for even g it ends with two tabs open and meta {"g":g,"round":rounds}.
func churn(url string, g, rounds int) error {
	for r := 1; r <= rounds; r++ {
		tabs := 1 + (g+r)%2
		var cs []*testserver.Client
		for i := 0; i < tabs; i++ {
			c, err := testserver.TryJoinURL(url, nil)
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		meta, _ := json.Marshal(map[string]int{"g": g, "round": r})
		ref := fmt.Sprintf("meta-%d", r)
		if err := cs[0].WS.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"presence","ref":%q,"meta":%s}`, ref, meta))); err != nil {
			return err
		}
		if r == rounds && g%2 == 0 {
			// Stay, with two tabs and the meta acknowledged.
			if _, err := cs[0].TryAwait(wait, func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == ref }); err != nil {
				return fmt.Errorf("churn-%d: %v", g, err)
			}
			if tabs == 1 {
				if _, err := testserver.TryJoinURL(url, nil); err != nil {
					return err
				}
			}
			return nil
		}
		for _, c := range cs {
			c.Close()
		}
	}
	return nil
}
