package ydoc

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Conn is a local Yjs (y-websocket) connection of a room's document.
type Conn struct {
	*rooms.Conn
	// ReadOnly, set at Join, makes the connection a reader: its sync step
	// 2 and update messages are dropped (never stored, relayed or
	// merged); its step 1 is answered and its awareness shared as
	// anyone's.
	ReadOnly bool
	// step2 is the number (rooms.Conn.SendTracked) of the last step 2
	// sent in answer to the client's step 1; the reader's only.
	step2 uint64
}

// joinAttempts is how many times a joiner reads the document when the
// frames held meanwhile overflow its queue (a busy document).
const joinAttempts = 4

// Join attaches c, a Yjs connection already in its room's Hub, to the
// room's document and starts it: the server's sync step 1 (its state
// vector, so that the client answers with what the server lacks) first,
// then the awareness states known. Every update stored after the document
// is read here reaches c through the room's subscription. On error c is
// not attached.
func (e *Engine) Join(ctx context.Context, c *rooms.Conn, readOnly bool) (*Conn, error) {
	yc := &Conn{Conn: c, ReadOnly: readOnly}
	r := e.attach(ctx, yc)
	for attempt := 1; ; attempt++ {
		snap, err := r.snapshot(ctx)
		if err != nil {
			e.Leave(ctx, yc)
			return nil, fmt.Errorf("read the document: %w", err)
		}
		if c.Start(yjs.AppendSyncMessage(nil, yjs.SyncStep1, snap.sv.Encode())) {
			break
		}
		if closing, _ := c.Closing(); closing || attempt == joinAttempts {
			e.Leave(ctx, yc)
			return nil, errors.New("document too busy to join, or the connection closed while joining")
		}
	}
	if aw := r.awarenessFor(yc); aw != nil {
		c.Send(aw)
	}
	return yc, nil
}

// Handle acts on one valid message m (its frame as read) from c: a step 1
// is answered, an update stored and relayed, awareness recorded and
// relayed, an awareness query answered. ctx is the connection's life: each
// broker call gets OpTimeout within it. The error is a
// rooms.ErrDocTooLarge when the document cannot take an update.
func (e *Engine) Handle(ctx context.Context, c *Conn, m yjs.Message, frame []byte) error {
	r := e.room(c.Room)
	if r == nil {
		return errors.New("document not attached")
	}
	switch m.Type {
	case yjs.MessageSync:
		switch m.Sync {
		case yjs.SyncStep1:
			sv, err := yjs.DecodeStateVector(m.Payload)
			if err != nil {
				return fmt.Errorf("decode state vector: %w", err)
			}
			return e.answerStep1(ctx, r, c, sv)
		case yjs.SyncStep2, yjs.SyncUpdate:
			if c.ReadOnly || bytes.Equal(m.Payload, yjs.EmptyUpdate) {
				return nil
			}
			msg := bytes.Clone(frame) // the read buffer is reused; a timed-out append may still run
			if m.Sync == yjs.SyncStep2 {
				// Stored and relayed as an update: a step 2 would mark
				// other providers synced.
				msg = yjs.AppendSyncMessage(nil, yjs.SyncUpdate, m.Payload)
			}
			opCtx, cancel := context.WithTimeout(ctx, e.o.OpTimeout)
			defer cancel()
			return e.append(opCtx, r, c.ID, msg)
		}
	case yjs.MessageAwareness:
		opCtx, cancel := context.WithTimeout(ctx, e.o.OpTimeout)
		defer cancel()
		return e.awareness(opCtx, r, c, m.Payload)
	case yjs.MessageQueryAwareness:
		if aw := r.awarenessFor(nil); aw != nil {
			c.Send(aw)
		}
	}
	return nil
}

// answerStep1 sends c the sync step 2 for its state vector sv. One step 1
// at a time: while the answer to the previous one is unwritten, the
// reader waits for it (a client that never reads, asking again and again
// for a whole document, would otherwise make the server hold a copy per
// request). Nothing the client sent is lost: its frames wait in the
// socket.
func (e *Engine) answerStep1(ctx context.Context, r *docRoom, c *Conn, sv yjs.StateVector) error {
	if err := c.WaitWritten(ctx, c.step2); err != nil {
		return nil // shutting down
	}
	opCtx, cancel := context.WithTimeout(ctx, e.o.OpTimeout)
	defer cancel()
	snap, err := r.snapshot(opCtx)
	if err != nil {
		return err
	}
	msg, err := snap.step2(sv)
	if err != nil {
		return err
	}
	c.step2, _ = c.SendTracked(msg)
	return nil
}
