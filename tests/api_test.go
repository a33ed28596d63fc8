package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestHTTPAPI covers the server-side API: authentication of each route,
// the room list, members with the API key or a user token, posting a
// message as "server", the size limit, and the probes.
func TestHTTPAPI(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_MESSAGE_BYTES": "1024"}})
	key := testserver.APIKey
	userTok := testserver.Token(t, "alice", "Alice", 0, []string{"doc-*"})

	t.Run("probes", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if status, body := httpCall(t, http.MethodGet, s.URL+p, "", ""); status != 200 {
				t.Fatalf("%s: HTTP %d %s", p, status, body)
			}
		}
		status, body := httpCall(t, http.MethodGet, s.URL+"/api/nope", key, "")
		if status != 404 {
			t.Fatalf("/api/nope: HTTP %d", status)
		}
		assertErrorBody(t, body, "not_found")
	})

	t.Run("rooms needs the API key", func(t *testing.T) {
		for _, bearer := range []string{"", "wrong-key", userTok, key + "x"} {
			status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms", bearer, "")
			if status != 401 {
				t.Fatalf("bearer %.10q: HTTP %d %s", bearer, status, body)
			}
			assertErrorBody(t, body, "api_key_required")
		}
		// An empty instance lists [] (never null).
		status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms", key, "")
		if status != 200 || !sameJSON(body, `{"rooms":[]}`) {
			t.Fatalf("HTTP %d %s", status, body)
		}
	})

	alice := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", userTok), nil)
	bob := testserver.Join(t, s.WS, "doc-1", "bob", "Bob")
	carol := testserver.Join(t, s.WS, "doc-2", "carol", "")
	fence(t, alice)
	fence(t, bob)

	t.Run("rooms", func(t *testing.T) {
		status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms", key, "")
		if status != 200 || !sameJSON(body, `{"rooms":[{"room":"doc-1","members":2},{"room":"doc-2","members":1}]}`) {
			t.Fatalf("HTTP %d %s", status, body)
		}
	})

	t.Run("members", func(t *testing.T) {
		ms := members(t, s, "doc-1")
		if len(ms) != 2 || ms[0].ID != "alice" || ms[0].Name != "Alice" || ms[1].ID != "bob" || ms[0].Conns != 1 ||
			compactJSON(ms[0].Meta) != "{}" || ms[0].Since == 0 || ms[0].Since > ms[1].Since {
			t.Fatalf("members: %v", ms)
		}
		// The member list is what the last joiner's welcome said.
		if got, want := testserver.ModelOf(ms).String(), testserver.ModelOf(bob.Welcome.Members).String(); got != want {
			t.Fatalf("members %s, bob's welcome %s", got, want)
		}
		// A user token that allows the room works too.
		status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms/doc-1/members", userTok, "")
		if status != 200 {
			t.Fatalf("user token: HTTP %d %s", status, body)
		}
		var r struct {
			Room    string              `json:"room"`
			Members []testserver.Member `json:"members"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Room != "doc-1" || len(r.Members) != 2 {
			t.Fatalf("user token: %s", body)
		}
		// An empty room is [] (never null).
		status, body = httpCall(t, http.MethodGet, s.URL+"/api/rooms/doc-9/members", key, "")
		if status != 200 || !sameJSON(body, `{"room":"doc-9","members":[]}`) {
			t.Fatalf("empty room: HTTP %d %s", status, body)
		}
		expired := sign(t, jwt.SigningMethodHS256, []byte(testserver.Secret), claims("alice", -5*time.Second))
		refusals := []struct {
			path, bearer string
			status       int
			code         string
		}{
			{"other", userTok, 403, "room_not_allowed"},
			{"doc-1", "", 401, "token_missing"},
			{"doc-1", "not.a.jwt", 401, "token_invalid"},
			{"doc-1", expired, 401, "token_expired"},
			{"bad%20room", key, 400, "bad_room"},
		}
		for _, c := range refusals {
			status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+c.path+"/members", c.bearer, "")
			if status != c.status {
				t.Fatalf("%s with %.10q: HTTP %d %s, want %d", c.path, c.bearer, status, body, c.status)
			}
			assertErrorBody(t, body, c.code)
		}
	})

	t.Run("post message", func(t *testing.T) {
		url := s.URL + "/api/rooms/doc-1/messages"
		for _, bearer := range []string{"", userTok, "wrong"} {
			status, body := httpCall(t, http.MethodPost, url, bearer, `{"data":1}`)
			if status != 401 {
				t.Fatalf("bearer %.10q: HTTP %d %s", bearer, status, body)
			}
			assertErrorBody(t, body, "api_key_required")
		}
		status, body := httpCall(t, http.MethodPost, url, key, `{"data":{"text":"from the backend"}}`)
		if status != 202 {
			t.Fatalf("HTTP %d %s", status, body)
		}
		var r map[string]any
		if err := json.Unmarshal(body, &r); err != nil || len(r) != 2 || r["id"] == "" || r["seq"] != float64(1) {
			t.Fatalf("body %s, want {\"id\",\"seq\":1}", body)
		}
		for _, c := range []*testserver.Client{alice, bob} {
			m := c.AwaitType(t, "message", wait)
			if m.ID != r["id"] || m.Seq != 1 || m.Room != "doc-1" || m.From == nil || m.From.User != "server" || !sameJSON(m.Data, `{"text":"from the backend"}`) || m.TS == 0 {
				t.Fatalf("message: %s", m.Raw)
			}
			var raw struct {
				From map[string]any `json:"from"`
			}
			if err := json.Unmarshal([]byte(m.Raw), &raw); err != nil || len(raw.From) != 1 {
				t.Fatalf("from must be {\"user\":\"server\"} without conn: %s", m.Raw)
			}
		}

		bad := []struct {
			body   string
			status int
			code   string
		}{
			{`not json`, 400, "bad_request"},
			{`{}`, 400, "bad_request"},
			{`{"data":"` + strings.Repeat("x", 1500) + `"}`, 413, "too_large"},  // over MAX_MESSAGE_BYTES
			{`{"data":"` + strings.Repeat("x", 20000) + `"}`, 413, "too_large"}, // over the body limit as well
		}
		for _, c := range bad {
			status, body := httpCall(t, http.MethodPost, url, key, c.body)
			if status != c.status {
				t.Fatalf("body %.30q: HTTP %d %s, want %d", c.body, status, body, c.status)
			}
			assertErrorBody(t, body, c.code)
		}
		status, body = httpCall(t, http.MethodPost, s.URL+"/api/rooms/bad%20room/messages", key, `{"data":1}`)
		if status != 400 {
			t.Fatalf("bad room: HTTP %d %s", status, body)
		}
		assertErrorBody(t, body, "bad_room")
		// None of the refused posts reached the room: the next message is.
		if status, body := httpCall(t, http.MethodPost, url, key, `{"data":"next"}`); status != 202 {
			t.Fatalf("HTTP %d %s", status, body)
		}
		if m := bob.AwaitType(t, "message", wait); string(m.Data) != `"next"` {
			t.Fatalf("bob got %s, want the next message", m.Raw)
		}
		// A room nobody is in accepts the post (nobody receives it).
		if status, body := httpCall(t, http.MethodPost, s.URL+"/api/rooms/empty/messages", key, `{"data":1}`); status != 202 {
			t.Fatalf("empty room: HTTP %d %s", status, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		status, body := httpCall(t, http.MethodGet, s.URL+"/metrics", "", "")
		if status != 200 || !strings.Contains(string(body), "\nroomcast_connections ") {
			t.Fatalf("HTTP %d, roomcast_connections missing:\n%.500s", status, body)
		}
		if v := metric(t, s, "roomcast_connections"); v != 3 {
			t.Fatalf("roomcast_connections %v, want 3", v)
		}
	})

	// Leaving empties the room from the list.
	carol.Close()
	eventually(t, wait, "doc-2 gone from /api/rooms", func() error {
		_, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms", key, "")
		if !sameJSON(body, `{"rooms":[{"room":"doc-1","members":2}]}`) {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	if out := s.Output(); strings.Contains(out, userTok) || strings.Contains(out, key) || strings.Contains(out, testserver.Secret) {
		t.Fatalf("a token, the API key or the secret is in the server's output:\n%s", out)
	}
}

// The close codes the server sends are counted in /metrics.
func TestMetricsCountCloses(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_MESSAGE_BYTES": "1024"}})
	c := testserver.Join(t, s.WS, "metrics", "big-sender", "")
	c.Send(t, strings.Repeat("x", 2000))
	if code := c.WaitClose(t, wait); code != 1009 {
		t.Fatalf("close %d, want 1009", code)
	}
	deadline := time.Now().Add(wait)
	for {
		_, body, err := testserver.Get(context.Background(), s.URL+"/metrics", "")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), `roomcast_closes_total{code="1009"} 1`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no roomcast_closes_total{code=\"1009\"} 1 in /metrics")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
