package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

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

		marker := publishAcked(t, pub, map[string]any{"data": "marker"})
		awaitSeq(t, sub, marker.Seq)
		got := storedMessages(sub)
		checkStream(t, "subscriber", got, first.Seq)
		if len(got) != 3 {
			t.Fatalf("subscriber got %d stored messages %v, want once, lost-ack, marker", len(got), seqsOf(got))
		}
		for i, want := range []struct {
			id, data string
		}{{first.ID, `"once"`}, {resent.ID, `"lost-ack"`}, {marker.ID, `"marker"`}} {
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
		if seqs := page.seqs(t); len(seqs) != 3 {
			t.Fatalf("history holds seqs %v, want 3 messages", seqs)
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
