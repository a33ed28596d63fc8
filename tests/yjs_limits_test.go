package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	yjsproto "github.com/roomcast/roomcast/rooms/yjs"
	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// dialNonReader opens a /yjs socket that will never be read: a small
// receive buffer, so the server's writes stall at once.
func dialNonReader(t *testing.T, s *testserver.Server, room, user string) *websocket.Conn {
	t.Helper()
	nd := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1024, NetDialContext: nd.DialContext}
	ws, resp, err := d.Dial(s.WS+"/yjs/"+room+"?token="+testserver.Token(t, user, user, 0, nil), nil)
	if err != nil {
		t.Fatalf("dial yjs: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// A client that never reads and asks again and again for the whole
// document (sync step 1 with an empty state vector, 4 bytes each) must not
// make the server hold a copy of the document per request: the server's
// memory stays bounded, the socket is ended, and the document's other
// providers notice nothing.
func TestYjsStep1FloodFromAClientThatNeverReads(t *testing.T) {
	t.Parallel()
	const (
		docBytes = 2 << 20
		requests = 600
		budget   = 300 << 20 // resident bytes of the whole server; 600 copies would be 1.2 GB
	)
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_STATE_BYTES": strconv.Itoa(4 << 20)}})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "flood", "alice")
	p.Do("big", "a", map[string]any{"size": docBytes})
	eventually(t, wait, "the big update stored", func() error {
		if n := metric(t, s, "roomcast_yjs_updates_total"); n < 1 {
			return fmt.Errorf("%v updates", n)
		}
		return nil
	})
	before := rssBytes(t, s.Pid())

	ws := dialNonReader(t, s, "flood", "mallory")
	step1 := []byte{0, 0, 1, 0} // sync step 1, empty state vector
	peak := before
	sample := func() {
		if m := rssBytes(t, s.Pid()); m > peak {
			peak = m
			if m > budget {
				t.Fatalf("the server's memory went from %d MB to %d MB", before>>20, m>>20)
			}
		}
	}
	for i := 0; i < requests; i++ {
		_ = ws.SetWriteDeadline(time.Now().Add(wait))
		if err := ws.WriteMessage(websocket.BinaryMessage, step1); err != nil {
			t.Logf("the server ended the socket after %d requests: %v", i, err)
			break
		}
		if i%10 == 0 {
			sample()
		}
	}
	// The reading side is rate limited (50 frames/s): the requests keep
	// arriving for a while. The socket must be ended (slow consumer, or
	// its stalled write timing out) with the memory still bounded.
	deadline := time.Now().Add(40 * time.Second)
	for metric(t, s, "roomcast_yjs_connections") > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the socket that never reads is still open")
		}
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("server memory: %d MB before, at most %d MB during and after %d requests for a %d MB document", before>>20, peak>>20, requests, docBytes>>20)

	// The provider of the document kept its socket, and its edits still
	// reach a newcomer.
	if info := p.Do("info", "a", nil); len(info["closes"].([]any)) != 0 {
		t.Fatalf("the document's provider lost its socket: %v", info)
	}
	p.Do("insert", "a", map[string]any{"pos": 0, "text": "still here "})
	connectSynced(t, p, "b", yjsURL(s), "flood", "bob")
	if c := converged(t, p, wait, "a", "b"); !strings.HasPrefix(c.Text, "still here ") || len(c.Text) != docBytes+len("still here ") {
		t.Fatalf("newcomer has %q", short(c.Text))
	}
}

// cpuTime returns the CPU time process pid has used (user + system).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read the server's CPU time: %v", err)
	}
	// After the command in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// drain reads ws until it ends.
func drain(ws *websocket.Conn) {
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

// awaitAwareness reads ws until an awareness message whose entries match.
func awaitAwareness(t *testing.T, ws *websocket.Conn, within time.Duration, what string, match func([]yjsproto.AwarenessEntry) bool) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(within))
	defer ws.SetReadDeadline(time.Time{})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		m, err := yjsproto.ParseMessage(data)
		if err != nil || m.Type != yjsproto.MessageAwareness {
			continue
		}
		if es, err := yjsproto.ParseAwareness(m.Payload); err == nil && match(es) {
			return
		}
	}
}

func awarenessOf(clock uint64, state string, clients ...uint64) []byte {
	es := make([]yjsproto.AwarenessEntry, len(clients))
	for i, c := range clients {
		es[i] = yjsproto.AwarenessEntry{Client: c, Clock: clock, State: []byte(state)}
	}
	return yjsproto.AppendAwarenessMessage(nil, yjsproto.EncodeAwareness(es))
}

// joinAwareness joins room as user and returns the number of states in
// the awareness message a joiner gets first, and how long it took.
func joinAwareness(t *testing.T, s *testserver.Server, room, user string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	ws := rawYjs(t, s, room, user)
	defer ws.Close()
	n := 0
	awaitAwareness(t, ws, 30*time.Second, user+"'s first awareness", func(es []yjsproto.AwarenessEntry) bool {
		n = len(es)
		return true
	})
	return n, time.Since(start)
}

// textInsert is a Yjs update inserting text at the start of the root
// text "text", by client at clock 0 (what Y.Text.insert encodes).
func textInsert(client uint64, text string) []byte {
	u := []byte{1, 1} // one client, one struct
	u = binary.AppendUvarint(u, client)
	u = append(u, 0, 4, 1) // clock 0; a string item without origins; parent by name
	u = binary.AppendUvarint(u, 4)
	u = append(u, "text"...)
	u = binary.AppendUvarint(u, uint64(len(text)))
	u = append(u, text...)
	return append(u, 0) // no deletions
}

// A connection may own 16 awareness states; a message announcing 150,000
// new clients must cost the server about what reading it costs, not a
// walk over every state of the document per entry under the document's
// lock: joiners and edits of the document are not held up meanwhile.
func TestYjsAwarenessFloodOfNewClients(t *testing.T) {
	t.Parallel()
	const (
		owners   = 200
		perOwner = 16
		flood    = 150000 // new clients per message
		messages = 3
		room     = "crowd"
	)
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_STATE_BYTES": strconv.Itoa(4 << 20)}})
	for i := 0; i < owners; i++ {
		ws := rawYjs(t, s, room, fmt.Sprint("owner", i))
		go drain(ws)
		ids := make([]uint64, perOwner)
		for k := range ids {
			ids[k] = uint64(1000 + i*perOwner + k)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, awarenessOf(1, `{"u":1}`, ids...)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "every owner's states known", func() error {
		if n, _ := joinAwareness(t, s, room, "counter"); n < owners*perOwner {
			return fmt.Errorf("%d states", n)
		}
		return nil
	})
	editor := rawYjs(t, s, room, "editor")
	go drain(editor)
	watcher := rawYjs(t, s, room, "watcher")

	mallory := rawYjs(t, s, room, "mallory")
	go drain(mallory)
	cpu := cpuTime(t, s.Pid())
	sent := time.Now()
	const first = 1 << 20 // three-byte client ids: 150,000 entries in about 1 MB
	for m := 0; m < messages; m++ {
		ids := make([]uint64, flood)
		for k := range ids {
			ids[k] = uint64(first + m*flood + k)
		}
		if err := mallory.WriteMessage(websocket.BinaryMessage, awarenessOf(1, `{}`, ids...)); err != nil {
			t.Fatal(err)
		}
	}
	// The first of mallory's new clients was taken (one of its 16); a
	// change of it arrives once every flood message before was handled.
	if err := mallory.WriteMessage(websocket.BinaryMessage, awarenessOf(2, `{"done":true}`, first)); err != nil {
		t.Fatal(err)
	}

	// Meanwhile (once the server is into the flood) a joiner gets its
	// first frames and an edit reaches the other providers.
	time.Sleep(200 * time.Millisecond)
	n, joinTook := joinAwareness(t, s, room, "carol")
	if n < owners*perOwner {
		t.Fatalf("the joiner got %d states", n)
	}
	edit := yjsproto.AppendSyncMessage(nil, yjsproto.SyncUpdate, textInsert(7, "typed during the flood"))
	edited := time.Now()
	if err := editor.WriteMessage(websocket.BinaryMessage, edit); err != nil {
		t.Fatal(err)
	}
	lastChange := func(es []yjsproto.AwarenessEntry) bool {
		return len(es) == 1 && es[0].Client == first && es[0].Clock == 2
	}
	// Mallory's last change may come before the edit or after it.
	changeSeen := false
	_ = watcher.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, data, err := watcher.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the edit: %v", err)
		}
		if bytes.Equal(data, edit) {
			break
		}
		if m, err := yjsproto.ParseMessage(data); err == nil && m.Type == yjsproto.MessageAwareness {
			if es, err := yjsproto.ParseAwareness(m.Payload); err == nil && lastChange(es) {
				changeSeen = true
			}
		}
	}
	editTook := time.Since(edited)

	if !changeSeen {
		awaitAwareness(t, watcher, 60*time.Second, "mallory's last change", lastChange)
	}
	handled, spent := time.Since(sent), cpuTime(t, s.Pid())-cpu
	t.Logf("%d messages of %d new clients in a document of %d states: handled in %v using %v of CPU; a joiner's awareness took %v, an edit's delivery %v",
		messages, flood, owners*perOwner, handled.Round(time.Millisecond), spent, joinTook.Round(time.Millisecond), editTook.Round(time.Millisecond))
	// A walk over the document's states per entry costs seconds of CPU
	// per message; reading the entries costs tens of milliseconds.
	if spent > 3*time.Second {
		t.Fatalf("the server spent %v of CPU on %d awareness messages", spent, messages)
	}
	if joinTook > 3*time.Second || editTook > 3*time.Second {
		t.Fatalf("the flood held up the document: a joiner's awareness took %v, an edit's delivery %v", joinTook, editTook)
	}
	if n, _ := joinAwareness(t, s, room, "dave"); n != owners*perOwner+perOwner {
		t.Fatalf("a joiner after the flood got %d states, want the owners' %d and mallory's %d", n, owners*perOwner, perOwner)
	}
}
