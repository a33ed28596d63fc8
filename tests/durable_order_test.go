package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// A keyed publish that the SDK sends again after a reconnect (its ack was
// read, or the socket went before the ack) reaches the room once, and the
// second ack names the first message's id and seq. On Redis the second
// send goes to the other instance. The same key in another room is a
// message of its own.
func TestKeyedPublishAcrossReconnect(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		sub := testserver.Join(t, b.WS, "keyed", "sub", "Sub")
		other := testserver.Join(t, a.WS, "keyed-other", "sub", "Sub")
		pub := testserver.Join(t, a.WS, "keyed", "pub", "Pub")

		// The ack was read, then the tab reconnected and sent it again.
		first := publishAcked(t, pub, map[string]any{"data": "once", "key": "k-1"})
		if first.ID == "" || first.Seq == 0 {
			t.Fatalf("ack of a stored keyed publish: %s", first.Raw)
		}
		pub.Close()
		pub = testserver.Join(t, b.WS, "keyed", "pub", "Pub")
		again := publishAcked(t, pub, map[string]any{"data": "once", "key": "k-1"})
		if again.ID != first.ID || again.Seq != first.Seq {
			t.Fatalf("re-sent keyed publish acked %s; want the first's id %s and seq %d", again.Raw, first.ID, first.Seq)
		}

		// The socket went before its ack was read.
		pub.Send(t, map[string]any{"type": "publish", "data": "lost-ack", "key": "k-2", "ref": "gone"})
		pub.Close()
		pub = testserver.Join(t, a.WS, "keyed", "pub", "Pub")
		resent := publishAcked(t, pub, map[string]any{"data": "lost-ack", "key": "k-2"})
		if resent.ID == "" || resent.Seq != first.Seq+1 {
			t.Fatalf("re-sent publish whose ack was lost: %s; want seq %d", resent.Raw, first.Seq+1)
		}

		// The same key in another room is not a duplicate.
		elsewhere := publishAcked(t, testserver.Join(t, a.WS, "keyed-other", "pub", "Pub"), map[string]any{"data": "there", "key": "k-1"})
		if elsewhere.ID == first.ID {
			t.Fatalf("key k-1 in another room was taken for the first room's message: %s", elsewhere.Raw)
		}
		awaitSeq(t, other, elsewhere.Seq)

		// Through the HTTP API, the same key is the same message.
		status, body := httpCall(t, "POST", b.URL+"/api/rooms/keyed/messages", testserver.APIKey, `{"data":"once","key":"k-1"}`)
		if want := fmt.Sprintf(`{"id":%q,"seq":%d}`, first.ID, first.Seq); status != 202 || !sameJSON(body, want) {
			t.Fatalf("POST with a key already used: HTTP %d %s; want 202 %s", status, body, want)
		}

		// Two tabs send one key at once, one on each instance: one message.
		tabs := []*testserver.Client{pub, testserver.Join(t, b.WS, "keyed", "pub", "Pub")}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, tab := range tabs {
			wg.Add(1)
			go func(i int, tab *testserver.Client) {
				defer wg.Done()
				<-start
				msg := fmt.Sprintf(`{"type":"publish","data":"both","key":"k-3","ref":"tab-%d"}`, i)
				_ = tab.WS.WriteMessage(websocket.TextMessage, []byte(msg))
			}(i, tab)
		}
		close(start)
		wg.Wait()
		var both []testserver.Frame
		for i, tab := range tabs {
			ref := fmt.Sprint("tab-", i)
			both = append(both, tab.Await(t, wait, "ack "+ref, func(f testserver.Frame) bool { return f.Ref == ref }))
		}
		if both[0].Type != "ack" || both[0].ID != both[1].ID || both[0].Seq != both[1].Seq || both[0].Seq != resent.Seq+1 {
			t.Fatalf("one key sent by two tabs at once: %s and %s; want two acks of one message at seq %d", both[0].Raw, both[1].Raw, resent.Seq+1)
		}

		marker := publishAcked(t, pub, map[string]any{"data": "marker"})
		awaitSeq(t, sub, marker.Seq)
		got := storedMessages(sub)
		checkStream(t, "subscriber", got, first.Seq)
		if len(got) != 4 {
			t.Fatalf("subscriber got %d stored messages %v, want once, lost-ack, both, marker", len(got), seqsOf(got))
		}
		for i, want := range []struct {
			id, data string
		}{{first.ID, `"once"`}, {resent.ID, `"lost-ack"`}, {both[0].ID, `"both"`}, {marker.ID, `"marker"`}} {
			if got[i].ID != want.id || string(got[i].Data) != want.data {
				t.Fatalf("subscriber's message %d: %s; want id %s data %s", i, got[i].Raw, want.id, want.data)
			}
		}
		for _, f := range sub.Frames() {
			if f.Type == "message" && f.Seq == 0 {
				t.Fatalf("a keyed stored message came without seq: %s", f.Raw)
			}
		}
		// Stored once as well.
		page := getMessages(t, a, "keyed", "")
		if seqs := page.seqs(t); len(seqs) != 4 {
			t.Fatalf("history holds seqs %v, want 4 messages", seqs)
		}
		// A key is 1 to 64 characters.
		for _, key := range []string{"", strings.Repeat("k", 65)} {
			pub.Send(t, map[string]any{"type": "publish", "data": 1, "key": key, "ref": "badkey"})
			if e := pub.Await(t, wait, "answer to a bad key", func(f testserver.Frame) bool { return f.Ref == "badkey" }); e.Type != "error" || e.Code != "bad_request" {
				t.Fatalf("key of %d characters: %s; want error bad_request", len([]rune(key)), e.Raw)
			}
		}
	})
}

// Four publishers at once (two on each instance on Redis) each publish 50
// stored messages without waiting for acks: every subscriber, on every
// instance, sees the same 200 messages in the same order with seqs 1..200,
// the seq of each is the one its publisher was acked with, and each
// publisher's own stream (others' messages, its own acks) is gapless too.
func TestConcurrentPublishersOneOrder(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_SEND_QUEUE": "1024"}, func(t *testing.T, a, b *testserver.Server) {
		const room, perPub, pubs = "order", 50, 4
		insts := []*testserver.Server{a, a, b, b}
		var subs []*testserver.Client
		for i, inst := range insts {
			subs = append(subs, testserver.Join(t, inst.WS, room, fmt.Sprint("sub-", i), ""))
		}
		var publishers []*testserver.Client
		for i := 0; i < pubs; i++ {
			publishers = append(publishers, testserver.Join(t, insts[i].WS, room, fmt.Sprint("pub-", i), ""))
		}
		var wg sync.WaitGroup
		errs := make(chan error, pubs)
		start := make(chan struct{})
		for i, p := range publishers {
			wg.Add(1)
			go func(i int, p *testserver.Client) {
				defer wg.Done()
				<-start
				for n := 0; n < perPub; n++ {
					msg, _ := json.Marshal(map[string]any{"type": "publish", "data": fmt.Sprintf("p%d-%d", i, n), "ref": fmt.Sprintf("p%d-%d", i, n)})
					if err := p.WS.WriteMessage(websocket.TextMessage, msg); err != nil {
						errs <- err
						return
					}
				}
			}(i, p)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		idOf := map[uint64]string{}
		own := make([]map[uint64]bool, pubs)
		for i, p := range publishers {
			own[i] = map[uint64]bool{}
			for n := 0; n < perPub; n++ {
				ref := fmt.Sprintf("p%d-%d", i, n)
				ack := p.Await(t, wait, "ack "+ref, func(f testserver.Frame) bool {
					if f.Type == "error" {
						t.Fatalf("publisher %d: %s", i, f.Raw)
					}
					return f.Type == "ack" && f.Ref == ref
				})
				if prev, dup := idOf[ack.Seq]; dup || ack.Seq == 0 || ack.Seq > pubs*perPub {
					t.Fatalf("ack %s: seq %d out of 1..%d or already acked for %s", ack.Raw, ack.Seq, pubs*perPub, prev)
				}
				idOf[ack.Seq] = ack.ID
				own[i][ack.Seq] = true
			}
		}
		for i, s := range subs {
			awaitSeq(t, s, pubs*perPub)
			got := storedMessages(s)
			who := fmt.Sprintf("subscriber %d on %s", i, s.Welcome.Instance)
			checkStream(t, who, got, 1)
			if len(got) != pubs*perPub {
				t.Fatalf("%s: %d stored messages, want %d", who, len(got), pubs*perPub)
			}
			for _, m := range got {
				if m.ID != idOf[m.Seq] {
					t.Fatalf("%s: seq %d is %s, its ack said %s", who, m.Seq, m.ID, idOf[m.Seq])
				}
			}
		}
		// A publisher gets everyone's messages but its own, in the same
		// order: with its own acks they make the whole stream once.
		for i, p := range publishers {
			top := uint64(0)
			for seq := range idOf {
				if !own[i][seq] {
					top = max(top, seq)
				}
			}
			holdsSeq(t, p, top)
			seen := map[uint64]bool{}
			last := uint64(0)
			for _, m := range storedMessages(p) {
				if own[i][m.Seq] || seen[m.Seq] || m.Seq <= last || m.ID != idOf[m.Seq] {
					t.Fatalf("publisher %d got %s (own %v, seen %v, after %d)", i, m.Raw, own[i][m.Seq], seen[m.Seq], last)
				}
				seen[m.Seq], last = true, m.Seq
			}
			if len(seen)+len(own[i]) != pubs*perPub {
				t.Fatalf("publisher %d: %d messages of others and %d of its own, want %d in all", i, len(seen), len(own[i]), pubs*perPub)
			}
		}
	})
}

// DELETE ends the room's history, and with it what its keys stood for: a
// keyed publish re-sent after the DELETE must not be acked with the seq
// of the old epoch, which in the new one names another message (or none).
func TestKeyedPublishAfterDelete(t *testing.T) {
	t.Parallel()
	engines(t, nil, func(t *testing.T, a, b *testserver.Server) {
		const room = "keyed-del"
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		before := publishAcked(t, pub, map[string]any{"data": "before", "key": "k-old"})
		if status, body := httpCall(t, "DELETE", b.URL+"/api/rooms/"+room, testserver.APIKey, ""); status != 204 {
			t.Fatalf("DELETE: HTTP %d %s", status, body)
		}
		if code := pub.WaitClose(t, wait); code != 4010 {
			t.Fatalf("publisher closed with %d after DELETE, want 4010", code)
		}
		pub = testserver.Join(t, b.WS, room, "pub", "Pub")
		sub := testserver.Join(t, a.WS, room, "sub", "Sub")
		other := publishAcked(t, pub, map[string]any{"data": "new epoch"})
		if other.Seq != 1 {
			t.Fatalf("first message after DELETE has seq %d", other.Seq)
		}
		resent := publishAcked(t, pub, map[string]any{"data": "before", "key": "k-old"})
		requireStoredAs(t, a, room, resent, before, "after DELETE", "before the DELETE")
		awaitSeq(t, sub, resent.Seq)
	})
}

// requireStoredAs fails unless the history of room holds the message
// acked by resent at its seq: a keyed publish re-sent (when) into a new
// epoch is stored anew, not acked with the first one's (before) old seq.
func requireStoredAs(t *testing.T, s *testserver.Server, room string, resent, before testserver.Frame, when, beforeWhen string) {
	t.Helper()
	var at *testserver.Frame
	for _, f := range getMessages(t, s, room, "").frames(t) {
		if f.Seq == resent.Seq {
			at = &f
		}
	}
	if at == nil || at.ID != resent.ID {
		name := "no message"
		if at != nil {
			name = at.Raw
		}
		t.Fatalf("keyed publish re-sent %s acked %s (%s: %s); in the new epoch seq %d is %s",
			when, resent.Raw, beforeWhen, before.Raw, resent.Seq, name)
	}
}

// The same holds when the room's history expired (HISTORY_TTL) within the
// key's 5 minutes: the new epoch's seqs are not the old one's. (With a
// store a history does not expire: HISTORY_TTL is then how long an idle
// room stays in memory; this is the engine without one.)
func TestKeyedPublishAfterHistoryExpiry(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_HISTORY_TTL": "1s", "ROOMCAST_STORE": "memory"}, func(t *testing.T, a, b *testserver.Server) {
		const room = "keyed-ttl"
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		before := publishAcked(t, pub, map[string]any{"data": "before", "key": "k-old"})
		oldEpoch := pub.Welcome.Epoch
		pub.Close()
		eventually(t, 10*time.Second, "the room's history expires", func() error {
			if p := getMessages(t, b, room, ""); p.Epoch == oldEpoch {
				return fmt.Errorf("still epoch %s at seq %d", p.Epoch, p.Seq)
			}
			return nil
		})
		pub = testserver.Join(t, b.WS, room, "pub", "Pub")
		other := publishAcked(t, pub, map[string]any{"data": "new epoch"})
		resent := publishAcked(t, pub, map[string]any{"data": "before", "key": "k-old"})
		if other.Seq != 1 {
			t.Fatalf("first message after the expiry has seq %d", other.Seq)
		}
		requireStoredAs(t, a, room, resent, before, "after the history expired", "before")
	})
}

// Clients join while stored messages stream in, live, with since=start
// and with a resume position, on every instance: each one's stream is
// gapless from where its welcome puts it (its seq, its state, its resume
// position) to the last message, with nothing twice.
func TestJoinWhilePublishing(t *testing.T) {
	t.Parallel()
	engines(t, map[string]string{"ROOMCAST_RATE": "1000"}, func(t *testing.T, a, b *testserver.Server) {
		const room, total = "join-race", 300
		pub := testserver.Join(t, a.WS, room, "pub", "Pub")
		epoch := pub.Welcome.Epoch
		p := startKeyedPublisher(pub, "race", total, 2*time.Millisecond)
		type joiner struct {
			c     *testserver.Client
			mode  string
			first uint64 // the first stored seq it must get
		}
		var js []joiner
		for i := 0; len(js) < 36; i++ {
			inst := []*testserver.Server{a, b}[i%2]
			user := fmt.Sprint("j", i)
			switch i % 3 {
			case 0:
				c := testserver.Join(t, inst.WS, room, user, "")
				if c.Welcome.Epoch != epoch {
					t.Fatalf("live welcome: %s", c.Welcome.Raw)
				}
				js = append(js, joiner{c, "live", c.Welcome.Seq + 1})
			case 1:
				c := testserver.JoinSince(t, inst.WS, room, user, "", "start", nil)
				if c.Welcome.State != nil || c.Welcome.Epoch != epoch {
					t.Fatalf("since=start welcome: %s", c.Welcome.Raw)
				}
				js = append(js, joiner{c, "start", 1})
			case 2:
				at := uint64(p.ackedCount() / 2)
				c := testserver.JoinSince(t, inst.WS, room, user, "", fmt.Sprintf("%s:%d", epoch, at), nil)
				if w := c.Welcome; w.Recovered == nil || !*w.Recovered || w.Epoch != epoch {
					t.Fatalf("resume at %d: %s", at, w.Raw)
				}
				js = append(js, joiner{c, fmt.Sprint("resume at ", at), at + 1})
			}
		}
		mid := p.ackedCount()
		p.wait(t)
		if mid == total {
			t.Logf("every join came after the last message")
		}
		for _, j := range js {
			who := fmt.Sprintf("%s (%s on %s)", j.c.Welcome.Me.ID, j.mode, j.c.Welcome.Instance)
			if j.first > total {
				continue // joined after the last message
			}
			holdsSeq(t, j.c, total)
			got := storedMessages(j.c)
			if len(got) == 0 || got[0].Seq != j.first {
				t.Fatalf("%s: first stored message %v, want seq %d (welcome %.200s)", who, seqsOf(got[:min(len(got), 5)]), j.first, j.c.Welcome.Raw)
			}
			checkStream(t, who, got, j.first)
		}
	})
}
