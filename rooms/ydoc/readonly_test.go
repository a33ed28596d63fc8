package ydoc

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// socket is a rooms.Transport that keeps the frames written to it.
type socket struct {
	mu     sync.Mutex
	frames [][]byte
}

func (s *socket) WriteFrames(fs [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		s.frames = append(s.frames, bytes.Clone(f))
	}
	return nil
}
func (s *socket) WriteControl(byte, []byte) error { return nil }
func (s *socket) WriteClose(int, string) error    { return nil }
func (s *socket) Abort()                          {}

// messages returns the y-websocket messages written so far.
func (s *socket) messages(t *testing.T) []yjs.Message {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []yjs.Message
	for _, f := range s.frames {
		m, err := yjs.ParseMessage(f)
		if err != nil {
			t.Fatalf("the server wrote an invalid message %x: %v", f, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// has reports whether a message of type typ (and sync kind sub) holding
// payload was written.
func (s *socket) has(t *testing.T, typ, sub uint64, payload []byte) bool {
	for _, m := range s.messages(t) {
		if m.Type == typ && (typ != yjs.MessageSync || m.Sync == sub) && bytes.Contains(m.Payload, payload) {
			return true
		}
	}
	return false
}

// textUpdate is a Yjs update (v1) by client inserting text into the root
// Y.Text "text".
func textUpdate(client uint64, text string) []byte {
	b := binary.AppendUvarint(nil, 1) // clients
	b = binary.AppendUvarint(b, 1)    // structs of this client
	b = binary.AppendUvarint(b, client)
	b = binary.AppendUvarint(b, 0) // clock
	b = append(b, 4)               // ContentString, parent named below
	b = binary.AppendUvarint(b, 1) // the parent is a root type
	b = binary.AppendUvarint(b, 4)
	b = append(b, "text"...)
	b = binary.AppendUvarint(b, uint64(len(text)))
	b = append(b, text...)
	return binary.AppendUvarint(b, 0) // delete set: no clients
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// send hands the engine one client message of c, as the socket's reader
// does.
func send(t *testing.T, e *Engine, c *Conn, frame []byte) {
	t.Helper()
	m, err := yjs.ParseMessage(frame)
	if err != nil {
		t.Fatalf("test message %x: %v", frame, err)
	}
	if err := e.Handle(context.Background(), c, m, frame); err != nil {
		t.Fatalf("handle %x: %v", frame, err)
	}
}

// A read-only connection's edits (sync step 2 and updates) are neither
// stored, relayed nor merged; its step 1 is answered and its awareness
// relayed as anyone's. A writer's edits in the same room reach it.
func TestReadOnlyConnectionEditsAreDropped(t *testing.T) {
	ctx := context.Background()
	b := rooms.NewMemoryBroker(rooms.StreamOptions{})
	e := New(Options{Broker: b, Instance: "i1"})
	h := rooms.NewHub(b, rooms.HubOptions{Docs: e})
	if err := b.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		e.Close()
		_ = b.Close()
	}()
	join := func(id, user string, readOnly bool) (*Conn, *socket) {
		sock := &socket{}
		c := rooms.NewConn(id, "r", user, sock, rooms.ConnOptions{})
		c.Doc = true
		if err := h.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		yc, err := e.Join(ctx, c, readOnly)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			e.Leave(ctx, yc)
			h.Remove(ctx, c)
			c.Close(1000, "")
			c.Wait()
		})
		return yc, sock
	}
	writer, wsock := join("w", "alice", false)
	reader, rsock := join("r", "bob", true)
	if !reader.ReadOnly || writer.ReadOnly {
		t.Fatal("ReadOnly is not what Join was given")
	}

	// The reader's edits go nowhere.
	step2 := textUpdate(7, "from the reader's step 2")
	update := textUpdate(8, "from the reader's update")
	send(t, e, reader, yjs.AppendSyncMessage(nil, yjs.SyncStep2, step2))
	send(t, e, reader, yjs.AppendSyncMessage(nil, yjs.SyncUpdate, update))
	// The writer's edit is stored and reaches the reader: what follows
	// waits for it, so the reader's edits had their chance to travel.
	written := textUpdate(9, "from the writer")
	send(t, e, writer, yjs.AppendSyncMessage(nil, yjs.SyncUpdate, written))
	waitUntil(t, "the reader has the writer's update", func() bool {
		return rsock.has(t, yjs.MessageSync, yjs.SyncUpdate, []byte("from the writer"))
	})
	doc, err := b.Doc(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Position.Seq != 1 || len(doc.Updates) != 1 || !bytes.Contains(doc.Updates[0], []byte("from the writer")) {
		t.Fatalf("stored document: at %+v, %d updates; want the writer's only", doc.Position, len(doc.Updates))
	}
	for _, edit := range []string{"from the reader's step 2", "from the reader's update"} {
		if wsock.has(t, yjs.MessageSync, yjs.SyncUpdate, []byte(edit)) || wsock.has(t, yjs.MessageSync, yjs.SyncStep2, []byte(edit)) {
			t.Fatalf("the writer got the reader's edit %q", edit)
		}
	}
	snap, err := e.Snapshot(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snap.Doc, []byte("from the writer")) || bytes.Contains(snap.Doc, []byte("from the reader")) {
		t.Fatalf("the merged document holds %q", snap.Doc)
	}

	// Its step 1 is answered with the document.
	send(t, e, reader, yjs.AppendSyncMessage(nil, yjs.SyncStep1, yjs.StateVector{}.Encode()))
	waitUntil(t, "the reader's step 1 is answered", func() bool {
		return rsock.has(t, yjs.MessageSync, yjs.SyncStep2, []byte("from the writer"))
	})

	// Its awareness is relayed to the writer.
	aw := yjs.EncodeAwareness([]yjs.AwarenessEntry{{Client: 8, Clock: 1, State: []byte(`{"user":"bob reads"}`)}})
	send(t, e, reader, yjs.AppendAwarenessMessage(nil, aw))
	waitUntil(t, "the writer sees the reader's awareness", func() bool {
		return wsock.has(t, yjs.MessageAwareness, 0, []byte("bob reads"))
	})
}
