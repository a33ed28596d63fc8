package rooms

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
)

// The stored-message path of the Hub. Deliver does only in-memory work
// here: whatever needs a round trip to the broker (a gap filled from
// History, a state request claimed, a forked stream moved to a new epoch)
// goes to the room's worker, a goroutine the hub owns, one per room at a
// time. Meanwhile the room's stored envelopes wait in order (bounded by
// count and bytes; past the bound they are dropped and read from the
// history instead, where they are stored), so one slow room never holds
// up the others its broker delivers from the same goroutine.
//
// Forks. A failover may lose stored messages that instances already
// delivered (the master died before its replica got them), and the
// promoted replica then gives their seqs to new messages. A connection
// that holds the old message would skip the new one as a duplicate. So
// the hub remembers a hash of the last few messages it delivered, and a
// room whose history no longer matches them (a seq delivered again with
// other content, or a history behind what was delivered) is moved to a
// new epoch (Stream.Fork) that keeps what the room holds: every
// connection of the old epoch resyncs from it.

// sumRingSize is how many delivered seqs of a room keep their hash. The
// messages a failover loses are the newest its master had (the replica
// holds a prefix of the master's writes), so the last one delivered is
// the one that tells; a few more cost nothing.
const sumRingSize = 8

// sumRing maps the room's last delivered seqs to their frames' hashes.
type sumRing [sumRingSize]struct{ seq, sum uint64 }

func (s *sumRing) add(seq, sum uint64) { s[seq%sumRingSize] = struct{ seq, sum uint64 }{seq, sum} }

func (s *sumRing) lookup(seq uint64) (uint64, bool) {
	e := s[seq%sumRingSize]
	return e.sum, seq != 0 && e.seq == seq
}

// fillJob is a gap the room's worker fills from History.
type fillJob struct {
	upTo   uint64 // the last seq to fill; 0: up to the room's latest (a resync)
	before uint64 // the room's seq when the gap was found
}

// roomStream is the room's stored-message state besides its position;
// guarded by room.streamMu.
type roomStream struct {
	ended string  // the epoch the room left last: its late envelopes are dropped
	sums  sumRing // hashes of the last stored frames delivered

	// holding: stored envelopes wait in held (in order) until the worker
	// has filled the gap or moved the room off a forked epoch.
	holding   bool
	held      []wire.Envelope
	heldBytes int
	// dropped is the last envelope dropped past the hold bound (when
	// dropping): the worker reads up to it from the history.
	dropping bool
	dropped  Position

	fill   *fillJob
	forked bool   // the epoch forked: the worker moves the room to a new one
	claim  uint64 // a state request is due at this seq

	working bool
	cancel  context.CancelFunc // stops the worker
	gen     uint64             // bumped when the room stops being followed; its worker quits
}

// isAnnouncement reports whether e announces an epoch (an empty frame):
// seq 0 for a reset, the seq the history continues at for a fork.
func isAnnouncement(e wire.Envelope) bool { return len(e.Frame) == 0 }

func (h *Hub) sum(frame []byte) uint64 { return maphash.Bytes(h.seed, frame) }

// deliverStored takes a stored envelope (or an epoch's announcement) of
// room. It never waits on the broker.
func (h *Hub) deliverStored(roomName string, e wire.Envelope) {
	r := h.room(roomName)
	if r == nil {
		return
	}
	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	switch {
	case r.epoch == "":
		// Before the first connection took its position: nobody to
		// deliver to, only the baseline to keep.
		r.epoch, r.seq = e.Epoch, e.Seq
	case e.Epoch == r.st.ended:
		// A late envelope of the epoch the room left.
	case isAnnouncement(e) && e.Epoch != r.epoch:
		// At once, also while others wait: they all belong to the epoch
		// it ends.
		h.announcedLocked(r, e)
	case r.st.holding:
		h.holdLocked(r, e)
	default:
		if h.applyLocked(r, e) {
			h.heldLocked(r, e)
		}
	}
}

// holdLocked keeps e until the worker is done, or drops it past the bound:
// it is stored, so the worker reads it from the history.
func (h *Hub) holdLocked(r *room, e wire.Envelope) {
	if r.st.dropping || len(r.st.held) >= h.o.HoldMessages || r.st.heldBytes+len(e.Frame) > h.o.HoldBytes ||
		h.held.Load()+int64(len(e.Frame)) > h.o.HoldBytesTotal {
		if !r.st.dropping {
			h.log.Info("stored messages past the hold bound while the room's worker is busy; they will be read from the history", "room", r.name, "held", len(r.st.held), "bytes", r.st.heldBytes)
		}
		r.st.dropping, r.st.dropped = true, Position{Epoch: e.Epoch, Seq: e.Seq}
		return
	}
	h.heldLocked(r, e)
}

// heldLocked puts e in line behind the room's held envelopes.
func (h *Hub) heldLocked(r *room, e wire.Envelope) {
	r.st.held = append(r.st.held, e)
	r.st.heldBytes += len(e.Frame)
	h.held.Add(int64(len(e.Frame)))
}

// releaseHeldLocked forgets the room's held envelopes.
func (h *Hub) releaseHeldLocked(r *room) {
	h.held.Add(-int64(r.st.heldBytes))
	clear(r.st.held)
	r.st.held, r.st.heldBytes = nil, 0
}

// applyLocked delivers e, or reports that it must wait for the gap before
// it, which the worker now fills.
func (h *Hub) applyLocked(r *room, e wire.Envelope) (wait bool) {
	if e.Epoch == r.st.ended {
		return false
	}
	at := Position{Epoch: e.Epoch, Seq: e.Seq}
	step := r.position().StepTo(at)
	if step == StepNewEpoch {
		if isAnnouncement(e) {
			h.announcedLocked(r, e)
			return false
		}
		h.newEpoch(r, e.Epoch, ReasonHistoryLost)
		step = r.position().StepTo(at)
	}
	if isAnnouncement(e) {
		return false // of the epoch the room is in already
	}
	switch step {
	case StepDelivered:
		if h.reusedLocked(r, e.Seq, e.Frame) {
			h.forkedLocked(r, e.Seq)
		}
		return false // delivered already
	case StepGap:
		r.st.fill = &fillJob{upTo: e.Seq - 1, before: r.seq}
		r.st.holding = true
		h.startWorkerLocked(r)
		return true
	}
	h.deliverLocked(r, e.Exclude, e.Seq, e.Frame)
	if e.StateDue {
		r.st.claim = e.Seq
		h.startWorkerLocked(r)
	}
	return false
}

func (h *Hub) deliverLocked(r *room, exclude string, seq uint64, frame []byte) {
	r.seq = seq
	r.st.sums.add(seq, h.sum(frame))
	h.broadcastStored(r, exclude, r.epoch, seq, frame)
}

// reusedLocked reports whether seq was delivered here with another frame.
func (h *Hub) reusedLocked(r *room, seq uint64, frame []byte) bool {
	sum, ok := r.st.sums.lookup(seq)
	return ok && sum != h.sum(frame)
}

// forkedLocked stops the room's delivery of its epoch and has the worker
// move it to a new one.
func (h *Hub) forkedLocked(r *room, seq uint64) {
	if !r.st.forked {
		h.log.Warn("room stream forked: a message this instance delivered is not in the room's history (lost in a failover); moving the room to a new epoch",
			"room", r.name, "epoch", r.epoch, "seq", seq, "delivered", r.seq)
		if h.o.OnFork != nil {
			h.o.OnFork(r.name)
		}
	}
	r.st.forked, r.st.fill, r.st.holding = true, nil, true
	h.startWorkerLocked(r)
}

// announcedLocked moves the room to the epoch e announces: a reset
// (seq 0) or a fork (the seq its history continues at).
func (h *Hub) announcedLocked(r *room, e wire.Envelope) {
	reason := ReasonForked
	if e.Seq == 0 {
		reason = ReasonRoomDeleted
	}
	h.newEpoch(r, e.Epoch, reason)
	r.seq = e.Seq
	h.stopWaitingLocked(r)
}

// stopWaitingLocked forgets the held envelopes and the work on them: the
// room moved to a new epoch they are not of.
func (h *Hub) stopWaitingLocked(r *room) {
	h.releaseHeldLocked(r)
	r.st.dropping, r.st.fill, r.st.forked, r.st.holding = false, nil, false, false
}

// newEpoch moves room r to epoch: its history was reset (or lost, or it
// forked), and every connection holding a position of the old one must
// reconnect.
func (h *Hub) newEpoch(r *room, epoch, reason string) {
	h.log.Info("room stream has a new epoch; connections of the old one resync", "room", r.name, "old", r.epoch, "new", epoch, "reason", reason)
	r.st.ended = r.epoch
	r.epoch, r.seq = epoch, 0
	r.st.sums = sumRing{}
	r.mu.RLock()
	for c := range r.conns {
		c.ResetEpoch(epoch, reason)
	}
	r.mu.RUnlock()
	if reason == ReasonRoomDeleted && h.o.Docs != nil {
		// The document went with the room: its providers start over.
		h.o.Docs.RoomDeleted(r.name)
	}
}

// lost closes the room's connections: they missed stored messages this
// instance cannot give them, and resume with their position elsewhere or
// here.
func (h *Hub) lost(r *room) {
	h.log.Warn("stored messages lost to a gap; closing the room's connections so they resume", "room", r.name, "after", r.seq)
	r.mu.RLock()
	for c := range r.conns {
		c.Close(CloseResync, "missed messages: reconnect with since")
	}
	r.mu.RUnlock()
}

func (h *Hub) broadcastStored(r *room, exclude, epoch string, seq uint64, frame []byte) {
	var xs uint64
	if exclude != "" {
		xs = idSum(exclude)
	}
	r.mu.RLock()
	for c := range r.conns {
		if c.excluded(exclude, xs) {
			c.SendStored(epoch, seq, nil)
			continue
		}
		c.SendStored(epoch, seq, frame)
	}
	r.mu.RUnlock()
}

// Resync answers a broker gap: each room's stored messages published
// meanwhile are delivered from History by its worker (the room's stored
// envelopes wait until then), the documents resync (DocHandler.Resync),
// and OnResync runs.
func (h *Hub) Resync(rooms []string) {
	h.log.Warn("broker gap: resyncing rooms", "rooms", len(rooms))
	for _, name := range rooms {
		r := h.room(name)
		if r == nil {
			continue
		}
		r.streamMu.Lock()
		switch {
		case r.epoch == "" || r.st.forked:
			// Nothing delivered yet, or a new epoch on its way.
		case r.st.fill != nil:
			r.st.fill.upTo = 0 // on to the room's latest
		default:
			r.st.fill = &fillJob{before: r.seq}
			r.st.holding = true
			h.startWorkerLocked(r)
		}
		r.streamMu.Unlock()
	}
	if h.o.Docs != nil {
		h.o.Docs.Resync(rooms)
	}
	if h.o.OnResync != nil {
		h.o.OnResync(rooms)
	}
}

// startWorkerLocked starts the room's worker unless it runs.
func (h *Hub) startWorkerLocked(r *room) {
	if r.st.working {
		return
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if h.closed {
		return
	}
	h.wg.Add(1)
	ctx, cancel := context.WithCancel(h.ctx)
	r.st.working, r.st.cancel = true, cancel
	go h.work(ctx, cancel, r, r.st.gen)
}

// stopStreamLocked forgets the room's stream: its last connection left,
// deliveries stop, and its worker quits.
func (h *Hub) stopStreamLocked(r *room) {
	if r.st.cancel != nil {
		r.st.cancel()
	}
	h.releaseHeldLocked(r)
	r.st = roomStream{gen: r.st.gen + 1}
	r.epoch, r.seq = "", 0
}

// forkRetry is how long the worker waits before it tries again to move a
// forked room to a new epoch (the broker is likely recovering from the
// failover that forked it).
const forkRetry = 500 * time.Millisecond

// work runs the room's round trips until none is left: moving a forked
// epoch, filling a gap, delivering the envelopes held meanwhile, claiming
// a state request.
func (h *Hub) work(ctx context.Context, cancel context.CancelFunc, r *room, gen uint64) {
	defer h.wg.Done()
	defer cancel()
	for {
		r.streamMu.Lock()
		if r.st.gen != gen {
			r.streamMu.Unlock()
			return
		}
		switch {
		case r.st.forked:
			from := r.epoch
			r.streamMu.Unlock()
			if !h.fork(ctx, r, gen, from) {
				return
			}
		case r.st.fill != nil:
			r.streamMu.Unlock()
			if !h.fillStep(ctx, r, gen) {
				return
			}
		case r.st.holding:
			h.drainLocked(r)
			r.streamMu.Unlock()
		case r.st.claim != 0:
			seq := r.st.claim
			r.st.claim = 0
			r.streamMu.Unlock()
			h.requestState(ctx, r, seq)
		default:
			r.st.working, r.st.cancel = false, nil
			r.streamMu.Unlock()
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// fork moves the room off the forked epoch from; false when the worker
// must quit.
func (h *Hub) fork(ctx context.Context, r *room, gen uint64, from string) bool {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	pos, err := h.broker.Fork(fctx, r.name, from)
	cancel()
	if err == nil && pos.Epoch == from {
		err = fmt.Errorf("the broker kept the room in epoch %q", from)
	}
	r.streamMu.Lock()
	if r.st.gen != gen {
		r.streamMu.Unlock()
		return false
	}
	if err == nil && r.st.forked && r.epoch == from && pos.Epoch != from {
		h.newEpoch(r, pos.Epoch, ReasonForked)
		r.seq = pos.Seq
		r.st.forked = false // the held envelopes of from are dropped as the ended epoch's
	}
	r.streamMu.Unlock()
	if err != nil {
		h.log.Warn("move a forked room to a new epoch", "room", r.name, "epoch", from, "err", err)
		t := time.NewTimer(forkRetry)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// fillStep reads the next part of the room's gap from History and
// delivers it; false when the worker must quit.
func (h *Hub) fillStep(ctx context.Context, r *room, gen uint64) bool {
	r.streamMu.Lock()
	job, epoch, seq := r.st.fill, r.epoch, r.seq
	if job.upTo != 0 && seq >= job.upTo {
		h.fillDoneLocked(r, job, true)
		r.streamMu.Unlock()
		return true
	}
	// The last message delivered is read again: the history must still
	// hold the same one, or the stream forked.
	after := seq
	if _, ok := r.st.sums.lookup(seq); ok {
		after = seq - 1
	}
	limit := h.o.FillLimit
	if job.upTo != 0 {
		limit = int(min(uint64(limit), job.upTo-seq))
	}
	limit += int(seq - after)
	r.streamMu.Unlock()

	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	hist, err := h.broker.History(hctx, r.name, after, limit)
	cancel()

	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	if r.st.gen != gen {
		return false
	}
	if r.st.fill != job || r.epoch != epoch || r.seq != seq {
		return true // overtaken (a new epoch announced): read again or stop
	}
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		h.log.Warn("fill gap from history", "room", r.name, "err", err)
		h.fillDoneLocked(r, job, false)
		return true
	}
	h.filledLocked(r, job, hist)
	return true
}

// filledLocked delivers what hist holds of the job's gap.
func (h *Hub) filledLocked(r *room, job *fillJob, hist History) {
	if hist.Position.Epoch != r.epoch {
		h.newEpoch(r, hist.Position.Epoch, ReasonHistoryLost)
		if job.upTo != 0 {
			r.st.fill = nil // its seqs were of the old epoch, which is over
			return
		}
		job.before = 0 // a resync: catch up with the new epoch from its start
		return
	}
	if hist.Position.Seq < r.seq {
		h.forkedLocked(r, hist.Position.Seq+1)
		return
	}
	covered := hist.Position.Seq == r.seq
	for _, m := range hist.Messages {
		if m.Seq <= r.seq {
			if h.reusedLocked(r, m.Seq, m.Frame) {
				h.forkedLocked(r, m.Seq)
				return
			}
			continue
		}
		covered = m.Seq == r.seq+1
		break
	}
	if !covered {
		if job.upTo == 0 && hist.Position.Seq > r.seq {
			// A resync that cannot be filled: the room's connections
			// resume (lost), and those joining now start at the top
			// instead of meeting the same gap again.
			r.seq = hist.Position.Seq
		}
		h.fillDoneLocked(r, job, false)
		return
	}
	n := 0
	for _, m := range hist.Messages {
		if m.Seq <= r.seq || job.upTo != 0 && m.Seq > job.upTo {
			continue
		}
		h.deliverLocked(r, m.Exclude, m.Seq, m.Frame)
		n++
	}
	switch {
	case job.upTo == 0 && r.seq >= hist.Position.Seq, job.upTo != 0 && r.seq >= job.upTo:
		h.fillDoneLocked(r, job, true)
	case n == 0:
		h.fillDoneLocked(r, job, job.upTo == 0)
	}
}

// fillDoneLocked ends the job: filled reports whether History held every
// missing message; if not, the room's connections resume elsewhere.
func (h *Hub) fillDoneLocked(r *room, job *fillJob, filled bool) {
	r.st.fill = nil
	if job.upTo != 0 {
		if h.o.OnGap != nil {
			h.o.OnGap(r.name, job.upTo-job.before, filled)
		}
		if !filled {
			h.lost(r)
			r.seq = max(r.seq, job.upTo)
		}
		return
	}
	if h.o.OnGap != nil && (!filled || r.seq > job.before) {
		h.o.OnGap(r.name, r.seq-min(job.before, r.seq), filled) // missing: up to the top either way
	}
	if !filled {
		h.lost(r)
	}
}

// drainLocked delivers the held envelopes in order until one waits for a
// new fill (or the epoch forked); once none is left, what was dropped
// past the bound is read from the history, then the room stops holding.
func (h *Hub) drainLocked(r *room) {
	for len(r.st.held) > 0 {
		e := r.st.held[0]
		if h.applyLocked(r, e) {
			return // first in line again, after the gap it found
		}
		r.st.held[0] = wire.Envelope{}
		r.st.held = r.st.held[1:]
		r.st.heldBytes -= len(e.Frame)
		h.held.Add(-int64(len(e.Frame)))
		if r.st.forked || r.st.fill != nil {
			return
		}
	}
	r.st.held, r.st.heldBytes = nil, 0
	if r.st.dropping {
		d := r.st.dropped
		r.st.dropping, r.st.dropped = false, Position{}
		switch {
		case d.Epoch == r.st.ended:
		case d.Epoch != r.epoch:
			r.st.fill = &fillJob{before: r.seq} // another epoch began: to the top
			return
		case d.Seq > r.seq:
			r.st.fill = &fillJob{upTo: d.Seq, before: r.seq}
			return
		}
	}
	r.st.holding = false
}

// requestState asks one local connection that answers state requests for
// the room's state, if this instance wins the claim for seq; the broker
// steers a retry away from the connection asked last.
func (h *Hub) requestState(ctx context.Context, r *room, seq uint64) {
	r.mu.RLock()
	var capable []*Conn
	for c := range r.conns {
		if c.StateCapable {
			capable = append(capable, c)
		}
	}
	r.mu.RUnlock()
	if len(capable) == 0 {
		return
	}
	rand.Shuffle(len(capable), func(i, j int) { capable[i], capable[j] = capable[j], capable[i] })
	ids := make([]string, len(capable))
	for i, c := range capable {
		ids[i] = c.ID
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	pick, err := h.broker.ClaimStateRequest(ctx, r.name, seq, ids)
	cancel()
	if err != nil {
		h.log.Warn("claim state request", "room", r.name, "err", err)
		return
	}
	for _, c := range capable {
		if c.ID == pick {
			c.Send([]byte(`{"type":"state_request","room":` + strconv.Quote(r.name) + `,"seq":` + strconv.FormatUint(seq, 10) + `}`))
		}
	}
}

// Close stops the rooms' workers and waits for them. Deliveries after it
// that need a round trip wait for nothing: their rooms stay held.
func (h *Hub) Close() {
	h.wmu.Lock()
	h.closed = true
	h.wmu.Unlock()
	h.cancel()
	h.wg.Wait()
}
