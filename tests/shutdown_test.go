package tests

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestShutdown: on SIGTERM every client gets close 1001, /readyz and new
// upgrades answer 503 while the instance drains, and the process exits 0
// within 10 s. Tokens, the API key and the secret never reach the output.
func TestShutdown(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	tok := testserver.Token(t, "alice", "", 0, nil)
	a := testserver.JoinURL(t, testserver.WSURL(s.WS, "r", tok), nil)
	a2 := testserver.JoinURL(t, testserver.WSURL(s.WS, "r", tok), nil)
	b := testserver.Join(t, s.WS, "r", "bob", "")
	c := testserver.Join(t, s.WS, "other", "carol", "")
	// A client that does not read answers the close frame late, which keeps
	// the instance draining for a moment: long enough to look at it.
	stubborn, _, err := testserver.Dial(testserver.WSURL(s.WS, "r", testserver.Token(t, "dave", "", 0, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stubborn.Close()
	eventually(t, wait, "dave present", func() error {
		if n := len(members(t, s, "r")); n != 3 {
			return errors.New("not yet")
		}
		return nil
	})

	type stopped struct {
		err  error
		took time.Duration
	}
	stop := make(chan stopped, 1)
	go func() { err, took := s.Stop(15 * time.Second); stop <- stopped{err, took} }()

	for _, cl := range []*testserver.Client{a, a2, b, c} {
		if code := cl.WaitClose(t, wait); code != 1001 {
			t.Fatalf("close code %d, want 1001", code)
		}
	}

	// While draining: /readyz is 503 and an upgrade is refused with 503.
	eventually(t, wait, "/readyz 503", func() error {
		status, body := httpCall(t, http.MethodGet, s.URL+"/readyz", "", "")
		if status != 503 {
			return errors.New(string(body))
		}
		assertErrorBody(t, body, "not_ready")
		return nil
	})
	status, body := upgradeRequest(t, testserver.WSURL(s.URL, "r", tok), nil)
	if status != 503 {
		t.Fatalf("upgrade while draining: HTTP %d %s", status, body)
	}
	assertErrorBody(t, body, "draining")

	// The stubborn client finds the 1001 waiting for it.
	_ = stubborn.SetReadDeadline(time.Now().Add(wait))
	var ce *websocket.CloseError
	for {
		_, _, err := stubborn.ReadMessage()
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("stubborn client: %v, want close 1001", err)
			}
			break
		}
	}
	if ce.Code != 1001 {
		t.Fatalf("stubborn client: close code %d, want 1001", ce.Code)
	}

	r := <-stop
	if r.err != nil {
		t.Fatalf("exit: %v after %v\n%s", r.err, r.took, s.Output())
	}
	t.Logf("exited %v after SIGTERM", r.took)
	if r.took > 10*time.Second {
		t.Fatalf("exit took %v, want within 10 s", r.took)
	}
	out := s.Output()
	for _, secret := range []string{tok, testserver.APIKey, testserver.Secret} {
		if strings.Contains(out, secret) {
			t.Fatalf("the output contains a secret or token:\n%s", out)
		}
	}
}
