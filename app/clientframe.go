package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// clientFrame is any frame a client sends.
type clientFrame struct {
	Type      string
	Ref       *string
	Data      json.RawMessage
	Echo      bool
	Ephemeral bool
	Key       *string
	Meta      json.RawMessage
	Seq       *uint64
}

// The fields of a client frame, each a bit of a set of those seen.
var clientFields = map[string]uint{
	"type": 1 << 0, "ref": 1 << 1, "data": 1 << 2, "echo": 1 << 3,
	"ephemeral": 1 << 4, "key": 1 << 5, "meta": 1 << 6, "seq": 1 << 7,
}

// decodeClientFrame reads a client frame in one pass that decides every
// field once. encoding/json keeps the last of duplicate keys and matches
// keys case-insensitively, so a frame could carry two types: one that a
// size rule looked at and another that was acted on. Here a field's name
// is matched exactly, a duplicate is an error, and other keys are
// ignored. Data aliases the frame's bytes.
func decodeClientFrame(data []byte) (clientFrame, error) {
	var f clientFrame
	if !json.Valid(data) {
		return f, errors.New("not JSON")
	}
	sc := objectScanner{b: data}
	if !sc.open() {
		return f, errors.New("not a JSON object")
	}
	var seen uint
	for {
		key, val, ok := sc.member()
		if !ok {
			return f, nil
		}
		if len(key) > 0 && key[0] == '"' {
			// An escaped key: compared by what it says.
			var k string
			if err := json.Unmarshal(key, &k); err != nil {
				return f, fmt.Errorf("key: %w", err)
			}
			key = []byte(k)
		}
		bit, known := clientFields[string(key)]
		if !known {
			continue
		}
		if seen&bit != 0 {
			return f, fmt.Errorf("duplicate key %q", key)
		}
		seen |= bit
		var err error
		switch string(key) {
		case "type":
			err = json.Unmarshal(val, &f.Type)
		case "ref":
			err = json.Unmarshal(val, &f.Ref)
		case "data":
			f.Data = val
		case "echo":
			err = json.Unmarshal(val, &f.Echo)
		case "ephemeral":
			err = json.Unmarshal(val, &f.Ephemeral)
		case "key":
			err = json.Unmarshal(val, &f.Key)
		case "meta":
			f.Meta = bytes.Clone(val) // kept by presence
		case "seq":
			err = json.Unmarshal(val, &f.Seq)
		}
		if err != nil {
			return f, fmt.Errorf("field %s: %w", key, err)
		}
	}
}

// objectScanner walks the members of one JSON object that json.Valid
// accepted, each byte once.
type objectScanner struct {
	b []byte
	i int
}

func (s *objectScanner) skipSpace() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// open consumes the object's '{'.
func (s *objectScanner) open() bool {
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	return true
}

// member returns the next member's key (its bytes between the quotes, or
// the whole quoted string, quotes included, when it holds an escape) and
// its value's bytes; ok is false after the last one.
func (s *objectScanner) member() (key, val []byte, ok bool) {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ',' {
		s.i++
		s.skipSpace()
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false // '}'
	}
	start := s.i
	escaped := s.skipString()
	key = s.b[start+1 : s.i-1]
	if escaped {
		key = s.b[start:s.i]
	}
	s.skipSpace()
	s.i++ // ':'
	s.skipSpace()
	vstart := s.i
	s.skipValue()
	return key, s.b[vstart:s.i], true
}

// skipString moves past the string starting at s.i and reports whether it
// holds an escape.
func (s *objectScanner) skipString() bool {
	escaped := false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++
		case '"':
			s.i++
			return escaped
		}
	}
	return escaped
}

// skipValue moves past the value starting at s.i.
func (s *objectScanner) skipValue() {
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			s.skipString()
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return
			}
		}
		s.i++
	}
}
