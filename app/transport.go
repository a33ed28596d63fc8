package main

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// wsTransport writes server frames straight to the socket: a batch of
// queued frames becomes one write system call. Server frames are unmasked
// and uncompressed, so framing is a small header. Every write to the socket
// goes through the connection's writer, which is what makes this safe: the
// reader never writes (ping and close replies are queued, see ws.go).
type wsTransport struct {
	ws           *websocket.Conn
	nc           net.Conn
	writeTimeout time.Duration
	buf          []byte
	onWrite      func(frames int)
}

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newWSTransport(ws *websocket.Conn, writeTimeout time.Duration, onWrite func(int)) *wsTransport {
	return &wsTransport{ws: ws, nc: socketOf(ws), writeTimeout: writeTimeout, onWrite: onWrite}
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

func (t *wsTransport) write(b []byte) error {
	if err := t.nc.SetWriteDeadline(time.Now().Add(t.writeTimeout)); err != nil {
		return err
	}
	_, err := t.nc.Write(b)
	return err
}

// WriteFrames implements rooms.Transport.
func (t *wsTransport) WriteFrames(frames [][]byte) error {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range frames {
		b = appendFrame(b, opText, f)
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
	_ = t.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	return err
}

// Abort implements rooms.Transport.
func (t *wsTransport) Abort() { _ = t.nc.Close() }
