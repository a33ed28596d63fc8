package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkReplicaJoinWelcome is a join's replica work in a room of 100:
// the join frame applied, then the joiner's welcome list (one encoding per
// joiner, as in a ramp where every join changes the room), then its leave.
func BenchmarkReplicaJoinWelcome(b *testing.B) {
	ctx := context.Background()
	store := NewMemoryStore(Options{}, dropPublisher{})
	for i := range 100 {
		u := fmt.Sprintf("user-%03d", i)
		if _, err := store.Join(ctx, Session{Room: "r", Conn: "c-" + u, User: u, Name: "Name " + u}); err != nil {
			b.Fatal(err)
		}
	}
	r := NewReplica(store, ReplicaOptions{Window: time.Nanosecond})
	if _, _, err := r.Snapshot(ctx, "r", "user-000", time.Second); err != nil {
		b.Fatal(err)
	}
	m := Member{ID: "joiner", Name: "Joiner", Role: RoleWrite, Meta: json.RawMessage(`{}`), Conns: 1, Since: time.Now().UnixMilli() + 1000}
	join, leave := Frame("join", "r", m, ""), Frame("leave", "r", m, ReasonClosed)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Observe("r", join)
		if _, _, err := r.Snapshot(ctx, "r", "joiner", time.Second); err != nil {
			b.Fatal(err)
		}
		r.Observe("r", leave)
	}
}
