package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The behaviour table every Store runs: open gives a fresh, empty store
// (closed by the test's cleanup).
func testStore(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	room := func(t *testing.T) string { return strings.ReplaceAll(t.Name(), "/", ".") }
	write := func(t *testing.T, s Store, ops ...Op) {
		t.Helper()
		if err := s.Write(ctx, ops...); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	load := func(t *testing.T, s Store, r string) Room {
		t.Helper()
		got, err := s.Load(ctx, r)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return got
	}
	msg := func(r, epoch string, seq uint64, keep int) Op {
		return Op{Kind: OpMessage, Room: r, Epoch: epoch, Seq: seq, Data: frame(seq), Exclude: fmt.Sprintf("conn%d", seq), Keep: keep}
	}

	t.Run("a room the store does not hold loads empty", func(t *testing.T) {
		s := open(t)
		got := load(t, s, room(t))
		if got.Name != room(t) || got.Epoch != "" || got.Seq != 0 || got.Messages != nil || got.State != nil || got.Doc.Epoch != "" {
			t.Fatalf("got %+v", got)
		}
		if vs, err := s.Versions(ctx, room(t)); err != nil || len(vs) != 0 {
			t.Fatalf("Versions = %v, %v", vs, err)
		}
		if _, _, err := s.Version(ctx, room(t), 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Version = %v, want ErrNotFound", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("messages start the room in their epoch and keep the newest Keep", func(t *testing.T) {
		s := open(t)
		r := room(t)
		before := time.Now().Add(-time.Second)
		for seq := uint64(1); seq <= 3; seq++ {
			write(t, s, msg(r, "e1", seq, 3))
		}
		got := load(t, s, r)
		if got.Epoch != "e1" || got.Seq != 3 || len(got.Messages) != 3 {
			t.Fatalf("at the limit: %+v", got)
		}
		for i, m := range got.Messages {
			seq := uint64(i + 1)
			if m.Seq != seq || !bytes.Equal(m.Frame, frame(seq)) || m.Exclude != fmt.Sprintf("conn%d", seq) {
				t.Fatalf("message %d = %+v", i, m)
			}
		}
		if got.Updated.Before(before) || got.Updated.After(time.Now().Add(time.Second)) {
			t.Fatalf("Updated = %v", got.Updated)
		}
		// One past the limit drops the oldest.
		write(t, s, msg(r, "e1", 4, 3))
		got = load(t, s, r)
		if got.Seq != 4 || len(got.Messages) != 3 || got.Messages[0].Seq != 2 || got.Messages[2].Seq != 4 {
			t.Fatalf("past the limit: %+v", got)
		}
		// A smaller Keep trims further; Keep 0 trims nothing.
		write(t, s, msg(r, "e1", 5, 1))
		write(t, s, msg(r, "e1", 6, 0))
		got = load(t, s, r)
		if len(got.Messages) != 2 || got.Messages[0].Seq != 5 || got.Messages[1].Seq != 6 {
			t.Fatalf("Keep 1 then 0: %+v", got.Messages)
		}
		// The same message again (a retried Write) changes nothing and
		// does not move the position back.
		write(t, s, Op{Kind: OpMessage, Room: r, Epoch: "e1", Seq: 5, Data: []byte("other"), Keep: 3})
		got = load(t, s, r)
		if got.Seq != 6 || len(got.Messages) != 2 || !bytes.Equal(got.Messages[0].Frame, frame(5)) {
			t.Fatalf("retried message: %+v", got)
		}
		// The last message written again replaces it: the writer never
		// learned that its first commit went through and told its sender
		// it failed.
		write(t, s, Op{Kind: OpMessage, Room: r, Epoch: "e1", Seq: 6, Data: []byte("redone"), Exclude: "c9", Keep: 3})
		got = load(t, s, r)
		if got.Seq != 6 || len(got.Messages) != 2 || string(got.Messages[1].Frame) != "redone" || got.Messages[1].Exclude != "c9" {
			t.Fatalf("last message written again: %+v", got)
		}
	})

	t.Run("an op of another epoch fails its batch with ErrEpoch and changes nothing", func(t *testing.T) {
		s := open(t)
		r := room(t)
		write(t, s, msg(r, "e1", 1, 10), Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 1, Data: []byte(`{"a":1}`)},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 1, Data: []byte("u1")})
		want := load(t, s, r)
		for _, bad := range [][]Op{
			{msg(r, "e1", 2, 10), msg(r, "e2", 3, 10)},
			{msg(r, "e1", 2, 10), {Kind: OpState, Room: r, Epoch: "e2", Seq: 1, Data: []byte(`{}`)}},
			{msg(r, "e1", 2, 10), {Kind: OpDocUpdate, Room: r, Epoch: "d2", Seq: 2, Data: []byte("u2")}},
			{msg(r, "e1", 2, 10), {Kind: OpDocBase, Room: r, Epoch: "d2", Seq: 1, Data: []byte("b")}},
			// The doc's epoch is its own: the room's does not pass for it.
			{{Kind: OpDocUpdate, Room: r, Epoch: "e1", Seq: 2, Data: []byte("u2")}},
		} {
			if err := s.Write(ctx, bad...); !errors.Is(err, ErrEpoch) {
				t.Fatalf("Write(%v) = %v, want ErrEpoch", bad, err)
			}
		}
		if got := load(t, s, r); !reflect.DeepEqual(got, want) {
			t.Fatalf("changed:\n got %+v\nwant %+v", got, want)
		}
	})

	t.Run("state: the first starts the room; a newer or equal replaces; an older is ignored", func(t *testing.T) {
		s := open(t)
		r := room(t)
		write(t, s, Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 5, Data: []byte(`{"v":5}`)})
		got := load(t, s, r)
		if got.Epoch != "e1" || got.State == nil || got.State.Seq != 5 || string(got.State.Data) != `{"v":5}` {
			t.Fatalf("first state: %+v", got)
		}
		write(t, s, Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 4, Data: []byte(`{"v":4}`)})
		if got := load(t, s, r); got.State.Seq != 5 || string(got.State.Data) != `{"v":5}` {
			t.Fatalf("older state replaced the kept one: %+v", got.State)
		}
		write(t, s, Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 5, Data: []byte(`{"v":"5b"}`)})
		if got := load(t, s, r); string(got.State.Data) != `{"v":"5b"}` {
			t.Fatalf("equal state ignored: %+v", got.State)
		}
		write(t, s, Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 6, Data: []byte(`{"v":6}`)})
		if got := load(t, s, r); got.State.Seq != 6 || string(got.State.Data) != `{"v":6}` {
			t.Fatalf("newer state ignored: %+v", got.State)
		}
		// A state at seq 0 (before any message) is a state too.
		r0 := r + ".zero"
		write(t, s, Op{Kind: OpState, Room: r0, Epoch: "e1", Seq: 0, Data: []byte(`{}`)})
		if got := load(t, s, r0); got.State == nil || got.State.Seq != 0 {
			t.Fatalf("state at 0: %+v", got.State)
		}
	})

	t.Run("document: updates append, a base compacts, an older base is ignored", func(t *testing.T) {
		s := open(t)
		r := room(t)
		for seq := uint64(1); seq <= 4; seq++ {
			write(t, s, Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: seq, Data: []byte(fmt.Sprintf("update-%d", seq))})
		}
		got := load(t, s, r)
		if got.Doc.Epoch != "d1" || got.Doc.Seq != 4 || got.Doc.BaseSeq != 0 || len(got.Doc.Base) != 0 || len(got.Doc.Updates) != 4 {
			t.Fatalf("updates: %+v", got.Doc)
		}
		// A document holds no room position of its own.
		if got.Epoch != "" || got.Seq != 0 {
			t.Fatalf("the doc moved the room: %+v", got)
		}
		write(t, s, Op{Kind: OpDocBase, Room: r, Epoch: "d1", Seq: 2, Data: []byte("base-2")})
		got = load(t, s, r)
		if got.Doc.BaseSeq != 2 || string(got.Doc.Base) != "base-2" || got.Doc.Seq != 4 ||
			len(got.Doc.Updates) != 2 || string(got.Doc.Updates[0]) != "update-3" || string(got.Doc.Updates[1]) != "update-4" {
			t.Fatalf("after base 2: %+v", got.Doc)
		}
		// Compacted past already: the same seq and an older one change
		// nothing; so does an update compacted or older than the last.
		write(t, s, Op{Kind: OpDocBase, Room: r, Epoch: "d1", Seq: 2, Data: []byte("other")},
			Op{Kind: OpDocBase, Room: r, Epoch: "d1", Seq: 1, Data: []byte("older")},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 1, Data: []byte("again-1")},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 3, Data: []byte("again-3")})
		got2 := load(t, s, r)
		if fmt.Sprint(got2.Doc) != fmt.Sprint(got.Doc) {
			t.Fatalf("ignored ops changed the doc: %+v", got2.Doc)
		}
		// The last update written again replaces it (its first write
		// counted as failed), and the document's size follows.
		write(t, s, Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 4, Data: []byte("redone-4!")})
		got = load(t, s, r)
		if got.Doc.Seq != 4 || len(got.Doc.Updates) != 2 || string(got.Doc.Updates[1]) != "redone-4!" {
			t.Fatalf("last update written again: %+v", got.Doc)
		}
		if infos := roomInfo(t, s, r); infos.DocBytes != got.Doc.Bytes() {
			t.Fatalf("DocBytes %d after a rewritten update, doc %d", infos.DocBytes, got.Doc.Bytes())
		}
		// A base at the last seq leaves no updates.
		write(t, s, Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 5, Data: []byte("update-5")},
			Op{Kind: OpDocBase, Room: r, Epoch: "d1", Seq: 5, Data: []byte("base-5")})
		got = load(t, s, r)
		if got.Doc.BaseSeq != 5 || got.Doc.Seq != 5 || len(got.Doc.Updates) != 0 || string(got.Doc.Base) != "base-5" {
			t.Fatalf("after base 5: %+v", got.Doc)
		}
		infos := roomInfo(t, s, r)
		if infos.DocBytes != got.Doc.Bytes() || infos.DocBytes != int64(len("base-5")) {
			t.Fatalf("DocBytes %d, doc %d", infos.DocBytes, got.Doc.Bytes())
		}
		// A base for a document the store does not hold (deleted while
		// it was being compacted) starts none.
		rb := r + ".base"
		write(t, s, Op{Kind: OpDocBase, Room: rb, Epoch: "d9", Seq: 7, Data: []byte("b7")})
		if got := load(t, s, rb); got.Doc.Epoch != "" {
			t.Fatalf("a base without a document started one: %+v", got.Doc)
		}
		write(t, s, msg(rb, "e1", 1, 10))
		write(t, s, Op{Kind: OpDocBase, Room: rb, Epoch: "d9", Seq: 7, Data: []byte("b7")})
		if got := load(t, s, rb); got.Doc.Epoch != "" || got.Seq != 1 {
			t.Fatalf("a base without a document started one: %+v", got)
		}
	})

	t.Run("a big document round-trips", func(t *testing.T) {
		s := open(t)
		r := room(t)
		base := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16) // 20 MiB
		update := bytes.Repeat([]byte{7}, 1<<20)
		write(t, s, Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 1, Data: []byte("u1")},
			Op{Kind: OpDocBase, Room: r, Epoch: "d1", Seq: 1, Data: base},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 2, Data: update})
		got := load(t, s, r)
		if !bytes.Equal(got.Doc.Base, base) || len(got.Doc.Updates) != 1 || !bytes.Equal(got.Doc.Updates[0], update) {
			t.Fatalf("doc of %d bytes came back as %d", len(base)+len(update), got.Doc.Bytes())
		}
		if info := roomInfo(t, s, r); info.DocBytes != int64(len(base)+len(update)) {
			t.Fatalf("DocBytes = %d", info.DocBytes)
		}
	})

	t.Run("reset forgets messages, state and document, and keeps versions", func(t *testing.T) {
		s := open(t)
		r := room(t)
		write(t, s, msg(r, "e1", 1, 10), msg(r, "e1", 2, 10),
			Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 2, Data: []byte(`{}`)},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 1, Data: []byte("u")},
			Op{Kind: OpVersion, Room: r, Version: VersionDoc, Data: []byte("v"), Keep: 10})
		write(t, s, Op{Kind: OpReset, Room: r, Epoch: "e2"})
		got := load(t, s, r)
		if got.Epoch != "e2" || got.Seq != 0 || len(got.Messages) != 0 || got.State != nil || got.Doc.Epoch != "" || got.Doc.Bytes() != 0 {
			t.Fatalf("after reset: %+v", got)
		}
		if vs, _ := s.Versions(ctx, r); len(vs) != 1 {
			t.Fatalf("versions after reset: %v", vs)
		}
		if info := roomInfo(t, s, r); info.DocBytes != 0 || info.StateBytes != 0 {
			t.Fatalf("info after reset: %+v", info)
		}
		// The room goes on in its new epoch; the old one is refused; a
		// reset into the same epoch is allowed; a new doc epoch starts.
		write(t, s, msg(r, "e2", 1, 10), Op{Kind: OpDocUpdate, Room: r, Epoch: "d2", Seq: 1, Data: []byte("u")})
		if err := s.Write(ctx, msg(r, "e1", 3, 10)); !errors.Is(err, ErrEpoch) {
			t.Fatalf("old epoch after reset: %v", err)
		}
		write(t, s, Op{Kind: OpReset, Room: r, Epoch: "e2"})
		if got := load(t, s, r); got.Epoch != "e2" || got.Seq != 0 || len(got.Messages) != 0 {
			t.Fatalf("reset into its own epoch: %+v", got)
		}
		// A reset is the first op of a room as well.
		write(t, s, Op{Kind: OpReset, Room: r + ".new", Epoch: "e5"})
		if got := load(t, s, r+".new"); got.Epoch != "e5" {
			t.Fatalf("reset of a new room: %+v", got)
		}
	})

	t.Run("delete removes the room and everything of it", func(t *testing.T) {
		s := open(t)
		r := room(t)
		write(t, s, msg(r, "e1", 1, 10),
			Op{Kind: OpState, Room: r, Epoch: "e1", Seq: 1, Data: []byte(`{}`)},
			Op{Kind: OpDocUpdate, Room: r, Epoch: "d1", Seq: 1, Data: []byte("u")},
			Op{Kind: OpVersion, Room: r, Version: VersionState, Seq: 1, Data: []byte(`{}`), Keep: 10})
		write(t, s, msg(r+".other", "e1", 1, 10))
		write(t, s, Op{Kind: OpDelete, Room: r})
		got := load(t, s, r)
		if got.Epoch != "" || len(got.Messages) != 0 || got.State != nil || got.Doc.Epoch != "" {
			t.Fatalf("after delete: %+v", got)
		}
		if vs, _ := s.Versions(ctx, r); len(vs) != 0 {
			t.Fatalf("versions after delete: %v", vs)
		}
		infos, _, err := s.Rooms(ctx, "", 100)
		if err != nil || len(infos) != 1 || infos[0].Room != r+".other" {
			t.Fatalf("Rooms after delete = %v, %v", infos, err)
		}
		// Deleting a room the store does not hold is fine; the next op
		// starts it afresh in any epoch.
		write(t, s, Op{Kind: OpDelete, Room: r + ".absent"}, msg(r, "e9", 1, 10))
		if got := load(t, s, r); got.Epoch != "e9" {
			t.Fatalf("after delete and a new message: %+v", got)
		}
	})

	t.Run("versions: newest first, pruned to Keep, each readable until pruned", func(t *testing.T) {
		s := open(t)
		r := room(t)
		at := time.UnixMilli(1_700_000_000_000)
		var ids []int64
		for i := range 4 {
			kind, seq := VersionDoc, uint64(0)
			if i%2 == 1 {
				kind, seq = VersionState, uint64(10+i)
			}
			write(t, s, Op{Kind: OpVersion, Room: r, Version: kind, Seq: seq, At: at.Add(time.Duration(i) * time.Minute),
				Data: []byte(fmt.Sprintf("version-%d", i)), Keep: 3})
			vs, err := s.Versions(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, vs[0].ID)
			if want := min(i+1, 3); len(vs) != want {
				t.Fatalf("after %d versions, keep 3: %d kept", i+1, len(vs))
			}
		}
		vs, _ := s.Versions(ctx, r)
		for i, v := range vs {
			n := 3 - i // newest first: versions 3, 2, 1
			if v.ID != ids[n] || !v.At.Equal(at.Add(time.Duration(n)*time.Minute)) || v.Bytes != int64(len(fmt.Sprintf("version-%d", n))) {
				t.Fatalf("version %d = %+v", i, v)
			}
			if (n%2 == 1) != (v.Kind == VersionState) || (v.Kind == VersionState && v.Seq != uint64(10+n)) {
				t.Fatalf("version %d kind/seq = %+v", i, v)
			}
			got, data, err := s.Version(ctx, r, v.ID)
			if err != nil || string(data) != fmt.Sprintf("version-%d", n) || got.Kind != v.Kind || got.Seq != v.Seq || !got.At.Equal(v.At) {
				t.Fatalf("Version(%d) = %+v %q %v", v.ID, got, data, err)
			}
		}
		if _, _, err := s.Version(ctx, r, ids[0]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pruned version: %v", err)
		}
		// Another room's id is not this room's.
		if _, _, err := s.Version(ctx, r+".other", ids[3]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other room's version: %v", err)
		}
		// A version without At is stamped with the time of the write;
		// Keep 0 keeps them all.
		before := time.Now().Add(-time.Second)
		write(t, s, Op{Kind: OpVersion, Room: r, Version: VersionDoc, Data: []byte("now")})
		vs, _ = s.Versions(ctx, r)
		if len(vs) != 4 || vs[0].At.Before(before) {
			t.Fatalf("after a Keep 0 version: %+v", vs)
		}
	})

	t.Run("snapshot: the furthest copy wins", func(t *testing.T) {
		s := open(t)
		r := room(t)
		snap := func(epoch string, seq uint64, docEpoch string, docSeq uint64, tag string) Op {
			room := &Room{Epoch: epoch, Seq: seq,
				State: &State{Seq: seq, Data: []byte(`"` + tag + `"`)},
				Doc:   Doc{Epoch: docEpoch, Seq: docSeq, BaseSeq: docSeq - 1, Base: []byte("base-" + tag), Updates: [][]byte{[]byte("u-" + tag)}},
			}
			for i := uint64(1); i <= seq && i <= 2; i++ {
				room.Messages = append(room.Messages, Message{Seq: seq - 2 + i, Frame: []byte(tag), Exclude: "c"})
			}
			return Op{Kind: OpSnapshot, Room: r, Snapshot: room}
		}
		tag := func(t *testing.T) string {
			t.Helper()
			got := load(t, s, r)
			if got.State == nil {
				t.Fatalf("no state: %+v", got)
			}
			return strings.Trim(string(got.State.Data), `"`)
		}
		write(t, s, Op{Kind: OpVersion, Room: r, Version: VersionDoc, Data: []byte("v")})
		write(t, s, snap("e1", 10, "d1", 5, "a"))
		got := load(t, s, r)
		if got.Epoch != "e1" || got.Seq != 10 || len(got.Messages) != 2 || got.Messages[1].Seq != 10 ||
			got.Doc.Epoch != "d1" || got.Doc.Seq != 5 || got.Doc.BaseSeq != 4 || string(got.Doc.Base) != "base-a" ||
			len(got.Doc.Updates) != 1 || string(got.Doc.Updates[0]) != "u-a" {
			t.Fatalf("first snapshot: %+v", got)
		}
		if info := roomInfo(t, s, r); info.DocBytes != got.Doc.Bytes() || info.StateBytes != int64(len(`"a"`)) {
			t.Fatalf("info: %+v", info)
		}
		for _, c := range []struct {
			op   Op
			want string
		}{
			{snap("e1", 10, "d1", 5, "same"), "a"},          // as far: ignored
			{snap("e1", 9, "d1", 5, "older"), "a"},          // behind: ignored
			{snap("e1", 10, "d1", 4, "olderdoc"), "a"},      // doc behind: ignored
			{snap("e1", 11, "d1", 5, "further"), "further"}, // further: replaces
			{snap("e1", 11, "d1", 6, "docfurther"), "docfurther"},
			{snap("e1", 11, "d2", 1, "newdoc"), "newdoc"}, // another doc epoch is not "as far"
			{snap("e0", 3, "d0", 1, "otherepoch"), "otherepoch"},
		} {
			write(t, s, c.op)
			if got := tag(t); got != c.want {
				t.Fatalf("after snapshot %q: holds %q", c.op.Snapshot.State.Data, got)
			}
		}
		// A state sent after the last message is kept, a stale one not.
		r2 := r + ".state"
		for _, c := range []struct {
			stateSeq uint64
			data     string
			want     string
		}{{3, "s3", "s3"}, {5, "s5", "s5"}, {4, "s4", "s5"}} {
			write(t, s, Op{Kind: OpSnapshot, Room: r2, Snapshot: &Room{Epoch: "e1", Seq: 5, State: &State{Seq: c.stateSeq, Data: []byte(c.data)}}})
			if got := load(t, s, r2); got.State == nil || string(got.State.Data) != c.want || got.Seq != 5 {
				t.Fatalf("after a snapshot with state %d: %+v", c.stateSeq, got)
			}
		}
		got = load(t, s, r)
		if got.Epoch != "e0" || got.Seq != 3 || got.Doc.Epoch != "d0" || got.Doc.Seq != 1 {
			t.Fatalf("after another epoch's snapshot: %+v", got)
		}
		// The room's ops go on from the snapshot's position.
		write(t, s, msg(r, "e0", 4, 2))
		if got := load(t, s, r); got.Seq != 4 || len(got.Messages) != 2 || got.Messages[0].Seq != 3 {
			t.Fatalf("message after snapshot: %+v", got)
		}
		// A snapshot without state or document replaces them with none;
		// the versions stay through all of it.
		write(t, s, Op{Kind: OpSnapshot, Room: r, Snapshot: &Room{Epoch: "e7", Seq: 1}})
		got = load(t, s, r)
		if got.Epoch != "e7" || got.Seq != 1 || got.State != nil || got.Doc.Epoch != "" || len(got.Messages) != 0 {
			t.Fatalf("bare snapshot: %+v", got)
		}
		if vs, _ := s.Versions(ctx, r); len(vs) != 1 {
			t.Fatalf("versions after snapshots: %v", vs)
		}
		// A snapshot is a room's first op too.
		write(t, s, Op{Kind: OpSnapshot, Room: r + ".new", Snapshot: &Room{Epoch: "e1", Seq: 0}})
		if got := load(t, s, r+".new"); got.Epoch != "e1" {
			t.Fatalf("first snapshot of a new room: %+v", got)
		}
	})

	t.Run("snapshot: only what the store lacks is written", func(t *testing.T) {
		s := open(t)
		r := room(t)
		mk := func(seq uint64, window int, baseSeq, docSeq uint64, base string) *Room {
			kept := &Room{Epoch: "e1", Seq: seq, State: &State{Seq: seq, Data: []byte("st")},
				Doc: Doc{Epoch: "d1", Seq: docSeq, BaseSeq: baseSeq, Base: []byte(base)}}
			for m := seq - uint64(window) + 1; m <= seq; m++ {
				kept.Messages = append(kept.Messages, Message{Seq: m, Frame: frame(m)})
			}
			for u := baseSeq + 1; u <= docSeq; u++ {
				kept.Doc.Updates = append(kept.Doc.Updates, []byte(fmt.Sprintf("update-%04d", u)))
			}
			return kept
		}
		written := func(snap *Room) int64 {
			t.Helper()
			before := StatsOf(s).Written
			write(t, s, Op{Kind: OpSnapshot, Room: r, Snapshot: snap})
			return StatsOf(s).Written - before
		}
		check := func(want *Room) {
			t.Helper()
			got := load(t, s, r)
			if got.Epoch != want.Epoch || got.Seq != want.Seq || len(got.Messages) != len(want.Messages) ||
				got.Doc.Seq != want.Doc.Seq || got.Doc.BaseSeq != want.Doc.BaseSeq || string(got.Doc.Base) != string(want.Doc.Base) ||
				len(got.Doc.Updates) != len(want.Doc.Updates) {
				t.Fatalf("holds %+v, want %+v", got, want)
			}
			for i, m := range want.Messages {
				if got.Messages[i].Seq != m.Seq || string(got.Messages[i].Frame) != string(m.Frame) {
					t.Fatalf("message %d: %+v, want %+v", i, got.Messages[i], m)
				}
			}
			for i, u := range want.Doc.Updates {
				if string(got.Doc.Updates[i]) != string(u) {
					t.Fatalf("update %d: %q, want %q", i, got.Doc.Updates[i], u)
				}
			}
		}
		upd := int64(len("update-0000"))
		frames := func(from, to uint64) (n int64) {
			for m := from; m <= to; m++ {
				n += int64(len(frame(m)))
			}
			return n
		}
		first := mk(10, 4, 3, 6, "base-3")
		if n, min := written(first), int64(len("base-3"))+frames(7, 10)+3*upd; n < min {
			t.Fatalf("a first snapshot wrote %d bytes, want at least %d", n, min)
		}
		check(first)
		// Two messages and two updates later, window 4: the two new
		// messages and updates (and the state) are written, nothing else.
		next := mk(12, 4, 3, 8, "base-3")
		if n, want := written(next), frames(11, 12)+int64(len("st"))+2*upd; n != want {
			t.Fatalf("a later snapshot wrote %d bytes, want %d", n, want)
		}
		check(next)
		// A compaction moved the base: the document is written anew.
		compacted := mk(12, 4, 8, 9, "base-8")
		if n, min := written(compacted), int64(len("base-8"))+upd; n < min {
			t.Fatalf("a snapshot on a new base wrote %d bytes, want at least %d", n, min)
		}
		check(compacted)
		// A window that keeps no message drops them all.
		empty := mk(13, 0, 8, 9, "base-8")
		written(empty)
		check(empty)
	})

	t.Run("rooms page by name with an opaque cursor", func(t *testing.T) {
		s := open(t)
		names := []string{"b", "a", "A", "a.b", "a-b", "c:1", "_", "z"}
		for i, n := range names {
			write(t, s, Op{Kind: OpState, Room: n, Epoch: "e", Data: bytes.Repeat([]byte("s"), i+1)},
				Op{Kind: OpDocUpdate, Room: n, Epoch: "d", Seq: 1, Data: bytes.Repeat([]byte("d"), 10*(i+1))})
		}
		var all []RoomInfo
		cursor, pages := "", 0
		for {
			page, next, err := s.Rooms(ctx, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(page) > 3 || (next != "" && len(page) != 3) {
				t.Fatalf("page %d: %d rooms, next %q", pages, len(page), next)
			}
			all = append(all, page...)
			if next == "" {
				break
			}
			if next == page[len(page)-1].Room {
				t.Fatalf("cursor %q is not opaque", next)
			}
			cursor = next
		}
		if pages != 3 || len(all) != len(names) {
			t.Fatalf("%d pages, %d rooms", pages, len(all))
		}
		want := []string{"A", "_", "a", "a-b", "a.b", "b", "c:1", "z"} // bytewise
		for i, info := range all {
			if info.Room != want[i] {
				t.Fatalf("room %d = %q, want %q (all %v)", i, info.Room, want[i], all)
			}
			n := 0
			for n < len(names) && names[n] != info.Room {
				n++
			}
			if info.StateBytes != int64(n+1) || info.DocBytes != int64(10*(n+1)) || info.Updated.IsZero() {
				t.Fatalf("info %+v", info)
			}
		}
		// Exactly a page's worth: the last full page says there is no more.
		page, next, err := s.Rooms(ctx, "", len(names))
		if err != nil || len(page) != len(names) || next != "" {
			t.Fatalf("limit = rooms: %d, %q, %v", len(page), next, err)
		}
		page, next, _ = s.Rooms(ctx, "", len(names)-1)
		if len(page) != len(names)-1 || next == "" {
			t.Fatalf("limit = rooms-1: %d, %q", len(page), next)
		}
		if _, _, err := s.Rooms(ctx, "not base64!", 3); !errors.Is(err, ErrBadCursor) {
			t.Fatalf("a bad cursor: %v, want ErrBadCursor", err)
		}
		if page, _, err := s.Rooms(ctx, "", 0); err != nil || len(page) != len(names) {
			t.Fatalf("limit 0 (default): %d, %v", len(page), err)
		}
	})

	t.Run("Updated is the time of the last write", func(t *testing.T) {
		s := open(t)
		r := room(t)
		write(t, s, msg(r, "e1", 1, 10))
		first := load(t, s, r).Updated
		time.Sleep(20 * time.Millisecond)
		write(t, s, Op{Kind: OpDocUpdate, Room: r, Epoch: "d", Seq: 1, Data: []byte("u")})
		second := load(t, s, r).Updated
		if !second.After(first) {
			t.Fatalf("Updated %v then %v", first, second)
		}
		if info := roomInfo(t, s, r); !info.Updated.Equal(second) {
			t.Fatalf("RoomInfo.Updated %v, Load %v", info.Updated, second)
		}
	})

	t.Run("invalid ops are refused before they reach the writer", func(t *testing.T) {
		s := open(t)
		for _, op := range []Op{
			{Kind: OpMessage, Epoch: "e", Seq: 1},
			{Kind: OpMessage, Room: "r", Seq: 1},
			{Kind: OpKind(99), Room: "r", Epoch: "e"},
			{Kind: OpSnapshot, Room: "r"},
			{Kind: OpSnapshot, Room: "r", Snapshot: &Room{}},
			{Kind: OpVersion, Room: "r", Version: "other"},
			{Kind: OpMessage, Room: "r", Epoch: "e", Seq: 1 << 63},
		} {
			if err := s.Write(ctx, op); err == nil || errors.Is(err, ErrEpoch) {
				t.Fatalf("Write(%+v) = %v", op, err)
			}
		}
		if err := s.Write(ctx); err != nil {
			t.Fatalf("empty Write: %v", err)
		}
	})

	t.Run("concurrent writers each get their own result, in call order", func(t *testing.T) {
		s := open(t)
		r := room(t)
		const writers, each = 16, 40
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				own := fmt.Sprintf("%s.%d", r, w)
				for seq := uint64(1); seq <= each; seq++ {
					// Its own room, one message and one state per Write, in
					// order; and, every few, a batch of the wrong epoch that
					// must fail alone.
					err := s.Write(ctx, msg(own, "e1", seq, 10),
						Op{Kind: OpState, Room: own, Epoch: "e1", Seq: seq, Data: []byte(fmt.Sprint(seq))})
					if err != nil {
						errs <- fmt.Errorf("writer %d seq %d: %w", w, seq, err)
						return
					}
					if seq%8 == 0 {
						if err := s.Write(ctx, msg(own, "wrong", seq+1, 10)); !errors.Is(err, ErrEpoch) {
							errs <- fmt.Errorf("writer %d: a wrong epoch gave %v", w, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for w := range writers {
			got := load(t, s, fmt.Sprintf("%s.%d", r, w))
			if got.Seq != each || len(got.Messages) != 10 || got.Messages[9].Seq != each || got.State.Seq != each {
				t.Fatalf("writer %d: %+v", w, got)
			}
		}
	})

	t.Run("a cancelled context ends Write", func(t *testing.T) {
		s := open(t)
		c, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Write(c, msg(room(t), "e1", 1, 10)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write = %v", err)
		}
		if got := load(t, s, room(t)); got.Epoch != "" {
			t.Fatalf("a Write cancelled before it was queued was applied: %+v", got)
		}
	})

	t.Run("after Close every call fails with ErrClosed", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := s.Write(ctx, msg("r", "e", 1, 1)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write = %v", err)
		}
		if _, err := s.Load(ctx, "r"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Load = %v", err)
		}
		if _, _, err := s.Rooms(ctx, "", 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Rooms = %v", err)
		}
		if err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Ping = %v", err)
		}
	})
}

// testDurable: what Writes returned before Close is there after a reopen,
// and Close lets the Writes already queued finish. open opens the same
// database each time.
func testDurable(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	s := open(t)
	const writers = 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for seq := uint64(1); seq <= 20; seq++ {
				if err := s.Write(ctx, Op{Kind: OpMessage, Room: fmt.Sprint("durable.", w), Epoch: "e1", Seq: seq, Data: frame(seq), Keep: 100}); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Write(ctx,
		Op{Kind: OpState, Room: "durable.0", Epoch: "e1", Seq: 20, Data: []byte(`{"x":1}`)},
		Op{Kind: OpDocUpdate, Room: "durable.0", Epoch: "d1", Seq: 1, Data: []byte("u1")},
		Op{Kind: OpVersion, Room: "durable.0", Version: VersionDoc, Data: []byte("v1"), Keep: 5}); err != nil {
		t.Fatal(err)
	}
	// Writes racing Close either commit or get ErrClosed: none is lost
	// after it was acked.
	acked := make(chan uint64, 100)
	var racers sync.WaitGroup
	for i := range 50 {
		racers.Go(func() {
			seq := uint64(100 + i)
			err := s.Write(ctx, Op{Kind: OpDocUpdate, Room: fmt.Sprint("racing.", seq), Epoch: "d1", Seq: 1, Data: frame(seq)})
			if err == nil {
				acked <- seq
			} else if !errors.Is(err, ErrClosed) {
				t.Errorf("Write racing Close: %v", err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	racers.Wait()
	close(acked)

	s = open(t)
	defer s.Close()
	for w := range writers {
		got, err := s.Load(ctx, fmt.Sprint("durable.", w))
		if err != nil || got.Seq != 20 || len(got.Messages) != 20 {
			t.Fatalf("room %d after reopen: %+v, %v", w, got, err)
		}
	}
	got, _ := s.Load(ctx, "durable.0")
	if got.State == nil || string(got.State.Data) != `{"x":1}` || len(got.Doc.Updates) != 1 {
		t.Fatalf("after reopen: %+v", got)
	}
	if vs, _ := s.Versions(ctx, "durable.0"); len(vs) != 1 {
		t.Fatalf("versions after reopen: %v", vs)
	}
	for seq := range acked {
		got, err := s.Load(ctx, fmt.Sprint("racing.", seq))
		if err != nil || got.Doc.Seq != 1 {
			t.Fatalf("an acked Write racing Close is lost: %d %+v %v", seq, got, err)
		}
	}
}

func frame(seq uint64) []byte {
	return fmt.Appendf(nil, `{"type":"message","seq":%d}`, seq)
}

func roomInfo(t *testing.T, s Store, room string) RoomInfo {
	t.Helper()
	cursor := ""
	for {
		page, next, err := s.Rooms(context.Background(), cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range page {
			if info.Room == room {
				return info
			}
		}
		if next == "" {
			t.Fatalf("room %q not listed", room)
		}
		cursor = next
	}
}
