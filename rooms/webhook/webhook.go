// Package webhook tells an app's backend what happens in its rooms: it
// queues events (room.occupied, room.vacated, member.joined, member.left,
// room.state, doc.updated, room.deleted) where they are decided and
// delivers each one once per cluster, at least once, signed the Standard
// Webhooks way, retrying with backoff for up to a day.
//
// The queue is durable, not a goroutine per event: on Redis, one queue per
// partition (wire.WebhookQueue), into which the presence scripts queue
// member and room events in the same atomic step that decides them, and
// which one instance at a time delivers (a lease per queue; its claims
// lapse to the next owner when it dies). Without Redis, the queue is this
// process's, kept in the store when it has one (see Persister).
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Event types.
const (
	RoomOccupied = "room.occupied"
	RoomVacated  = "room.vacated"
	MemberJoined = "member.joined"
	MemberLeft   = "member.left"
	RoomState    = "room.state"
	DocUpdated   = "doc.updated"
	RoomDeleted  = "room.deleted"
)

// Options configure Webhooks. Zero values are documented per field.
type Options struct {
	// URLs receive every event. At least one.
	URLs []string
	// Signer signs every request (ParseSecret).
	Signer Signer
	// VacateDelay: an emptied room sends room.vacated only when nobody is
	// back within it. Zero value means 5 s.
	VacateDelay time.Duration
	// Debounce: room.state and doc.updated go out at most once per room
	// per Debounce. Zero value means 2 s.
	Debounce time.Duration
	// Backoff is the retry schedule; zero values 1 s doubling up to 10 min.
	Backoff Backoff
	// MaxAge: an event still failing this long after it happened is
	// dropped. Zero value means 24 h.
	MaxAge time.Duration
	// Timeout bounds one attempt (no answer within it is a failure).
	// Zero value means 10 s.
	Timeout time.Duration
	// MaxPending bounds the queued events (on a Redis Cluster, each of its
	// partitions' queues holds MaxPending/partitions); past it the oldest
	// event is dropped. Zero value means 100000.
	MaxPending int
	// Lease is how long an instance's claim on a queue (and on the events
	// it is delivering) lasts without renewal: the time a dead deliverer's
	// events wait for another instance. Zero value means 5 s.
	Lease time.Duration
	// Poll is how often due events are looked for. Zero value means 100 ms.
	Poll time.Duration
	// Parallel bounds the attempts under way at once. Zero value means 32.
	Parallel int
	// Client sends the requests; nil means one without redirects.
	Client *http.Client
	// Instance names this instance in the leases it holds ("" none).
	Instance string
	// Logger zero value means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.VacateDelay <= 0 {
		o.VacateDelay = 5 * time.Second
	}
	if o.Debounce <= 0 {
		o.Debounce = 2 * time.Second
	}
	o.Backoff = o.Backoff.withDefaults()
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 100000
	}
	if o.Lease <= 0 {
		o.Lease = 5 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// maxInflight bounds the events an instance holds claimed at once.
const maxInflight = 2000

// queue is where events wait: Redis (RedisQueue) or this process
// (MemoryQueue).
type queue interface {
	// notify queues an event decided in Go: data is the event's data
	// object after its "room" member (`,"epoch":…}` or `}`). With
	// debounce, the room has at most one such event of typ waiting, which
	// takes the newest data, and one goes out per Debounce.
	notify(ctx context.Context, room, typ string, data []byte, debounce bool) error
	// claim takes up to limit due events of the queues this instance
	// delivers; each is not due again for a Lease.
	claim(ctx context.Context, limit int) (claimed, error)
	// settle records what became of claimed events.
	settle(ctx context.Context, outs []outcome) error
	// release gives up this instance's queues (shutdown).
	release(ctx context.Context) error
}

type claimed struct {
	items   []item
	pending int // events in the queue(s), -1 when unknown
	dropped int // events the bound dropped since the last claim
}

// outcome is what became of a claimed event: removed (delivered, or
// dropped after its last try), or queued again as it, due at due.
type outcome struct {
	it     item
	remove bool
	due    int64 // unix ms
}

// Webhooks queues and delivers the events of one instance. A nil
// *Webhooks (webhooks off) ignores every event.
type Webhooks struct {
	o       Options
	q       queue
	log     *slog.Logger
	metrics *metrics

	// Changes (room.state, doc.updated) wait here, the latest per room
	// and type, until Run's goroutine queues them: the socket that stored
	// the change does not wait for the queue's round trip, and a burst of
	// edits costs one.
	chMu    sync.Mutex
	changes map[changeKey][]byte
	kick    chan struct{} // 1-buffered: changes wait
}

type changeKey struct{ room, typ string }

// New returns Webhooks over q (NewRedisQueue or NewMemoryQueue).
func New(q queue, o Options) (*Webhooks, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("webhook: no URL")
	}
	o = o.withDefaults()
	return &Webhooks{o: o, q: q, log: o.Logger, metrics: newMetrics(),
		changes: make(map[changeKey][]byte), kick: make(chan struct{}, 1)}, nil
}

// Register registers the webhook series (pending, delivered, retried,
// dropped, delay) on reg.
func (w *Webhooks) Register(reg prometheus.Registerer) error {
	if w == nil {
		return nil
	}
	if err := w.metrics.register(reg); err != nil {
		return fmt.Errorf("webhook: register metrics: %w", err)
	}
	return nil
}

// State queues room.state for the room's state at epoch:seq of size bytes
// (debounced). It does not wait: Run's goroutine queues the latest change
// of each room within moments.
func (w *Webhooks) State(ctx context.Context, room, epoch string, seq uint64, bytes int64) {
	w.changed(ctx, room, RoomState, epoch, seq, bytes)
}

// DocUpdated queues doc.updated for the room's document at epoch:seq of
// stored size bytes (debounced), without waiting, as State.
func (w *Webhooks) DocUpdated(ctx context.Context, room, epoch string, seq uint64, bytes int64) {
	w.changed(ctx, room, DocUpdated, epoch, seq, bytes)
}

func (w *Webhooks) changed(ctx context.Context, room, typ, epoch string, seq uint64, bytes int64) {
	if w == nil {
		return
	}
	e, _ := json.Marshal(epoch) // a string always encodes
	data := make([]byte, 0, 64+len(e))
	data = append(data, `,"epoch":`...)
	data = append(data, e...)
	if seq > 0 {
		data = strconv.AppendUint(append(data, `,"seq":`...), seq, 10)
	}
	data = strconv.AppendInt(append(data, `,"bytes":`...), bytes, 10)
	data = append(data, '}')
	w.chMu.Lock()
	w.changes[changeKey{room, typ}] = data
	w.chMu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// queueChanges queues the changes waiting, until ctx ends; then it queues
// those left, within notifyTimeout.
func (w *Webhooks) queueChanges(ctx context.Context) {
	flush := func(ctx context.Context) {
		w.chMu.Lock()
		batch := w.changes
		w.changes = make(map[changeKey][]byte)
		w.chMu.Unlock()
		for k, data := range batch {
			w.notify(ctx, k.room, k.typ, data, true)
		}
	}
	for {
		select {
		case <-w.kick:
			flush(ctx)
		case <-ctx.Done():
			flush(context.WithoutCancel(ctx))
			return
		}
	}
}

// Deleted queues room.deleted.
func (w *Webhooks) Deleted(ctx context.Context, room string) {
	if w == nil {
		return
	}
	w.notify(ctx, room, RoomDeleted, []byte("}"), false)
}

// notifyTimeout bounds the queueing of one event decided in Go.
const notifyTimeout = 5 * time.Second

func (w *Webhooks) notify(ctx context.Context, room, typ string, data []byte, debounce bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	if err := w.q.notify(ctx, room, typ, data, debounce); err != nil {
		w.metrics.dropped.WithLabelValues("not_queued").Inc()
		w.log.Warn("webhook: event not queued", "room", room, "type", typ, "err", err)
	}
}

// Run delivers events until ctx ends; then it hands what it claimed back
// to the queue and returns.
func (w *Webhooks) Run(ctx context.Context) {
	if w == nil {
		return
	}
	changes := make(chan struct{})
	go func() { defer close(changes); w.queueChanges(ctx) }()
	defer func() { <-changes }()
	d := newDeliverer(w)
	t := time.NewTicker(w.o.Poll)
	defer t.Stop()
	for {
		d.settle(ctx)
		d.claim(ctx)
		select {
		case <-ctx.Done():
			d.stop()
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// deliverer runs one instance's attempts: the events of one room one
// after another, in queue order, so the first attempts of a room's events
// go out in the order they happened; rooms in parallel.
type deliverer struct {
	w    *Webhooks
	sem  chan struct{}
	wake chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	rooms    map[string][]item // events waiting per room; a room present has a worker
	inflight map[string]bool   // claimed and not settled, by partition/key
	outs     []outcome
	ctx      context.Context
	cancel   context.CancelFunc

	claimLogged time.Time // the Run goroutine's
}

func newDeliverer(w *Webhooks) *deliverer {
	ctx, cancel := context.WithCancel(context.Background())
	return &deliverer{w: w, sem: make(chan struct{}, w.o.Parallel), wake: make(chan struct{}, 1),
		rooms: make(map[string][]item), inflight: make(map[string]bool), ctx: ctx, cancel: cancel}
}

func inflightKey(it item) string { return strconv.Itoa(it.part) + "/" + it.key }

func (d *deliverer) claim(ctx context.Context) {
	d.mu.Lock()
	free := max(0, maxInflight-len(d.inflight))
	d.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	c, err := d.w.q.claim(ctx, free) // also with 0: it renews the leases held
	if err != nil {
		// Every poll fails while Redis is away: one line per 10 s.
		if now := time.Now(); ctx.Err() == nil && now.Sub(d.claimLogged) >= 10*time.Second {
			d.claimLogged = now
			d.w.log.Warn("webhook: claim due events", "err", err)
		}
		return
	}
	if c.pending >= 0 {
		d.w.metrics.pending.Set(float64(c.pending))
	}
	if c.dropped > 0 {
		d.w.metrics.dropped.WithLabelValues("queue_full").Add(float64(c.dropped))
		d.w.log.Warn("webhook: queue full, oldest events dropped", "dropped", c.dropped, "max_pending", d.w.o.MaxPending)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, it := range c.items {
		k := inflightKey(it)
		if d.inflight[k] {
			continue // still under way from an earlier claim
		}
		d.inflight[k] = true
		waiting, active := d.rooms[it.room]
		d.rooms[it.room] = append(waiting, it)
		if !active {
			d.wg.Add(1)
			go d.work(it.room)
		}
	}
}

// work delivers the room's waiting events in order until none is left.
func (d *deliverer) work(room string) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		waiting := d.rooms[room]
		if len(waiting) == 0 {
			delete(d.rooms, room)
			d.mu.Unlock()
			return
		}
		it := waiting[0]
		d.mu.Unlock()
		var out outcome
		select {
		case d.sem <- struct{}{}:
			out = d.w.attempt(d.ctx, it)
			<-d.sem
		case <-d.ctx.Done():
			out = outcome{it: it, due: d.w.o.Now().UnixMilli()}
		}
		d.mu.Lock()
		d.rooms[room] = d.rooms[room][1:]
		d.outs = append(d.outs, out)
		d.mu.Unlock()
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// settle writes the outcomes gathered since the last call to the queue.
func (d *deliverer) settle(ctx context.Context) {
	d.mu.Lock()
	outs := d.outs
	d.outs = nil
	d.mu.Unlock()
	if len(outs) == 0 {
		return
	}
	if ctx.Err() != nil {
		ctx = context.Background()
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := d.w.q.settle(sctx, outs)
	cancel()
	if err != nil {
		// The events stay claimed until their lease lapses, then go out
		// again: at least once.
		d.w.log.Warn("webhook: record delivery outcomes", "events", len(outs), "err", err)
	}
	d.mu.Lock()
	for _, o := range outs {
		delete(d.inflight, inflightKey(o.it))
	}
	d.mu.Unlock()
}

// stop ends the attempts under way (their events are queued again, due
// now), records every outcome and releases the instance's queues.
func (d *deliverer) stop() {
	d.cancel()
	d.wg.Wait()
	// Bounded so shutdown still ends within its 10 s: what is not
	// recorded in time goes out again when its claim lapses.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.settle(ctx)
	if err := d.w.q.release(ctx); err != nil {
		d.w.log.Warn("webhook: release queues", "err", err)
	}
}
