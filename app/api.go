package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
	"github.com/roomcast/roomcast/static"
)

func (s *Server) routes() *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		// Bodies are streamed: a handler reads one (readBody) only once
		// its credentials were checked, and within its route's limit:
		// MAX_DOC_BYTES for a document upload, the message limit for
		// every other route (boundBody). BodyLimit is then only what
		// is read ahead with the headers.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		BodyLimit:                    s.cfg.MaxMessageBytes + 4096,
		IdleTimeout:                  2 * time.Minute,
		// A socket that sends no request, or its headers or body too
		// slowly, is closed; a hijacked WebSocket has no deadline left.
		ReadTimeout:  s.cfg.ReadTimeout,
		WriteTimeout: httpWriteTimeout,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			var r *refusal
			if errors.As(err, &r) {
				return writeError(c, r.status, r.code, r.msg)
			}
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code := "error"
				switch fe.Code {
				case fiber.StatusNotFound:
					code = "not_found"
				case fiber.StatusMethodNotAllowed:
					code = "method_not_allowed"
				case fiber.StatusRequestEntityTooLarge:
					code = codeTooLarge
				}
				return writeError(c, fe.Code, code, fe.Message)
			}
			s.log.Error("http handler", "path", c.Path(), "err", err)
			return writeError(c, fiber.StatusInternalServerError, codeInternal, "internal error")
		},
	})

	// The one route whose body may pass the message limit; boundBody,
	// which bounds every other body, comes after it.
	app.Post("/api/rooms/:room/doc", s.roomParam, s.requireRoomWrite, s.postDoc)
	app.Use(s.boundBody)

	// An open socket keeps nothing of its upgrade request: the hijack
	// handler returns once the socket is joined, and fasthttp must leave
	// the socket open then (see upgrade).
	app.Server().KeepHijackedConns = true
	app.Get("/ws/:room", s.admitWS, s.upgrade(s.serveWS))
	app.Get("/yjs/:room", s.admitWS, s.upgrade(s.serveYjs))

	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", s.readyz)
	metricsHandler := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	app.Get("/metrics", func(c *fiber.Ctx) error { metricsHandler(c.Context()); return nil })

	api := app.Group("/api")
	api.Get("/rooms", s.requireAPIKey, s.listRooms)
	// Every route checks its credentials in a middleware before the
	// handler, which never sees a request it may not answer.
	api.Get("/rooms/:room/members", s.roomParam, s.requireRoomRead, s.listMembers)
	api.Post("/rooms/:room/messages", s.roomParam, s.requireAPIKey, s.postMessage)
	api.Get("/rooms/:room/messages", s.roomParam, s.requireRoomRead, s.listMessages)
	api.Get("/rooms/:room/state", s.roomParam, s.requireRoomRead, s.getState)
	api.Delete("/rooms/:room", s.roomParam, s.requireAPIKey, s.deleteRoom)
	api.Get("/rooms/:room/doc", s.roomParam, s.requireRoomRead, s.getDoc)
	api.Get("/rooms/:room/versions", s.roomParam, s.requireRoomRead, s.listVersions)
	api.Get("/rooms/:room/versions/:id", s.roomParam, s.requireRoomRead, s.getVersion)

	if s.devKey != nil {
		app.Get("/dev/token", s.devToken)
	}

	ui, err := fs.Sub(static.FS, ".")
	if err != nil {
		panic(err)
	}
	page := func(name string) fiber.Handler {
		body, err := fs.ReadFile(ui, name)
		if err != nil {
			panic("static page missing: " + name)
		}
		return func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderCacheControl, "no-cache")
			c.Type("html", "utf-8")
			return c.Send(body)
		}
	}
	app.Get("/", page("index.html"))
	validRoom := func(c *fiber.Ctx) error {
		if !rooms.ValidName(c.Params("room")) {
			return refuse(fiber.StatusBadRequest, "bad_room", "room names are 1-128 of A-Z a-z 0-9 . _ : -")
		}
		return c.Next()
	}
	app.Get("/r/:room", validRoom, page("room.html"))
	app.Get("/d/:room", validRoom, page("doc.html"))
	app.Use("/static", filesystem.New(filesystem.Config{Root: httpFS(ui), MaxAge: 60}))
	return app
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), readyzDeadline)
	defer cancel()
	if part, err := s.ready(ctx); err != nil {
		// The body is for anyone who can reach the port: what is not
		// ready, never the backend's own words (addresses, errors).
		s.metrics.notReady.WithLabelValues(part).Inc()
		if last := s.readyzLogged.Load(); time.Since(time.Unix(0, last)) > 10*time.Second && s.readyzLogged.CompareAndSwap(last, time.Now().UnixNano()) {
			s.log.Warn("not ready", "part", part, "err", err)
		}
		return refuse(fiber.StatusServiceUnavailable, "not_ready", notReadyMessages[part])
	}
	return c.JSON(fiber.Map{"status": "ready", "instance": s.cfg.InstanceID})
}

var notReadyMessages = map[string]string{
	"draining": "this instance is shutting down",
	"redis":    "this instance cannot reach Redis",
	"pubsub":   "this instance's pub/sub is not connected",
	"store":    "this instance cannot reach its store",
}

// apiKeyOK reports whether the request carries the configured API key.
func (s *Server) apiKeyOK(c *fiber.Ctx) bool {
	if s.cfg.APIKey == "" {
		return false
	}
	h, ok := bearerHeader(c)
	return ok && subtle.ConstantTimeCompare([]byte(h), []byte(s.cfg.APIKey)) == 1
}

func (s *Server) requireAPIKey(c *fiber.Ctx) error {
	if !s.apiKeyOK(c) {
		s.metrics.authFailures.WithLabelValues("api_key").Inc()
		return refuse(fiber.StatusUnauthorized, "api_key_required", "Authorization: Bearer <API key> required")
	}
	return c.Next()
}

func (s *Server) roomParam(c *fiber.Ctx) error {
	room := utils.CopyString(c.Params("room"))
	if !rooms.ValidName(room) {
		return refuse(fiber.StatusBadRequest, "bad_room", "room names are 1-128 of A-Z a-z 0-9 . _ : -")
	}
	c.Locals(localRoom, room)
	return c.Next()
}

func (s *Server) listRooms(c *fiber.Ctx) error {
	switch c.Query("stored") {
	case "", "0", "false":
	case "1", "true":
		return s.listStoredRooms(c)
	default:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "stored is 1 (every room the store holds) or absent (the rooms in use)")
	}
	rs, err := s.store.Rooms(c.UserContext())
	if err != nil {
		return s.unavailable(c, "list rooms", err)
	}
	return c.JSON(fiber.Map{"rooms": rs})
}

// requireRoomRead lets on the API key or a user token that allows the
// room (after roomParam).
func (s *Server) requireRoomRead(c *fiber.Ctx) error {
	if s.apiKeyOK(c) {
		return c.Next()
	}
	_, err := s.userRole(c)
	if err != nil {
		return err
	}
	return c.Next()
}

// userRole verifies the request's user token and returns its role in the
// room (after roomParam), or the refusal.
func (s *Server) userRole(c *fiber.Ctx) (auth.Role, error) {
	claims, err := s.verifier.Verify(c.UserContext(), bearer(c))
	if err != nil {
		return "", s.refuseToken(c, err)
	}
	role, ok := roleIn(claims, c.Locals(localRoom).(string))
	if !ok {
		s.metrics.authFailures.WithLabelValues("room").Inc()
		return "", refuse(fiber.StatusForbidden, "room_not_allowed", "the token does not allow this room")
	}
	return role, nil
}

func (s *Server) listMembers(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	ms, err := s.store.Members(c.UserContext(), room)
	if err != nil {
		return s.unavailable(c, "list members", err)
	}
	return c.JSON(fiber.Map{"room": room, "members": nonNil(ms)})
}

func (s *Server) postMessage(c *fiber.Ctx) error {
	room := c.Locals(localRoom).(string)
	if !utf8.Valid(c.Body()) {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "body is not valid UTF-8")
	}
	var body struct {
		Data      json.RawMessage `json:"data"`
		Ephemeral bool            `json:"ephemeral"`
		Key       *string         `json:"key"`
	}
	if err := json.Unmarshal(c.Body(), &body); err != nil {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "body must be a JSON object {\"data\": ...}")
	}
	if len(body.Data) == 0 {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "data is required")
	}
	if len(body.Data) > s.cfg.MaxMessageBytes {
		return refuse(fiber.StatusRequestEntityTooLarge, codeTooLarge, "data is over ROOMCAST_MAX_MESSAGE_BYTES")
	}
	key := ""
	if body.Key != nil {
		if key = utils.CopyString(*body.Key); key == "" || len([]rune(key)) > maxKeyChars {
			return refuse(fiber.StatusBadRequest, codeBadRequest, "key is 1 to 64 characters")
		}
	}
	data := append(json.RawMessage(nil), body.Data...)
	p, err := s.publish(room, sender{User: "server"}, data, "", !body.Ephemeral, key)
	if err != nil {
		return s.unavailable(c, "publish", err)
	}
	out := fiber.Map{"id": p.ID}
	if p.Position.Seq > 0 {
		out["seq"] = p.Position.Seq
	}
	return c.Status(fiber.StatusAccepted).JSON(out)
}

func (s *Server) unavailable(c *fiber.Ctx, what string, err error) error {
	s.log.Warn("api: "+what, "err", err)
	return refuse(fiber.StatusServiceUnavailable, codeUnavailable, what+" failed: backend unavailable, try again")
}

// devToken mints a token for local use; only routed with -dev.
func (s *Server) devToken(c *fiber.Ctx) error {
	user := utils.CopyString(c.Query("user"))
	if user == "" {
		user = "user-" + randomKey()[:6]
	}
	if len(user) > 128 {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "user is at most 128 bytes")
	}
	name := utils.CopyString(c.Query("name"))
	if len(name) > 64 {
		return refuse(fiber.StatusBadRequest, codeBadRequest, "name is at most 64 bytes")
	}
	var roomsClaim []string
	if r := c.Query("room"); r != "" {
		if !rooms.ValidName(strings.TrimSuffix(r, "*")) && r != "*" {
			return refuse(fiber.StatusBadRequest, "bad_room", "room names are 1-128 of A-Z a-z 0-9 . _ : -, optionally ending in *")
		}
		roomsClaim = []string{utils.CopyString(r)}
	}
	var readClaim []string
	switch c.Query("role") {
	case "", "write":
	case "read":
		// A view link: the room (or every room) read-only, none written.
		readClaim = roomsClaim
		if readClaim == nil {
			readClaim = []string{"*"}
		}
		roomsClaim = []string{}
	default:
		return refuse(fiber.StatusBadRequest, codeBadRequest, "role is write (the default) or read")
	}
	tok, err := auth.MintHS256(s.devKey, auth.MintOptions{Subject: user, Name: name, Rooms: roomsClaim, Read: readClaim, TTL: devTokenTTL,
		Issuer: s.cfg.JWTIssuer, Audience: s.cfg.JWTAudience})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"token": tok})
}
