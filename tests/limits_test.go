package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestOversizeFrame: with MAX_MESSAGE_BYTES=1024 a frame of exactly that
// size is accepted and a 2000-byte frame closes the socket with 1009; the
// room's other connections are unaffected.
func TestOversizeFrame(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_MAX_MESSAGE_BYTES": "1024"}})
	c := testserver.Join(t, s.WS, "r", "alice", "")
	other := testserver.Join(t, s.WS, "r", "bob", "")

	// A frame of exactly 1024 bytes passes.
	prefix, suffix := `{"type":"publish","ref":"fit","data":"`, `"}`
	fit := prefix + strings.Repeat("x", 1024-len(prefix)-len(suffix)) + suffix
	if len(fit) != 1024 {
		t.Fatalf("frame is %d bytes", len(fit))
	}
	c.Send(t, fit)
	if a := c.AwaitType(t, "ack", wait); a.Ref != "fit" {
		t.Fatalf("ack: %s", a.Raw)
	}
	if m := other.AwaitType(t, "message", wait); len(m.Data) != 1024-len(prefix)-len(suffix)+2 {
		t.Fatalf("bob got %d bytes of data", len(m.Data))
	}

	big := prefix + strings.Repeat("x", 2000-len(prefix)-len(suffix)) + suffix
	c.Send(t, big)
	if code := c.WaitClose(t, wait); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
	for _, f := range c.Frames() {
		if f.Type == "ack" && f.Ref == "fit" {
			continue
		}
		if f.Type == "ack" || f.Type == "message" {
			t.Fatalf("the oversize frame was processed: %s", f.Raw)
		}
	}
	if l := other.Await(t, wait, "alice's leave", func(f testserver.Frame) bool { return f.Type == "leave" }); l.Member.ID != "alice" || l.Reason != "closed" {
		t.Fatalf("leave: %s", l.Raw)
	}
	other.Send(t, map[string]any{"type": "ping", "ref": "still"})
	if p := other.AwaitType(t, "pong", wait); p.Ref != "still" {
		t.Fatalf("pong: %s", p.Raw)
	}
}

// TestBadFrames: bad input gets error bad_request (with the ref when one
// could be read), the socket stays open, and nothing reaches the room.
func TestBadFrames(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	c := testserver.Join(t, s.WS, "r", "alice", "")
	other := testserver.Join(t, s.WS, "r", "bob", "")
	c.Await(t, wait, "bob's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member.ID == "bob" })
	fence(t, other)

	cases := []struct {
		name  string
		frame string
		ref   string
	}{
		{"not JSON", `not json`, ""},
		{"truncated JSON", `{"type":"publish","data":`, ""},
		{"JSON array", `[1,2,3]`, ""},
		{"JSON string", `"ping"`, ""},
		{"no type", `{"ref":"t1","data":1}`, "t1"},
		{"unknown type", `{"type":"shout","ref":"u1","data":1}`, "u1"},
		{"publish without data", `{"type":"publish","ref":"p1"}`, "p1"},
		{"presence without meta", `{"type":"presence","ref":"m1"}`, "m1"},
		{"presence meta not an object", `{"type":"presence","ref":"m2","meta":[1,2]}`, "m2"},
		{"ref of the wrong type", `{"type":"publish","ref":7,"data":1}`, ""},
	}
	for _, tc := range cases {
		c.Send(t, tc.frame)
		f := c.Next(t, wait)
		if f.Type != "error" || f.Code != "bad_request" || f.Ref != tc.ref || f.Message == "" {
			t.Fatalf("%s: got %s, want error bad_request ref %q", tc.name, f.Raw, tc.ref)
		}
		c.Send(t, map[string]any{"type": "ping", "ref": tc.name})
		if p := c.Next(t, wait); p.Type != "pong" || p.Ref != tc.name {
			t.Fatalf("%s: after the error got %s, want pong", tc.name, p.Raw)
		}
	}
	if err := c.WS.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"publish","data":1}`)); err != nil {
		t.Fatal(err)
	}
	if f := c.Next(t, wait); f.Type != "error" || f.Code != "bad_request" {
		t.Fatalf("binary frame: got %s, want error bad_request", f.Raw)
	}
	c.Send(t, map[string]any{"type": "ping"})
	if p := c.Next(t, wait); p.Type != "pong" || p.Ref != "" {
		t.Fatalf("after the binary frame got %s, want pong", p.Raw)
	}

	// Nothing of that reached bob: his next frame is the first good message.
	c.Send(t, map[string]any{"type": "publish", "data": "good"})
	if m := other.Next(t, wait); m.Type != "message" || string(m.Data) != `"good"` {
		t.Fatalf("bob got %s, want only the good message", m.Raw)
	}
	if ms := members(t, s, "r"); len(ms) != 2 || compactJSON(ms[0].Meta) != "{}" || compactJSON(ms[1].Meta) != "{}" {
		t.Fatalf("members changed: %v", ms)
	}

	// A WebSocket ping control frame is answered with a pong carrying its
	// payload.
	ws, _, err := testserver.Dial(testserver.WSURL(s.WS, "r", testserver.Token(t, "carol", "", 0, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	pongs := make(chan string, 1)
	ws.SetPongHandler(func(p string) error { pongs <- p; return nil })
	carol := testserver.Read(ws)
	t.Cleanup(carol.Close)
	if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p != "are you there" {
			t.Fatalf("pong payload %q", p)
		}
	case <-time.After(wait):
		t.Fatal("no pong for a ping control frame")
	}
}

// TestMetaTooLarge: presence meta over 1 KiB gets error too_large and
// changes nothing (no update, members unchanged); exactly 1 KiB is fine.
func TestMetaTooLarge(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	c := testserver.Join(t, s.WS, "r", "alice", "")
	other := testserver.Join(t, s.WS, "r", "bob", "")
	c.Await(t, wait, "bob's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member.ID == "bob" })
	fence(t, other)

	c.Send(t, map[string]any{"type": "presence", "meta": map[string]any{"color": "red"}, "ref": "m0"})
	if u := other.Next(t, wait); u.Type != "update" || compactJSON(u.Member.Meta) != `{"color":"red"}` {
		t.Fatalf("bob got %s, want alice's update", u.Raw)
	}
	c.AwaitType(t, "ack", wait)
	before := members(t, s, "r")

	meta := func(n int) string { // a compact meta object of exactly n bytes
		return `{"x":"` + strings.Repeat("a", n-len(`{"x":""}`)) + `"}`
	}
	c.Send(t, `{"type":"presence","ref":"big","meta":`+meta(1025)+`}`)
	if e := c.AwaitType(t, "error", wait); e.Code != "too_large" || e.Ref != "big" {
		t.Fatalf("error: %s", e.Raw)
	}
	after := members(t, s, "r")
	if len(after) != len(before) {
		t.Fatalf("members changed: %v -> %v", before, after)
	}
	for i := range before {
		if memberString(before[i]) != memberString(after[i]) {
			t.Fatalf("members changed: %s -> %s", memberString(before[i]), memberString(after[i]))
		}
	}

	// Exactly 1 KiB is accepted, and it is the next thing bob sees: the
	// refused meta never produced an update.
	c.Send(t, `{"type":"presence","ref":"fits","meta":`+meta(1024)+`}`)
	if u := other.Next(t, wait); u.Type != "update" || u.Member.ID != "alice" || compactJSON(u.Member.Meta) != meta(1024) {
		t.Fatalf("bob got %.200s, want the 1 KiB update", u.Raw)
	}
	if a := c.Await(t, wait, "ack fits", func(f testserver.Frame) bool { return f.Type == "ack" || f.Type == "error" }); a.Type != "ack" || a.Ref != "fits" {
		t.Fatalf("got %s, want ack", a.Raw)
	}
}

// TestFlood: with RATE=5 (burst 10), 100 frames sent at once get the burst
// answered, the next ones refused with rate_limited, and once more than 10
// were dropped the socket is closed with 4029. The room is unaffected.
func TestFlood(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_RATE": "5"}})
	c := testserver.Join(t, s.WS, "r", "flooder", "")
	other := testserver.Join(t, s.WS, "r", "bob", "")
	c.Await(t, wait, "bob's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member.ID == "bob" })
	fence(t, other)

	for i := 0; i < 100; i++ {
		// The server may close the socket before all are written.
		if err := c.WS.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"ping","ref":"%d"}`, i))); err != nil {
			break
		}
	}
	if code := c.WaitClose(t, wait); code != 4029 {
		t.Fatalf("close code %d, want 4029", code)
	}
	pongs, limited := 0, 0
	for _, f := range c.Frames() {
		switch {
		case f.Type == "pong":
			if limited > 0 && pongs < 10 {
				t.Fatalf("rate_limited before the burst of 10 was used: %d pongs", pongs)
			}
			pongs++
		case f.Type == "error" && f.Code == "rate_limited":
			limited++
		}
	}
	// More than 2×RATE = 10 drops close the socket: 10 (or 11, if the
	// closing drop is reported too) rate_limited errors, never all 100.
	if pongs < 10 || limited < 10 || limited > 11 || pongs+limited >= 100 {
		t.Fatalf("%d pongs and %d rate_limited errors; want the burst of 10 answered, then 10 rate_limited, then the close", pongs, limited)
	}
	if v := metric(t, s, "roomcast_rate_limited_total"); v < float64(limited) {
		t.Fatalf("roomcast_rate_limited_total %v, want at least %d", v, limited)
	}
	if l := other.AwaitType(t, "leave", wait); l.Member.ID != "flooder" {
		t.Fatalf("leave: %s", l.Raw)
	}
	other.Send(t, map[string]any{"type": "ping", "ref": "ok"})
	if p := other.AwaitType(t, "pong", wait); p.Ref != "ok" {
		t.Fatalf("pong: %s", p.Raw)
	}
}

// TestSlowConsumer: connections that do not read are dropped with 4008
// once their send queue is full, while another in the room receives every
// message in order. When the slow one finally reads, it gets what was
// already on its way, in order, then the 4008 close frame; the one that
// never reads has its socket ended after the grace.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{
		"ROOMCAST_SEND_QUEUE": "16",
		"ROOMCAST_RATE":       "100000", // the publisher is not the one to throttle here
	}})
	slow, _, err := testserver.Dial(testserver.WSURL(s.WS, "r", testserver.Token(t, "slow", "", 0, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// stuck never reads at all: the server must end its socket by itself.
	stuck, _, err := testserver.Dial(testserver.WSURL(s.WS, "r", testserver.Token(t, "stuck", "", 0, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	// The slow clients are in the room before the others join.
	eventually(t, wait, "slow clients present", func() error {
		if n := len(members(t, s, "r")); n != 2 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	fast := testserver.Join(t, s.WS, "r", "fast", "")
	pub := testserver.Join(t, s.WS, "r", "pub", "")

	pad := strings.Repeat("p", 16<<10)
	type msg struct {
		N   int    `json:"n"`
		Pad string `json:"pad"`
	}
	got := 0 // messages fast received, all in order
	receive := func(upTo int) {
		t.Helper()
		for got < upTo {
			m := fast.AwaitType(t, "message", wait)
			var d msg
			if err := json.Unmarshal(m.Data, &d); err != nil || d.N != got+1 || m.From.User != "pub" {
				t.Fatalf("fast got message %d (%.80s), want %d", d.N, m.Raw, got+1)
			}
			got++
		}
	}
	// Publish, keeping fast at most 8 messages behind (it reads, but no
	// faster than a real client would), until the slow one is dropped.
	sent, dropped := 0, false
	var droppedAt time.Time
	for sent < 5000 && !dropped {
		sent++
		pub.Send(t, map[string]any{"type": "publish", "data": msg{N: sent, Pad: pad}})
		receive(sent - 8)
		if sent%8 == 0 && metric(t, s, "roomcast_slow_consumers_dropped_total") >= 2 {
			dropped, droppedAt = true, time.Now()
		}
	}
	if !dropped {
		t.Fatalf("no slow consumer dropped after %d messages of 16 KiB", sent)
	}
	t.Logf("slow consumer dropped after %d messages", sent)

	// The slow client reads now, well within the 5 s grace.
	type result struct {
		ns   []int
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		_ = slow.SetReadDeadline(time.Now().Add(4 * time.Second))
		for {
			_, data, err := slow.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					r.code = ce.Code
				} else {
					r.err = err
				}
				done <- r
				return
			}
			var f struct {
				Type string `json:"type"`
				Data msg    `json:"data"`
			}
			if json.Unmarshal(data, &f) == nil && f.Type == "message" {
				r.ns = append(r.ns, f.Data.N)
			}
		}
	}()

	// The room keeps flowing for the others.
	for i := 0; i < 20; i++ {
		sent++
		pub.Send(t, map[string]any{"type": "publish", "data": msg{N: sent, Pad: "after"}})
		receive(sent - 8)
	}
	receive(sent)
	// Its leave came as soon as it was dropped, before the room's later
	// messages; the frames read so far hold it.
	leaveOf := func(user string) (testserver.Frame, bool) {
		for _, f := range fast.Frames() {
			if f.Type == "leave" && f.Member != nil && f.Member.ID == user {
				return f, true
			}
		}
		return testserver.Frame{}, false
	}
	eventually(t, wait, "slow's leave", func() error {
		if _, ok := leaveOf("slow"); !ok {
			return errors.New("no leave yet")
		}
		return nil
	})
	if l, _ := leaveOf("slow"); l.Reason != "closed" {
		t.Fatalf("leave: %s", l.Raw)
	}

	r := <-done
	if r.err != nil || r.code != 4008 {
		t.Fatalf("slow client: close code %d, err %v (read for %v after the drop), want 4008", r.code, r.err, time.Since(droppedAt))
	}
	for i, n := range r.ns {
		if n != i+1 {
			t.Fatalf("slow client's messages are not 1..%d in order: %v", len(r.ns), r.ns)
		}
	}
	if len(r.ns) >= sent {
		t.Fatalf("slow client got all %d messages; it should have been cut", len(r.ns))
	}
	t.Logf("slow client received %d of %d messages before 4008", len(r.ns), sent)

	// The client that never reads leaves presence as soon as it is
	// dropped (no sidebar shows it for the seconds its socket takes), and
	// its socket is ended after the 5 s grace (not only when the 10 s
	// write timeout fires).
	eventually(t, wait, "stuck's leave", func() error {
		if _, ok := leaveOf("stuck"); !ok {
			return errors.New("no leave yet")
		}
		return nil
	})
	t.Logf("stuck client left presence %v after the drop was counted", time.Since(droppedAt).Round(10*time.Millisecond))
	eventually(t, time.Until(droppedAt.Add(7500*time.Millisecond)), "the stuck socket ended within the 5 s grace (+2.5 s)", func() error {
		if v := metric(t, s, "roomcast_connections"); v != 2 {
			return fmt.Errorf("roomcast_connections %v", v)
		}
		return nil
	})
	t.Logf("stuck client ended %v after the drop", time.Since(droppedAt).Round(10*time.Millisecond))
	// And the room still flows.
	sent++
	pub.Send(t, map[string]any{"type": "publish", "data": msg{N: sent, Pad: "last"}})
	receive(sent)
}

// TestTokenExpiry: a token that expires while connected closes the socket
// with 4001, not before exp - 1s (the leeway) and soon after exp.
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	tok := testserver.Token(t, "shortlived", "", 2*time.Second, nil)
	var exp time.Time
	{
		var c jwtClaims
		if err := decodeJWTPayload(tok, &c); err != nil {
			t.Fatal(err)
		}
		exp = time.Unix(c.Exp, 0)
	}
	observer := testserver.Join(t, s.WS, "r", "observer", "")
	c := testserver.JoinURL(t, testserver.WSURL(s.WS, "r", tok), nil)
	code := c.WaitClose(t, time.Until(exp)+5*time.Second)
	at := time.Now()
	if code != 4001 {
		t.Fatalf("close code %d, want 4001", code)
	}
	if at.Before(exp.Add(-time.Second)) {
		t.Fatalf("closed %v before exp", exp.Sub(at))
	}
	if late := at.Sub(exp); late > 3*time.Second {
		t.Fatalf("closed %v after exp; the spec says within 1 s", late)
	}
	if l := observer.Await(t, wait, "leave", func(f testserver.Frame) bool { return f.Type == "leave" }); l.Member.ID != "shortlived" || l.Reason != "closed" {
		t.Fatalf("leave: %s", l.Raw)
	}
	// The same token cannot come back.
	status, body := upgradeRequest(t, testserver.WSURL(s.URL, "r", tok), nil)
	if status != 401 {
		t.Fatalf("reconnect with the expired token: HTTP %d %s", status, body)
	}
	assertErrorBody(t, body, "token_expired")
}

// A send queue is bounded in bytes as well as frames: a client that does
// not read is closed with 4008 once ROOMCAST_SEND_QUEUE_BYTES of frames
// wait for it, however many frames the count bound would allow.
func TestSlowConsumerByBytes(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{
		"ROOMCAST_SEND_QUEUE":       "100000", // out of the way
		"ROOMCAST_SEND_QUEUE_BYTES": "262144",
		"ROOMCAST_RATE":             "100000",
	}})
	stuck, _, err := testserver.Dial(testserver.WSURL(s.WS, "bytes", testserver.Token(t, "stuck", "", 0, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	eventually(t, wait, "the stuck client present", func() error {
		if n := len(members(t, s, "bytes")); n != 1 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	pub := testserver.Join(t, s.WS, "bytes", "pub", "")
	pad := strings.Repeat("p", 16<<10)
	// Socket buffers take a few MB; then 256 KiB of queued frames.
	sent := 0
	for ; sent < 5000 && metric(t, s, "roomcast_slow_consumers_dropped_total") < 1; sent++ {
		pub.Send(t, map[string]any{"type": "publish", "data": map[string]any{"n": sent, "pad": pad}})
		if sent%16 == 0 {
			fence(t, pub)
		}
	}
	if metric(t, s, "roomcast_slow_consumers_dropped_total") < 1 {
		t.Fatalf("no slow consumer dropped after %d messages of 16 KiB (%d MB)", sent, sent*len(pad)>>20)
	}
	t.Logf("the client that does not read was dropped after %d messages of 16 KiB", sent)
}
