package main

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/rooms"
)

// wsTransport writes server frames straight to the socket: a batch of
// queued frames becomes one write system call. Server frames are unmasked
// and uncompressed, so framing is a small header. Every write to the socket
// goes through the connection's writer, which is what makes this safe: the
// reader never writes (ping and close replies are queued, see ws.go).
type wsTransport struct {
	nc           net.Conn
	raw          syscall.RawConn // nil when the socket has no file descriptor
	op           byte            // opText, or opBinary for Yjs sockets
	writeTimeout time.Duration
	closeWait    time.Duration // after our close frame, for the peer's answer
	armed        time.Time     // when the write deadline was last pushed forward
	pending      []byte        // the unwritten rest of a TryWrite, written first
	onWrite      func(frames int)
	rw           rawWrite
	rwFn         func(fd uintptr) bool // rw.do
	one          [1][]byte             // TryWrite's batch of one, without an allocation
	aborted      atomic.Bool           // Abort was called: the socket's reads end (sockSource)
}

const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// newWSTransport writes to nc, the socket under a WebSocket (socketOf),
// bounding each write by tm.WriteTimeout and the wait for the peer's
// answer to our close frame by tm.Wait: the same timings its Conn gets.
func newWSTransport(nc net.Conn, tm rooms.CloseTimings, onWrite func(int)) *wsTransport {
	t := &wsTransport{nc: nc, op: opText, writeTimeout: tm.WriteTimeout, closeWait: tm.Wait, onWrite: onWrite}
	t.rwFn = t.rw.do
	if sc, ok := t.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

// socketOf returns the TCP connection under ws. ws.NetConn() is fasthttp's
// hijacked connection, whose Close does nothing (fasthttp closes the socket
// only when the handler returns), so Abort through it could not end a
// socket while the handler runs: a writer blocked on a peer that does not
// read stayed blocked until the write timeout. Writes and deadlines are the
// same on both; reads keep going through ws and its buffered reader.
func socketOf(ws *websocket.Conn) net.Conn {
	nc := ws.NetConn()
	if h, ok := nc.(interface{ UnsafeConn() net.Conn }); ok {
		return h.UnsafeConn()
	}
	return nc
}

func appendFrame(b []byte, op byte, payload []byte) []byte {
	n := len(payload)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, 0, 0)
		binary.BigEndian.PutUint16(b[len(b)-2:], uint16(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(b[len(b)-8:], uint64(n))
	}
	return append(b, payload...)
}

// write writes b whole, after what a TryWrite left pending. The write
// deadline bounds a write to a peer that stopped reading; pushing it forward
// costs a timer update, so it is re-armed at most once a second (a write
// then has between writeTimeout-1s and writeTimeout).
func (t *wsTransport) write(b []byte) error {
	if err := t.arm(); err != nil {
		return err
	}
	if len(t.pending) > 0 {
		if _, err := t.nc.Write(t.pending); err != nil {
			return err
		}
		t.pending = t.pending[:0]
	}
	_, err := t.nc.Write(b)
	return err
}

// arm pushes the write deadline forward when it was last set over a second
// ago. Inline writes need it too: the poller refuses any write, raw ones
// included, once the deadline has passed.
func (t *wsTransport) arm() error {
	if now := time.Now(); now.Sub(t.armed) > time.Second {
		if err := t.nc.SetWriteDeadline(now.Add(t.writeTimeout)); err != nil {
			return err
		}
		t.armed = now
	}
	return nil
}

// TryWrite implements rooms.InlineWriter: one non-blocking write(2) of the
// frame from the caller's goroutine, so a delivery to a connection that
// keeps up costs no goroutine and no scheduler hand-off. Whatever the
// socket buffer did not take is kept and written first by the writer.
func (t *wsTransport) TryWrite(frame []byte) (bool, error) {
	t.one[0] = frame
	done, err := t.TryWriteBatch(t.one[:])
	t.one[0] = nil
	return done, err
}

// TryWriteBatch implements rooms.BatchInlineWriter: frames in one
// non-blocking write(2), the rest kept for the writer as TryWrite does.
func (t *wsTransport) TryWriteBatch(frames [][]byte) (bool, error) {
	if t.raw == nil || len(t.pending) > 0 {
		// No inline write possible: keep the frames for the writer, which
		// sends what is pending before anything else.
		for _, f := range frames {
			t.pending = appendFrame(t.pending, t.op, f)
		}
		return false, nil
	}
	if err := t.arm(); err != nil {
		return false, err
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range frames {
		b = appendFrame(b, t.op, f)
	}
	t.rw.b = b
	err := t.raw.Write(t.rwFn)
	n, werr := t.rw.n, t.rw.err
	t.rw = rawWrite{}
	if err == nil && werr != nil && werr != syscall.EAGAIN {
		err = werr
	}
	if n < 0 {
		n = 0
	}
	if err == nil && n < len(b) {
		t.pending = append(t.pending[:0], b[n:]...)
	}
	done := err == nil && n == len(b)
	if cap(b) <= 1<<20 {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	if err != nil {
		return false, err
	}
	if t.onWrite != nil && n > 0 {
		t.onWrite(len(frames))
	}
	return done, nil
}

// rawWrite is one non-blocking write(2) through syscall.RawConn.Write. Its
// method value is made once per transport: a closure per call would be an
// allocation per delivered frame.
type rawWrite struct {
	b   []byte
	n   int
	err error
}

// do makes a single attempt: Go sockets are non-blocking, and returning
// true tells RawConn.Write not to wait for the socket to become writable.
func (w *rawWrite) do(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			return true
		}
	}
}

// WriteFrames implements rooms.Transport.
func (t *wsTransport) WriteFrames(frames [][]byte) error {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range frames {
		b = appendFrame(b, t.op, f)
	}
	err := t.write(b)
	if cap(b) <= 1<<20 {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	if err == nil && t.onWrite != nil {
		t.onWrite(len(frames))
	}
	return err
}

// WriteControl implements rooms.Transport for ping and pong.
func (t *wsTransport) WriteControl(op byte, payload []byte) error {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	var hdr [2 + 125]byte
	return t.write(appendFrame(hdr[:0], op, payload))
}

// WriteClose implements rooms.Transport: it sends the close frame and gives
// the peer a moment to answer before the reader stops waiting.
func (t *wsTransport) WriteClose(code int, reason string) error {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	var hdr [2 + 125]byte
	payload := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	payload = append(payload, reason...)
	err := t.write(appendFrame(hdr[:0], opClose, payload))
	// A reader waiting mid-frame times out; a parked socket has no
	// reader to time out, so the socket is ended for it.
	_ = t.nc.SetReadDeadline(time.Now().Add(t.closeWait))
	time.AfterFunc(t.closeWait, t.Abort)
	return err
}

// Abort implements rooms.Transport: it ends the socket for its reader and
// writer at once. A blocked read or write returns, and a parked socket
// becomes readable, so its reader runs and finds the end; the reader
// closes the socket when it finishes (wsSock.finish).
func (t *wsTransport) Abort() {
	// shutdown(2) alone would let a peer that keeps sending keep the
	// reader reading: its reads end here whatever still arrives.
	t.aborted.Store(true)
	if t.raw == nil {
		_ = t.nc.Close()
		return
	}
	err := t.raw.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	if err != nil {
		// Closed already.
		_ = t.nc.Close()
	}
}
