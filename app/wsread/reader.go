// Package wsread reads the frames a WebSocket client sends to the server
// (RFC 6455, no extensions) and validates them. The server reads its
// sockets with it instead of the WebSocket library's reader, because that
// reader answers pings and protocol errors by writing to the socket
// itself: a second writer next to the connection's own. A Reader never
// writes; it reports what the connection's writer must answer.
package wsread

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"unicode/utf8"
)

// Kind is what a Message is.
type Kind int

// Kinds of messages.
const (
	Text Kind = iota + 1
	Binary
	Ping
	Pong
	Close
)

// Close codes a Reader asks the server to close with.
const (
	CloseProtocolError = 1002
	CloseInvalidUTF8   = 1007
	CloseNoStatus      = 1005
)

// Message is one data message (all its fragments) or control frame.
type Message struct {
	Kind Kind
	// Data is the payload. It is valid until the next call to Next. For a
	// message over the limit it holds the first limit+1 bytes.
	Data []byte
	// TooBig reports a data message over the limit; the rest of it is
	// skipped by the next call to Next. With DropTooBig, Data is empty
	// and nothing of the message was read.
	TooBig bool
	// OverBudget reports a data message refused because its bytes would
	// pass the Reader's Budget; Data is empty, nothing of it was read,
	// and the rest of it is skipped by the next call to Next.
	OverBudget bool
	// CloseCode and CloseReason are a Close frame's (CloseNoStatus when it
	// carried none).
	CloseCode   int
	CloseReason string
}

// ProtocolError is a frame that breaks the protocol: the connection must
// be closed with Code. Nothing after it can be read.
type ProtocolError struct {
	Code   int
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket protocol error %d: %s", e.Code, e.Reason)
}

func protocolError(format string, a ...any) error {
	return &ProtocolError{Code: CloseProtocolError, Reason: fmt.Sprintf(format, a...)}
}

// Reader reads client frames from r.
type Reader struct {
	r       *bufio.Reader // nil while parked (see Park)
	src     io.Reader
	bufSize int
	limit   int
	hdr     [14]byte
	ctl     [125]byte
	// The data message being read: its kind and what was read of it.
	inMsg bool
	kind  Kind
	buf   []byte
	// skipping: the rest of a message over the limit is read and thrown
	// away until its final fragment.
	skipping bool
	rest     uint64 // payload bytes of the current frame still to throw away
	broken   error  // a protocol error seen: every later call returns it
	budget   *Budget
	reserved int64 // of budget, for the message in buf
	dropBig  bool  // see DropTooBig
}

// NewReader returns a Reader of r whose data messages may be at most
// limit bytes.
func NewReader(r io.Reader, bufSize, limit int) *Reader {
	return &Reader{src: r, bufSize: bufSize, limit: limit}
}

// bufs holds the read buffers of parked Readers: an idle socket keeps none.
var bufs sync.Pool

// buffered is rd's read buffer, taken from the pool when it has none.
func (rd *Reader) buffered() *bufio.Reader {
	if rd.r == nil {
		if b, _ := bufs.Get().(*bufio.Reader); b != nil && b.Size() == rd.bufSize {
			b.Reset(rd.src)
			rd.r = b
		} else {
			rd.r = bufio.NewReaderSize(rd.src, rd.bufSize)
		}
	}
	return rd.r
}

// Idle reports whether rd is between frames with nothing read ahead: the
// next byte it needs is a frame's first, and waiting for it may be left to
// a readiness notification (see Park). A message's later fragments may
// still be due. Only there may the source fail a read for want of bytes
// and be read again later: once a frame's first byte is read, its source
// must wait for the rest.
func (rd *Reader) Idle() bool {
	return rd.rest == 0 && (rd.r == nil || rd.r.Buffered() == 0)
}

// Park lets go of what an Idle reader does not need while it waits: its
// read buffer, and the message buffer when no message is in progress. The
// next call to Next takes them again.
func (rd *Reader) Park() {
	if !rd.Idle() {
		return
	}
	if rd.r != nil {
		rd.r.Reset(nil)
		bufs.Put(rd.r)
		rd.r = nil
	}
	if !rd.inMsg || rd.skipping {
		rd.releaseBudget()
		if cap(rd.buf) > parkKeep {
			rd.buf = nil
		}
	}
}

// parkKeep is the message buffer a parked Reader keeps: a socket that
// sends small frames does not allocate one per frame.
const parkKeep = 256

// UseBudget makes rd reserve its messages over SmallMessage in b.
func (rd *Reader) UseBudget(b *Budget) { rd.budget = b }

// DropTooBig makes rd refuse a message as soon as a frame header says it
// passes the limit, before its payload arrives, instead of reading its
// first limit+1 bytes: for a caller that never looks at such a message,
// the limit is large, and holding (and waiting for) that much to throw it
// away would cost memory and in-flight budget other clients need.
func (rd *Reader) DropTooBig() { rd.dropBig = true }

// Release gives back what rd holds of its Budget; the socket's read loop
// calls it when it ends.
func (rd *Reader) Release() {
	rd.releaseBudget()
	rd.buf = nil
	if rd.r != nil {
		rd.r.Reset(nil)
		bufs.Put(rd.r)
		rd.r = nil
	}
}

func (rd *Reader) releaseBudget() {
	if rd.reserved > 0 {
		rd.budget.release(rd.reserved)
		rd.reserved = 0
	}
}

// retainMax bounds the message buffer kept between messages, so one large
// message does not stay with an idle connection.
const retainMax = 64 << 10

type header struct {
	fin    bool
	op     byte
	masked bool
	n      uint64
	mask   [4]byte
}

func (rd *Reader) header() (header, error) {
	var h header
	b := rd.hdr[:2]
	if _, err := io.ReadFull(rd.r, b); err != nil {
		return h, err
	}
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, protocolError("reserved bits set without an extension")
	}
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n := uint64(b[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(rd.r, rd.hdr[2:4]); err != nil {
			return h, err
		}
		n = uint64(binary.BigEndian.Uint16(rd.hdr[2:4]))
		if n < 126 {
			return h, protocolError("length not in its shortest form")
		}
	case 127:
		if _, err := io.ReadFull(rd.r, rd.hdr[2:10]); err != nil {
			return h, err
		}
		n = binary.BigEndian.Uint64(rd.hdr[2:10])
		if n>>63 != 0 {
			return h, protocolError("length over 2^63")
		}
		if n <= 0xffff {
			return h, protocolError("length not in its shortest form")
		}
	}
	h.n = n
	if !h.masked {
		return h, protocolError("client frames must be masked")
	}
	if _, err := io.ReadFull(rd.r, h.mask[:]); err != nil {
		return h, err
	}
	return h, nil
}

func unmask(b []byte, mask [4]byte, pos uint64) {
	for i := range b {
		b[i] ^= mask[(pos+uint64(i))&3]
	}
}

// Next returns the next data message or control frame. An error is the
// end of the socket (io.EOF or a read error) or a *ProtocolError.
func (rd *Reader) Next() (Message, error) {
	if rd.broken != nil {
		return Message{}, rd.broken
	}
	rd.buffered()
	m, err := rd.next()
	var pe *ProtocolError
	if errors.As(err, &pe) {
		rd.broken = err
	}
	return m, err
}

func (rd *Reader) next() (Message, error) {
	if rd.rest > 0 {
		n := rd.rest
		rd.rest = 0
		if _, err := io.CopyN(io.Discard, rd.r, int64(n)); err != nil {
			return Message{}, err
		}
	}
	if !rd.inMsg || rd.skipping {
		// The last message was handled: its bytes leave the budget.
		rd.releaseBudget()
		if cap(rd.buf) > retainMax {
			rd.buf = nil
		}
		rd.buf = rd.buf[:0]
	}
	for {
		h, err := rd.header()
		if err != nil {
			return Message{}, err
		}
		switch h.op {
		case 0x8, 0x9, 0xA:
			// Also between the fragments of a message, which goes on
			// after it.
			return rd.control(h)
		case 0x0:
			if !rd.inMsg {
				return Message{}, protocolError("continuation frame without a message to continue")
			}
		case 0x1, 0x2:
			if rd.inMsg {
				return Message{}, protocolError("new message before the last one's final fragment")
			}
			rd.inMsg, rd.kind = true, Text
			if h.op == 0x2 {
				rd.kind = Binary
			}
		default:
			return Message{}, protocolError("unknown opcode %d", h.op)
		}
		if rd.skipping {
			if _, err := io.CopyN(io.Discard, rd.r, int64(h.n)); err != nil {
				return Message{}, err
			}
			if h.fin {
				rd.inMsg, rd.skipping = false, false
			}
			continue
		}
		if rd.dropBig && uint64(len(rd.buf))+h.n > uint64(rd.limit) {
			// Skipped lazily, as a message over the budget.
			rd.dropMessage(h)
			return Message{Kind: rd.kind, TooBig: true}, nil
		}
		// Read at most limit+1 bytes of the message; the rest is skipped.
		take := min(h.n, uint64(rd.limit+1-len(rd.buf)))
		if need := int64(len(rd.buf)) + int64(take); rd.budget != nil && need > SmallMessage && need > rd.reserved {
			if !rd.budget.reserve(need - rd.reserved) {
				// Refused before its payload is read: the payload is
				// thrown away, lazily, so the refusal is reported now.
				rd.dropMessage(h)
				return Message{Kind: rd.kind, OverBudget: true}, nil
			}
			rd.reserved = need
		}
		start := len(rd.buf)
		rd.buf = slices.Grow(rd.buf, int(take))[:start+int(take)]
		if _, err := io.ReadFull(rd.r, rd.buf[start:]); err != nil {
			return Message{}, err
		}
		unmask(rd.buf[start:], h.mask, 0)
		if len(rd.buf) > rd.limit {
			if rest := h.n - take; rest > 0 {
				if _, err := io.CopyN(io.Discard, rd.r, int64(rest)); err != nil {
					return Message{}, err
				}
			}
			if h.fin {
				rd.inMsg = false
			} else {
				rd.skipping = true
			}
			return Message{Kind: rd.kind, Data: rd.buf, TooBig: true}, nil
		}
		if h.fin {
			rd.inMsg = false
			if rd.kind == Text && !utf8.Valid(rd.buf) {
				return Message{}, &ProtocolError{Code: CloseInvalidUTF8, Reason: "text frame is not valid UTF-8"}
			}
			return Message{Kind: rd.kind, Data: rd.buf}, nil
		}
	}
}

// control reads a control frame's payload.
func (rd *Reader) control(h header) (Message, error) {
	if !h.fin {
		return Message{}, protocolError("fragmented control frame")
	}
	if h.n > 125 {
		return Message{}, protocolError("control frame over 125 bytes")
	}
	p := rd.ctl[:h.n]
	if _, err := io.ReadFull(rd.r, p); err != nil {
		return Message{}, err
	}
	unmask(p, h.mask, 0)
	switch h.op {
	case 0x9:
		return Message{Kind: Ping, Data: p}, nil
	case 0xA:
		return Message{Kind: Pong, Data: p}, nil
	}
	m := Message{Kind: Close, CloseCode: CloseNoStatus}
	switch {
	case len(p) == 1:
		return Message{}, protocolError("close frame with a 1-byte payload")
	case len(p) >= 2:
		m.CloseCode = int(binary.BigEndian.Uint16(p))
		if !validCloseCode(m.CloseCode) {
			return Message{}, protocolError("close code %d is not allowed on the wire", m.CloseCode)
		}
		if !utf8.Valid(p[2:]) {
			return Message{}, &ProtocolError{Code: CloseInvalidUTF8, Reason: "close reason is not valid UTF-8"}
		}
		m.CloseReason = string(p[2:])
	}
	return m, nil
}

func validCloseCode(c int) bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1011, c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// dropMessage gives up the message whose frame h starts: the frame's
// payload and the message's later frames are skipped as they arrive, and
// what was read and reserved of it is let go.
func (rd *Reader) dropMessage(h header) {
	rd.rest = h.n
	if h.fin {
		rd.inMsg = false
	} else {
		rd.skipping = true
	}
	rd.releaseBudget()
	rd.buf = nil
}
