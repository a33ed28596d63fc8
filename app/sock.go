package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/roomcast/roomcast/app/wsread"
	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
)

// admission is what admitWS decided about an upgrade, handed to the
// socket's handler once the request itself is gone.
type admission struct {
	claims       *auth.Claims
	room         string
	since        since
	stateCapable bool
	countOnly    bool
	role         auth.Role
}

// upgrade answers an admitted request with 101 and hands the socket to
// serve. The request's context, its buffers and the goroutine fasthttp
// runs the hijack on are all let go as soon as serve returns: an open
// socket keeps only what roomcast itself holds (see wsSock).
func (s *Server) upgrade(serve func(nc net.Conn, readAhead []byte, a admission)) fiber.Handler {
	up := websocket.FastHTTPUpgrader{
		// The library's reader and writer are never used: frames are read
		// by wsread and written by wsTransport. Its buffers are the
		// smallest it takes, the write one from a pool.
		ReadBufferSize: 125, WriteBufferSize: 256, WriteBufferPool: &wsWriteBufs,
		// admitWS checked the Origin against ROOMCAST_ALLOWED_ORIGINS.
		CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
	}
	return func(c *fiber.Ctx) error {
		a := admission{
			claims:       c.Locals(localClaims).(*auth.Claims),
			room:         c.Locals(localRoom).(string),
			since:        c.Locals(localSince).(since),
			stateCapable: c.Locals(localState).(bool),
			countOnly:    c.Locals(localCount).(bool),
			role:         c.Locals(localRole).(auth.Role),
		}
		err := up.Upgrade(c.Context(), func(ws *websocket.Conn) {
			nc := socketOf(ws)
			ahead, err := takeReadAhead(ws.NetConn(), nc)
			if err != nil {
				_ = nc.Close()
				return
			}
			serve(nc, ahead, a)
		})
		if err != nil {
			return refuse(fiber.StatusUpgradeRequired, "upgrade_required", err.Error())
		}
		return nil
	}
}

var wsWriteBufs sync.Pool

// aLongTimeAgo is a read deadline already passed: a read with it set
// returns at once.
var aLongTimeAgo = time.Unix(1, 0)

// takeReadAhead returns what the HTTP server read from the socket past the
// upgrade request (hj reads through that buffer before the socket nc),
// so the socket can be read directly: a client that sent frames before
// the 101 arrived loses none. Usually nothing.
func takeReadAhead(hj, nc net.Conn) ([]byte, error) {
	if hj == nc {
		return nil, nil
	}
	if err := nc.SetReadDeadline(aLongTimeAgo); err != nil {
		return nil, err
	}
	var ahead []byte
	var b [512]byte
	for {
		n, err := hj.Read(b[:])
		ahead = append(ahead, b[:n]...)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return nil, err
			}
			break
		}
	}
	return ahead, nc.SetReadDeadline(time.Time{})
}

// readState is what wsSock.next found.
type readState int

const (
	readData   readState = iota // a data message to handle
	readParked                  // nothing to read: the socket waits in the poller
	readEnded                   // the socket is done
)

// wsSock reads one socket. Between frames it has no goroutine: the poller
// starts run when the socket has something, and run parks the socket
// again once it has read everything there is. A frame that arrives in
// pieces is waited for mid-frame by the running reader, so the frame
// parser (wsread) never needs to stop halfway. Only one run is ever
// active: the poller's registration is one-shot and re-armed by run as
// it ends.
type wsSock struct {
	s      *Server
	t      *wsTransport // its nc is the socket, its raw the descriptor (nil: read blocking)
	conn   *rooms.Conn
	src    sockSource
	rd     *wsread.Reader
	handle func(m wsread.Message, now time.Time) bool // false ends the socket
	end    func()                                     // after the last read, before the socket is closed

	pollID   uint64      // the poller's key; 0 when not registered
	blocking bool        // reads wait in the read itself (no poller)
	parked   atomic.Bool // registered and armed, no run active
}

func (s *Server) newSock(nc net.Conn, ahead []byte, t *wsTransport, conn *rooms.Conn, limit int) *wsSock {
	k := &wsSock{s: s, t: t, conn: conn}
	k.src = sockSource{nc: nc, raw: t.raw, ahead: ahead, aborted: &t.aborted}
	k.src.fn = k.src.readOnce
	k.rd = wsread.NewReader(&k.src, readBufferSize, limit)
	k.rd.UseBudget(s.inflight)
	return k
}

// start begins reading: through the poller, or on a goroutine of its own
// where there is none.
func (k *wsSock) start() {
	k.parked.Store(true)
	k.s.poller.watch(k)
}

// run reads and handles what the socket has, then parks it or ends it.
func (k *wsSock) run() {
	for {
		m, now, st := k.next()
		switch st {
		case readParked:
			return
		case readEnded:
			k.finish()
			return
		}
		if !k.handle(m, now) {
			k.finish()
			return
		}
	}
}

// finish ends the socket once its reads are over, or when its join
// failed and they never began.
func (k *wsSock) finish() {
	k.s.poller.forget(k)
	k.rd.Release()
	k.end()
	k.t.close()
}

// park gives the socket to the poller once it has nothing to read; false
// when it could not, and the caller reads on (blocking), which ends a
// closed socket.
func (k *wsSock) park() bool {
	k.rd.Park()
	k.parked.Store(true)
	if k.s.poller.rearm(k) {
		return true
	}
	if k.parked.CompareAndSwap(true, false) {
		k.blocking = true
		return false
	}
	return true
}

// next returns the connection's next data message and when it was read,
// answering pings and the peer's close on the way. It parks the socket
// when there is nothing to read, and reports the end once the socket is
// done (a protocol error closes it with its code). Once the server is
// closing it, data is read and ignored until the peer answers, so the
// close frame is not lost to a reset. Shared by the JSON and the Yjs
// sockets.
func (k *wsSock) next() (m wsread.Message, now time.Time, st readState) {
	s, rd, conn := k.s, k.rd, k.conn
	for {
		k.src.peek = !k.blocking && rd.Idle()
		m, err := rd.Next()
		k.src.peek = false
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				if k.park() {
					return m, now, readParked
				}
				continue
			}
			var pe *wsread.ProtocolError
			if errors.As(err, &pe) {
				// Nothing after a broken frame can be read: close, and
				// let finish give the close frame its moment.
				s.metrics.protocolErrors.Inc()
				conn.Close(pe.Code, pe.Reason)
			}
			return m, now, readEnded
		}
		now = time.Now()
		conn.MarkRead(now.UnixNano())
		switch m.Kind {
		case wsread.Ping:
			conn.SendControl(opPong, m.Data)
			continue
		case wsread.Pong:
			continue
		case wsread.Close:
			code := m.CloseCode
			if code == wsread.CloseNoStatus {
				code = rooms.CloseNormal
			}
			conn.Close(code, "")
			return m, now, readEnded
		}
		if closing, _ := conn.Closing(); closing {
			continue
		}
		s.metrics.messagesIn.Inc()
		return m, now, readData
	}
}

// errWouldBlock is a socket with nothing to read right now.
var errWouldBlock = errors.New("socket has nothing to read")

// sockSource is what a socket's frame reader reads: first what the HTTP
// server read ahead, then the socket. In peek mode (set by wsSock.next
// when the reader is between frames) a read makes one non-blocking
// attempt and returns errWouldBlock when there is nothing; any other
// read waits for its bytes.
type sockSource struct {
	nc      net.Conn
	raw     syscall.RawConn
	ahead   []byte
	peek    bool
	fn      func(fd uintptr) bool // readOnce, made once
	aborted *atomic.Bool          // the transport's: set, every read fails

	p   []byte
	n   int
	err error
}

func (r *sockSource) Read(p []byte) (int, error) {
	if r.aborted.Load() {
		return 0, net.ErrClosed
	}
	if len(r.ahead) > 0 {
		n := copy(p, r.ahead)
		r.ahead = r.ahead[n:]
		if len(r.ahead) == 0 {
			r.ahead = nil
		}
		return n, nil
	}
	if !r.peek || r.raw == nil {
		return r.nc.Read(p)
	}
	r.p = p
	err := r.raw.Read(r.fn)
	n, rerr := r.n, r.err
	r.p, r.n, r.err = nil, 0, nil
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	// A frame has begun: the rest of it is waited for.
	r.peek = false
	return n, nil
}

// readOnce makes a single read(2) attempt: returning true tells
// RawConn.Read not to wait for the socket to become readable.
func (r *sockSource) readOnce(fd uintptr) bool {
	n, e := readNonBlocking(fd, r.p)
	r.n, r.err = n, nil
	if e != 0 {
		r.err = e
	}
	return true
}

// readOnItsOwn reads the socket on a goroutine that waits in its reads,
// where the poller cannot watch it.
func (k *wsSock) readOnItsOwn() {
	k.parked.Store(false)
	k.blocking = true
	go k.run()
}
