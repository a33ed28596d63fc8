package presence

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type dropPublisher struct{}

func (dropPublisher) Publish(context.Context, string, string, []byte) error { return nil }

func ids(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var ms []Member
	if err := json.Unmarshal(raw, &ms); err != nil {
		t.Fatalf("member list %s: %v", raw, err)
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return strings.Join(out, ",")
}

func replicaOf(t *testing.T, window time.Duration, users ...string) (*Replica, Store) {
	t.Helper()
	store := NewMemoryStore(Options{}, dropPublisher{})
	for _, u := range users {
		if _, err := store.Join(context.Background(), Session{Room: "r", Conn: "c-" + u, User: u, Name: u}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct since: a stable order
	}
	return NewReplica(store, ReplicaOptions{Window: window}), store
}

// The replica is loaded from the store once, then follows the room's
// frames: join, update, leave and sync.
func TestReplicaFollowsFrames(t *testing.T) {
	ctx := context.Background()
	r, _ := replicaOf(t, 5*time.Millisecond, "a", "b")
	got, me, err := r.Snapshot(ctx, "r", "a", time.Second)
	if err != nil || ids(t, got) != "a,b" || me.ID != "a" {
		t.Fatalf("first snapshot: %s %+v %v", got, me, err)
	}
	c := Member{ID: "c", Name: "C", Meta: json.RawMessage(`{}`), Conns: 1, Since: time.Now().UnixMilli() + 1000}
	r.Observe("r", Frame("join", "r", c, ""))
	r.Observe("r", Frame("leave", "r", Member{ID: "b"}, ReasonClosed))
	c.Meta = json.RawMessage(`{"x":1}`)
	r.Observe("r", Frame("update", "r", c, ""))
	r.Observe("r", []byte(`{"type":"message","room":"r","data":1}`)) // not presence: ignored
	got, me, err = r.Snapshot(ctx, "r", "c", time.Second)
	if err != nil || ids(t, got) != "a,c" || string(me.Meta) != `{"x":1}` {
		t.Fatalf("after join c, leave b, update c: %s %+v %v", got, me, err)
	}
	r.Observe("r", []byte(`{"type":"sync","room":"r","members":[{"id":"z","name":"Z","meta":{},"conns":1,"since":1}]}`))
	if got, _, err := r.Snapshot(ctx, "r", "z", time.Second); err != nil || ids(t, got) != "z" {
		t.Fatalf("after sync: %s %v", got, err)
	}
	r.Reset("r", []Member{{ID: "y", Meta: json.RawMessage(`{}`)}})
	if got, _, err := r.Snapshot(ctx, "r", "y", time.Second); err != nil || ids(t, got) != "y" {
		t.Fatalf("after Reset: %s %v", got, err)
	}
}

// A joiner's welcome waits until its own join reached the replica; one
// whose join never comes gets ErrNotReplicated, and the caller reads the
// store instead.
func TestReplicaWaitsForTheJoiner(t *testing.T) {
	ctx := context.Background()
	r, _ := replicaOf(t, 5*time.Millisecond, "a")
	if _, _, err := r.Snapshot(ctx, "r", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		got, _, err := r.Snapshot(ctx, "r", "late", 5*time.Second)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- ids(t, got)
	}()
	time.Sleep(20 * time.Millisecond) // the snapshot is waiting
	r.Observe("r", Frame("join", "r", Member{ID: "late", Meta: json.RawMessage(`{}`), Since: time.Now().UnixMilli() + 1000}, ""))
	if got := <-done; got != "a,late" {
		t.Fatalf("late joiner's snapshot: %s", got)
	}
	if _, _, err := r.Snapshot(ctx, "r", "never", 30*time.Millisecond); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("joiner that never shows up: %v", err)
	}
	// Forget ends waiters too.
	go func() { time.Sleep(20 * time.Millisecond); r.Forget("r") }()
	if _, _, err := r.Snapshot(ctx, "r", "gone", 5*time.Second); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("waiter of a forgotten room: %v", err)
	}
}

// The joiners of a burst share one encoding of the member list.
func TestReplicaBurstSharesOneEncoding(t *testing.T) {
	ctx := context.Background()
	r, _ := replicaOf(t, 500*time.Millisecond, "a", "b", "c")
	if _, _, err := r.Snapshot(ctx, "r", "a", time.Second); err != nil {
		t.Fatal(err) // the first encoding: the next ones wait for the window
	}
	var wg sync.WaitGroup
	lists := make([]json.RawMessage, 3)
	for i, u := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := r.Snapshot(ctx, "r", u, time.Second)
			if err != nil {
				t.Error(err)
			}
			lists[i] = got
		}()
	}
	wg.Wait()
	for _, l := range lists[1:] {
		if len(l) == 0 || &l[0] != &lists[0][0] {
			t.Fatalf("the burst's joiners got separate encodings")
		}
	}
}

// flakyStore fails its first Members call, as a store timing out would.
type flakyStore struct {
	Store
	failed bool
}

func (f *flakyStore) Members(ctx context.Context, room string) ([]Member, error) {
	if !f.failed {
		f.failed = true
		return nil, errors.New("store timed out")
	}
	return f.Store.Members(ctx, room)
}

// A load that failed is tried again by the next joiner, and the replica
// then follows the room as if the first had worked.
func TestReplicaLoadRetriesAfterAFailure(t *testing.T) {
	ctx := context.Background()
	_, store := replicaOf(t, time.Millisecond, "a")
	r := NewReplica(&flakyStore{Store: store}, ReplicaOptions{Window: time.Millisecond})
	if _, _, err := r.Snapshot(ctx, "r", "a", time.Second); err == nil {
		t.Fatal("first load did not fail")
	}
	if got, _, err := r.Snapshot(ctx, "r", "a", time.Second); err != nil || ids(t, got) != "a" {
		t.Fatalf("after a failed load: %s %v", got, err)
	}
	r.Observe("r", Frame("join", "r", Member{ID: "b", Meta: json.RawMessage(`{}`), Since: time.Now().UnixMilli() + 1000}, ""))
	if got, _, err := r.Snapshot(ctx, "r", "b", time.Second); err != nil || ids(t, got) != "a,b" {
		t.Fatalf("frames after the retried load: %s %v", got, err)
	}
}

// The list a welcome gets is byte for byte the encoding of the room's
// members sorted oldest first, as the store's list would be encoded,
// also after updates and leaves changed the cached one.
func TestReplicaListIsTheMembersEncoding(t *testing.T) {
	ctx := context.Background()
	r, store := replicaOf(t, time.Millisecond, "a", "b", "c")
	check := func(user string) {
		t.Helper()
		got, _, err := r.Snapshot(ctx, "r", user, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := store.Members(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		for i := range ms {
			if len(ms[i].Meta) == 0 {
				ms[i].Meta = json.RawMessage("{}")
			}
		}
		want, _ := json.Marshal(ms)
		if string(got) != string(want) {
			t.Fatalf("list\n got %s\nwant %s", got, want)
		}
	}
	check("a")
	check("a") // the cached list
	for _, op := range []func() (Member, string, error){
		func() (Member, string, error) {
			m, err := store.Join(ctx, Session{Room: "r", Conn: "c-d", User: "d", Name: "D <&>", Meta: json.RawMessage(`{"k": "<v>"}`)})
			return m, "join", err
		},
		func() (Member, string, error) {
			m, err := store.SetMeta(ctx, "r", "c-b", "b", json.RawMessage(`{"x":2}`))
			return m, "update", err
		},
		func() (Member, string, error) {
			return Member{ID: "a"}, "leave", store.Leave(ctx, "r", "c-a", "a")
		},
	} {
		m, typ, err := op()
		if err != nil {
			t.Fatal(err)
		}
		r.Observe("r", Frame(typ, "r", m, ""))
		check("d")
	}
}

// A count-mode welcome waits for its joiner like a list does, and gets
// the count that includes it without the list being encoded.
func TestReplicaSnapshotCount(t *testing.T) {
	ctx := context.Background()
	r, _ := replicaOf(t, 5*time.Millisecond, "a", "b")
	if n, err := r.SnapshotCount(ctx, "r", "a", time.Second); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	done := make(chan int, 1)
	go func() {
		n, err := r.SnapshotCount(ctx, "r", "late", 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	time.Sleep(20 * time.Millisecond)
	r.Observe("r", Frame("join", "r", Member{ID: "late", Meta: json.RawMessage(`{}`), Since: time.Now().UnixMilli() + 1000}, ""))
	if n := <-done; n != 3 {
		t.Fatalf("late joiner's count: %d", n)
	}
	if _, err := r.SnapshotCount(ctx, "r", "never", 30*time.Millisecond); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("joiner that never shows up: %v", err)
	}
}

// The list stays sorted oldest first whatever order the frames come in:
// joins of newer and of older members, leaves from the middle, updates.
func TestReplicaListOrder(t *testing.T) {
	ctx := context.Background()
	r, _ := replicaOf(t, time.Millisecond, "s")
	base := time.Now().UnixMilli() + 1000
	join := func(id string, since int64) {
		r.Observe("r", Frame("join", "r", Member{ID: id, Meta: json.RawMessage(`{}`), Since: base + since}, ""))
	}
	check := func(user, want string) {
		t.Helper()
		got, _, err := r.Snapshot(ctx, "r", user, time.Second)
		if err != nil || ids(t, got) != want {
			t.Fatalf("list %s %v, want %s", got, err, want)
		}
	}
	check("s", "s") // loads the room
	join("x", 5)
	check("x", "s,x")
	join("b", 20)
	join("a", 20) // same since: by id
	join("c", 30)
	check("c", "s,x,a,b,c")
	join("old", -5000) // an older member (another instance's clock)
	check("old", "old,s,x,a,b,c")
	join("d", 40)
	r.Observe("r", Frame("leave", "r", Member{ID: "b"}, ReasonClosed))
	check("d", "old,s,x,a,c,d")
	r.Observe("r", Frame("update", "r", Member{ID: "x", Meta: json.RawMessage(`{"k":1}`), Since: base + 5}, ""))
	join("e", 50)
	got, _, err := r.Snapshot(ctx, "r", "e", time.Second)
	if err != nil || ids(t, got) != "old,s,x,a,c,d,e" || !strings.Contains(string(got), `{"k":1}`) {
		t.Fatalf("after an update: %s %v", got, err)
	}
}
