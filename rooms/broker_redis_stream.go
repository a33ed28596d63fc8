package rooms

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/wire"
)

// The stream side of the Redis broker: every stored message goes through
// one script that gives it the room's next seq, appends it to the room's
// Redis Stream, refreshes the expiry and PUBLISHes it, so the pub/sub
// order of a room is its seq order and a subscriber can check each
// delivery against the last.

var (
	//go:embed lua/stream_lib.lua
	streamLib string
	//go:embed lua/publish.lua
	publishLua string
	//go:embed lua/position.lua
	positionLua string
	//go:embed lua/history.lua
	historyLua string
	//go:embed lua/save_state.lua
	saveStateLua string
	//go:embed lua/state.lua
	stateLua string
	//go:embed lua/reset.lua
	resetLua string
	//go:embed lua/claim_state.lua
	claimStateLua string
	//go:embed lua/fork.lua
	forkLua string

	streamScript = func(body string) wire.Script {
		return wire.NewScript(streamLib + body)
	}
	publishScript    = streamScript(publishLua)
	positionScript   = streamScript(positionLua)
	historyScript    = streamScript(historyLua)
	saveStateScript  = streamScript(saveStateLua)
	stateScript      = streamScript(stateLua)
	resetScript      = streamScript(resetLua)
	claimStateScript = streamScript(claimStateLua)
	forkScript       = streamScript(forkLua)
)

func (b *RedisBroker) keys(room string) wire.Keys { return b.layout.Room(room) }

// script returns s in the form for the broker's layout.
func (b *RedisBroker) script(s wire.Script) *redis.Script { return s.For(b.layout) }

func (b *RedisBroker) ttlMillis() int64 { return b.o.Stream.HistoryTTL.Milliseconds() }

// PublishMessage implements Stream. It waits for the publisher's pipeline
// that carries the script, so its caller learns the seq.
func (b *RedisBroker) PublishMessage(ctx context.Context, room string, m Message) (Published, error) {
	k := b.keys(room)
	stored := m.Stored && b.o.Stream.HistorySize > 0
	if !stored && m.Key == "" {
		// Nothing to remember: a plain PUBLISH, not waited for.
		return Published{ID: m.ID}, b.Publish(ctx, room, wire.Seal(m.Exclude, m.Frame))
	}
	idem, window := k.Meta, int64(0)
	if m.Key != "" {
		idem, window = k.Idem(m.Key), KeyWindow.Milliseconds()
	}
	storedArg := "0"
	if stored {
		storedArg = "1"
	}
	res, err := restoring(ctx, b, room, NewEpoch(), func(epoch string) (any, error) {
		return b.runQueued(ctx, &scriptCall{
			script: b.script(publishScript),
			keys:   []string{k.Meta, k.Stream, k.State, k.StateReq, idem, b.layout.DirtyIndex(room)},
			args: []any{epoch, b.o.Stream.HistorySize, b.ttlMillis(), m.Exclude, storedArg, m.Frame, m.ID,
				window, k.Channel, b.o.Stream.stateThreshold(), stateRequestRetry.Milliseconds(), room, b.dirtyArg()},
			done: make(chan scriptResult, 1),
		})
	})
	if err != nil {
		return Published{}, err
	}
	v, err := replyStrings(res, 3)
	if err != nil {
		return Published{}, fmt.Errorf("publish script: %w", err)
	}
	switch v[0] {
	case "ok":
		seq, _ := strconv.ParseUint(v[2], 10, 64)
		return Published{ID: m.ID, Position: Position{Epoch: v[1], Seq: seq}}, nil
	case "dup":
		if len(v) < 4 {
			return Published{}, errors.New("publish script: short dup reply")
		}
		seq, _ := strconv.ParseUint(v[2], 10, 64)
		return Published{ID: v[1], Position: Position{Epoch: v[3], Seq: seq}, Duplicate: true}, nil
	}
	return Published{}, fmt.Errorf("publish script: unexpected reply %q", v[0])
}

// runQueued hands call to the publisher goroutine and waits for its reply,
// or sends it itself when nothing is queued or being sent (runInline): it
// then goes out as soon as it would have, in the same order.
func (b *RedisBroker) runQueued(ctx context.Context, call *scriptCall) (any, error) {
	b.mu.RLock()
	if b.closed || !b.started {
		b.mu.RUnlock()
		return nil, ErrBrokerDown
	}
	if b.queued.Load() == 0 && b.sendMu.TryLock() {
		if b.queued.Load() == 0 {
			b.mu.RUnlock()
			return b.runInline(ctx, call)
		}
		b.sendMu.Unlock()
	}
	b.queued.Add(1)
	select {
	case b.queue <- outgoing{call: call}:
	default:
		b.queued.Add(-1)
		b.mu.RUnlock()
		return nil, fmt.Errorf("redis publish queue full (%d payloads): %w", cap(b.queue), ErrBrokerDown)
	}
	b.mu.RUnlock()
	select {
	case r := <-call.done:
		return r.val, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for redis publish: %w: %w", ErrBrokerDown, ctx.Err())
	}
}

// Position implements Stream.
func (b *RedisBroker) Position(ctx context.Context, room string) (Position, error) {
	k := b.keys(room)
	res, err := restoring(ctx, b, room, NewEpoch(), func(epoch string) (any, error) {
		return b.script(positionScript).Run(ctx, b.client, []string{k.Meta, k.Stream, k.State}, epoch, b.ttlMillis()).Result()
	})
	if err != nil {
		return Position{}, fmt.Errorf("read position: %w", err)
	}
	v, err := replyStrings(res, 2)
	if err != nil {
		return Position{}, fmt.Errorf("position script: %w", err)
	}
	return parsePosition(v[0], v[1]), nil
}

// History implements Stream.
func (b *RedisBroker) History(ctx context.Context, room string, after uint64, limit int) (History, error) {
	return b.history(ctx, room, after, limit, NewEpoch())
}

// PeekHistory implements Stream.
func (b *RedisBroker) PeekHistory(ctx context.Context, room string, after uint64, limit int) (History, error) {
	return b.history(ctx, room, after, limit, "")
}

// history reads the room's history, starting epoch newEpoch when the room
// has none ("": start none, write nothing).
func (b *RedisBroker) history(ctx context.Context, room string, after uint64, limit int, newEpoch string) (History, error) {
	k := b.keys(room)
	res, err := restoring(ctx, b, room, newEpoch, func(epoch string) (any, error) {
		return b.script(historyScript).Run(ctx, b.client, []string{k.Meta, k.Stream, k.State}, epoch, b.ttlMillis(), after, max(limit, 1)).Result()
	})
	if err != nil {
		return History{}, fmt.Errorf("read history: %w", err)
	}
	v, err := replyStrings(res, 2)
	if err != nil || (len(v)-2)%3 != 0 {
		return History{}, fmt.Errorf("history script: bad reply (%v)", err)
	}
	h := History{Position: parsePosition(v[0], v[1])}
	for i := 2; i < len(v); i += 3 {
		seq, err := strconv.ParseUint(v[i], 10, 64)
		if err != nil {
			return History{}, fmt.Errorf("history script: bad seq %q", v[i])
		}
		h.Messages = append(h.Messages, StoredMessage{Seq: seq, Frame: []byte(v[i+1]), Exclude: v[i+2]})
	}
	top := h.Position.Seq
	switch {
	case after > top:
	case after == top:
		h.Complete = true
	default:
		h.Complete = len(h.Messages) > 0 && h.Messages[0].Seq == after+1
	}
	return h, nil
}

// SaveState implements Stream.
func (b *RedisBroker) SaveState(ctx context.Context, room string, at Position, data []byte) error {
	k := b.keys(room)
	res, err := b.script(saveStateScript).Run(ctx, b.client, []string{k.Meta, k.State, k.StateReq, k.StateClaim, b.layout.DirtyIndex(room), k.Stream},
		at.Seq, data, b.ttlMillis(), at.Epoch, room, b.dirtyArg()).Text()
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if res == "stale" {
		return ErrStaleState
	}
	return nil
}

// State implements Stream.
func (b *RedisBroker) State(ctx context.Context, room string) (Position, *State, error) {
	return b.state(ctx, room, NewEpoch())
}

// PeekState implements Stream.
func (b *RedisBroker) PeekState(ctx context.Context, room string) (Position, *State, error) {
	return b.state(ctx, room, "")
}

// state reads the room's state, starting epoch newEpoch when the room has
// none ("": start none, write nothing).
func (b *RedisBroker) state(ctx context.Context, room string, newEpoch string) (Position, *State, error) {
	k := b.keys(room)
	res, err := restoring(ctx, b, room, newEpoch, func(epoch string) (any, error) {
		return b.script(stateScript).Run(ctx, b.client, []string{k.Meta, k.Stream, k.State}, epoch, b.ttlMillis()).Result()
	})
	if err != nil {
		return Position{}, nil, fmt.Errorf("read state: %w", err)
	}
	v, err := replyStrings(res, 2)
	if err != nil {
		return Position{}, nil, fmt.Errorf("state script: %w", err)
	}
	pos := parsePosition(v[0], v[1])
	if len(v) < 4 {
		return pos, nil, nil
	}
	seq, _ := strconv.ParseUint(v[2], 10, 64)
	return pos, &State{Seq: seq, Data: []byte(v[3])}, nil
}

// Reset implements Stream.
func (b *RedisBroker) Reset(ctx context.Context, room string) (Position, error) {
	k := b.keys(room)
	epoch, err := b.script(resetScript).Run(ctx, b.client, []string{k.Meta, k.Stream, k.State, k.StateReq, k.StateClaim, k.Doc, k.DocLog, b.layout.DirtyIndex(room)},
		NewEpoch(), b.ttlMillis(), k.Channel, room, b.dirtyArg()).Text()
	if err != nil {
		return Position{}, fmt.Errorf("reset room: %w", err)
	}
	if b.kept() {
		// Deleted for good: were the store to keep it, a Redis that lost
		// the new epoch would load the old room back.
		if err := b.o.Stream.Store.Write(ctx, store.Op{Kind: store.OpDelete, Room: room}); err != nil {
			return Position{}, fmt.Errorf("delete room from the store: %w: %w", ErrBrokerDown, err)
		}
	}
	return Position{Epoch: epoch}, nil
}

// ClaimStateRequest implements Stream: the first instance to claim seq
// asks; the claim lapses a little before the request is retried.
func (b *RedisBroker) ClaimStateRequest(ctx context.Context, room string, seq uint64, candidates []string) (string, error) {
	if len(candidates) == 0 {
		return "", nil
	}
	k := b.keys(room)
	args := make([]any, 0, 3+len(candidates))
	args = append(args, seq, (stateRequestRetry * 9 / 10).Milliseconds(), b.ttlMillis())
	for _, c := range candidates {
		args = append(args, c)
	}
	pick, err := b.script(claimStateScript).Run(ctx, b.client, []string{k.StateClaim, k.State}, args...).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("claim state request: %w", err)
	}
	return pick, nil
}

// Fork implements Stream.
func (b *RedisBroker) Fork(ctx context.Context, room, from string) (Position, error) {
	k := b.keys(room)
	res, err := restoring(ctx, b, room, NewEpoch(), func(epoch string) (any, error) {
		return b.script(forkScript).Run(ctx, b.client, []string{k.Meta, k.Stream, k.State, b.layout.DirtyIndex(room)},
			epoch, b.ttlMillis(), NewEpoch(), from, k.Channel, room, b.dirtyArg()).Result()
	})
	if err != nil {
		return Position{}, fmt.Errorf("fork room: %w", err)
	}
	v, err := replyStrings(res, 2)
	if err != nil {
		return Position{}, fmt.Errorf("fork script: %w", err)
	}
	return parsePosition(v[0], v[1]), nil
}

func parsePosition(epoch, seq string) Position {
	n, _ := strconv.ParseUint(seq, 10, 64)
	return Position{Epoch: epoch, Seq: n}
}

// replyStrings converts a script's array reply of strings (and integers).
func replyStrings(res any, atLeast int) ([]string, error) {
	arr, ok := res.([]any)
	if !ok || len(arr) < atLeast {
		return nil, fmt.Errorf("reply %T of %d items, want at least %d", res, len(arr), atLeast)
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		switch x := x.(type) {
		case string:
			out[i] = x
		case int64:
			out[i] = strconv.FormatInt(x, 10)
		default:
			return nil, fmt.Errorf("reply item %d is %T", i, x)
		}
	}
	return out, nil
}

// scriptCall is a script the publisher runs in its pipeline, in order with
// the plain PUBLISHes around it.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	done   chan scriptResult
}

type scriptResult struct {
	val any
	err error
}
