package tests

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestWebhookStorm measures webhook delivery under a presence storm:
// 2,000 users join one room over about 2 s across two instances on one
// Redis, then all leave; 4,002 events (2,000 member.joined, 2,000
// member.left, room.occupied, room.vacated) go to a local receiver. It
// checks that each arrives exactly once and logs the figures
// (docs/BENCHMARKS.md): events/s, the delay from each event to its
// delivery (p50/p99/max), and how long after the storm's last leave the
// last member.left arrived. Storm users join with presence=count, so the
// instances spend their time on presence decisions and webhooks rather
// than on 4 million member-list frames. Run with ROOMCAST_WEBHOOK_STORM=1.
func TestWebhookStorm(t *testing.T) {
	if os.Getenv("ROOMCAST_WEBHOOK_STORM") == "" {
		t.Skip("a measurement: set ROOMCAST_WEBHOOK_STORM=1")
	}
	const users = 2000
	rcv := newReceiver(t)
	_, s := cluster(t, 2, rcv.env(map[string]string{"ROOMCAST_WEBHOOK_VACATE_DELAY": "100ms", "ROOMCAST_PRESENCE_TTL": "30s", "ROOMCAST_HEARTBEAT": "10s"}))
	const room = "wh-storm"
	count := url.Values{"presence": {"count"}}
	conns := make([]*testserver.Client, users)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < users; i += 20 {
				// Spread over about 2 s: user i dials at i ms.
				<-time.After(time.Until(start.Add(time.Duration(i) * time.Millisecond)))
				u := fmt.Sprint("u", i)
				conns[i] = testserver.JoinURL(t, testserver.SinceURL(s[i%2].WS, room, testserver.Token(t, u, u, time.Hour, nil), "", count), nil)
			}
		})
	}
	wg.Wait()
	joined := time.Since(start)
	rcv.awaitDelivered(t, 2*time.Minute, room, users, "every member.joined", ofType("member.joined"))
	leaveStart := time.Now()
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < users; i += 20 {
				conns[i].Close()
			}
		})
	}
	wg.Wait()
	lastLeave := time.Now()
	rcv.awaitDelivered(t, 2*time.Minute, room, 1, "room.vacated", ofType("room.vacated"))
	awaitQueueEmpty(t, 30*time.Second, s...)
	got := rcv.deliveredOf(room)
	noDuplicateIDs(t, got)
	c := counts(got)
	if c["member.joined"] != users || c["member.left"] != users || c["room.occupied"] != 1 || c["room.vacated"] != 1 || len(got) != 2*users+2 {
		t.Fatalf("delivered %v, want %d joins, %d leaves, one occupied and one vacated", c, users, users)
	}
	var delays []time.Duration
	var firstLeftAt, lastLeftAt time.Time
	for _, h := range got {
		delays = append(delays, h.At.Sub(time.UnixMilli(h.Time)))
		if h.Type == "member.left" && h.At.After(lastLeftAt) {
			lastLeftAt = h.At
		}
		if h.Type == "member.left" && (firstLeftAt.IsZero() || h.At.Before(firstLeftAt)) {
			firstLeftAt = h.At
		}
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	pct := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))].Round(time.Millisecond) }
	first, last := got[0].At, got[len(got)-1].At
	t.Logf("joins: %d users in %v; leaves: closed in %v", users, joined.Round(time.Millisecond), lastLeave.Sub(leaveStart).Round(time.Millisecond))
	t.Logf("delivered %d events, %.0f events/s from first to last delivery (%v, the pause between joins and leaves included)", len(got), float64(len(got))/last.Sub(first).Seconds(), last.Sub(first).Round(time.Millisecond))
	t.Logf("event → delivery delay: p50 %v, p99 %v, max %v", pct(0.5), pct(0.99), pct(1))
	t.Logf("leave burst: %d member.left delivered in %v (%.0f events/s); the last %v after the last leave",
		users, lastLeftAt.Sub(firstLeftAt).Round(time.Millisecond), float64(users)/lastLeftAt.Sub(firstLeftAt).Seconds(),
		lastLeftAt.Sub(lastLeave).Round(time.Millisecond))
}
