package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// A frame that breaks the WebSocket protocol (unmasked, reserved bits, an
// unknown opcode, a fragmented ping) gets that socket one clean close
// frame from the server — 1002 — and nobody else notices.
func TestProtocolViolation(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	other := testserver.Join(t, s.WS, "proto", "other", "Other")
	cases := map[string][]byte{
		"unmasked":          {0x81, 0x02, '{', '}'},
		"reserved bits":     {0xC1, 0x82, 1, 2, 3, 4, '{' ^ 1, '}' ^ 2},
		"unknown opcode":    {0x83, 0x80, 1, 2, 3, 4},
		"fragmented ping":   {0x09, 0x80, 1, 2, 3, 4},
		"lone continuation": {0x80, 0x80, 1, 2, 3, 4},
	}
	for name, raw := range cases {
		ws, _, err := testserver.Dial(testserver.WSURL(s.WS, "proto", testserver.Token(t, "bad", "Bad", 0, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil { // the welcome
			t.Fatalf("%s: welcome: %v", name, err)
		}
		if _, err := ws.NetConn().Write(raw); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		code := 0
		for {
			_, _, err := ws.ReadMessage()
			if err == nil {
				continue // frames sent before the close
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			} else {
				t.Fatalf("%s: socket ended without a close frame: %v", name, err)
			}
			break
		}
		if code != 1002 {
			t.Fatalf("%s: close code %d, want 1002", name, code)
		}
		ws.Close()
	}
	// The other member saw the bad user come and go and still gets the room.
	pub := testserver.Join(t, s.WS, "proto", "pub", "Pub")
	pub.Send(t, map[string]any{"type": "publish", "data": "still here"})
	other.Await(t, wait, "the message", func(f testserver.Frame) bool { return f.Type == "message" && string(f.Data) == `"still here"` })
	if v := metric(t, s, "roomcast_protocol_errors_total"); v != float64(len(cases)) {
		t.Fatalf("roomcast_protocol_errors_total %v, want %d", v, len(cases))
	}
}
