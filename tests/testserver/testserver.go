// Package testserver runs the real roomcast binary as a subprocess for
// black-box tests and talks to it with real WebSocket clients.
package testserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/auth"
)

// Secret and APIKey are what every test server is started with.
const (
	Secret = "roomcast-test-secret-0123456789abcdef"
	APIKey = "roomcast-test-api-key"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./app once per test process and returns its path; with
// ROOMCAST_TEST_RACE=1 it is built with the race detector.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "roomcast-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "roomcast")
		args := []string{"build", "-o", binPath}
		if os.Getenv("ROOMCAST_TEST_RACE") == "1" {
			// The server's own races, under the end-to-end tests.
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./app")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./app: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Options start a server. Env entries override the defaults (secret, API
// key); Addr reuses an address (for restarts).
type Options struct {
	Env  map[string]string
	Args []string
	Addr string
	// NoWait skips waiting for /readyz (for servers expected to fail).
	NoWait bool
	// NoFile, when set, is the process's open-file limit (soft and hard),
	// set with prlimit(1).
	NoFile int
}

// Server is one running roomcast process.
type Server struct {
	Addr string // host:port
	URL  string // http://host:port
	WS   string // ws://host:port

	t    testing.TB
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start runs the binary and waits until /readyz answers 200.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Binary(t)
	addr := o.Addr
	if addr == "" {
		addr = FreeAddr(t)
	}
	env := map[string]string{
		"ROOMCAST_JWT_SECRET": Secret,
		"ROOMCAST_API_KEY":    APIKey,
	}
	for k, v := range o.Env {
		env[k] = v
	}
	if env["ROOMCAST_STORE"] == "" && env["ROOMCAST_REDIS_URL"] == "" {
		// Each server its own store (the default file is under the
		// working directory, shared by every test).
		env["ROOMCAST_STORE"] = "sqlite:" + filepath.Join(t.TempDir(), "roomcast.db")
	}
	args := append([]string{"-addr", addr}, o.Args...)
	cmd := exec.Command(bin, args...)
	if o.NoFile > 0 {
		// prlimit execs the binary: the pid stays the server's.
		cmd = exec.Command("prlimit", append([]string{fmt.Sprintf("--nofile=%d:%d", o.NoFile, o.NoFile), bin}, args...)...)
	}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &Server{Addr: addr, URL: "http://" + addr, WS: "ws://" + addr, t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start roomcast: %v", err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("roomcast %s output:\n%s", addr, s.Output())
		}
	})
	if !o.NoWait {
		s.WaitReady(t, 15*time.Second)
	}
	return s
}

// WaitReady polls /readyz until it answers 200.
func (s *Server) WaitReady(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("roomcast exited before ready: %v\n%s", s.err, s.Output())
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("roomcast at %s not ready within %v\n%s", s.Addr, within, s.Output())
}

// Output is what the process printed so far.
func (s *Server) Output() string { return s.out.String() }

// Pid is the process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill ends the process with SIGKILL (a crash) and waits for it.
func (s *Server) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Stop sends SIGTERM and returns the exit error (nil for exit 0) and how
// long the process took to exit.
func (s *Server) Stop(within time.Duration) (error, time.Duration) {
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err, time.Since(start)
	case <-time.After(within):
		s.Kill()
		return fmt.Errorf("did not exit within %v after SIGTERM", within), time.Since(start)
	}
}

// Exited is closed when the process has ended.
func (s *Server) Exited() <-chan struct{} { return s.done }

// Token mints a user token valid for ttl (an hour when zero); rooms nil
// allows every room.
func Token(t testing.TB, sub, name string, ttl time.Duration, rooms []string) string {
	t.Helper()
	if ttl == 0 {
		ttl = time.Hour
	}
	tok, err := auth.MintHS256([]byte(Secret), auth.MintOptions{Subject: sub, Name: name, TTL: ttl, Rooms: rooms})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Get performs an HTTP GET with an optional bearer token.
func Get(ctx context.Context, url, bearer string) (*http.Response, []byte, error) {
	return Do(ctx, http.MethodGet, url, bearer, "")
}

// Do performs an HTTP request with an optional bearer token and body.
func Do(ctx context.Context, method, url, bearer, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp, b.Bytes(), err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
