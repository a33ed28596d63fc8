package rooms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/rooms/wire"
)

// A link is one pub/sub connection of the broker and the rooms subscribed
// on it: the only one on a single Redis; on a Redis Cluster one per master
// that serves rooms of this instance, which SSUBSCRIBEs the channels of
// the slots it serves. A link's goroutine (run) keeps its connection
// going. When a connection ends, its rooms are owed a Resync; on a
// cluster the link first asks which master serves each of its rooms now
// (a failover or a resharding moves slots), hands the rooms another
// master serves to that master's link, and ends once it holds no rooms.
//
// Every field is guarded by the broker's mu.
type link struct {
	addr   string                // the master's address; "" on a single Redis
	client redis.UniversalClient // where the connection goes
	ps     *redis.PubSub         // the current connection; nil between connections
	// Subscription confirmations still due on ps, by channel.
	expect    map[string]int
	connected bool      // ps has answered
	down      bool      // a connection was lost and none has answered since
	lastPong  time.Time // or the start of ps, before its first pong
	// Whether the current outage was logged.
	outageLogged bool
}

// startLink starts the link to addr and its goroutine. b.mu is held.
func (b *RedisBroker) startLink(addr string, client redis.UniversalClient) *link {
	l := &link{addr: addr, client: client}
	b.links[addr] = l
	b.wg.Add(1)
	go b.run(l)
	return l
}

// nodeOf returns the address and client of the master that serves
// channel: "" and the broker's client on a single Redis.
func (b *RedisBroker) nodeOf(ctx context.Context, channel string) (string, redis.UniversalClient, error) {
	if b.cluster == nil {
		return "", b.client, nil
	}
	c, err := b.cluster.MasterForKey(ctx, channel)
	if err != nil {
		return "", nil, fmt.Errorf("find the master of %s: %w", channel, err)
	}
	return c.Options().Addr, c, nil
}

func (b *RedisBroker) subscribeOn(ctx context.Context, ps *redis.PubSub, channels ...string) error {
	if !b.layout.Sharded() {
		return ps.Subscribe(ctx, channels...)
	}
	// One SSUBSCRIBE may only name channels of one slot.
	bySlot := make(map[int][]string)
	for _, ch := range channels {
		s := wire.Slot(ch)
		bySlot[s] = append(bySlot[s], ch)
	}
	for _, chs := range bySlot {
		if err := ps.SSubscribe(ctx, chs...); err != nil {
			return err
		}
	}
	return nil
}

func (b *RedisBroker) unsubscribeOn(ctx context.Context, ps *redis.PubSub, channel string) error {
	if b.layout.Sharded() {
		return ps.SUnsubscribe(ctx, channel)
	}
	return ps.Unsubscribe(ctx, channel)
}

// run keeps l's connection going until Close, with a backoff between
// failed attempts, or on a cluster until l holds no rooms after a
// connection ended.
func (b *RedisBroker) run(l *link) {
	defer b.wg.Done()
	const minBackoff, maxBackoff = 50 * time.Millisecond, time.Second
	backoff := minBackoff
	for {
		wasUp, err := b.session(l)
		if b.ctx.Err() != nil {
			return
		}
		b.lost(l, err)
		if wasUp {
			backoff = minBackoff
		}
		if b.cluster != nil && !b.reroute(l) {
			return
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

var (
	errUnexpectedSubscribe = errors.New("redis pub/sub confirmed a subscription it was not asked for (silent reconnect)")
	errSlotMoved           = errors.New("redis unsubscribed a room channel (its slot moved to another master)")
)

// roomsOf returns the channels subscribed on l. b.mu is held.
func (b *RedisBroker) roomsOf(l *link) []string {
	var chs []string
	for ch, s := range b.subs {
		if s.link == l {
			chs = append(chs, ch)
		}
	}
	return chs
}

// session runs one connection of l: it subscribes the link's rooms and
// delivers until the connection fails. wasUp reports whether Redis
// answered on it.
func (b *RedisBroker) session(l *link) (wasUp bool, err error) {
	var ps *redis.PubSub
	if b.layout.Sharded() {
		ps = l.client.SSubscribe(b.ctx) // connects on first use
	} else {
		ps = l.client.Subscribe(b.ctx)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ps.Close()
		return false, ErrBrokerDown
	}
	l.ps = ps
	l.lastPong = time.Now()
	channels := b.roomsOf(l)
	l.expect = make(map[string]int, len(channels))
	for _, ch := range channels {
		l.expect[ch]++
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if l.ps == ps {
			l.ps = nil
		}
		b.mu.Unlock()
		_ = ps.Close()
	}()

	if len(channels) > 0 {
		if err := b.subscribeOn(b.ctx, ps, channels...); err != nil {
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
			b.connectedNow(l)
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
				l.lastPong = now
				b.mu.Unlock()
			}
			b.deliver(m)
		case *redis.Pong:
			b.mu.Lock()
			l.lastPong = time.Now()
			b.mu.Unlock()
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				if err := b.confirmed(l, m.Channel); err != nil {
					return wasUp, err
				}
			case "sunsubscribe":
				// Redis takes a slot's subscriptions away when the slot
				// moves (resharding) or its master turns replica
				// (failover): the room must go where its slot went.
				b.mu.RLock()
				s := b.subs[m.Channel]
				taken := s != nil && s.link == l && s.active
				b.mu.RUnlock()
				if taken {
					return wasUp, fmt.Errorf("%w: %s", errSlotMoved, m.Channel)
				}
			}
		}
	}
}

func (b *RedisBroker) connectedNow(l *link) {
	b.mu.Lock()
	l.connected = true
	l.down = false
	l.lastPong = time.Now()
	if l.outageLogged {
		l.outageLogged = false
		b.log.Info("redis pub/sub connection is back", "node", l.addr)
	}
	b.mu.Unlock()
	if b.cluster == nil {
		b.upOnce.Do(func() { close(b.up) })
	}
	b.resyncIfActive(l)
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

// confirmed records Redis's confirmation of a subscription on l. A room is
// active once its latest subscription is confirmed, so an earlier
// confirmation that preceded an unsubscription cannot mark it active too
// soon.
func (b *RedisBroker) confirmed(l *link, ch string) error {
	b.mu.Lock()
	if l.expect[ch] == 0 {
		b.mu.Unlock()
		return fmt.Errorf("%w: %s", errUnexpectedSubscribe, ch)
	}
	l.expect[ch]--
	if s := b.subs[ch]; s != nil && s.link == l && !s.active && l.expect[ch] == 0 {
		s.active = true
		close(s.ready)
	}
	b.mu.Unlock()
	b.resyncIfActive(l)
	return nil
}

// resyncIfActive calls Resync for l's rooms owed one once every room of l
// is subscribed again.
func (b *RedisBroker) resyncIfActive(l *link) {
	b.mu.Lock()
	if !l.connected || b.owed == 0 {
		b.mu.Unlock()
		return
	}
	var owed []*subscription
	for _, s := range b.subs {
		if s.link != l {
			continue
		}
		if !s.active {
			b.mu.Unlock()
			return
		}
		if s.owed {
			owed = append(owed, s)
		}
	}
	rooms := make([]string, 0, len(owed))
	for _, s := range owed {
		s.owed = false
		b.owed--
		rooms = append(rooms, s.room)
	}
	b.mu.Unlock()
	if len(rooms) > 0 {
		b.log.Info("redis pub/sub resubscribed after a gap; resyncing rooms", "node", l.addr, "rooms", len(rooms))
		b.dispatchResync(rooms)
	}
}

// lost marks the end of one of l's connections: every room of l must be
// subscribed again, and those that were live are owed a Resync.
func (b *RedisBroker) lost(l *link, err error) {
	b.mu.Lock()
	wasConnected := l.connected
	l.connected = false
	l.down = true
	live := 0
	for _, s := range b.subs {
		if s.link == l && s.active {
			live++
			if !s.owed {
				s.owed = true
				b.owed++
			}
			s.active = false
			s.ready = make(chan struct{})
		}
	}
	logIt := wasConnected || !l.outageLogged
	l.outageLogged = true
	b.mu.Unlock()

	if wasConnected {
		b.log.Warn("redis pub/sub connection lost; payloads published until it is back are lost", "node", l.addr, "err", err, "rooms", live)
		if b.o.OnGap != nil {
			b.o.OnGap()
		}
	} else if logIt {
		b.log.Warn("redis pub/sub cannot connect; retrying", "node", l.addr, "err", err)
	}
}

// reroute, on a cluster, moves each room of l whose slot another master
// serves, in the slot map the cluster client holds, to that master's link.
// It asks the client to reload the map, which it does in the background:
// a map still stale keeps the rooms on l until a later attempt. It reports whether l should go on:
// false once it holds no rooms, and it is then no longer the link of its
// address.
func (b *RedisBroker) reroute(l *link) bool {
	b.cluster.ReloadState(b.ctx)
	b.mu.RLock()
	channels := b.roomsOf(l)
	b.mu.RUnlock()
	type move struct {
		ch     string
		addr   string
		client redis.UniversalClient
	}
	var moves []move
	for _, ch := range channels {
		addr, client, err := b.nodeOf(b.ctx, ch)
		if err != nil || addr == l.addr {
			continue // stays; the next connection tries again
		}
		moves = append(moves, move{ch, addr, client})
	}
	type resubscribe struct {
		l  *link
		ps *redis.PubSub
		ch string
	}
	var subs []resubscribe
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	for _, m := range moves {
		s := b.subs[m.ch]
		if s == nil || s.link != l {
			continue
		}
		to := b.links[m.addr]
		if to == nil {
			to = b.startLink(m.addr, m.client)
		}
		s.link = to
		if to.ps != nil {
			to.expect[m.ch]++
			subs = append(subs, resubscribe{to, to.ps, m.ch})
		}
	}
	keep := len(b.roomsOf(l)) > 0
	if !keep && b.links[l.addr] == l {
		delete(b.links, l.addr)
	}
	b.mu.Unlock()
	if len(moves) > 0 {
		b.log.Info("redis cluster slots moved; rooms follow them", "from", l.addr, "rooms", len(moves))
	}
	for _, r := range subs {
		if err := b.subscribeOn(b.ctx, r.ps, r.ch); err != nil {
			b.replace(r.l, r.ps, fmt.Errorf("subscribe moved room channel %s: %w", r.ch, err))
		}
	}
	return keep
}

// replace ends ps if it is still l's current connection, so run starts a
// fresh one.
func (b *RedisBroker) replace(l *link, ps *redis.PubSub, why error) {
	b.mu.RLock()
	current := l.ps == ps && !b.closed
	b.mu.RUnlock()
	if current {
		b.log.Warn("replacing redis pub/sub connection", "node", l.addr, "err", why)
		_ = ps.Close()
	}
}

// pinger checks that every pub/sub connection answers, replacing one that
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
		type conn struct {
			l    *link
			ps   *redis.PubSub
			last time.Time
		}
		var conns []conn
		b.mu.RLock()
		for _, l := range b.links {
			if l.ps != nil {
				conns = append(conns, conn{l, l.ps, l.lastPong})
			}
		}
		b.mu.RUnlock()
		for _, c := range conns {
			if silent := time.Since(c.last); silent > b.o.PingInterval+b.o.PongTimeout {
				b.replace(c.l, c.ps, fmt.Errorf("no pong for %v: connection stuck", silent.Round(time.Millisecond)))
				continue
			}
			// No deadline of our own: Ping may first wait for a handshake
			// in progress, and a deadline passing there would fail the
			// write and make go-redis reconnect behind our back. The
			// client's WriteTimeout bounds the write; silence is caught
			// above.
			if err := c.ps.Ping(b.ctx); err != nil && b.ctx.Err() == nil {
				b.replace(c.l, c.ps, fmt.Errorf("ping: %w", err))
			}
		}
	}
}
