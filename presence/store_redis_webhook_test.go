package presence

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/tests/redisproc"
)

// queuedTypes lists the webhook events queued for room, oldest first, as
// "type" or "type:user".
func queuedTypes(t *testing.T, s *RedisStore, room string) []string {
	t.Helper()
	q := s.layout.WebhookQueue(room)
	recs, err := s.client.HGetAll(context.Background(), q.Events).Result()
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		f := strings.SplitN(recs[k], "\n", 7) // see rooms/wire webhook.lua
		if f[5] != room {
			continue
		}
		typ := f[4]
		if i := strings.Index(f[6], `"member":{"id":"`); i >= 0 {
			id := f[6][i+len(`"member":{"id":"`):]
			typ += ":" + id[:strings.IndexByte(id, '"')]
		}
		out = append(out, typ)
	}
	return out
}

// With webhooks on, the presence scripts queue member and room events in
// the step that decides them: one member.joined and one member.left per
// user session however many tabs, room.occupied and room.vacated around
// them, none for a return within the leave grace, and room.vacated
// cancelled by a return within the vacate delay.
func TestRedisStoreQueuesWebhooks(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	clock := time.UnixMilli(1_000_000)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s := NewRedisStore(c, RedisOptions{Options: Options{Now: now, LeaveGrace: time.Second},
		Webhooks: &Webhooks{VacateDelay: 5 * time.Second, MaxPending: 1000}})
	join := func(room, conn, user string) {
		t.Helper()
		if _, err := s.Join(ctx, Session{Room: room, Conn: conn, User: user, Name: user}); err != nil {
			t.Fatal(err)
		}
	}
	leave := func(room, conn, user string) {
		t.Helper()
		if err := s.Leave(ctx, room, conn, user); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(room, want string) {
		t.Helper()
		if got := fmt.Sprint(queuedTypes(t, s, room)); got != want {
			t.Fatalf("queued for %s: %s, want %s", room, got, want)
		}
	}

	join("r", "c1", "ann")
	join("r", "c2", "ann") // a second tab
	join("r", "c3", "bob")
	leave("r", "c1", "ann")
	expect("r", "[room.occupied member.joined:ann member.joined:bob]")
	leave("r", "c2", "ann") // ann's last tab: her leave grace starts
	join("r", "c4", "ann")  // back within it: nothing
	leave("r", "c4", "ann")
	advance(2 * time.Second)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	expect("r", "[room.occupied member.joined:ann member.joined:bob member.left:ann]")
	leave("r", "c3", "bob")
	advance(2 * time.Second)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	expect("r", "[room.occupied member.joined:ann member.joined:bob member.left:ann member.left:bob room.vacated]")
	join("r", "c5", "cat") // within the vacate delay: room.vacated is taken back
	expect("r", "[room.occupied member.joined:ann member.joined:bob member.left:ann member.left:bob member.joined:cat]")

	// A connection whose instance died leaves with reason timeout.
	join("t", "c6", "dan")
	advance(time.Minute)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	recs, _ := c.HGetAll(ctx, wire.ClusterLayout(c, "", 0).WebhookQueue("t").Events).Result()
	found := false
	for _, r := range recs {
		if strings.Contains(r, "member.left\nt\n") && strings.Contains(r, `"reason":"timeout"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no member.left with reason timeout for dan: %v", queuedTypes(t, s, "t"))
	}
}
