package tests

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// Idle sockets hold no goroutine: a socket between frames waits in the
// server's poller, and a reader runs only while it has something to read.
// A frame that arrives in pieces, with pauses between them, is still read
// whole, on both kinds of socket, and every socket still ends cleanly.
func TestIdleSocketsHoldNoGoroutine(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	base := metric(t, s, "go_goroutines")

	const jsonSockets, yjsSockets = 200, 40
	clients := make([]*testserver.Client, 0, jsonSockets)
	for i := range jsonSockets {
		c := testserver.Join(t, s.WS, fmt.Sprintf("idle-%d", i%10), fmt.Sprintf("u%d", i), "")
		clients = append(clients, c)
	}
	for i := range yjsSockets {
		ws := rawYjs(t, s, fmt.Sprintf("idle-doc-%d", i%4), fmt.Sprintf("y%d", i))
		t.Cleanup(func() { ws.Close() })
	}
	// A goroutine per socket would be 240 more; what is left is the
	// server's own (the rooms' workers, timers, the poller).
	eventually(t, 5*time.Second, "idle sockets without goroutines", func() error {
		if n := metric(t, s, "go_goroutines"); n > base+60 {
			return fmt.Errorf("%v goroutines with %d idle sockets (%v before)", n, jsonSockets+yjsSockets, base)
		}
		return nil
	})

	// A publish written a few bytes at a time: the socket is parked
	// between the pieces, mid-frame, and must not lose its place.
	tok := testserver.Token(t, "slowpoke", "", 0, nil)
	ws, _, err := testserver.Dial(testserver.WSURL(s.WS, "idle-0", tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := testserver.Read(ws)
	t.Cleanup(slow.Close)
	slow.AwaitType(t, "welcome", wait)
	frame := maskedText([]byte(`{"type":"publish","data":"in pieces"}`))
	nc := ws.UnderlyingConn()
	for _, piece := range [][]byte{frame[:1], frame[1:2], frame[2:5], frame[5:9], frame[9:20], frame[20:]} {
		if _, err := nc.Write(piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	// Two frames in one write: both are read, none waits for more bytes.
	two := append(maskedText([]byte(`{"type":"publish","data":"one"}`)), maskedText([]byte(`{"type":"publish","data":"two"}`))...)
	if _, err := nc.Write(two); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"in pieces"`, `"one"`, `"two"`} {
		clients[0].Await(t, wait, "message "+want, func(f testserver.Frame) bool {
			return f.Type == "message" && string(f.Data) == want
		})
	}

	// The server ends an idle socket (here: the client's close) and
	// leaves presence for it.
	clients[10].Close()
	clients[0].Await(t, wait, "u10's leave", isFrame("leave", "u10"))
}

// maskedText is a client's text frame with payload p (mask key 1 2 3 4).
func maskedText(p []byte) []byte {
	b := []byte{0x81}
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range p {
		b = append(b, c^mask[i&3])
	}
	return b
}

// A client cut off (here for its rate) that never answers the close and
// keeps sending is still ended: its socket is closed within the close
// wait, and it leaves the room, however much it goes on writing.
func TestCutClientThatKeepsSendingIsEnded(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_RATE": "5"}})
	other := testserver.Join(t, s.WS, "cut", "bob", "")
	tok := testserver.Token(t, "flooder", "", 0, nil)
	ws, _, err := testserver.Dial(testserver.WSURL(s.WS, "cut", tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	other.Await(t, wait, "the flooder's join", isFrame("join", "flooder"))
	nc := ws.UnderlyingConn()
	frame := maskedText([]byte(`{"type":"ping"}`))
	start := time.Now()
	ended := make(chan time.Duration, 1)
	go func() {
		// Writes fail once the server has closed the socket (a reset
		// answers the writes after the close).
		for time.Since(start) < 20*time.Second {
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := nc.Write(frame); err != nil {
				ended <- time.Since(start)
				return
			}
			time.Sleep(time.Millisecond)
		}
		ended <- 0
	}()
	other.Await(t, wait, "the flooder's leave", isFrame("leave", "flooder"))
	select {
	case d := <-ended:
		if d == 0 {
			t.Fatal("the server never ended a cut client that keeps sending")
		}
		t.Logf("the flooder's writes failed %v after it began", d.Round(time.Millisecond))
	case <-time.After(25 * time.Second):
		t.Fatal("no end")
	}
}
