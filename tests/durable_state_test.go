package tests

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

var stateCapable = url.Values{"state": {"1"}}

// A state frame is kept unless the room holds a later one or its seq is
// ahead of the room (stale_state), its data is over MAX_STATE_BYTES
// (too_large, also for a frame over MAX_MESSAGE_BYTES, which does not
// close the socket), or it lacks seq or data (bad_request). A refused one
// changes nothing.
func TestStateFrames(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_MAX_STATE_BYTES": "2048"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "state-frames"
		c := testserver.Join(t, a.WS, room, "c", "C")
		for i := 1; i <= 3; i++ {
			publishAcked(t, c, map[string]any{"data": i})
		}
		expect := func(seq uint64, data any, want string) {
			t.Helper()
			f := sendState(t, c, seq, data)
			got := f.Type
			if f.Type == "error" {
				got = f.Code
			}
			if got != want {
				t.Fatalf("state at %d: %s; want %s", seq, f.Raw, want)
			}
		}
		expect(4, "ahead", "stale_state") // the room is at 3
		expect(2, "two", "ack")
		expect(1, "one", "stale_state") // older than the one held
		expect(0, "zero", "stale_state")
		expect(2, "two again", "ack") // the same seq replaces it
		expect(99, "far ahead", "stale_state")
		fit := strings.Repeat("x", 2048-2) // a JSON string of exactly 2048 bytes
		expect(3, fit, "ack")
		expect(3, strings.Repeat("y", 3000), "too_large")
		for _, bad := range []map[string]any{
			{"type": "state", "data": 1, "ref": "bad"},
			{"type": "state", "seq": 3, "ref": "bad"},
			{"type": "state", "seq": -1, "data": 1, "ref": "bad"},
		} {
			c.Send(t, bad)
			if f := c.Await(t, wait, "answer", func(f testserver.Frame) bool { return f.Ref == "bad" || f.Type == "error" }); f.Type != "error" || f.Code != "bad_request" {
				t.Fatalf("state frame %v: %s; want error bad_request", bad, f.Raw)
			}
		}
		// Over MAX_MESSAGE_BYTES (64 KiB) and over the state limit: an
		// error, not a close.
		big := fmt.Sprintf(`{"type":"state","seq":3,"ref":"big","data":"%s"}`, strings.Repeat("z", 70<<10))
		c.Send(t, big)
		if f := c.Await(t, wait, "too_large", func(f testserver.Frame) bool { return f.Type == "error" }); f.Code != "too_large" {
			t.Fatalf("70 KiB state frame: %s; want error too_large", f.Raw)
		}
		fence(t, c)
		for _, inst := range []*testserver.Server{a, b} {
			st := getState(t, inst, room)
			if st.State == nil || st.State.Seq != 3 || !sameJSON(st.State.Data, `"`+fit+`"`) {
				t.Fatalf("state on %s: %.200s; want the 2048-byte state at 3", inst.Addr, st.raw)
			}
		}
		if closed, code := c.CloseCode(); closed {
			t.Fatalf("socket closed with %d by state frames", code)
		}
	})
}

// With the default MAX_STATE_BYTES (1 MiB) a state frame larger than
// MAX_MESSAGE_BYTES is taken, whatever the order of its fields, and comes
// back whole from GET state and since=start.
func TestLargeState(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		const room = "state-large"
		c := testserver.Join(t, a.WS, room, "c", "C")
		publishAcked(t, c, map[string]any{"data": 1})
		data := `{"blob":"` + strings.Repeat("s", 200<<10) + `"}`
		// data first: the type is read after 200 KiB.
		c.Send(t, `{"data":`+data+`,"seq":1,"ref":"large","type":"state"}`)
		if f := c.Await(t, wait, "answer", func(f testserver.Frame) bool { return f.Ref == "large" || f.Type == "error" }); f.Type != "ack" {
			t.Fatalf("200 KiB state: %s; want ack", f.Raw)
		}
		if st := getState(t, b, room); st.State == nil || st.State.Seq != 1 || !sameJSON(st.State.Data, data) {
			t.Fatalf("GET state of the large state: %.200s", st.raw)
		}
		late := testserver.JoinSince(t, b.WS, room, "late", "Late", "start", nil)
		if w := late.Welcome; w.State == nil || w.State.Seq != 1 || !sameJSON(w.State.Data, data) || w.Seq != 1 {
			t.Fatalf("since=start with the large state: %.300s", w.Raw)
		}
		// A publish that large is still over MAX_MESSAGE_BYTES.
		c.Send(t, `{"type":"publish","data":`+data+`}`)
		if code := c.WaitClose(t, wait); code != 1009 {
			t.Fatalf("200 KiB publish closed with %d, want 1009", code)
		}
	})
}

// stateRequests returns the state_request frames c has read.
func stateRequests(c *testserver.Client) []testserver.Frame {
	var out []testserver.Frame
	for _, f := range c.Frames() {
		if f.Type == "state_request" {
			out = append(out, f)
		}
	}
	return out
}

// lastStored is the seq of the last stored message c has read.
func lastStored(c *testserver.Client) uint64 {
	m := storedMessages(c)
	if len(m) == 0 {
		return 0
	}
	return m[len(m)-1].Seq
}

// With HISTORY_SIZE=10 a state=1 client is asked for the state once 5
// stored messages follow the latest one; a client without state=1 never
// is. Over a long stream in which the client answers every request with
// the state at the seq it has, the history always reaches back to the
// state: a since=start join gets the state and fewer than 10 messages,
// nothing lost.
func TestStateRequest(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_SIZE": "10", "ROOMCAST_RATE": "1000"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "state-req"
		capable := testserver.JoinSince(t, a.WS, room, "cap", "Cap", "", stateCapable)
		plain := testserver.Join(t, a.WS, room, "plain", "Plain")
		other := testserver.Join(t, b.WS, room, "other", "Other")
		pub := testserver.Join(t, b.WS, room, "pub", "Pub")
		for i := 1; i <= 4; i++ {
			publishAcked(t, pub, map[string]any{"data": i})
		}
		holdsSeq(t, capable, 4)
		fence(t, capable)
		if r := stateRequests(capable); len(r) != 0 {
			t.Fatalf("state_request after 4 stored messages: %s", r[0].Raw)
		}
		publishAcked(t, pub, map[string]any{"data": 5})
		req := capable.Await(t, wait, "state_request", func(f testserver.Frame) bool { return f.Type == "state_request" })
		if k := rawKeys(t, req.Raw); req.Room != room || req.Seq != 5 || len(k) != 3 {
			t.Fatalf("state_request: %s; want {type, room %q, seq 5}", req.Raw, room)
		}
		if f := sendState(t, capable, 5, map[string]any{"upTo": 5}); f.Type != "ack" {
			t.Fatalf("answer to the state_request: %s", f.Raw)
		}

		// The long stream: the capable client answers every request.
		answered := 1
		for i := 6; i <= 100; i++ {
			ack := publishAcked(t, pub, map[string]any{"data": i})
			holdsSeq(t, capable, ack.Seq)
			for reqs := stateRequests(capable); answered < len(reqs); answered++ {
				have := lastStored(capable)
				if reqs[answered].Seq > have {
					t.Fatalf("state_request for seq %d before the client had it (at %d)", reqs[answered].Seq, have)
				}
				if f := sendState(t, capable, have, map[string]any{"upTo": have}); f.Type != "ack" {
					t.Fatalf("state at %d: %s", have, f.Raw)
				}
			}
		}
		t.Logf("%d state requests over 100 stored messages", len(stateRequests(capable)))
		st := getState(t, b, room)
		late := testserver.JoinSince(t, b.WS, room, "late", "Late", "start", nil)
		w := late.Welcome
		if w.State == nil || w.Seq != 100 {
			t.Fatalf("since=start: %.300s; want a state and seq 100", w.Raw)
		}
		if w.State.Seq < 91 {
			t.Fatalf("since=start after 100 messages with HISTORY_SIZE=10: the state is at %d (GET state: %s), so the history (91..100) no longer reaches back to it; the client answered all %d state requests, seqs %v",
				w.State.Seq, st.raw, len(stateRequests(capable)), seqsOf(stateRequests(capable)))
		}
		for seq := w.State.Seq + 1; seq <= 100; seq++ {
			if f := late.AwaitType(t, "message", wait); f.Seq != seq {
				t.Fatalf("after the state at %d: seq %d, want %d", w.State.Seq, f.Seq, seq)
			}
		}
		for _, c := range []*testserver.Client{plain, other, pub, late} {
			fence(t, c)
			if r := stateRequests(c); len(r) != 0 {
				t.Fatalf("%s joined without state=1 and got %s", c.Welcome.Me.ID, r[0].Raw)
			}
		}
	})
}

// A state request nobody answers is sent again, to another state=1
// client, once 10 s passed and a stored message follows.
func TestStateRequestRetry(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_SIZE": "10"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "state-retry"
		c1 := testserver.JoinSince(t, a.WS, room, "cap-1", "", "", stateCapable)
		c2 := testserver.JoinSince(t, a.WS, room, "cap-2", "", "", stateCapable)
		pub := testserver.Join(t, b.WS, room, "pub", "Pub")
		for i := 1; i <= 5; i++ {
			publishAcked(t, pub, map[string]any{"data": i})
		}
		var asked, spare *testserver.Client
		eventually(t, wait, "a state_request", func() error {
			switch n1, n2 := len(stateRequests(c1)), len(stateRequests(c2)); {
			case n1+n2 > 1:
				t.Fatalf("%d and %d state requests for one due request", n1, n2)
			case n1 == 1:
				asked, spare = c1, c2
			case n2 == 1:
				asked, spare = c2, c1
			default:
				return fmt.Errorf("none yet")
			}
			return nil
		})
		first := time.Now()
		// asked does not answer; stored messages keep coming.
		var retry testserver.Frame
		eventually(t, 20*time.Second, "the state_request retried to the other client", func() error {
			if r := stateRequests(spare); len(r) > 0 {
				retry = r[0]
				return nil
			}
			if n := len(stateRequests(asked)); n > 1 {
				t.Fatalf("the request was sent again to the client that did not answer (%d requests), not to the other", n)
			}
			publishAcked(t, pub, map[string]any{"data": "more"})
			time.Sleep(200 * time.Millisecond) // the pace of the stream, not a synchronisation
			return fmt.Errorf("not yet")
		})
		after := time.Since(first)
		if after < 5*time.Second {
			t.Fatalf("request retried after %v, before its 10 s", after)
		}
		have := lastStored(spare)
		if retry.Seq < 5 || retry.Seq > have {
			t.Fatalf("retried state_request: %s (client at %d)", retry.Raw, have)
		}
		if f := sendState(t, spare, have, "from the spare"); f.Type != "ack" {
			t.Fatalf("state from the other client: %s", f.Raw)
		}
		t.Logf("retried after %v", after.Round(100*time.Millisecond))
	})
}

// The retry goes to another state=1 client also when they are on
// different instances (the instances share the request): in eight rooms,
// each with one such client on A and one on B, the client that left the
// request unanswered is never asked again while the other one waits.
func TestStateRequestRetryAcrossInstances(t *testing.T) {
	t.Parallel()
	_, s := cluster(t, 2, map[string]string{"ROOMCAST_HISTORY_SIZE": "10"})
	type roomClients struct {
		name   string
		caps   [2]*testserver.Client
		pub    *testserver.Client
		asked  int // index in caps of the client asked first; -1 until known
		issued time.Time
	}
	var rs []*roomClients
	for i := 0; i < 8; i++ {
		r := &roomClients{name: fmt.Sprint("state-retry-x", i), asked: -1}
		r.caps[0] = testserver.JoinSince(t, s[0].WS, r.name, "cap-a", "", "", stateCapable)
		r.caps[1] = testserver.JoinSince(t, s[1].WS, r.name, "cap-b", "", "", stateCapable)
		r.pub = testserver.Join(t, s[0].WS, r.name, "pub", "")
		for n := 1; n <= 5; n++ {
			publishAcked(t, r.pub, map[string]any{"data": n})
		}
		rs = append(rs, r)
	}
	for _, r := range rs {
		eventually(t, wait, r.name+": the first state_request", func() error {
			n0, n1 := len(stateRequests(r.caps[0])), len(stateRequests(r.caps[1]))
			switch {
			case n0+n1 > 1:
				t.Fatalf("%s: %d and %d requests for one due request", r.name, n0, n1)
			case n0 == 1:
				r.asked = 0
			case n1 == 1:
				r.asked = 1
			default:
				return fmt.Errorf("none yet")
			}
			r.issued = time.Now()
			return nil
		})
	}
	// Nobody answers; the stream goes on until every room's request was
	// sent again.
	eventually(t, 20*time.Second, "every request retried", func() error {
		waiting := 0
		for _, r := range rs {
			again, other := len(stateRequests(r.caps[r.asked])), len(stateRequests(r.caps[1-r.asked]))
			if again > 1 {
				t.Fatalf("%s: the request was sent again to %s on %s, which left it unanswered, not to %s on the other instance (after %v)",
					r.name, r.caps[r.asked].Welcome.Me.ID, r.caps[r.asked].Welcome.Instance, r.caps[1-r.asked].Welcome.Me.ID, time.Since(r.issued).Round(100*time.Millisecond))
			}
			if other == 0 {
				waiting++
				publishAcked(t, r.pub, map[string]any{"data": "more"})
			}
		}
		if waiting > 0 {
			time.Sleep(200 * time.Millisecond) // the pace of the stream, not a synchronisation
			return fmt.Errorf("%d rooms not retried yet", waiting)
		}
		return nil
	})
}
