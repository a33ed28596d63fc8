package rooms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/tests/redisproc"
)

// The behaviour table every Broker must pass, run for the memory and the
// Redis broker.

type recordingReceiver struct {
	mu      sync.Mutex
	got     map[string][]string
	resyncs [][]string
}

func newRecordingReceiver() *recordingReceiver {
	return &recordingReceiver{got: make(map[string][]string)}
}

func (r *recordingReceiver) Deliver(room string, payload []byte) {
	r.mu.Lock()
	r.got[room] = append(r.got[room], string(payload))
	r.mu.Unlock()
}

func (r *recordingReceiver) Resync(rooms []string) {
	rooms = slices.Clone(rooms)
	slices.Sort(rooms)
	r.mu.Lock()
	r.resyncs = append(r.resyncs, rooms)
	r.mu.Unlock()
}

func (r *recordingReceiver) payloads(room string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[room])
}

func (r *recordingReceiver) resynced() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resyncs)
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var fences atomic.Int64

// fence publishes a token to a room of its own and waits for it: whatever
// b published before has been delivered by then (one publisher, one
// subscriber connection, both in order).
func fence(t *testing.T, b Broker, r *recordingReceiver) {
	t.Helper()
	ctx := context.Background()
	if err := b.Subscribe(ctx, "fence"); err != nil {
		t.Fatalf("subscribe fence: %v", err)
	}
	token := strconv.FormatInt(fences.Add(1), 10)
	if err := b.Publish(ctx, "fence", []byte(token)); err != nil {
		t.Fatalf("publish fence: %v", err)
	}
	eventually(t, "fence "+token, func() bool { return slices.Contains(r.payloads("fence"), token) })
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

type newTestBroker func(t *testing.T, r Receiver) Broker

func testBroker(t *testing.T, newBroker newTestBroker) {
	ctx := context.Background()

	t.Run("delivers in order to subscribed rooms only", func(t *testing.T) {
		r := newRecordingReceiver()
		b := newBroker(t, r)
		if err := b.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
		if err := b.Subscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		want := numbered("m", 500)
		for _, p := range want {
			if err := b.Publish(ctx, "a", []byte(p)); err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, "elsewhere", []byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		fence(t, b, r)
		if got := r.payloads("a"); !slices.Equal(got, want) {
			t.Fatalf("room a got %d payloads, want %d in order: %v", len(got), len(want), got)
		}
		if got := r.payloads("elsewhere"); len(got) != 0 {
			t.Fatalf("unsubscribed room got %v", got)
		}
	})

	t.Run("unsubscribe stops delivery", func(t *testing.T) {
		r := newRecordingReceiver()
		b := newBroker(t, r)
		if err := b.Subscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, "a"); err != nil { // idempotent
			t.Fatal(err)
		}
		_ = b.Publish(ctx, "a", []byte("1"))
		fence(t, b, r)
		if err := b.Unsubscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		_ = b.Publish(ctx, "a", []byte("2"))
		fence(t, b, r)
		if err := b.Subscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		_ = b.Publish(ctx, "a", []byte("3"))
		fence(t, b, r)
		if got := r.payloads("a"); !slices.Equal(got, []string{"1", "3"}) {
			t.Fatalf("got %v, want [1 3]", got)
		}
	})

	t.Run("closed broker refuses work", func(t *testing.T) {
		b := newBroker(t, newRecordingReceiver())
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, "a", []byte("x")); !errors.Is(err, ErrBrokerDown) {
			t.Fatalf("Publish after Close: %v", err)
		}
		if err := b.Subscribe(ctx, "a"); !errors.Is(err, ErrBrokerDown) {
			t.Fatalf("Subscribe after Close: %v", err)
		}
		if err := b.Ready(ctx); !errors.Is(err, ErrBrokerDown) {
			t.Fatalf("Ready after Close: %v", err)
		}
	})
}

func TestMemoryBroker(t *testing.T) {
	testBroker(t, func(t *testing.T, r Receiver) Broker {
		b := NewMemoryBroker(StreamOptions{})
		if err := b.Start(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// fastOptions use one delivery shard: fence relies on one order across
// rooms. TestRedisBrokerShardsKeepRoomOrder covers several shards.
func fastOptions() RedisBrokerOptions {
	return RedisBrokerOptions{Prefix: "test:", PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond, DeliveryShards: 1}
}

// With several delivery shards, rooms are delivered concurrently but each
// room keeps its order.
func TestRedisBrokerShardsKeepRoomOrder(t *testing.T) {
	srv := redisproc.Start(t)
	r := newRecordingReceiver()
	o := fastOptions()
	o.DeliveryShards = 4
	b := startRedisBroker(t, srv, r, o)
	ctx := context.Background()
	rooms := []string{"a", "b", "c", "d", "e", "f"}
	for _, room := range rooms {
		if err := b.Subscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	want := numbered("m", 300)
	for _, p := range want {
		for _, room := range rooms {
			if err := b.Publish(ctx, room, []byte(p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, room := range rooms {
		eventually(t, "room "+room+" complete", func() bool { return len(r.payloads(room)) >= len(want) })
		if got := r.payloads(room); !slices.Equal(got, want) {
			t.Fatalf("room %s got %d payloads out of order or duplicated", room, len(got))
		}
	}
}

func startRedisBroker(t *testing.T, srv *redisproc.Server, r Receiver, o RedisBrokerOptions) *RedisBroker {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	b := NewRedisBroker(c, o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Start(ctx, r); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = c.Close()
	})
	return b
}

func TestRedisBroker(t *testing.T) {
	srv := redisproc.Start(t)
	testBroker(t, func(t *testing.T, r Receiver) Broker {
		return startRedisBroker(t, srv, r, fastOptions())
	})
}

// Two instances publishing into one room: both see every payload exactly
// once, in one order.
func TestRedisBrokerTwoInstances(t *testing.T) {
	srv := redisproc.Start(t)
	ctx := context.Background()
	ra, rb := newRecordingReceiver(), newRecordingReceiver()
	a := startRedisBroker(t, srv, ra, fastOptions())
	b := startRedisBroker(t, srv, rb, fastOptions())
	for _, br := range []Broker{a, b} {
		if err := br.Subscribe(ctx, "r"); err != nil {
			t.Fatal(err)
		}
	}
	const n = 300
	var wg sync.WaitGroup
	for name, br := range map[string]Broker{"a": a, "b": b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range numbered(name, n) {
				if err := br.Publish(ctx, "r", []byte(p)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "all payloads on both instances", func() bool {
		return len(ra.payloads("r")) >= 2*n && len(rb.payloads("r")) >= 2*n
	})
	fence(t, a, ra)
	fence(t, b, rb)
	ga, gb := ra.payloads("r"), rb.payloads("r")
	if !slices.Equal(ga, gb) || len(ga) != 2*n {
		t.Fatalf("instances disagree or got duplicates: a %d, b %d payloads", len(ga), len(gb))
	}
	// Each publisher's payloads keep its order.
	for _, name := range []string{"a", "b"} {
		var mine []string
		for _, p := range ga {
			if p[:1] == name {
				mine = append(mine, p)
			}
		}
		if !slices.Equal(mine, numbered(name, n)) {
			t.Fatalf("payloads of %s out of order", name)
		}
	}
}

// Redis dies and comes back empty on the same port: Ready fails, then
// recovers; the rooms are resubscribed and resynced; payloads flow again.
func TestRedisBrokerRedisRestart(t *testing.T) {
	srv := redisproc.Start(t)
	ctx := context.Background()
	r := newRecordingReceiver()
	var gaps atomic.Int64
	o := fastOptions()
	o.OnGap = func() { gaps.Add(1) }
	b := startRedisBroker(t, srv, r, o)
	for _, room := range []string{"a", "b"} {
		if err := b.Subscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.Publish(ctx, "a", []byte("before"))
	eventually(t, "payload before the restart", func() bool { return len(r.payloads("a")) == 1 })

	srv.Kill()
	eventually(t, "Ready to fail", func() bool { return b.Ready(ctx) != nil })
	if err := b.Ready(ctx); !errors.Is(err, ErrBrokerDown) {
		t.Fatalf("Ready while Redis is down: %v, want ErrBrokerDown", err)
	}

	srv.Restart(t)
	eventually(t, "Ready to recover", func() bool { return b.Ready(ctx) == nil })
	// Rooms are resynced by their delivery shard, so [a b] may come as
	// one call or one per shard; each room exactly once.
	resyncedRooms := func() []string {
		var all []string
		for _, call := range r.resynced() {
			all = append(all, call...)
		}
		slices.Sort(all)
		return all
	}
	eventually(t, "resync", func() bool { return len(resyncedRooms()) >= 2 })
	if got := resyncedRooms(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("resynced rooms %v (calls %v), want a and b once each", got, r.resynced())
	}
	if gaps.Load() != 1 {
		t.Fatalf("OnGap called %d times, want 1", gaps.Load())
	}
	_ = b.Publish(ctx, "a", []byte("after"))
	_ = b.Publish(ctx, "b", []byte("after"))
	eventually(t, "payloads after the restart", func() bool {
		return slices.Equal(r.payloads("a"), []string{"before", "after"}) && slices.Equal(r.payloads("b"), []string{"after"})
	})
}

// Redis drops the pub/sub connection (go-redis would reconnect silently):
// the gap is noticed and the rooms resynced.
func TestRedisBrokerConnectionKilled(t *testing.T) {
	srv := redisproc.Start(t)
	ctx := context.Background()
	r := newRecordingReceiver()
	b := startRedisBroker(t, srv, r, fastOptions())
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "resync", func() bool { return len(r.resynced()) == 1 })
	_ = b.Publish(ctx, "a", []byte("x"))
	eventually(t, "payload after reconnect", func() bool { return slices.Equal(r.payloads("a"), []string{"x"}) })
}

// A pub/sub connection that stays open but stops answering is detected by
// its missing pongs, reported by Ready and replaced.
func TestRedisBrokerStuckConnection(t *testing.T) {
	srv := redisproc.Start(t)
	ctx := context.Background()
	r := newRecordingReceiver()
	b := startRedisBroker(t, srv, r, fastOptions())
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Redis stops serving every client for 1.5s; sockets stay open.
	if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready to fail", func() bool { return b.Ready(ctx) != nil })
	eventually(t, "Ready to recover", func() bool { return b.Ready(ctx) == nil })
	eventually(t, "resync", func() bool { return len(r.resynced()) > 0 })
	for _, rooms := range r.resynced() {
		if !slices.Equal(rooms, []string{"a"}) {
			t.Fatalf("resyncs %v, want [a]", r.resynced())
		}
	}
	_ = b.Publish(ctx, "a", []byte("x"))
	eventually(t, "payload after recovery", func() bool { return slices.Equal(r.payloads("a"), []string{"x"}) })
}

// Redis that accepts connections and never answers: Start gives up with
// ctx, and Publish fails once the queue is full instead of blocking.
func TestRedisBrokerPublishQueueFull(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-accepted
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	c := redis.NewClient(&redis.Options{Addr: l.Addr().String(), MaxRetries: -1, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	defer c.Close()
	b := NewRedisBroker(c, RedisBrokerOptions{PublishQueue: 4, PublishTimeout: 2 * time.Second, PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.Start(ctx, newRecordingReceiver()); !errors.Is(err, ErrBrokerDown) {
		t.Fatalf("Start against a silent server: %v, want ErrBrokerDown", err)
	}
	start := time.Now()
	for i := range 10 {
		err := b.Publish(context.Background(), "a", []byte(fmt.Sprint(i)))
		if errors.Is(err, ErrBrokerDown) {
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Fatalf("Publish blocked for %v", took)
			}
			if err := b.Ready(context.Background()); err == nil {
				t.Fatal("Ready with a silent server")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("Publish never reported the full queue")
}

// Close stops and waits for every goroutine the broker started.
func TestRedisBrokerCloseStopsGoroutines(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	b := NewRedisBroker(c, fastOptions())
	ctx := context.Background()
	if err := b.Start(ctx, newRecordingReceiver()); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, "a", []byte("x"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for every goroutine's wg.Done; a goroutine may still be
	// returning from its last frame just after, so allow it a moment.
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(2 * time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "(*RedisBroker)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker goroutines still running after Close:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
