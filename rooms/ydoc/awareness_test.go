package ydoc

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/yjs"
)

// checkOwned fails unless r.owned holds exactly the clients of r.clients
// by their owner.
func checkOwned(t *testing.T, r *docRoom, step string) {
	t.Helper()
	want := make(map[string]map[uint64]struct{})
	for client, c := range r.clients {
		if want[c.conn] == nil {
			want[c.conn] = make(map[uint64]struct{})
		}
		want[c.conn][client] = struct{}{}
	}
	if !reflect.DeepEqual(want, r.owned) {
		t.Fatalf("%s: owned %v, want %v", step, r.owned, want)
	}
}

func states(clock uint64, clients ...uint64) []yjs.AwarenessEntry {
	var es []yjs.AwarenessEntry
	for _, c := range clients {
		es = append(es, yjs.AwarenessEntry{Client: c, Clock: clock, State: []byte(`{}`)})
	}
	return es
}

// The count of states each connection owns follows every change of
// r.clients: new states, echoes, another user's attempts, a takeover by
// the same user's newer connection, removals, and connections leaving.
func TestDocAwarenessOwnedCount(t *testing.T) {
	r := newDocRoom("r", nil)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyLocked(states(1, 1, 2), "c1", "u", true, now)
	checkOwned(t, r, "c1 announces 1 and 2")
	r.applyLocked(append(states(1, 3), states(1, 1)...), "c2", "v", false, now)
	r.applyLocked(states(5, 1), "c2", "v", false, now)
	checkOwned(t, r, "c2 announces 3, echoes 1, tries to change it")
	if c := r.clients[1]; c.conn != "c1" || c.clock != 1 {
		t.Fatalf("another user changed a state: %+v", c)
	}
	r.applyLocked(states(2, 2), "c3", "u", true, now)
	checkOwned(t, r, "c3, the same user's new connection, takes 2 over")
	if len(r.owned["c1"]) != 1 || len(r.owned["c3"]) != 1 {
		t.Fatalf("after the takeover: %v", r.owned)
	}
	many := make([]uint64, 100)
	for i := range many {
		many[i] = 1000 + uint64(i)
	}
	fresh := r.applyLocked(states(1, many...), "c1", "u", true, now)
	checkOwned(t, r, "c1 announces 100 more")
	if n := len(r.owned["c1"]); n != maxAwarenessStates || len(fresh) != maxAwarenessStates-1 {
		t.Fatalf("c1 owns %d states after announcing 100 (%d relayed), want %d", n, len(fresh), maxAwarenessStates)
	}
	r.applyLocked([]yjs.AwarenessEntry{{Client: 1, Clock: 2, State: []byte("null")}}, "c1", "u", true, now)
	checkOwned(t, r, "c1 removes 1")
	if gone := r.dropConnLocked("c3"); len(gone) != 1 || gone[0].Client != 2 || string(gone[0].State) != "null" {
		t.Fatalf("c3 leaving removed %v", gone)
	}
	checkOwned(t, r, "c3 leaves")
	if gone := r.dropLocked(func(c *awClient) bool { return c.user == "v" }); len(gone) != 1 {
		t.Fatalf("v leaving removed %v", gone)
	}
	checkOwned(t, r, "v leaves")
	r.dropConnLocked("c1")
	checkOwned(t, r, "c1 leaves")
	if len(r.clients) != 0 || len(r.owned) != 0 {
		t.Fatalf("states left after everyone left: %v %v", r.clients, r.owned)
	}
}

// A message with many more new clients than a connection may own costs
// a map lookup per entry, not a walk over the room's states per entry.
func TestDocAwarenessManyNewClientsIsCheap(t *testing.T) {
	r := newDocRoom("r", nil)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := 0; c < 200; c++ {
		ids := make([]uint64, maxAwarenessStates)
		for i := range ids {
			ids[i] = uint64(c*maxAwarenessStates + i + 1)
		}
		r.applyLocked(states(1, ids...), fmt.Sprint("c", c), fmt.Sprint("u", c), true, now)
	}
	ids := make([]uint64, 150000)
	for i := range ids {
		ids[i] = 1<<30 + uint64(i)
	}
	es := states(1, ids...)
	start := time.Now()
	r.applyLocked(es, "c0", "u0", true, now)
	// A walk over the 3,200 states per entry took seconds; a lookup per
	// entry takes milliseconds.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("150,000 new clients took %v under the room's lock", d)
	}
	t.Logf("150,000 new clients: %v", time.Since(start))
	checkOwned(t, r, "after the big message")
}
