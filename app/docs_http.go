package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
	roomstore "github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/ydoc"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// docUploadTimeout bounds storing an uploaded update, with the compaction
// that may make room for it: a document may be tens of MiB.
const docUploadTimeout = 30 * time.Second

// getDoc answers the room's whole document as one Yjs update, or with
// ?format=json as its top-level types in JSON (yjs.JSONView).
func (s *Server) getDoc(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	asJSON := false
	switch c.Query("format") {
	case "":
	case "json":
		asJSON = true
	default:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "format is json, or absent for the Yjs update")
	}
	snap, err := s.docs.Snapshot(c.UserContext(), room)
	if err != nil {
		return s.unavailable(c, "read document", err)
	}
	if snap.Position.Epoch == "" {
		return refuse(fiber.StatusNotFound, codeNotFound, "this room has no document")
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	if asJSON {
		view, err := s.jsonViews.view(c.UserContext(), room, snap)
		if c.UserContext().Err() != nil {
			return s.unavailable(c, "document view", err)
		}
		if err != nil {
			return refuse(fiber.StatusUnprocessableEntity, codeBadRequest, "the document cannot be shown as JSON: "+err.Error())
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		return c.Send(view)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
	// The snapshot is never changed once made: it is sent as it is.
	return c.Send(snap.Doc)
}

// postDoc applies a Yjs update to the room's document: stored and relayed
// to every provider on every instance as a provider's update is, within
// MAX_DOC_BYTES.
func (s *Server) postDoc(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	limit := s.cfg.MaxDocBytes
	tooLarge := refuse(fiber.StatusRequestEntityTooLarge, codeTooLarge,
		fmt.Sprintf("the update would take the document past %s (ROOMCAST_MAX_DOC_BYTES); not stored", byteSize(limit)))
	update, err := readBody(c, limit)
	switch {
	case errors.Is(err, errBodyTooLarge):
		return tooLarge
	case err != nil:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "the body could not be read whole")
	case len(update) == 0:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "the body is a Yjs update (Y.encodeStateAsUpdate, application/octet-stream)")
	}
	if err := yjs.ValidateUpdate(update); err != nil {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "the body is not a Yjs update: "+err.Error())
	}
	if bytes.Equal(update, yjs.EmptyUpdate) {
		return c.SendStatus(fiber.StatusNoContent)
	}
	msg := yjs.AppendSyncMessage(nil, yjs.SyncUpdate, update)
	if len(msg) > limit {
		return tooLarge // one message over the limit, as on a socket
	}
	ctx, cancel := context.WithTimeout(s.ctx, docUploadTimeout)
	defer cancel()
	switch err := s.docs.Append(ctx, room, msg); {
	case errors.Is(err, rooms.ErrDocTooLarge):
		s.metrics.yjsRejected.WithLabelValues("doc_too_large").Inc()
		return tooLarge
	case err != nil:
		return s.unavailable(c, "store update", err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// requireRoomWrite lets on the API key or a user token that lets its
// holder write the room (after roomParam); a read-only token gets 403.
func (s *Server) requireRoomWrite(c *fiber.Ctx) error {
	if s.apiKeyOK(c) {
		return c.Next()
	}
	role, err := s.userRole(c)
	if err != nil {
		return err
	}
	if role != auth.RoleWrite {
		s.metrics.authFailures.WithLabelValues("role").Inc()
		return refuse(fiber.StatusForbidden, codeForbidden, "the token lets its holder read this room only")
	}
	return c.Next()
}

var errBodyTooLarge = errors.New("request body over its limit")

// readBody reads the request body, at most limit bytes. The server streams
// bodies (see routes): nothing of a body is read before the route's
// credentials are checked.
func readBody(c *fiber.Ctx, limit int) ([]byte, error) {
	req := c.Request()
	if n := req.Header.ContentLength(); n > limit {
		return nil, errBodyTooLarge
	}
	rs := c.Context().RequestBodyStream()
	if rs == nil {
		if len(req.Body()) > limit {
			return nil, errBodyTooLarge
		}
		return req.Body(), nil
	}
	b, err := io.ReadAll(io.LimitReader(rs, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errBodyTooLarge
	}
	return b, nil
}

// boundBody reads the body of every request but a document upload, at
// most the message limit, before any handler sees it: bodies are
// streamed, and ctx.Body would read one of any size.
func (s *Server) boundBody(c *fiber.Ctx) error {
	b, err := readBody(c, s.cfg.MaxMessageBytes+4096)
	switch {
	case errors.Is(err, errBodyTooLarge):
		return refuse(fiber.StatusRequestEntityTooLarge, codeTooLarge, "request body too large")
	case err != nil:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "the body could not be read whole")
	}
	c.Request().SetBodyRaw(b)
	return c.Next()
}

// storedRoom is one room of GET /api/rooms?stored=1.
type storedRoom struct {
	Room       string `json:"room"`
	Members    int    `json:"members"`
	Updated    int64  `json:"updated"` // unix ms
	DocBytes   int64  `json:"doc_bytes"`
	StateBytes int64  `json:"state_bytes"`
}

// listStoredRooms answers a page of the rooms the store holds, with their
// members now (0 included). Without a store there is nothing to page
// through: 400 no_store.
func (s *Server) listStoredRooms(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	if s.roomStore == nil {
		return refuse(fiber.StatusBadRequest, codeNoStore, "this server keeps no rooms for good (ROOMCAST_STORE is memory, or Redis is the only copy); GET /api/rooms lists the rooms in use")
	}
	cursor := utils.CopyString(c.Query("cursor"))
	page, next, err := s.roomStore.Rooms(c.UserContext(), cursor, limit)
	if errors.Is(err, roomstore.ErrBadCursor) {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "cursor is one a previous page gave")
	}
	if err != nil {
		return s.unavailable(c, "list stored rooms", err)
	}
	counts, err := s.store.Rooms(c.UserContext())
	if err != nil {
		return s.unavailable(c, "list rooms", err)
	}
	members := make(map[string]int, len(counts))
	for _, rc := range counts {
		members[rc.Room] = rc.Members
	}
	out := make([]storedRoom, len(page))
	for i, r := range page {
		out[i] = storedRoom{Room: r.Room, Members: members[r.Room], Updated: r.Updated.UnixMilli(), DocBytes: r.DocBytes, StateBytes: r.StateBytes}
	}
	res := fiber.Map{"rooms": out}
	if next != "" {
		res["cursor"] = next
	}
	return c.JSON(res)
}

// jsonViews keeps the JSON views last made, by room and document
// position: a view is a pass over the whole document (about 30 ms a MiB),
// and a backend polling a room that did not change must not pay it again.
// At most one view per core is made at a time; the cache is bounded by
// bytes.
type jsonViews struct {
	slots chan struct{}

	mu    sync.Mutex
	views map[string]jsonView
	bytes int
}

type jsonView struct {
	pos  rooms.Position
	data []byte
}

// jsonViewCacheBytes bounds the views kept; a larger one is not kept.
const jsonViewCacheBytes = 64 << 20

func newJSONViews() *jsonViews {
	return &jsonViews{slots: make(chan struct{}, runtime.GOMAXPROCS(0)), views: make(map[string]jsonView)}
}

// view returns the JSON view of snap, room's document at snap.Position.
func (v *jsonViews) view(ctx context.Context, room string, snap ydoc.Snapshot) ([]byte, error) {
	v.mu.Lock()
	if kept, ok := v.views[room]; ok && kept.pos == snap.Position {
		v.mu.Unlock()
		return kept.data, nil
	}
	v.mu.Unlock()
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	data, err := yjs.JSONView(snap.Doc)
	<-v.slots
	if err != nil {
		return nil, err
	}
	if len(data) <= jsonViewCacheBytes/4 {
		v.mu.Lock()
		if old, ok := v.views[room]; ok {
			v.bytes -= len(old.data)
			delete(v.views, room)
		}
		for name, old := range v.views { // any: the cache is a convenience
			if v.bytes+len(data) <= jsonViewCacheBytes {
				break
			}
			v.bytes -= len(old.data)
			delete(v.views, name)
		}
		v.views[room] = jsonView{pos: snap.Position, data: data}
		v.bytes += len(data)
		v.mu.Unlock()
	}
	return data, nil
}
