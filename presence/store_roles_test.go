package presence

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/roomcast/roomcast/tests/redisproc"
)

// A member record written before roles ("conns\nsince\nid\nname\nmeta")
// reads as a write member's, and the scripts keep working on it.
func TestRedisStoreReadsRecordsWithoutRole(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	s := NewRedisStore(c, RedisOptions{})
	joined, err := s.Join(ctx, Session{Room: room, Conn: "c1", User: "ann", Name: "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	old := "1\n" + strconv.FormatInt(joined.Since, 10) + "\n" + jsonString("ann") + "\n" + jsonString("Ann") + "\n" + `{"c":1}`
	if err := c.HSet(ctx, s.layout.Room(room).Members, "ann", old).Err(); err != nil {
		t.Fatal(err)
	}
	want := Member{ID: "ann", Name: "Ann", Role: RoleWrite, Meta: json.RawMessage(`{"c":1}`), Conns: 1, Since: joined.Since}
	checkMembers(t, s, want)

	got, err := s.Join(ctx, Session{Room: room, Conn: "c2", User: "ann", Name: "Ann", Role: RoleRead})
	want.Conns = 2
	if err != nil || string(Frame("update", room, got, "")) != string(Frame("update", room, want, "")) {
		t.Fatalf("join on an old record: %+v, %v", got, err)
	}
	got, err = s.SetMeta(ctx, room, "c2", "ann", json.RawMessage(`{"c":2}`))
	want.Meta = json.RawMessage(`{"c":2}`)
	if err != nil || string(Frame("update", room, got, "")) != string(Frame("update", room, want, "")) {
		t.Fatalf("set meta on an old record: %+v, %v", got, err)
	}
	checkMembers(t, s, want)
}
