package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/google/uuid"

	"github.com/roomcast/roomcast/app/wsread"
	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/rooms/ydoc"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// Close codes of a Yjs socket besides the common ones.
const (
	closeUnsupported    = 1003 // a text frame: y-websocket speaks binary
	closeInvalidMessage = 1007 // not one valid y-websocket message
)

// serveYjs runs one y-websocket connection: join presence and the room's
// document, sync, relay, leave. The document side (rooms/ydoc) sends its
// sync step 1 and the awareness states on joining and answers each
// message; this is the socket's edge: the upgrade, presence, the reads
// and their limits.
func (s *Server) serveYjs(nc net.Conn, ahead []byte, a admission) {
	if !s.enterLive(nc) {
		return
	}
	claims := a.claims
	start := time.Now()
	id := uuid.NewString()

	t := newWSTransport(nc, connTimings, &s.metrics.framesWritten)
	t.op = opBinary
	conn := rooms.NewConn(id, a.room, claims.Subject, t, rooms.ConnOptions{
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

	// A reader's sync step 2 and updates are dropped (ydoc.Conn.ReadOnly);
	// its step 1 is answered and its awareness relayed.
	readOnly := a.role == auth.RoleRead
	conn.ReadOnly = readOnly
	k := s.newSock(nc, ahead, t, conn, s.cfg.MaxDocBytes)
	k.rd.DropTooBig()
	r := &yjsReads{s: s, conn: conn, lim: newRateLimit(s.cfg.Rate, time.Now())}
	k.handle = r.handle
	s.runConn(k, claims, start, "yjs",
		func() (err error) {
			r.yc, err = s.joinYjs(conn, claims, readOnly)
			return err
		},
		func(ctx context.Context) { s.docs.Leave(ctx, r.yc) },
		func() {
			s.metrics.connections.Dec()
			s.metrics.yjsConnections.Dec()
		})
}

// joinYjs subscribes the room, adds presence, then joins the document:
// every update stored after it is read arrives through the subscription.
// A read-only connection's edits are dropped (ydoc.Conn.ReadOnly).
func (s *Server) joinYjs(conn *rooms.Conn, claims *auth.Claims, readOnly bool) (*ydoc.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	if _, err := s.enterRoom(ctx, conn, claims); err != nil {
		return nil, err
	}
	yc, err := s.docs.Join(ctx, conn, readOnly)
	if err != nil {
		s.undoJoin(conn, true)
		return nil, err
	}
	return yc, nil
}

// yjsReads handles the messages of a y-websocket socket (see wsSock for
// the reading itself). A frame that is not one valid y-websocket message
// closes the socket before anything of it is relayed or stored. A message
// over MAX_DOC_BYTES, or an update the document cannot take within it,
// closes the socket with 1009; a frame the in-flight budget cannot take
// with 1013; both make the user and room back off (see sizeBackoff).
type yjsReads struct {
	s    *Server
	conn *rooms.Conn
	yc   *ydoc.Conn
	lim  *rateLimit
}

// handle handles one data message; false when the socket ended while a
// flood was being slowed down.
func (r *yjsReads) handle(m wsread.Message, now time.Time) bool {
	s, conn, yc := r.s, r.conn, r.yc
	maxRead := s.cfg.MaxDocBytes
	if m.OverBudget {
		s.metrics.yjsRejected.WithLabelValues("over_budget").Inc()
		s.closeOverBudget(conn)
		return true
	}
	if m.TooBig {
		s.metrics.yjsRejected.WithLabelValues("too_big").Inc()
		s.closeForSize(conn, rooms.CloseTooBig, fmt.Sprintf("message over %s (ROOMCAST_MAX_DOC_BYTES); not stored", byteSize(maxRead)))
		return true
	}
	if m.Kind != wsread.Binary {
		s.metrics.yjsRejected.WithLabelValues("text").Inc()
		conn.Close(closeUnsupported, "y-websocket messages are binary frames")
		return true
	}
	// Slow a flood down instead of dropping: an edit is never lost.
	for d := r.lim.delay(now); d > 0; d = r.lim.delay(now) {
		s.metrics.rateLimited.Inc()
		select {
		case <-time.After(d):
		case <-conn.Done():
			return false
		}
		now = time.Now()
	}
	msg, err := yjs.ParseMessage(m.Data)
	if err != nil {
		s.metrics.yjsRejected.WithLabelValues("invalid").Inc()
		s.logConn(slog.LevelInfo, conn, "invalid y-websocket message", "err", err)
		conn.Close(closeInvalidMessage, closeReason(err))
		return true
	}
	err = s.docs.Handle(s.ctx, yc, msg, m.Data)
	if errors.Is(err, rooms.ErrDocTooLarge) {
		s.metrics.yjsRejected.WithLabelValues("doc_too_large").Inc()
		s.closeForSize(conn, rooms.CloseTooBig, fmt.Sprintf("document would pass %s (ROOMCAST_MAX_DOC_BYTES); not stored", byteSize(maxRead)))
		return true
	}
	if err != nil {
		s.logConn(slog.LevelWarn, conn, "yjs message failed", "err", err)
		conn.Close(1011, "could not store the update; reconnect")
	}
	return true
}

// closeReason fits err in a close frame.
func closeReason(err error) string {
	r := err.Error()
	if len(r) > 120 {
		r = r[:120]
	}
	return r
}
