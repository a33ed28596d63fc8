package rooms

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/roomcast/roomcast/rooms/wire"
)

// A Yjs connection shares its room's subscription but takes none of the
// room's JSON frames; document payloads go to OnDoc, which reaches the Yjs
// connections through EachDoc. A room deletion closes them too.
func TestHubKeepsDocConnsApart(t *testing.T) {
	b := NewMemoryBroker(StreamOptions{HistorySize: 10})
	var mu sync.Mutex
	var docs []wire.Envelope
	var h *Hub
	h = NewHub(b, HubOptions{OnDoc: func(room string, e wire.Envelope) {
		mu.Lock()
		docs = append(docs, e)
		mu.Unlock()
		h.EachDoc(room, func(c *Conn) {
			if c.ID != e.Exclude {
				c.Send(e.Frame)
			}
		})
	}})
	ctx := context.Background()
	if err := b.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	jsonRec, docRec := &recorder{}, &recorder{}
	jc := NewConn("j", "r", "u", jsonRec, ConnOptions{})
	dc := NewConn("d", "r", "u", docRec, ConnOptions{})
	dc.Doc = true
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
	// Deleting the room closes the Yjs connection with 4010 as well.
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
	mu.Lock()
	n := len(docs)
	mu.Unlock()
	if n != 2 {
		t.Fatalf("OnDoc saw %d payloads, want 2", n)
	}
	// The last connection out unsubscribes, Yjs ones included.
	h.Remove(ctx, jc)
	h.Remove(ctx, dc)
	if len(h.Rooms()) != 0 {
		t.Fatalf("rooms left: %v", h.Rooms())
	}
}
