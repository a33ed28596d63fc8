package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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

// TestSlowAndSilentSocketsAreClosed: a socket that sends part of its
// request headers, or nothing at all, is closed after READ_TIMEOUT; a
// WebSocket, once upgraded, keeps no such deadline.
func TestSlowAndSilentSocketsAreClosed(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_READ_TIMEOUT": "1s"}})
	var socks []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			fmt.Fprintf(c, "GET /ws/r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n") // never finished
		}
		socks = append(socks, c)
	}
	ws := testserver.Join(t, s.WS, "r", "alice", "")
	for i, c := range socks {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		for {
			if _, err := c.Read(b); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("socket %d still open after 10 s with READ_TIMEOUT=1s", i)
				}
				break // closed (a 408 may come first)
			}
		}
	}
	time.Sleep(1500 * time.Millisecond)
	ws.Send(t, map[string]any{"type": "ping", "ref": "alive"})
	if p := ws.AwaitType(t, "pong", wait); p.Ref != "alive" {
		t.Fatalf("pong: %s", p.Raw)
	}
}

// TestDescriptorLimitDoesNotEndTheServer: with 256 descriptors, 300 idle
// sockets neither end the process nor keep it from serving once they go.
// With the default cap the sockets over it are answered 503; with a cap
// above the limit, accept runs out of descriptors and is retried.
func TestDescriptorLimitDoesNotEndTheServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"default cap", map[string]string{"ROOMCAST_READ_TIMEOUT": "1m"}},
		{"cap above the limit", map[string]string{"ROOMCAST_READ_TIMEOUT": "1m", "ROOMCAST_MAX_CONNS": "10000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testserver.Start(t, testserver.Options{NoFile: 256, Env: tc.env})
			var socks []net.Conn
			refused := 0
			for i := 0; i < 300; i++ {
				c, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
				if err != nil {
					continue // the backlog is full: refused by the kernel
				}
				socks = append(socks, c)
			}
			for _, c := range socks {
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				b := make([]byte, 256)
				if n, _ := c.Read(b); n > 0 && strings.Contains(string(b[:n]), "503") {
					refused++
				}
			}
			select {
			case <-s.Exited():
				t.Fatalf("the server exited with 300 idle sockets: %s", s.Output())
			case <-time.After(500 * time.Millisecond):
			}
			for _, c := range socks {
				c.Close()
			}
			if tc.env["ROOMCAST_MAX_CONNS"] == "" && refused == 0 {
				t.Errorf("no socket over the default cap was answered 503")
			}
			eventually(t, 10*time.Second, "the server to serve again", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				resp, _, err := testserver.Get(ctx, s.URL+"/healthz", "")
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("healthz %d", resp.StatusCode)
				}
				return nil
			})
			c := testserver.Join(t, s.WS, "r", "alice", "")
			c.Send(t, map[string]any{"type": "ping", "ref": "alive"})
			c.AwaitType(t, "pong", wait)
			t.Logf("%d sockets connected, %d answered 503, accept errors %v", len(socks), refused, metric(t, s, "roomcast_accept_errors_total"))
		})
	}
}

// TestConnectionsPerAddressCap: MAX_CONNS_PER_IP sockets from one address
// are served, the next is answered 429 with the error body, and a place
// frees up when one closes.
func TestConnectionsPerAddressCap(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_CONNS_PER_IP": "4"}})
	var cs []*testserver.Client
	for i := 0; i < 4; i++ {
		cs = append(cs, testserver.Join(t, s.WS, "r", fmt.Sprint("u", i), ""))
	}
	status, body := upgradeRequest(t, testserver.WSURL(s.URL, "r", testserver.Token(t, "u9", "", 0, nil)), nil)
	if status != http.StatusTooManyRequests {
		t.Fatalf("5th socket: HTTP %d %s", status, body)
	}
	assertErrorBody(t, body, "too_many_connections")
	cs[0].Close()
	eventually(t, wait, "a place to free up", func() error {
		c, err := testserver.TryJoinURL(testserver.WSURL(s.WS, "r", testserver.Token(t, "u9", "", 0, nil)), nil)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	for _, c := range cs[1:] {
		c.Close()
	}
	// The closes reach the server a moment later: /metrics is one more
	// socket from this address.
	eventually(t, wait, "the refusal counted", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, body, err := testserver.Get(ctx, s.URL+"/metrics", "")
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/metrics: %v %v", resp, err)
		}
		if !strings.Contains(string(body), `roomcast_connections_refused_total{reason="ip_cap"} `) {
			return errors.New("no ip_cap refusal counted")
		}
		return nil
	})
}

// TestReadyzShowsNoBackendDetail: /readyz answers anyone who reaches the
// port, so with Redis down its body says what is not ready in general
// terms; the address and the error text are in the log only.
func TestReadyzShowsNoBackendDetail(t *testing.T) {
	t.Parallel()
	r := redisproc.Start(t)
	s := instances(t, r.URL(), 1, nil)[0]
	r.Kill()
	var body []byte
	eventually(t, 10*time.Second, "/readyz 503", func() error {
		var st int
		st, body = httpCall(t, http.MethodGet, s.URL+"/readyz", "", "")
		if st != http.StatusServiceUnavailable {
			return fmt.Errorf("HTTP %d %s", st, body)
		}
		return nil
	})
	assertErrorBody(t, body, "not_ready")
	port := r.Addr()[strings.LastIndexByte(r.Addr(), ':')+1:]
	for _, detail := range []string{port, "127.0.0.1", "dial", "refused", "EOF", "i/o timeout"} {
		if strings.Contains(string(body), detail) {
			t.Fatalf("/readyz body shows %q: %s", detail, body)
		}
	}
	eventually(t, 5*time.Second, "the cause in the log", func() error {
		if !strings.Contains(s.Output(), `"msg":"not ready"`) || !strings.Contains(s.Output(), port) {
			return errors.New("no log line with the cause")
		}
		return nil
	})
}

// TestReadingARoomCreatesNothing: reads of rooms nobody used answer empty
// (no epoch, no state, no messages, no members) and write nothing: no
// Redis key, and the memory engine starts no stream (the second read
// still finds none).
func TestReadingARoomCreatesNothing(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, s *testserver.Server) {
		for i := 0; i < 20; i++ {
			room := fmt.Sprint("ghost-", i)
			for round := 0; round < 2; round++ {
				for _, p := range []string{"/state", "/messages", "/members"} {
					st, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+p, testserver.APIKey, "")
					if st != http.StatusOK {
						t.Fatalf("GET %s%s: HTTP %d %s", room, p, st, body)
					}
					var page struct {
						Epoch    *string           `json:"epoch"`
						Seq      uint64            `json:"seq"`
						State    json.RawMessage   `json:"state"`
						Messages []json.RawMessage `json:"messages"`
						Members  []json.RawMessage `json:"members"`
					}
					if err := json.Unmarshal(body, &page); err != nil {
						t.Fatal(err)
					}
					if page.Epoch != nil && *page.Epoch != "" || page.Seq != 0 || len(page.Messages) != 0 || len(page.Members) != 0 ||
						len(page.State) != 0 && string(page.State) != "null" {
						t.Fatalf("GET %s%s (read %d): %s, want an empty answer", room, p, round+1, body)
					}
				}
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		check(t, testserver.Start(t, testserver.Options{}))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		r := redisproc.Start(t)
		s := instances(t, r.URL(), 1, nil)[0]
		check(t, s)
		keys, err := r.Client(t).Keys(context.Background(), "*ghost*").Result()
		if err != nil || len(keys) != 0 {
			t.Fatalf("reads created keys %v (%v)", keys, err)
		}
	})
}
