package main

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawTCPConn is a TCP connection whose reads and writes are raw system
// calls made through the poller's RawConn: the poller still waits for the
// socket (and keeps the deadlines), but the calls themselves are not
// announced to the scheduler. An announced call on an otherwise idle
// instance wakes the runtime's system monitor out of its deep sleep, and
// the monitor then wakes every 20 µs or so for as long as anything runs:
// on the Redis connections (one pub/sub read per message on a subscriber
// instance, a round trip per publish on a publisher) that cost more CPU
// than the calls themselves. A read or write of a non-blocking socket
// never blocks, so the scheduler has nothing to hand off.
type rawTCPConn struct {
	*net.TCPConn
	raw      syscall.RawConn
	rmu, wmu sync.Mutex // one Read and one Write at a time share rw
	rw       rawIO      // the calls in progress
}

type rawIO struct {
	rb, wb        []byte
	rn, wn        int
	rerr, werr    syscall.Errno
	readFn, wrtFn func(fd uintptr) bool
}

// newRawTCPConn wraps c; a connection it cannot wrap is returned as it is.
func newRawTCPConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawTCPConn{TCPConn: tc, raw: raw}
	r.rw.readFn = r.rw.read
	r.rw.wrtFn = r.rw.write
	return r
}

// rawDialer wraps the TCP connections dial makes in rawTCPConn.
func rawDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newRawTCPConn(c), nil
	}
}

// read is one read(2) attempt; false asks the poller to wait.
func (w *rawIO) read(fd uintptr) bool {
	n, e := readNonBlocking(fd, w.rb)
	if e == syscall.EAGAIN {
		return false
	}
	w.rn, w.rerr = n, e
	return true
}

// readNonBlocking makes one read(2) of the non-blocking socket fd into b,
// retried only when a signal interrupted it. A raw call: it cannot block,
// so the scheduler need not know of it (see rawTCPConn).
func readNonBlocking(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e != syscall.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(r), 0
		}
	}
}

// write writes wb whole, waiting on the poller while the socket is full.
func (w *rawIO) write(fd uintptr) bool {
	for w.wn < len(w.wb) {
		b := w.wb[w.wn:]
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), msgNoSignal, 0, 0)
		switch e {
		case 0:
			w.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.werr = e
			return true
		}
	}
	return true
}

// Read implements net.Conn.
func (c *rawTCPConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return c.TCPConn.Read(b)
	}
	c.rmu.Lock()
	w := &c.rw
	w.rb, w.rn, w.rerr = b, 0, 0
	err := c.raw.Read(w.readFn)
	n, errno := w.rn, w.rerr
	w.rb = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn.
func (c *rawTCPConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return c.TCPConn.Write(b)
	}
	c.wmu.Lock()
	w := &c.rw
	w.wb, w.wn, w.werr = b, 0, 0
	err := c.raw.Write(w.wrtFn)
	n, errno := w.wn, w.werr
	w.wb = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError wraps err as net.Conn's own methods do, so timeouts and closed
// connections read the same (net.Error, net.ErrClosed).
func (c *rawTCPConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
