package rooms

import "bytes"

// A payload on the broker is an envelope: the id of the connection that must
// not receive it (empty for none), a '|' and the encoded server frame. The
// frame is encoded once by the publisher and its bytes are shared by every
// recipient on every instance.
//
// Redis Lua scripts build envelopes too ("|" .. frame), so the format is
// part of the wire contract between instances: change it only with a new
// channel prefix.

// Envelope returns the broker payload for frame, skipping connection exclude.
func Envelope(exclude string, frame []byte) []byte {
	b := make([]byte, 0, len(exclude)+1+len(frame))
	b = append(b, exclude...)
	b = append(b, '|')
	return append(b, frame...)
}

// OpenEnvelope splits a broker payload into the excluded connection id and
// the frame. ok is false for a payload that is not an envelope.
func OpenEnvelope(payload []byte) (exclude string, frame []byte, ok bool) {
	i := bytes.IndexByte(payload, '|')
	if i < 0 || i > 64 {
		return "", nil, false
	}
	return string(payload[:i]), payload[i+1:], true
}

// ValidName reports whether name is an acceptable room name:
// ^[A-Za-z0-9._:-]{1,128}$.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Channel is the broker channel of a room. The {room} hash tag keeps a
// room's channel and presence keys in one Redis Cluster slot.
func Channel(prefix, room string) string {
	return prefix + "{" + room + "}:msg"
}
