package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms"
)

// tcpPair returns the two ends of a loopback TCP connection: the server's
// (which the transport writes to) and the peer's.
func tcpPair(tb testing.TB) (server, peer net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { server.Close(); peer.Close() })
	return server, peer
}

var testTimings = rooms.CloseTimings{WriteTimeout: 2 * time.Second, Grace: time.Second, Wait: time.Second}

// readFrames reads n unmasked text frames from r and returns their payloads.
func readFrames(tb testing.TB, r io.Reader, n int) [][]byte {
	tb.Helper()
	var out [][]byte
	for range n {
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			tb.Fatalf("frame header: %v", err)
		}
		if hdr[0] != 0x80|opText {
			tb.Fatalf("frame opcode byte %#x", hdr[0])
		}
		size := int(hdr[1])
		if size == 126 {
			var ext [2]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				tb.Fatal(err)
			}
			size = int(ext[0])<<8 | int(ext[1])
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(r, p); err != nil {
			tb.Fatalf("frame payload: %v", err)
		}
		out = append(out, p)
	}
	return out
}

func TestTryWriteWritesOneFrame(t *testing.T) {
	server, peer := tcpPair(t)
	var frames atomic.Uint64
	tr := newWSTransport(server, testTimings, &frames)
	if tr.fd < 0 {
		t.Fatal("no descriptor for inline writes on a TCP socket")
	}
	done, err := tr.TryWrite([]byte("hello"))
	if !done || err != nil {
		t.Fatalf("TryWrite = %v, %v", done, err)
	}
	got := readFrames(t, peer, 1)
	if string(got[0]) != "hello" || frames.Load() != 1 {
		t.Fatalf("read %q, counted %d frames", got[0], frames.Load())
	}
	// A batch too, larger than the stack buffer of one frame.
	big := bytes.Repeat([]byte("x"), 3000)
	if done, err := tr.TryWriteBatch([][]byte{[]byte("a"), big}); !done || err != nil {
		t.Fatalf("TryWriteBatch = %v, %v", done, err)
	}
	got = readFrames(t, peer, 2)
	if string(got[0]) != "a" || !bytes.Equal(got[1], big) || frames.Load() != 3 {
		t.Fatalf("batch read back wrong (%d frames counted)", frames.Load())
	}
}

// A peer that stops reading fills the socket: what the inline write could
// not put in is kept, and the writer's next write sends it first, whole.
func TestTryWriteKeepsTheRestForTheWriter(t *testing.T) {
	server, peer := tcpPair(t)
	tr := newWSTransport(server, testTimings, nil)
	frame := bytes.Repeat([]byte("y"), 60000)
	sent := 0
	for {
		done, err := tr.TryWrite(frame)
		if err != nil {
			t.Fatal(err)
		}
		sent++
		if !done {
			break
		}
		if sent > 10000 {
			t.Fatal("socket never filled")
		}
	}
	if len(tr.pending) == 0 {
		t.Fatal("a partial write kept nothing")
	}
	// While something is pending, inline writes queue behind it.
	if done, err := tr.TryWrite([]byte("after")); done || err != nil {
		t.Fatalf("TryWrite behind a pending rest = %v, %v", done, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- tr.WriteFrames(nil) }()
	got := readFrames(t, peer, sent+1)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i, p := range got[:sent] {
		if !bytes.Equal(p, frame) {
			t.Fatalf("frame %d damaged (%d bytes)", i, len(p))
		}
	}
	if string(got[sent]) != "after" {
		t.Fatalf("last frame %q", got[sent])
	}
}

// A close while an inline write holds the descriptor: the socket is
// closed when that write ends, not under it (its number could go to
// another socket meanwhile). After the close no inline write starts.
func TestCloseWaitsForTheInlineWrite(t *testing.T) {
	server, peer := tcpPair(t)
	tr := newWSTransport(server, testTimings, nil)
	if !tr.acquireFD() {
		t.Fatal("acquireFD on an open socket")
	}
	tr.close()
	// Still open: a write on the descriptor reaches the peer.
	if n, errno := sendNonBlocking(tr.fd, appendFrame(nil, opText, []byte("in flight"))); errno != 0 || n <= 0 {
		t.Fatalf("write under the guard: n=%d errno=%v", n, errno)
	}
	if got := readFrames(t, peer, 1); string(got[0]) != "in flight" {
		t.Fatalf("read %q", got[0])
	}
	tr.releaseFD()
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("peer read after the guarded write ended = %v, want EOF", err)
	}
	if tr.acquireFD() {
		t.Fatal("acquireFD after close")
	}
	if done, err := tr.TryWrite([]byte("late")); done || err != nil {
		t.Fatalf("TryWrite after close = %v, %v; want it kept for the writer", done, err)
	}
	if err := tr.WriteFrames(nil); err == nil {
		t.Fatal("the writer's write on a closed socket succeeded")
	}
}

func TestAbortEndsTheSocketAtOnce(t *testing.T) {
	server, peer := tcpPair(t)
	tr := newWSTransport(server, testTimings, nil)
	tr.Abort()
	tr.Abort() // again: harmless
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("peer read after Abort = %v, want EOF", err)
	}
}

// A reset peer is an error of the write (EPIPE or ECONNRESET), not a
// signal.
func TestTryWriteToResetPeer(t *testing.T) {
	server, peer := tcpPair(t)
	tr := newWSTransport(server, testTimings, nil)
	_ = peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := tr.TryWrite([]byte("x"))
		if err != nil {
			if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset peer kept succeeding")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollerWrite is how inline writes went before: through the poller
// (RawConn.Write: descriptor lock, deadline check, state reset) as a
// system call the scheduler sees, after reading the clock to re-arm the
// write deadline at most once a second. For BenchmarkTryWrite only.
type pollerWrite struct {
	nc    net.Conn
	raw   syscall.RawConn
	armed time.Time
	buf   []byte
	b     []byte
	n     int
	err   error
	fn    func(fd uintptr) bool
}

func newPollerWrite(nc net.Conn) *pollerWrite {
	raw, _ := nc.(syscall.Conn).SyscallConn()
	p := &pollerWrite{nc: nc, raw: raw, buf: make([]byte, 0, 10+inlineCopyMax)}
	p.fn = func(fd uintptr) bool {
		p.n, p.err = syscall.Write(int(fd), p.b)
		return true
	}
	return p
}

func (p *pollerWrite) write(frame []byte) error {
	if now := time.Now(); now.Sub(p.armed) > time.Second {
		if err := p.nc.SetWriteDeadline(now.Add(10 * time.Second)); err != nil {
			return err
		}
		p.armed = now
	}
	p.b = appendFrame(p.buf[:0], opText, frame)
	err := p.raw.Write(p.fn)
	if err == nil && p.err != nil {
		err = p.err
	}
	return err
}

// BenchmarkTryWrite writes one 128-byte frame per op, round robin over
// loopback sockets whose peers are drained by one goroutine each: the
// inline write of a fan-out delivery (with 100 sockets, the peers'
// wake-ups on this process's cores are most of it). direct is TryWrite; poller is the
// route it replaced. Most of ns/op is the kernel's (the loopback write
// runs the receiving side too); the difference is what the route costs.
func BenchmarkTryWrite(b *testing.B) {
	var written atomic.Uint64
	for _, conns := range []int{1, 100} {
		for _, route := range []string{"direct", "poller"} {
			b.Run(route+"/conns="+strconv.Itoa(conns), func(b *testing.B) {
				trs := make([]*wsTransport, conns)
				pws := make([]*pollerWrite, conns)
				for i := range trs {
					server, peer := tcpPair(b)
					trs[i] = newWSTransport(server, testTimings, &written)
					pws[i] = newPollerWrite(server)
					go func() { _, _ = io.Copy(io.Discard, peer) }()
				}
				frame := bytes.Repeat([]byte("m"), 128)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					k := i % conns
					if route == "direct" {
						if _, err := trs[k].TryWrite(frame); err != nil {
							b.Fatal(err)
						}
						trs[k].pending = trs[k].pending[:0] // a full socket drops, not queues, here
					} else if err := pws[k].write(frame); err != nil && !errors.Is(err, syscall.EAGAIN) {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
