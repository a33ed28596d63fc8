package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
)

// RedisBroker is the Broker of a cluster: one Redis pub/sub channel per room
// (Channel), one pub/sub connection per instance, and one publisher
// goroutine that pipelines PUBLISH commands.
//
// go-redis reconnects a PubSub behind its caller's back and whatever was
// published meanwhile is lost. So the broker owns the connection's life:
// any error on it, a SUBSCRIBE confirmation it did not ask for, or a ping
// left unanswered ends the connection; a new one subscribes every wanted
// room again, and once all are confirmed the Receiver is told to Resync the
// rooms that were live before the gap.
type RedisBroker struct {
	client redis.UniversalClient
	o      RedisBrokerOptions
	log    *slog.Logger
	queue  chan outgoing

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: the publisher flushes and ends
	wg     sync.WaitGroup

	mu      sync.RWMutex
	recv    Receiver
	started bool
	closed  bool
	subs    map[string]*subscription // by channel: the rooms this instance wants
	// The current pub/sub connection; nil between connections.
	ps *redis.PubSub
	// SUBSCRIBE confirmations still due on ps, by channel.
	expect    map[string]int
	connected bool      // ps has answered
	lastPong  time.Time // or the start of ps, before its first pong
	// The last PING on the command connections: when it was answered and
	// the error of the latest attempt.
	lastCmdPong time.Time
	cmdErr      error
	up          chan struct{}
	upOnce      sync.Once
	// Rooms that were live when a gap began and are owed a Resync.
	resync map[string]struct{}
	// Whether the current outage was logged.
	outageLogged bool

	lastPublishErrLog time.Time // publisher goroutine only

	shards []chan delivery // set by Start; see broker_redis_shards.go
}

type subscription struct {
	room   string
	active bool
	ready  chan struct{} // closed when active
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
	// OnPublishError, if set, is called with each failed publish batch
	// (its payloads are lost), e.g. to count errors.
	OnPublishError func(error)
	// Stream configures stored messages (zero value: none stored).
	Stream StreamOptions
}

// NewRedisBroker returns a broker on client. Call Start before anything
// else and Close when done.
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
	if o.PingInterval <= 0 {
		o.PingInterval = time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 3 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RedisBroker{
		client: client,
		o:      o,
		log:    o.Logger,
		queue:  make(chan outgoing, o.PublishQueue),
		ctx:    ctx,
		cancel: cancel,
		stop:   make(chan struct{}),
		subs:   make(map[string]*subscription),
		up:     make(chan struct{}),
		resync: make(map[string]struct{}),
	}
}

// Start implements Broker. It starts the broker's goroutines and waits,
// within ctx, for the pub/sub connection's first answer. On error the
// broker keeps trying to connect in the background; Close stops it.
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
	b.wg.Add(3)
	go b.run()
	go b.pinger()
	go b.publisher()
	b.mu.Unlock()

	if err := b.pingCommands(ctx); err != nil {
		return err
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
	select {
	case b.queue <- outgoing{channel: wire.RoomKeys(b.o.Prefix, room).Channel, payload: payload}:
		return nil
	default:
		return fmt.Errorf("redis publish queue full (%d payloads): %w", cap(b.queue), ErrBrokerDown)
	}
}

// Subscribe implements Broker: it returns once Redis confirmed the
// subscription.
func (b *RedisBroker) Subscribe(ctx context.Context, room string) error {
	ch := wire.RoomKeys(b.o.Prefix, room).Channel
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
	if s == nil {
		s = &subscription{room: room, ready: make(chan struct{})}
		b.subs[ch] = s
		// Without a connection, the next one subscribes every wanted room.
		if b.ps != nil {
			ps = b.ps
			b.expect[ch]++
		}
	}
	ready := s.ready
	b.mu.Unlock()

	if ps != nil {
		if err := ps.Subscribe(ctx, ch); err != nil {
			b.replace(ps, fmt.Errorf("subscribe room %q: %w", room, err))
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
	ps := b.ps
	b.mu.Unlock()
	if ps != nil {
		ctx, cancel := context.WithTimeout(b.ctx, b.o.PongTimeout)
		defer cancel()
		if err := ps.Unsubscribe(ctx, ch); err != nil {
			b.replace(ps, fmt.Errorf("unsubscribe room %q: %w", s.room, err))
		}
	}
}

// Unsubscribe implements Broker. Delivery for the room stops at once, even
// if Redis has not confirmed yet.
func (b *RedisBroker) Unsubscribe(ctx context.Context, room string) error {
	ch := wire.RoomKeys(b.o.Prefix, room).Channel
	b.mu.Lock()
	if _, ok := b.subs[ch]; !ok {
		b.mu.Unlock()
		return nil
	}
	delete(b.subs, ch)
	ps := b.ps
	b.mu.Unlock()
	if ps != nil {
		if err := ps.Unsubscribe(ctx, ch); err != nil {
			// The next connection will not subscribe the room.
			b.replace(ps, fmt.Errorf("unsubscribe room %q: %w", room, err))
		}
	}
	return nil
}

// Ready implements Broker: nil while the pub/sub connection is up and
// answers its pings and Redis answers the pinger's PING on the command
// connections too. It reads what the pinger found and never waits on
// Redis, so a readiness probe cannot hang.
func (b *RedisBroker) Ready(context.Context) error {
	b.mu.RLock()
	closed, started, connected := b.closed, b.started, b.connected
	pongAge, cmdAge, cmdErr := time.Since(b.lastPong), time.Since(b.lastCmdPong), b.cmdErr
	b.mu.RUnlock()
	stale := b.o.PingInterval + b.o.PongTimeout
	switch {
	case closed || !started:
		return ErrBrokerDown
	case !connected:
		return fmt.Errorf("redis pub/sub connection down: %w", ErrBrokerDown)
	case pongAge > stale:
		return fmt.Errorf("redis pub/sub connection silent for %v: %w", pongAge.Round(time.Millisecond), ErrBrokerDown)
	case cmdErr != nil:
		return fmt.Errorf("ping redis: %w: %w", ErrBrokerDown, cmdErr)
	case cmdAge > stale:
		return fmt.Errorf("redis silent for %v: %w", cmdAge.Round(time.Millisecond), ErrBrokerDown)
	}
	return nil
}

// pingCommands pings Redis on the command connections (the publisher's)
// and records the outcome for Ready.
func (b *RedisBroker) pingCommands(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.PongTimeout)
	defer cancel()
	err := b.client.Ping(ctx).Err()
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
	ps := b.ps
	b.mu.Unlock()

	b.cancel()
	close(b.stop)
	if ps != nil {
		_ = ps.Close() // ends a Receive blocked on the connection
	}
	b.wg.Wait()
	return nil
}

// run keeps one pub/sub connection going until Close, with a backoff
// between failed attempts.
func (b *RedisBroker) run() {
	defer b.wg.Done()
	const minBackoff, maxBackoff = 50 * time.Millisecond, time.Second
	backoff := minBackoff
	for {
		wasUp, err := b.session()
		if b.ctx.Err() != nil {
			return
		}
		b.lost(err)
		if wasUp {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

var errUnexpectedSubscribe = errors.New("redis pub/sub confirmed a subscription it was not asked for (silent reconnect)")

// session runs one pub/sub connection: it subscribes every wanted room and
// delivers until the connection fails. wasUp reports whether Redis
// answered on it.
func (b *RedisBroker) session() (wasUp bool, err error) {
	ps := b.client.Subscribe(b.ctx) // connects on first use
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ps.Close()
		return false, ErrBrokerDown
	}
	b.ps = ps
	b.expect = make(map[string]int, len(b.subs))
	b.lastPong = time.Now()
	channels := make([]string, 0, len(b.subs))
	for ch := range b.subs {
		channels = append(channels, ch)
		b.expect[ch]++
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.ps == ps {
			b.ps = nil
		}
		b.mu.Unlock()
		_ = ps.Close()
	}()

	if len(channels) > 0 {
		if err := ps.Subscribe(b.ctx, channels...); err != nil {
			return false, fmt.Errorf("subscribe %d rooms: %w", len(channels), err)
		}
	}
	if err := ps.Ping(b.ctx); err != nil {
		return false, fmt.Errorf("ping: %w", err)
	}
	var heard time.Time
	for {
		msg, err := ps.Receive(b.ctx)
		if err != nil {
			return wasUp, fmt.Errorf("receive: %w", err)
		}
		if !wasUp {
			wasUp = true
			b.connectedNow()
		}
		switch m := msg.(type) {
		case *redis.Message:
			// A message is as good a sign of life as a pong. Under load
			// the pongs wait behind the messages this loop is still
			// delivering; replacing the connection then would throw away
			// everything queued on it and cause the very gap it guards
			// against.
			if now := time.Now(); now.Sub(heard) > 100*time.Millisecond {
				heard = now
				b.mu.Lock()
				b.lastPong = now
				b.mu.Unlock()
			}
			b.deliver(m)
		case *redis.Pong:
			b.mu.Lock()
			b.lastPong = time.Now()
			b.mu.Unlock()
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if err := b.confirmed(m.Channel); err != nil {
					return wasUp, err
				}
			}
		}
	}
}

func (b *RedisBroker) connectedNow() {
	b.mu.Lock()
	b.connected = true
	b.lastPong = time.Now()
	if b.outageLogged {
		b.outageLogged = false
		b.log.Info("redis pub/sub connection is back")
	}
	b.mu.Unlock()
	b.upOnce.Do(func() { close(b.up) })
	b.resyncIfActive()
}

func (b *RedisBroker) deliver(m *redis.Message) {
	b.mu.RLock()
	s := b.subs[m.Channel]
	b.mu.RUnlock()
	if s == nil {
		return // unsubscribed meanwhile
	}
	b.dispatch(b.shardOf(s.room), delivery{room: s.room, payload: []byte(m.Payload)})
}

// confirmed records Redis's confirmation of a SUBSCRIBE. A room is active
// once its latest SUBSCRIBE is confirmed, so an earlier confirmation that
// preceded an UNSUBSCRIBE cannot mark it active too soon.
func (b *RedisBroker) confirmed(ch string) error {
	b.mu.Lock()
	if b.expect[ch] == 0 {
		b.mu.Unlock()
		return fmt.Errorf("%w: %s", errUnexpectedSubscribe, ch)
	}
	b.expect[ch]--
	if s := b.subs[ch]; s != nil && !s.active && b.expect[ch] == 0 {
		s.active = true
		close(s.ready)
	}
	b.mu.Unlock()
	b.resyncIfActive()
	return nil
}

// resyncIfActive calls Resync for the rooms owed one once every wanted
// room is subscribed again.
func (b *RedisBroker) resyncIfActive() {
	b.mu.Lock()
	if len(b.resync) == 0 || !b.connected {
		b.mu.Unlock()
		return
	}
	for _, s := range b.subs {
		if !s.active {
			b.mu.Unlock()
			return
		}
	}
	var rooms []string
	for ch, s := range b.subs {
		if _, ok := b.resync[ch]; ok {
			rooms = append(rooms, s.room)
		}
	}
	clear(b.resync)
	b.mu.Unlock()
	if len(rooms) > 0 {
		b.log.Info("redis pub/sub resubscribed after a gap; resyncing rooms", "rooms", len(rooms))
		b.dispatchResync(rooms)
	}
}

// lost marks the end of a pub/sub connection: every room must be
// subscribed again, and those that were live are owed a Resync.
func (b *RedisBroker) lost(err error) {
	b.mu.Lock()
	wasConnected := b.connected
	b.connected = false
	live := 0
	for ch, s := range b.subs {
		if s.active {
			live++
			b.resync[ch] = struct{}{}
			s.active = false
			s.ready = make(chan struct{})
		}
	}
	logIt := wasConnected || !b.outageLogged
	b.outageLogged = true
	b.mu.Unlock()

	if wasConnected {
		b.log.Warn("redis pub/sub connection lost; payloads published until it is back are lost", "err", err, "rooms", live)
		if b.o.OnGap != nil {
			b.o.OnGap()
		}
	} else if logIt {
		b.log.Warn("redis pub/sub cannot connect; retrying", "err", err)
	}
}

// replace ends ps if it is still the current connection, so run starts a
// fresh one.
func (b *RedisBroker) replace(ps *redis.PubSub, why error) {
	b.mu.RLock()
	current := b.ps == ps && !b.closed
	b.mu.RUnlock()
	if current {
		b.log.Warn("replacing redis pub/sub connection", "err", why)
		_ = ps.Close()
	}
}

// pinger checks that the pub/sub connection answers, replacing one that
// stays silent, and that Redis answers on the command connections.
func (b *RedisBroker) pinger() {
	defer b.wg.Done()
	t := time.NewTicker(b.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		_ = b.pingCommands(b.ctx)
		b.mu.RLock()
		ps, last := b.ps, b.lastPong
		b.mu.RUnlock()
		if ps == nil {
			continue
		}
		if silent := time.Since(last); silent > b.o.PingInterval+b.o.PongTimeout {
			b.replace(ps, fmt.Errorf("no pong for %v: connection stuck", silent.Round(time.Millisecond)))
			continue
		}
		// No deadline of our own: Ping may first wait for a handshake in
		// progress, and a deadline passing there would fail the write and
		// make go-redis reconnect behind our back. The client's
		// WriteTimeout bounds the write; silence is caught above.
		if err := ps.Ping(b.ctx); err != nil && b.ctx.Err() == nil {
			b.replace(ps, fmt.Errorf("ping: %w", err))
		}
	}
}

// publisher sends queued payloads in order, as many as are waiting (up to
// PublishBatch) in one pipeline.
func (b *RedisBroker) publisher() {
	defer b.wg.Done()
	batch := make([]outgoing, 0, b.o.PublishBatch)
	for {
		select {
		case <-b.stop:
			b.flush(batch)
			return
		case o := <-b.queue:
			batch = b.fill(append(batch[:0], o))
			ctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
			b.send(ctx, batch)
			cancel()
		}
	}
}

func (b *RedisBroker) fill(batch []outgoing) []outgoing {
	for len(batch) < b.o.PublishBatch {
		select {
		case o := <-b.queue:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// flush sends what is still queued at Close, within one PublishTimeout.
func (b *RedisBroker) flush(batch []outgoing) {
	ctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
	defer cancel()
	for ctx.Err() == nil {
		batch = b.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		b.send(ctx, batch)
	}
}

func (b *RedisBroker) send(ctx context.Context, batch []outgoing) {
	cmds := make([]redis.Cmder, len(batch))
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range batch {
			if o.call != nil {
				cmds[i] = o.call.script.EvalSha(ctx, p, o.call.keys, o.call.args...)
			} else {
				cmds[i] = p.Publish(ctx, o.channel, o.payload)
			}
		}
		return nil
	})
	var err error
	for i, o := range batch {
		if o.call == nil {
			if cerr := cmds[i].Err(); cerr != nil && err == nil {
				err = cerr
			}
			continue
		}
		c := cmds[i].(*redis.Cmd)
		val, cerr := c.Result()
		if cerr != nil && redis.HasErrorPrefix(cerr, "NOSCRIPT") {
			// Redis restarted and forgot the script: it did not run, so
			// running it again (in order) cannot store twice.
			val, cerr = o.call.script.Run(ctx, b.client, o.call.keys, o.call.args...).Result()
		}
		if cerr != nil && err == nil {
			err = cerr
		}
		o.call.done <- scriptResult{val: val, err: cerr}
	}
	if err == nil {
		return
	}
	err = fmt.Errorf("redis publish of %d payloads: %w", len(batch), err)
	if b.o.OnPublishError != nil {
		b.o.OnPublishError(err)
	}
	// While Redis is down every batch fails: log the first, then at most
	// every 10s.
	if now := time.Now(); now.Sub(b.lastPublishErrLog) > 10*time.Second {
		b.lastPublishErrLog = now
		b.log.Warn("payloads lost", "err", err)
	}
}
