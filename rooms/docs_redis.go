package rooms

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Yjs side of the Redis broker: a document is a HASH (epoch, seq, the
// compacted base) and a LIST of the update messages since, under the
// room's hash tag. Appending and publishing are one script, like stored
// messages.

var (
	//go:embed lua/doc_append.lua
	docAppendLua string
	//go:embed lua/doc_read.lua
	docReadLua string
	//go:embed lua/doc_updates.lua
	docUpdatesLua string
	//go:embed lua/doc_compact.lua
	docCompactLua string

	docAppendScript  = streamScript(docAppendLua)
	docReadScript    = redis.NewScript(docReadLua)
	docUpdatesScript = redis.NewScript(docUpdatesLua)
	docCompactScript = redis.NewScript(docCompactLua)
)

// AppendUpdate implements Docs. It goes through the publisher's pipeline,
// in order with the room's other payloads.
func (b *RedisBroker) AppendUpdate(ctx context.Context, room, exclude string, msg []byte) (DocAppend, error) {
	k := b.keys(room)
	res, err := restoring(ctx, b, room, NewEpoch(), func(epoch string) (any, error) {
		return b.runQueued(ctx, &scriptCall{
			script: b.script(docAppendScript),
			keys:   []string{k.Doc, k.DocLog, b.layout.DirtyIndex(room)},
			args: []any{epoch, b.o.Stream.DocTTL.Milliseconds(), exclude, msg, k.Channel, b.o.Stream.MaxDocBytes, b.o.DocInlineBytes,
				room, b.dirtyArg()},
			done: make(chan scriptResult, 1),
		})
	})
	if err != nil {
		return DocAppend{}, fmt.Errorf("append document update: %w", err)
	}
	v, err := replyStrings(res, 3)
	if err == nil && v[0] == "" {
		return DocAppend{}, &DocTooLargeError{Limit: b.o.Stream.MaxDocBytes, Size: int64(parseUint(v[1])), LogBytes: int64(parseUint(v[2]))}
	}
	if err == nil && len(v) < 5 {
		err = fmt.Errorf("%d items, want 5", len(v))
	}
	if err != nil {
		return DocAppend{}, fmt.Errorf("doc append script: %w", err)
	}
	return DocAppend{
		Position:  Position{Epoch: v[0], Seq: parseUint(v[1])},
		BaseSeq:   parseUint(v[2]),
		LogBytes:  int64(parseUint(v[3])),
		BaseBytes: int64(parseUint(v[4])),
	}, nil
}

// Doc implements Docs.
func (b *RedisBroker) Doc(ctx context.Context, room string) (Doc, error) {
	k := b.keys(room)
	read := func() ([][]byte, error) {
		res, err := docReadScript.Run(ctx, b.client, []string{k.Doc, k.DocLog}).Result()
		if err != nil {
			return nil, fmt.Errorf("read document: %w", err)
		}
		v, err := replyBytes(res)
		if err != nil {
			return nil, fmt.Errorf("doc read script: %w", err)
		}
		return v, nil
	}
	v, err := read()
	if err == nil && len(v) == 0 && b.kept() {
		// Not in Redis: perhaps in the store.
		if err := b.restore(ctx, room); err != nil {
			return Doc{}, err
		}
		v, err = read()
	}
	if err != nil {
		return Doc{}, err
	}
	if len(v) == 0 {
		return Doc{}, nil
	}
	if len(v) < 5 {
		return Doc{}, fmt.Errorf("doc read script: %d items", len(v))
	}
	d := Doc{
		Position: Position{Epoch: string(v[0]), Seq: parseUint(string(v[1]))},
		BaseSeq:  parseUint(string(v[2])),
		LogBytes: int64(parseUint(string(v[4]))),
		Updates:  v[5:],
	}
	if len(v[3]) > 0 {
		d.Base = v[3]
	}
	d.BaseBytes = int64(len(d.Base))
	return d, nil
}

// DocUpdates implements Docs.
func (b *RedisBroker) DocUpdates(ctx context.Context, room, epoch string, after uint64) ([][]byte, Position, bool, error) {
	k := b.keys(room)
	res, err := docUpdatesScript.Run(ctx, b.client, []string{k.Doc, k.DocLog}, epoch, after).Result()
	if err != nil {
		return nil, Position{}, false, fmt.Errorf("read document updates: %w", err)
	}
	v, err := replyBytes(res)
	if err != nil {
		return nil, Position{}, false, fmt.Errorf("doc updates script: %w", err)
	}
	if len(v) == 0 {
		return nil, Position{}, false, nil
	}
	if len(v) < 3 {
		return nil, Position{}, false, fmt.Errorf("doc updates script: %d items", len(v))
	}
	pos := Position{Epoch: string(v[0]), Seq: parseUint(string(v[1]))}
	return v[3:], pos, string(v[2]) == "1", nil
}

// CompactDoc implements Docs.
func (b *RedisBroker) CompactDoc(ctx context.Context, room string, at Position, base []byte) (bool, error) {
	k := b.keys(room)
	n, err := docCompactScript.Run(ctx, b.client, []string{k.Doc, k.DocLog}, at.Epoch, at.Seq, base).Int()
	if err != nil {
		return false, fmt.Errorf("compact document: %w", err)
	}
	return n == 1, nil
}

func parseUint(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// replyBytes converts a script's array reply of bulk strings.
func replyBytes(res any) ([][]byte, error) {
	arr, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("reply %T, want an array", res)
	}
	out := make([][]byte, len(arr))
	for i, x := range arr {
		switch x := x.(type) {
		case string:
			out[i] = []byte(x)
		case int64:
			out[i] = strconv.AppendInt(nil, x, 10)
		default:
			return nil, fmt.Errorf("reply item %d is %T", i, x)
		}
	}
	return out, nil
}
