package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/redisproc"
)

// clock is a test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// claimTypes claims the due events, checks their types, and settles them
// as delivered.
func claimTypes(t *testing.T, q queue, want string) []item {
	t.Helper()
	c, err := q.claim(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range c.items {
		s := it.typ
		var b struct {
			Data struct {
				Member struct{ ID string } `json:"member"`
				Seq    uint64              `json:"seq"`
			} `json:"data"`
		}
		if err := json.Unmarshal(it.body, &b); err != nil {
			t.Fatalf("body %s: %v", it.body, err)
		}
		if b.Data.Member.ID != "" {
			s += ":" + b.Data.Member.ID
		}
		if b.Data.Seq != 0 {
			s += fmt.Sprint("@", b.Data.Seq)
		}
		got = append(got, s)
	}
	if fmt.Sprint(got) != want {
		t.Fatalf("claimed %v, want %s", got, want)
	}
	outs := make([]outcome, len(c.items))
	for i, it := range c.items {
		outs[i] = outcome{it: it, remove: true} // delivered
	}
	if err := q.settle(context.Background(), outs); err != nil {
		t.Fatal(err)
	}
	return c.items
}

// A return within the vacate delay cancels room.vacated, and the room is
// not occupied a second time.
func TestMemoryQueueVacate(t *testing.T) {
	clk := &clock{t: time.UnixMilli(1_000_000)}
	q, err := NewMemoryQueue(context.Background(), Options{Now: clk.now, VacateDelay: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ann := []byte(`{"id":"ann","name":"Ann","meta":{},"conns":1,"since":1}`)
	q.MemberJoined("r", ann, true)
	q.MemberLeft("r", ann, "closed", true)
	clk.add(time.Second)
	q.MemberJoined("r", ann, true)
	claimTypes(t, q, "[room.occupied member.joined:ann member.left:ann member.joined:ann]")
	clk.add(10 * time.Second)
	claimTypes(t, q, "[]")
	q.MemberLeft("r", ann, "timeout", true)
	claimTypes(t, q, "[member.left:ann]")
	clk.add(5 * time.Second)
	items := claimTypes(t, q, "[room.vacated]")
	// Once claimed, room.vacated stands: the next member occupies the room.
	q.MemberJoined("r", ann, true)
	claimTypes(t, q, "[room.occupied member.joined:ann]")
	if !strings.Contains(string(items[0].body), `"data":{"room":"r"}`) {
		t.Fatalf("room.vacated body %s", items[0].body)
	}
}

// Both queues debounce room.state: one event waits per room and takes the
// newest data; once claimed, the next goes out a window later.
func TestQueuesDebounce(t *testing.T) {
	each(t, func(t *testing.T, q queue, advance func(time.Duration)) {
		ctx := context.Background()
		for seq := 1; seq <= 3; seq++ {
			if err := q.notify(ctx, "r", RoomState, []byte(fmt.Sprintf(`,"epoch":"e","seq":%d,"bytes":2}`, seq)), true); err != nil {
				t.Fatal(err)
			}
		}
		claimTypes(t, q, "[room.state@3]")
		if err := q.notify(ctx, "r", RoomState, []byte(`,"epoch":"e","seq":4,"bytes":2}`), true); err != nil {
			t.Fatal(err)
		}
		if err := q.notify(ctx, "r", DocUpdated, []byte(`,"epoch":"d","seq":9,"bytes":20}`), true); err != nil {
			t.Fatal(err)
		}
		if err := q.notify(ctx, "r", RoomState, []byte(`,"epoch":"e","seq":5,"bytes":2}`), true); err != nil {
			t.Fatal(err)
		}
		claimTypes(t, q, "[doc.updated@9]") // its own window; state waits for its window
		advance(2100 * time.Millisecond)
		claimTypes(t, q, "[room.state@5]")
	})
}

// Past the bound the oldest events are dropped and counted.
func TestQueuesBound(t *testing.T) {
	each(t, func(t *testing.T, q queue, _ func(time.Duration)) {
		for i := range 5 {
			if err := q.notify(context.Background(), fmt.Sprint("r", i), RoomDeleted, []byte("}"), false); err != nil {
				t.Fatal(err)
			}
		}
		c, err := q.claim(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		var rooms []string
		for _, it := range c.items {
			rooms = append(rooms, it.room)
		}
		if fmt.Sprint(rooms) != "[r2 r3 r4]" || c.dropped != 2 || c.pending != 3 {
			t.Fatalf("claimed %v, dropped %d, pending %d; want [r2 r3 r4], 2, 3", rooms, c.dropped, c.pending)
		}
	})
}

// each runs f on a MemoryQueue and a RedisQueue (a private Redis), both
// bounded to 3 events, with a debounce window of 2 s.
func each(t *testing.T, f func(t *testing.T, q queue, advance func(time.Duration))) {
	t.Run("memory", func(t *testing.T) {
		clk := &clock{t: time.UnixMilli(1_000_000)}
		q, err := NewMemoryQueue(context.Background(), Options{Now: clk.now, MaxPending: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f(t, q, clk.add)
	})
	t.Run("redis", func(t *testing.T) {
		clk := &clock{t: time.UnixMilli(1_000_000)}
		q := NewRedisQueue(redisproc.Start(t).Client(t), "", 0, Options{Now: clk.now, MaxPending: 3})
		f(t, q, clk.add)
	})
}
