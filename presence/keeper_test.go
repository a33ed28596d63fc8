package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// framesOf collects published presence frames per room, in order.
type framesOf struct {
	mu     sync.Mutex
	frames []map[string]any
}

func (f *framesOf) Publish(_ context.Context, room, _ string, frame []byte) error {
	var m map[string]any
	if err := json.Unmarshal(frame, &m); err != nil {
		return err
	}
	f.mu.Lock()
	f.frames = append(f.frames, m)
	f.mu.Unlock()
	return nil
}

func (f *framesOf) count(typ, user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.frames {
		if m["type"] == typ && m["member"].(map[string]any)["id"] == user {
			n++
		}
	}
	return n
}

// Many goroutines open and close tabs of the same users in one room: each
// user's presence must flip 0→1 and 1→0 exactly as often as the joins and
// leaves say, never twice in a row.
func TestKeeperConcurrentTabsExactJoinLeave(t *testing.T) {
	pub := &framesOf{}
	store := NewMemoryStore(Options{}, pub)
	k := NewKeeper(store, KeeperOptions{Interval: time.Hour})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				user := fmt.Sprint("u", g%4)
				conn := fmt.Sprint("c", g, "-", i)
				if _, err := k.Join(ctx, Session{Room: "r", Conn: conn, User: user, Name: user}); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					k.Tick(ctx) // heartbeats interleave with joins and leaves
				}
				if err := k.Leave(ctx, "r", conn); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	pub.mu.Lock()
	state := map[string]int{}
	for _, m := range pub.frames {
		id := m["member"].(map[string]any)["id"].(string)
		switch m["type"] {
		case "join":
			if state[id] != 0 {
				t.Fatalf("second join of %s without a leave", id)
			}
			state[id] = 1
		case "leave":
			if state[id] != 1 {
				t.Fatalf("leave of %s who was not present", id)
			}
			state[id] = 0
		}
	}
	pub.mu.Unlock()
	for u, v := range state {
		if v != 0 {
			t.Errorf("user %s still present after every tab closed", u)
		}
	}
	if ms, _ := store.Members(ctx, "r"); len(ms) != 0 {
		t.Fatalf("members left: %+v", ms)
	}
	if n := len(k.Sessions()); n != 0 {
		t.Fatalf("keeper still tracks %d sessions", n)
	}
}

// A heartbeat re-adds a session the store lost, and never one that left.
func TestKeeperHeartbeatReassertsButNeverResurrects(t *testing.T) {
	pub := &framesOf{}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	store := NewMemoryStore(Options{TTL: 10 * time.Second, Now: clock}, pub)
	k := NewKeeper(store, KeeperOptions{Interval: time.Hour})
	ctx := context.Background()
	if _, err := k.Join(ctx, Session{Room: "r", Conn: "a", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Join(ctx, Session{Room: "r", Conn: "b", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := k.Leave(ctx, "r", "b"); err != nil {
		t.Fatal(err)
	}
	// Heartbeats keep alice alive past several TTLs.
	for i := 0; i < 5; i++ {
		now = now.Add(8 * time.Second)
		k.Tick(ctx)
	}
	ms, _ := store.Members(ctx, "r")
	if len(ms) != 1 || ms[0].ID != "alice" {
		t.Fatalf("members %+v, want alice only", ms)
	}
	if pub.count("leave", "alice") != 0 || pub.count("join", "bob") != 1 || pub.count("leave", "bob") != 1 {
		t.Fatalf("frames: %+v", pub.frames)
	}
}

func TestSweepTimesOutConnectionsWithoutHeartbeat(t *testing.T) {
	pub := &framesOf{}
	now := time.Unix(1000, 0)
	store := NewMemoryStore(Options{TTL: 10 * time.Second, Now: func() time.Time { return now }}, pub)
	ctx := context.Background()
	if _, err := store.Join(ctx, Session{Room: "r", Conn: "a", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(11 * time.Second)
	for i := 0; i < 3; i++ {
		if err := store.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := pub.count("leave", "alice"); n != 1 {
		t.Fatalf("%d leaves, want exactly 1", n)
	}
	pub.mu.Lock()
	last := pub.frames[len(pub.frames)-1]
	pub.mu.Unlock()
	if last["reason"] != ReasonTimeout {
		t.Fatalf("leave reason %v", last["reason"])
	}
}
