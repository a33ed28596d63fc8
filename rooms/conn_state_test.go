package rooms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// stepTransport is a Transport a test drives step by step: while its gate
// is set every write waits on it, and once failing every write fails.
type stepTransport struct {
	mu      sync.Mutex
	frames  []string // frames written, pings as "<ping>"
	closes  []int    // codes of the close frames written
	aborts  int
	fail    bool
	gate    chan struct{}
	blocked int // writes waiting on gate
}

func (t *stepTransport) pass() error {
	t.mu.Lock()
	g := t.gate
	if g != nil {
		t.blocked++
	}
	t.mu.Unlock()
	if g != nil {
		<-g
		t.mu.Lock()
		t.blocked--
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail {
		return errors.New("write failed")
	}
	return nil
}

func (t *stepTransport) WriteFrames(fs [][]byte) error {
	if err := t.pass(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range fs {
		t.frames = append(t.frames, string(f))
	}
	return nil
}

func (t *stepTransport) WriteControl(op byte, _ []byte) error {
	if err := t.pass(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.frames = append(t.frames, "<ping>")
	return nil
}

func (t *stepTransport) WriteClose(code int, _ string) error {
	if err := t.pass(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closes = append(t.closes, code)
	return nil
}

func (t *stepTransport) Abort() {
	t.mu.Lock()
	t.aborts++
	t.mu.Unlock()
}

// A step is one operation on the connection and what it must leave: the
// state, the close code and, for operations that report one, the result.
type step struct {
	name string
	do   func(c *Conn, t *stepTransport) bool
	ok   *bool // nil: the operation reports nothing
	want connState
	code int
}

var (
	yes = func() *bool { b := true; return &b }()
	no  = func() *bool { b := false; return &b }()
)

func sendOp(f string) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool { return c.Send([]byte(f)) }
}

func startOp(f string) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool { return c.Start([]byte(f)) }
}

func storedOp(epoch string, seq uint64) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool {
		return c.SendStored(epoch, seq, []byte(fmt.Sprint("m", seq)))
	}
}

func batchOp(fs ...string) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool {
		var b [][]byte
		for _, f := range fs {
			b = append(b, []byte(f))
		}
		return c.SendBatch(b)
	}
}

func closeOp(code int) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool { c.Close(code, ""); return false }
}

func resetOp(epoch string) func(*Conn, *stepTransport) bool {
	return func(c *Conn, _ *stepTransport) bool { c.ResetEpoch(epoch, ReasonRoomDeleted); return false }
}

func pingOp(c *Conn, _ *stepTransport) bool { c.SendControl(0x9, nil); return false }

func shutdownOp(c *Conn, _ *stepTransport) bool { c.Shutdown(); return false }

func nopOp(*Conn, *stepTransport) bool { return false }

// stallOp makes every write from now on wait until releaseOp.
func stallOp(_ *Conn, t *stepTransport) bool {
	t.mu.Lock()
	t.gate = make(chan struct{})
	t.mu.Unlock()
	return false
}

func releaseOp(_ *Conn, t *stepTransport) bool {
	t.mu.Lock()
	close(t.gate)
	t.gate = nil
	t.mu.Unlock()
	return false
}

func failOp(_ *Conn, t *stepTransport) bool {
	t.mu.Lock()
	t.fail = true
	t.mu.Unlock()
	return false
}

// settle waits until the connection's writes are over or wait on the
// transport's gate: then nothing moves until the next step.
func settle(t *testing.T, c *Conn, tr *stepTransport) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		tr.mu.Lock()
		blocked := tr.blocked > 0 && tr.gate != nil // not a write just released
		tr.mu.Unlock()
		if !writing || blocked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection's writer never settled")
		}
		time.Sleep(time.Millisecond)
	}
}

// Each case walks a connection through its states one operation at a
// time; after every step the state, the close code, Done and Closing must
// agree with the table, and at the end the wire must hold exactly the
// frames and close frames listed.
func TestConnStateTransitions(t *testing.T) {
	cases := []struct {
		name   string
		queue  int
		bytes  int // ConnOptions.QueueBytes
		steps  []step
		frames string // what reached the wire, in order
		closes string // close frames written
		aborts bool   // the socket was ended
		slow   int    // OnSlow calls
	}{
		{
			name: "held, open, normal close",
			steps: []step{
				{"new", nopOp, nil, stateHeld, 0},
				{"send a", sendOp("a"), yes, stateHeld, 0},
				{"ping waits while held", pingOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"send b", sendOp("b"), yes, stateOpen, 0},
				{"stall", stallOp, nil, stateOpen, 0},
				{"close 1000", closeOp(CloseNormal), nil, stateCloseSent, CloseNormal},
				{"send after close", sendOp("late"), no, stateCloseSent, CloseNormal},
				{"second close does not count", closeOp(CloseTokenExpired), nil, stateCloseSent, CloseNormal},
				{"close frame written", releaseOp, nil, stateClosed, CloseNormal},
				{"send after closed", sendOp("later"), no, stateClosed, CloseNormal},
			},
			frames: "[<ping> w a b]", closes: "[1000]",
		},
		{
			name: "closing while the writer is stuck writes the queue first",
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"send x", sendOp("x"), yes, stateOpen, 0},
				{"token expires", closeOp(CloseTokenExpired), nil, stateClosing, CloseTokenExpired},
				{"ping ignored", pingOp, nil, stateClosing, CloseTokenExpired},
				{"send refused", sendOp("y"), no, stateClosing, CloseTokenExpired},
				{"writer goes on", releaseOp, nil, stateClosed, CloseTokenExpired},
			},
			frames: "[w x]", closes: "[4001]",
		},
		{
			name: "close before start sends only the close frame",
			steps: []step{
				{"held event", sendOp("e"), yes, stateHeld, 0},
				{"stall", stallOp, nil, stateHeld, 0},
				{"shutting down", closeOp(CloseGoingAway), nil, stateCloseSent, CloseGoingAway},
				{"late start", startOp("w"), yes, stateCloseSent, CloseGoingAway},
				{"close frame written", releaseOp, nil, stateClosed, CloseGoingAway},
				{"start again", startOp("w2"), yes, stateClosed, CloseGoingAway},
			},
			frames: "[]", closes: "[1001]",
		},
		{
			name:  "held overflow makes the next start stale, not a close",
			queue: 2,
			steps: []step{
				{"send a", sendOp("a"), yes, stateHeld, 0},
				{"send b", sendOp("b"), yes, stateHeld, 0},
				{"overflow drops the held frames", sendOp("c"), yes, stateHeld, 0},
				{"stale welcome refused", startOp("stale"), no, stateHeld, 0},
				{"send d", sendOp("d"), yes, stateHeld, 0},
				{"fresh welcome", startOp("w"), yes, stateOpen, 0},
				{"close", closeOp(CloseNormal), nil, stateClosed, CloseNormal},
			},
			frames: "[w d]", closes: "[1000]",
		},
		{
			name: "epoch reset while held closes at start",
			steps: []step{
				{"reset announced", resetOp("e2"), nil, stateHeld, 0},
				{"welcome of the old epoch", startOp("w"), yes, stateClosed, CloseResync},
			},
			frames: "[]", closes: "[4010]",
		},
		{
			name: "stored frames in order, then a gap",
			steps: []step{
				{"start", startOp("w"), yes, stateOpen, 0},
				{"reset to its own epoch", resetOp(""), nil, stateOpen, 0},
				{"seq 1", storedOp("", 1), yes, stateOpen, 0},
				{"seq 1 again is skipped", storedOp("", 1), yes, stateOpen, 0},
				{"seq 3 after a gap", storedOp("", 3), no, stateClosed, CloseResync},
			},
			frames: "[w m1]", closes: "[4010]",
		},
		{
			name: "epoch reset when open",
			steps: []step{
				{"start", startOp("w"), yes, stateOpen, 0},
				{"reset", resetOp("e2"), nil, stateClosed, CloseResync},
				{"stored frame of the new epoch", storedOp("e2", 1), no, stateClosed, CloseResync},
			},
			frames: "[w]", closes: "[4010]",
		},
		{
			name:  "full queue closes too slow and drops the queue",
			queue: 1,
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"send a", sendOp("a"), yes, stateOpen, 0},
				{"send b overflows", sendOp("b"), no, stateClosing, CloseTooSlow},
				{"writer unstuck", releaseOp, nil, stateClosed, CloseTooSlow},
			},
			frames: "[w]", closes: "[4008]", slow: 1,
		},
		{
			name:  "a frame over the byte bound goes into an empty queue, ordinary ones fit beside it up to the bound",
			bytes: 4,
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"big frame into the empty queue", sendOp("abcdefgh"), yes, stateOpen, 0},
				{"ordinary frames beside it", sendOp("xyz"), yes, stateOpen, 0},
				{"past the bound beside it overflows", sendOp("uv"), no, stateClosing, CloseTooSlow},
				{"writer unstuck", releaseOp, nil, stateClosed, CloseTooSlow},
			},
			frames: "[w]", closes: "[4008]", slow: 1,
		},
		{
			name:  "a second frame over the byte bound while one waits closes too slow",
			bytes: 4,
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"big frame into the empty queue", sendOp("abcdefgh"), yes, stateOpen, 0},
				{"another big frame overflows", sendOp("ijklmnop"), no, stateClosing, CloseTooSlow},
				{"writer unstuck", releaseOp, nil, stateClosed, CloseTooSlow},
			},
			frames: "[w]", closes: "[4008]", slow: 1,
		},
		{
			name:  "a frame over the byte bound follows less than half the bound, not half or more",
			bytes: 4,
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"a keep-alive", sendOp("k"), yes, stateOpen, 0},
				{"big frame behind it", sendOp("abcdefgh"), yes, stateOpen, 0},
				{"writer unstuck", releaseOp, nil, stateOpen, 0},
				{"stall again", stallOp, nil, stateOpen, 0},
				{"send x, which the writer takes", sendOp("x"), yes, stateOpen, 0},
				{"two bytes queued", sendOp("yz"), yes, stateOpen, 0},
				{"big frame behind half the bound overflows", sendOp("abcdefgh"), no, stateClosing, CloseTooSlow},
				{"writer unstuck", releaseOp, nil, stateClosed, CloseTooSlow},
			},
			frames: "[w k abcdefgh x]", closes: "[4008]", slow: 1,
		},
		{
			name:  "queued bytes up to the bound are kept, past it close too slow",
			bytes: 4,
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"send ab", sendOp("ab"), yes, stateOpen, 0},
				{"send cd fills the bound", sendOp("cd"), yes, stateOpen, 0},
				{"writer unstuck", releaseOp, nil, stateOpen, 0},
				{"stall again", stallOp, nil, stateOpen, 0},
				{"send e, which the writer takes", sendOp("e"), yes, stateOpen, 0},
				{"send f", sendOp("f"), yes, stateOpen, 0},
				{"a batch past the bound, frame by frame", batchOp("gh", "ij"), no, stateClosing, CloseTooSlow},
				{"writer unstuck", releaseOp, nil, stateClosed, CloseTooSlow},
			},
			frames: "[w ab cd e]", closes: "[4008]", slow: 1,
		},
		{
			name:  "held bytes past the bound make the next start stale",
			bytes: 4,
			steps: []step{
				{"send abc", sendOp("abc"), yes, stateHeld, 0},
				{"overflow drops the held frames", sendOp("de"), yes, stateHeld, 0},
				{"stale welcome refused", startOp("stale"), no, stateHeld, 0},
				{"send f", sendOp("f"), yes, stateHeld, 0},
				{"fresh welcome", startOp("w"), yes, stateOpen, 0},
				{"close", closeOp(CloseNormal), nil, stateClosed, CloseNormal},
			},
			frames: "[w f]", closes: "[1000]",
		},
		{
			name: "shutdown when open ends without a close frame",
			steps: []step{
				{"start", startOp("w"), yes, stateOpen, 0},
				{"socket ended", shutdownOp, nil, stateClosed, 0},
				{"send refused", sendOp("x"), no, stateClosed, 0},
				{"close too late", closeOp(CloseNormal), nil, stateClosed, 0},
			},
			frames: "[w]", closes: "[]",
		},
		{
			name: "shutdown when held",
			steps: []step{
				{"held event", sendOp("e"), yes, stateHeld, 0},
				{"socket ended", shutdownOp, nil, stateClosed, 0},
				{"late start", startOp("w"), yes, stateClosed, 0},
			},
			frames: "[]", closes: "[]",
		},
		{
			name: "shutdown while closing leaves the close to the writer",
			steps: []step{
				{"stall", stallOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateOpen, 0},
				{"close", closeOp(CloseNormal), nil, stateClosing, CloseNormal},
				{"socket ended", shutdownOp, nil, stateClosing, CloseNormal},
				{"writer goes on", releaseOp, nil, stateClosed, CloseNormal},
			},
			frames: "[w]", closes: "[1000]",
		},
		{
			name: "a failed write ends the connection",
			steps: []step{
				{"writes fail", failOp, nil, stateHeld, 0},
				{"start", startOp("w"), yes, stateClosed, 0},
				{"send refused", sendOp("x"), no, stateClosed, 0},
			},
			frames: "[]", closes: "[]", aborts: true,
		},
		{
			name: "a failed close frame ends the connection",
			steps: []step{
				{"start", startOp("w"), yes, stateOpen, 0},
				{"writes fail", failOp, nil, stateOpen, 0},
				{"close", closeOp(CloseNormal), nil, stateClosed, CloseNormal},
			},
			frames: "[w]", closes: "[]", aborts: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &stepTransport{}
			slow := 0
			c := NewConn("c", "r", "u", tr, ConnOptions{QueueSize: tc.queue, QueueBytes: tc.bytes, OnSlow: func(*Conn) { slow++ }})
			for i, s := range tc.steps {
				got := s.do(c, tr)
				settle(t, c, tr)
				if s.ok != nil && got != *s.ok {
					t.Fatalf("step %d %q: returned %v, want %v", i, s.name, got, *s.ok)
				}
				c.mu.Lock()
				state, code := c.state, c.closeCode
				queued, counted := sizeOf(c.queue), c.queued
				c.mu.Unlock()
				if queued != counted {
					t.Fatalf("step %d %q: %d bytes queued, %d counted", i, s.name, queued, counted)
				}
				if state != s.want || code != s.code {
					t.Fatalf("step %d %q: state %v code %d, want %v code %d", i, s.name, state, code, s.want, s.code)
				}
				done := false
				select {
				case <-c.Done():
					done = true
				default:
				}
				if done != (state == stateClosed) {
					t.Fatalf("step %d %q: Done closed %v in state %v", i, s.name, done, state)
				}
				if closing, ccode := c.Closing(); closing != state.closing() || ccode != code {
					t.Fatalf("step %d %q: Closing() = %v, %d in state %v", i, s.name, closing, ccode, state)
				}
			}
			c.Wait()
			tr.mu.Lock()
			frames, closes, aborts := fmt.Sprint(tr.frames), fmt.Sprint(tr.closes), tr.aborts > 0
			tr.mu.Unlock()
			if frames != tc.frames || closes != tc.closes {
				t.Fatalf("wire: frames %s closes %s, want frames %s closes %s", frames, closes, tc.frames, tc.closes)
			}
			if aborts != tc.aborts {
				t.Fatalf("socket aborted %v, want %v", aborts, tc.aborts)
			}
			if slow != tc.slow {
				t.Fatalf("OnSlow called %d times, want %d", slow, tc.slow)
			}
		})
	}
}

// A connection's close timings take their defaults field by field, and
// Grace is the one the Conn applies itself.
func TestConnCloseTimingsDefaults(t *testing.T) {
	c := NewConn("c", "r", "u", &stepTransport{}, ConnOptions{Timings: CloseTimings{Grace: time.Second}})
	if got, want := c.Timings(), (CloseTimings{WriteTimeout: 10 * time.Second, Grace: time.Second, Wait: 2 * time.Second}); got != want {
		t.Fatalf("timings %+v, want %+v", got, want)
	}
}

// WaitWritten returns once the frames given so far are written, or the
// connection closes; a stuck writer keeps it waiting.
func TestConnWaitWritten(t *testing.T) {
	tr := &stepTransport{}
	c := NewConn("c", "r", "u", tr, ConnOptions{})
	stallOp(c, tr)
	c.Start([]byte("w"))
	settle(t, c, tr)
	n, _ := c.SendTracked([]byte("a"))
	if n != 2 {
		t.Fatalf("SendTracked numbered the frame after the welcome %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitWritten(ctx, n); err == nil {
		t.Fatal("WaitWritten returned while the writer is stuck")
	}
	done := make(chan error, 1)
	go func() { done <- c.WaitWritten(context.Background(), n) }()
	releaseOp(c, tr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitWritten still waits after the frames were written")
	}

	// Closing wakes a waiter too.
	stallOp(c, tr)
	c.Send([]byte("b"))
	settle(t, c, tr)
	n, _ = c.SendTracked([]byte("c"))
	go func() { done <- c.WaitWritten(context.Background(), n) }()
	time.Sleep(20 * time.Millisecond)
	c.Close(CloseTooSlow, "")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitWritten still waits after the connection closed")
	}
	releaseOp(c, tr)
	c.Wait()
}
