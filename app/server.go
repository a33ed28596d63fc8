package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/app/wsread"
	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
	roomstore "github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/webhook"
	"github.com/roomcast/roomcast/rooms/ydoc"
)

// Timing of a connection's life that is not configuration, in one place.
// A socket write that blocks ends the socket after writeTimeout. Once a
// connection is closing, a writer stuck on a peer that does not read has
// closeGrace to get the close frame out before the socket is ended; after
// the close frame the peer has closeWait to answer before the reader stops
// waiting. A silent peer is pinged after ROOMCAST_PING_INTERVAL and dropped
// after 2.5 of them.
const (
	writeTimeout     = 10 * time.Second      // one socket write
	closeGrace       = 5 * time.Second       // a stuck writer, once closing (4008, 4001, 1001)
	closeWait        = 2 * time.Second       // for the peer to answer our close frame
	opTimeout        = 5 * time.Second       // a presence or broker call made for one client
	pingSlots        = 10                    // each ping interval is spread over this many ticks
	readBufferSize   = 512                   // client frames are read through it in pieces; small keeps idle sockets cheap
	replicaWait      = 2 * time.Second       // for a joiner's own join to reach the presence replica
	presenceWindow   = 50 * time.Millisecond // presence frames of a room wait this long to share one write per socket
	devTokenTTL      = 24 * time.Hour
	readyzDeadline   = time.Second
	httpWriteTimeout = time.Minute // an HTTP answer to a client that stopped reading
)

// presenceEvery paces a busy room's presence: after a batch, the room's
// next one waits this long (a frame into a quiet room still waits only
// presenceWindow). Each batch is one write per socket of the room however
// many frames it holds, so a ramp into rooms of 100 (a join into each room
// every 20 ms at 5,000 connects/s) costs ~12 frames per write instead of
// ~3, and a room's presence at most ~4 writes per socket and second.
const presenceEvery = 250 * time.Millisecond

// connTimings carries the close timings above to every connection and its
// transport: the constants are where they are set, this is how they travel.
var connTimings = rooms.CloseTimings{WriteTimeout: writeTimeout, Grace: closeGrace, Wait: closeWait}

// Server is one roomcast instance: its HTTP/WebSocket front and the parts
// behind it.
type Server struct {
	cfg      Config
	log      *slog.Logger
	verifier *auth.Verifier
	devKey   []byte // HS256 secret that /dev/token signs with; nil unless -dev
	redis    redis.UniversalClient
	broker   rooms.Broker
	hub      *rooms.Hub
	store    presence.Store
	// rooms keeps rooms and documents for good (nil: nothing outlives
	// the process, or Redis is the only copy).
	roomStore roomstore.Store
	// saver writes rooms behind Redis to roomStore (postgres with Redis);
	// nil otherwise.
	saver   interface{ SaveSoon(room string) }
	keeper  *presence.Keeper
	replica *presence.Replica // welcomes are built from it
	docs    *ydoc.Engine      // the Yjs documents of the rooms with local Yjs connections
	// jsonViews caches the documents' JSON views (GET …/doc?format=json).
	jsonViews *jsonViews
	versions  *versions         // takes the rooms' versions; nil without a store
	webhooks  *webhook.Webhooks // nil when off
	metrics   *metrics
	app       *fiber.App

	ctx          context.Context // ends when the server has shut down
	cancel       context.CancelFunc
	bg           sync.WaitGroup // keeper and pinger
	draining     atomic.Bool
	readyzLogged atomic.Int64 // unix ns of the last "not ready" log line
	live         gate         // WebSocket handlers
	poller       *poller      // wakes idle sockets' readers (nil: each reads on its own goroutine)
	// evict carries connections dropped as too slow to the evictor, which
	// takes them out of their room and presence at once: their socket may
	// take seconds more to end.
	evict chan *rooms.Conn
	// Size limits: the bytes of large frames all sockets may be reading at
	// once, and who is refused upgrades after a close for size.
	inflight *wsread.Budget
	backoff  *sizeBackoff
}

// newServer builds the parts of an instance from cfg; nothing runs yet.
func newServer(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.InstanceID == "" {
		cfg.InstanceID = uuid.NewString()[:8]
	}
	s := &Server{cfg: cfg, log: log.With("instance", cfg.InstanceID), evict: make(chan *rooms.Conn, 4096)}
	s.inflight = wsread.NewBudget(int64(cfg.MaxInflightBytes))
	s.backoff = newSizeBackoff()
	s.jsonViews = newJSONViews()
	s.ctx, s.cancel = context.WithCancel(context.Background())

	authCfg := auth.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, JWKSURLs: cfg.JWTJWKSURLs, Claims: cfg.JWTClaims,
		JWKS: auth.JWKSOptions{Logger: s.log}}
	switch {
	case cfg.JWTPublicKeyFile != "":
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read ROOMCAST_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		authCfg.PublicKeyPEM = pem
	case cfg.JWTSecret != "":
		authCfg.Secret = []byte(cfg.JWTSecret)
	case len(cfg.JWTJWKSURLs) > 0 && !cfg.Dev:
		// Identity providers' tokens only.
	default: // -dev without a configured key
		authCfg.Secret = randomBytes(32)
	}
	if cfg.Dev && authCfg.Secret != nil {
		s.devKey = authCfg.Secret
	}
	// The key sets are fetched now and kept fresh until the server's
	// context ends.
	v, err := auth.NewVerifier(s.ctx, authCfg)
	if err != nil {
		if cfg.JWTPublicKeyFile != "" {
			return nil, fmt.Errorf("ROOMCAST_JWT_PUBLIC_KEY_FILE %s: %w", cfg.JWTPublicKeyFile, err)
		}
		return nil, fmt.Errorf("token verification: %w", err)
	}
	s.verifier = v

	if err := s.buildBackends(); err != nil {
		return nil, err
	}
	s.replica = presence.NewReplica(s.store, presence.ReplicaOptions{})
	s.metrics = newMetrics(func() int { return len(s.hub.Rooms()) }, s.inflight.Used)
	if s.roomStore != nil {
		s.metrics.watchStore(s.roomStore)
	}
	if err := s.webhooks.Register(s.metrics.reg); err != nil {
		return nil, err
	}
	s.keeper = presence.NewKeeper(s.store, presence.KeeperOptions{
		Interval: cfg.Heartbeat,
		Logger:   s.log,
		OnTick: func(err error) {
			if err != nil {
				s.metrics.heartbeatErr.Inc()
			}
		},
	})
	s.app = s.routes()
	return s, nil
}

// buildBackends picks the broker and presence store: in memory, or Redis
// when ROOMCAST_REDIS_URL is set.
func (s *Server) buildBackends() error {
	popts := presence.Options{TTL: s.cfg.PresenceTTL, LeaveGrace: s.cfg.LeaveGrace}
	hubOpts := rooms.HubOptions{Logger: s.log, OnResync: s.resync, OnGap: s.streamGap,
		OnFork: func(string) { s.metrics.streamForks.Inc() },
		Observe: func(room string, frame []byte) {
			s.replica.Observe(room, frame)
			s.docs.ObservePresence(room, frame)
		},
		Count: func(room string) (int, bool) { return s.replica.Count(room) },
		OnUnsubscribed: func(room string) {
			s.replica.Forget(room)
			s.versions.left(room)
			if s.saver != nil {
				s.saver.SaveSoon(room)
			}
		},
		Coalesce:       presence.IsPresenceFrame,
		CoalesceWindow: presenceWindow,
		CoalesceEvery:  presenceEvery,
	}

	if s.cfg.RedisURL == "" {
		o := s.streamOptions()
		kept, err := s.openStore()
		if err != nil {
			return err
		}
		s.roomStore, o.Store = kept, kept
		if kept != nil {
			s.versions = newVersions(s, kept)
		}
		if err := s.memoryWebhooks(&popts); err != nil {
			return err
		}
		b := rooms.NewMemoryBroker(o)
		s.broker = b
		s.hub = s.newHub(hubOpts)
		s.store = presence.NewMemoryStore(popts, s.hub)
		return nil
	}
	return s.buildRedisBackends(popts, hubOpts)
}

// newHub builds the documents' engine on s.broker and the hub that routes
// their payloads to it.
func (s *Server) newHub(o rooms.HubOptions) *rooms.Hub {
	s.docs = ydoc.New(ydoc.Options{Broker: s.broker, Instance: s.cfg.InstanceID, Logger: s.log, Events: docEvents{s}, OpTimeout: opTimeout})
	o.Docs = s.docs
	return rooms.NewHub(s.broker, o)
}

// docEvents counts what the documents' engine did and tells the rooms'
// versions and the webhooks that a document changed.
type docEvents struct{ s *Server }

func (d docEvents) DocStored(room string, at rooms.Position, bytes int64) {
	d.s.metrics.yjsUpdates.Inc()
	d.s.versions.changed(room, roomstore.VersionDoc)
	d.s.webhooks.DocUpdated(d.s.ctx, room, at.Epoch, at.Seq, bytes)
}
func (d docEvents) DocCompacted(string) { d.s.metrics.yjsCompactions.Inc() }
func (d docEvents) DocGap(string)       { d.s.metrics.yjsGaps.Inc() }

// openStore opens the configured store; nil for memory (or none).
func (s *Server) openStore() (roomstore.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kind, where := s.cfg.storeKind()
	switch kind {
	case "sqlite":
		st, err := roomstore.OpenSQLite(ctx, where, roomstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("open the store ROOMCAST_STORE=sqlite:%s: %w", where, err)
		}
		s.log.Info("rooms and documents are kept in SQLite", "path", where)
		return st, nil
	case "postgres":
		st, err := roomstore.OpenPostgres(ctx, where, roomstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("open the store ROOMCAST_STORE=postgres: %w", err)
		}
		s.log.Info("rooms and documents are kept in PostgreSQL")
		return st, nil
	}
	s.log.Warn("ROOMCAST_STORE=memory: rooms and documents are lost when the process ends")
	return nil, nil
}

func (s *Server) streamOptions() rooms.StreamOptions {
	return rooms.StreamOptions{HistorySize: s.cfg.HistorySize, HistoryTTL: s.cfg.HistoryTTL, DocTTL: s.cfg.DocTTL, MaxDocBytes: int64(s.cfg.MaxDocBytes)}
}

// roomSaved counts a room written behind Redis to the store.
func (s *Server) roomSaved(room string, err error) {
	if err != nil {
		s.metrics.storeSaves.WithLabelValues("error").Inc()
		return
	}
	s.metrics.storeSaves.WithLabelValues("ok").Inc()
}

// roomLoaded counts a room loaded back from the store into Redis, by the
// parts this instance wrote.
func (s *Server) roomLoaded(room string, stream, doc bool) {
	if stream {
		s.metrics.storeLoads.WithLabelValues("stream").Inc()
	}
	if doc {
		s.metrics.storeLoads.WithLabelValues("doc").Inc()
	}
}

// streamGap counts a gap in a room's stored messages.
func (s *Server) streamGap(room string, missing uint64, filled bool) {
	outcome := "filled"
	if !filled {
		outcome = "lost"
	}
	s.metrics.streamGaps.WithLabelValues(outcome).Inc()
	s.log.Info("gap in stored messages", "room", room, "missing", missing, "outcome", outcome)
}

// resync answers a broker gap, once the hub has set the rooms' workers to
// fill in their stored messages and documents. It runs on the broker's
// delivery goroutine of the rooms, before any later payload: first re-assert this instance's
// sessions (Redis may have restarted empty), then send each room's local
// clients the member list, so no older snapshot can overtake a newer event.
func (s *Server) resync(roomNames []string) {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	s.keeper.Tick(ctx)
	cancel()
	// Each room gets its own deadline: with many rooms one shared deadline
	// would run out part way and leave the rest without their sync.
	for _, name := range roomNames {
		ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
		frame, err := s.syncFrameOf(ctx, name)
		cancel()
		if err != nil {
			// The replica missed the gap's frames and cannot be
			// corrected now: the next joiner loads it afresh.
			s.replica.Forget(name)
			s.log.Warn("resync", "room", name, "err", err)
			continue
		}
		s.hub.Broadcast(name, "", frame)
	}
}

// syncFrameOf reads the room's members and encodes its sync frame; the
// presence replica takes the fresh list too.
func (s *Server) syncFrameOf(ctx context.Context, room string) ([]byte, error) {
	members, err := s.store.Members(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	s.replica.Reset(room, members)
	return encode(syncFrame{Type: "sync", Room: room, Members: nonNil(members)}), nil
}

// Run serves on ln until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	startCtx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	err := s.broker.Start(startCtx, s.hub)
	cancel()
	if err != nil {
		s.stop()
		return fmt.Errorf("start broker: %w", err)
	}
	if p, err := newPoller(); err != nil {
		s.log.Warn("no socket poller: every socket reads on a goroutine of its own", "err", err)
	} else {
		s.poller = p
		s.bg.Add(1)
		go func() { defer s.bg.Done(); p.run() }()
	}
	s.bg.Add(5)
	go func() { defer s.bg.Done(); s.webhooks.Run(s.ctx) }()
	go func() { defer s.bg.Done(); s.keeper.Run(s.ctx) }()
	go func() { defer s.bg.Done(); s.docs.Run(s.ctx) }()
	go func() { defer s.bg.Done(); s.pingLoop(s.ctx) }()
	go func() { defer s.bg.Done(); s.evictor(s.ctx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.app.Listener(ln) }()
	s.log.Info("roomcast listening", append([]any{"listen", ln.Addr().String()}, s.cfg.logAttrs()...)...)

	select {
	case err := <-serveErr:
		s.stop()
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	return s.Shutdown()
}

// Shutdown drains the instance: /readyz and new upgrades answer 503, every
// socket is closed with 1001 so clients reconnect elsewhere, this
// instance's presence is removed, and the listener stops.
func (s *Server) Shutdown() error {
	start := time.Now()
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	// A handler that joins from now on sees draining and closes itself
	// (see join), so this snapshot misses no connection.
	conns := s.hub.Conns("")
	for _, c := range conns {
		c.Close(rooms.CloseGoingAway, "server shutting down")
	}
	// Peers get a moment to answer the close; a socket stuck behind a peer
	// that stopped reading is then ended, so its handler leaves presence
	// while there is still time.
	waitCtx, waitCancel := context.WithTimeout(ctx, 2*closeWait)
	err := s.live.closeAndWait(waitCtx)
	waitCancel()
	if err != nil {
		for _, c := range s.hub.Conns("") {
			c.Abort()
		}
		if err := s.live.closeAndWait(ctx); err != nil {
			s.log.Warn("shutdown: connections still open", "err", err)
		}
	}
	leaveCtx, leaveCancel := context.WithTimeout(context.Background(), opTimeout)
	if err := s.keeper.LeaveAll(leaveCtx); err != nil {
		s.log.Warn("shutdown: remove presence", "err", err)
	}
	leaveCancel()
	err = s.app.ShutdownWithContext(ctx)
	s.stop()
	s.log.Info("roomcast stopped", "closed_conns", len(conns), "took", time.Since(start).Round(time.Millisecond).String())
	if err != nil {
		return fmt.Errorf("shutdown http: %w", err)
	}
	return nil
}

// stop ends the background goroutines and the backends.
func (s *Server) stop() {
	s.cancel()
	if s.poller != nil {
		// Shutdown has ended the sockets; one still parked (its wait
		// timed out) is ended with the process.
		s.poller.close()
	}
	s.bg.Wait()
	s.docs.Close()
	// Versions are taken from the broker and written to the store: both
	// stay open until the last one is written.
	s.versions.wait()
	// The rooms' workers read from the broker.
	s.hub.Close()
	if err := s.broker.Close(); err != nil {
		s.log.Warn("close broker", "err", err)
	}
	if s.roomStore != nil {
		// What was handed to the store's writer is committed first.
		if err := s.roomStore.Close(); err != nil {
			s.log.Warn("close the store", "err", err)
		}
	}
	if s.redis != nil {
		_ = s.redis.Close()
	}
}

// pingLoop pings each connection from which nothing arrived for a ping
// interval, and aborts those from which nothing, not even a pong, arrived
// for two and a half: a peer that vanished without a FIN. The pings of an
// interval are spread over pingSlots ticks by connection id, so 10,000
// sockets are not all pinged (and all answer) in the same instant.
func (s *Server) pingLoop(ctx context.Context) {
	interval := s.cfg.PingInterval
	idleLimit := int64(interval * 5 / 2)
	t := time.NewTicker(interval / pingSlots)
	defer t.Stop()
	for tick := uint64(0); ; tick++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			slot := tick % pingSlots
			for _, c := range s.hub.Conns("") {
				idle := now.UnixNano() - c.LastRead()
				switch {
				case idle > idleLimit:
					// A close frame would wait behind unacknowledged data.
					c.Abort()
				case idle > int64(interval) && maphash.String(pingSeed, c.ID)%pingSlots == slot:
					c.SendControl(opPing, nil)
				}
			}
		}
	}
}

var pingSeed = maphash.MakeSeed()

// slowDropped is the OnSlow of every connection: it never blocks the
// delivery that found the queue full.
func (s *Server) slowDropped(c *rooms.Conn) {
	s.metrics.slowDropped.Inc()
	select {
	case s.evict <- c:
	default:
		s.logConn(slog.LevelWarn, c, "evict queue full: the slow connection leaves when its socket ends")
	}
}

// evictor takes connections dropped as too slow out of their room and
// presence as soon as the decision is made, so no sidebar shows them for
// the seconds their socket may take to end. Their handler's own leave
// later finds nothing to do.
func (s *Server) evictor(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-s.evict:
			opCtx, cancel := context.WithTimeout(ctx, opTimeout)
			s.hub.Remove(opCtx, c)
			if err := s.keeper.Leave(opCtx, c.Room, c.ID); err != nil {
				s.logConn(slog.LevelWarn, c, "evict slow connection from presence", "err", err)
			}
			cancel()
		}
	}
}

// ready reports why the instance cannot take connections, or nil.
// ready reports whether the instance can serve: part names what is not
// ready in general terms (for anyone to read), err says why (for the log).
func (s *Server) ready(ctx context.Context) (part string, err error) {
	if s.draining.Load() {
		return "draining", errors.New("draining")
	}
	if s.redis != nil {
		if err := s.redis.Ping(ctx).Err(); err != nil {
			return "redis", fmt.Errorf("redis: %w", err)
		}
	}
	if err := s.broker.Ready(ctx); err != nil {
		return "pubsub", fmt.Errorf("broker: %w", err)
	}
	if s.roomStore != nil {
		if err := s.roomStore.Ping(ctx); err != nil {
			return "store", fmt.Errorf("store: %w", err)
		}
	}
	return "", nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return b
}

func randomKey() string { return hex.EncodeToString(randomBytes(24)) }

// gate counts running WebSocket handlers and, once closed, admits no more.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.zero != nil {
		close(g.zero)
		g.zero = nil
	}
}

func (g *gate) closeAndWait(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.zero == nil {
		g.zero = make(chan struct{})
	}
	zero := g.zero
	g.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
