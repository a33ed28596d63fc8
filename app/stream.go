package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/roomcast/roomcast/rooms"
	roomstore "github.com/roomcast/roomcast/rooms/store"
)

// since is where a joining client wants to start in the room's stream.
type since struct {
	mode sinceMode
	pos  rooms.Position // sinceResume only
}

type sinceMode int

const (
	sinceLive   sinceMode = iota // no since: live only
	sinceStart                   // since=start: state and everything after it
	sinceResume                  // since=<epoch>:<seq>
)

// parseSince reads the since query parameter.
func parseSince(v string) (since, error) {
	switch {
	case v == "":
		return since{}, nil
	case v == "start":
		return since{mode: sinceStart}, nil
	}
	i := strings.LastIndexByte(v, ':')
	if i <= 0 || i > 64 {
		return since{}, errors.New(`since is "start" or "<epoch>:<seq>"`)
	}
	epoch := v[:i]
	for _, c := range []byte(epoch) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return since{}, errors.New("since: the epoch is letters, digits, - and _")
		}
	}
	seq, err := strconv.ParseUint(v[i+1:], 10, 64)
	if err != nil {
		return since{}, errors.New("since: the seq after the colon is a non-negative integer")
	}
	return since{mode: sinceResume, pos: rooms.Position{Epoch: epoch, Seq: seq}}, nil
}

func (s *Server) storing() bool { return s.cfg.HistorySize > 0 }

// welcomeFrames builds the welcome and the stored messages that follow it
// for a client starting at from, and the position they bring it to.
func (s *Server) welcomeFrames(ctx context.Context, conn *rooms.Conn, w welcomeFrame, from since) ([][]byte, rooms.Position, error) {
	// Every stored message after the position the hub gave the connection
	// reaches it, held behind the welcome: a live welcome is at that
	// position, not at the later one its held frames moved it to.
	pos := conn.StartPosition()
	if !s.storing() {
		if from.mode == sinceResume {
			w.Recovered = ptr(false)
		}
		return [][]byte{encodeWelcome(w)}, pos, nil
	}
	switch from.mode {
	case sinceLive:
		w.Epoch, w.Seq = pos.Epoch, ptr(pos.Seq)
		return [][]byte{encodeWelcome(w)}, pos, nil
	case sinceResume:
		h, err := s.broker.History(ctx, conn.Room, from.pos.Seq, s.cfg.HistorySize)
		if err != nil {
			return nil, pos, err
		}
		if h.Position.Epoch == from.pos.Epoch && h.Complete {
			frames, end := replay(h, from.pos.Seq)
			w.Epoch, w.Seq, w.Recovered = end.Epoch, ptr(end.Seq), ptr(true)
			frames[0] = encodeWelcome(w)
			return frames, end, nil
		}
		w.Recovered = ptr(false)
	}
	// since=start, or a position that cannot be resumed: the state, then
	// every stored message after it.
	for attempt := 0; ; attempt++ {
		p, st, err := s.broker.State(ctx, conn.Room)
		if err != nil {
			return nil, pos, err
		}
		var after uint64
		if st != nil {
			after = st.Seq
		}
		h, err := s.broker.History(ctx, conn.Room, after, s.cfg.HistorySize)
		if err != nil {
			return nil, pos, err
		}
		if h.Position.Epoch != p.Epoch && attempt < 2 {
			continue // reset in between
		}
		if !h.Complete {
			// The history lost messages the state does not cover: no
			// client answered the state requests in time.
			s.log.Warn("join: history does not reach back to the room's state", "room", conn.Room, "state_seq", after)
			s.metrics.streamGaps.WithLabelValues("lost").Inc()
		}
		frames, end := replay(h, after)
		w.Epoch, w.Seq, w.State = end.Epoch, ptr(max(end.Seq, h.Position.Seq)), st
		frames[0] = encodeWelcome(w)
		return frames, end, nil
	}
}

// replay returns a slot for the welcome followed by the stored messages of
// h, and the position they bring a client that held everything up to
// after.
func replay(h rooms.History, after uint64) ([][]byte, rooms.Position) {
	end := rooms.Position{Epoch: h.Position.Epoch, Seq: after}
	frames := make([][]byte, 1, 1+len(h.Messages))
	for _, m := range h.Messages {
		frames = append(frames, m.Frame)
		end.Seq = m.Seq
	}
	return frames, end
}

func ptr[T any](v T) *T { return &v }

// handlePublish stores (unless ephemeral) and publishes a client's message.
func (s *Server) handlePublish(conn *rooms.Conn, from sender, f *clientFrame, ref string) {
	if len(f.Data) == 0 {
		s.sendError(conn, ref, codeBadRequest, "publish needs a data field")
		return
	}
	if len(f.Data) > s.cfg.MaxMessageBytes {
		// The frame's size rule keeps this from happening; what is
		// relayed and stored is bounded here too.
		s.sendError(conn, ref, codeTooLarge, fmt.Sprintf("data is over %d bytes; nothing sent", s.cfg.MaxMessageBytes))
		return
	}
	key := ""
	if f.Key != nil {
		key = *f.Key
		if key == "" || len([]rune(key)) > maxKeyChars {
			s.sendError(conn, ref, codeBadRequest, fmt.Sprintf("key is 1 to %d characters", maxKeyChars))
			return
		}
	}
	exclude := conn.ID
	if f.Echo {
		exclude = ""
	}
	p, err := s.publish(conn.Room, from, f.Data, exclude, !f.Ephemeral, key)
	if err != nil {
		s.sendError(conn, ref, codeUnavailable, "message not sent: the broker is unavailable; send it again (with its key)")
		return
	}
	if ref != "" {
		conn.Send(encode(ackFrame{Type: "ack", Ref: ref, ID: p.ID, Seq: p.Position.Seq}))
	}
}

// publish encodes a message frame once and hands it to the room: stored
// (it gets the room's next seq) unless ephemeral or storing is off.
func (s *Server) publish(room string, from sender, data json.RawMessage, exclude string, stored bool, key string) (rooms.Published, error) {
	id := uuid.NewString()
	frame := encode(messageFrame{Type: "message", Room: room, ID: id, From: from, TS: time.Now().UnixMilli(), Data: data})
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	p, err := s.hub.PublishMessage(ctx, room, rooms.Message{ID: id, Exclude: exclude, Frame: frame, Stored: stored && s.storing(), Key: key})
	if err != nil {
		return p, err
	}
	if !p.Duplicate {
		s.metrics.published.Inc()
	}
	return p, nil
}

// handleState keeps a client's state of the room.
func (s *Server) handleState(conn *rooms.Conn, f *clientFrame, ref string) {
	switch {
	case f.Seq == nil:
		s.sendError(conn, ref, codeBadRequest, "state needs a seq (the last stored message it includes)")
		return
	case len(f.Data) == 0:
		s.sendError(conn, ref, codeBadRequest, "state needs a data field")
		return
	case len(f.Data) > s.cfg.MaxStateBytes:
		s.sendError(conn, ref, codeTooLarge, fmt.Sprintf("state is over %d bytes; nothing kept", s.cfg.MaxStateBytes))
		return
	case !s.storing():
		s.sendError(conn, ref, codeBadRequest, "this server stores nothing (ROOMCAST_HISTORY_SIZE=0)")
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	// The state describes the stream this connection was given: of its
	// epoch, not of one that replaced it meanwhile.
	at := rooms.Position{Epoch: conn.Position().Epoch, Seq: *f.Seq}
	err := s.broker.SaveState(ctx, conn.Room, at, bytes.Clone(f.Data))
	cancel()
	switch {
	case errors.Is(err, rooms.ErrStaleState):
		s.sendError(conn, ref, codeStaleState, "the room holds a later state, seq is ahead of the room, or the room's history was reset")
		return
	case err != nil:
		s.logConn(slog.LevelWarn, conn, "save state", "err", err)
		s.sendError(conn, ref, codeUnavailable, "state not kept: try again")
		return
	}
	s.versions.changed(conn.Room, roomstore.VersionState)
	s.webhooks.State(s.ctx, conn.Room, at.Epoch, at.Seq, int64(len(f.Data)))
	if ref != "" {
		conn.Send(encode(ackFrame{Type: "ack", Ref: ref}))
	}
}

// frameType returns the top-level "type" of a JSON object that may be cut
// short (the start of a frame too big to read whole), or "".
func frameType(prefix []byte) string {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	depth := 1
	wantKey := true
	isType := false
	for {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		switch v := t.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
				if depth == 0 {
					return ""
				}
			}
			if depth == 1 {
				wantKey = true
			}
			continue
		case string:
			if depth == 1 && wantKey {
				isType = v == "type"
				wantKey = false
				continue
			}
			if depth == 1 && isType {
				return v
			}
		}
		if depth == 1 {
			wantKey = true
			isType = false
		}
	}
}

// --- HTTP API of the stream ---

// pageLimit reads a listing's limit query parameter: 1 to 1000, 100 when
// absent.
func pageLimit(c *fiber.Ctx) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, refuse(fiber.StatusBadRequest, codeBadRequest, "limit is 1 to 1000")
	}
	return n, nil
}

func (s *Server) listMessages(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	after := uint64(0)
	if v := c.Query("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return refuse(fiber.StatusBadRequest, codeBadSince, "since is the seq after which messages are listed")
		}
		after = n
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	h, err := s.broker.PeekHistory(c.UserContext(), room, after, limit)
	if err != nil {
		return s.unavailable(c, "read history", err)
	}
	msgs := make([]json.RawMessage, len(h.Messages))
	for i, m := range h.Messages {
		msgs[i] = m.Frame
	}
	return c.JSON(fiber.Map{"room": room, "epoch": h.Position.Epoch, "seq": h.Position.Seq, "complete": h.Complete, "messages": msgs})
}

func (s *Server) getState(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	p, st, err := s.broker.PeekState(c.UserContext(), room)
	if err != nil {
		return s.unavailable(c, "read state", err)
	}
	return c.JSON(fiber.Map{"room": room, "epoch": p.Epoch, "seq": p.Seq, "state": st})
}

func (s *Server) deleteRoom(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	if _, err := s.broker.Reset(c.UserContext(), room); err != nil {
		return s.unavailable(c, "delete room", err)
	}
	s.webhooks.Deleted(c.UserContext(), room)
	s.log.Info("room deleted: history and state gone, connections resync", "room", room)
	return c.SendStatus(fiber.StatusNoContent)
}
