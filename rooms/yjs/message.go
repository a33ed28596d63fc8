package yjs

import (
	"strconv"
)

// Message is one y-websocket message.
type Message struct {
	Type    uint64 // MessageSync, MessageAwareness, MessageQueryAwareness (MessageAuth is rejected as input)
	Sync    uint64 // for MessageSync: SyncStep1, SyncStep2 or SyncUpdate
	Payload []byte // state vector, update, or awareness update bytes (aliases the frame)
}

// ParseMessage decodes a frame holding exactly one message sent by a
// client and validates it fully: the varints are complete (minimal length
// is not required), the type and sync sub-type are known, a state vector,
// update or awareness update payload decodes completely with no trailing
// bytes, and every string inside (content strings, keys, JSON, awareness
// states) is valid UTF-8, and JSON where JSON is expected. Errors are
// *ProtocolError (matching ErrInvalid) with a short reason suitable for a
// close frame (at most 100 bytes).
func ParseMessage(frame []byte) (Message, error) {
	r := reader{buf: frame}
	var m Message
	m.Type = r.uint()
	if r.err != nil {
		return Message{}, protocolError("message type: ", r.err)
	}
	switch m.Type {
	case MessageSync:
		m.Sync = r.uint()
		if r.err != nil {
			return Message{}, protocolError("sync type: ", r.err)
		}
		if m.Sync > SyncUpdate {
			return Message{}, &ProtocolError{Reason: "unknown sync message type " + strconv.FormatUint(m.Sync, 10)}
		}
		m.Payload = r.varBytes()
	case MessageAwareness:
		m.Payload = r.varBytes()
	case MessageQueryAwareness:
	case MessageAuth:
		return Message{}, &ProtocolError{Reason: "auth messages are not accepted"}
	default:
		return Message{}, &ProtocolError{Reason: "unknown message type " + strconv.FormatUint(m.Type, 10)}
	}
	if r.err != nil {
		return Message{}, protocolError(messageName(m)+": payload: ", r.err)
	}
	if r.pos != len(frame) {
		r.fail("trailing bytes")
		return Message{}, protocolError(messageName(m)+": ", r.err)
	}
	var err error
	switch {
	case m.Type == MessageAwareness:
		err = validateAwareness(m.Payload)
	case m.Type == MessageSync && m.Sync == SyncStep1:
		_, err = decodeStateVector(m.Payload)
	case m.Type == MessageSync:
		_, err = validateUpdate(m.Payload)
	}
	if err != nil {
		return Message{}, protocolError(messageName(m)+": ", err)
	}
	return m, nil
}

// messageName names m's kind in error reasons.
func messageName(m Message) string {
	switch m.Type {
	case MessageAwareness:
		return "awareness"
	case MessageQueryAwareness:
		return "query awareness"
	}
	switch m.Sync {
	case SyncStep1:
		return "sync step 1"
	case SyncStep2:
		return "sync step 2"
	}
	return "sync update"
}

// AppendSyncMessage appends a sync message: varUint(MessageSync),
// varUint(sub), varUint8Array(payload).
func AppendSyncMessage(dst []byte, sub uint64, payload []byte) []byte {
	dst = appendVarUint(dst, MessageSync)
	dst = appendVarUint(dst, sub)
	return appendVarBytes(dst, payload)
}

// AppendAwarenessMessage appends an awareness message:
// varUint(MessageAwareness), varUint8Array(update).
func AppendAwarenessMessage(dst []byte, update []byte) []byte {
	dst = appendVarUint(dst, MessageAwareness)
	return appendVarBytes(dst, update)
}

// AwarenessEntry is one client's state in an awareness update.
type AwarenessEntry struct {
	Client uint64
	Clock  uint64
	State  []byte // JSON text; "null" means the client is removed
}

// ParseAwareness decodes an awareness update (y-protocols awareness.js
// encodeAwarenessUpdate: varUint count, then per client varUint client,
// varUint clock and varString JSON state). States must be UTF-8 JSON and
// nothing may follow the last entry. The states alias update.
func ParseAwareness(update []byte) ([]AwarenessEntry, error) {
	var entries []AwarenessEntry
	if err := parseAwareness(update, func(e AwarenessEntry) { entries = append(entries, e) }); err != nil {
		return nil, protocolError("awareness: ", err)
	}
	return entries, nil
}

func validateAwareness(update []byte) error {
	return parseAwareness(update, func(AwarenessEntry) {})
}

func parseAwareness(update []byte, f func(AwarenessEntry)) error {
	r := reader{buf: update}
	n := r.uint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		var e AwarenessEntry
		e.Client = r.uint()
		e.Clock = r.uint()
		e.State = r.jsonString()
		if r.err == nil {
			f(e)
		}
	}
	if r.err == nil && r.pos != len(update) {
		r.fail("trailing bytes")
	}
	return r.err
}

// EncodeAwareness encodes entries as an awareness update. An empty State
// is written as null (the client is removed).
func EncodeAwareness(entries []AwarenessEntry) []byte {
	size := 1
	for _, e := range entries {
		size += 30 + len(e.State)
	}
	out := appendVarUint(make([]byte, 0, size), uint64(len(entries)))
	for _, e := range entries {
		out = appendVarUint(out, e.Client)
		out = appendVarUint(out, e.Clock)
		state := e.State
		if len(state) == 0 {
			state = []byte("null")
		}
		out = appendVarBytes(out, state)
	}
	return out
}
