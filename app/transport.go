package main

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/fasthttp/websocket"
	"golang.org/x/sys/unix"

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
	fd           int             // the socket's descriptor for inline writes; -1 when there is none
	op           byte            // opText, or opBinary for Yjs sockets
	writeTimeout time.Duration
	closeWait    time.Duration  // after our close frame, for the peer's answer
	armed        time.Time      // when the write deadline was last pushed forward
	pending      []byte         // the unwritten rest of a TryWrite, written first
	written      *atomic.Uint64 // frames written, the server's count (nil: not counted)
	one          [1][]byte      // TryWrite's batch of one, without an allocation
	// fdRefs keeps fd open while an inline write uses it: 2 per write in
	// flight, plus fdClosed once close ran. The socket is closed by close
	// or, when a write was in flight, by the write that ends last, so the
	// descriptor cannot be closed (and its number reused by another socket)
	// under a write.
	fdRefs atomic.Int32
	// aborted: Abort was called, and the socket's reads end (sockSource).
	aborted atomic.Bool
}

const fdClosed = 1

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
func newWSTransport(nc net.Conn, tm rooms.CloseTimings, written *atomic.Uint64) *wsTransport {
	t := &wsTransport{nc: nc, fd: inlineFD(nc), op: opText, writeTimeout: tm.WriteTimeout, closeWait: tm.Wait, written: written}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

// inlineFD returns the descriptor of nc's socket when inline writes may
// use it directly: a non-blocking socket (Go's own), so a write never
// waits. -1 otherwise.
func inlineFD(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if err := raw.Control(func(d uintptr) {
		if fl, err := unix.FcntlInt(d, unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK != 0 {
			fd = int(d)
		}
	}); err != nil {
		return -1
	}
	return fd
}

// socketOf returns the TCP connection under ws. ws.NetConn() is fasthttp's
// hijacked connection, which reads through the HTTP server's buffer; the
// socket is read and written directly once what that buffer held is taken
// (takeReadAhead), so nothing of the request outlives the upgrade.
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
// ago. Only the writer's blocking writes need it: inline writes go to the
// descriptor directly, never wait, and so do not read the clock.
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
//
// The write goes straight to the descriptor, not through the poller
// (RawConn.Write): the socket is non-blocking, so there is nothing to wait
// for, and the poller's locks, deadline check and state reset on the
// descriptor's cold cache lines were a good part of a delivery's cost. It
// is a raw system call too: the scheduler need not know of a call that
// cannot block, and one it sees may have its processor handed off by the
// system monitor, which then keeps waking every 20 µs to look again.
func (t *wsTransport) TryWriteBatch(frames [][]byte) (bool, error) {
	if t.fd < 0 || len(t.pending) > 0 || !t.acquireFD() {
		// No inline write possible: keep the frames for the writer, which
		// sends what is pending before anything else (or fails on the
		// ended socket).
		for _, f := range frames {
			t.pending = appendFrame(t.pending, t.op, f)
		}
		return false, nil
	}
	var n int
	var errno syscall.Errno
	if len(frames) == 1 && len(frames[0]) <= inlineCopyMax {
		// One small frame: header and payload in one buffer on the stack.
		var buf [10 + inlineCopyMax]byte
		b := appendFrame(buf[:0], t.op, frames[0])
		n, errno = sendNonBlocking(t.fd, b)
		t.keepRest(b, n, errno)
		t.releaseFD()
		return t.wrote(len(frames), n, len(b), errno)
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range frames {
		b = appendFrame(b, t.op, f)
	}
	n, errno = sendNonBlocking(t.fd, b)
	t.keepRest(b, n, errno)
	t.releaseFD()
	if cap(b) <= 1<<20 {
		*bp = b[:0]
		bufPool.Put(bp)
	}
	return t.wrote(len(frames), n, len(b), errno)
}

// inlineCopyMax is the largest frame TryWrite frames on its stack.
const inlineCopyMax = 1024

// keepRest keeps what a write of b did not take, for the writer.
func (t *wsTransport) keepRest(b []byte, n int, errno syscall.Errno) {
	if errno != 0 && errno != syscall.EAGAIN {
		return
	}
	if n < 0 {
		n = 0
	}
	if n < len(b) {
		t.pending = append(t.pending[:0], b[n:]...)
	}
}

// wrote is TryWriteBatch's result for a write of size bytes that took n.
func (t *wsTransport) wrote(frames, n, size int, errno syscall.Errno) (bool, error) {
	if errno != 0 && errno != syscall.EAGAIN {
		return false, errno
	}
	if n > 0 && t.written != nil {
		t.written.Add(uint64(frames))
	}
	return n == size, nil
}

// sendNonBlocking makes one write(2) of b to the non-blocking socket fd,
// retried only when a signal interrupted it. MSG_NOSIGNAL: a reset peer
// is an EPIPE here, not a signal to the process.
func sendNonBlocking(fd int, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			unix.MSG_DONTWAIT|msgNoSignal, 0, 0)
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// acquireFD reports whether fd is still open, and keeps it open until
// releaseFD.
func (t *wsTransport) acquireFD() bool {
	for {
		r := t.fdRefs.Load()
		if r&fdClosed != 0 {
			return false
		}
		if t.fdRefs.CompareAndSwap(r, r+2) {
			return true
		}
	}
}

// releaseFD ends an inline write's use of fd, closing the socket when
// close ran meanwhile.
func (t *wsTransport) releaseFD() {
	if t.fdRefs.Add(-2) == fdClosed {
		_ = t.nc.Close()
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
	if err == nil && t.written != nil {
		t.written.Add(uint64(len(frames)))
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
// closes the socket when it finishes (wsSock.finish, through close).
// shutdown(2) leaves the descriptor open, so an inline write in flight
// still writes to this socket (and fails).
func (t *wsTransport) Abort() {
	// shutdown(2) alone would let a peer that keeps sending keep the
	// reader reading: its reads end here whatever still arrives.
	t.aborted.Store(true)
	if t.raw == nil {
		t.close()
		return
	}
	if err := t.raw.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) }); err != nil {
		t.close() // closed already
	}
}

// close closes the socket at once, or, when an inline write is in flight,
// as soon as it returns (a few microseconds: it does not wait), so the
// descriptor's number is never reused under a write. Every close of a
// socket with a transport goes through here.
func (t *wsTransport) close() {
	if r := t.fdRefs.Or(fdClosed); r&^fdClosed == 0 || t.fd < 0 {
		_ = t.nc.Close()
	}
}
