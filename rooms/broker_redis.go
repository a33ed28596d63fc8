package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
)

// RedisBroker is the Broker of a cluster of instances: one Redis pub/sub
// channel per room (wire.Keys.Channel), one publisher goroutine that
// pipelines PUBLISH commands, and one pub/sub connection per instance on a
// single Redis, or per master on a Redis Cluster (sharded pub/sub:
// SSUBSCRIBE, SPUBLISH; see broker_redis_links.go).
//
// go-redis reconnects a PubSub behind its caller's back and whatever was
// published meanwhile is lost. So the broker owns each connection's life:
// any error on it, a subscription confirmation it did not ask for, one
// taken away (a cluster slot moved), or a ping left unanswered ends the
// connection; a new one subscribes its rooms again, and once all are
// confirmed the Receiver is told to Resync the rooms that were live before
// the gap.
type RedisBroker struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client, on a Redis Cluster; else nil
	layout  wire.Layout
	o       RedisBrokerOptions
	log     *slog.Logger
	queue   chan outgoing

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: the publisher flushes and ends
	wg     sync.WaitGroup

	mu      sync.RWMutex
	recv    Receiver
	started bool
	closed  bool
	subs    map[string]*subscription // by channel: the rooms this instance wants
	// The pub/sub links by node address ("" on a single Redis).
	links map[string]*link
	// How many subscriptions are owed a Resync (subscription.owed), so a
	// confirmation in steady state looks at nothing.
	owed int
	// The last PING on the command connections: when it was answered and
	// the error of the latest attempt.
	lastCmdPong time.Time
	cmdErr      error
	up          chan struct{}
	upOnce      sync.Once

	// sendMu is held by whoever sends to Redis: the publisher goroutine
	// or a script call made inline (runQueued). queued counts the payloads
	// handed to the queue and not yet sent: an inline call is made only
	// when it is 0, so it never overtakes one.
	sendMu            sync.Mutex
	queued            atomic.Int64
	pub               publisherState // under sendMu
	lastPublishErrLog time.Time      // under sendMu

	shards []chan delivery // set by Start; see broker_redis_shards.go

	saveNow chan string // rooms to save at once (broker_redis_store.go)
}

type subscription struct {
	room   string
	link   *link // the link the room is subscribed on
	active bool
	ready  chan struct{} // closed when active
	// owed: the room was live when its link's gap began, and is owed a
	// Resync once its link has every room subscribed again.
	owed bool
}

// outgoing is a plain PUBLISH of payload on channel, or a script call.
type outgoing struct {
	channel string
	payload []byte
	call    *scriptCall
}

var _ Broker = (*RedisBroker)(nil)

// RedisBrokerOptions configure a RedisBroker.
type RedisBrokerOptions struct {
	// Prefix starts every key and channel name (rooms/wire). Zero value
	// means wire.DefaultPrefix. The presence store's must be the same:
	// its scripts publish to the same channels.
	Prefix string
	// Partitions is the number of room partitions when the client is a
	// *redis.ClusterClient (wire.Layout); zero value means
	// wire.DefaultPartitions. The presence store's must be the same.
	Partitions int
	// ReplicaWait bounds how long, on a Redis Cluster, a batch that stored
	// messages waits for a replica of its master to confirm them (WAIT 1),
	// so that a stored message survives the master's failover once its
	// publisher has its seq. Zero value means 200ms; a batch whose
	// replica does not answer in time is still acknowledged (it is stored
	// on the master) and the wait is logged.
	ReplicaWait time.Duration
	// Logger zero value means slog.Default().
	Logger *slog.Logger
	// PublishQueue is how many payloads may wait for the publisher.
	// Publish fails with ErrBrokerDown when it is full. Zero value means
	// 8192.
	PublishQueue int
	// PublishBatch is the most PUBLISH commands sent in one pipeline. Zero
	// value means 256.
	PublishBatch int
	// PublishTimeout bounds one pipeline round trip. Zero value means 5s.
	PublishTimeout time.Duration
	// PingInterval is how often the pub/sub connection is pinged. Zero
	// value means 1s.
	PingInterval time.Duration
	// PongTimeout is how long past PingInterval the connection may stay
	// silent before it counts as stuck: Ready fails and the connection
	// is replaced. Zero value means 3s.
	PongTimeout time.Duration
	// OnGap, if set, is called each time the pub/sub connection is lost
	// (payloads published until it is back are lost), e.g. to count gaps.
	OnGap func()
	// DeliveryShards is how many goroutines fan payloads out to local
	// connections; a room always uses the same one. Zero value means
	// GOMAXPROCS.
	DeliveryShards int
	// DocInlineBytes is the largest document update published with its
	// bytes; a larger one is published without them and each instance
	// reads it from the document, so a big paste never passes what Redis
	// lets a pub/sub subscriber have pending (32 MiB by default, past
	// which it cuts the connection and every room on it). Zero value
	// means 1 MiB.
	DocInlineBytes int
	// OnPublishError, if set, is called with each failed publish batch
	// (its payloads are lost), e.g. to count errors.
	OnPublishError func(error)
	// Stream configures stored messages (zero value: none stored). With
	// Stream.Store, Redis is the hot tier and the store is written behind
	// it (broker_redis_store.go); HistoryTTL and DocTTL then say how long
	// an idle room stays in Redis.
	Stream StreamOptions
	// StoreDelay is how long after a room's first unsaved change it is
	// written to the store (with Stream.Store). Zero value means 2s.
	StoreDelay time.Duration
	// SaveLease is how long an instance's claim to save a room holds
	// before another instance may take it (the first crashed). Zero value
	// means 30s.
	SaveLease time.Duration
	// FlushTimeout bounds the saving of every dirty room at Close. Zero
	// value means 10s.
	FlushTimeout time.Duration
	// OnSave, if set, is called after each attempt to save a room to the
	// store, with its error, e.g. to count saves. Rooms are saved several
	// at a time: it may be called concurrently.
	OnSave func(room string, err error)
	// OnLoad, if set, is called when a room Redis did not hold was loaded
	// back from the store, with the parts this instance wrote to Redis
	// (the stream, the document): false for a part another instance had
	// loaded first or the store lacks.
	OnLoad func(room string, stream, doc bool)
}

// NewRedisBroker returns a broker on client: a *redis.ClusterClient for a
// Redis Cluster (sharded pub/sub, wire.Layout's partitions), anything else
// for a single Redis. Call Start before anything else and Close when done.
func NewRedisBroker(client redis.UniversalClient, o RedisBrokerOptions) *RedisBroker {
	if o.Prefix == "" {
		o.Prefix = wire.DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Stream = o.Stream.withDefaults()
	if o.DeliveryShards <= 0 {
		o.DeliveryShards = runtime.GOMAXPROCS(0)
	}
	if o.PublishQueue <= 0 {
		o.PublishQueue = 8192
	}
	if o.PublishBatch <= 0 {
		o.PublishBatch = 256
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.DocInlineBytes <= 0 {
		o.DocInlineBytes = 1 << 20
	}
	if o.PingInterval <= 0 {
		o.PingInterval = time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 3 * time.Second
	}
	if o.ReplicaWait <= 0 {
		o.ReplicaWait = 200 * time.Millisecond
	}
	if o.StoreDelay <= 0 {
		o.StoreDelay = 2 * time.Second
	}
	if o.SaveLease <= 0 {
		o.SaveLease = 30 * time.Second
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	cluster, _ := client.(*redis.ClusterClient)
	return &RedisBroker{
		client:  client,
		cluster: cluster,
		layout:  wire.ClusterLayout(client, o.Prefix, o.Partitions),
		o:       o,
		log:     o.Logger,
		queue:   make(chan outgoing, o.PublishQueue),
		pub:     publisherState{noReplica: make(map[string]time.Time)},
		ctx:     ctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		subs:    make(map[string]*subscription),
		links:   make(map[string]*link),
		up:      make(chan struct{}),
		saveNow: make(chan string, 1024),
	}
}

// Layout returns the names the broker uses in Redis.
func (b *RedisBroker) Layout() wire.Layout { return b.layout }

// Start implements Broker. It starts the broker's goroutines and waits,
// within ctx, for Redis to answer: on a single Redis, the pub/sub
// connection's first answer; on a cluster, every master's (links to
// masters start with the first room on them). On error the broker keeps
// trying to connect in the background; Close stops it.
func (b *RedisBroker) Start(ctx context.Context, r Receiver) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrBrokerDown
	}
	if b.started {
		b.mu.Unlock()
		return errors.New("rooms: redis broker already started")
	}
	b.recv = r
	b.started = true
	b.startShards(b.o.DeliveryShards)
	b.wg.Add(2)
	go b.pinger()
	go b.publisher()
	if b.kept() {
		b.wg.Add(1)
		go b.saver()
	}
	if b.cluster == nil {
		b.startLink("", b.client)
	}
	b.mu.Unlock()

	if err := b.pingCommands(ctx); err != nil {
		return err
	}
	if b.cluster != nil {
		b.upOnce.Do(func() { close(b.up) })
	}
	select {
	case <-b.up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connect redis pub/sub: %w: %w", ErrBrokerDown, ctx.Err())
	}
}

// Publish implements Broker. It queues payload for the publisher goroutine
// and never waits on Redis.
func (b *RedisBroker) Publish(_ context.Context, room string, payload []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed || !b.started {
		return ErrBrokerDown
	}
	b.queued.Add(1)
	select {
	case b.queue <- outgoing{channel: b.keys(room).Channel, payload: payload}:
		return nil
	default:
		b.queued.Add(-1)
		return fmt.Errorf("redis publish queue full (%d payloads): %w", cap(b.queue), ErrBrokerDown)
	}
}

// Subscribe implements Broker: it returns once Redis confirmed the
// subscription.
func (b *RedisBroker) Subscribe(ctx context.Context, room string) error {
	ch := b.keys(room).Channel
	// On a cluster, find the room's master first: that may ask Redis.
	addr, client, err := b.nodeOf(ctx, ch)
	if err != nil {
		return fmt.Errorf("subscribe room %q: %w: %w", room, ErrBrokerDown, err)
	}
	b.mu.Lock()
	if b.closed || !b.started {
		b.mu.Unlock()
		return ErrBrokerDown
	}
	s := b.subs[ch]
	if s != nil && s.active {
		b.mu.Unlock()
		return nil
	}
	var ps *redis.PubSub
	var l *link
	if s == nil {
		l = b.links[addr]
		if l == nil {
			l = b.startLink(addr, client)
		}
		s = &subscription{room: room, link: l, ready: make(chan struct{})}
		b.subs[ch] = s
		// Without a connection, the link's next one subscribes the room.
		if l.ps != nil {
			ps = l.ps
			l.expect[ch]++
		}
	}
	ready := s.ready
	b.mu.Unlock()

	if ps != nil {
		if err := b.subscribeOn(ctx, ps, ch); err != nil {
			b.replace(l, ps, fmt.Errorf("subscribe room %q: %w", room, err))
		}
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		b.forget(ch, s)
		return fmt.Errorf("subscribe room %q: %w: %w", room, ErrBrokerDown, ctx.Err())
	}
}

// forget drops subscription s, which its caller gave up on.
func (b *RedisBroker) forget(ch string, s *subscription) {
	b.mu.Lock()
	if b.subs[ch] != s {
		b.mu.Unlock()
		return
	}
	delete(b.subs, ch)
	if s.owed {
		b.owed--
	}
	l := s.link
	ps := l.ps
	b.mu.Unlock()
	if ps != nil {
		ctx, cancel := context.WithTimeout(b.ctx, b.o.PongTimeout)
		defer cancel()
		if err := b.unsubscribeOn(ctx, ps, ch); err != nil {
			b.replace(l, ps, fmt.Errorf("unsubscribe room %q: %w", s.room, err))
		}
	}
}

// Unsubscribe implements Broker. Delivery for the room stops at once, even
// if Redis has not confirmed yet.
func (b *RedisBroker) Unsubscribe(ctx context.Context, room string) error {
	ch := b.keys(room).Channel
	b.mu.Lock()
	s, ok := b.subs[ch]
	if !ok {
		b.mu.Unlock()
		return nil
	}
	delete(b.subs, ch)
	if s.owed {
		b.owed--
	}
	l := s.link
	ps := l.ps
	b.mu.Unlock()
	if ps != nil {
		if err := b.unsubscribeOn(ctx, ps, ch); err != nil {
			// The next connection will not subscribe the room.
			b.replace(l, ps, fmt.Errorf("unsubscribe room %q: %w", room, err))
		}
	}
	return nil
}

// Ready implements Broker: nil while every pub/sub connection that holds
// rooms is up and answers its pings, and Redis (every master, on a
// cluster) answers the pinger's PING on the command connections too. It
// reads what the pinger found and never waits on Redis, so a readiness
// probe cannot hang.
func (b *RedisBroker) Ready(context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	closed, started := b.closed, b.started
	cmdAge, cmdErr := time.Since(b.lastCmdPong), b.cmdErr
	stale := b.o.PingInterval + b.o.PongTimeout
	switch {
	case closed || !started:
		return ErrBrokerDown
	case cmdErr != nil:
		return fmt.Errorf("ping redis: %w: %w", ErrBrokerDown, cmdErr)
	case cmdAge > stale:
		return fmt.Errorf("redis silent for %v: %w", cmdAge.Round(time.Millisecond), ErrBrokerDown)
	}
	// On a cluster, only the links that hold rooms count. A single Redis
	// has one link, which always counts: no need to look at the rooms.
	var held map[*link]bool
	if b.cluster != nil {
		held = make(map[*link]bool, len(b.links))
		for _, s := range b.subs {
			held[s.link] = true
		}
	}
	for _, l := range b.links {
		if held != nil && !held[l] {
			continue // a cluster link without rooms is not needed
		}
		where := "redis pub/sub connection"
		if l.addr != "" {
			where = "redis pub/sub connection to " + l.addr
		}
		// A cluster link still making its first connection is not down:
		// the rooms waiting on it wait in Subscribe.
		if !l.connected && (l.down || b.cluster == nil) {
			return fmt.Errorf("%s down: %w", where, ErrBrokerDown)
		}
		if age := time.Since(l.lastPong); l.ps != nil && age > stale {
			return fmt.Errorf("%s silent for %v: %w", where, age.Round(time.Millisecond), ErrBrokerDown)
		}
	}
	return nil
}

// pingCommands pings Redis on the command connections (the publisher's),
// every master on a cluster, and records the outcome for Ready.
func (b *RedisBroker) pingCommands(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.PongTimeout)
	defer cancel()
	var err error
	if b.cluster != nil {
		err = b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("master %s: %w", c.Options().Addr, err)
			}
			return nil
		})
		if err != nil {
			// A master may have failed over: read the slots again.
			b.cluster.ReloadState(ctx)
		}
	} else {
		err = b.client.Ping(ctx).Err()
	}
	b.mu.Lock()
	b.cmdErr = err
	if err == nil {
		b.lastCmdPong = time.Now()
	}
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ping redis: %w: %w", ErrBrokerDown, err)
	}
	return nil
}

// Close implements Broker. Payloads already queued get one last attempt,
// bounded by PublishTimeout.
func (b *RedisBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	var open []*redis.PubSub
	for _, l := range b.links {
		if l.ps != nil {
			open = append(open, l.ps)
		}
	}
	b.mu.Unlock()

	b.cancel()
	close(b.stop)
	for _, ps := range open {
		_ = ps.Close() // ends a Receive blocked on the connection
	}
	b.wg.Wait()
	// Every stored payload is in Redis now: what the store lacks of it is
	// written before the instance goes.
	if b.kept() && started {
		b.saveAll()
	}
	return nil
}
