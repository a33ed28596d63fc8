package main

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/google/uuid"

	"github.com/roomcast/roomcast/app/wsread"
	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

const (
	localClaims = "roomcast.claims"
	localRoom   = "roomcast.room"
	localSince  = "roomcast.since"
	localState  = "roomcast.state"
	localCount  = "roomcast.count"
	// localRole is the auth.Role the connection has in its room, decided
	// once by admitWS for both kinds of socket.
	localRole = "roomcast.role"
)

// refusal is an HTTP error answer. It is returned as an error, never
// written on the spot, so whatever refuses a request also ends its
// handler chain: a check that wrote its answer and returned nil would let
// the handler go on and write the data after it. The app's ErrorHandler
// writes it.
type refusal struct {
	status    int
	code, msg string
}

func (r *refusal) Error() string { return fmt.Sprintf("%d %s: %s", r.status, r.code, r.msg) }

// refuse returns the refusal with HTTP status, error code and message.
func refuse(status int, code, msg string) error {
	return &refusal{status: status, code: code, msg: msg}
}

// writeError writes the JSON body of every HTTP error.
func writeError(c *fiber.Ctx, status int, code, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

// bearer returns the token of the request: ?token= or Authorization: Bearer.
func bearer(c *fiber.Ctx) string {
	if t, ok := bearerHeader(c); ok {
		return t
	}
	return utils.CopyString(c.Query("token"))
}

// bearerHeader returns the credentials of an Authorization header with the
// Bearer scheme, which HTTP matches case-insensitively.
func bearerHeader(c *fiber.Ctx) (string, bool) {
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return utils.CopyString(strings.TrimSpace(h[7:])), true
}

// admitWS answers every refusal of an upgrade in plain HTTP, in the order
// the protocol promises, and passes the verified claims on.
func (s *Server) admitWS(c *fiber.Ctx) error {
	if !websocket.FastHTTPIsWebSocketUpgrade(c.Context()) {
		return refuse(fiber.StatusUpgradeRequired, "upgrade_required", "this endpoint speaks WebSocket only")
	}
	room := utils.CopyString(c.Params("room"))
	if !rooms.ValidName(room) {
		return refuse(fiber.StatusBadRequest, "bad_room", "room names are 1-128 of A-Z a-z 0-9 . _ : -")
	}
	from, err := parseSince(c.Query("since"))
	if err != nil {
		return refuse(fiber.StatusBadRequest, codeBadSince, err.Error())
	}
	stateCapable := false
	switch c.Query("state") {
	case "", "0":
	case "1":
		stateCapable = true
	default:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "state is 1 (this client answers state requests) or 0")
	}
	countOnly := false
	switch c.Query("presence") {
	case "", "full":
	case "count":
		countOnly = true
	default:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "presence is full (members and their events) or count (the member count only)")
	}
	claims, err := s.verifier.Verify(c.UserContext(), bearer(c))
	if err != nil {
		return s.refuseToken(c, err)
	}
	// The verifier allows 1 s of clock skew past exp, but the socket is
	// closed with 4001 at exp: admitting a token already past it would make
	// the user join and leave at once for everyone in the room.
	if !time.Now().Before(claims.ExpiresAt) {
		return s.refuseToken(c, auth.ErrExpired)
	}
	role, ok := roleIn(claims, room)
	if !ok {
		s.metrics.authFailures.WithLabelValues("room").Inc()
		return refuse(fiber.StatusForbidden, "room_not_allowed", "the token does not allow this room")
	}
	if role == auth.RoleRead {
		// The server never asks a connection for state it may not keep.
		stateCapable = false
	}
	if !s.originAllowed(c.Get(fiber.HeaderOrigin)) {
		s.metrics.authFailures.WithLabelValues("origin").Inc()
		return refuse(fiber.StatusForbidden, "origin_not_allowed", "this Origin may not connect")
	}
	if wait := s.backoff.refused(claims.Subject, room, time.Now()); wait > 0 {
		s.metrics.sizeBackoffs.Inc()
		secs := int((wait + time.Second - 1) / time.Second)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(secs))
		return refuse(fiber.StatusTooManyRequests, codeSizeBackoff,
			fmt.Sprintf("your last socket in this room was closed for sending too much (1009 or 1013); connect again in %d s", secs))
	}
	if s.draining.Load() {
		return refuse(fiber.StatusServiceUnavailable, "draining", "this instance is shutting down; connect again")
	}
	if err := s.broker.Ready(c.UserContext()); err != nil {
		return refuse(fiber.StatusServiceUnavailable, codeUnavailable, "this instance cannot reach its broker; connect again")
	}
	c.Locals(localClaims, claims)
	c.Locals(localRoom, room)
	c.Locals(localSince, from)
	c.Locals(localState, stateCapable)
	c.Locals(localCount, countOnly)
	c.Locals(localRole, role)
	return c.Next()
}

// roleIn is the role claims give their holder in room, and false when
// they do not let them in. Both kinds of socket and the HTTP routes decide
// by it.
func roleIn(claims *auth.Claims, room string) (auth.Role, bool) {
	return claims.Role(room)
}

func (s *Server) refuseToken(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, auth.ErrMissing):
		s.metrics.authFailures.WithLabelValues("missing").Inc()
		return refuse(fiber.StatusUnauthorized, "token_missing", "a token is required (?token= or Authorization: Bearer)")
	case errors.Is(err, auth.ErrExpired):
		s.metrics.authFailures.WithLabelValues("expired").Inc()
		return refuse(fiber.StatusUnauthorized, "token_expired", "the token has expired")
	default:
		s.metrics.authFailures.WithLabelValues("invalid").Inc()
		return refuse(fiber.StatusUnauthorized, "token_invalid", err.Error())
	}
}

func (s *Server) originAllowed(origin string) bool {
	if origin == "" || s.cfg.AllowedOrigins == nil {
		return true
	}
	origin = strings.ToLower(origin)
	for _, o := range s.cfg.AllowedOrigins {
		if subtle.ConstantTimeCompare([]byte(o), []byte(origin)) == 1 {
			return true
		}
	}
	return false
}

// enterLive counts a WebSocket handler in, or closes its socket with 1001
// when the server is already shutting down.
func (s *Server) enterLive(nc net.Conn) bool {
	if s.live.enter() {
		return true
	}
	payload := binary.BigEndian.AppendUint16(nil, rooms.CloseGoingAway)
	payload = append(payload, "server shutting down"...)
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write(appendFrame(nil, opClose, payload))
	_ = nc.Close()
	return false
}

// serveWS runs one connection: join, welcome, then the reads (wsSock),
// then leave.
func (s *Server) serveWS(nc net.Conn, ahead []byte, a admission) {
	if !s.enterLive(nc) {
		return
	}
	claims := a.claims
	start := time.Now()
	id := uuid.NewString()

	t := newWSTransport(nc, connTimings, &s.metrics.framesWritten)
	conn := rooms.NewConn(id, a.room, claims.Subject, t, rooms.ConnOptions{
		QueueSize:  s.cfg.SendQueue,
		QueueBytes: s.cfg.SendQueueBytes,
		Timings:    connTimings,
		OnSlow:     s.slowDropped,
	})
	conn.StateCapable = a.stateCapable
	conn.PresenceCount = a.countOnly
	conn.ReadOnly = a.role == auth.RoleRead
	conn.MarkRead(start.UnixNano())
	s.metrics.connections.Inc()
	s.metrics.connects.Inc()

	// A state frame may be as large as its data may be, plus its fields.
	k := s.newSock(nc, ahead, t, conn, max(s.cfg.MaxMessageBytes, s.cfg.MaxStateBytes+4096))
	r := &jsonReads{s: s, conn: conn, claims: claims, lim: newRateLimit(s.cfg.Rate, time.Now())}
	k.handle = r.handle
	s.runConn(k, claims, start, "", func() error { return s.join(conn, claims, a.since) }, nil, func() {
		s.metrics.connections.Dec()
	})
}

// runConn is the life both kinds of socket share once upgraded: join (a
// refusal closes with 1001 or 1011), read until the socket ends with the
// token's expiry armed, then leave the room and presence, wait for the
// writer, count and log the close. kind prefixes the log lines ("yjs");
// beforeLeave, if set, runs first on the way out, and after at the very
// end, also when the join failed. The
// join runs on the caller's goroutine, which then returns: the reads run
// on goroutines the poller starts while the socket has something to read.
func (s *Server) runConn(k *wsSock, claims *auth.Claims, start time.Time, kind string,
	join func() error, beforeLeave func(context.Context), after func()) {
	conn, t := k.conn, k.t
	prefix := ""
	if kind != "" {
		prefix = kind + " "
	}
	done := func() {
		after()
		s.live.leave()
	}
	if err := join(); err != nil {
		code, reason := 1011, "could not join the room; connect again"
		if errors.Is(err, errDraining) {
			code, reason = rooms.CloseGoingAway, "server shutting down"
		} else {
			s.logConn(slog.LevelWarn, conn, prefix+"join failed", "err", err)
		}
		conn.Close(code, reason)
		k.end = func() {
			s.finish(conn, t)
			done()
		}
		k.finish()
		return
	}
	s.logConn(slog.LevelInfo, conn, prefix+"connected")

	expiry := time.AfterFunc(time.Until(claims.ExpiresAt), func() {
		conn.Close(rooms.CloseTokenExpired, "token expired")
	})
	k.end = func() {
		expiry.Stop()
		ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
		if beforeLeave != nil {
			beforeLeave(ctx)
		}
		s.hub.Remove(ctx, conn)
		if err := s.keeper.Leave(ctx, conn.Room, conn.ID); err != nil {
			s.logConn(slog.LevelWarn, conn, "leave failed; the sweeper will expire the connection", "err", err)
		}
		cancel()
		s.finish(conn, t)
		_, code := conn.Closing()
		if code != 0 {
			s.metrics.closes.WithLabelValues(closeLabel(code)).Inc()
		}
		s.logConn(slog.LevelInfo, conn, prefix+"disconnected", "duration", time.Since(start).Round(time.Millisecond).String(), "code", code)
		done()
	}
	k.start()
}

// logConn logs a line about conn with its room, user and id. It builds the
// attributes per line rather than keeping a child logger per connection,
// which would hold its pre-formatted attributes for the socket's lifetime.
func (s *Server) logConn(level slog.Level, conn *rooms.Conn, msg string, args ...any) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	s.log.Log(context.Background(), level, msg, append([]any{"room", conn.Room, "user", conn.User, "conn", conn.ID}, args...)...)
}

// enterRoom puts conn in its room's Hub (subscribing first) and then in
// presence, undoing what was done when a step fails; both kinds of socket
// join this way.
func (s *Server) enterRoom(ctx context.Context, conn *rooms.Conn, claims *auth.Claims) (presence.Member, error) {
	if err := s.hub.Add(ctx, conn); err != nil {
		return presence.Member{}, err
	}
	if s.draining.Load() {
		// Shutdown may have listed the connections before this one was
		// added; leave now rather than be missed.
		s.undoJoin(conn, false)
		return presence.Member{}, errDraining
	}
	role, _ := roleIn(claims, conn.Room)
	me, err := s.keeper.Join(ctx, presence.Session{Room: conn.Room, Conn: conn.ID, User: claims.Subject, Name: claims.Name, Role: string(role), Meta: claims.Meta})
	if err != nil {
		// The store may have added the connection before the call failed
		// (a timeout after the script ran): remove it too.
		s.undoJoin(conn, true)
		return presence.Member{}, fmt.Errorf("add presence: %w", err)
	}
	return me, nil
}

// join registers conn in its room and sends the welcome: subscribe first,
// then add presence, then read the snapshot, so no event after the snapshot
// is missed (an event already in it is applied again harmlessly).
func (s *Server) join(conn *rooms.Conn, claims *auth.Claims, from since) error {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	me, err := s.enterRoom(ctx, conn, claims)
	if err != nil {
		return err
	}
	// Events held while the snapshot is read may overflow the queue in a
	// busy room; then the snapshot is read again, a few times at most.
	for attempt := 0; ; attempt++ {
		// me is what this join made of the user, exactly; the list may
		// show an older count for it until the join's own frame, held
		// behind the welcome, arrives.
		w := welcomeFrame{Type: "welcome", Room: conn.Room, Conn: conn.ID, Me: me, Instance: s.cfg.InstanceID}
		if conn.PresenceCount {
			n, err := s.memberCount(ctx, conn.Room, me.ID)
			if err != nil {
				s.undoJoin(conn, true)
				return fmt.Errorf("count members: %w", err)
			}
			w.Count = &n
		} else {
			members, err := s.snapshot(ctx, conn.Room, me.ID)
			if err != nil {
				s.undoJoin(conn, true)
				return fmt.Errorf("read members: %w", err)
			}
			w.Members = members
		}
		frames, pos, err := s.welcomeFrames(ctx, conn, w, from)
		if err != nil {
			s.undoJoin(conn, true)
			return fmt.Errorf("read the room's stream: %w", err)
		}
		if conn.StartAt(frames, pos) {
			return nil
		}
		if attempt == 3 {
			s.undoJoin(conn, true)
			return errors.New("room too busy to take a consistent snapshot")
		}
	}
}

// snapshot returns the room's members for a welcome, from this instance's
// replica once it holds user (whose join was just published), else from
// the store.
func (s *Server) snapshot(ctx context.Context, room, user string) (json.RawMessage, error) {
	members, _, err := s.replica.Snapshot(ctx, room, user, replicaWait)
	if err == nil {
		return members, nil
	}
	if !errors.Is(err, presence.ErrNotReplicated) {
		return nil, err
	}
	ms, err := s.store.Members(ctx, room)
	if err != nil {
		return nil, err
	}
	return encode(nonNil(ms)), nil
}

// memberCount is the room's member count for a count-mode welcome, from
// this instance's replica once it holds user (as snapshot), else from the
// store. The replica does not encode the list for it.
func (s *Server) memberCount(ctx context.Context, room, user string) (int, error) {
	n, err := s.replica.SnapshotCount(ctx, room, user, replicaWait)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, presence.ErrNotReplicated) {
		return 0, err
	}
	ms, err := s.store.Members(ctx, room)
	return len(ms), err
}

// undoJoin takes a connection whose join failed out of its room, and out of
// presence when presence may have it. It uses a context of its own: the
// join's may be what ran out, and an unsubscribe cut short by a dead
// context would make the pub/sub client reconnect under every room.
func (s *Server) undoJoin(conn *rooms.Conn, presenceToo bool) {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	s.hub.Remove(ctx, conn)
	if presenceToo {
		if err := s.keeper.Leave(ctx, conn.Room, conn.ID); err != nil {
			s.logConn(slog.LevelWarn, conn, "undo join: leave presence", "err", err)
		}
		// Not tracked when Join itself failed; the store may still hold it.
		if err := s.store.Leave(ctx, conn.Room, conn.ID, conn.User); err != nil {
			s.logConn(slog.LevelWarn, conn, "undo join: remove presence", "err", err)
		}
	}
}

var errDraining = errors.New("instance is shutting down")

// closeLabel is the metric label of a close code. A client's close is
// echoed with the client's code, so codes other than the server's own are
// one label: a client must not be able to mint series.
func closeLabel(code int) string {
	switch code {
	case rooms.CloseNormal, rooms.CloseGoingAway, wsread.CloseProtocolError, rooms.CloseInvalidUTF8, rooms.CloseTooBig, 1011, closeTryAgain,
		rooms.CloseTokenExpired, rooms.CloseTooSlow, rooms.CloseResync, rooms.CloseRateLimited:
		return strconv.Itoa(code)
	}
	return "other"
}

// finish waits, for the connection's close Wait at most, for the close
// frame to go out, then ends the socket and waits for the writer to end.
func (s *Server) finish(conn *rooms.Conn, t *wsTransport) {
	if closing, _ := conn.Closing(); closing {
		select {
		case <-conn.Done():
		case <-time.After(conn.Timings().Wait):
		}
	}
	conn.Shutdown()
	t.Abort()
	conn.Wait()
}

// jsonReads handles the data messages of a JSON socket (see wsSock for
// the reading itself).
type jsonReads struct {
	s      *Server
	conn   *rooms.Conn
	claims *auth.Claims
	lim    *rateLimit
}

// handle handles one data message; it never ends the socket itself.
func (r *jsonReads) handle(m wsread.Message, now time.Time) bool {
	s, conn := r.s, r.conn
	maxMsg := s.cfg.MaxMessageBytes
	if m.OverBudget {
		s.closeOverBudget(conn)
		return true
	}
	data := m.Data
	if m.TooBig {
		// Not read whole: a state too large is told so, anything
		// else is closed. Either way nothing of it is kept.
		if m.Kind == wsread.Text && frameType(data) == "state" {
			s.sendError(conn, "", codeTooLarge, fmt.Sprintf("state is over %d bytes; nothing kept", s.cfg.MaxStateBytes))
			return true
		}
		conn.Close(rooms.CloseTooBig, fmt.Sprintf("frame over %d bytes", maxMsg))
		return true
	}
	// Only a state may pass MAX_MESSAGE_BYTES. The frame's type comes
	// from the one parse that the frame is then handled by.
	var f clientFrame
	var ferr error
	decoded := false
	if len(data) > maxMsg {
		if m.Kind == wsread.Text {
			f, ferr = decodeClientFrame(data)
			decoded = true
		}
		if !decoded || ferr != nil || f.Type != "state" {
			conn.Close(rooms.CloseTooBig, fmt.Sprintf("frame over %d bytes", maxMsg))
			return true
		}
	}
	if ok, cut := r.lim.allow(now); !ok {
		s.metrics.rateLimited.Inc()
		if cut {
			conn.Close(rooms.CloseRateLimited, "rate limit exceeded")
			return true
		}
		s.sendError(conn, "", codeRateLimited, fmt.Sprintf("over %d messages/s: frame dropped", s.cfg.Rate))
		return true
	}
	if m.Kind != wsread.Text {
		s.sendError(conn, "", codeBadRequest, "binary frames are not accepted; send JSON text frames")
		return true
	}
	// The reader closed the socket with 1007 for invalid UTF-8, so
	// nothing relayed or stored is: a browser drops its socket on
	// such a frame.
	if !decoded {
		f, ferr = decodeClientFrame(data)
	}
	if ferr != nil {
		s.sendError(conn, "", codeBadRequest, "frame is not a JSON object of the protocol: "+ferr.Error())
		return true
	}
	s.handleFrame(conn, r.claims, &f)
	return true
}

func (s *Server) sendError(conn *rooms.Conn, ref, code, msg string) {
	conn.Send(encode(errorFrame{Type: "error", Ref: ref, Code: code, Message: msg}))
}

func (s *Server) handleFrame(conn *rooms.Conn, claims *auth.Claims, f *clientFrame) {
	ref := ""
	if f.Ref != nil {
		ref = *f.Ref
	}
	switch f.Type {
	case "publish":
		if conn.ReadOnly && !f.Ephemeral {
			s.sendError(conn, ref, codeForbidden, "this connection is read-only: only ephemeral publishes are allowed; nothing sent")
			return
		}
		s.handlePublish(conn, sender{User: claims.Subject, Conn: conn.ID}, f, ref)
	case "state":
		if conn.ReadOnly {
			s.sendError(conn, ref, codeForbidden, "this connection is read-only: it may not keep a state; nothing kept")
			return
		}
		s.handleState(conn, f, ref)
	case "presence":
		if len(f.Meta) == 0 || string(f.Meta) == "null" {
			s.sendError(conn, ref, codeBadRequest, "presence needs a meta object")
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
		_, err := s.keeper.SetMeta(ctx, conn.Room, conn.ID, f.Meta)
		cancel()
		switch {
		case errors.Is(err, presence.ErrTooLarge):
			s.sendError(conn, ref, codeTooLarge, "meta is over 1 KiB; nothing changed")
			return
		case errors.Is(err, presence.ErrNotObject):
			s.sendError(conn, ref, codeBadRequest, "meta must be a JSON object")
			return
		case err != nil:
			s.log.Warn("set presence meta", "room", conn.Room, "conn", conn.ID, "err", err)
			s.sendError(conn, ref, codeUnavailable, "presence not updated: try again")
			return
		}
		if ref != "" {
			conn.Send(encode(ackFrame{Type: "ack", Ref: ref}))
		}
	case "ping":
		// Presence frames wait a moment to be coalesced; the pong comes
		// after everything the room sent before the ping.
		s.hub.Flush(conn.Room)
		conn.Send(encode(pongFrame{Type: "pong", Ref: ref}))
	case "":
		s.sendError(conn, ref, codeBadRequest, "frame needs a type")
	default:
		s.sendError(conn, ref, codeBadRequest, fmt.Sprintf("unknown frame type %q", f.Type))
	}
}
