package tests

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roomcast/roomcast/tests/testserver"
)

// invalidUTF8 are byte sequences no UTF-8 decoder accepts: stray
// continuation bytes, an overlong '/', a UTF-16 surrogate encoded as
// UTF-8, a sequence cut short, a code point past U+10FFFF.
var invalidUTF8 = []string{"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "ok\xe2\x82", "\xf4\x90\x80\x80"}

// A text frame that is not valid UTF-8 closes its socket with 1007,
// wherever the bytes are (publish data or key, presence meta, state data,
// a ref): nothing of it is relayed, stored or applied, and the room's
// other members carry on.
func TestInvalidUTF8Frames(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		const room = "utf8"
		observer := testserver.Join(t, b.WS, room, "observer", "Observer")
		speaker := testserver.Join(t, a.WS, room, "speaker", "Speaker")
		frames := []string{}
		for _, bad := range invalidUTF8 {
			frames = append(frames, `{"type":"publish","data":"`+bad+`"}`)
		}
		frames = append(frames,
			`{"type":"publish","data":{"text":"fine"},"key":"k-`+"\xff"+`"}`,
			`{"type":"publish","data":"fine","ref":"r-`+"\xfe"+`","ephemeral":true}`,
			`{"type":"presence","meta":{"cursor":"`+"\xff\xfe"+`"}}`,
			`{"type":"state","seq":0,"data":{"board":"`+"\xc0\xaf"+`"}}`,
		)
		for i, frame := range frames {
			if utf8.ValidString(frame) {
				t.Fatalf("frame %d is valid UTF-8", i)
			}
			h := testserver.Join(t, a.WS, room, "hostile", "Hostile")
			observer.Await(t, wait, "hostile's join", isFrame("join", "hostile"))
			h.Send(t, []byte(frame))
			if code := h.WaitClose(t, wait); code != 1007 {
				t.Fatalf("frame %q closed with %d, want 1007", frame, code)
			}
			l := observer.Await(t, wait, "hostile's leave", isFrame("leave", "hostile"))
			if l.Reason != "closed" {
				t.Fatalf("leave after 1007: %s", l.Raw)
			}
			for _, f := range h.Frames() {
				if f.Type == "ack" || f.Type == "error" {
					t.Fatalf("frame %q was answered before the close: %s", frame, f.Raw)
				}
			}
		}
		// The room goes on: a later message reaches everyone.
		ack := publishAcked(t, speaker, map[string]any{"data": "after"})
		awaitSeq(t, observer, ack.Seq)
		if ack.Seq != 1 {
			t.Fatalf("the first valid message has seq %d: something invalid was stored before it", ack.Seq)
		}
		for _, f := range observer.Frames() {
			if !utf8.ValidString(f.Raw) {
				t.Fatalf("observer got invalid UTF-8: %q", f.Raw)
			}
			switch {
			case f.Type == "message" && f.From != nil && f.From.User == "hostile":
				t.Fatalf("a hostile frame was relayed: %s", f.Raw)
			case f.Type == "update" && f.Member != nil && f.Member.ID == "hostile":
				t.Fatalf("a hostile presence update was relayed: %s", f.Raw)
			}
		}
		for _, inst := range []*testserver.Server{a, b} {
			p := getMessages(t, inst, room, "")
			if len(p.Messages) != 1 || p.Seq != 1 {
				t.Fatalf("history on %s: seq %d, %d messages; want only the valid one", inst.Addr, p.Seq, len(p.Messages))
			}
			if st := getState(t, inst, room); st.State != nil {
				t.Fatalf("state on %s: %s; the invalid state frame was kept", inst.Addr, st.raw)
			}
		}
		// Presence was never changed by the invalid meta.
		for _, m := range members(t, a, room) {
			if !utf8.Valid(m.Meta) || compactJSON(m.Meta) != "{}" {
				t.Fatalf("member %s has meta %q", m.ID, m.Meta)
			}
		}
	})
}

// presence with meta null is a bad_request (with its ref) and leaves the
// meta as it was; nothing reaches the room.
func TestPresenceMetaNull(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		const room = "meta-null"
		observer := testserver.Join(t, b.WS, room, "observer", "")
		c := testserver.Join(t, a.WS, room, "c", "C")
		c.Send(t, map[string]any{"type": "presence", "meta": map[string]any{"color": "red"}, "ref": "set"})
		c.Await(t, wait, "ack set", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "set" })
		observer.Await(t, wait, "update", func(f testserver.Frame) bool {
			return f.Type == "update" && f.Member.ID == "c" && sameJSON(f.Member.Meta, `{"color":"red"}`)
		})
		for _, frame := range []string{`{"type":"presence","meta":null,"ref":"null"}`, `{"type":"presence","ref":"null"}`} {
			c.Send(t, frame)
			if f := c.Await(t, wait, "answer", func(f testserver.Frame) bool { return f.Ref == "null" }); f.Type != "error" || f.Code != "bad_request" {
				t.Fatalf("%s: %s; want error bad_request", frame, f.Raw)
			}
		}
		fence(t, c)
		// After the refusals, a publish: once the observer has it, any
		// update the refusals caused would have come before it.
		ack := publishAcked(t, c, map[string]any{"data": "marker"})
		awaitSeq(t, observer, ack.Seq)
		for _, f := range observer.Frames() {
			if f.Type == "update" && !sameJSON(f.Member.Meta, `{"color":"red"}`) {
				t.Fatalf("observer got %s", f.Raw)
			}
		}
		for _, inst := range []*testserver.Server{a, b} {
			for _, m := range members(t, inst, room) {
				if m.ID == "c" && !sameJSON(m.Meta, `{"color":"red"}`) {
					t.Fatalf("meta of c on %s: %s, want it unchanged", inst.Addr, m.Meta)
				}
			}
		}
		if got := observer.Model()["c"]; !sameJSON(got.Meta, `{"color":"red"}`) {
			t.Fatalf("observer's model of c: %s", memberString(got))
		}
	})
}

// POST /api/rooms/{room}/messages with a body that is not valid UTF-8 is
// a 400 and publishes nothing.
func TestAPIPostInvalidUTF8(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	const room = "post-utf8"
	sub := testserver.Join(t, s.WS, room, "sub", "")
	u := s.URL + "/api/rooms/" + room + "/messages"
	for _, bad := range invalidUTF8 {
		for _, body := range []string{`{"data":"` + bad + `"}`, `{"data":1,"key":"` + bad + `"}`, `{"data":{"` + bad + `":1},"ephemeral":true}`} {
			status, resp := httpCall(t, http.MethodPost, u, testserver.APIKey, body)
			if status != http.StatusBadRequest {
				t.Fatalf("POST %q: HTTP %d %s, want 400", body, status, resp)
			}
			assertErrorBody(t, resp, "bad_request")
		}
	}
	status, resp := httpCall(t, http.MethodPost, u, testserver.APIKey, `{"data":"`+strings.Repeat("é", 3)+`"}`)
	if status != http.StatusAccepted {
		t.Fatalf("POST valid UTF-8: HTTP %d %s", status, resp)
	}
	m := sub.AwaitType(t, "message", wait)
	if string(m.Data) != `"ééé"` || m.Seq != 1 {
		t.Fatalf("first message the subscriber got: %s; want the valid one, seq 1", m.Raw)
	}
	if p := getMessages(t, s, room, ""); len(p.Messages) != 1 {
		t.Fatalf("history holds %d messages, want only the valid one", len(p.Messages))
	}
}
