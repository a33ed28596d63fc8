package tests

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// Webhook delays shortened so the tests run in seconds.
var fastHooks = map[string]string{
	"ROOMCAST_WEBHOOK_VACATE_DELAY": "500ms",
	"ROOMCAST_WEBHOOK_RETRY_MIN":    "100ms",
	"ROOMCAST_WEBHOOK_RETRY_MAX":    "1s",
}

func merged(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// awaitQueueEmpty waits until every instance sees no webhook event
// pending: whatever was queued has been delivered (or dropped).
func awaitQueueEmpty(t testing.TB, within time.Duration, servers ...*testserver.Server) {
	t.Helper()
	eventually(t, within, "webhook queue empty", func() error {
		for _, s := range servers {
			if n := metric(t, s, "roomcast_webhook_pending"); n != 0 {
				return fmt.Errorf("%s: %v pending", s.Addr, n)
			}
		}
		return nil
	})
}

// counts returns how many delivered events of room have each type.
func counts(hs []hook) map[string]int {
	out := map[string]int{}
	for _, h := range hs {
		out[h.Type]++
	}
	return out
}

func noDuplicateIDs(t testing.TB, hs []hook) {
	t.Helper()
	seen := map[string]bool{}
	for _, h := range hs {
		if seen[h.ID] {
			t.Fatalf("webhook %s (%s) delivered twice", h.ID, h.Type)
		}
		seen[h.ID] = true
	}
}

// Every kind of event, caused on two instances, arrives exactly once: the
// instance that decides an event queues it once, and one instance
// delivers it. On a single Redis and on a Redis Cluster (each room's
// queue in its partition's slot).
func TestWebhooksOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	redisEngines(t, 2, rcv.env(fastHooks), func(t *testing.T, s []*testserver.Server) {
		a, b := s[0], s[1]
		room := "wh-once-" + strings.ReplaceAll(t.Name(), "/", "-")
		ca := testserver.JoinSince(t, a.WS, room, "ann", "Ann", "", stateCapable)
		rcv.awaitDelivered(t, wait, room, 1, "member.joined ann", ofType("member.joined"))
		cb := testserver.Join(t, b.WS, room, "bob", "Bob")

		ack := publishAcked(t, ca, map[string]any{"data": "one"})
		if f := sendState(t, ca, ack.Seq, map[string]any{"n": 1}); f.Type != "ack" {
			t.Fatalf("state: %s", f.Raw)
		}
		if st, body := postDoc(t, b, room, testserver.APIKey, makeUpdate(t, "hello", nil)); st != http.StatusNoContent {
			t.Fatalf("POST doc: %d %s", st, body)
		}
		rcv.awaitDelivered(t, wait, room, 1, "room.state", ofType("room.state"))
		rcv.awaitDelivered(t, wait, room, 1, "doc.updated", ofType("doc.updated"))
		ca.Close()
		rcv.awaitDelivered(t, wait, room, 1, "member.left ann", ofType("member.left"))
		cb.Close()
		rcv.awaitDelivered(t, wait, room, 1, "room.vacated", ofType("room.vacated"))
		if st, _ := httpCall(t, http.MethodDelete, a.URL+"/api/rooms/"+room, testserver.APIKey, ""); st != http.StatusNoContent {
			t.Fatalf("DELETE room: %d", st)
		}
		rcv.awaitDelivered(t, wait, room, 1, "room.deleted", ofType("room.deleted"))
		awaitQueueEmpty(t, wait, a, b)

		got := rcv.deliveredOf(room)
		noDuplicateIDs(t, got)
		want := map[string]int{"room.occupied": 1, "member.joined": 2, "member.left": 2, "room.state": 1,
			"doc.updated": 1, "room.vacated": 1, "room.deleted": 1}
		if c := counts(got); fmt.Sprint(c) != fmt.Sprint(want) {
			t.Fatalf("delivered %v, want %v: %v", c, want, types(got))
		}
		if got[0].Type != "room.occupied" || got[1].Type != "member.joined" || got[1].Member != "ann" {
			t.Fatalf("first events %v, want room.occupied then member.joined:ann", types(got))
		}
		for _, h := range got {
			switch h.Type {
			case "member.left":
				if h.Reason != "closed" {
					t.Fatalf("member.left of %s with reason %q, want closed", h.Member, h.Reason)
				}
			case "room.state":
				if h.Epoch == "" || h.Seq != ack.Seq || h.Bytes != int64(len(`{"n":1}`)) {
					t.Fatalf("room.state %+v, want epoch, seq %d, bytes %d", h, ack.Seq, len(`{"n":1}`))
				}
			case "doc.updated":
				if h.Epoch == "" || h.Seq == 0 || h.Bytes <= 0 {
					t.Fatalf("doc.updated %+v, want epoch, seq and bytes", h)
				}
			}
		}
		if d := metric(t, a, "roomcast_webhook_delivered_total") + metric(t, b, "roomcast_webhook_delivered_total"); d < float64(len(got)) {
			t.Fatalf("instances count %v delivered, the receiver got %d", d, len(got))
		}
	})
}

// A receiver that fails three times gets the event a fourth time, with
// the same webhook-id, and answers it.
func TestWebhooksRetrySameID(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.setAnswer(func(h hook) int {
		if h.Attempt <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := testserver.Start(t, testserver.Options{Env: rcv.env(fastHooks)})
	const room = "wh-retry"
	if st, _ := httpCall(t, http.MethodDelete, s.URL+"/api/rooms/"+room, testserver.APIKey, ""); st != http.StatusNoContent {
		t.Fatalf("DELETE room: %d", st)
	}
	h := rcv.awaitDelivered(t, 3*wait, room, 1, "room.deleted", nil)[0]
	var tries []hook
	for _, x := range rcv.all() {
		if x.ID == h.ID {
			tries = append(tries, x)
		}
	}
	if len(tries) != 4 || h.Attempt != 4 {
		t.Fatalf("%d requests for %s, delivered at attempt %d; want 4, the 4th answered", len(tries), h.ID, h.Attempt)
	}
	for i, x := range tries[:3] {
		if x.Status != http.StatusInternalServerError || x.Type != "room.deleted" {
			t.Fatalf("attempt %d: %+v", i+1, x)
		}
	}
	awaitQueueEmpty(t, wait, s)
	if r := metric(t, s, "roomcast_webhook_retried_total"); r != 3 {
		t.Fatalf("retried_total %v, want 3", r)
	}
}

// lessThan reports whether every attempt of ids came before at.
// outage makes the receiver answer 503 until the returned func brings it
// back.
func (r *receiver) outage() (up func()) {
	var mu sync.Mutex
	down := true
	r.setAnswer(func(hook) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	return func() {
		mu.Lock()
		down = false
		mu.Unlock()
	}
}

func attemptsOf(r *receiver, room string) map[string][]hook {
	out := map[string][]hook{}
	for _, h := range r.all() {
		if h.Room == room {
			out[h.ID] = append(out[h.ID], h)
		}
	}
	return out
}

// The instance delivering the queue dies (kill -9) while events wait to
// be retried: the other instance takes its lease over and delivers them.
func TestWebhooksDelivererKilled(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	receiverUp := rcv.outage()
	r, s := cluster(t, 2, rcv.env(fastHooks))
	rooms := []string{"wh-kill-1", "wh-kill-2", "wh-kill-3", "wh-kill-4", "wh-kill-5"}
	for i, room := range rooms {
		if st, _ := httpCall(t, http.MethodDelete, s[i%2].URL+"/api/rooms/"+room, testserver.APIKey, ""); st != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d", room, st)
		}
	}
	eventually(t, wait, "a failed attempt of every event", func() error {
		for _, room := range rooms {
			if len(attemptsOf(rcv, room)) == 0 {
				return fmt.Errorf("no attempt for %s", room)
			}
		}
		return nil
	})
	owner, err := r.Client(t).Get(context.Background(), "roomcast:wh:lease").Result()
	if err != nil {
		t.Fatalf("read the queue's lease: %v", err)
	}
	var dead, alive *testserver.Server
	switch {
	case strings.HasPrefix(owner, "inst-a/"):
		dead, alive = s[0], s[1]
	case strings.HasPrefix(owner, "inst-b/"):
		dead, alive = s[1], s[0]
	default:
		t.Fatalf("lease held by %q", owner)
	}
	dead.Kill()
	killed := time.Now()
	receiverUp()
	for _, room := range rooms {
		rcv.awaitDelivered(t, 4*wait, room, 1, "room.deleted of "+room, nil)
	}
	for _, room := range rooms {
		for id, tries := range attemptsOf(rcv, room) {
			last := tries[len(tries)-1]
			if last.Status != http.StatusNoContent || last.At.Before(killed) {
				t.Fatalf("%s (%s): last attempt %+v, want a delivery after the kill", id, room, last)
			}
		}
	}
	awaitQueueEmpty(t, wait, alive)
	if d := metric(t, alive, "roomcast_webhook_delivered_total"); d < float64(len(rooms)) {
		t.Fatalf("the surviving instance delivered %v, want at least %d", d, len(rooms))
	}
}

// A user who leaves and is back within WEBHOOK_VACATE_DELAY causes no
// room.vacated and no second room.occupied; member.left and member.joined
// still go out. Leaving for good, the room is vacated once.
func TestWebhooksVacateCancelledByReturn(t *testing.T) {
	t.Parallel()
	const delay = 3 * time.Second
	rcv := newReceiver(t)
	env := rcv.env(merged(fastHooks, map[string]string{"ROOMCAST_WEBHOOK_VACATE_DELAY": delay.String()}))
	engines(t, env, func(t *testing.T, a, b *testserver.Server) {
		room := "wh-vacate-" + strings.ReplaceAll(t.Name(), "/", "-")
		c := testserver.Join(t, a.WS, room, "ann", "Ann")
		c.Close()
		left := rcv.awaitDelivered(t, wait, room, 1, "member.left", ofType("member.left"))[0]
		c = testserver.Join(t, b.WS, room, "ann", "Ann")
		joined := rcv.awaitDelivered(t, wait, room, 2, "second member.joined", ofType("member.joined"))[1]
		if gap := time.Duration(joined.Time-left.Time) * time.Millisecond; gap >= delay {
			t.Skipf("the return took %v, past the %v vacate delay: the machine is too slow for this test", gap, delay)
		}
		c.Close()
		rcv.awaitDelivered(t, wait+delay, room, 1, "room.vacated", ofType("room.vacated"))
		got := rcv.deliveredOf(room)
		want := "[room.occupied member.joined:ann member.left:ann member.joined:ann member.left:ann room.vacated]"
		if fmt.Sprint(types(got)) != want {
			t.Fatalf("delivered %v, want %s", types(got), want)
		}
	})
}

// The receiver is down while 1,000 events queue; all of them arrive after
// it is back. The spec's case is a minute of downtime with retries at most
// 10 min apart; here 20 s of downtime with retries at most 2 s apart, the
// same proportion of outage to retry interval scaled down (a third of the
// outage, and far below it), so the test runs in well under a minute.
func TestWebhooksReceiverDownBacklog(t *testing.T) {
	t.Parallel()
	const n, outage = 1000, 20 * time.Second
	rcv := newReceiver(t)
	receiverUp := rcv.outage()
	_, s := cluster(t, 2, rcv.env(merged(fastHooks, map[string]string{"ROOMCAST_WEBHOOK_RETRY_MAX": "2s"})))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				room := fmt.Sprintf("wh-backlog-%04d", i)
				if st, _ := httpCall(t, http.MethodDelete, s[i%2].URL+"/api/rooms/"+room, testserver.APIKey, ""); st != http.StatusNoContent {
					t.Errorf("DELETE %s: %d", room, st)
				}
			}
		})
	}
	wg.Wait()
	eventually(t, outage, "every event attempted and failed", func() error {
		if k := len(rcv.all()); k < n {
			return fmt.Errorf("%d attempts", k)
		}
		return nil
	})
	eventually(t, wait, "every event pending", func() error {
		if p := metric(t, s[0], "roomcast_webhook_pending"); p != n {
			return fmt.Errorf("%v pending while the receiver is down, want %d (delivered %v+%v)", p, n,
				metric(t, s[0], "roomcast_webhook_delivered_total"), metric(t, s[1], "roomcast_webhook_delivered_total"))
		}
		return nil
	})
	<-time.After(time.Until(start.Add(outage))) // the outage's length is the scenario, not a wait for a condition
	receiverUp()
	back := time.Now()
	eventually(t, 30*time.Second, "every queued event delivered", func() error {
		if k := len(rcv.delivered()); k < n {
			return fmt.Errorf("%d of %d delivered", k, n)
		}
		return nil
	})
	got := rcv.delivered()
	noDuplicateIDs(t, got)
	rooms := map[string]bool{}
	for _, h := range got {
		rooms[h.Room] = true
		if h.Attempt < 2 {
			t.Fatalf("%s delivered at its first attempt, while the receiver was down", h.ID)
		}
	}
	if len(rooms) != n {
		t.Fatalf("events of %d rooms delivered, want %d", len(rooms), n)
	}
	t.Logf("%d events delivered %v after the receiver came back", n, time.Since(back).Round(time.Millisecond))
	awaitQueueEmpty(t, wait, s...)
}

// Past WEBHOOK_MAX_PENDING the oldest events are dropped, counted, and the
// newest delivered.
func TestWebhooksQueueBound(t *testing.T) {
	t.Parallel()
	// Not on a Redis Cluster, where each partition's queue holds its share
	// of the bound (10/128 rounds up to 1 event each).
	bounded := func(t *testing.T, start func(env map[string]string) (a, b *testserver.Server)) {
		rcv := newReceiver(t)
		receiverUp := rcv.outage()
		a, b := start(rcv.env(merged(fastHooks, map[string]string{"ROOMCAST_WEBHOOK_MAX_PENDING": "10"})))
		prefix := "wh-bound-" + strings.ReplaceAll(t.Name(), "/", "-") + "-"
		for i := range 15 {
			if st, _ := httpCall(t, http.MethodDelete, a.URL+"/api/rooms/"+fmt.Sprint(prefix, i), testserver.APIKey, ""); st != http.StatusNoContent {
				t.Fatalf("DELETE: %d", st)
			}
		}
		eventually(t, wait, "5 events dropped", func() error {
			d := metricIn(scrape(t, a), `roomcast_webhook_dropped_total{reason="queue_full"}`) +
				metricIn(scrape(t, b), `roomcast_webhook_dropped_total{reason="queue_full"}`)
			if a == b {
				d /= 2
			}
			if d != 5 {
				return fmt.Errorf("dropped %v", d)
			}
			return nil
		})
		receiverUp()
		awaitQueueEmpty(t, 2*wait, a, b)
		var got []string
		for _, h := range rcv.delivered() {
			if strings.HasPrefix(h.Room, prefix) {
				got = append(got, strings.TrimPrefix(h.Room, prefix))
			}
		}
		if len(got) != 10 {
			t.Fatalf("delivered %v, want the 10 newest", got)
		}
		for _, r := range got {
			if r < "5" && len(r) == 1 {
				t.Fatalf("delivered %v: room %s was among the 5 oldest", got, r)
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		bounded(t, func(env map[string]string) (a, b *testserver.Server) {
			s := testserver.Start(t, testserver.Options{Env: env})
			return s, s
		})
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		bounded(t, func(env map[string]string) (a, b *testserver.Server) {
			_, s := cluster(t, 2, env)
			return s[0], s[1]
		})
	})
}

func scrape(t testing.TB, s *testserver.Server) []byte {
	t.Helper()
	st, body := httpCall(t, http.MethodGet, s.URL+"/metrics", "", "")
	if st != http.StatusOK {
		t.Fatalf("/metrics: %d", st)
	}
	return body
}

// One instance with its SQLite store: events still waiting when it stops
// are delivered after it starts again, with the same webhook-ids.
func TestWebhooksSurviveRestartWithSQLite(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	receiverUp := rcv.outage()
	env := rcv.env(merged(fastHooks, map[string]string{"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "rc.db")}))
	s := testserver.Start(t, testserver.Options{Env: env})
	const room = "wh-restart"
	c := testserver.Join(t, s.WS, room, "ann", "Ann")
	c.Close()
	eventually(t, wait, "an attempt of room.vacated", func() error {
		for _, h := range rcv.all() {
			if h.Room == room && h.Type == "room.vacated" {
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	if st, _ := httpCall(t, http.MethodDelete, s.URL+"/api/rooms/"+room, testserver.APIKey, ""); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d", st)
	}
	// occupied, joined, left, vacated, deleted.
	eventually(t, wait, "an attempt of every event", func() error {
		if k := len(attemptsOf(rcv, room)); k < 5 {
			return fmt.Errorf("%d events attempted", k)
		}
		return nil
	})
	before := attemptsOf(rcv, room)
	var first []hook
	for _, h := range rcv.all() {
		if h.Room == room && h.Attempt == 1 {
			first = append(first, h)
		}
	}
	want := "[room.occupied member.joined:ann member.left:ann room.vacated room.deleted]"
	if fmt.Sprint(types(first)) != want {
		t.Fatalf("first attempts %v, want %s", types(first), want)
	}
	err, took := s.Stop(10 * time.Second)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stopped in %v", took)
	receiverUp()
	s2 := testserver.Start(t, testserver.Options{Env: env, Addr: s.Addr})
	got := rcv.awaitDelivered(t, 2*wait, room, 5, "every event after the restart", nil)
	noDuplicateIDs(t, got)
	for _, h := range got {
		if _, ok := before[h.ID]; !ok {
			t.Fatalf("delivered %s (%s), not one of the events that waited: %v", h.ID, h.Type, types(got))
		}
	}
	// Retried events may go out in any order.
	if len(got) != 5 {
		t.Fatalf("delivered %v, want the 5 events once", types(got))
	}
	awaitQueueEmpty(t, wait, s2)
}

// room.state and doc.updated go out at most once per room per 2 s while
// changes go on, and the last change is never lost: the last event
// carries the last state's seq and the document's last update.
func TestWebhooksDebounce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	engines(t, rcv.env(fastHooks), func(t *testing.T, a, b *testserver.Server) {
		room := "wh-debounce-" + strings.ReplaceAll(t.Name(), "/", "-")
		c := testserver.JoinSince(t, a.WS, room, "ann", "Ann", "", stateCapable)
		update := makeUpdate(t, "x", nil)
		start := time.Now()
		var last uint64
		// Two frames a round, 20 rounds a second: under the default RATE.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for ; time.Since(start) < 5*time.Second; <-tick.C {
			ack := publishAcked(t, c, map[string]any{"data": "m"})
			if f := sendState(t, c, ack.Seq, map[string]any{"seq": ack.Seq}); f.Type != "ack" {
				t.Fatalf("state: %s", f.Raw)
			}
			last = ack.Seq
			if st, body := postDoc(t, b, room, testserver.APIKey, update); st != http.StatusNoContent {
				t.Fatalf("POST doc: %d %s", st, body)
			}
		}
		took := time.Since(start)
		// Each round stored one message and posted one update: the room's
		// last seq and the document's are both last.
		rcv.awaitDelivered(t, 2*wait, room, 1, "room.state of the last state", func(h hook) bool {
			return h.Type == "room.state" && h.Seq == last
		})
		rcv.awaitDelivered(t, 2*wait, room, 1, "doc.updated of the last update", func(h hook) bool {
			return h.Type == "doc.updated" && h.Seq == last
		})
		awaitQueueEmpty(t, wait, a, b)
		states := rcv.awaitDelivered(t, wait, room, 1, "room.state", ofType("room.state"))
		docs := rcv.awaitDelivered(t, wait, room, 1, "doc.updated", ofType("doc.updated"))
		most := int(took/(2*time.Second)) + 2
		if len(states) > most || len(docs) > most {
			t.Fatalf("%d room.state and %d doc.updated over %v; want at most %d each (one per 2 s)", len(states), len(docs), took, most)
		}
		if states[len(states)-1].Seq != last {
			t.Fatalf("last room.state at seq %d, want %d", states[len(states)-1].Seq, last)
		}
		if docs[len(docs)-1].Seq != last {
			t.Fatalf("last doc.updated at seq %d, want %d", docs[len(docs)-1].Seq, last)
		}
		t.Logf("%d changes over %v: %d room.state, %d doc.updated", last, took.Round(time.Millisecond), len(states), len(docs))
	})
}
