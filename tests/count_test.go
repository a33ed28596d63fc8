package tests

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

func isCount(n int) func(testserver.Frame) bool {
	return func(f testserver.Frame) bool { return f.Type == "count" && f.Count != nil && *f.Count == n }
}

// A count-mode connection (presence=count) is a member like any other for
// everyone else, but itself gets the member count, at most once a second,
// and none of the presence events: a broadcast-style room of thousands
// costs it one small frame a second.
func TestPresenceCountMode(t *testing.T) {
	t.Parallel()
	redisEngines(t, 2, nil, func(t *testing.T, s []*testserver.Server) {
		alice := testserver.Join(t, s[0].WS, "stage", "alice", "Alice")
		bob := testserver.Join(t, s[1].WS, "stage", "bob", "Bob")
		alice.Await(t, wait, "bob's join", isFrame("join", "bob"))

		viewer := testserver.JoinSince(t, s[1].WS, "stage", "viewer", "Viewer", "", url.Values{"presence": {"count"}})
		if w := viewer.Welcome; w.Count == nil || *w.Count != 3 || len(w.Members) != 0 || w.Me == nil || w.Me.ID != "viewer" {
			t.Fatalf("count-mode welcome: %s", w.Raw)
		}
		// Everyone else sees the viewer as a member.
		alice.Await(t, wait, "the viewer's join", isFrame("join", "viewer"))
		bob.Await(t, wait, "the viewer's join", isFrame("join", "viewer"))

		// Three more come, one goes: the viewer gets counts, no events.
		var more []*testserver.Client
		for _, u := range []string{"carol", "dave", "erin"} {
			more = append(more, testserver.Join(t, s[0].WS, "stage", u, u))
		}
		viewer.Await(t, 5*time.Second, "count 6", isCount(6))
		more[0].Close()
		viewer.Await(t, 5*time.Second, "count 5", isCount(5))

		// Messages still reach it.
		alice.Send(t, map[string]any{"type": "publish", "data": "hello stage"})
		viewer.Await(t, wait, "alice's message", func(f testserver.Frame) bool { return f.Type == "message" && string(f.Data) == `"hello stage"` })
		counts := 0
		for _, f := range viewer.Frames() {
			switch f.Type {
			case "join", "leave", "update", "sync":
				t.Fatalf("count-mode connection got a %s frame: %s", f.Type, f.Raw)
			case "count":
				counts++
			}
		}
		if counts > 4 {
			t.Fatalf("%d count frames for 4 changes within seconds: they are not paced", counts)
		}
	})
}

func TestPresenceModeIsChecked(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	_, resp, err := testserver.Dial(testserver.SinceURL(s.WS, "r", testserver.Token(t, "u", "U", 0, nil), "", url.Values{"presence": {"some"}}), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("presence=some: %v %v, want 400", err, resp)
	}
}
