// Package yjs implements the Yjs binary formats that a y-websocket server
// needs, in pure Go and without a document model: the y-websocket message
// framing (y-protocols sync and awareness), the v1 update encoding that
// Y.encodeStateAsUpdate produces, state vectors, and the update algebra of
// yjs/src/utils/updates.js (mergeUpdates, diffUpdate,
// encodeStateVectorFromUpdate), plus Compact, a merge that also garbage
// collects deleted content, and JSONView, which integrates a whole
// document as Y.applyUpdate does (YATA) to show its types as toJSON().
//
// The formats follow yjs 13.6 and lib0 (varUint, varInt, varString, the
// tagged "any" encoding). Every decoder treats its input as untrusted: a
// length is checked against the bytes left before it is used, varints are
// bounded (at most 10 bytes, values up to 2^53-1 like JavaScript numbers),
// strings must be UTF-8 and JSON texts valid JSON, as Yjs's fatal
// TextDecoder and JSON.parse would demand. Decoded content stays a
// sub-slice of the input; only structs that are split are re-encoded.
//
// MergeUpdates and DiffUpdate reproduce the JavaScript algorithms step by
// step, so for updates that Yjs wrote their output is byte-for-byte what
// Y.mergeUpdates and Y.diffUpdate return (MergeUpdates documents the
// exceptions). Input that Yjs itself mishandles is rejected: an update
// with two sections for one client (Y.applyUpdate keeps only the last)
// and empty delete ranges (Y.applyUpdate can throw on them).
package yjs

import (
	"errors"
	"unicode/utf8"
)

// y-websocket message types and sync sub-types.
const (
	MessageSync           = 0
	MessageAwareness      = 1
	MessageAuth           = 2
	MessageQueryAwareness = 3

	SyncStep1  = 0 // payload: encoded state vector
	SyncStep2  = 1 // payload: update
	SyncUpdate = 2 // payload: update
)

// ErrInvalid is matched (errors.Is) by every error this package returns
// for malformed input.
var ErrInvalid = errors.New("yjs: invalid message")

// maxReasonLen bounds ProtocolError.Reason so that it fits a WebSocket
// close frame (123 bytes of reason at most).
const maxReasonLen = 100

// ProtocolError describes malformed input. Reason is short (at most 100
// bytes) and safe to send to the peer as a WebSocket close reason.
type ProtocolError struct {
	Reason string
}

// Error implements error.
func (e *ProtocolError) Error() string { return "yjs: invalid message: " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true for every ProtocolError.
func (e *ProtocolError) Is(target error) bool { return target == ErrInvalid }

// protocolError returns err with prefix added to its reason when it is a
// *ProtocolError (truncated to maxReasonLen), and err otherwise.
func protocolError(prefix string, err error) error {
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		return err
	}
	return &ProtocolError{Reason: truncateReason(prefix + pe.Reason)}
}

// truncateReason cuts s to maxReasonLen bytes at a rune boundary.
func truncateReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	n := maxReasonLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
