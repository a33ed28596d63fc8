package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// PresenceResult is the presence storm's figures.
type PresenceResult struct {
	Users     int `json:"users"`
	Observers int `json:"observers"`
	Instances int `json:"instances"`
	// UserMode is the storm users' presence mode: "full", or "count"
	// (presence=count: a member count instead of the list). Observers are
	// always full.
	UserMode string `json:"user_presence_mode"`

	JoinRampS     float64    `json:"join_ramp_s"`            // first dial → last welcome
	JoinLatency   latencies  `json:"join_latency"`           // each user's dial → welcome
	JoinConverge  float64    `json:"join_converge_s"`        // last welcome → every full-mode client holds everyone
	NotConverged  int        `json:"not_converged_clients"`  // clients still wrong at the deadline (count mode included)
	JoinCPU       cpuFigures `json:"join_cpu"`               // first dial → converged
	ServerUSJoin  float64    `json:"server_cpu_us_per_join"` // JoinCPU / users
	LeaveRampS    float64    `json:"leave_ramp_s"`           // first close → last close
	LeaveConverge float64    `json:"leave_converge_s"`       // last close → every observer holds no user
	LeaveCPU      cpuFigures `json:"leave_cpu"`
	ServerUSLeave float64    `json:"server_cpu_us_per_leave"`

	// Count mode: last welcome → every count-mode user's count is every
	// member (users that joined + observers); CountNotConverged of them
	// were not by the deadline (also in NotConverged). CountModeFrames are
	// presence frames they got that count mode should spare them (join,
	// leave, update, sync, a welcome without a count): 0.
	CountConverge     float64 `json:"count_converge_s,omitempty"`
	CountNotConverged int     `json:"count_not_converged,omitempty"`
	CountModeFrames   int64   `json:"count_mode_presence_frames,omitempty"`

	// ObserverWelcomeS is each observer's dial → welcome (they join first,
	// into a room without the storm's users).
	ObserverWelcomeS []float64 `json:"observer_welcome_s,omitempty"`

	RedisJoinCmds  int64            `json:"redis_cmds_join,omitempty"`
	RedisLeaveCmds int64            `json:"redis_cmds_leave,omitempty"`
	RedisPerJoin   float64          `json:"redis_cmds_per_join,omitempty"`
	RedisPerLeave  float64          `json:"redis_cmds_per_leave,omitempty"`
	RedisJoinBy    map[string]int64 `json:"redis_join_by_command,omitempty"`
	RedisLeaveBy   map[string]int64 `json:"redis_leave_by_command,omitempty"`

	// Exactly one join and one leave per user, as every observer saw them.
	ObserverJoins  []int    `json:"observer_joins"`
	ObserverLeaves []int    `json:"observer_leaves"`
	CountsExact    bool     `json:"counts_exact"`
	Violations     []string `json:"violations,omitempty"`
	// Joins for a member a client already held (allowed: a race with its
	// welcome snapshot) and sync frames seen.
	RepeatJoins int64 `json:"repeat_joins"`
	// Users whose connection failed before its welcome (the storm goes on
	// without them; observers still owe them one join and one leave).
	FailedJoins  int            `json:"failed_joins"`
	ObserverEnds []string       `json:"observer_ends,omitempty"`
	FailReasons  map[string]int `json:"fail_reasons,omitempty"`
	Syncs        int64          `json:"syncs"`
	Unknown      int64          `json:"unknown_members"`
}

// model is one client's member list, as a bitset over this run's users
// (0..N-1) and observers (N..N+O-1); for a count-mode client, the latest
// member count instead.
type model struct {
	bits     []uint64
	users    int // storm users held
	obs      int // observers held
	observer bool
	counted  bool // presence=count: count is the model
	count    int
	joins    []uint8 // observer: join frames per user
	leaves   []uint8 // observer: leave frames per user
	fullAt   atomic.Int64
	emptyAt  atomic.Int64
}

type storm struct {
	r      *runner
	n, o   int
	prefix string // "<run>-"
	repeat atomic.Int64
	syncs  atomic.Int64
	unk    atomic.Int64
	// leaving is set when the leave storm starts.
	leaving atomic.Bool
	// want is how many storm users a complete list holds: n less the
	// users whose join failed.
	want atomic.Int64
	// countFrames are presence frames count-mode clients should not get.
	countFrames atomic.Int64
}

// index parses "<run>-u12" → 12 and "<run>-o1" → n+1.
func (s *storm) index(id []byte) int {
	if len(id) < len(s.prefix)+2 || string(id[:len(s.prefix)]) != s.prefix {
		return -1
	}
	v, rest, ok := parseInt(id[len(s.prefix)+1:])
	if !ok || len(rest) != 0 {
		return -1
	}
	switch id[len(s.prefix)] {
	case 'u':
		if v < int64(s.n) {
			return int(v)
		}
	case 'o':
		if v < int64(s.o) {
			return s.n + int(v)
		}
	}
	return -1
}

func (s *storm) add(m *model, i int, join bool) {
	if i < 0 {
		s.unk.Add(1)
		return
	}
	if join && m.observer && i < s.n && m.joins[i] < 255 {
		m.joins[i]++
	}
	w, b := i/64, uint64(1)<<(i%64)
	if m.bits[w]&b != 0 {
		if join {
			s.repeat.Add(1)
		}
		return
	}
	m.bits[w] |= b
	if i < s.n {
		m.users++
	} else {
		m.obs++
	}
	s.check(m)
}

func (s *storm) remove(m *model, i int) {
	if i < 0 {
		s.unk.Add(1)
		return
	}
	if m.observer && i < s.n && m.leaves[i] < 255 {
		m.leaves[i]++
	}
	w, b := i/64, uint64(1)<<(i%64)
	if m.bits[w]&b == 0 {
		return
	}
	m.bits[w] &^= b
	if i < s.n {
		m.users--
	} else {
		m.obs--
	}
	s.check(m)
}

func (s *storm) reset(m *model) {
	clear(m.bits)
	m.users, m.obs = 0, 0
}

// check records when the model became complete (everyone; 0 while it is
// not) and, in the leave phase, when it held no storm user any more.
func (s *storm) check(m *model) {
	now := time.Now().UnixNano()
	if m.counted {
		// Right when the count is every member; nothing is asked of it in
		// the leave phase (the count-mode clients are the ones leaving).
		if m.count == int(s.want.Load())+s.o {
			if m.fullAt.Load() == 0 {
				m.fullAt.Store(now)
			}
		} else if m.fullAt.Load() != 0 {
			m.fullAt.Store(0)
		}
		return
	}
	if m.users == int(s.want.Load()) && m.obs == s.o {
		if m.fullAt.Load() == 0 {
			m.fullAt.Store(now)
		}
	} else if m.fullAt.Load() != 0 {
		m.fullAt.Store(0)
	}
	if !s.leaving.Load() {
		return
	}
	if m.users == 0 {
		if m.emptyAt.Load() == 0 {
			m.emptyAt.Store(now)
		}
	} else if m.emptyAt.Load() != 0 {
		m.emptyAt.Store(0)
	}
}

// apply updates m from one server frame.
func (s *storm) apply(m *model, p []byte) {
	if m.counted {
		s.applyCount(m, p)
		return
	}
	switch {
	case hasType(p, "join"), hasType(p, "update"):
		s.add(m, s.index(memberID(p)), hasType(p, "join"))
	case hasType(p, "leave"):
		s.remove(m, s.index(memberID(p)))
	case hasType(p, "welcome"), hasType(p, "sync"):
		if hasType(p, "sync") {
			s.syncs.Add(1)
		}
		s.reset(m)
		eachMember(p, func(id []byte) { s.add(m, s.index(id), false) })
		s.check(m)
	case hasType(p, "error"):
		s.r.countErrorFrame(p)
	}
}

// applyCount updates a count-mode client's model: its welcome and count
// frames carry the member count.
func (s *storm) applyCount(m *model, p []byte) {
	switch {
	case hasType(p, "welcome"), hasType(p, "count"):
		n, ok := countField(p)
		if !ok {
			s.countFrames.Add(1) // a full welcome
			return
		}
		m.count = n
		s.check(m)
	case hasType(p, "join"), hasType(p, "leave"), hasType(p, "update"), hasType(p, "sync"):
		s.countFrames.Add(1)
	case hasType(p, "error"):
		s.r.countErrorFrame(p)
	}
}

// countField is the "count" of a count frame or a count-mode welcome (the
// only key of that name in either: a member has "conns").
func countField(p []byte) (int, bool) {
	const k = `"count":`
	i := bytes.Index(p, []byte(k))
	if i < 0 {
		return 0, false
	}
	v, _, ok := parseInt(p[i+len(k):])
	return int(v), ok
}

// memberID is member.id of a join/leave/update frame.
func memberID(p []byte) []byte {
	const k = `"member":{"id":"`
	i := bytes.Index(p, []byte(k))
	if i < 0 {
		return nil
	}
	return quoted(p[i+len(k):])
}

func quoted(b []byte) []byte {
	for j, c := range b {
		if c == '"' {
			return b[:j]
		}
	}
	return nil
}

// eachMember calls fn with every id of a welcome's or sync's members list.
// Members are {"id":…} objects whose meta this run left empty.
func eachMember(p []byte, fn func(id []byte)) {
	const list, k = `"members":[`, `{"id":"`
	i := bytes.Index(p, []byte(list))
	if i < 0 {
		return
	}
	rest := p[i+len(list):]
	for {
		j := bytes.Index(rest, []byte(k))
		if j < 0 {
			return
		}
		rest = rest[j+len(k):]
		id := quoted(rest)
		fn(id)
		rest = rest[len(id):]
	}
}

func (r *runner) presence(ctx context.Context) error {
	c := r.cfg
	countMode := c.PresenceMode == "count"
	res := &PresenceResult{Users: c.Users, Observers: c.Observers, Instances: len(c.Addrs), UserMode: "full"}
	if countMode {
		res.UserMode = "count"
	}
	r.res.Presence = res
	s := &storm{r: r, n: c.Users, o: c.Observers, prefix: r.id + "-"}
	s.want.Store(int64(c.Users))
	room := r.id + "-storm"
	words := (c.Users + c.Observers + 63) / 64
	newModel := func(observer bool) *model {
		m := &model{bits: make([]uint64, words), observer: observer}
		if observer {
			m.joins, m.leaves = make([]uint8, c.Users), make([]uint8, c.Users)
		}
		return m
	}
	// The storm's users join in c.PresenceMode; observers always in full
	// mode, to count every join and leave.
	userQuery := presenceQuery(c.PresenceMode)
	newUser := func() *model {
		if countMode {
			return &model{counted: true, count: -1}
		}
		return newModel(false)
	}
	rdb := r.rdb
	r.st.target.Store(int64(c.Users + c.Observers))

	// Observers join first and stay to the end.
	r.st.setPhase("observers")
	observers := make([]*model, c.Observers)
	obsConns := make([]*wsConn, c.Observers)
	for j := range observers {
		m := newModel(true)
		observers[j] = m
		t0 := time.Now()
		conn, err := r.dial(ctx, c.Addrs[j%len(c.Addrs)], room, fmt.Sprintf("%so%d", s.prefix, j), dialOptions{},
			func(p []byte) { s.apply(m, p) })
		if err != nil {
			return err
		}
		res.ObserverWelcomeS = append(res.ObserverWelcomeS, time.Since(t0).Seconds())
		obsConns[j] = conn
		r.readLoop(conn, func(p []byte) { s.apply(m, p) })
	}
	tokens := make([]string, c.Users)
	for i := range tokens {
		t, err := r.token(fmt.Sprintf("%su%d", s.prefix, i))
		if err != nil {
			return err
		}
		tokens[i] = t
	}

	// Join storm.
	r.st.setPhase("join storm")
	cmds0, err := redisCalls(ctx, rdb)
	if err != nil {
		return err
	}
	users := make([]*model, c.Users)
	conns := make([]*wsConn, c.Users)
	var lastWelcome atomic.Int64
	var failMu sync.Mutex
	lat := newHist()
	cpu := r.startCPU(ctx)
	start := time.Now()
	err = r.scheduled(ctx, c.Users, c.Ramp, func(ctx context.Context, i int) error {
		m := newUser()
		users[i] = m
		t0 := time.Now()
		conn, err := r.dialToken(ctx, c.Addrs[i%len(c.Addrs)], room, tokens[i], dialOptions{Query: userQuery},
			func(p []byte) {
				now := time.Now()
				lat.record(now.Sub(t0))
				storeMax(&lastWelcome, now.UnixNano())
				s.apply(m, p)
			})
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// A failed join is a finding, not the end of the storm.
			s.want.Add(-1)
			users[i] = nil
			msg := err.Error()
			if j := strings.Index(msg, ": "); j > 0 {
				msg = msg[j+2:] // drop the address
			}
			failMu.Lock()
			if res.FailReasons == nil {
				res.FailReasons = map[string]int{}
			}
			res.FailedJoins++
			res.FailReasons[msg]++
			failMu.Unlock()
			return nil
		}
		conns[i] = conn
		r.readLoop(conn, func(p []byte) { s.apply(m, p) })
		return nil
	})
	if err != nil {
		return err
	}
	res.JoinRampS = time.Duration(lastWelcome.Load() - start.UnixNano()).Seconds()
	res.JoinLatency = lat.summary()
	r.st.setPhase("join converging")
	if res.FailedJoins > 0 {
		r.warn("%d of %d users failed to join: %s", res.FailedJoins, c.Users, sortedCloses(res.FailReasons))
	}
	all := append([]*model{}, observers...)
	for _, m := range users {
		if m != nil {
			all = append(all, m)
		}
	}
	deadline := time.Unix(0, lastWelcome.Load()).Add(c.Duration)
	for ctx.Err() == nil && time.Now().Before(deadline) && countNot(all, func(m *model) bool { return m.fullAt.Load() > 0 }) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	res.JoinCPU = cpu.stop(ctx)
	res.ServerUSJoin = res.JoinCPU.ServerS * 1e6 / float64(c.Users)
	res.NotConverged = countNot(all, func(m *model) bool { return m.fullAt.Load() > 0 })
	var lastFull, lastCount int64
	var counted []*model
	for _, m := range all {
		if m.counted {
			counted = append(counted, m)
			lastCount = max(lastCount, m.fullAt.Load())
		} else {
			lastFull = max(lastFull, m.fullAt.Load())
		}
	}
	res.JoinConverge = time.Duration(lastFull - lastWelcome.Load()).Seconds()
	if countMode {
		res.CountConverge = time.Duration(lastCount - lastWelcome.Load()).Seconds()
		res.CountNotConverged = countNot(counted, func(m *model) bool { return m.fullAt.Load() > 0 })
	}
	cmds1, err := redisCalls(ctx, rdb)
	if err != nil {
		return err
	}
	if res.NotConverged > 0 {
		wantAll := int(s.want.Load()) + c.Observers
		if res.CountNotConverged > 0 {
			var wrong []string
			for _, m := range counted {
				if m.fullAt.Load() == 0 && len(wrong) < 5 {
					wrong = append(wrong, strconv.Itoa(m.count))
				}
			}
			return fmt.Errorf("%d of %d clients were not right %v after the last join: %d full-mode clients did not hold all %d members, "+
				"%d count-mode users did not count %d (some counted %s)", res.NotConverged, len(all), c.Duration,
				res.NotConverged-res.CountNotConverged, wantAll, res.CountNotConverged, wantAll, strings.Join(wrong, ", "))
		}
		return fmt.Errorf("%d of %d clients did not hold all %d members %v after the last join", res.NotConverged, len(all), wantAll, c.Duration)
	}

	// Leave storm: users close over the same ramp.
	r.st.setPhase("leave storm")
	s.leaving.Store(true)
	var lastClose atomic.Int64
	cpu = r.startCPU(ctx)
	start = time.Now()
	_ = r.scheduled(ctx, c.Users, c.Ramp, func(ctx context.Context, i int) error {
		if conns[i] == nil {
			return nil
		}
		storeMax(&lastClose, time.Now().UnixNano())
		conns[i].close()
		return nil
	})
	res.LeaveRampS = time.Duration(lastClose.Load() - start.UnixNano()).Seconds()
	r.st.setPhase("leave converging")
	deadline = time.Unix(0, lastClose.Load()).Add(c.Duration)
	for ctx.Err() == nil && time.Now().Before(deadline) && countNot(observers, func(m *model) bool { return m.emptyAt.Load() > 0 }) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	res.LeaveCPU = cpu.stop(ctx)
	res.ServerUSLeave = res.LeaveCPU.ServerS * 1e6 / float64(c.Users)
	var lastEmpty int64
	for _, m := range observers {
		lastEmpty = max(lastEmpty, m.emptyAt.Load())
	}
	res.LeaveConverge = time.Duration(lastEmpty - lastClose.Load()).Seconds()
	notEmpty := countNot(observers, func(m *model) bool { return m.emptyAt.Load() > 0 })
	cmds2, err := redisCalls(ctx, rdb)
	if err != nil {
		return err
	}
	// A moment for late duplicates to show before counting.
	sleepCtx(ctx, 300*time.Millisecond)
	r.closeAll()
	for j, oc := range obsConns {
		if oc.CloseCode != 0 {
			res.ObserverEnds = append(res.ObserverEnds, fmt.Sprintf("observer %d on %s was closed by the server: %d %s (its counts stop there)",
				j, c.Addrs[j%len(c.Addrs)], oc.CloseCode, oc.CloseReason))
		}
	}
	if rdb != nil {
		res.RedisJoinBy, res.RedisJoinCmds = diffCalls(cmds0, cmds1)
		res.RedisLeaveBy, res.RedisLeaveCmds = diffCalls(cmds1, cmds2)
		res.RedisPerJoin = float64(res.RedisJoinCmds) / float64(c.Users)
		res.RedisPerLeave = float64(res.RedisLeaveCmds) / float64(c.Users)
	}
	res.CountsExact = true
	for j, m := range observers {
		var js, ls int
		var bad []string
		for i := 0; i < c.Users; i++ {
			js += int(m.joins[i])
			ls += int(m.leaves[i])
			if (m.joins[i] != 1 || m.leaves[i] != 1) && len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("u%d: %d joins, %d leaves", i, m.joins[i], m.leaves[i]))
			}
		}
		res.ObserverJoins = append(res.ObserverJoins, js)
		res.ObserverLeaves = append(res.ObserverLeaves, ls)
		if len(bad) > 0 {
			res.CountsExact = false
			res.Violations = append(res.Violations, fmt.Sprintf("observer %d (on %s): %s", j, c.Addrs[j%len(c.Addrs)], strings.Join(bad, "; ")))
		}
	}
	res.RepeatJoins, res.Syncs, res.Unknown = s.repeat.Load(), s.syncs.Load(), s.unk.Load()
	res.CountModeFrames = s.countFrames.Load()
	if len(res.ObserverEnds) > 0 {
		return fmt.Errorf("%s", strings.Join(res.ObserverEnds, "; "))
	}
	if notEmpty > 0 {
		return fmt.Errorf("%d of %d observers still held users %v after the last leave", notEmpty, len(observers), c.Duration)
	}
	if !res.CountsExact {
		return fmt.Errorf("join/leave counts not exact: %s", strings.Join(res.Violations, " | "))
	}
	if res.FailedJoins > 0 {
		return fmt.Errorf("%d of %d users failed to join: %s", res.FailedJoins, c.Users, sortedCloses(res.FailReasons))
	}
	if res.CountModeFrames > 0 {
		return fmt.Errorf("count-mode users got %d presence frames (join, leave, update, sync or a welcome without a count) that presence=count should spare them", res.CountModeFrames)
	}
	return ctx.Err()
}

// scheduled runs fn(i) for i in [0,n) at start + i×ramp/n, with at most
// Concurrency running at once (so a slow server delays the schedule rather
// than piling up dials; the measured ramp says so).
func (r *runner) scheduled(ctx context.Context, n int, ramp time.Duration, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(r.cfg.Concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	start := time.Now()
loop:
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(int64(ramp) * int64(i) / int64(n)))); d > 0 {
			if !sleepCtx(ctx, d) {
				break
			}
		}
		select {
		case work <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		return ctx.Err()
	}
	return first
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		o := a.Load()
		if v <= o || a.CompareAndSwap(o, v) {
			return
		}
	}
}

func countNot(ms []*model, ok func(*model) bool) int {
	n := 0
	for _, m := range ms {
		if !ok(m) {
			n++
		}
	}
	return n
}

func redisOptions(s string) (*redis.Options, error) {
	if strings.Contains(s, "://") {
		o, err := redis.ParseURL(s)
		if err != nil {
			return nil, err
		}
		if err := checkLoopback(o.Addr); err != nil {
			return nil, err
		}
		return o, nil
	}
	if err := checkLoopback(s); err != nil {
		return nil, err
	}
	return &redis.Options{Addr: s}, nil
}

// redisCalls is INFO commandstats: calls by command (nil without -redis).
func redisCalls(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	if rdb == nil {
		return nil, nil
	}
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out, nil
}

// diffCalls is after − before by command, without this tool's own INFO.
func diffCalls(before, after map[string]int64) (map[string]int64, int64) {
	by := map[string]int64{}
	var total int64
	for k, v := range after {
		if k == "info" {
			continue
		}
		if d := v - before[k]; d > 0 {
			by[k] = d
			total += d
		}
	}
	return by, total
}

// topCalls renders the largest entries of a by-command tally.
func topCalls(by map[string]int64, n int) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range by {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var parts []string
	for i, e := range l {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}
