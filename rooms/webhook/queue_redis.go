package webhook

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
)

var (
	//go:embed notify.lua
	notifyLua string
	//go:embed claim.lua
	claimLua string
	//go:embed settle.lua
	settleLua string
	//go:embed release.lua
	releaseLua string

	notifyScript  = redis.NewScript(wire.WebhookLua + notifyLua)
	claimScript   = redis.NewScript(wire.WebhookLua + claimLua)
	settleScript  = redis.NewScript(settleLua)
	releaseScript = redis.NewScript(releaseLua)
)

// RedisQueue is the queue of a cluster: one per partition of the layout,
// in the partition's slot. Each queue's lease holds "<instance>/<uuid>" of
// the instance delivering it. The presence scripts queue member and room
// events into it themselves (presence.RedisOptions.Webhooks).
type RedisQueue struct {
	client   redis.UniversalClient
	layout   wire.Layout
	queues   []wire.WebhookQueue
	owner    string
	lease    int64 // ms
	debounce int64 // ms
	max      int   // per queue
	// now is the scripts' time argument: "0" (Redis server time, one
	// clock for every instance) unless Options.Now was set (tests).
	now func() string
	// Per queue, as the last claim on it found it (the claiming
	// goroutine's): held by this instance, when tried, events in it.
	owned   []bool
	tried   []time.Time
	pending []int
	watch   time.Duration // how often a queue held elsewhere is tried
}

// NewRedisQueue returns the queue of the cluster on client, with the
// layout's prefix and partitions (they must match the broker's), bounded
// to maxPending events (split over the partitions).
func NewRedisQueue(client redis.UniversalClient, prefix string, partitions int, o Options) *RedisQueue {
	now := func() string { return "0" }
	if clock := o.Now; clock != nil {
		now = func() string { return strconv.FormatInt(clock().UnixMilli(), 10) }
	}
	o = o.withDefaults()
	l := wire.ClusterLayout(client, prefix, partitions)
	qs := l.WebhookQueues()
	return &RedisQueue{
		client:   client,
		layout:   l,
		queues:   qs,
		owner:    o.Instance + "/" + uuid.NewString(),
		lease:    o.Lease.Milliseconds(),
		debounce: o.Debounce.Milliseconds(),
		max:      MaxPerQueue(o.MaxPending, len(qs)),
		now:      now,
		owned:    make([]bool, len(qs)),
		tried:    make([]time.Time, len(qs)),
		pending:  make([]int, len(qs)),
		watch:    o.Lease / 2,
	}
}

// Queues is the number of queues (partitions).
func (r *RedisQueue) Queues() int { return len(r.queues) }

// MaxPerQueue is the bound of each of n queues for maxPending in all.
func MaxPerQueue(maxPending, n int) int {
	if maxPending <= 0 {
		maxPending = 100000
	}
	return max(1, maxPending/max(n, 1))
}

func (r *RedisQueue) notify(ctx context.Context, room, typ string, data []byte, debounce bool) error {
	q := r.layout.WebhookQueue(room)
	k := r.layout.Room(room)
	marker, window := k.WebhookState, int64(0)
	if typ == DocUpdated {
		marker = k.WebhookDoc
	}
	if debounce {
		window = r.debounce
	}
	roomJSON, _ := json.Marshal(room) // a string always encodes
	err := notifyScript.Run(ctx, r.client, []string{q.Due, q.Events, q.Order, q.Meta, marker},
		r.now(), room, string(roomJSON), typ, string(data), window, r.max).Err()
	if err != nil {
		return fmt.Errorf("queue %s of room %q: %w", typ, room, err)
	}
	return nil
}

// claim calls claim.lua on the queues this instance holds, and on the
// others once per half lease (to take over one whose holder died): an
// idle cluster's instances do not poll 128 queues ten times a second
// each. limit 0 only renews the leases held.
func (r *RedisQueue) claim(ctx context.Context, limit int) (claimed, error) {
	wall := time.Now()
	var parts []int
	for i := range r.queues {
		if r.owned[i] || wall.Sub(r.tried[i]) >= r.watch {
			parts = append(parts, i)
		}
	}
	per := 0
	if limit > 0 && len(parts) > 0 {
		per = max(16, (limit+len(parts)-1)/len(parts))
	}
	now := r.now()
	cmds, err := r.runAll(ctx, claimScript, len(parts), func(i int) ([]string, []any) {
		q := r.queues[parts[i]]
		return []string{q.Due, q.Events, q.Order, q.Meta, q.Lease}, []any{now, r.owner, r.lease, per, r.debounce}
	})
	if err != nil {
		return claimed{pending: -1}, fmt.Errorf("claim from %d queues: %w", len(parts), err)
	}
	var c claimed
	for i, cmd := range cmds {
		part := parts[i]
		res, err := cmd.Slice()
		if err != nil || len(res) < 4 {
			return claimed{pending: -1}, fmt.Errorf("claim from queue %d: %v", part, err)
		}
		r.tried[part] = wall
		owned, _ := res[2].(int64)
		r.owned[part] = owned == 1
		n, _ := res[1].(int64)
		r.pending[part] = int(n)
		d, _ := res[3].(int64)
		c.dropped += int(d)
		for j := 4; j+1 < len(res); j += 2 {
			key, _ := res[j].(string)
			rec, _ := res[j+1].(string)
			it, err := parseRecord(part, key, rec)
			if err != nil {
				return claimed{pending: -1}, fmt.Errorf("queue %d event %s: %w", part, key, err)
			}
			c.items = append(c.items, it)
		}
	}
	for _, n := range r.pending {
		c.pending += n
	}
	return c, nil
}

func (r *RedisQueue) settle(ctx context.Context, outs []outcome) error {
	byPart := make(map[int][]any)
	var parts []int
	for _, o := range outs {
		p := o.it.part
		if _, ok := byPart[p]; !ok {
			parts = append(parts, p)
		}
		rec := ""
		if !o.remove {
			rec = o.it.record()
		}
		byPart[p] = append(byPart[p], o.it.key, rec, strconv.FormatInt(o.due, 10))
	}
	_, err := r.runAll(ctx, settleScript, len(parts), func(i int) ([]string, []any) {
		q := r.queues[parts[i]]
		return []string{q.Due, q.Events, q.Order}, byPart[parts[i]]
	})
	if err != nil {
		return fmt.Errorf("settle %d events: %w", len(outs), err)
	}
	return nil
}

func (r *RedisQueue) release(ctx context.Context) error {
	_, err := r.runAll(ctx, releaseScript, len(r.queues), func(i int) ([]string, []any) {
		return []string{r.queues[i].Lease}, []any{r.owner}
	})
	return err
}

// runAll runs n calls of sc in one pipeline by SHA. Calls Redis answered
// NOSCRIPT (it restarted or its scripts were flushed) did nothing: the
// script is loaded and they are run once more.
func (r *RedisQueue) runAll(ctx context.Context, sc *redis.Script, n int, call func(i int) ([]string, []any)) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, n)
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; ; attempt++ {
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range todo {
				keys, args := call(i)
				cmds[i] = sc.EvalSha(ctx, p, keys, args...)
			}
			return nil
		})
		if err == nil {
			return cmds, nil
		}
		var missing []int
		for _, i := range todo {
			switch e := cmds[i].Err(); {
			case e == nil:
			case redis.HasErrorPrefix(e, "NOSCRIPT") && attempt == 0:
				missing = append(missing, i)
			default:
				return nil, e
			}
		}
		if len(missing) == 0 {
			return cmds, nil
		}
		if err := sc.Load(ctx, r.client).Err(); err != nil {
			return nil, fmt.Errorf("load script: %w", err)
		}
		todo = missing
	}
}
