package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// engines runs f on one instance in memory, on two instances sharing a
// private Redis, and on two instances sharing a private Redis Cluster (a
// and b are the same server in memory).
func engines(t *testing.T, env map[string]string, f func(t *testing.T, a, b *testserver.Server)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		s := testserver.Start(t, testserver.Options{Env: env})
		f(t, s, s)
	})
	redisEngines(t, 2, env, func(t *testing.T, s []*testserver.Server) { f(t, s[0], s[1]) })
}

// storedMessages returns the message frames c received, in order, that
// carry a seq.
func storedMessages(c *testserver.Client) []testserver.Frame {
	var out []testserver.Frame
	for _, f := range c.Frames() {
		if f.Type == "message" && f.Seq > 0 {
			out = append(out, f)
		}
	}
	return out
}

// publishAcked publishes data with a ref and returns the ack.
func publishAcked(t *testing.T, c *testserver.Client, msg map[string]any) testserver.Frame {
	t.Helper()
	ref := fmt.Sprint("r", time.Now().UnixNano())
	msg["type"], msg["ref"] = "publish", ref
	c.Send(t, msg)
	return c.Await(t, wait, "ack "+ref, func(f testserver.Frame) bool {
		if f.Type == "error" && f.Ref == ref {
			t.Fatalf("publish refused: %s", f.Raw)
		}
		return f.Type == "ack" && f.Ref == ref
	})
}

// awaitSeq waits until c holds the stored message with seq.
func awaitSeq(t *testing.T, c *testserver.Client, seq uint64) {
	t.Helper()
	c.Await(t, wait, fmt.Sprint("message seq ", seq), func(f testserver.Frame) bool { return f.Type == "message" && f.Seq == seq })
}

// A client that was away resumes with its position and gets exactly the
// stored messages it missed, in order, before anything live; ephemeral
// ones are never replayed. On Redis it resumes on the other instance too.
func TestResume(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		pub := testserver.Join(t, a.WS, "resume", "pub", "Pub")
		sub := testserver.Join(t, a.WS, "resume", "sub", "Sub")
		first := publishAcked(t, pub, map[string]any{"data": "before"})
		awaitSeq(t, sub, first.Seq)
		pos := fmt.Sprintf("%s:%d", sub.Welcome.Epoch, first.Seq)
		sub.Close()

		var want []string
		for i := 0; i < 20; i++ {
			text := fmt.Sprint("missed-", i)
			ack := publishAcked(t, pub, map[string]any{"data": text})
			if ack.Seq != first.Seq+uint64(i)+1 {
				t.Fatalf("ack %d has seq %d, want %d", i, ack.Seq, first.Seq+uint64(i)+1)
			}
			want = append(want, `"`+text+`"`)
			publishAcked(t, pub, map[string]any{"data": "cursor", "ephemeral": true})
		}
		top := first.Seq + 20
		for _, inst := range []*testserver.Server{a, b} {
			again := testserver.JoinSince(t, inst.WS, "resume", "sub", "Sub", pos, nil)
			w := again.Welcome
			if w.Recovered == nil || !*w.Recovered || w.Epoch != sub.Welcome.Epoch || w.Seq != top {
				t.Fatalf("welcome on %s: %s; want recovered at %s:%d", inst.Addr, w.Raw, sub.Welcome.Epoch, top)
			}
			live := publishAcked(t, pub, map[string]any{"data": "live"})
			awaitSeq(t, again, live.Seq)
			top = live.Seq
			var got []string
			var seqs []uint64
			for _, f := range again.Frames() {
				switch {
				case f.Type != "message":
				case f.Seq == 0:
					// An ephemeral message is never replayed. One published
					// just before this join may still arrive live (its
					// PUBLISH is not waited for), after the replay.
					if len(seqs) < len(want) {
						t.Fatalf("resumed on %s: an ephemeral message inside the replay: %s", inst.Addr, f.Raw)
					}
				default:
					got = append(got, string(f.Data))
					seqs = append(seqs, f.Seq)
				}
			}
			wantAll := append(append([]string(nil), want...), `"live"`)
			if strings.Join(got, ",") != strings.Join(wantAll, ",") {
				t.Fatalf("resumed on %s got %v\nwant %v", inst.Addr, got, wantAll)
			}
			for i, s := range seqs {
				if s != first.Seq+uint64(i)+1 {
					t.Fatalf("seqs %v are not consecutive from %d", seqs, first.Seq+1)
				}
			}
			again.Close()
			want = append(want, `"live"`)
			pos = fmt.Sprintf("%s:%d", w.Epoch, first.Seq)
		}
	})
}

// Positions that cannot be resumed fall back to since=start: a wrong
// epoch, a seq older than the history, a seq ahead of the room.
func TestResumeImpossible(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_SIZE": "10"}, func(t *testing.T, a, b *testserver.Server) {
		pub := testserver.Join(t, a.WS, "lost", "pub", "Pub")
		var last uint64
		for i := 1; i <= 25; i++ {
			last = publishAcked(t, pub, map[string]any{"data": i}).Seq
		}
		epoch := pub.Welcome.Epoch
		for _, since := range []string{"0123456789abcdef:3", epoch + ":2", epoch + ":999"} {
			c := testserver.JoinSince(t, b.WS, "lost", "late", "Late", since, nil)
			w := c.Welcome
			if w.Recovered == nil || *w.Recovered || w.Epoch != epoch || w.Seq != last || w.State != nil {
				t.Fatalf("since=%s: welcome %s; want recovered false at %s:%d without state", since, w.Raw, epoch, last)
			}
			// No state: everything the history still holds follows, in order.
			for seq := last - 9; seq <= last; seq++ {
				f := c.AwaitType(t, "message", wait)
				if f.Seq != seq {
					t.Fatalf("since=%s: replayed seq %d, want %d", since, f.Seq, seq)
				}
			}
			c.Close()
		}
	})
}

// since=start gives the state, when there is one, and what follows it.
func TestSinceStart(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		pub := testserver.Join(t, a.WS, "start", "pub", "Pub")
		empty := testserver.JoinSince(t, b.WS, "start", "x", "X", "start", nil)
		if w := empty.Welcome; w.State != nil || w.Seq != 0 || w.Epoch == "" || w.Recovered != nil {
			t.Fatalf("since=start into an empty room: %s", w.Raw)
		}
		empty.Close()
		for i := 1; i <= 3; i++ {
			publishAcked(t, pub, map[string]any{"data": i})
		}
		pub.Send(t, map[string]any{"type": "state", "seq": 2, "data": map[string]any{"upTo": 2}, "ref": "s"})
		pub.Await(t, wait, "state ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "s" })
		publishAcked(t, pub, map[string]any{"data": 4})

		c := testserver.JoinSince(t, b.WS, "start", "y", "Y", "start", nil)
		w := c.Welcome
		if w.State == nil || w.State.Seq != 2 || !sameJSON(w.State.Data, `{"upTo":2}`) || w.Seq != 4 {
			t.Fatalf("since=start: welcome %s; want state at 2 and seq 4", w.Raw)
		}
		for _, want := range []uint64{3, 4} {
			if f := c.AwaitType(t, "message", wait); f.Seq != want {
				t.Fatalf("after the state: seq %d, want %d", f.Seq, want)
			}
		}
	})
}

// A malformed since is refused before the upgrade.
func TestMalformedSince(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	tok := testserver.Token(t, "u", "U", 0, nil)
	for _, since := range []string{"begin", "abc", ":5", "abc:", "abc:-1", "abc:1.5", "a b:1", strings.Repeat("e", 70) + ":1"} {
		status, body := upgradeRequest(t, testserver.SinceURL(s.URL, "room", tok, since, nil), nil)
		if status != http.StatusBadRequest {
			t.Fatalf("since=%q: HTTP %d %s, want 400", since, status, body)
		}
		assertErrorBody(t, body, "bad_since")
	}
	status, body := upgradeRequest(t, testserver.SinceURL(s.URL, "room", tok, "", url.Values{"state": {"yes"}}), nil)
	if status != http.StatusBadRequest {
		t.Fatalf("state=yes: HTTP %d %s, want 400", status, body)
	}
}
