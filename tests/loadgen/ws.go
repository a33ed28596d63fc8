package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wsConn is a minimal RFC 6455 client connection, light enough for 10,000
// of them in one process: one bufio.Reader, no goroutine of its own (the
// caller reads on one goroutine), writes serialised by a mutex, and small
// frames handed to the caller straight out of the read buffer (no copy,
// no allocation per frame).
type wsConn struct {
	nc net.Conn
	br *bufio.Reader

	wmu  sync.Mutex
	wbuf []byte
	mask uint32

	big  []byte // frames larger than the read buffer, and fragmented messages
	frag bool   // poller: inside a fragmented message

	// After detach (see poller) the socket is a raw non-blocking fd read
	// by a poller; fdClosed (under wmu) once the poller closed it.
	fd       int
	fdClosed bool

	// closing is set when this side ends the socket on purpose.
	closing atomic.Bool

	// CloseCode is the code of the server's close frame (0: none seen).
	CloseCode   int
	CloseReason string
}

// errClosed is returned by next after a close frame arrived.
var errClosed = errors.New("websocket: closed by the server")

// upgradeError is a refused upgrade: the plain HTTP answer of the server.
type upgradeError struct {
	Status int
	Body   string
}

func (e *upgradeError) Error() string {
	return fmt.Sprintf("upgrade refused: HTTP %d %s", e.Status, strings.TrimSpace(e.Body))
}

type dialOptions struct {
	ReadBuffer int // bufio size (default 4096)
	RcvBuf     int // SO_RCVBUF before connect (0: kernel default)
	Timeout    time.Duration
	Query      string // more query parameters, "&k=v…"
}

// dialWS connects to ws://addr/ws/room with token and completes the
// handshake. The welcome frame is not read.
func dialWS(ctx context.Context, addr, room, token string, o dialOptions) (*wsConn, error) {
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 4096
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: o.Timeout}
	if o.RcvBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RcvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &wsConn{nc: nc, br: bufio.NewReaderSize(nc, o.ReadBuffer)}
	if err := c.handshake(addr, room, token, o.Query, o.Timeout); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *wsConn) handshake(addr, room, token, query string, timeout time.Duration) error {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	c.mask = binary.LittleEndian.Uint32(k[:4]) | 1
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	req := "GET /ws/" + room + "?token=" + url.QueryEscape(token) + query + " HTTP/1.1\r\n" +
		"Host: " + addr + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("read upgrade answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return &upgradeError{Status: resp.StatusCode, Body: string(body)}
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		return errors.New("upgrade: bad Sec-WebSocket-Accept")
	}
	_ = c.nc.SetDeadline(time.Time{})
	return nil
}

const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// answerClose records the server's close frame (payload p), echoes its
// code and returns errClosed.
func (c *wsConn) answerClose(p []byte) error {
	code, reason := 1005, ""
	if len(p) >= 2 {
		code, reason = int(binary.BigEndian.Uint16(p[:2])), string(p[2:])
	}
	c.CloseCode, c.CloseReason = code, reason
	if code == 1005 {
		_ = c.writeFrame(opClose, nil)
	} else {
		var reply [2]byte
		binary.BigEndian.PutUint16(reply[:], uint16(code))
		_ = c.writeFrame(opClose, reply[:])
	}
	return errClosed
}

// headerLen is the length of the frame header that h (at least 2 bytes)
// starts: 2 to 14 bytes, with the extended length and the mask key.
func headerLen(h []byte) int {
	hl := 2
	switch h[1] & 0x7f {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if h[1]&0x80 != 0 {
		hl += 4
	}
	return hl
}

// parseHeader reads the frame header at the start of h, which holds at
// least headerLen(h) bytes; hl includes the mask key when masked.
func parseHeader(h []byte) (fin bool, op byte, masked bool, n, hl int, err error) {
	fin, op, masked = h[0]&0x80 != 0, h[0]&0x0f, h[1]&0x80 != 0
	n, hl = int(h[1]&0x7f), 2
	switch n {
	case 126:
		n, hl = int(binary.BigEndian.Uint16(h[2:4])), 4
	case 127:
		n64 := binary.BigEndian.Uint64(h[2:10])
		if n64 > 1<<30 {
			return fin, op, masked, 0, 0, fmt.Errorf("websocket: frame of %d bytes", n64)
		}
		n, hl = int(n64), 10
	}
	if masked {
		hl += 4
	}
	return fin, op, masked, n, hl, nil
}

// next returns the next data message (text or binary). Pings are answered
// and pongs skipped here. The payload is valid until the next call. After a
// close frame it answers it and returns errClosed with CloseCode set.
func (c *wsConn) next() (op byte, payload []byte, err error) {
	var msgOp byte
	fragmented := false
	for {
		h, err := c.br.Peek(2)
		if err != nil {
			return 0, nil, err
		}
		if h, err = c.br.Peek(headerLen(h)); err != nil {
			return 0, nil, err
		}
		fin, fop, masked, n, hl, err := parseHeader(h)
		if err != nil {
			return 0, nil, err
		}
		var key [4]byte
		if masked {
			copy(key[:], h[hl-4:hl])
		}
		if _, err := c.br.Discard(hl); err != nil {
			return 0, nil, err
		}
		var p []byte
		inPlace := !fragmented && fin && n <= c.br.Size()
		if inPlace {
			// Zero copy: the bytes stay in the read buffer until the next read.
			if p, err = c.br.Peek(n); err != nil {
				return 0, nil, err
			}
			_, _ = c.br.Discard(n)
			if masked {
				// Servers do not mask; unmask a copy to keep the buffer intact.
				p = append(c.big[:0], p...)
				c.big = p
			}
		} else {
			start := 0
			if fragmented && fop == opCont {
				start = len(c.big)
			}
			if cap(c.big) < start+n {
				nb := make([]byte, start, start+n)
				copy(nb, c.big[:start])
				c.big = nb
			}
			c.big = c.big[:start+n]
			if _, err := io.ReadFull(c.br, c.big[start:]); err != nil {
				return 0, nil, err
			}
			p = c.big[start:]
		}
		if masked {
			for i := range p {
				p[i] ^= key[i&3]
			}
		}
		switch fop {
		case opPing:
			pl := append([]byte(nil), p...)
			if err := c.writeFrame(opPong, pl); err != nil {
				return 0, nil, err
			}
			continue
		case opPong:
			continue
		case opClose:
			return 0, nil, c.answerClose(p)
		case opText, opBin:
			if fin {
				return fop, p, nil
			}
			msgOp, fragmented = fop, true
			if inPlace {
				c.big = append(c.big[:0], p...)
			}
		case opCont:
			if !fragmented {
				return 0, nil, errors.New("websocket: continuation without a start")
			}
			if fin {
				return msgOp, c.big, nil
			}
		default:
			return 0, nil, fmt.Errorf("websocket: opcode %d", fop)
		}
	}
}

// writeFrame writes one masked frame; safe for concurrent use.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := append(c.wbuf[:0], 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	// A cheap xorshift mask: servers only unmask it.
	m := c.mask
	m ^= m << 13
	m ^= m >> 17
	m ^= m << 5
	c.mask = m
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], m)
	b = append(b, key[:]...)
	off := len(b)
	b = append(b, payload...)
	for i := range b[off:] {
		b[off+i] ^= key[i&3]
	}
	c.wbuf = b
	if c.fd > 0 {
		return c.writeFD(b)
	}
	_, err := c.nc.Write(b)
	return err
}

// writeFD writes all of b to the detached socket (see poller), waiting
// out a full send buffer. The caller holds wmu.
func (c *wsConn) writeFD(b []byte) error {
	if c.fdClosed {
		return net.ErrClosed
	}
	deadline := time.Time{}
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if deadline.IsZero() {
				deadline = time.Now().Add(10 * time.Second)
			} else if time.Now().After(deadline) {
				return errors.New("write: send buffer full for 10 s")
			}
			time.Sleep(200 * time.Microsecond)
			continue
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		return err
	}
	return nil
}

func (c *wsConn) writeText(p []byte) error { return c.writeFrame(opText, p) }

// close sends a normal close frame (best effort) and ends the socket.
func (c *wsConn) close() {
	c.closing.Store(true)
	if c.fd > 0 {
		_ = c.writeFrame(opClose, []byte{0x03, 0xe8})
		c.shutdownFD()
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_ = c.writeFrame(opClose, []byte{0x03, 0xe8})
	_ = c.nc.Close()
}

// abort ends the socket without a close frame.
func (c *wsConn) abort() {
	c.closing.Store(true)
	if c.fd > 0 {
		c.shutdownFD()
		return
	}
	_ = c.nc.Close()
}

// shutdownFD ends a detached socket; its poller sees the end and closes
// the descriptor (closing it here could race with a reused number).
func (c *wsConn) shutdownFD() {
	c.wmu.Lock()
	if !c.fdClosed {
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
	}
	c.wmu.Unlock()
}
