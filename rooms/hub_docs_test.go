package rooms

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/roomcast/roomcast/rooms/wire"
)

// docRecorder is a DocHandler that relays document payloads to its own
// connections, as rooms/ydoc does, and closes them when the room is
// deleted.
type docRecorder struct {
	mu      sync.Mutex
	conns   []*Conn
	docs    []wire.Envelope
	deleted []string
}

func (d *docRecorder) DeliverDoc(room string, e wire.Envelope) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs = append(d.docs, e)
	for _, c := range d.conns {
		if c.ID != e.Exclude {
			c.Send(e.Frame)
		}
	}
}

func (d *docRecorder) RoomDeleted(room string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted = append(d.deleted, room)
	for _, c := range d.conns {
		c.Close(CloseResync, "room deleted: its document too")
	}
}

func (d *docRecorder) Resync([]string) {}

// A Yjs connection shares its room's subscription but takes none of the
// room's JSON frames; document payloads go to the DocHandler, and so does
// the room's deletion.
func TestHubKeepsDocConnsApart(t *testing.T) {
	b := NewMemoryBroker(StreamOptions{HistorySize: 10})
	d := &docRecorder{}
	h := NewHub(b, HubOptions{Docs: d})
	ctx := context.Background()
	if err := b.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	jsonRec, docRec := &recorder{}, &recorder{}
	jc := NewConn("j", "r", "u", jsonRec, ConnOptions{})
	dc := NewConn("d", "r", "u", docRec, ConnOptions{})
	dc.Doc = true
	d.mu.Lock()
	d.conns = append(d.conns, dc)
	d.mu.Unlock()
	for _, c := range []*Conn{jc, dc} {
		if err := h.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Start([]byte("first"))
	}
	if got := len(h.Conns("r")); got != 2 {
		t.Fatalf("Conns lists %d connections, want both", got)
	}
	if err := h.Publish(ctx, "r", "", []byte(`{"type":"join"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.PublishMessage(ctx, "r", Message{ID: "m", Frame: []byte(`{"type":"message"}`), Stored: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "", []byte("\x00\x02\x01\x07")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpdate(ctx, "r", "d", []byte("\x00\x02\x01\x08")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { f, _ := jsonRec.snapshot(); return len(f) >= 3 })
	waitFor(t, func() bool { f, _ := docRec.snapshot(); return len(f) >= 2 })
	// Deleting the room reaches the DocHandler, which closes the Yjs
	// connection with 4010.
	if _, err := b.Reset(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	<-dc.Done()
	dc.Wait()
	<-jc.Done() // closed by the reset too: its epoch is over
	jc.Wait()
	jf, _ := jsonRec.snapshot()
	df, dcode := docRec.snapshot()
	if fmt.Sprintf("%q", jf) != `["first" "{\"type\":\"join\"}" "{\"type\":\"message\",\"seq\":1}"]` {
		t.Fatalf("JSON connection got %q", jf)
	}
	if fmt.Sprintf("%q", df) != `["first" "\x00\x02\x01\a"]` || dcode != CloseResync {
		t.Fatalf("Yjs connection got %q, closed %d", df, dcode)
	}
	d.mu.Lock()
	n, deleted := len(d.docs), fmt.Sprint(d.deleted)
	d.mu.Unlock()
	if n != 2 || deleted != "[r]" {
		t.Fatalf("the DocHandler saw %d payloads and deletions %s, want 2 and [r]", n, deleted)
	}
	// The last connection out unsubscribes, Yjs ones included.
	h.Remove(ctx, jc)
	h.Remove(ctx, dc)
	if len(h.Rooms()) != 0 {
		t.Fatalf("rooms left: %v", h.Rooms())
	}
}
