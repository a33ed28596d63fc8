package tests

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// The server pings silent connections: one that answers stays however long
// it only listens; one that stops answering is cut off after 2.5 intervals.
func TestPingKeepsListenersAndDropsDeadPeers(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_PING_INTERVAL": "200ms"}})

	tok := testserver.Token(t, "listener", "", 0, nil)
	ws, _, err := testserver.Dial(testserver.WSURL(s.WS, "pings", tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	var pings atomic.Int64
	ws.SetPingHandler(func(data string) error {
		pings.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	listener := testserver.Read(ws)
	t.Cleanup(listener.Close)

	deadTok := testserver.Token(t, "dead", "", 0, nil)
	dws, _, err := testserver.Dial(testserver.WSURL(s.WS, "pings", deadTok), nil)
	if err != nil {
		t.Fatal(err)
	}
	dws.SetPingHandler(func(string) error { return nil }) // a peer that no longer answers
	dead := testserver.Read(dws)
	t.Cleanup(dead.Close)

	start := time.Now()
	dead.WaitClose(t, 5*time.Second)
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("silent peer dropped after %v, before 2.5 ping intervals", d)
	}
	l := listener.Await(t, wait, "dead peer's leave", isFrame("leave", "dead"))
	if l.Reason != "closed" {
		t.Fatalf("leave reason %q", l.Reason)
	}
	// The listener has now been silent for many intervals and is still served.
	for time.Since(start) < 1500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	if closed, _ := listener.CloseCode(); closed {
		t.Fatal("a listener that answers pings was dropped")
	}
	if pings.Load() < 2 {
		t.Fatalf("listener got %d pings in 1.5 s at a 200 ms interval", pings.Load())
	}
	listener.Send(t, map[string]any{"type": "ping", "ref": "still-here"})
	if p := listener.AwaitType(t, "pong", wait); p.Ref != "still-here" {
		t.Fatalf("pong %s", p.Raw)
	}
}
