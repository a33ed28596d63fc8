package yjs

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Limits of the lib0 decoders.
const (
	// maxSafeInteger is Number.MAX_SAFE_INTEGER: lib0 decodes varints into
	// JavaScript numbers, so larger values cannot come from a Yjs client.
	maxSafeInteger = 1<<53 - 1
	// maxVarintLen bounds the bytes of one varint (non-minimal encodings
	// are accepted up to this length).
	maxVarintLen = 10
	// maxAnyDepth bounds the nesting of lib0 any values (objects, arrays).
	maxAnyDepth = 1000
)

// lib0 any tags (lib0/encoding.js writeAny).
const (
	anyUndefined  = 127
	anyNull       = 126
	anyInteger    = 125
	anyFloat32    = 124
	anyFloat64    = 123
	anyBigInt     = 122
	anyFalse      = 121
	anyTrue       = 120
	anyString     = 119
	anyObject     = 118
	anyArray      = 117
	anyUint8Array = 116
)

// reader decodes lib0 primitives from buf. The first error is sticky:
// after it every method returns zero values, so callers check err at
// convenient points, and in every loop whose count came from the input.
type reader struct {
	buf []byte
	pos int
	err error
	// trusted skips UTF-8 and JSON validation (input this package wrote).
	trusted bool
}

// fail records the first error, with the byte offset where it happened.
func (r *reader) fail(reason string) {
	if r.err == nil {
		r.err = &ProtocolError{Reason: reason + " at byte " + strconv.Itoa(r.pos)}
	}
}

// done reports whether the whole buffer was consumed without error.
func (r *reader) done() bool { return r.err == nil && r.pos == len(r.buf) }

// byte reads one byte.
func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.buf) {
		r.fail("unexpected end")
		return 0
	}
	c := r.buf[r.pos]
	r.pos++
	return c
}

// uint reads a lib0 varUint: 7-bit groups, little-endian, 0x80 means
// more follow. Values above 2^53-1 are rejected like lib0 does.
func (r *reader) uint() uint64 {
	if r.err != nil {
		return 0
	}
	if r.pos < len(r.buf) {
		if c := r.buf[r.pos]; c < 0x80 {
			r.pos++
			return uint64(c)
		}
	}
	return r.uintSlow()
}

func (r *reader) uintSlow() uint64 {
	start := r.pos
	var v uint64
	for i := 0; i < maxVarintLen; i++ {
		if r.pos >= len(r.buf) {
			r.fail("truncated varint")
			return 0
		}
		c := r.buf[r.pos]
		r.pos++
		if g := uint64(c & 0x7f); g != 0 {
			shift := uint(7 * i)
			if shift >= 56 {
				r.pos = start
				r.fail("integer out of range")
				return 0
			}
			v |= g << shift
		}
		if c < 0x80 {
			if v > maxSafeInteger {
				r.pos = start
				r.fail("integer out of range")
				return 0
			}
			return v
		}
	}
	r.pos = start
	r.fail("varint too long")
	return 0
}

// int reads a lib0 varInt: the first byte holds 6 bits, the sign (0x40)
// and the continuation bit (0x80); further bytes hold 7 bits each.
// negZero reports -0, which lib0 can encode.
func (r *reader) int() (v int64, negZero bool) {
	if r.err != nil {
		return 0, false
	}
	start := r.pos
	c := r.byte()
	if r.err != nil {
		return 0, false
	}
	neg := c&0x40 != 0
	m := uint64(c & 0x3f)
	shift := uint(6)
	more := c&0x80 != 0
	for i := 1; more; i++ {
		if i >= maxVarintLen {
			r.pos = start
			r.fail("varint too long")
			return 0, false
		}
		if r.pos >= len(r.buf) {
			r.fail("truncated varint")
			return 0, false
		}
		c = r.buf[r.pos]
		r.pos++
		if g := uint64(c & 0x7f); g != 0 {
			if shift >= 56 {
				r.pos = start
				r.fail("integer out of range")
				return 0, false
			}
			m |= g << shift
		}
		shift += 7
		more = c&0x80 != 0
	}
	if m > maxSafeInteger {
		r.pos = start
		r.fail("integer out of range")
		return 0, false
	}
	if neg {
		return -int64(m), m == 0
	}
	return int64(m), false
}

// bytes returns the next n bytes (aliasing buf), checking n against what
// is left before anything else.
func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)-r.pos) {
		r.fail("length beyond end")
		return nil
	}
	b := r.buf[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	return b
}

// varBytes reads a varUint8Array.
func (r *reader) varBytes() []byte { return r.bytes(r.uint()) }

// varString reads a varString and checks that it is UTF-8 (lib0 decodes
// with a fatal TextDecoder, so Yjs rejects invalid UTF-8 too).
func (r *reader) varString() []byte {
	s := r.varBytes()
	if r.err == nil && !r.trusted && !utf8.Valid(s) {
		r.pos -= len(s)
		r.fail("invalid UTF-8")
		return nil
	}
	return s
}

// jsonString reads a varString holding JSON text.
func (r *reader) jsonString() []byte {
	s := r.varString()
	if r.err == nil && !r.trusted && !jsonValid(s) {
		r.pos -= len(s)
		r.fail("invalid JSON")
		return nil
	}
	return s
}

// jsonValid reports whether s is one JSON text (what JSON.parse accepts).
func jsonValid(s []byte) bool { return json.Valid(s) }

// skipAny reads one lib0 any value (lib0/decoding.js readAny) without
// building it.
func (r *reader) skipAny(depth int) {
	tag := r.byte()
	if r.err != nil {
		return
	}
	switch tag {
	case anyUndefined, anyNull, anyFalse, anyTrue:
	case anyInteger:
		r.int()
	case anyFloat32:
		r.bytes(4)
	case anyFloat64, anyBigInt:
		r.bytes(8)
	case anyString:
		r.varString()
	case anyObject, anyArray:
		if depth >= maxAnyDepth {
			r.pos--
			r.fail("any value nested too deep")
			return
		}
		n := r.uint()
		for i := uint64(0); i < n && r.err == nil; i++ {
			if tag == anyObject {
				r.varString()
			}
			r.skipAny(depth + 1)
		}
	case anyUint8Array:
		r.varBytes()
	default:
		r.pos--
		r.fail("unknown any type " + strconv.Itoa(int(tag)))
	}
}

// appendVarUint appends v as a lib0 varUint.
func appendVarUint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// varUintLen is the length of v as a varUint.
func varUintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendVarBytes appends b as a varUint8Array (or varString).
func appendVarBytes(dst, b []byte) []byte {
	dst = appendVarUint(dst, uint64(len(b)))
	return append(dst, b...)
}
