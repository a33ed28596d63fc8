package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// poller reads many connections from one goroutine with its own epoll
// (level-triggered): one read per readiness, many sockets per epoll_wait,
// no goroutine to park and wake per message. Go's own netpoller costs two
// read calls per message (the second one answers EAGAIN) plus a scheduler
// round trip, which at 100,000 messages/s is most of a client's CPU.
type poller struct {
	epfd    int
	mu      sync.Mutex
	conns   map[int32]*pconn
	buf     []byte
	stopped atomic.Bool
	done    chan struct{}
}

// pconn is a connection served by a poller.
type pconn struct {
	c       *wsConn
	pending []byte // the start of a frame not complete yet
	handle  func([]byte)
	end     func(error)
}

// pollers are the runner's; conns are spread over them.
type pollers struct {
	ps   []*poller
	next atomic.Uint32
}

func newPollers() (*pollers, error) {
	n := max(1, runtime.GOMAXPROCS(0))
	ps := &pollers{}
	for range n {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			ps.stop()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		p := &poller{epfd: fd, conns: map[int32]*pconn{}, buf: make([]byte, 256<<10), done: make(chan struct{})}
		ps.ps = append(ps.ps, p)
		go p.loop()
	}
	return ps, nil
}

// stop ends the poller goroutines; connections must be finished already.
func (ps *pollers) stop() {
	for _, p := range ps.ps {
		p.stopped.Store(true)
	}
	for _, p := range ps.ps {
		<-p.done
		syscall.Close(p.epfd)
	}
}

// add detaches c from Go's netpoller and serves it: handle gets each data
// message (valid during the call), end is called once when the socket ends.
func (ps *pollers) add(c *wsConn, handle func([]byte), end func(error)) error {
	pending, err := detach(c)
	if err != nil {
		return err
	}
	p := ps.ps[int(ps.next.Add(1))%len(ps.ps)]
	pc := &pconn{c: c, handle: handle, end: end}
	// Frames already buffered during the welcome go first.
	if len(pending) > 0 {
		n, err := c.consume(pending, handle)
		if err != nil {
			p.finish(pc, err, false)
			return nil
		}
		pc.pending = append([]byte(nil), pending[n:]...)
	}
	p.mu.Lock()
	p.conns[int32(c.fd)] = pc
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, int32(c.fd))
		p.mu.Unlock()
		p.finish(pc, fmt.Errorf("epoll_ctl: %w", err), false)
	}
	return nil
}

// detach swaps c's net.Conn for a duplicate raw descriptor, returning
// what the bufio.Reader had read ahead.
func detach(c *wsConn) ([]byte, error) {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return nil, errors.New("detach: not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		nfd = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return nil, err
	}
	var pending []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	c.wmu.Lock()
	c.fd = nfd
	c.wmu.Unlock()
	_ = c.nc.Close() // the duplicate keeps the socket open
	c.br = nil
	return pending, nil
}

func (p *poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 512)
	batch := make([]*pconn, 0, 512)
	for !p.stopped.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		batch = batch[:0]
		p.mu.Lock()
		for i := 0; i < n; i++ {
			if pc := p.conns[events[i].Fd]; pc != nil {
				batch = append(batch, pc)
			}
		}
		p.mu.Unlock()
		for _, pc := range batch {
			p.service(pc)
		}
	}
}

// service does one read on a ready socket and hands out the complete
// frames; level-triggered epoll reports it again if more is waiting.
func (p *poller) service(pc *pconn) {
	c := pc.c
	n, err := syscall.Read(c.fd, p.buf)
	switch {
	case n > 0:
	case n == 0 && err == nil:
		p.finish(pc, io.EOF, true)
		return
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return
	default:
		p.finish(pc, err, true)
		return
	}
	b := p.buf[:n]
	if len(pc.pending) > 0 {
		pc.pending = append(pc.pending, b...)
		b = pc.pending
	}
	used, cerr := c.consume(b, pc.handle)
	if cerr != nil {
		p.finish(pc, cerr, true)
		return
	}
	rest := b[used:]
	switch {
	case len(rest) == 0:
		if cap(pc.pending) > 64<<10 {
			pc.pending = nil
		} else {
			pc.pending = pc.pending[:0]
		}
	case len(pc.pending) > 0:
		pc.pending = pc.pending[:copy(pc.pending, rest)]
	default:
		pc.pending = append(pc.pending[:0], rest...)
	}
}

// finish removes pc and closes its descriptor, then reports the end.
func (p *poller) finish(pc *pconn, err error, registered bool) {
	c := pc.c
	if registered {
		p.mu.Lock()
		delete(p.conns, int32(c.fd))
		p.mu.Unlock()
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
	c.wmu.Lock()
	if !c.fdClosed {
		c.fdClosed = true
		syscall.Close(c.fd)
	}
	c.wmu.Unlock()
	pc.end(err)
}

// consume hands every complete frame at the start of b to handle and
// returns how many bytes it used; pings are answered, a close frame is
// answered and ends the connection with errClosed.
func (c *wsConn) consume(b []byte, handle func([]byte)) (int, error) {
	used := 0
	for {
		f := b[used:]
		if len(f) < 2 {
			return used, nil
		}
		if len(f) < headerLen(f) {
			return used, nil
		}
		fin, op, masked, n, hl, err := parseHeader(f)
		if err != nil {
			return used, err
		}
		if len(f) < hl+n {
			return used, nil
		}
		p := f[hl : hl+n]
		if masked {
			key := f[hl-4 : hl]
			for i := range p {
				p[i] ^= key[i&3]
			}
		}
		used += hl + n
		switch op {
		case opPing:
			if err := c.writeFrame(opPong, p); err != nil {
				return used, err
			}
		case opPong:
		case opClose:
			return used, c.answerClose(p)
		case opText, opBin:
			if fin {
				handle(p)
			} else {
				c.big = append(c.big[:0], p...)
				c.frag = true
			}
		case opCont:
			if !c.frag {
				return used, errors.New("websocket: continuation without a start")
			}
			c.big = append(c.big, p...)
			if fin {
				c.frag = false
				handle(c.big)
			}
		default:
			return used, fmt.Errorf("websocket: opcode %d", op)
		}
	}
}
