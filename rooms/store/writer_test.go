package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeCommits records the groups a writer commits; a group waits for
// release when hold is set, and the batch of room "bad" fails.
type fakeCommits struct {
	mu      sync.Mutex
	groups  [][]string // the rooms of each call's batches
	hold    chan struct{}
	started chan struct{}
	whole   error // when set, every transaction fails as a whole
}

func (f *fakeCommits) commit(ctx context.Context, batches [][]Op) (int, error) {
	rooms := make([]string, len(batches))
	for i, b := range batches {
		rooms[i] = b[0].Room
	}
	f.mu.Lock()
	f.groups = append(f.groups, rooms)
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		f.started <- struct{}{}
		<-hold
	}
	if f.whole != nil {
		return -1, f.whole
	}
	for i, r := range rooms {
		if r == "bad" {
			return i, ErrEpoch
		}
	}
	return -1, nil
}

func (f *fakeCommits) calls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.groups...)
}

// holdFirst makes the first commit wait until the returned release is
// called, and waits until it started.
func (f *fakeCommits) holdFirst(t *testing.T, w *writer) (release func()) {
	f.hold, f.started = make(chan struct{}), make(chan struct{}, 100)
	go w.write(context.Background(), []Op{{Room: "first"}})
	<-f.started
	f.mu.Lock()
	hold := f.hold
	f.hold = nil
	f.mu.Unlock()
	return func() { close(hold) }
}

// queued waits until n batches wait in w's queue.
func queued(t *testing.T, w *writer, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		w.mu.Lock()
		got := len(w.queue)
		w.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("%d batches never queued", n)
}

func TestWriterGroupsWhatQueuedDuringACommit(t *testing.T) {
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{}.withDefaults())
	defer w.close()
	release := f.holdFirst(t, w)
	var wg sync.WaitGroup
	rooms := []string{"a", "b", "c", "d", "e"}
	for i, r := range rooms {
		queued(t, w, i) // one by one, so the queue's order is known
		wg.Go(func() {
			if err := w.write(context.Background(), []Op{{Room: r}}); err != nil {
				t.Errorf("write %s: %v", r, err)
			}
		})
	}
	queued(t, w, len(rooms))
	release()
	wg.Wait()
	calls := f.calls()
	if len(calls) != 2 || len(calls[1]) != len(rooms) {
		t.Fatalf("commits: %v, want [first] then all five in one", calls)
	}
	for i, r := range rooms {
		if calls[1][i] != r {
			t.Fatalf("group order %v, want %v", calls[1], rooms)
		}
	}
}

func TestWriterMaxGroup(t *testing.T) {
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{MaxGroup: 2}.withDefaults())
	defer w.close()
	release := f.holdFirst(t, w)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { w.write(context.Background(), []Op{{Room: "x"}}) })
	}
	queued(t, w, 5)
	release()
	wg.Wait()
	calls := f.calls()
	if len(calls) != 4 || len(calls[1]) != 2 || len(calls[2]) != 2 || len(calls[3]) != 1 {
		t.Fatalf("commits: %v, want groups of at most 2", calls)
	}
}

func TestWriterFailingBatchFailsAlone(t *testing.T) {
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{}.withDefaults())
	defer w.close()
	release := f.holdFirst(t, w)
	rooms := []string{"a", "bad", "c", "bad", "e"}
	errs := make([]error, len(rooms))
	var wg sync.WaitGroup
	for i, r := range rooms {
		queued(t, w, i)
		wg.Go(func() { errs[i] = w.write(context.Background(), []Op{{Room: r}}) })
	}
	queued(t, w, len(rooms))
	release()
	wg.Wait()
	for i, r := range rooms {
		if (r == "bad") != errors.Is(errs[i], ErrEpoch) || (r != "bad" && errs[i] != nil) {
			t.Fatalf("batch %d (%s): %v", i, r, errs[i])
		}
	}
	// The group, then without the first bad one, then without both.
	calls := f.calls()
	if len(calls) != 4 || len(calls[1]) != 5 || len(calls[2]) != 4 || len(calls[3]) != 3 {
		t.Fatalf("commits: %v", calls)
	}
}

func TestWriterWholeFailureFailsTheGroupOnce(t *testing.T) {
	down := errors.New("database down")
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{}.withDefaults())
	defer w.close()
	release := f.holdFirst(t, w)
	f.whole = down
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := w.write(context.Background(), []Op{{Room: "a"}}); !errors.Is(err, down) {
				t.Errorf("write: %v", err)
			}
		})
	}
	queued(t, w, 4)
	release()
	wg.Wait()
	if calls := f.calls(); len(calls) != 2 {
		t.Fatalf("commits: %v, want the group tried once", calls)
	}
}

func TestWriterWithdrawsACancelledBatch(t *testing.T) {
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{}.withDefaults())
	defer w.close()
	release := f.holdFirst(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.write(ctx, []Op{{Room: "cancelled"}}) }()
	queued(t, w, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("write = %v", err)
	}
	release()
	if err := w.write(context.Background(), []Op{{Room: "after"}}); err != nil {
		t.Fatal(err)
	}
	for _, g := range f.calls() {
		for _, r := range g {
			if r == "cancelled" {
				t.Fatalf("a withdrawn batch was committed: %v", f.calls())
			}
		}
	}
}

func TestWriterCloseCommitsWhatWasQueued(t *testing.T) {
	f := &fakeCommits{}
	w := newWriter(f.commit, Options{}.withDefaults())
	release := f.holdFirst(t, w)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if err := w.write(context.Background(), []Op{{Room: "queued"}}); err != nil {
				t.Errorf("queued write: %v", err)
			}
		})
	}
	queued(t, w, 5)
	closed := make(chan struct{})
	go func() { w.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a commit ran")
	case <-time.After(50 * time.Millisecond):
	}
	if err := w.write(context.Background(), []Op{{Room: "late"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close = %v", err)
	}
	release()
	<-closed
	wg.Wait()
	if calls := f.calls(); len(calls) != 2 || len(calls[1]) != 5 {
		t.Fatalf("commits: %v", calls)
	}
}
