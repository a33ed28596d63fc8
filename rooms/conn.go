package rooms

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Close codes the server sends.
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	CloseInvalidUTF8  = 1007
	CloseTooBig       = 1009
	CloseTokenExpired = 4001
	CloseTooSlow      = 4008
	CloseResync       = 4010
	CloseRateLimited  = 4029
)

// Reasons of a CloseResync for a new epoch, so a client can tell an
// operator's DELETE (do not put the old content back) from a lost history
// (its copy may be the only one left).
const (
	ReasonRoomDeleted = "room deleted: reconnect with since"
	ReasonHistoryLost = "room history lost: reconnect with since"
	// ReasonForked: a failover lost stored messages this connection may
	// hold, and their seqs went to others; the room keeps what it holds
	// under a new epoch.
	ReasonForked = "room history forked: reconnect with since"
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

// BatchInlineWriter is an InlineWriter that can also write several frames
// in one non-blocking write.
type BatchInlineWriter interface {
	TryWriteBatch(frames [][]byte) (done bool, err error)
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
	// StateCapable: the client joined with state=1 and answers
	// state_request frames.
	StateCapable bool
	// Doc: a Yjs connection. The Hub sends it none of the room's JSON
	// frames; the document engine (HubOptions.Docs) sends it what it
	// decides of the document's payloads.
	Doc bool
	// PresenceCount: the client asked for the room's member count instead
	// of its presence events (presence=count): it gets count frames, at
	// most one per HubOptions.CountInterval, and no join, leave, update or
	// sync frames.
	PresenceCount bool
	// ReadOnly: the token lets the user read the room only; the
	// connection may not change what the room keeps.
	ReadOnly bool

	lastRead atomic.Int64 // unix nanos of the last frame read, for idle detection

	t        Transport
	inline   InlineWriter // nil when t cannot write inline
	maxQueue int
	maxBytes int
	timings  CloseTimings
	onSlow   func(*Conn)
	// idSum is ID's hash: a fan-out that skips the sender compares it,
	// not ID's bytes in their own cache line, for every connection.
	idSum uint64

	mu       sync.Mutex
	idle     sync.Cond // on mu: signalled when a write (inline or writer) ends
	state    connState
	queue    [][]byte
	queued   int // bytes of the frames in queue
	spare    [][]byte
	controls []control // pings and pongs, written before queued frames
	// pushed counts the frames ever given to the queue (or written
	// inline), and inflight those the writer is writing: the frames
	// pushed-len(queue)-inflight have been written or dropped. See
	// WaitWritten.
	pushed   uint64
	inflight int
	moved    chan struct{} // closed and cleared when frames leave; nil without waiters
	// writing: a write runs, inline or in a writer goroutine (writerDone
	// is then set). Not a state: see connState.
	writing bool
	// flushRest: the transport holds the rest of an inline write, which
	// the writer sends first. Not a state: see connState.
	flushRest bool
	// stale: in stateHeld, held frames were dropped for the queue bound,
	// so the next StartAt is refused and the welcome rebuilt.
	stale bool
	// The close frame's code and reason, set on entering stateClosing
	// (closeCode stays 0 when the connection ended without one).
	closeCode int
	closeText string
	// The position of the last stored message queued: a stored frame is
	// queued only when it is the next one, so the client's stream has no
	// gap and no duplicate.
	epoch string
	seq   uint64
	// While held, the seq of each queued frame (0 for unstored ones), so
	// StartAt can drop those its replay already covers.
	heldSeq  []uint64
	startPos Position // given by Hub.Add
	// A new epoch announced while held: StartAt closes the connection
	// unless its welcome is of that epoch.
	resetTo, resetWhy string
	done              chan struct{} // closed on entering stateClosed
	writerDone        chan struct{} // closed each time a writer exits; nil while none runs
}

// connState is where a connection is in its life. Every transition is
// made under Conn.mu, and only ever forward:
//
//	           ┌───────────────────────────────────────┐
//	           │                                       ▼
//	held ───▶ open ───▶ closing ───▶ closeSent ───▶ closed
//	│  │                 ▲  │                        ▲   ▲
//	│  └─────────────────┘  └────────────────────────┘   │
//	└────────────────────────────────────────────────────┘
//
//	from       event                                            to
//	held       StartAt                                          open
//	held       StartAt while stale (it returns false)           held
//	held       StartAt after an epoch reset, or with a gap      closing (4010)
//	held       Close                                            closing
//	held       Shutdown                                         closed
//	open       Close; full queue (4008); ResetEpoch, SendStored
//	           of another epoch or after a gap (4010)           closing
//	open       Shutdown; a failed write                         closed
//	closing    the writer takes the close frame                 closeSent
//	closing    a failed write                                   closed
//	closeSent  WriteClose returned (written or failed)          closed
//
// In the states:
//
//   - held: frames are queued but not written until StartAt puts the
//     welcome first; no writer runs, pings and pongs wait too. A full
//     queue drops the held frames and sets stale instead of closing.
//   - open: frames are written, inline or by a writer.
//   - closing: Close was called (closeCode is set). Frames queued before
//     are still written (CloseTooSlow drops them), then the close frame;
//     nothing new is queued, no ping or pong written. A writer runs, or
//     an inline write that starts one when it returns, until it takes the
//     close frame: closeLocked sees to that. Entered from held, the held
//     frames are dropped, as they must not go out without their welcome,
//     and a later StartAt writes nothing of its own.
//   - closeSent: the writer has taken the close frame and is writing it.
//   - closed: nothing more is ever written: the close frame was written
//     (or its write failed), another write failed, or Shutdown found the
//     socket ended first. Done is closed exactly on entering this state.
//
// Shutdown in closing or closeSent changes no state: the writer running
// there ends the connection itself, by the close frame or by its failure
// on the socket the caller then ends.
//
// Facts that are not part of the lifecycle stay fields of Conn, because
// they vary independently of it: writing (a write runs) is true or false
// in open, closing, closeSent and even closed (a writer returning from
// its last write), and Wait waits on it alone; flushRest (the transport
// keeps the rest of an inline write) arises in open and may still be due
// in closing; stale, resetTo and heldSeq describe the held frames and
// mean nothing after held.
type connState uint8

const (
	stateHeld connState = iota
	stateOpen
	stateClosing
	stateCloseSent
	stateClosed
)

func (s connState) String() string {
	switch s {
	case stateHeld:
		return "held"
	case stateOpen:
		return "open"
	case stateClosing:
		return "closing"
	case stateCloseSent:
		return "closeSent"
	case stateClosed:
		return "closed"
	}
	return "connState(" + strconv.Itoa(int(s)) + ")"
}

// closing reports whether Close was called or the connection ended: no
// frame is queued from then on.
func (s connState) closing() bool { return s >= stateClosing }

// ended reports whether nothing more is written, not even a close frame.
func (s connState) ended() bool { return s >= stateCloseSent }

type control struct {
	op      byte
	payload []byte
}

// maxControls bounds pending control frames; more are dropped (a peer that
// pings faster than we write gets fewer pongs, as RFC 6455 allows).
const maxControls = 4

// ConnOptions configure a Conn.
type ConnOptions struct {
	// QueueSize bounds the frames waiting to be written; a connection
	// whose queue is full is closed with CloseTooSlow. Zero value means
	// 256.
	QueueSize int
	// QueueBytes bounds the bytes of the frames waiting to be written
	// (the frame the writer is writing is not counted): a frame that
	// would pass it is handled as one that finds the queue full. A frame
	// larger than the bound is still taken into an empty queue, so one
	// document bigger than the bound can be sent. Frames shared with
	// other connections count in each one's bound. Zero value means
	// DefaultQueueBytes.
	QueueBytes int
	// Timings govern how the connection ends.
	Timings CloseTimings
	// OnSlow is called once when the connection is dropped for a full queue.
	OnSlow func(*Conn)
}

// DefaultQueueBytes is ConnOptions.QueueBytes' default.
const DefaultQueueBytes = 8 << 20

// CloseTimings are the timings that govern how a connection ends, in one
// place. The Conn applies Grace itself; WriteTimeout and Wait are the
// transport's and the connection owner's (see Conn.Timings), carried here
// so that every timing of a close is set together. A zero field takes its
// default.
type CloseTimings struct {
	// WriteTimeout bounds one socket write: a write to a peer that does
	// not read ends the socket after it. Zero value means 10s.
	WriteTimeout time.Duration
	// Grace is how long a writer stuck on a peer that does not read has,
	// once the connection is closing, to finish and send the close frame
	// before the socket is ended. Zero value means 5s.
	Grace time.Duration
	// Wait is how long the peer has, after the close frame, to answer it
	// before the socket is ended. Zero value means 2s.
	Wait time.Duration
}

func (t CloseTimings) withDefaults() CloseTimings {
	if t.WriteTimeout <= 0 {
		t.WriteTimeout = 10 * time.Second
	}
	if t.Grace <= 0 {
		t.Grace = 5 * time.Second
	}
	if t.Wait <= 0 {
		t.Wait = 2 * time.Second
	}
	return t
}

// NewConn returns a connection whose frames are held until Start.
func NewConn(id, room, user string, t Transport, o ConnOptions) *Conn {
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	iw, _ := t.(InlineWriter)
	c := &Conn{
		ID: id, Room: room, User: user, idSum: idSum(id),
		t: t, inline: iw, maxQueue: o.QueueSize, maxBytes: o.QueueBytes, timings: o.Timings.withDefaults(), onSlow: o.OnSlow,
		state: stateHeld,
		done:  make(chan struct{}),
	}
	c.idle.L = &c.mu
	return c
}

var idSeed = maphash.MakeSeed()

func idSum(id string) uint64 { return maphash.String(idSeed, id) }

// excluded is a fan-out's test for the connection to skip: its ID is ex,
// of hash exSum (idSum(ex), made once per fan-out). ex empty skips none.
func (c *Conn) excluded(ex string, exSum uint64) bool {
	return ex != "" && c.idSum == exSum && c.ID == ex
}

// Timings returns the connection's close timings, defaults filled in.
func (c *Conn) Timings() CloseTimings { return c.timings }

// Start queues first ahead of every frame held so far and starts writing,
// keeping the connection's position. See StartAt.
func (c *Conn) Start(first []byte) bool {
	c.mu.Lock()
	pos := Position{Epoch: c.epoch, Seq: c.seq}
	c.mu.Unlock()
	return c.StartAt([][]byte{first}, pos)
}

// Position returns the position of the last stored message queued.
func (c *Conn) Position() Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Position{Epoch: c.epoch, Seq: c.seq}
}

// setPosition is the Hub's, before the connection gets any frame.
func (c *Conn) setPosition(p Position) {
	c.mu.Lock()
	c.epoch, c.seq = p.Epoch, p.Seq
	c.startPos = p
	c.mu.Unlock()
}

// StartPosition returns the position the Hub gave the connection when it
// was added: every stored message after it reaches the connection (held
// until StartAt), so a welcome without a replay is at this position.
func (c *Conn) StartPosition() Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startPos
}

// StartAt queues first (the welcome and any replay, which cover the stream
// up to pos) ahead of every frame held so far and starts writing. Held
// stored frames that pos covers are dropped, and later ones must follow
// pos without a gap. It returns false, and starts nothing, when held
// frames had to be dropped for the queue bound since the last call: first
// may predate them, so the caller builds it again from a fresh snapshot
// and calls StartAt again.
func (c *Conn) StartAt(first [][]byte, pos Position) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.closing() {
		// Closed before it began (closeLocked dropped the held frames):
		// the close frame is all it gets, and first is not written.
		return true
	}
	if c.stale {
		c.stale = false
		return false
	}
	if c.resetTo != "" && pos.Epoch != c.resetTo {
		// The welcome was read from an epoch that ended meanwhile.
		c.closeLocked(CloseResync, c.resetWhy)
		return true
	}
	switch {
	case pos.Epoch != c.epoch:
		c.dropHeldStoredLocked(^uint64(0))
		c.epoch, c.seq = pos.Epoch, pos.Seq
	case pos.Seq >= c.seq:
		c.dropHeldStoredLocked(pos.Seq)
		c.seq = pos.Seq
	default:
		// Held frames start after pos+1: the first ones are missing.
		if held := c.firstHeldStoredLocked(); held == 0 || held > pos.Seq+1 {
			c.closeLocked(CloseResync, "missed messages: reconnect with since")
			return true
		}
		c.dropHeldStoredLocked(pos.Seq)
	}
	q := make([][]byte, 0, len(first)+len(c.queue))
	q = append(append(q, first...), c.queue...)
	c.queue, c.heldSeq = q, nil
	c.pushed += uint64(len(first))
	c.queued += sizeOf(first)
	c.state = stateOpen
	c.kickLocked()
	return true
}

// dropHeldStoredLocked drops held stored frames with seq <= upTo.
func (c *Conn) dropHeldStoredLocked(upTo uint64) {
	q := c.queue[:0]
	for i, f := range c.queue {
		if seq := c.heldSeq[i]; seq != 0 && seq <= upTo {
			c.queued -= len(f)
			continue
		}
		q = append(q, f)
	}
	clear(c.queue[len(q):])
	c.queue = q
	c.movedLocked()
}

// dropQueueLocked drops every queued frame.
func (c *Conn) dropQueueLocked() {
	c.queue, c.queued = nil, 0
	c.movedLocked()
}

// movedLocked wakes the WaitWritten callers: frames left the queue, or
// the connection is closing.
func (c *Conn) movedLocked() {
	if c.moved != nil {
		close(c.moved)
		c.moved = nil
	}
}

// overLocked reports whether a frame of n bytes finds the queue full:
// at its frame bound, or with queued bytes that n would take past the
// byte bound. An empty queue takes a frame of any size, and a frame
// larger than the whole bound (one update of a big document) is taken
// while less than half the bound is queued, so a keep-alive waiting
// ahead of it does not drop a provider that reads. While it waits for the
// writer, ordinary frames fit beside it up to the bound, and another big
// one does not: the queue holds at most one big frame and the bound.
func (c *Conn) overLocked(n int) bool {
	if len(c.queue) >= c.maxQueue {
		return true
	}
	if len(c.queue) == 0 || c.queued+n <= c.maxBytes {
		return false
	}
	// Past the bound with a big frame waiting for the writer: ordinary
	// frames still fit beside it while they alone stay within the bound
	// (a writer the scheduler has not run yet must not cost a provider
	// that reads its socket), a second big frame does not. The scan runs
	// only past the bound, over at most maxQueue frames.
	big := 0
	for _, f := range c.queue {
		if len(f) > c.maxBytes {
			big += len(f)
		}
	}
	if n > c.maxBytes {
		return big > 0 || c.queued >= c.maxBytes/2
	}
	return c.queued-big+n > c.maxBytes
}

func sizeOf(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// WaitWritten blocks until the first n frames given to the connection
// (see SendTracked) have been written or dropped, or the connection is
// closing, or ctx ends. A reader calls it to stop asking for more output
// while its last answer still waits to be written: with a peer that does
// not read, it blocks until the write timeout ends the connection.
func (c *Conn) WaitWritten(ctx context.Context, n uint64) error {
	for {
		c.mu.Lock()
		if c.state.closing() || c.pushed-uint64(len(c.queue)+c.inflight) >= n {
			c.mu.Unlock()
			return nil
		}
		if c.moved == nil {
			c.moved = make(chan struct{})
		}
		ch := c.moved
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Conn) firstHeldStoredLocked() uint64 {
	for _, seq := range c.heldSeq {
		if seq != 0 {
			return seq
		}
	}
	return 0
}

// SendStored queues the stored frame at epoch:seq when it is the
// connection's next one (a nil frame only moves the position past it). A frame it already has is skipped; one of another
// epoch, or after a gap, closes the connection with CloseResync: the
// client reconnects with its position and gets what it missed.
func (c *Conn) SendStored(epoch string, seq uint64, frame []byte) bool {
	c.mu.Lock()
	if c.state.closing() {
		c.mu.Unlock()
		return false
	}
	switch {
	case epoch != c.epoch:
		why := ReasonHistoryLost
		if c.resetTo == epoch {
			why = c.resetWhy
		}
		c.dropQueueLocked()
		c.closeLocked(CloseResync, why)
		c.mu.Unlock()
		return false
	case seq <= c.seq:
		c.mu.Unlock()
		return true
	case seq != c.seq+1:
		c.closeLocked(CloseResync, "missed messages: reconnect with since")
		c.mu.Unlock()
		return false
	}
	// The room's epoch string from now on: the next comparison is then
	// of the same bytes (memequal's pointer check), not of 36 of them.
	c.epoch, c.seq = epoch, seq
	if frame == nil {
		// The sender's own message, not echoed: only the position moves.
		c.mu.Unlock()
		return true
	}
	return c.sendLocked(frame, seq)
}

// ResetEpoch closes the connection with CloseResync, giving reason,
// unless it is already at epoch: the room's history was reset.
func (c *Conn) ResetEpoch(epoch, reason string) {
	c.mu.Lock()
	switch {
	case c.state == stateHeld:
		c.resetTo, c.resetWhy = epoch, reason
	case c.epoch != epoch:
		c.dropQueueLocked()
		c.closeLocked(CloseResync, reason)
	}
	c.mu.Unlock()
}

// Send queues frame for writing. The frame's bytes are shared, never
// modified. It reports false when the frame was not queued because the
// connection is closing or its queue overflowed (which starts closing it
// with CloseTooSlow).
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.state.closing() {
		c.mu.Unlock()
		return false
	}
	return c.sendLocked(frame, 0)
}

// SendTracked is Send, also returning the frame's number among the
// frames given to the connection, for WaitWritten.
func (c *Conn) SendTracked(frame []byte) (uint64, bool) {
	c.mu.Lock()
	if c.state.closing() {
		n := c.pushed
		c.mu.Unlock()
		return n, false
	}
	n := c.pushed + 1 // sendLocked counts the frame first
	return n, c.sendLocked(frame, 0)
}

// sendLocked queues frame (stored at seq, or 0); it releases c.mu.
func (c *Conn) sendLocked(frame []byte, seq uint64) bool {
	c.pushed++
	if c.overLocked(len(frame)) && c.state == stateHeld {
		// Before the welcome every queued frame is an event the snapshot
		// will be read after; drop them and have Start ask for a fresh
		// snapshot instead of dropping a connection that has not begun.
		c.heldSeq = c.heldSeq[:0]
		c.dropQueueLocked()
		c.stale = true
		c.mu.Unlock()
		return true
	}
	if c.overLocked(len(frame)) {
		c.dropQueueLocked()
		c.closeLocked(CloseTooSlow, "send queue full")
		c.mu.Unlock()
		if c.onSlow != nil {
			c.onSlow(c)
		}
		return false
	}
	if c.inline != nil && !c.writing && c.state == stateOpen && len(c.queue) == 0 && len(c.controls) == 0 {
		return c.sendInline(frame, nil, nil)
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if c.state == stateHeld {
		c.heldSeq = append(c.heldSeq, seq)
	}
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// SendBatch queues unstored frames together, so a connection whose writer
// is idle takes them in one write. See Send.
func (c *Conn) SendBatch(frames [][]byte) bool {
	if len(frames) == 1 {
		return c.Send(frames[0])
	}
	c.mu.Lock()
	if c.state.closing() {
		c.mu.Unlock()
		return false
	}
	if len(c.queue)+len(frames) > c.maxQueue || c.queued+sizeOf(frames) > c.maxBytes {
		// One frame at a time: the queue bound applies as for Send.
		c.mu.Unlock()
		for _, f := range frames {
			if !c.Send(f) {
				return false
			}
		}
		return true
	}
	c.pushed += uint64(len(frames))
	if bw, ok := c.t.(BatchInlineWriter); ok && !c.writing && c.state == stateOpen && len(c.queue) == 0 && len(c.controls) == 0 {
		return c.sendInline(nil, bw, frames)
	}
	c.queue = append(c.queue, frames...)
	c.queued += sizeOf(frames)
	if c.state == stateHeld {
		for range frames {
			c.heldSeq = append(c.heldSeq, 0)
		}
	}
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// sendInline writes frame (or, with bw, the frames of batch) from the
// caller's goroutine while no writer runs; it is entered with c.mu held
// and releases it. Frames sent meanwhile queue behind it, and a writer
// takes over whatever is left.
func (c *Conn) sendInline(frame []byte, bw BatchInlineWriter, batch [][]byte) bool {
	c.writing = true
	c.mu.Unlock()
	var done bool
	var err error
	if bw != nil {
		done, err = bw.TryWriteBatch(batch)
	} else {
		done, err = c.inline.TryWrite(frame)
	}
	c.mu.Lock()
	c.writing = false
	c.idle.Broadcast()
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
	if !c.state.closing() && len(c.controls) < maxControls {
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
		c.heldSeq = nil
		c.dropQueueLocked()
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

// Closing reports whether Close was called (or the connection ended
// without a close frame, then with code 0), and with which code.
func (c *Conn) Closing() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.closing(), c.closeCode
}

// Wait blocks until no write runs, inline or in a writer goroutine. Call
// it after the reader has ended, so that no goroutine outlives the
// connection. It sleeps on c.idle, which every end of a write signals.
func (c *Conn) Wait() {
	c.mu.Lock()
	for c.writing {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// Shutdown marks the connection closed from the reader's side (the socket
// has ended): nothing more is written and a running writer stops.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	c.dropQueueLocked()
	if !c.state.closing() {
		c.endLocked()
	}
	c.mu.Unlock()
}

// endLocked enters stateClosed.
func (c *Conn) endLocked() {
	c.state = stateClosed
	close(c.done)
	c.movedLocked()
}

// closeLocked moves a held or open connection to stateClosing with code.
func (c *Conn) closeLocked(code int, reason string) {
	if c.state.closing() {
		return
	}
	if c.state == stateHeld {
		// Held frames must not go out without their welcome, nor after
		// the close frame.
		c.heldSeq, c.stale = nil, false
		c.dropQueueLocked()
	}
	c.state, c.closeCode, c.closeText = stateClosing, code, reason
	c.movedLocked()
	if c.writing {
		// The writer may be stuck in a write to a peer that does not read,
		// and the close frame waits behind it: give it CloseGrace, then end
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
	case <-time.After(c.timings.Grace):
		c.t.Abort()
	}
}

// kickLocked starts a writer when there is work and none runs.
func (c *Conn) kickLocked() {
	if c.writing {
		return
	}
	switch c.state {
	case stateHeld:
		return // frames wait for StartAt
	case stateOpen:
		if len(c.queue) == 0 && len(c.controls) == 0 {
			return
		}
	case stateClosing:
		// The close frame is due, after the queue.
	default:
		return // nothing more is written
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
		if c.flushRest && !c.state.ended() {
			// Every transport write goes out after the rest; with nothing
			// else to write, an empty batch sends just the rest.
			c.flushRest = false
			if len(c.queue) == 0 && len(c.controls) == 0 && c.state == stateOpen {
				c.mu.Unlock()
				if err := c.t.WriteFrames(nil); err != nil {
					c.writerFailed(exit)
					return
				}
				continue
			}
		}
		if len(c.controls) > 0 && c.state == stateOpen {
			ctl := c.controls[0]
			c.controls = c.controls[1:]
			c.mu.Unlock()
			if err := c.t.WriteControl(ctl.op, ctl.payload); err != nil {
				c.writerFailed(exit)
				return
			}
			continue
		}
		if len(c.queue) > 0 && (c.state == stateOpen || c.state == stateClosing) {
			batch := c.queue
			c.queue, c.spare = c.spare[:0], nil
			c.queued, c.inflight = 0, len(batch)
			c.mu.Unlock()
			err := c.t.WriteFrames(batch)
			clear(batch)
			c.mu.Lock()
			c.inflight = 0
			c.movedLocked()
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
		if c.state == stateClosing {
			code, text := c.closeCode, c.closeText
			c.state = stateCloseSent
			c.mu.Unlock()
			err := c.t.WriteClose(code, text)
			c.mu.Lock()
			c.endLocked()
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
	c.dropQueueLocked()
	if !c.state.ended() {
		c.endLocked()
	}
}

func (c *Conn) stopLocked(exit chan struct{}) {
	c.writing = false
	c.writerDone = nil
	close(exit)
	c.idle.Broadcast()
}
