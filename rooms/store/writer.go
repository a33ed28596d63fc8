package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// commitFunc applies batches, in order, in one transaction and commits
// them. When one batch fails it returns that batch's index and error (the
// transaction is then rolled back); failed is -1 when the transaction as a
// whole failed (begin, commit, a lost connection before any batch).
type commitFunc func(ctx context.Context, batches [][]Op) (failed int, err error)

// writer does group commit: every Write hands it a batch and waits; the
// writer takes everything queued, commits it in one transaction and tells
// each caller. One transaction (and, on SQLite FULL or PostgreSQL, one
// fsync) serves every Write that arrived while the previous one committed.
type writer struct {
	commit   commitFunc
	maxGroup int
	timeout  time.Duration

	mu     sync.Mutex
	queue  []*batch
	closed bool

	wake chan struct{} // 1-buffered: "the queue is not empty"
	stop chan struct{} // closed by close: drain and return
	done chan struct{} // closed when run returns
}

// A batch's state: queued until the writer takes it, or withdrawn by its
// caller first (its context ended), in which case it is never applied.
const (
	batchQueued int32 = iota
	batchTaken
	batchWithdrawn
)

type batch struct {
	ops   []Op
	state atomic.Int32
	done  chan error // 1-buffered, written once by the writer
}

func newWriter(commit commitFunc, o Options) *writer {
	w := &writer{
		commit:   commit,
		maxGroup: o.MaxGroup,
		timeout:  o.CommitTimeout,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go w.run()
	return w
}

// write queues ops and waits until they are committed or failed, or ctx
// ends. When ctx ends before the writer took the batch, the batch is
// withdrawn and never applied; once taken it is committed regardless and
// write returns ctx's error without waiting for the outcome.
func (w *writer) write(ctx context.Context, ops []Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := &batch{ops: ops, done: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.queue = append(w.queue, b)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-b.done:
		return err
	case <-ctx.Done():
		b.state.CompareAndSwap(batchQueued, batchWithdrawn)
		return ctx.Err()
	}
}

// close refuses new batches, lets the writer commit those already queued
// and waits for it to return.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	for {
		if group := w.take(); len(group) > 0 {
			w.commitGroup(group)
			continue
		}
		select {
		case <-w.wake:
		case <-w.stop:
			// close refused new batches before closing stop: once the
			// queue is empty it stays empty.
			w.mu.Lock()
			empty := len(w.queue) == 0
			w.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// take removes up to maxGroup batches from the head of the queue, skipping
// those their callers withdrew.
func (w *writer) take() []*batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	var group []*batch
	n := 0
	for n < len(w.queue) && len(group) < w.maxGroup {
		b := w.queue[n]
		w.queue[n] = nil
		n++
		if b.state.CompareAndSwap(batchQueued, batchTaken) {
			group = append(group, b)
		}
	}
	w.queue = w.queue[n:]
	if len(w.queue) == 0 {
		w.queue = nil // let the backing array go
	}
	return group
}

// commitGroup commits group in one transaction. A batch that fails gets
// its own error and the others are committed again without it, in the same
// order, so each caller's outcome is the one it would have had alone, in
// call order, and a failing batch does not fail the rest. That costs one
// more transaction per failing batch rather than one per batch; a
// transaction that fails as a whole (the database is down) fails the group
// at once instead of timing out once per batch.
func (w *writer) commitGroup(group []*batch) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	for len(group) > 0 {
		ops := make([][]Op, len(group))
		for i, b := range group {
			ops[i] = b.ops
		}
		failed, err := w.commit(ctx, ops)
		if err == nil || failed < 0 || failed >= len(group) {
			for _, b := range group {
				b.done <- err
			}
			return
		}
		group[failed].done <- err
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}
