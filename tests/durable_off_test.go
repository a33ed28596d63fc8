package tests

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/roomcast/roomcast/tests/testserver"
)

// With ROOMCAST_HISTORY_SIZE=0 nothing is stored: messages and acks carry
// no seq, the welcome no epoch or seq, a resume is never recovered, state
// frames are refused and nobody is asked for one; keys still make a
// re-sent publish a duplicate.
func TestStoringOff(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_SIZE": "0"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "off"
		noPosition := func(what string, f testserver.Frame) {
			t.Helper()
			k := rawKeys(t, f.Raw)
			for _, field := range []string{"epoch", "seq", "state"} {
				if len(k[field]) != 0 {
					t.Fatalf("%s has %s with storing off: %s", what, field, f.Raw)
				}
			}
		}
		sub := testserver.JoinSince(t, b.WS, room, "sub", "Sub", "", stateCapable)
		noPosition("live welcome", sub.Welcome)
		if sub.Welcome.Recovered != nil {
			t.Fatalf("live welcome with recovered: %s", sub.Welcome.Raw)
		}
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		var ids []string
		for i := 0; i < 12; i++ {
			ack := publishAcked(t, pub, map[string]any{"data": i})
			noPosition("ack", ack)
			ids = append(ids, ack.ID)
		}
		first := publishAcked(t, pub, map[string]any{"data": "keyed", "key": "k"})
		again := publishAcked(t, pub, map[string]any{"data": "keyed", "key": "k"})
		if again.ID != first.ID {
			t.Fatalf("re-sent keyed publish acked %s, want the first's id %s", again.Raw, first.ID)
		}
		noPosition("ack of a duplicate", again)
		status, body := httpCall(t, http.MethodPost, a.URL+"/api/rooms/"+room+"/messages", testserver.APIKey, `{"data":"posted"}`)
		if status != http.StatusAccepted || len(rawKeys(t, string(body))["seq"]) != 0 {
			t.Fatalf("POST with storing off: HTTP %d %s; want 202 without seq", status, body)
		}
		var posted struct{ ID string }
		_ = json.Unmarshal(body, &posted)
		ids = append(ids, first.ID, posted.ID)

		for _, id := range ids {
			m := sub.AwaitType(t, "message", wait)
			if m.ID != id {
				t.Fatalf("subscriber got %s, want message %s", m.Raw, id)
			}
			noPosition("message", m)
		}
		fence(t, sub)
		for _, f := range sub.Frames() {
			if f.Type == "state_request" {
				t.Fatalf("state_request with storing off: %s", f.Raw)
			}
			if f.Type == "message" && string(f.Data) == `"keyed"` && f.ID != first.ID {
				t.Fatalf("the keyed message was delivered twice: %s", f.Raw)
			}
		}

		for _, since := range []string{"0123456789abcdef:5", "abc:0", "start"} {
			c := testserver.JoinSince(t, b.WS, room, "late", "Late", since, nil)
			noPosition("welcome of since="+since, c.Welcome)
			if since == "start" {
				if c.Welcome.Recovered != nil {
					t.Fatalf("since=start with storing off: %s", c.Welcome.Raw)
				}
			} else if r := c.Welcome.Recovered; r == nil || *r {
				t.Fatalf("since=%s with storing off: %s; want recovered false", since, c.Welcome.Raw)
			}
			fence(t, c)
			for _, f := range c.Frames() {
				if f.Type == "message" {
					t.Fatalf("since=%s replayed %s with storing off", since, f.Raw)
				}
			}
			c.Close()
		}
		for _, seq := range []uint64{0, 1} {
			if f := sendState(t, pub, seq, map[string]any{"x": 1}); f.Type != "error" {
				t.Fatalf("state frame with storing off: %s; want an error", f.Raw)
			}
		}
		if st := getState(t, a, room); st.State != nil {
			t.Fatalf("state with storing off: %s", st.raw)
		}
		if p := getMessages(t, a, room, ""); len(p.Messages) != 0 {
			t.Fatalf("history with storing off holds %d messages", len(p.Messages))
		}
	})
}
