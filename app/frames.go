package main

import (
	"encoding/json"

	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

// Server frames other than join/leave/update (built by presence).

type welcomeFrame struct {
	Type     string          `json:"type"`
	Room     string          `json:"room"`
	Conn     string          `json:"conn"`
	Me       presence.Member `json:"me"`
	Members  json.RawMessage `json:"members,omitempty"` // encoded once per burst of joiners; absent with presence=count
	Count    *int            `json:"count,omitempty"`   // the member count, with presence=count
	Instance string          `json:"instance"`
	// The room's position as of the welcome (absent with storing off).
	Epoch string  `json:"epoch,omitempty"`
	Seq   *uint64 `json:"seq,omitempty"`
	// Whether the since=<epoch>:<seq> asked for was resumed; absent
	// without one.
	Recovered *bool `json:"recovered,omitempty"`
	// The room's state, for since=start (and a resume that failed).
	State *rooms.State `json:"state,omitempty"`
}

// encodeWelcome is encode(w), byte for byte, with the member list copied
// in as it is: encoding/json would validate and compact the list again,
// byte by byte, for every joiner, and in a room of 100 that was most of a
// welcome's cost. The list is compact JSON already (the replica's or
// encode's).
func encodeWelcome(w welcomeFrame) []byte {
	if len(w.Members) == 0 {
		return encode(w)
	}
	head := encode(struct {
		Type string          `json:"type"`
		Room string          `json:"room"`
		Conn string          `json:"conn"`
		Me   presence.Member `json:"me"`
	}{w.Type, w.Room, w.Conn, w.Me})
	tail := encode(struct {
		Count     *int         `json:"count,omitempty"`
		Instance  string       `json:"instance"`
		Epoch     string       `json:"epoch,omitempty"`
		Seq       *uint64      `json:"seq,omitempty"`
		Recovered *bool        `json:"recovered,omitempty"`
		State     *rooms.State `json:"state,omitempty"`
	}{w.Count, w.Instance, w.Epoch, w.Seq, w.Recovered, w.State})
	b := make([]byte, 0, len(head)+len(`,"members":,`)+len(w.Members)+len(tail))
	b = append(b, head[:len(head)-1]...)
	b = append(b, `,"members":`...)
	b = append(b, w.Members...)
	b = append(b, ',')
	return append(b, tail[1:]...)
}

type syncFrame struct {
	Type    string            `json:"type"`
	Room    string            `json:"room"`
	Members []presence.Member `json:"members"`
}

type sender struct {
	User string `json:"user"`
	Conn string `json:"conn,omitempty"`
}

type messageFrame struct {
	Type string          `json:"type"`
	Room string          `json:"room"`
	ID   string          `json:"id"`
	From sender          `json:"from"`
	TS   int64           `json:"ts"`
	Data json.RawMessage `json:"data"`
}

type ackFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref"`
	ID   string `json:"id,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type pongFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
}

// maxKeyChars bounds a publish key.
const maxKeyChars = 64

// Error codes of error frames and HTTP error bodies.
const (
	codeBadRequest  = "bad_request"
	codeTooLarge    = "too_large"
	codeRateLimited = "rate_limited"
	codeInternal    = "internal"
	codeUnavailable = "unavailable"
	codeStaleState  = "stale_state"
	codeBadSince    = "bad_since"
	codeSizeBackoff = "size_backoff" // 429 on an upgrade after a close for size
	codeNotFound    = "not_found"
	codeNoStore     = "no_store"  // 400: the request needs rooms kept for good (ROOMCAST_STORE)
	codeForbidden   = "forbidden" // a read-only token or connection tried to change what is kept
)

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every frame is built from strings, ints and validated JSON.
		panic("encode frame: " + err.Error())
	}
	return b
}

// nonNil keeps member lists [] rather than null on the wire.
func nonNil(ms []presence.Member) []presence.Member {
	if ms == nil {
		return []presence.Member{}
	}
	return ms
}
