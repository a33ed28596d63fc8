package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/google/uuid"

	"github.com/roomcast/roomcast/app/wsread"
	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Close codes of a Yjs socket besides the common ones.
const (
	closeUnsupported    = 1003 // a text frame: y-websocket speaks binary
	closeInvalidMessage = 1007 // not one valid y-websocket message
)

// keepAliveFrame is an awareness message with no entries: y-websocket
// closes a socket that received nothing for 30 s, and this changes nothing
// on the client.
var keepAliveFrame = []byte{yjs.MessageAwareness, 1, 0}

// serveYjs runs one y-websocket connection: join presence and the room's
// document, sync, relay, leave. The protocol: the server sends its sync
// step 1 (its state vector) first, so the client answers with what the
// server lacks, and the current awareness states; it answers the client's
// step 1 with a step 2 holding exactly what the client lacks.
func (s *Server) serveYjs(fc *fws.Conn) {
	if !s.enterLive(fc) {
		return
	}
	defer s.live.leave()
	claims := fc.Locals(localClaims).(*auth.Claims)
	room := fc.Locals(localRoom).(string)
	ws := fc.Conn
	start := time.Now()
	id := uuid.NewString()

	t := newWSTransport(socketOf(ws), connTimings, func(n int) { s.metrics.framesOut.Add(float64(n)) })
	t.op = opBinary
	conn := rooms.NewConn(id, room, claims.Subject, t, rooms.ConnOptions{
		QueueSize:  max(s.cfg.SendQueue, 1024), // a burst of edits must not cut a document's socket
		QueueBytes: s.cfg.SendQueueBytes,
		Timings:    connTimings,
		OnSlow:     s.slowDropped,
	})
	conn.Doc = true
	conn.MarkRead(start.UnixNano())
	s.metrics.connections.Inc()
	s.metrics.connects.Inc()
	s.metrics.yjsConnections.Inc()
	defer s.metrics.connections.Dec()
	defer s.metrics.yjsConnections.Dec()

	yc := &yconn{Conn: conn}
	s.runConn(conn, t, claims, start, "yjs", func() error { return s.joinYjs(yc, claims) }, func() { s.readYjs(ws, yc) },
		func(ctx context.Context) { s.docs.detach(ctx, yc) })
}

// joinYjs subscribes the room, adds presence, then reads the document:
// every update stored after the read arrives through the subscription.
func (s *Server) joinYjs(yc *yconn, claims *auth.Claims) error {
	conn := yc.Conn
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	if _, err := s.enterRoom(ctx, conn, claims); err != nil {
		return err
	}
	dr := s.docs.attach(ctx, yc)
	// Frames held while the document is read may overflow the queue of a
	// busy document; then it is read again, a few times at most.
	for attempt := 0; ; attempt++ {
		snap, err := dr.snapshot(ctx)
		if err != nil {
			s.docs.detach(ctx, yc)
			s.undoJoin(conn, true)
			return fmt.Errorf("read the document: %w", err)
		}
		if conn.Start(yjs.AppendSyncMessage(nil, yjs.SyncStep1, snap.sv.Encode())) {
			break
		}
		if closing, _ := conn.Closing(); closing || attempt == 3 {
			s.docs.detach(ctx, yc)
			s.undoJoin(conn, true)
			return errors.New("document too busy to join, or the connection closed while joining")
		}
	}
	if aw := dr.awarenessFor(yc); aw != nil {
		conn.Send(aw)
	}
	return nil
}

// readYjs reads client messages until the socket ends. A frame that is not
// one valid y-websocket message closes the socket before anything of it is
// relayed or stored. A message over MAX_DOC_BYTES, or an update the
// document cannot take within it, closes the socket with 1009; a frame
// the in-flight budget cannot take with 1013; both make the user and room
// back off (see sizeBackoff).
func (s *Server) readYjs(ws *websocket.Conn, yc *yconn) {
	conn := yc.Conn
	lim := newRateLimit(s.cfg.Rate, time.Now())
	maxRead := s.cfg.MaxDocBytes
	rd := wsread.NewReader(ws.NetConn(), readBufferSize, maxRead)
	rd.UseBudget(s.inflight)
	rd.DropTooBig()
	defer rd.Release()
	for {
		m, now, ok := s.nextData(rd, conn)
		if !ok {
			return
		}
		if m.OverBudget {
			s.metrics.yjsRejected.WithLabelValues("over_budget").Inc()
			s.closeOverBudget(conn)
			continue
		}
		if m.TooBig {
			s.metrics.yjsRejected.WithLabelValues("too_big").Inc()
			s.closeForSize(conn, rooms.CloseTooBig, fmt.Sprintf("message over %s (ROOMCAST_MAX_DOC_BYTES); not stored", byteSize(maxRead)))
			continue
		}
		if m.Kind != wsread.Binary {
			s.metrics.yjsRejected.WithLabelValues("text").Inc()
			conn.Close(closeUnsupported, "y-websocket messages are binary frames")
			continue
		}
		// Slow a flood down instead of dropping: an edit is never lost.
		for d := lim.delay(now); d > 0; d = lim.delay(now) {
			s.metrics.rateLimited.Inc()
			select {
			case <-time.After(d):
			case <-conn.Done():
				return
			}
			now = time.Now()
		}
		msg, err := yjs.ParseMessage(m.Data)
		if err != nil {
			s.metrics.yjsRejected.WithLabelValues("invalid").Inc()
			s.logConn(slog.LevelInfo, conn, "invalid y-websocket message", "err", err)
			conn.Close(closeInvalidMessage, closeReason(err))
			continue
		}
		err = s.handleYjs(yc, msg, m.Data)
		if errors.Is(err, rooms.ErrDocTooLarge) {
			s.metrics.yjsRejected.WithLabelValues("doc_too_large").Inc()
			s.closeForSize(conn, rooms.CloseTooBig, fmt.Sprintf("document would pass %s (ROOMCAST_MAX_DOC_BYTES); not stored", byteSize(maxRead)))
			continue
		}
		if err != nil {
			s.logConn(slog.LevelWarn, conn, "yjs message failed", "err", err)
			conn.Close(1011, "could not store the update; reconnect")
			continue
		}
	}
}

// closeReason fits err in a close frame.
func closeReason(err error) string {
	r := err.Error()
	if len(r) > 120 {
		r = r[:120]
	}
	return r
}

func (s *Server) handleYjs(yc *yconn, m yjs.Message, frame []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	dr := s.docs.room(yc.Room)
	if dr == nil {
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
			return s.answerStep1(dr, yc, sv)
		case yjs.SyncStep2, yjs.SyncUpdate:
			if bytes.Equal(m.Payload, yjs.EmptyUpdate) {
				return nil
			}
			msg := bytes.Clone(frame) // the read buffer is reused; a timed-out append may still run
			if m.Sync == yjs.SyncStep2 {
				// Stored and relayed as an update: a step 2 would mark
				// other providers synced.
				msg = yjs.AppendSyncMessage(nil, yjs.SyncUpdate, m.Payload)
			}
			return s.docs.append(ctx, dr, yc.ID, msg)
		}
	case yjs.MessageAwareness:
		return s.docs.awareness(ctx, dr, yc, m.Payload)
	case yjs.MessageQueryAwareness:
		if aw := dr.awarenessFor(nil); aw != nil {
			yc.Send(aw)
		}
		return nil
	}
	return nil
}

// answerStep1 sends yc the sync step 2 for its state vector sv. One step 1
// at a time: while the answer to the previous one is unwritten, the
// reader waits for it (a client that never reads, asking again and again
// for a whole document, would otherwise make the server hold a copy per
// request). Nothing the client sent is lost: its frames wait in the
// socket, as with the rate limit.
func (s *Server) answerStep1(dr *docRoom, yc *yconn, sv yjs.StateVector) error {
	if err := yc.WaitWritten(s.ctx, yc.step2); err != nil {
		return nil // shutting down
	}
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	snap, err := dr.snapshot(ctx)
	if err != nil {
		return err
	}
	msg, err := snap.step2(sv)
	if err != nil {
		return err
	}
	yc.step2, _ = yc.SendTracked(msg)
	return nil
}

// updateOf returns the update inside a stored sync Update message.
func updateOf(msg []byte) ([]byte, error) {
	if len(msg) < 3 || msg[0] != yjs.MessageSync || msg[1] != yjs.SyncUpdate {
		return nil, errors.New("stored document entry is not a sync update message")
	}
	n, k := binary.Uvarint(msg[2:])
	if k <= 0 || uint64(len(msg)-2-k) != n {
		return nil, errors.New("stored document entry has a bad length")
	}
	return msg[2+k:], nil
}
