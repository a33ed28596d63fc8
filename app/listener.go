package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backoff of accept after a temporary error (out of descriptors, buffers).
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// guardedListener is the instance's listener with its connection caps: at
// most max sockets in all and perIP from one address (0: no bound), each
// counted from accept to close, WebSocket or plain HTTP. A socket over a
// cap is answered with a short HTTP error and closed. A temporary accept
// error (EMFILE, ENFILE, ENOBUFS, ENOMEM) is retried with backoff, never
// returned: running out of descriptors must not end the server.
type guardedListener struct {
	net.Listener
	log        *slog.Logger
	max, perIP int
	refused    *prometheus.CounterVec // by reason
	acceptErrs prometheus.Counter

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
	done  chan struct{}
	once  sync.Once
	// Refusals are answered off the accept loop, at most cap(refusing)
	// at once (beyond that a socket is just closed); Close waits for them.
	refusing chan struct{}
	refusals sync.WaitGroup
}

func newGuardedListener(ln net.Listener, log *slog.Logger, max, perIP int, m *metrics) *guardedListener {
	return &guardedListener{Listener: ln, log: log, max: max, perIP: perIP, refused: m.connsRefused, acceptErrs: m.acceptErrors,
		byIP: make(map[netip.Addr]int), done: make(chan struct{}), refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection within the caps.
func (l *guardedListener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	var lastLog time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			l.acceptErrs.Inc()
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if time.Since(lastLog) > 10*time.Second {
				l.log.Warn("accept failed; retrying (raise the descriptor limit or lower ROOMCAST_MAX_CONNS)", "err", err, "backoff", backoff.String())
				lastLog = time.Now()
			}
			select {
			case <-time.After(backoff):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		ip := remoteIP(c)
		if reason := l.admit(ip); reason != "" {
			l.refused.WithLabelValues(reason).Inc()
			l.refuse(c, reason)
			continue
		}
		return l.track(c, ip), nil
	}
}

// Close stops Accept, also while it waits out a backoff, and waits for
// the refusals being answered.
func (l *guardedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	err := l.Listener.Close()
	l.refusals.Wait()
	return err
}

// refuse answers c, over a cap, on its own goroutine: its request is read
// first (an HTTP client that sees an answer before it sent its request
// takes it for a broken connection), for refuseWait at most.
func (l *guardedListener) refuse(c net.Conn, reason string) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close() // a flood: no answer
		return
	}
	l.refusals.Add(1)
	go func() {
		defer l.refusals.Done()
		defer func() { <-l.refusing }()
		refuseConn(c, reason)
	}()
}

// admit counts a new connection from ip, or says which cap it is over.
func (l *guardedListener) admit(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return "instance_cap"
	case l.perIP > 0 && l.byIP[ip] >= l.perIP:
		return "ip_cap"
	}
	l.total++
	l.byIP[ip]++
	return ""
}

func (l *guardedListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// track wraps c so that its close releases its place. A TCP connection
// stays a *net.TCPConn underneath (syscall.Conn included), so the
// WebSocket transport still writes to its descriptor directly.
func (l *guardedListener) track(c net.Conn, ip netip.Addr) net.Conn {
	r := &releaser{f: func() { l.release(ip) }}
	if tc, ok := c.(*net.TCPConn); ok {
		return &trackedTCPConn{TCPConn: tc, r: r}
	}
	return &trackedConn{Conn: c, r: r}
}

type releaser struct {
	once sync.Once
	f    func()
}

type trackedTCPConn struct {
	*net.TCPConn
	r *releaser
}

func (c *trackedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.r.once.Do(c.r.f)
	return err
}

type trackedConn struct {
	net.Conn
	r *releaser
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.r.once.Do(c.r.f)
	return err
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Bounds of answering a socket over a cap.
const (
	maxRefusing = 64                     // answered at once
	refuseWait  = 500 * time.Millisecond // for its request, then for the answer to go out
)

// refuseConn reads what c sends of its request (up to the end of its
// headers, 8 KiB, or refuseWait), answers in HTTP and closes it.
func refuseConn(c net.Conn, reason string) {
	defer c.Close()
	status, text, msg := 503, "Service Unavailable", "this instance holds as many connections as it may (ROOMCAST_MAX_CONNS); try again or another instance"
	if reason == "ip_cap" {
		status, text, msg = 429, "Too Many Requests", "too many connections from your address (ROOMCAST_MAX_CONNS_PER_IP)"
	}
	_ = c.SetReadDeadline(time.Now().Add(refuseWait))
	var req []byte
	buf := make([]byte, 1024)
	for len(req) < 8<<10 && !bytes.Contains(req, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		req = append(req, buf[:n]...)
		if err != nil {
			break
		}
	}
	body := fmt.Sprintf(`{"error":{"code":"too_many_connections","message":%q}}`, msg)
	_ = c.SetWriteDeadline(time.Now().Add(refuseWait))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, text, len(body), body)
}

// temporaryAcceptError reports whether accept may succeed if tried again.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// descriptorLimit returns the process's open-file limit (Go raises the
// soft limit to the hard one at start), or 0 when it cannot be read.
func descriptorLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

// defaultMaxConns leaves a share of the descriptors to everything else the
// process opens (Redis connections, files): a tenth, at least 64.
func defaultMaxConns(limit int) int {
	if limit <= 0 {
		return 0
	}
	return max(limit-max(limit/10, 64), 16)
}
