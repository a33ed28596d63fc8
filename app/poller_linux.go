//go:build linux

package main

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// poller tells idle sockets' readers when their sockets have something to
// read, so that an idle socket has no goroutine blocked in a read: a
// socket between frames is registered with epoll (one-shot, level
// triggered) and its reader goroutine ends; when bytes, an end or an error
// arrive, a new one is started for it (see wsSock.run). One goroutine,
// owned by the Server, waits on epoll for all of them.
//
// The Go runtime's own poller keeps the socket too (edge triggered); both
// see the same readiness, and a reader that blocks mid-frame waits on the
// runtime's, as any Go read does.
type poller struct {
	epfd   int
	wake   [2]int // a pipe: a byte on it ends run
	mu     sync.Mutex
	socks  map[uint64]*wsSock
	next   uint64
	done   chan struct{}
	closed bool // under mu: no more sockets are watched
	// fdMu keeps the descriptors open under epoll_ctl: close takes it
	// whole before closing them, so a late call cannot reach a reused
	// number.
	fdMu     sync.RWMutex
	fdClosed bool
}

// epollWatch is what a parked socket waits for: readable (a frame, or the
// end of the stream), the peer's shutdown, errors and hang-ups (always
// reported), once until re-armed.
const epollWatch = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// wakeID is the pipe's key in epoll's events; sockets' keys start at 1.
const wakeID = 0

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, socks: make(map[uint64]*wsSock), done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("epoll_ctl add wake pipe: %w", err)
	}
	return p, nil
}

func (p *poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

// run waits for readiness and starts the readers of the sockets it
// reports, until close. It blocks in epoll_wait, on a thread of its own
// while it waits.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Not expected of a valid epoll descriptor: every parked
			// socket would stay parked, so end them all rather than hang.
			p.mu.Lock()
			socks := make([]*wsSock, 0, len(p.socks))
			for _, k := range p.socks {
				socks = append(socks, k)
			}
			p.mu.Unlock()
			for _, k := range socks {
				k.t.Abort()
				if k.parked.CompareAndSwap(true, false) {
					k.blocking = true
					go k.run()
				}
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeID {
				return
			}
			p.mu.Lock()
			k := p.socks[id]
			p.mu.Unlock()
			if k != nil && k.parked.CompareAndSwap(true, false) {
				go k.run()
			}
		}
	}
}

// close ends run and frees the descriptors. Sockets still registered are
// the caller's to end (Shutdown has by then).
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wake[1], []byte{1})
	<-p.done
	p.fdMu.Lock()
	p.fdClosed = true
	p.closeFDs()
	p.fdMu.Unlock()
}

var errPollerClosed = errors.New("socket poller closed")

func event(id uint64) syscall.EpollEvent {
	return syscall.EpollEvent{Events: epollWatch, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

// ctl runs epoll_ctl on k's socket descriptor. RawConn.Control holds the
// descriptor open meanwhile, so a socket closed concurrently can never
// make it act on a reused number.
func (p *poller) ctl(k *wsSock, op int) error {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.fdClosed {
		return errPollerClosed
	}
	ev := event(k.pollID)
	var cerr error
	if err := k.t.raw.Control(func(fd uintptr) { cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) }); err != nil {
		return err
	}
	return cerr
}

// watch registers k and arms it; its reader must not be running. Where
// the socket cannot be watched (no descriptor, no poller) k reads on a
// goroutine of its own instead.
func (p *poller) watch(k *wsSock) {
	if p == nil || k.t.raw == nil {
		k.readOnItsOwn()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		k.readOnItsOwn()
		return
	}
	p.next++
	k.pollID = p.next
	p.socks[k.pollID] = k
	p.mu.Unlock()
	if err := p.ctl(k, syscall.EPOLL_CTL_ADD); err != nil {
		// Closed already: the reader finds out and ends the socket.
		p.forget(k)
		k.readOnItsOwn()
	}
}

// rearm waits for k's socket again after its reader found nothing to
// read; false when it cannot (the socket is closed), and the caller goes
// on reading, which ends the socket.
func (p *poller) rearm(k *wsSock) bool {
	if k.pollID == 0 {
		return false
	}
	return p.ctl(k, syscall.EPOLL_CTL_MOD) == nil
}

// forget takes k out of the poller before its socket is closed.
func (p *poller) forget(k *wsSock) {
	if k.pollID == 0 {
		return
	}
	_ = p.ctl(k, syscall.EPOLL_CTL_DEL)
	p.mu.Lock()
	delete(p.socks, k.pollID)
	p.mu.Unlock()
	k.pollID = 0
}

// watched is the number of sockets registered, for the gauge.
func (p *poller) watched() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.socks)
}
