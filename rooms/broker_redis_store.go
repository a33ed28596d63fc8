package rooms

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/store"
)

// The Redis broker with a store (write-behind): Redis stays the hot path
// and the store is written behind it.
//
//   - Every script that changes what the store keeps marks the room in its
//     partition's dirty index (wire.Layout.DirtyIndex), scored with the
//     time of its first unsaved change.
//   - One saver per instance saves the rooms whose first unsaved change is
//     StoreDelay old: it claims each (save_claim.lua: one instance at a
//     time; a crashed saver's claim lapses), reads it in one step
//     (room_snapshot.lua), writes it as a store.OpSnapshot, and unmarks it
//     unless it changed meanwhile (save_done.lua). A room whose last local
//     member left is saved at once, and every dirty room on Close.
//   - A room Redis does not hold (flushed, restarted empty, its TTL
//     passed, lost in a failover) is not started in a new epoch: the
//     scripts answer MISSING (stream_lib.lua), the room is loaded back from
//     the store (restore.lua, which writes only what Redis still lacks),
//     and the script runs again. Only a room the store lacks too starts a
//     new epoch, as without a store.

var (
	//go:embed lua/restore.lua
	restoreLua string
	//go:embed lua/room_snapshot.lua
	roomSnapshotLua string
	//go:embed lua/save_claim.lua
	saveClaimLua string
	//go:embed lua/save_done.lua
	saveDoneLua string

	restoreScript      = redis.NewScript(restoreLua)
	roomSnapshotScript = redis.NewScript(roomSnapshotLua)
	saveClaimScript    = redis.NewScript(saveClaimLua)
	saveDoneScript     = redis.NewScript(saveDoneLua)
)

// missingEpoch is the new-epoch argument of the stream scripts with a
// store: a room Redis lacks answers MISSING instead of starting one.
const missingEpoch = "?"

// saveInterval is how often the saver looks for due rooms.
const saveInterval = 500 * time.Millisecond

// saveBatch is the most due rooms read from one dirty index per pass.
const saveBatch = 256

// saveConcurrency is how many rooms the saver saves at once.
const saveConcurrency = 16

// kept reports whether the broker writes behind to a store.
func (b *RedisBroker) kept() bool { return b.o.Stream.Store != nil }

// dirtyArg is the scripts' "mark dirty" flag.
func (b *RedisBroker) dirtyArg() string {
	if b.kept() {
		return "1"
	}
	return "0"
}

// epochArg is the new-epoch argument for a script that may start the
// room's epoch: fresh without a store, the MISSING marker with one.
func (b *RedisBroker) epochArg(fresh string) string {
	if b.kept() {
		return missingEpoch
	}
	return fresh
}

// isMissing reports whether err is a script's answer that Redis does not
// hold the room (with a store).
func isMissing(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "MISSING")
}

// restoring runs op with the new-epoch argument for the broker; when the
// room is missing from Redis, it loads it back from the store and runs op
// once more with fresh (a new epoch, or "" for a read that writes
// nothing): by then the room is in Redis unless the store lacks it too.
func restoring[T any](ctx context.Context, b *RedisBroker, room, fresh string, op func(epoch string) (T, error)) (T, error) {
	v, err := op(b.epochArg(fresh))
	if !isMissing(err) {
		return v, err
	}
	if err := b.restore(ctx, room); err != nil {
		var zero T
		return zero, err
	}
	return op(fresh)
}

// restore loads room from the store into Redis, each part only if Redis
// still lacks it.
func (b *RedisBroker) restore(ctx context.Context, room string) error {
	kept, err := b.o.Stream.Store.Load(ctx, room)
	if err != nil {
		return fmt.Errorf("load room %q from the store: %w: %w", room, ErrBrokerDown, err)
	}
	if kept.Epoch == "" && kept.Doc.Epoch == "" {
		return nil
	}
	k := b.keys(room)
	args := make([]any, 0, 11+3*len(kept.Messages)+len(kept.Doc.Updates))
	args = append(args, b.ttlMillis(), b.o.Stream.DocTTL.Milliseconds(), kept.Epoch, kept.Seq)
	if kept.State != nil {
		args = append(args, kept.State.Seq, kept.State.Data)
	} else {
		args = append(args, "", "")
	}
	args = append(args, kept.Doc.Epoch, kept.Doc.Seq, kept.Doc.BaseSeq, kept.Doc.Base, len(kept.Messages))
	for _, m := range kept.Messages {
		args = append(args, m.Seq, m.Frame, m.Exclude)
	}
	for _, u := range kept.Doc.Updates {
		args = append(args, u)
	}
	done, err := restoreScript.Run(ctx, b.client, []string{k.Meta, k.Stream, k.State, k.Doc, k.DocLog}, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("restore room %q from the store: %w", room, err)
	}
	if len(done) != 2 {
		return fmt.Errorf("restore room %q from the store: bad reply %v", room, done)
	}
	stream, doc := done[0] == 1, done[1] == 1
	if !stream && !doc {
		return nil // another instance loaded it first
	}
	b.log.Info("room loaded back from the store", "room", room, "epoch", kept.Epoch, "seq", kept.Seq, "doc_seq", kept.Doc.Seq, "stream", stream, "doc", doc)
	if b.o.OnLoad != nil {
		b.o.OnLoad(room, stream, doc)
	}
	return nil
}

// SaveSoon asks the saver to save room now rather than after StoreDelay
// (its last local member left). It never waits; without a store it does
// nothing.
func (b *RedisBroker) SaveSoon(room string) {
	if !b.kept() {
		return
	}
	select {
	case b.saveNow <- room:
	default: // the dirty index still has it: saved after StoreDelay
	}
}

// saver saves due rooms until the broker closes; Close saves the rest.
func (b *RedisBroker) saver() {
	defer b.wg.Done()
	t := time.NewTicker(saveInterval)
	defer t.Stop()
	var backoff time.Duration
	var until time.Time
	failed := func(err error) {
		if err == nil {
			backoff = 0
			return
		}
		backoff = min(max(2*backoff, time.Second), 30*time.Second)
		until = time.Now().Add(backoff)
		b.log.Warn("saving rooms to the store failed; retrying", "err", err, "retry_in", backoff)
	}
	for {
		select {
		case <-b.ctx.Done():
			return
		case room := <-b.saveNow:
			if time.Now().Before(until) {
				continue
			}
			_, err := b.saveRoom(b.ctx, room, 0)
			failed(err)
		case <-t.C:
			if time.Now().Before(until) {
				continue
			}
			failed(b.saveDue(b.ctx, b.o.StoreDelay))
		}
	}
}

// saveDue saves every room whose first unsaved change is at least age old
// and that no other instance is saving: saveBatch at a time from each
// dirty index, saveConcurrency of them at once (their writes share the
// store's group commits), and again at once while a pass found a full
// batch, so a backlog is worked off at the store's pace rather than
// saveBatch rooms per saveInterval.
func (b *RedisBroker) saveDue(ctx context.Context, age time.Duration) error {
	for {
		full, err := b.savePass(ctx, age)
		if err != nil || !full {
			return err
		}
	}
}

// savePass is one pass of saveDue; full reports whether a dirty index had
// more due rooms than one batch.
func (b *RedisBroker) savePass(ctx context.Context, age time.Duration) (full bool, err error) {
	indexes := b.layout.DirtyIndexes()
	cmds := make([]*redis.StringSliceCmd, len(indexes))
	top := strconv.FormatInt(time.Now().Add(-age).UnixMilli(), 10)
	_, err = b.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, idx := range indexes {
			cmds[i] = pl.ZRangeByScore(ctx, idx, &redis.ZRangeBy{Min: "-inf", Max: top, Count: saveBatch})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("read the dirty rooms: %w", err)
	}
	var due []string
	for _, c := range cmds {
		due = append(due, c.Val()...)
		full = full || len(c.Val()) == saveBatch
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan string)
	for range min(saveConcurrency, len(due)) {
		wg.Go(func() {
			for room := range next {
				if _, err := b.saveRoom(ctx, room, age); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, room := range due {
		if ctx.Err() != nil {
			break
		}
		next <- room
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return full, first
}

// saveAll saves every dirty room no other instance is saving, within
// FlushTimeout: the instance is stopping.
func (b *RedisBroker) saveAll() {
	ctx, cancel := context.WithTimeout(context.Background(), b.o.FlushTimeout)
	defer cancel()
	for ctx.Err() == nil {
		err := b.saveDue(ctx, 0)
		if err == nil {
			return
		}
		b.log.Warn("saving rooms to the store before exit failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	b.log.Warn("rooms left unsaved at exit: the other instances save them", "err", ctx.Err())
}

// saveRoom saves room if it is dirty since at least age and no other
// instance is saving it; saved is false when there was nothing to do.
func (b *RedisBroker) saveRoom(ctx context.Context, room string, age time.Duration) (saved bool, err error) {
	k := b.keys(room)
	idx := b.layout.DirtyIndex(room)
	claimed, err := saveClaimScript.Run(ctx, b.client, []string{idx}, room, age.Milliseconds(), b.o.SaveLease.Milliseconds()).Int64()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim room %q to save: %w", room, err)
	}
	defer func() {
		if b.o.OnSave != nil {
			b.o.OnSave(room, err)
		}
	}()
	release := func(cause error) error {
		// Due again at once; this instance's saver backs off.
		rctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
		defer cancel()
		_ = b.client.ZAddXX(rctx, idx, redis.Z{Score: float64(claimed - b.o.StoreDelay.Milliseconds()), Member: room}).Err()
		return cause
	}
	res, err := roomSnapshotScript.Run(ctx, b.client, []string{k.Meta, k.Stream, k.State, k.Doc, k.DocLog}).Result()
	if err != nil {
		return false, release(fmt.Errorf("read room %q to save: %w", room, err))
	}
	raw, err := replyBytes(res)
	if err != nil || len(raw) < 9 {
		return false, release(fmt.Errorf("room snapshot script: bad reply (%v)", err))
	}
	snap, err := snapshotOf(raw)
	if err != nil {
		return false, release(fmt.Errorf("room snapshot of %q: %w", room, err))
	}
	if err := b.writeSnapshot(ctx, room, snap); err != nil {
		return false, release(err)
	}
	v := func(i int) string { return string(raw[i]) }
	if err := saveDoneScript.Run(ctx, b.client, []string{idx, k.Meta, k.State, k.Doc, k.Stream, k.DocLog}, room, v(0), v(1), v(2), v(4), v(5), claimed,
		b.ttlMillis(), b.o.Stream.DocTTL.Milliseconds()).Err(); err != nil {
		return true, fmt.Errorf("unmark saved room %q: %w", room, err)
	}
	return true, nil
}

// snapshotOf decodes room_snapshot.lua's reply.
func snapshotOf(v [][]byte) (store.Room, error) {
	r := store.Room{Epoch: string(v[0]), Seq: parseUint(string(v[1]))}
	if len(v[2]) > 0 {
		r.State = &store.State{Seq: parseUint(string(v[2])), Data: v[3]}
	}
	if len(v[4]) > 0 {
		r.Doc = store.Doc{Epoch: string(v[4]), Seq: parseUint(string(v[5])), BaseSeq: parseUint(string(v[6]))}
		if len(v[7]) > 0 {
			r.Doc.Base = v[7]
		}
	}
	n := int(parseUint(string(v[8])))
	rest := v[9:]
	if len(rest) < 3*n {
		return store.Room{}, fmt.Errorf("%d messages announced, %d items", n, len(rest))
	}
	for i := range n {
		r.Messages = append(r.Messages, store.Message{Seq: parseUint(string(rest[3*i])), Frame: rest[3*i+1], Exclude: string(rest[3*i+2])})
	}
	if r.Doc.Epoch != "" {
		r.Doc.Updates = rest[3*n:]
	}
	return r, nil
}

// writeSnapshot writes what Redis holds of room to the store. A part
// Redis no longer holds (the stream's or the document's hot-tier TTL
// passed) is the store's to keep: it is taken from the store, never
// written as gone.
func (b *RedisBroker) writeSnapshot(ctx context.Context, room string, snap store.Room) error {
	bare := snap.Seq == 0 && snap.State == nil && snap.Doc.Epoch == ""
	if snap.Epoch == "" || snap.Doc.Epoch == "" {
		kept, err := b.o.Stream.Store.Load(ctx, room)
		if err != nil {
			return fmt.Errorf("load room %q from the store: %w", room, err)
		}
		if snap.Epoch == "" && snap.Doc.Epoch == "" {
			return nil // nothing left in Redis: the store has what there was
		}
		if bare && kept.Epoch == "" && kept.Doc.Epoch == "" {
			return nil // a room without a message, state or document yet
		}
		if snap.Epoch == "" {
			snap.Epoch, snap.Seq, snap.Messages, snap.State = kept.Epoch, kept.Seq, kept.Messages, kept.State
		}
		if snap.Doc.Epoch == "" {
			snap.Doc = kept.Doc
		}
		if snap.Epoch == "" {
			// A document without a stream: the store still needs an epoch.
			snap.Epoch = snap.Doc.Epoch
		}
	}
	if err := b.o.Stream.Store.Write(ctx, store.Op{Kind: store.OpSnapshot, Room: room, Snapshot: &snap}); err != nil {
		return fmt.Errorf("save room %q: %w", room, err)
	}
	return nil
}
