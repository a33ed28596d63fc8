package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// Tests of the security findings: each one is held where a user meets it,
// the binary over HTTP and WebSocket, with bodies checked, not only
// statuses.

// TestRoomReadsRefusedWithoutData: every route of a room answers a request
// it may not serve with the error body and nothing else: no stored
// message, state or member leaks, whatever the credential (none, garbage,
// expired, issued in the future, another room's token, a token of another
// secret), in memory mode and across two instances on Redis. The API key
// and a token of the room read everything.
func TestRoomReadsRefusedWithoutData(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		s := testserver.Start(t, testserver.Options{})
		checkRoomReadsRefused(t, s, s)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		r := redisproc.Start(t)
		s := instances(t, r.URL(), 2, nil)
		checkRoomReadsRefused(t, s[0], s[1])
	})
}

func checkRoomReadsRefused(t *testing.T, writer, reader *testserver.Server) {
	const room = "private-hr"
	const secretMsg, secretState, secretUser = "SECRET-PAYROLL-42", "SECRET-STATE-7", "carol-the-member"
	c := testserver.Join(t, writer.WS, room, secretUser, "Carol")
	c.Send(t, map[string]any{"type": "publish", "ref": "p", "data": map[string]string{"text": secretMsg}})
	ack := c.Await(t, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "p" })
	if a := sendState(t, c, ack.Seq, map[string]string{"text": secretState}); a.Type != "ack" {
		t.Fatalf("state: %s", a.Raw)
	}
	leaks := func(body []byte) string {
		for _, s := range []string{secretMsg, secretState, secretUser, "Carol"} {
			if bytes.Contains(body, []byte(s)) {
				return s
			}
		}
		return ""
	}
	base := reader.URL + "/api/rooms/" + room
	// The reader instance holds the room's data (the API key sees it):
	// a refusal below that shows none of it is a refusal of real data.
	eventually(t, wait, "the reader instance to hold the room's data", func() error {
		for _, p := range []string{"/members", "/messages", "/state"} {
			if st, body := httpCall(t, http.MethodGet, base+p, testserver.APIKey, ""); st != http.StatusOK || leaks(body) == "" {
				return fmt.Errorf("GET %s with the API key: %d %s", p, st, body)
			}
		}
		return nil
	})

	now := time.Now()
	future := claims("mallory", time.Hour)
	future["iat"] = now.Add(10 * time.Minute).Unix()
	expired := claims("mallory", time.Hour)
	expired["exp"] = now.Add(-time.Minute).Unix()
	creds := []struct {
		name   string
		bearer string
		status int
		code   string
	}{
		{"none", "", http.StatusUnauthorized, "token_missing"},
		{"garbage", "garbage.token.here", http.StatusUnauthorized, "token_invalid"},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(testserver.Secret), expired), http.StatusUnauthorized, "token_expired"},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, []byte(testserver.Secret), future), http.StatusUnauthorized, "token_invalid"},
		{"another secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456"), claims("mallory", time.Hour)), http.StatusUnauthorized, "token_invalid"},
		{"another room", roomToken(t, "mallory", "other-room", "private-h"), http.StatusForbidden, "room_not_allowed"},
		{"a prefix of another room", roomToken(t, "mallory", "public-*"), http.StatusForbidden, "room_not_allowed"},
	}
	for _, cr := range creds {
		for _, p := range []string{"/members", "/messages", "/messages?since=0&limit=10", "/state"} {
			st, body := httpCall(t, http.MethodGet, base+p, cr.bearer, "")
			if st != cr.status {
				t.Errorf("GET %s with %s: HTTP %d, want %d: %s", p, cr.name, st, cr.status, body)
				continue
			}
			if s := leaks(body); s != "" {
				t.Errorf("GET %s with %s: the refusal's body leaks %q: %s", p, cr.name, s, body)
				continue
			}
			assertErrorBody(t, body, cr.code)
		}
		// The writing routes take the API key only: a user token, valid or
		// not, changes nothing and reads nothing.
		for _, w := range []struct{ method, path, body string }{
			{http.MethodPost, "/messages", `{"data":{"text":"forged"}}`},
			{http.MethodDelete, "", ""},
		} {
			st, body := httpCall(t, w.method, base+w.path, cr.bearer, w.body)
			if st != http.StatusUnauthorized || leaks(body) != "" {
				t.Errorf("%s %s with %s: HTTP %d %s, want 401 and no data", w.method, w.path, cr.name, st, body)
				continue
			}
			assertErrorBody(t, body, "api_key_required")
		}
		st, body := httpCall(t, http.MethodGet, reader.URL+"/api/rooms", cr.bearer, "")
		if st != http.StatusUnauthorized || strings.Contains(string(body), room) {
			t.Errorf("GET /api/rooms with %s: HTTP %d %s, want 401 and no room", cr.name, st, body)
		}
	}

	// Nothing a refused request did changed the room: the forged message
	// was not stored, the room was not deleted.
	page := getMessages(t, reader, room, "")
	if len(page.Messages) != 1 || !strings.Contains(string(page.Messages[0]), secretMsg) {
		t.Fatalf("the room's history changed under refused requests: %+v", page)
	}
	// A token of the room reads everything.
	tok := roomToken(t, "dave", room)
	for _, p := range []string{"/members", "/messages", "/state"} {
		if st, body := httpCall(t, http.MethodGet, base+p, tok, ""); st != http.StatusOK || leaks(body) == "" {
			t.Errorf("GET %s with the room's token: HTTP %d %s", p, st, body)
		}
	}
}

// TestDuplicateTypeKeyCannotPassTheSizeRule: only a state may pass
// MAX_MESSAGE_BYTES, and a frame naming its type twice cannot be sized as
// a state and then handled as a publish: a large one closes with 1009, a
// small one is a bad_request; neither is relayed nor stored.
func TestDuplicateTypeKeyCannotPassTheSizeRule(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_MESSAGE_BYTES": "1024"}})
	other := testserver.Join(t, s.WS, "dup", "bob", "")

	small := testserver.Join(t, s.WS, "dup", "alice", "")
	small.Send(t, `{"type":"state","type":"publish","ref":"d1","data":"x"}`)
	if e := small.AwaitType(t, "error", wait); e.Code != "bad_request" {
		t.Fatalf("a frame with two types: %s", e.Raw)
	}
	small.Send(t, `{"type":"publish","TYPE":"state","ref":"d2","data":"ok"}`) // names match exactly
	if a := small.AwaitType(t, "ack", wait); a.Ref != "d2" {
		t.Fatalf("ack: %s", a.Raw)
	}

	big := testserver.Join(t, s.WS, "dup", "mallory", "")
	big.Send(t, `{"type":"state","type":"publish","ref":"d3","data":"`+strings.Repeat("x", 4000)+`"}`)
	if code := big.WaitClose(t, wait); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
	for _, f := range big.Frames() {
		if f.Type == "ack" || f.Type == "message" {
			t.Fatalf("the oversize frame was handled: %s", f.Raw)
		}
	}
	fence(t, other)
	for _, f := range other.Frames() {
		if f.Type == "message" && len(f.Raw) > 1024 {
			t.Fatalf("relayed %d bytes", len(f.Raw))
		}
	}
	page := getMessages(t, s, "dup", "")
	if len(page.Messages) != 1 || !strings.Contains(string(page.Messages[0]), `"ok"`) {
		t.Fatalf("stored: %s", page.Messages)
	}
}
