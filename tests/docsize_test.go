package tests

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	yjsproto "github.com/roomcast/roomcast/rooms/yjs"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// MAX_DOC_BYTES and MAX_INFLIGHT_BYTES: a document cannot grow past its
// limit, the socket that tried is closed and backs off, and big frames in
// flight share one budget.

// closeOf reads until the server closes ws and returns its close frame.
func closeOf(t *testing.T, ws *websocket.Conn, within time.Duration) *websocket.CloseError {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce
			}
			t.Fatalf("socket ended without a close frame: %v", err)
		}
	}
}

// upgradeRefusal sends an upgrade of user to /yjs/{room} and returns the
// status, the Retry-After header and the body.
func upgradeRefusal(t *testing.T, s *testserver.Server, room, user string) (int, string, []byte) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(s.WS+"/yjs/"+room+"?token="+testserver.Token(t, user, user, 0, nil), nil)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols, "", nil
	}
	if resp == nil {
		t.Fatalf("upgrade of %s in %s: %v", user, room, err)
	}
	defer resp.Body.Close()
	var body []byte
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		body = append(body, sc.Bytes()...)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

// textUpdate is a Yjs update (v1) by client inserting text into the root
// Y.Text "text": one item, no origin, no deletions.
func textUpdate(client uint64, text string) []byte {
	b := binary.AppendUvarint(nil, 1) // clients
	b = binary.AppendUvarint(b, 1)    // structs of this client
	b = binary.AppendUvarint(b, client)
	b = binary.AppendUvarint(b, 0) // clock
	b = append(b, 4)               // ContentString, parent named below
	b = binary.AppendUvarint(b, 1) // the parent is a root type
	b = binary.AppendUvarint(b, 4)
	b = append(b, "text"...)
	b = binary.AppendUvarint(b, uint64(len(text)))
	b = append(b, text...)
	return binary.AppendUvarint(b, 0) // delete set: no clients
}

func TestDocSizeLimitRefusesTheUpdateThatWouldPassIt(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROOMCAST_MAX_DOC_BYTES": "262144"}
	engines(t, env, func(t *testing.T, a, b *testserver.Server) {
		p := yjs.StartPeers(t)
		connectSynced(t, p, "a", yjsURL(a), "big", "alice")
		connectSynced(t, p, "b", yjsURL(b), "big", "bob")
		// Two pastes of 100 KB fit in 256 KiB.
		for _, c := range []string{"A", "B"} {
			p.Do("insert", "a", map[string]any{"text": strings.Repeat(c, 100000)})
			p.Eventually(wait, "bob has the paste", func() (bool, string) {
				n := len(p.Content("b").Text)
				return strings.Count(p.Content("b").Text, c) == 100000, fmt.Sprint(n, " bytes")
			})
		}
		// The third would take the document past it.
		mark := p.Mark()
		p.Do("insert", "a", map[string]any{"text": "REFUSED" + strings.Repeat("C", 100000)})
		e := p.AwaitAfter(mark, wait, "alice's socket closed", func(e yjs.Event) bool { return e.Ev == "close" && e.ID == "a" })
		p.Do("destroy", "a", nil)
		if e.Code != 1009 || !strings.Contains(e.Reason, "256 KiB") || !strings.Contains(e.Reason, "ROOMCAST_MAX_DOC_BYTES") {
			t.Fatalf("alice's socket closed with %d %q, want 1009 naming the limit", e.Code, e.Reason)
		}
		time.Sleep(300 * time.Millisecond)
		bob := p.Content("b")
		if strings.Contains(bob.Text, "REFUSED") || len(bob.Text) != 200000 {
			t.Fatalf("bob has %d bytes of text, the refused paste included: %v", len(bob.Text), strings.Contains(bob.Text, "REFUSED"))
		}
		if info := p.Do("info", "b", nil); len(info["closes"].([]any)) != 0 {
			t.Fatalf("bob's socket closed: %v", info)
		}
		// The stored document is the one before the refused update.
		connectSynced(t, p, "c", yjsURL(a), "big", "carol")
		if c := p.Content("c"); c.Text != bob.Text {
			t.Fatalf("a new provider has %d bytes (refused paste: %v), want bob's %d", len(c.Text), strings.Contains(c.Text, "REFUSED"), len(bob.Text))
		}
	})
}

// A socket closed for size makes its user back off in that room: upgrades
// get 429 with Retry-After for 2 s, then 4 s after the next close; other
// users, and the same user elsewhere, are admitted meanwhile. One message
// over MAX_DOC_BYTES is such a close.
func TestDocSizeBackoffAfterACloseForSize(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_DOC_BYTES": "65536"}})
	big := yjsproto.AppendSyncMessage(nil, yjsproto.SyncUpdate, textUpdate(7, strings.Repeat("x", 70000)))
	overLimit := func() {
		t.Helper()
		ws := rawYjs(t, s, "pasted", "mallory")
		if err := ws.WriteMessage(websocket.BinaryMessage, big); err != nil {
			t.Fatal(err)
		}
		ce := closeOf(t, ws, wait)
		if ce.Code != 1009 || !strings.Contains(ce.Text, "64 KiB") || !strings.Contains(ce.Text, "ROOMCAST_MAX_DOC_BYTES") {
			t.Fatalf("a message over the limit closed with %d %q, want 1009 naming the limit", ce.Code, ce.Text)
		}
	}
	for round, want := range []int{2, 4} {
		overLimit()
		closed := time.Now()
		status, retry, body := upgradeRefusal(t, s, "pasted", "mallory")
		if status != http.StatusTooManyRequests || retry != strconv.Itoa(want) {
			t.Fatalf("round %d: upgrade after the close: HTTP %d Retry-After %q %s, want 429 and %d", round, status, retry, body, want)
		}
		assertErrorBody(t, body, "size_backoff")
		if status, _, body := upgradeRefusal(t, s, "pasted", "bob"); status != http.StatusSwitchingProtocols {
			t.Fatalf("round %d: another user of the room: HTTP %d %s", round, status, body)
		}
		if status, _, body := upgradeRefusal(t, s, "elsewhere", "mallory"); status != http.StatusSwitchingProtocols {
			t.Fatalf("round %d: the same user in another room: HTTP %d %s", round, status, body)
		}
		time.Sleep(time.Until(closed.Add(time.Duration(want)*time.Second - 300*time.Millisecond)))
		if status, _, _ := upgradeRefusal(t, s, "pasted", "mallory"); status != http.StatusTooManyRequests {
			t.Fatalf("round %d: admitted before the interval ended: HTTP %d", round, status)
		}
		time.Sleep(time.Until(closed.Add(time.Duration(want)*time.Second + 100*time.Millisecond)))
		if status, _, body := upgradeRefusal(t, s, "pasted", "mallory"); status != http.StatusSwitchingProtocols {
			t.Fatalf("round %d: after the interval: HTTP %d %s", round, status, body)
		}
	}
	// Nothing of the refused messages is in the document.
	p := yjs.StartPeers(t)
	connectSynced(t, p, "c", yjsURL(s), "pasted", "carol")
	if c := p.Content("c"); c.Text != "" {
		t.Fatalf("the document holds %d bytes of refused text", len(c.Text))
	}
}

// slowFrame writes the header of a binary frame of n bytes and then its
// payload in pieces of 8 KB every 50 ms, until stop is closed or the
// connection fails.
func slowFrame(c net.Conn, n int, stop <-chan struct{}) {
	hdr := []byte{0x82, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	hdr = append(hdr, 0, 0, 0, 0) // mask key 0: the payload goes as is
	if _, err := c.Write(hdr); err != nil {
		return
	}
	piece := make([]byte, 8<<10)
	for sent := 0; sent < n; sent += len(piece) {
		if _, err := c.Write(piece[:min(len(piece), n-sent)]); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Two sockets each declaring a 700 KB frame at once, with a budget of
// 1 MiB: the second is refused from its header with 1013 while the first
// is still arriving, and its user backs off.
func TestDocSizeInflightBudgetRefusesAFrameThatWouldPassIt(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{
		"ROOMCAST_MAX_DOC_BYTES": "1048576", "ROOMCAST_MAX_INFLIGHT_BYTES": "1048576",
	}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	type closed struct {
		user string
		ce   *websocket.CloseError
		err  error
	}
	got := make(chan closed, 2)
	for _, user := range []string{"uma", "vic"} {
		ws := rawYjs(t, s, "budget", user)
		wg.Add(2)
		go func() { defer wg.Done(); slowFrame(ws.UnderlyingConn(), 700_000, stop) }()
		go func() {
			defer wg.Done()
			_ = ws.SetReadDeadline(time.Now().Add(wait))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					errors.As(err, &ce)
					got <- closed{user, ce, err}
					return
				}
			}
		}()
	}
	// Both frames take 4 s to arrive: a refusal within 2 s came from the
	// header.
	var first closed
	select {
	case first = <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("no socket refused within 2 s while two 700 KB frames were arriving under a 1 MiB budget")
	}
	if first.ce == nil || first.ce.Code != 1013 || !strings.Contains(first.ce.Text, "1 MiB") || !strings.Contains(first.ce.Text, "ROOMCAST_MAX_INFLIGHT_BYTES") {
		t.Fatalf("%s's socket ended with %v, want 1013 naming the budget", first.user, first.err)
	}
	select {
	case other := <-got:
		t.Fatalf("both sockets ended: %s with %v", other.user, other.err)
	case <-time.After(500 * time.Millisecond):
	}
	if status, retry, body := upgradeRefusal(t, s, "budget", first.user); status != http.StatusTooManyRequests || retry == "" {
		t.Fatalf("upgrade after the 1013: HTTP %d Retry-After %q %s", status, retry, body)
	}
}

// A client that keeps pasting 900 KiB (under the old 1 MiB frame limit)
// into a document with a 4 MiB limit (each attempt as another user, so no
// backoff slows it) sends 105 MiB; the server's memory stays near its
// start.
func TestDocSizeMemoryStaysBoundedWhileAClientKeepsGrowingADocument(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_DOC_BYTES": "4194304"}})
	warm := rawYjs(t, s, "grow", "warm")
	warm.Close()
	time.Sleep(200 * time.Millisecond)
	before := rssBytes(t, s.Pid())
	const attempts, paste = 120, 900 << 10
	refused, peak := 0, before
	for i := range attempts {
		ws := rawYjs(t, s, "grow", fmt.Sprint("paster-", i))
		msg := yjsproto.AppendSyncMessage(nil, yjsproto.SyncUpdate, textUpdate(uint64(1000+i), strings.Repeat(string(rune('a'+i%26)), paste)))
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		// A paste that fits is not answered: a short wait tells it. Once
		// the document is full every paste must be refused, and the
		// close may take longer on a busy machine.
		wait := 300 * time.Millisecond
		if refused > 0 {
			wait = 5 * time.Second
		}
		_ = ws.SetReadDeadline(time.Now().Add(wait))
		for {
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if ce.Code != 1009 {
					t.Fatalf("paste %d closed with %d %q", i, ce.Code, ce.Text)
				}
				refused++
			}
			if err != nil {
				break
			}
		}
		ws.Close()
		peak = max(peak, rssBytes(t, s.Pid()))
	}
	after := rssBytes(t, s.Pid())
	t.Logf("%d pastes of 900 KiB into a 4 MiB document: %d refused; RSS %d MiB before, peak %d MiB, %d MiB after",
		attempts, refused, before>>20, peak>>20, after>>20)
	if refused < attempts-5 {
		t.Fatalf("only %d of %d pastes refused under a 4 MiB limit", refused, attempts)
	}
	if grew := peak - before; grew > 64<<20 {
		t.Fatalf("RSS grew by %d MiB while 105 MiB were pasted into a 4 MiB document", grew>>20)
	}
}
