package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// GET /api/rooms/{room}/messages: stored messages after since, at most
// limit, with the room's position and whether the history reaches back to
// since; ephemeral messages are not in it; limit is 1..1000.
func TestAPIMessages(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_SIZE": "10"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "api-msgs"
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		empty := getMessages(t, b, room, "")
		if empty.Epoch != pub.Welcome.Epoch || empty.Seq != 0 || len(empty.Messages) != 0 || !empty.Complete {
			t.Fatalf("messages of an empty room: %+v; want epoch %s, seq 0, none, complete", empty, pub.Welcome.Epoch)
		}
		ids := map[uint64]string{}
		for i := 1; i <= 11; i++ {
			ack := publishAcked(t, pub, map[string]any{"data": i})
			ids[ack.Seq] = ack.ID
			publishAcked(t, pub, map[string]any{"data": "cursor", "ephemeral": true})
		}
		status, body := httpCall(t, http.MethodPost, b.URL+"/api/rooms/"+room+"/messages", testserver.APIKey, `{"data":12}`)
		var posted struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if status != http.StatusAccepted || json.Unmarshal(body, &posted) != nil || posted.ID == "" || posted.Seq != 12 {
			t.Fatalf("POST message: HTTP %d %s; want 202 with id and seq 12", status, body)
		}
		ids[12] = posted.ID
		status, body = httpCall(t, http.MethodPost, b.URL+"/api/rooms/"+room+"/messages", testserver.APIKey, `{"data":"e","ephemeral":true}`)
		if status != http.StatusAccepted || len(rawKeys(t, string(body))["seq"]) != 0 {
			t.Fatalf("POST ephemeral message: HTTP %d %s; want 202 without seq", status, body)
		}

		check := func(query string, complete bool, first, last uint64) {
			t.Helper()
			for _, inst := range []*testserver.Server{a, b} {
				p := getMessages(t, inst, room, query)
				if p.Epoch != pub.Welcome.Epoch || p.Seq != 12 || p.Complete != complete {
					t.Fatalf("?%s on %s: epoch %s seq %d complete %v; want %s, 12, %v", query, inst.Addr, p.Epoch, p.Seq, p.Complete, pub.Welcome.Epoch, complete)
				}
				fs := p.frames(t)
				if first > last {
					if len(fs) != 0 {
						t.Fatalf("?%s: messages %v, want none", query, seqsOf(fs))
					}
					continue
				}
				checkStream(t, "?"+query, fs, first)
				if len(fs) != int(last-first+1) {
					t.Fatalf("?%s: seqs %v, want %d..%d", query, seqsOf(fs), first, last)
				}
				for _, f := range fs {
					if f.Type != "message" || f.Room != room || f.ID != ids[f.Seq] || f.From == nil || string(f.Data) != fmt.Sprint(f.Seq) {
						t.Fatalf("?%s: stored frame %s is not message seq %d (id %s)", query, f.Raw, f.Seq, ids[f.Seq])
					}
				}
			}
		}
		check("", false, 3, 12)        // since 0: seqs 1 and 2 were trimmed
		check("since=1", false, 3, 12) // seq 2 is gone
		check("since=2", true, 3, 12)  // everything after 2 is there
		check("since=5&limit=3", true, 6, 8)
		check("since=11", true, 12, 12)
		check("since=12", true, 1, 0)  // up to date
		check("since=99", false, 1, 0) // ahead of the room
		check("limit=1000", false, 3, 12)
		check("since=4&limit=1", true, 5, 5)

		for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=x", "since=-1", "since=x", "since=1.5"} {
			status, body := httpCall(t, http.MethodGet, a.URL+"/api/rooms/"+room+"/messages?"+q, testserver.APIKey, "")
			if status != http.StatusBadRequest {
				t.Fatalf("?%s: HTTP %d %s, want 400", q, status, body)
			}
		}
	})
}

// The stream's GET endpoints take the API key or a user token allowing
// the room; nothing else. POST and DELETE take the API key only.
func TestAPIStreamAuth(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	const room = "api-auth"
	pub := testserver.Join(t, s.WS, room, "pub", "Pub")
	publishAcked(t, pub, map[string]any{"data": 1})
	allowed := roomToken(t, "reader", room)
	wildcard := roomToken(t, "reader", "api-*")
	other := roomToken(t, "reader", "elsewhere")
	expired := sign(t, jwt.SigningMethodHS256, []byte(testserver.Secret), claims("reader", -time.Minute))
	for _, path := range []string{"/messages", "/state"} {
		u := s.URL + "/api/rooms/" + room + path
		for _, c := range []struct {
			name, bearer string
			status       int
		}{
			{"no credentials", "", 401},
			{"wrong API key", "not-the-key", 401},
			{"expired token", expired, 401},
			{"token of another room", other, 403},
			{"token of the room", allowed, 200},
			{"token of a pattern", wildcard, 200},
			{"API key", testserver.APIKey, 200},
		} {
			status, body := httpCall(t, http.MethodGet, u, c.bearer, "")
			if status != c.status {
				t.Fatalf("GET %s with %s: HTTP %d %s, want %d", path, c.name, status, body, c.status)
			}
			if status == 200 {
				if k := rawKeys(t, string(body)); len(k["room"]) == 0 || len(k["epoch"]) == 0 || len(k["seq"]) == 0 {
					t.Fatalf("GET %s with %s: %s", path, c.name, body)
				}
			}
		}
		// As a query parameter, the way a browser without headers would.
		status, body := httpCall(t, http.MethodGet, u+"?token="+allowed, "", "")
		if status != 200 {
			t.Fatalf("GET %s?token=: HTTP %d %s", path, status, body)
		}
	}
	for _, bearer := range []string{"", allowed} {
		if status, body := httpCall(t, http.MethodPost, s.URL+"/api/rooms/"+room+"/messages", bearer, `{"data":1}`); status != 401 {
			t.Fatalf("POST messages with %q: HTTP %d %s, want 401", bearer, status, body)
		}
		if status, body := httpCall(t, http.MethodDelete, s.URL+"/api/rooms/"+room, bearer, ""); status != 401 {
			t.Fatalf("DELETE room with %q: HTTP %d %s, want 401", bearer, status, body)
		}
	}
	if p := getMessages(t, s, room, ""); p.Seq != 1 || len(p.Messages) != 1 {
		t.Fatalf("refused requests changed the room: seq %d, %d messages", p.Seq, len(p.Messages))
	}
	for _, bad := range []string{"/api/rooms/bad%20room/messages", "/api/rooms/bad%20room/state"} {
		if status, body := httpCall(t, http.MethodGet, s.URL+bad, testserver.APIKey, ""); status != 400 {
			t.Fatalf("GET %s: HTTP %d %s, want 400 bad_room", bad, status, body)
		}
	}
}

// GET state is null before any state and the latest one after; DELETE
// ends the room's history: every socket of the room, on every instance,
// is closed with 4010, the room starts a new epoch at seq 0 without state,
// and a resume with an old position is not recovered.
func TestAPIStateAndDelete(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		const room = "api-del"
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		subA := testserver.Join(t, a.WS, room, "sub-a", "")
		subB := testserver.Join(t, b.WS, room, "sub-b", "")
		bystander := testserver.Join(t, b.WS, "api-del-other", "by", "")
		oldEpoch := pub.Welcome.Epoch

		st := getState(t, b, room)
		if st.State != nil || st.Epoch != oldEpoch || st.Seq != 0 {
			t.Fatalf("state before any: %s; want null at %s:0", st.raw, oldEpoch)
		}
		for i := 1; i <= 3; i++ {
			publishAcked(t, pub, map[string]any{"data": i})
		}
		if f := sendState(t, pub, 2, map[string]any{"upTo": 2}); f.Type != "ack" {
			t.Fatalf("state: %s", f.Raw)
		}
		for _, inst := range []*testserver.Server{a, b} {
			st = getState(t, inst, room)
			if st.State == nil || st.State.Seq != 2 || !sameJSON(st.State.Data, `{"upTo":2}`) || st.Seq != 3 || st.Epoch != oldEpoch {
				t.Fatalf("state on %s: %s; want {upTo:2} at 2, room at 3", inst.Addr, st.raw)
			}
		}
		awaitSeq(t, subB, 3)
		pos := fmt.Sprintf("%s:%d", oldEpoch, 3)

		status, body := httpCall(t, http.MethodDelete, b.URL+"/api/rooms/"+room, testserver.APIKey, "")
		if status != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("DELETE: HTTP %d %q, want 204 without a body", status, body)
		}
		for _, c := range []*testserver.Client{pub, subA, subB} {
			if code := c.WaitClose(t, wait); code != 4010 {
				t.Fatalf("%s closed with %d after DELETE, want 4010", c.Welcome.Me.ID, code)
			}
		}
		for _, inst := range []*testserver.Server{a, b} {
			st = getState(t, inst, room)
			if st.State != nil || st.Seq != 0 || st.Epoch == oldEpoch {
				t.Fatalf("state on %s after DELETE: %s; want null at a new epoch, seq 0", inst.Addr, st.raw)
			}
			p := getMessages(t, inst, room, "")
			if len(p.Messages) != 0 || p.Seq != 0 || p.Epoch != st.Epoch || !p.Complete {
				t.Fatalf("messages on %s after DELETE: epoch %s seq %d, %d messages", inst.Addr, p.Epoch, p.Seq, len(p.Messages))
			}
		}
		newEpoch := st.Epoch
		for _, inst := range []*testserver.Server{a, b} {
			c := testserver.JoinSince(t, inst.WS, room, "back", "Back", pos, nil)
			if w := c.Welcome; w.Recovered == nil || *w.Recovered || w.Epoch != newEpoch || w.Seq != 0 || w.State != nil {
				t.Fatalf("resume at %s on %s after DELETE: %s; want recovered false at %s:0 without state", pos, inst.Addr, w.Raw, newEpoch)
			}
			c.Close()
		}
		start := testserver.JoinSince(t, b.WS, room, "fresh", "Fresh", "start", nil)
		if w := start.Welcome; w.State != nil || w.Epoch != newEpoch || w.Seq != 0 {
			t.Fatalf("since=start after DELETE: %s", w.Raw)
		}
		pub = testserver.Join(t, a.WS, room, "pub", "Pub")
		if ack := publishAcked(t, pub, map[string]any{"data": "again"}); ack.Seq != 1 {
			t.Fatalf("first message after DELETE: %s; want seq 1", ack.Raw)
		}
		if f := start.AwaitType(t, "message", wait); f.Seq != 1 {
			t.Fatalf("after DELETE: %s", f.Raw)
		}
		// Another room's socket was not touched.
		bystander.Send(t, map[string]any{"type": "ping", "ref": "still"})
		bystander.Await(t, wait, "pong", func(f testserver.Frame) bool { return f.Type == "pong" && f.Ref == "still" })
		// Deleting a room nobody uses is fine too.
		if status, body := httpCall(t, http.MethodDelete, a.URL+"/api/rooms/never-used", testserver.APIKey, ""); status != http.StatusNoContent {
			t.Fatalf("DELETE of an unused room: HTTP %d %s", status, body)
		}
	})
}
