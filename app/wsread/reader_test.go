package wsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"unicode/utf8"
)

// frame encodes a client frame: fin, opcode, payload, masked unless
// unmasked is set; rsv sets the reserved bits.
func frame(fin bool, op byte, payload []byte, opts ...string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	masked := true
	for _, o := range opts {
		switch o {
		case "rsv":
			b0 |= 0x40
		case "unmasked":
			masked = false
		}
	}
	out := []byte{b0}
	mbit := byte(0x80)
	if !masked {
		mbit = 0
	}
	n := len(payload)
	switch {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126, 0, 0)
		binary.BigEndian.PutUint16(out[2:], uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, mask[:]...)
	p := append([]byte(nil), payload...)
	unmask(p, mask, 0)
	return append(out, p...)
}

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func cat(frames ...[]byte) io.Reader { return bytes.NewReader(bytes.Join(frames, nil)) }

func TestMessages(t *testing.T) {
	rd := NewReader(cat(
		frame(true, 1, []byte(`{"type":"ping"}`)),
		frame(false, 1, []byte(`{"a":`)),
		frame(true, 9, []byte("hi")), // a ping between fragments
		frame(false, 0, []byte(`"héllo`)),
		frame(true, 0, []byte(`"}`)),
		frame(true, 2, []byte{0, 1, 2}),
		frame(true, 10, nil),
		frame(true, 8, closePayload(1000, "bye")),
	), 512, 64)
	want := []string{`1:{"type":"ping"}`, "3:hi", `1:{"a":"héllo"}`, "2:\x00\x01\x02", "4:", "5:1000 bye"}
	for i, w := range want {
		m, err := rd.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got := fmt.Sprintf("%d:%s", m.Kind, m.Data)
		if m.Kind == Close {
			got = fmt.Sprintf("%d:%d %s", m.Kind, m.CloseCode, m.CloseReason)
		}
		if got != w {
			t.Fatalf("message %d = %q, want %q", i, got, w)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

// A message over the limit is reported at once with its first limit+1
// bytes, its rest is skipped, and the next message reads normally.
func TestTooBig(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100)
	rd := NewReader(cat(
		frame(false, 1, big[:60]),
		frame(false, 0, big[60:]),
		frame(true, 0, big),
		frame(true, 1, []byte("after")),
		frame(true, 1, big),
	), 512, 50)
	m, err := rd.Next()
	if err != nil || !m.TooBig || len(m.Data) != 51 || m.Kind != Text {
		t.Fatalf("too big: %+v %v", m, err)
	}
	if m, err := rd.Next(); err != nil || m.TooBig || string(m.Data) != "after" {
		t.Fatalf("after the big one: %+v %v", m, err)
	}
	if m, err := rd.Next(); err != nil || !m.TooBig {
		t.Fatalf("single big frame: %+v %v", m, err)
	}
}

func TestProtocolErrors(t *testing.T) {
	cases := map[string]struct {
		in   []byte
		code int
	}{
		"unmasked":                {frame(true, 1, []byte("x"), "unmasked"), CloseProtocolError},
		"reserved bits":           {frame(true, 1, []byte("x"), "rsv"), CloseProtocolError},
		"unknown opcode":          {frame(true, 3, nil), CloseProtocolError},
		"lone continuation":       {frame(true, 0, []byte("x")), CloseProtocolError},
		"message inside message":  {append(frame(false, 1, []byte("a")), frame(true, 1, []byte("b"))...), CloseProtocolError},
		"fragmented control":      {frame(false, 9, nil), CloseProtocolError},
		"long control":            {frame(true, 9, bytes.Repeat([]byte("p"), 126)), CloseProtocolError},
		"1-byte close":            {frame(true, 8, []byte{3}), CloseProtocolError},
		"close code 1005":         {frame(true, 8, closePayload(1005, "")), CloseProtocolError},
		"close code 2000":         {frame(true, 8, closePayload(2000, "")), CloseProtocolError},
		"invalid UTF-8 text":      {frame(true, 1, []byte{'"', 0xff, 0xfe, '"'}), CloseInvalidUTF8},
		"invalid UTF-8 fragments": {append(frame(false, 1, []byte{0xe2, 0x82}), frame(true, 0, []byte{0x28})...), CloseInvalidUTF8},
		"invalid close reason":    {frame(true, 8, append(closePayload(1000, ""), 0xff)), CloseInvalidUTF8},
		"non-minimal length":      {[]byte{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'}, CloseProtocolError},
		"length over 2^63":        {[]byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, CloseProtocolError},
	}
	for name, c := range cases {
		rd := NewReader(bytes.NewReader(c.in), 512, 1024)
		_, err := rd.Next()
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != c.code {
			t.Errorf("%s: %v, want a protocol error %d", name, err, c.code)
			continue
		}
		if _, err2 := rd.Next(); !errors.Is(err2, err) {
			t.Errorf("%s: the reader went on after a protocol error: %v", name, err2)
		}
	}
	// A split UTF-8 sequence across fragments is valid once whole.
	rd := NewReader(cat(frame(false, 1, []byte{0xe2, 0x82}), frame(true, 0, []byte{0xac})), 512, 1024)
	if m, err := rd.Next(); err != nil || string(m.Data) != "€" {
		t.Fatalf("euro sign in two fragments: %q %v", m.Data, err)
	}
}

// FuzzReader: whatever the bytes, the reader never panics, never returns
// a text message that is not valid UTF-8 or a data message over the limit
// that is not marked, and stops for good at a protocol error.
func FuzzReader(f *testing.F) {
	f.Add(frame(true, 1, []byte(`{"type":"publish","data":"\xff\xfe"}`)))
	f.Add(frame(true, 1, []byte(`{"type":"presence","meta":null}`)))
	f.Add(frame(true, 1, []byte(`{"type":"state","seq":1,"data":{}}`)))
	f.Add(frame(true, 1, []byte("x"), "unmasked"))
	f.Add(frame(true, 1, []byte("x"), "rsv"))
	f.Add(append(frame(false, 1, []byte{0xe2, 0x82}), frame(true, 0, []byte{0xac})...))
	f.Add(frame(true, 8, closePayload(1000, "bye")))
	f.Add(frame(true, 1, bytes.Repeat([]byte("a"), 300)))
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 256
		rd := NewReader(bytes.NewReader(in), 64, limit)
		for i := 0; i < 1000; i++ {
			m, err := rd.Next()
			if err != nil {
				var pe *ProtocolError
				if errors.As(err, &pe) {
					if _, again := rd.Next(); !errors.Is(again, err) {
						t.Fatalf("read on after a protocol error")
					}
				}
				return
			}
			switch {
			case m.TooBig && len(m.Data) != limit+1:
				t.Fatalf("too big message with %d bytes", len(m.Data))
			case !m.TooBig && (m.Kind == Text || m.Kind == Binary) && len(m.Data) > limit:
				t.Fatalf("message of %d bytes not marked too big", len(m.Data))
			case m.Kind == Text && !m.TooBig && !utf8.Valid(m.Data):
				t.Fatalf("invalid UTF-8 text message %q", m.Data)
			}
		}
	})
}
