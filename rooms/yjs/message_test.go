package yjs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	update := buildUpdate([]craftSection{{9, 0, [][]byte{item{ref: refString, parent: "text", content: vstr("hi")}.bytes()}}}, nil)
	sv := StateVector{9: 2}.Encode()
	aw := EncodeAwareness([]AwarenessEntry{{Client: 9, Clock: 3, State: []byte(`{"user":{"name":"Zoë"}}`)}, {Client: 10, Clock: 1}})
	for _, c := range []struct {
		frame []byte
		want  Message
	}{
		{AppendSyncMessage(nil, SyncStep1, sv), Message{Type: MessageSync, Sync: SyncStep1, Payload: sv}},
		{AppendSyncMessage(nil, SyncStep2, update), Message{Type: MessageSync, Sync: SyncStep2, Payload: update}},
		{AppendSyncMessage(nil, SyncUpdate, update), Message{Type: MessageSync, Sync: SyncUpdate, Payload: update}},
		{AppendSyncMessage(nil, SyncUpdate, EmptyUpdate), Message{Type: MessageSync, Sync: SyncUpdate, Payload: EmptyUpdate}},
		{AppendAwarenessMessage(nil, aw), Message{Type: MessageAwareness, Payload: aw}},
		{[]byte{MessageQueryAwareness}, Message{Type: MessageQueryAwareness}},
		// non-minimal varints are accepted
		{[]byte{0x80, 0x00, 0x82, 0x00, 0x02, 0, 0}, Message{Type: MessageSync, Sync: SyncUpdate, Payload: EmptyUpdate}},
	} {
		m, err := ParseMessage(c.frame)
		if err != nil || m.Type != c.want.Type || m.Sync != c.want.Sync || !bytes.Equal(m.Payload, c.want.Payload) {
			t.Errorf("%x: %+v %v, want %+v", c.frame, m, err, c.want)
		}
	}
	long := strings.Repeat("a", 300)
	for _, c := range []struct {
		name  string
		frame []byte
		err   string
	}{
		{"empty frame", nil, "message type: truncated varint at byte 0"},
		{"unknown type", []byte{4}, "unknown message type 4"},
		{"auth", []byte{MessageAuth, 0, 0}, "auth messages are not accepted"},
		{"unknown sync type", []byte{0, 3, 0}, "unknown sync message type 3"},
		{"huge type", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "message type: integer out of range"},
		{"no sync type", []byte{0}, "sync type: truncated varint"},
		{"no payload", []byte{0, 2}, "sync update: payload: truncated varint"},
		{"short payload", []byte{0, 2, 5, 0, 0}, "sync update: payload: length beyond end"},
		{"trailing bytes", append(AppendSyncMessage(nil, SyncUpdate, EmptyUpdate), 0), "sync update: trailing bytes at byte 5"},
		{"two messages", append([]byte{3}, 3), "query awareness: trailing bytes"},
		{"bad update", AppendSyncMessage(nil, SyncStep2, []byte{1, 1, 1, 0, 11 | flagOrigin, 0, 0}), "sync step 2: update: unknown content ref 11"},
		{"update with trailing bytes", AppendSyncMessage(nil, SyncUpdate, []byte{0, 0, 0}), "sync update: update: trailing bytes"},
		{"bad state vector", AppendSyncMessage(nil, SyncStep1, []byte{2, 1, 1}), "sync step 1: state vector: truncated varint"},
		{"state vector with trailing bytes", AppendSyncMessage(nil, SyncStep1, []byte{0, 0}), "sync step 1: state vector: trailing bytes"},
		{"awareness invalid JSON", AppendAwarenessMessage(nil, []byte{1, 1, 1, 3, '{', 'a', '}'}), "awareness: invalid JSON"},
		{"awareness invalid UTF-8", AppendAwarenessMessage(nil, []byte{1, 1, 1, 3, '"', 0xff, '"'}), "awareness: invalid UTF-8"},
		{"awareness empty state", AppendAwarenessMessage(nil, []byte{1, 1, 1, 0}), "awareness: invalid JSON"},
		{"awareness trailing", AppendAwarenessMessage(nil, append(EncodeAwareness(nil), 0)), "awareness: trailing bytes"},
		{"long reason", AppendSyncMessage(nil, SyncUpdate, buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refString, parent: long, content: vstr("\xff")}.bytes()}}}, nil)), "sync update: update: invalid UTF-8"},
	} {
		m, err := ParseMessage(c.frame)
		var pe *ProtocolError
		switch {
		case err == nil:
			t.Errorf("%s: accepted as %+v", c.name, m)
		case !errors.As(err, &pe) || !errors.Is(err, ErrInvalid):
			t.Errorf("%s: %T %v is not a *ProtocolError matching ErrInvalid", c.name, err, err)
		case !strings.HasPrefix(pe.Reason, c.err):
			t.Errorf("%s: reason %q, want %q", c.name, pe.Reason, c.err)
		case len(pe.Reason) > 100:
			t.Errorf("%s: reason of %d bytes", c.name, len(pe.Reason))
		}
	}
	if r := truncateReason(strings.Repeat("é", 60)); len(r) != 100 {
		t.Errorf("truncateReason: %d bytes", len(r))
	}
	if r := truncateReason("a" + strings.Repeat("é", 60)); len(r) != 99 {
		t.Errorf("truncateReason must cut at a rune boundary: %d bytes", len(r))
	}
}

func TestAwareness(t *testing.T) {
	entries := []AwarenessEntry{
		{Client: 1, Clock: 0, State: []byte(`{}`)},
		{Client: 3141592653, Clock: 99, State: []byte(`{"cursor":{"anchor":1,"head":[2,3]},"name":"😀"}`)},
		{Client: 7, Clock: 1 << 40, State: []byte("null")},
		{Client: 8, Clock: 2}, // no state: removed
	}
	enc := EncodeAwareness(entries)
	got, err := ParseAwareness(enc)
	if err != nil || len(got) != len(entries) {
		t.Fatalf("ParseAwareness: %v %v", got, err)
	}
	for i, e := range got {
		w := entries[i]
		if len(w.State) == 0 {
			w.State = []byte("null")
		}
		if e.Client != w.Client || e.Clock != w.Clock || !bytes.Equal(e.State, w.State) {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
	if !bytes.Equal(EncodeAwareness(got), enc) {
		t.Fatal("re-encoding differs")
	}
	for n := 0; n < len(enc); n++ {
		if _, err := ParseAwareness(enc[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	none, err := ParseAwareness([]byte{0})
	if err != nil || len(none) != 0 {
		t.Fatalf("empty awareness update: %v %v", none, err)
	}
}
