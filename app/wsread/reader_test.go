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

// headerOnly reads like a client that sent a frame's header and nothing of
// its payload yet: the header, then a read that blocks until released.
type headerOnly struct {
	hdr     []byte
	blocked chan struct{}
}

func (h *headerOnly) Read(p []byte) (int, error) {
	if len(h.hdr) > 0 {
		n := copy(p, h.hdr)
		h.hdr = h.hdr[n:]
		return n, nil
	}
	<-h.blocked
	return 0, io.EOF
}

// Large messages share one budget: a message whose declared bytes would
// pass it is refused from its header, before its payload arrives; small
// messages never touch it; a handled message gives its bytes back.
func TestBudget(t *testing.T) {
	const large = 100 << 10
	b := NewBudget(150 << 10)
	big := bytes.Repeat([]byte("y"), large)

	// One reader holds a large message it has not handled yet.
	first := NewReader(cat(frame(true, 2, big), frame(true, 2, []byte("small"))), 512, 1<<20)
	first.UseBudget(b)
	if m, err := first.Next(); err != nil || len(m.Data) != large || m.OverBudget {
		t.Fatalf("first large message: %d bytes, %+v", len(m.Data), err)
	}
	if b.Used() != large {
		t.Fatalf("budget used %d while the message is held, want %d", b.Used(), large)
	}

	// A second one declares as much and sends nothing more: refused at once.
	hdr := frame(true, 2, big)
	slow := &headerOnly{hdr: hdr[:14], blocked: make(chan struct{})}
	defer close(slow.blocked)
	second := NewReader(slow, 512, 1<<20)
	second.UseBudget(b)
	if m, err := second.Next(); err != nil || !m.OverBudget || len(m.Data) != 0 || m.Kind != Binary {
		t.Fatalf("message over the budget: %+v %v", m, err)
	}
	if b.Used() != large {
		t.Fatalf("a refused message holds budget: %d", b.Used())
	}

	// Small messages need none, even with the budget spent.
	third := NewReader(cat(frame(true, 2, bytes.Repeat([]byte("z"), SmallMessage))), 512, 1<<20)
	third.UseBudget(NewBudget(0))
	if m, err := third.Next(); err != nil || m.OverBudget || len(m.Data) != SmallMessage {
		t.Fatalf("small message with no budget: %+v %v", m.OverBudget, err)
	}

	// Handled (the next call to Next): the bytes are back.
	if m, err := first.Next(); err != nil || string(m.Data) != "small" {
		t.Fatalf("after the large message: %+v %v", m, err)
	}
	if b.Used() != 0 {
		t.Fatalf("budget used %d after the message was handled", b.Used())
	}
	// Release gives back what a reader ending mid-message holds.
	r := NewReader(cat(frame(true, 2, big)), 512, 1<<20)
	r.UseBudget(b)
	if _, err := r.Next(); err != nil || b.Used() != large {
		t.Fatalf("held: %d %v", b.Used(), err)
	}
	r.Release()
	if b.Used() != 0 {
		t.Fatalf("budget used %d after Release", b.Used())
	}
}

// A refused message is skipped whole, fragments included, and the next
// message reads normally.
func TestOverBudgetSkipsTheMessage(t *testing.T) {
	big := bytes.Repeat([]byte("q"), 80<<10)
	rd := NewReader(cat(
		frame(false, 2, big),
		frame(true, 9, []byte("p")),
		frame(false, 0, big),
		frame(true, 0, big),
		frame(true, 2, []byte("next")),
	), 512, 1<<20)
	b := NewBudget(100 << 10)
	rd.UseBudget(b)
	// The first fragment fits; the ping between fragments comes first.
	if m, err := rd.Next(); err != nil || m.Kind != Ping || b.Used() != 80<<10 {
		t.Fatalf("first: %+v %v, used %d", m, err, b.Used())
	}
	// The second fragment would pass the budget.
	if m, err := rd.Next(); err != nil || !m.OverBudget {
		t.Fatalf("second fragment: %+v %v", m.OverBudget, err)
	}
	if m, err := rd.Next(); err != nil || string(m.Data) != "next" || b.Used() != 0 {
		t.Fatalf("after the refused message: %q (%d bytes) %v, used %d", m.Data, len(m.Data), err, b.Used())
	}
}

func TestDropTooBigRefusesFromTheHeader(t *testing.T) {
	big := bytes.Repeat([]byte("q"), 3000)
	for _, tc := range []struct {
		name   string
		frames [][]byte
	}{
		{"one frame", [][]byte{frame(true, 2, big)}},
		{"fragments", [][]byte{frame(false, 2, big[:600]), frame(false, 0, big[600:1200]), frame(true, 0, big[1200:])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The payload that passes the limit is never there: a reader
			// that waited for it would fail with io.ErrUnexpectedEOF.
			in := bytes.Join(append(tc.frames, frame(true, 2, []byte("next"))), nil)
			last := tc.frames[len(tc.frames)-1]
			cut := len(bytes.Join(tc.frames[:len(tc.frames)-1], nil)) + len(last) - len(big)/2
			rd := NewReader(&stopAt{b: in, at: cut}, 512, 1000)
			rd.DropTooBig()
			b := NewBudget(1 << 20)
			rd.UseBudget(b)
			m, err := rd.Next()
			if err != nil || !m.TooBig || len(m.Data) != 0 || b.Used() != 0 {
				t.Fatalf("got %+v %v, used %d; want TooBig with nothing read", m.TooBig, err, b.Used())
			}
		})
	}
	// What follows the dropped message is read as usual.
	rd := NewReader(cat(frame(false, 2, big[:600]), frame(true, 0, big[600:]), frame(true, 2, []byte("next"))), 512, 1000)
	rd.DropTooBig()
	if m, err := rd.Next(); err != nil || !m.TooBig {
		t.Fatalf("first: %+v %v", m.TooBig, err)
	}
	if m, err := rd.Next(); err != nil || string(m.Data) != "next" {
		t.Fatalf("after the dropped message: %q %v", m.Data, err)
	}
}

// stopAt reads b up to at, then blocks as a peer still sending: it fails
// the test's read with an error instead.
type stopAt struct {
	b  []byte
	at int
}

func (s *stopAt) Read(p []byte) (int, error) {
	if s.at == 0 {
		return 0, errors.New("read past the bytes that had arrived")
	}
	n := copy(p[:min(len(p), s.at)], s.b)
	s.b, s.at = s.b[n:], s.at-n
	return n, nil
}

// gated hands out its bytes only up to an end the test moves, and reports
// errEmpty (as a socket with nothing to read would) beyond it.
type gated struct {
	b   []byte
	end int
}

var errEmpty = errors.New("nothing to read yet")

func (g *gated) Read(p []byte) (int, error) {
	if len(g.b) == 0 || g.end == 0 {
		return 0, errEmpty
	}
	n := copy(p, g.b[:g.end])
	g.b, g.end = g.b[n:], g.end-n
	return n, nil
}

// A reader parked between frames lets its buffers go and reads on where it
// was: between messages, and between the fragments of one.
func TestParkBetweenFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1000)
	f1 := frame(true, 0x1, big)
	f2a := frame(false, 0x1, []byte("frag"))
	f2b := frame(true, 0x0, []byte("ment"))
	src := &gated{b: bytes.Join([][]byte{f1, f2a, f2b}, nil)}
	rd := NewReader(src, 64, 4096)
	if !rd.Idle() {
		t.Fatal("a new reader is not idle")
	}
	if _, err := rd.Next(); !errors.Is(err, errEmpty) {
		t.Fatalf("nothing to read: %v", err)
	}
	rd.Park()
	src.end = len(f1)
	m, err := rd.Next()
	if err != nil || string(m.Data) != string(big) {
		t.Fatalf("first message: %v", err)
	}
	if !rd.Idle() {
		t.Fatal("not idle after a whole message")
	}
	rd.Park()
	if rd.r != nil || rd.buf != nil {
		t.Fatalf("parked reader keeps a read buffer (%v) or a %d-byte message buffer", rd.r != nil, cap(rd.buf))
	}
	// The first fragment arrives, then the reader waits for the second.
	src.end = len(f2a)
	if _, err := rd.Next(); !errors.Is(err, errEmpty) {
		t.Fatalf("after one fragment: %v", err)
	}
	if !rd.Idle() {
		t.Fatal("not idle between fragments")
	}
	rd.Park()
	src.end = len(f2b)
	m, err = rd.Next()
	if err != nil || string(m.Data) != "fragment" {
		t.Fatalf("fragmented message: %q %v", m.Data, err)
	}
	rd.Release()
}
