package main

import (
	"context"
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

	// A reader's sync step 2 and updates are dropped (ydoc.Conn.ReadOnly);
	// its step 1 is answered and its awareness relayed.
	readOnly := fc.Locals(localRole).(auth.Role) == auth.RoleRead
	conn.ReadOnly = readOnly
	var yc *ydoc.Conn
	s.runConn(conn, t, claims, start, "yjs",
		func() (err error) {
			yc, err = s.joinYjs(conn, claims, readOnly)
			return err
		},
		func() { s.readYjs(ws, yc) },
		func(ctx context.Context) { s.docs.Leave(ctx, yc) })
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

// readYjs reads client messages until the socket ends. A frame that is not
// one valid y-websocket message closes the socket before anything of it is
// relayed or stored. A message over MAX_DOC_BYTES, or an update the
// document cannot take within it, closes the socket with 1009; a frame
// the in-flight budget cannot take with 1013; both make the user and room
// back off (see sizeBackoff).
func (s *Server) readYjs(ws *websocket.Conn, yc *ydoc.Conn) {
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
		err = s.docs.Handle(s.ctx, yc, msg, m.Data)
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
