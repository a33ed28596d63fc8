package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

func membersOf(n int) ([]presence.Member, json.RawMessage) {
	ms := make([]presence.Member, n)
	for i := range ms {
		ms[i] = presence.Member{ID: fmt.Sprintf("user-%03d", i), Name: fmt.Sprintf("Name <%d> & co", i), Role: presence.RoleWrite,
			Meta: json.RawMessage(`{"color":"#` + fmt.Sprint(100000+i) + `"}`), Conns: 1, Since: 1765000000000 + int64(i)}
	}
	return ms, encode(ms)
}

// A welcome with its member list spliced in is the frame encode makes.
func TestEncodeWelcomeIsEncode(t *testing.T) {
	_, list := membersOf(3)
	me := presence.Member{ID: "me", Name: "Me", Role: presence.RoleRead, Meta: json.RawMessage(`{"a":"<b>","instance":"x"}`), Conns: 2, Since: 5}
	n, seq, yes := 7, uint64(42), true
	for i, w := range []welcomeFrame{
		{Type: "welcome", Room: "r", Conn: "c", Me: me, Members: list, Instance: "i-1"},
		{Type: "welcome", Room: "r", Conn: "c", Me: me, Members: json.RawMessage(`[]`), Instance: "i-1"},
		{Type: "welcome", Room: "r", Conn: "c", Me: me, Count: &n, Instance: "i-1"},
		{Type: "welcome", Room: "r&<", Conn: "c", Me: me, Members: list, Instance: "i-1", Epoch: "e1", Seq: &seq, Recovered: &yes},
		{Type: "welcome", Room: "r", Conn: "c", Me: me, Members: list, Instance: "i-1", Epoch: "e1", Seq: &seq,
			State: &rooms.State{Seq: 40, Data: json.RawMessage(`{"doc":[1,2,3]}`)}},
	} {
		if got, want := encodeWelcome(w), encode(w); string(got) != string(want) {
			t.Errorf("welcome %d\n got %s\nwant %s", i, got, want)
		}
	}
}

// BenchmarkWelcomeEncode is a welcome to a room of 100: encode re-compacts
// the member list, encodeWelcome copies it.
func BenchmarkWelcomeEncode(b *testing.B) {
	_, list := membersOf(100)
	w := welcomeFrame{Type: "welcome", Room: "room-1", Conn: "0b6c8a4e-3f1d-4a7e-9c2b-5d8e7f6a1b2c", Instance: "inst-1",
		Me: presence.Member{ID: "user-100", Name: "Name 100", Role: presence.RoleWrite, Meta: json.RawMessage(`{}`), Conns: 1, Since: 1765000000100}, Members: list}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encode(w)
		}
	})
	b.Run("encodeWelcome", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodeWelcome(w)
		}
	})
}
