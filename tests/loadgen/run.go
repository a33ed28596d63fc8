package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/auth"
)

// Result is everything a run measured. Exactly one scenario section is set.
type Result struct {
	Scenario    string            `json:"scenario"`
	Addrs       []string          `json:"addrs"`
	Started     time.Time         `json:"started"`
	Elapsed     float64           `json:"elapsed_s"`
	Fanout      *FanoutResult     `json:"fanout,omitempty"`
	Connections *ConnsResult      `json:"connections,omitempty"`
	Presence    *PresenceResult   `json:"presence,omitempty"`
	Slow        *SlowResult       `json:"slow,omitempty"`
	Closes      map[string]int    `json:"unexpected_closes,omitempty"` // close code (or "eof") → count
	Warnings    []string          `json:"warnings,omitempty"`
	Params      map[string]string `json:"params"`
}

// run executes cfg's scenario. The returned Result is filled as far as the
// run got, also when err is set.
func run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &runner{cfg: cfg, id: runID(), closes: map[string]int{}}
	if cfg.Scenario == "fanout" || cfg.Scenario == "slow" {
		if err := r.checkPubRate(r.fanoutSteps(), max(cfg.Pubs, cfg.Rooms)); err != nil {
			return nil, err
		}
	}
	r.res = &Result{Scenario: cfg.Scenario, Addrs: cfg.Addrs, Started: time.Now(), Params: cfg.params()}
	r.raiseFDLimit()
	for i, a := range cfg.Addrs {
		pid := 0
		if len(cfg.Pids) > 0 {
			pid = cfg.Pids[i]
		}
		r.cpu = append(r.cpu, cpuSource{addr: a, pid: pid})
	}
	// Every instance must answer /metrics before anything is opened.
	for _, a := range cfg.Addrs {
		s, err := scrape(ctx, a)
		if err != nil {
			return r.res, fmt.Errorf("instance %s: %v (is roomcast running there?)", a, err)
		}
		r.checkServerFDs(a, s)
	}
	if !cfg.GoReaders {
		if pl, err := newPollers(); err == nil {
			r.pl = pl
			defer pl.stop()
		} else {
			r.warn("no epoll (%v): one reader goroutine per connection", err)
		}
	}
	if cfg.Redis != "" {
		opt, err := redisOptions(cfg.Redis)
		if err != nil {
			return nil, err
		}
		r.rdb = redis.NewClient(opt)
		defer r.rdb.Close()
		if err := r.rdb.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("-redis %s: %v", cfg.Redis, err)
		}
	}
	stop := r.startProgress()
	var err error
	switch cfg.Scenario {
	case "fanout":
		err = r.fanout(ctx)
	case "connections":
		err = r.connections(ctx)
	case "presence":
		err = r.presence(ctx)
	case "slow":
		err = r.slow(ctx)
	}
	stop()
	r.closeAll()
	r.mu.Lock()
	if len(r.closes) > 0 {
		r.res.Closes = r.closes
	}
	r.mu.Unlock()
	r.res.Elapsed = time.Since(r.res.Started).Seconds()
	if err == nil && r.st.rateLimited.Load() > 0 {
		err = r.rateLimitedError()
	}
	return r.res, err
}

// runner is the state shared by the scenarios.
type runner struct {
	cfg Config
	id  string // prefixes rooms and users so runs never meet
	res *Result
	cpu []cpuSource
	st  stats

	mu      sync.Mutex
	conns   []*wsConn
	closes  map[string]int
	readers sync.WaitGroup
	// closingNow is set once the run closes its connections on purpose.
	closingNow atomic.Bool
	pl         *pollers
	rdb        *redis.Client // -redis: commands and CPU of the shared Redis
}

func (r *runner) startCPU(ctx context.Context) *cpuWindow {
	return startCPU(ctx, r.cpu, r.rdb)
}

// stats are the live counters behind the progress line.
type stats struct {
	phase       atomic.Pointer[string]
	target      atomic.Int64   // connections wanted
	open        atomic.Int64   // connections open
	sent        atomic.Int64   // frames published
	delivered   shardedCounter // messages received by subscribers
	received    shardedCounter // every message frame received (subscribers and publishers)
	rateLimited atomic.Int64
	serverErrs  atomic.Int64 // error frames other than rate_limited
	hist        atomic.Pointer[hist]
	lastErr     atomic.Pointer[string]
}

func (s *stats) setPhase(p string) { s.phase.Store(&p) }

// shardedCounter is a counter written by thousands of reader goroutines:
// each adds to its own cache line, so two cores never fight over one.
type shardedCounter struct {
	s [64]struct {
		v atomic.Int64
		_ [56]byte
	}
}

func (c *shardedCounter) add(shard int) { c.s[shard&63].v.Add(1) }

func (c *shardedCounter) load() int64 {
	var n int64
	for i := range c.s {
		n += c.s[i].v.Load()
	}
	return n
}

func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "lg" + hex.EncodeToString(b[:])
}

func (c Config) params() map[string]string {
	p := map[string]string{"duration": c.Duration.String(), "concurrency": fmt.Sprint(c.Concurrency)}
	switch c.Scenario {
	case "fanout", "slow":
		p["rooms"], p["subs"], p["pubs"], p["size"] = fmt.Sprint(c.Rooms), fmt.Sprint(c.Subs), fmt.Sprint(c.Pubs), fmt.Sprint(c.Size)
		p["pub_addrs"], p["sub_addrs"] = strings.Join(c.PubAddrs, ","), strings.Join(c.SubAddrs, ",")
		p["server_rate"] = fmt.Sprint(c.ServerRate)
	case "connections":
		p["conns"], p["rooms"], p["settle"] = fmt.Sprint(c.Conns), fmt.Sprint(c.Rooms), c.Settle.String()
	case "presence":
		p["users"], p["observers"], p["ramp"] = fmt.Sprint(c.Users), fmt.Sprint(c.Observers), c.Ramp.String()
		p["presence_mode"] = "full"
		if c.PresenceMode == "count" {
			p["presence_mode"] = "count"
		}
	}
	return p
}

func (r *runner) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.mu.Lock()
	r.res.Warnings = append(r.res.Warnings, msg)
	r.mu.Unlock()
	if r.cfg.Progress != nil {
		fmt.Fprintln(r.cfg.Progress, "loadgen: warning:", msg)
	}
}

func (r *runner) rateLimitedError() error {
	return fmt.Errorf("the server dropped %d published frames with rate_limited: each publisher connection sent more than "+
		"ROOMCAST_RATE allows (the tool assumed -server-rate %d). Start the server with a higher ROOMCAST_RATE "+
		"(e.g. ROOMCAST_RATE=1000) and pass the same value as -server-rate, or spread the rate over more publishers with -pubs",
		r.st.rateLimited.Load(), r.cfg.ServerRate)
}

// raiseFDLimit lifts RLIMIT_NOFILE to the hard limit; 10,000 sockets need it.
func (r *runner) raiseFDLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	need := uint64(r.cfg.connsWanted() + 64)
	if lim.Cur < need {
		r.warn("this tool may open %d sockets but its open-file limit is %d (hard %d): raise it with `ulimit -n %d` (as root if the hard limit is lower)",
			need, lim.Cur, lim.Max, need)
	}
}

// checkServerFDs warns when an instance cannot hold its share of sockets.
func (r *runner) checkServerFDs(addr string, s promSample) {
	max, ok := s["process_max_fds"]
	if !ok {
		return
	}
	open := s["process_open_fds"]
	need := float64(r.cfg.connsWanted()) / float64(len(r.cfg.Addrs))
	if r.cfg.Scenario == "fanout" || r.cfg.Scenario == "slow" {
		need = float64(r.cfg.connsWanted())
	}
	if open+need+32 > max {
		r.warn("instance %s has an open-file limit of %.0f with %.0f open, and this run may put %.0f connections on it: "+
			"start it with a higher limit (`ulimit -n 65536` in its shell) or connections will be refused", addr, max, open, need)
	}
}

func (c Config) connsWanted() int {
	switch c.Scenario {
	case "fanout", "slow":
		return c.Rooms*c.Subs + max(c.Pubs, c.Rooms) + 1
	case "connections":
		return c.Conns
	case "presence":
		return c.Users + c.Observers
	}
	return 0
}

func (r *runner) token(sub string) (string, error) {
	ttl := r.cfg.Timeout + time.Hour
	return auth.MintHS256([]byte(r.cfg.Secret), auth.MintOptions{Subject: sub, Name: sub, TTL: ttl})
}

// dial opens one connection and reads its welcome frame, which handle gets
// (the payload is only valid during the call).
func (r *runner) dial(ctx context.Context, addr, room, user string, o dialOptions, welcome func([]byte)) (*wsConn, error) {
	tok, err := r.token(user)
	if err != nil {
		return nil, err
	}
	return r.dialToken(ctx, addr, room, tok, o, welcome)
}

func (r *runner) dialToken(ctx context.Context, addr, room, tok string, o dialOptions, welcome func([]byte)) (*wsConn, error) {
	c, err := dialWS(ctx, addr, room, tok, o)
	if err != nil {
		var ue *upgradeError
		if errors.As(err, &ue) && ue.Status == 401 {
			return nil, fmt.Errorf("%s: %w (is -secret the instance's ROOMCAST_JWT_SECRET?)", addr, err)
		}
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, p, err := c.next()
	if err != nil {
		c.abort()
		if errors.Is(err, errClosed) {
			return nil, fmt.Errorf("%s: closed with %d %s before the welcome", addr, c.CloseCode, c.CloseReason)
		}
		return nil, fmt.Errorf("%s: read welcome: %w", addr, err)
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if !hasType(p, "welcome") {
		c.abort()
		return nil, fmt.Errorf("%s: first frame is not a welcome: %.200s", addr, p)
	}
	if welcome != nil {
		welcome(p)
	}
	if cap(c.big) > 8<<10 {
		c.big = nil // a big welcome; do not keep its buffer per connection
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	r.st.open.Add(1)
	return c, nil
}

// readLoop reads c until it ends, handing every data frame to handle, and
// records how it ended unless the run closed it. The connection moves to a
// poller (no goroutine of its own); a goroutine reads it if that fails.
func (r *runner) readLoop(c *wsConn, handle func(p []byte)) {
	r.readers.Add(1)
	end := func(err error) {
		r.noteEnd(c, err)
		r.st.open.Add(-1)
		r.readers.Done()
	}
	if r.pl != nil {
		if err := r.pl.add(c, handle, end); err == nil {
			return
		}
	}
	go func() {
		for {
			_, p, err := c.next()
			if err != nil {
				end(err)
				return
			}
			handle(p)
		}
	}()
}

func (r *runner) noteEnd(c *wsConn, err error) {
	if r.closingNow.Load() || c.closing.Load() {
		return
	}
	key := "eof"
	if errors.Is(err, errClosed) {
		key = fmt.Sprintf("%d", c.CloseCode)
		if c.CloseReason != "" {
			key += " " + c.CloseReason
		}
	} else if !errors.Is(err, io.EOF) {
		key = "error: " + err.Error()
		if i := strings.Index(key, "->"); i > 0 { // drop the per-socket addresses
			key = "error: " + key[i+len("->"):]
		}
	}
	r.mu.Lock()
	r.closes[key]++
	r.mu.Unlock()
}

// closeAll ends every connection (abortively: a graceful close of 10,000
// sockets only measures the server's leave handling) and waits for readers.
func (r *runner) closeAll() {
	r.closingNow.Store(true)
	r.mu.Lock()
	cs := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range cs {
		c.abort()
	}
	r.readers.Wait()
}

// dialAll runs n dials with the configured concurrency and stops at the
// first error.
func (r *runner) dialAll(ctx context.Context, n int, dial func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := 0; w < min(r.cfg.Concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := dial(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return dialHint(first)
}

// dialHint explains the usual causes of failed dials in bulk.
func dialHint(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "too many open files"):
		return fmt.Errorf("%w (the tool's open-file limit: run `ulimit -n 65536` first)", err)
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "EOF"), strings.Contains(msg, "connection refused"):
		return fmt.Errorf("%w (a server at its open-file limit or accept backlog refuses connections: start it after `ulimit -n 65536`; "+
			"check process_max_fds on its /metrics and net.core.somaxconn)", err)
	case strings.Contains(msg, "cannot assign requested address"):
		return fmt.Errorf("%w (out of ephemeral ports: widen net.ipv4.ip_local_port_range or use several 127.x addresses)", err)
	}
	return err
}

// hasType reports whether frame p is {"type":"<typ>",...}.
func hasType(p []byte, typ string) bool {
	const pre = `{"type":"`
	return len(p) > len(pre)+len(typ) && string(p[:len(pre)]) == pre &&
		string(p[len(pre):len(pre)+len(typ)]) == typ && p[len(pre)+len(typ)] == '"'
}

// errorCode extracts the code of an error frame.
func errorCode(p []byte) string {
	const k = `"code":"`
	i := bytes.Index(p, []byte(k))
	if i < 0 {
		return ""
	}
	rest := p[i+len(k):]
	for j, b := range rest {
		if b == '"' {
			return string(rest[:j])
		}
	}
	return ""
}

// countErrorFrame records an error frame from the server.
func (r *runner) countErrorFrame(p []byte) {
	code := errorCode(p)
	if code == "rate_limited" {
		if r.st.rateLimited.Add(1) == 1 && r.cfg.Progress != nil {
			fmt.Fprintln(r.cfg.Progress, "loadgen: error: the server answers rate_limited:", r.rateLimitedError())
		}
		return
	}
	r.st.serverErrs.Add(1)
	s := string(p)
	r.st.lastErr.Store(&s)
}

// sortedCloses renders the close tally.
func sortedCloses(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, m[k])
	}
	return b.String()
}
