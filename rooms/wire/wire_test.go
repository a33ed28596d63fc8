package wire

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/tests/redisproc"
)

func TestSealOpen(t *testing.T) {
	cases := []struct {
		payload []byte
		want    Envelope
	}{
		{Seal("", []byte(`{"a":1}`)), Envelope{Frame: []byte(`{"a":1}`)}},
		{Seal("conn-1", []byte(`{"a":"|"}`)), Envelope{Exclude: "conn-1", Frame: []byte(`{"a":"|"}`)}},
		{SealStored("c", "e0f1", 42, false, []byte(`{}`)), Envelope{Exclude: "c", Epoch: "e0f1", Seq: 42, Frame: []byte(`{}`)}},
		{SealStored("", "e0f1", 7, true, []byte(`{}`)), Envelope{Epoch: "e0f1", Seq: 7, StateDue: true, Frame: []byte(`{}`)}},
		{SealStored("", "e0f1", 0, false, nil), Envelope{Epoch: "e0f1", Frame: []byte{}}},
	}
	for _, c := range cases {
		got, ok := Open(c.payload)
		if !ok || got.Exclude != c.want.Exclude || got.Epoch != c.want.Epoch || got.Seq != c.want.Seq ||
			got.StateDue != c.want.StateDue || string(got.Frame) != string(c.want.Frame) {
			t.Errorf("Open(%q) = %+v %v, want %+v", c.payload, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "no bars", "x|{}", strings.Repeat("x", 65) + "||{}", "|e:|{}", "|:5|{}", "|e:x|{}"} {
		if _, ok := Open([]byte(bad)); ok {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
}

// The Lua side of the contract builds envelopes Go opens, byte for byte
// the same as Go's.
func TestLuaEnvelopes(t *testing.T) {
	srv := redisproc.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	script := EnvelopeLua + `
if ARGV[1] == 'stored' then
  return envelope(ARGV[2], stored_pos(ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'), ARGV[6])
end
return envelope(ARGV[2], '', ARGV[6])`
	run := func(args ...any) []byte {
		t.Helper()
		s, err := c.Eval(ctx, script, nil, args...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	if got, want := run("plain", "conn-1", "", 0, "0", `{"x":1}`), Seal("conn-1", []byte(`{"x":1}`)); string(got) != string(want) {
		t.Fatalf("Lua unstored %q, Go %q", got, want)
	}
	if got, want := run("stored", "", "ab12", 123456789012, "1", `{"x":2}`), SealStored("", "ab12", 123456789012, true, []byte(`{"x":2}`)); string(got) != string(want) {
		t.Fatalf("Lua stored %q, Go %q", got, want)
	}
	e, ok := Open(run("stored", "c9", "ab12", 5, "0", `{}`))
	if !ok || e.Exclude != "c9" || e.Epoch != "ab12" || e.Seq != 5 || e.StateDue {
		t.Fatalf("Go opened the Lua envelope as %+v %v", e, ok)
	}
}

// Every key of a room carries the room's hash tag, so one script may
// touch them all on Redis Cluster.
func TestRoomKeysShareTheHashTag(t *testing.T) {
	k := RoomKeys("", "doc-1")
	for _, key := range []string{k.Channel, k.Meta, k.Stream, k.State, k.StateReq, k.StateClaim, k.Conns, k.Members, k.Idem("x")} {
		if !strings.HasPrefix(key, DefaultPrefix+"{doc-1}:") {
			t.Errorf("key %q lacks the room's hash tag", key)
		}
	}
}

func TestDocEnvelopes(t *testing.T) {
	up, ok := Open(SealDocUpdate("c1", "e0f1", 9, []byte{0, 2, 2, 0, 0}))
	if !ok || up.Doc != DocUpdate || up.Stored() || up.Epoch != "e0f1" || up.Seq != 9 || up.Exclude != "c1" || string(up.Frame) != "\x00\x02\x02\x00\x00" {
		t.Fatalf("doc update opened as %+v %v", up, ok)
	}
	aw, ok := Open(SealDoc("c2", DocAwareness, []byte("\x01u|\x01")))
	if !ok || aw.Doc != DocAwareness || aw.Stored() || aw.Epoch != "" || aw.Exclude != "c2" || string(aw.Frame) != "\x01u|\x01" {
		t.Fatalf("awareness opened as %+v %v", aw, ok)
	}
	q, ok := Open(SealDoc("", DocQuery, nil))
	if !ok || q.Doc != DocQuery || len(q.Frame) != 0 {
		t.Fatalf("query opened as %+v %v", q, ok)
	}
	for _, bad := range []string{"|~|x", "|~x|", "|~:3|x", "|~e:|x"} {
		if _, ok := Open([]byte(bad)); ok {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
}

func TestLuaDocEnvelope(t *testing.T) {
	srv := redisproc.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	got, err := c.Eval(context.Background(), EnvelopeLua+`return envelope(ARGV[1], doc_pos(ARGV[2], tonumber(ARGV[3])), ARGV[4])`,
		nil, "conn-9", "ab12", 77, "\x00\x02\x01\x07").Text()
	if err != nil {
		t.Fatal(err)
	}
	if want := SealDocUpdate("conn-9", "ab12", 77, []byte("\x00\x02\x01\x07")); got != string(want) {
		t.Fatalf("Lua doc envelope %q, Go %q", got, want)
	}
}
