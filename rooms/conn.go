package rooms

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Close codes the server sends.
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	CloseTooBig       = 1009
	CloseTokenExpired = 4001
	CloseTooSlow      = 4008
	CloseRateLimited  = 4029
)

// Transport is the network side of a connection. All methods but Abort are
// called from the connection's writer only, never concurrently.
type Transport interface {
	// WriteFrames writes text frames in order; it may coalesce them into
	// one network write.
	WriteFrames(frames [][]byte) error
	// WriteControl writes a ping or pong control frame.
	WriteControl(op byte, payload []byte) error
	// WriteClose sends a close frame and arranges for the socket to end
	// soon even if the peer does not answer.
	WriteClose(code int, reason string) error
	// Abort ends the socket at once; it may be called from any goroutine.
	Abort()
}

// InlineWriter is a Transport that can also try one non-blocking write
// from the caller's goroutine. done is false when the socket did not take
// the whole frame; the transport keeps the rest and writes it before the
// next WriteFrames.
type InlineWriter interface {
	TryWrite(frame []byte) (done bool, err error)
}

// Conn is one local WebSocket connection in a room. Frames are queued with
// Send and written by a writer goroutine that exists only while there is
// something to write, so an idle connection costs no goroutine besides its
// reader. The queue is bounded: a connection that cannot keep up is closed
// with CloseTooSlow and never slows down the room.
type Conn struct {
	ID   string
	Room string
	User string

	lastRead atomic.Int64 // unix nanos of the last frame read, for idle detection

	t        Transport
	inline   InlineWriter // nil when t cannot write inline
	maxQueue int
	onSlow   func(*Conn)

	mu         sync.Mutex
	queue      [][]byte
	spare      [][]byte
	controls   []control // pings and pongs, written before queued frames
	flushRest  bool      // the transport holds the rest of an inline write
	stale      bool      // held frames were dropped: the welcome must be rebuilt
	held       bool      // frames wait until Start puts the welcome first
	writing    bool
	closing    bool
	closeCode  int
	closeText  string
	closeSent  bool
	done       chan struct{} // closed when the writer has sent the close frame or failed
	writerDone chan struct{} // closed each time a writer exits; nil while none runs
}

type control struct {
	op      byte
	payload []byte
}

// maxControls bounds pending control frames; more are dropped (a peer that
// pings faster than we write gets fewer pongs, as RFC 6455 allows).
const maxControls = 4

// ConnOptions configure a Conn. Zero values: QueueSize 256.
type ConnOptions struct {
	QueueSize int
	// OnSlow is called once when the connection is dropped for a full queue.
	OnSlow func(*Conn)
}

// NewConn returns a connection whose frames are held until Start.
func NewConn(id, room, user string, t Transport, o ConnOptions) *Conn {
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	iw, _ := t.(InlineWriter)
	return &Conn{
		ID: id, Room: room, User: user,
		t: t, inline: iw, maxQueue: o.QueueSize, onSlow: o.OnSlow,
		held: true,
		done: make(chan struct{}),
	}
}

// Start queues first ahead of every frame held so far and starts writing.
// It returns false, and starts nothing, when held frames had to be dropped
// for the queue bound since the last call: first may predate them, so the
// caller builds it again from a fresh snapshot and calls Start again.
func (c *Conn) Start(first []byte) bool {
	c.mu.Lock()
	if c.stale && !c.closing {
		c.stale = false
		c.mu.Unlock()
		return false
	}
	if c.closing {
		// Closed before it began: the close frame is all it gets; held
		// events must not follow it, nor go out without a welcome.
		c.queue = nil
		c.held = false
		c.kickLocked()
		c.mu.Unlock()
		return true
	}
	c.queue = append(c.queue, nil)
	copy(c.queue[1:], c.queue)
	c.queue[0] = first
	c.held = false
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// Send queues frame for writing. The frame's bytes are shared, never
// modified. It reports false when the frame was not queued because the
// connection is closing or its queue overflowed (which starts closing it
// with CloseTooSlow).
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.maxQueue && c.held {
		// Before the welcome every queued frame is an event the snapshot
		// will be read after; drop them and have Start ask for a fresh
		// snapshot instead of dropping a connection that has not begun.
		c.queue = nil
		c.stale = true
		c.mu.Unlock()
		return true
	}
	if len(c.queue) >= c.maxQueue {
		c.queue = nil
		c.closeLocked(CloseTooSlow, "send queue full")
		c.mu.Unlock()
		if c.onSlow != nil {
			c.onSlow(c)
		}
		return false
	}
	if c.inline != nil && !c.writing && !c.held && len(c.queue) == 0 && len(c.controls) == 0 {
		return c.sendInline(frame)
	}
	c.queue = append(c.queue, frame)
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// sendInline writes frame from the caller's goroutine while no writer
// runs; it is entered with c.mu held and releases it. Frames sent
// meanwhile queue behind it, and a writer takes over whatever is left.
func (c *Conn) sendInline(frame []byte) bool {
	c.writing = true
	c.mu.Unlock()
	done, err := c.inline.TryWrite(frame)
	c.mu.Lock()
	c.writing = false
	if err != nil {
		c.failLocked()
		c.mu.Unlock()
		c.t.Abort()
		return false
	}
	if !done {
		c.flushRest = true
		c.forceWriterLocked()
	} else {
		c.kickLocked()
	}
	c.mu.Unlock()
	return true
}

// SendControl queues a ping or pong control frame (op 0x9 or 0xA).
func (c *Conn) SendControl(op byte, payload []byte) {
	c.mu.Lock()
	if !c.closing && len(c.controls) < maxControls {
		c.controls = append(c.controls, control{op, append([]byte(nil), payload...)})
		c.kickLocked()
	}
	c.mu.Unlock()
}

// Close starts closing the connection with code: frames already queued are
// written first (except for CloseTooSlow, which drops them), then the close
// frame. Only the first Close counts.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if code == CloseTooSlow {
		c.queue = nil
	}
	c.closeLocked(code, reason)
	c.mu.Unlock()
}

// MarkRead records that a frame arrived from the peer at now (unix nanos).
func (c *Conn) MarkRead(now int64) { c.lastRead.Store(now) }

// LastRead returns when a frame last arrived, as recorded by MarkRead.
func (c *Conn) LastRead() int64 { return c.lastRead.Load() }

// Abort ends the socket at once, without a close frame: for a peer that
// stopped answering.
func (c *Conn) Abort() { c.t.Abort() }

// Done is closed once the close frame was written (or writing failed).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Closing reports whether Close was called, and with which code.
func (c *Conn) Closing() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing, c.closeCode
}

// Wait blocks until no writer goroutine runs. Call it after the reader has
// ended, so that no goroutine outlives the connection.
func (c *Conn) Wait() {
	for {
		c.mu.Lock()
		writing, ch := c.writing, c.writerDone
		c.mu.Unlock()
		switch {
		case !writing:
			return
		case ch != nil:
			<-ch
		default:
			// An inline write, one non-blocking system call, is finishing.
			runtime.Gosched()
		}
	}
}

// Shutdown marks the connection closed from the reader's side (the socket
// has ended): nothing more is written and a running writer stops.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	c.queue = nil
	if !c.closing {
		c.closing = true
		c.closeSent = true
		close(c.done)
	}
	c.mu.Unlock()
}

func (c *Conn) closeLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeText = true, code, reason
	if c.writing {
		// The writer may be stuck in a write to a peer that does not read,
		// and the close frame waits behind it: give it slowGrace, then end
		// the socket (for 4001 and 1001 as much as for 4008).
		go c.abortAfterWriter()
		return
	}
	c.kickLocked()
}

// abortAfterWriter gives a blocked writer a moment, then ends the socket.
// It exits as soon as the writer does.
func (c *Conn) abortAfterWriter() {
	c.mu.Lock()
	ch := c.writerDone
	c.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-c.done:
	case <-afterSlowGrace():
		c.t.Abort()
	}
}

// kickLocked starts a writer when there is work and none runs.
func (c *Conn) kickLocked() {
	if c.writing || c.held && !c.closing {
		return
	}
	if len(c.queue) == 0 && len(c.controls) == 0 && (!c.closing || c.closeSent) {
		return
	}
	c.forceWriterLocked()
}

// forceWriterLocked starts a writer, also with nothing queued: the
// transport may hold the rest of an inline write.
func (c *Conn) forceWriterLocked() {
	if c.writing {
		return
	}
	c.writing = true
	c.writerDone = make(chan struct{})
	go c.writeLoop(c.writerDone)
}

func (c *Conn) writeLoop(exit chan struct{}) {
	for {
		c.mu.Lock()
		if c.flushRest && !c.closeSent {
			// Every transport write goes out after the rest; with nothing
			// else to write, an empty batch sends just the rest.
			c.flushRest = false
			if len(c.queue) == 0 && len(c.controls) == 0 && !c.closing {
				c.mu.Unlock()
				if err := c.t.WriteFrames(nil); err != nil {
					c.writerFailed(exit)
					return
				}
				continue
			}
		}
		if len(c.controls) > 0 && !c.closing {
			ctl := c.controls[0]
			c.controls = c.controls[1:]
			c.mu.Unlock()
			if err := c.t.WriteControl(ctl.op, ctl.payload); err != nil {
				c.writerFailed(exit)
				return
			}
			continue
		}
		if len(c.queue) > 0 && !c.held && !c.closeSent {
			batch := c.queue
			c.queue, c.spare = c.spare[:0], nil
			c.mu.Unlock()
			err := c.t.WriteFrames(batch)
			clear(batch)
			c.mu.Lock()
			if c.spare == nil {
				c.spare = batch[:0]
			}
			c.mu.Unlock()
			if err != nil {
				c.writerFailed(exit)
				return
			}
			continue
		}
		if c.closing && !c.closeSent {
			code, text := c.closeCode, c.closeText
			c.closeSent = true
			c.mu.Unlock()
			err := c.t.WriteClose(code, text)
			c.mu.Lock()
			close(c.done)
			c.stopLocked(exit)
			c.mu.Unlock()
			if err != nil {
				c.t.Abort()
			}
			return
		}
		c.stopLocked(exit)
		c.mu.Unlock()
		return
	}
}

// writerFailed ends the writer after a failed write: the connection is
// over, and its socket too.
func (c *Conn) writerFailed(exit chan struct{}) {
	c.mu.Lock()
	c.failLocked()
	c.stopLocked(exit)
	c.mu.Unlock()
	c.t.Abort()
}

// failLocked records a failed write: the connection is over.
func (c *Conn) failLocked() {
	c.queue = nil
	if !c.closeSent {
		c.closing = true
		c.closeSent = true
		close(c.done)
	}
}

func (c *Conn) stopLocked(exit chan struct{}) {
	c.writing = false
	c.writerDone = nil
	close(exit)
}
