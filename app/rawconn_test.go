package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestRawTCPConnReadsAndWrites(t *testing.T) {
	a, b := tcpPair(t)
	ra := newRawTCPConn(a)
	if _, ok := ra.(*rawTCPConn); !ok {
		t.Fatalf("a TCP connection was not wrapped: %T", ra)
	}
	// Larger than the socket buffers: the write waits on the poller.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	errc := make(chan error, 1)
	go func() {
		n, err := ra.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("bytes damaged")
	}
	// A read waits for data, then returns what came.
	go func() { time.Sleep(20 * time.Millisecond); _, _ = b.Write([]byte("pong")) }()
	buf := make([]byte, 16)
	n, err := ra.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// The peer's close is io.EOF.
	b.Close()
	if _, err := ra.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed = %v, want io.EOF", err)
	}
}

func TestRawTCPConnErrorsReadAsNetConns(t *testing.T) {
	a, _ := tcpPair(t)
	ra := newRawTCPConn(a)
	_ = ra.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := ra.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline = %v, want a timeout", err)
	}
	ra.Close()
	if _, err := ra.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := ra.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close = %v, want net.ErrClosed", err)
	}
}

// BenchmarkRedisConnRoundTrip is one small request and its answer over
// loopback, as a Redis connection makes them: raw is rawTCPConn, net the
// plain connection. The system monitor's wake-ups the raw calls avoid do
// not show in a loop that keeps the process busy; the benchmark shows the
// calls cost no more.
func BenchmarkRedisConnRoundTrip(b *testing.B) {
	for _, mode := range []string{"raw", "net"} {
		b.Run(mode, func(b *testing.B) {
			c, srv := tcpPair(b)
			if mode == "raw" {
				c = newRawTCPConn(c)
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := srv.Read(buf)
					if err != nil {
						return
					}
					if _, err := srv.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
			req := []byte("*1\r\n$4\r\nPING\r\n")
			resp := make([]byte, len(req))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Like any net.Conn, several goroutines may write at once: each write
// goes out whole.
func TestRawTCPConnConcurrentWrites(t *testing.T) {
	a, b := tcpPair(t)
	ra := newRawTCPConn(a)
	const writers, each, size = 4, 200, 1000
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			msg := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range each {
				if _, err := ra.Write(msg); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	got := make([]byte, writers*each*size)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(got); i += size {
		if !bytes.Equal(got[i:i+size], bytes.Repeat(got[i:i+1], size)) {
			t.Fatalf("message at %d interleaved with another", i)
		}
	}
}
