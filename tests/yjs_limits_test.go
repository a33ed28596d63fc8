package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// rssBytes returns the resident memory of process pid.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the server's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

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
