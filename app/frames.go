package main

import (
	"encoding/json"

	"github.com/roomcast/roomcast/presence"
)

// Server frames other than join/leave/update (built by presence).

type welcomeFrame struct {
	Type     string            `json:"type"`
	Room     string            `json:"room"`
	Conn     string            `json:"conn"`
	Me       presence.Member   `json:"me"`
	Members  []presence.Member `json:"members"`
	Instance string            `json:"instance"`
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

// clientFrame is any frame a client sends.
type clientFrame struct {
	Type string          `json:"type"`
	Ref  *string         `json:"ref"`
	Data json.RawMessage `json:"data"`
	Echo bool            `json:"echo"`
	Meta json.RawMessage `json:"meta"`
}

// Error codes of error frames and HTTP error bodies.
const (
	codeBadRequest  = "bad_request"
	codeTooLarge    = "too_large"
	codeRateLimited = "rate_limited"
	codeInternal    = "internal"
	codeUnavailable = "unavailable"
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
