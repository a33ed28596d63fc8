// Package wire is the contract between roomcast instances on Redis: the
// names of a room's keys and channel, and the envelope every payload on a
// room channel travels in. Go code and Lua scripts (which prepend
// EnvelopeLua) both build envelopes, so this is the one place that defines
// them; wire_test checks both sides against each other.
package wire

import (
	"bytes"
	_ "embed"
	"strconv"
)

// DefaultPrefix starts every key and channel name unless configured.
const DefaultPrefix = "roomcast:"

// Keys are the Redis names of one room. Every one carries the room's hash
// tag (see Layout), so a room's keys and channel live in one Redis Cluster
// slot and one script may touch all of them.
type Keys struct {
	Channel    string // pub/sub channel of the room's envelopes
	Meta       string // HASH epoch, seq: the room's stream position
	Stream     string // STREAM of stored message frames, entry id "<seq>-0"
	State      string // HASH seq, data: the latest state a client sent
	StateReq   string // STRING: a state request is outstanding (expires)
	StateClaim string // STRING: the instance that answers the request (expires)
	// Presence keys (see presence/presence_lib.lua).
	Conns   string // ZSET "<conn>\n<user>" -> expiry, "\n<user>" -> end of leave grace
	Members string // HASH user -> "conns\nsince\nid\nname\nmeta"
	// Yjs document keys (see rooms/lua/doc_*.lua).
	Doc    string // HASH epoch, base_seq, seq, base, base_bytes, log_bytes
	DocLog string // LIST of the update messages after base_seq, oldest first
	// Webhook markers (see rooms/webhook/queue.lua): the room's pending
	// room.vacated, and its room.state and doc.updated debounce.
	WebhookVacate string // STRING key of the room.vacated event in its queue
	WebhookState  string // STRING "p<key>" pending event, "s" sent (expires)
	WebhookDoc    string // as WebhookState, for doc.updated

	idem string
}

// RoomKeys returns the keys of room under prefix ("" means DefaultPrefix)
// in the single-Redis layout (see Layout).
func RoomKeys(prefix, room string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return keysUnder(prefix + "{" + room + "}:")
}

// keysUnder returns the keys whose names start with p.
func keysUnder(p string) Keys {
	return Keys{
		Channel:    p + "msg",
		Meta:       p + "meta",
		Stream:     p + "stream",
		State:      p + "state",
		StateReq:   p + "state_req",
		StateClaim: p + "state_claim",
		Conns:      p + "conns",
		Members:    p + "members",
		Doc:        p + "doc",
		DocLog:     p + "doc_log",

		WebhookVacate: p + "wh_vacate",
		WebhookState:  p + "wh_state",
		WebhookDoc:    p + "wh_doc",
		idem:          p + "key:",
	}
}

// Idem is the key that remembers a publish key for the dedupe window.
func (k Keys) Idem(key string) string { return k.idem + key }

// DueIndex is the single-Redis layout's one presence key that spans rooms:
// a ZSET of the rooms with a connection or a leave grace, each scored at
// or before its earliest expiry, for the sweep (and the room list). On a
// cluster each partition has one (Layout.DueIndex).
func DueIndex(prefix string) string { return orDefault(prefix) + "due" }

func orDefault(prefix string) string {
	if prefix == "" {
		return DefaultPrefix
	}
	return prefix
}

// An envelope is "<exclude>|<position>|<frame>":
//   - exclude: the connection id that must not receive the frame, or empty;
//   - position: empty for a frame that is not stored (presence, ephemeral
//     messages), else "<epoch>:<seq>", with ":r" appended when the
//     publisher found a state request due at this seq. A position with
//     seq 0 and an empty frame announces a new epoch (the room was reset);
//   - frame: the encoded server frame, shared by every recipient.
//
// A document payload (Yjs) has a position starting with "~":
//   - "~<epoch>:<seq>": an update stored as the document's seq-th in its
//     epoch; frame is the y-websocket sync Update message;
//   - "~a": an awareness message of the connection exclude; frame is the
//     varString user id followed by the y-websocket awareness message;
//   - "~q": a request that instances announce the awareness of their
//     connections of the user named by frame (every user when empty).
//
// Change the format only together with a new prefix: instances of two
// formats on one Redis would misread each other.

//go:embed envelope.lua
var EnvelopeLua string

// WebhookLua is the webhook queue's Lua library (webhook.lua): the record
// format and the functions that queue and cancel events, prepended to
// every script that queues them, so the presence scripts queue their
// events in the same atomic step that decides them.
//
//go:embed webhook.lua
var WebhookLua string

// Envelope is an opened payload.
type Envelope struct {
	Exclude  string
	Epoch    string // empty when not stored
	Seq      uint64
	StateDue bool
	Doc      byte // DocUpdate, DocAwareness, DocQuery, or 0 for a room payload
	Frame    []byte
}

// Stored reports whether the frame is a stored room message (it has a
// room stream position).
func (e Envelope) Stored() bool { return e.Epoch != "" && e.Doc == 0 }

// Doc kinds of an Envelope (zero: not a document payload).
const (
	DocUpdate    = 'u'
	DocAwareness = 'a'
	DocQuery     = 'q'
)

// SealDocUpdate returns the payload of a document update stored at
// epoch:seq.
func SealDocUpdate(exclude, epoch string, seq uint64, frame []byte) []byte {
	b := make([]byte, 0, len(exclude)+len(epoch)+24+len(frame))
	b = append(b, exclude...)
	b = append(b, '|', '~')
	b = append(b, epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '|')
	return append(b, frame...)
}

// SealDoc returns the payload of an unstored document message of kind
// DocAwareness or DocQuery.
func SealDoc(exclude string, kind byte, frame []byte) []byte {
	b := make([]byte, 0, len(exclude)+4+len(frame))
	b = append(b, exclude...)
	b = append(b, '|', '~', kind, '|')
	return append(b, frame...)
}

// Seal returns the payload of an unstored frame.
func Seal(exclude string, frame []byte) []byte {
	b := make([]byte, 0, len(exclude)+2+len(frame))
	b = append(b, exclude...)
	b = append(b, '|', '|')
	return append(b, frame...)
}

// SealStored returns the payload of a stored frame at epoch:seq.
func SealStored(exclude, epoch string, seq uint64, stateDue bool, frame []byte) []byte {
	b := make([]byte, 0, len(exclude)+len(epoch)+24+len(frame))
	b = append(b, exclude...)
	b = append(b, '|')
	b = append(b, epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	if stateDue {
		b = append(b, ":r"...)
	}
	b = append(b, '|')
	return append(b, frame...)
}

// Open splits a payload. ok is false for one that is not an envelope.
func Open(payload []byte) (e Envelope, ok bool) {
	i := bytes.IndexByte(payload, '|')
	if i < 0 || i > 64 {
		return e, false
	}
	rest := payload[i+1:]
	j := bytes.IndexByte(rest, '|')
	if j < 0 || j > 96 {
		return e, false
	}
	if i > 0 {
		e.Exclude = string(payload[:i])
	}
	e.Frame = rest[j+1:]
	pos := rest[:j]
	if len(pos) == 0 {
		return e, true
	}
	if pos[0] == '~' {
		switch string(pos) {
		case "~a":
			e.Doc = DocAwareness
			return e, true
		case "~q":
			e.Doc = DocQuery
			return e, true
		}
		e.Doc = DocUpdate
		pos = pos[1:]
	}
	c := bytes.IndexByte(pos, ':')
	if c <= 0 {
		return e, false
	}
	num := pos[c+1:]
	if n := len(num); n > 2 && string(num[n-2:]) == ":r" {
		e.StateDue = true
		num = num[:n-2]
	}
	seq, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return e, false
	}
	e.Epoch, e.Seq = string(pos[:c]), seq
	return e, true
}
