package yjs

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Peers is one Node process running real Yjs clients (peer.mjs): each is a
// Y.Doc with the stock y-websocket WebsocketProvider, named by an id.
type Peers struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu      sync.Mutex
	n       int
	replies map[int]chan map[string]any
	events  []Event
	changed chan struct{} // closed and replaced on every event
	stderr  *lockedBuffer
}

// Event is something a client reported: synced, status, close, awareness.
type Event struct {
	Ev     string         `json:"ev"`
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Code   int            `json:"code"`
	Reason string         `json:"reason"`
	States map[string]any `json:"states"`
	At     time.Time      `json:"-"`
}

// StartPeers runs peer.mjs until the test ends.
func StartPeers(t testing.TB) *Peers {
	t.Helper()
	Ensure(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := Command(ctx, "peer.mjs")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Peers{t: t, cmd: cmd, stdin: stdin, replies: make(map[int]chan map[string]any), changed: make(chan struct{}), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node peer.mjs: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			p.line(sc.Bytes())
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("peer.mjs stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *Peers) line(b []byte) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		p.t.Logf("peer.mjs: unparsable line %q", b)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if re, ok := m["re"].(float64); ok {
		if ch := p.replies[int(re)]; ch != nil {
			ch <- m
			delete(p.replies, int(re))
		}
		return
	}
	var e Event
	_ = json.Unmarshal(b, &e)
	e.At = time.Now()
	p.events = append(p.events, e)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Do runs a command and returns its answer; an error answer fails the test.
func (p *Peers) Do(cmd string, id string, args map[string]any) map[string]any {
	p.t.Helper()
	p.mu.Lock()
	p.n++
	n := p.n
	ch := make(chan map[string]any, 1)
	p.replies[n] = ch
	p.mu.Unlock()
	msg := map[string]any{"n": n, "cmd": cmd, "id": id}
	for k, v := range args {
		msg[k] = v
	}
	b, _ := json.Marshal(msg)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("peer.mjs %s: %v", cmd, err)
	}
	select {
	case m := <-ch:
		if e, ok := m["error"]; ok {
			p.t.Fatalf("peer.mjs %s %s: %v", cmd, id, e)
		}
		return m
	case <-time.After(60 * time.Second):
		p.t.Fatalf("peer.mjs %s %s: no answer in 60s\n%s", cmd, id, p.stderr.String())
	}
	return nil
}

// Connect opens a provider named id on url (ws://host/yjs) for room.
func (p *Peers) Connect(id, url, room, token string, extra map[string]any) uint64 {
	p.t.Helper()
	args := map[string]any{"url": url, "room": room, "token": token}
	for k, v := range extra {
		args[k] = v
	}
	r := p.Do("connect", id, args)
	return uint64(r["clientID"].(float64))
}

// Content is a client's document as JSON: its text and map, its encoded
// size and whether it is synced.
type Content struct {
	Text   string         `json:"text"`
	Map    map[string]any `json:"map"`
	Size   int            `json:"size"`
	Synced bool           `json:"synced"`
}

// Content returns client id's document.
func (p *Peers) Content(id string) Content {
	p.t.Helper()
	r := p.Do("content", id, nil)
	b, _ := json.Marshal(r)
	var c Content
	_ = json.Unmarshal(b, &c)
	return c
}

// Await waits up to within for an event matching match (among all since
// the start) and returns it.
func (p *Peers) Await(within time.Duration, what string, match func(Event) bool) Event {
	p.t.Helper()
	return p.AwaitAfter(0, within, what, match)
}

// Mark returns the position after the events so far, for AwaitAfter.
func (p *Peers) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// AwaitAfter is Await among the events after mark.
func (p *Peers) AwaitAfter(mark int, within time.Duration, what string, match func(Event) bool) Event {
	p.t.Helper()
	deadline := time.After(within)
	seen := mark
	for {
		p.mu.Lock()
		evs := p.events[seen:]
		seen = len(p.events)
		ch := p.changed
		p.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		select {
		case <-ch:
		case <-deadline:
			p.t.Fatalf("no %s within %v", what, within)
		}
	}
}

// Events returns every event so far.
func (p *Peers) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Eventually polls cond every 50 ms until it holds or within passes.
func (p *Peers) Eventually(within time.Duration, what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("%s not reached within %v; last: %s", what, within, last)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, b...)
	}
	return len(b), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
