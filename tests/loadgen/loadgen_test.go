package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// TestScenariosSmoke runs every scenario for a second or two with tiny
// counts against the real server, so the tool cannot rot.
func TestScenariosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server")
	}
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_RATE": "1000"}})
	base := Config{Addrs: []string{s.Addr}, Secret: testserver.Secret, Pids: []int{s.Pid()}, ServerRate: 1000, Timeout: time.Minute}
	ctx := context.Background()

	t.Run("fanout", func(t *testing.T) {
		c := base
		c.Scenario = "fanout"
		c.Rooms, c.Subs, c.Pubs = 2, 5, 2
		c.Rates = []float64{250, 500} // delivered/s: 50 and 100 published/s
		c.Duration, c.Warmup = time.Second, 200*time.Millisecond
		res := runOK(t, ctx, c)
		f := res.Fanout
		if len(f.Steps) != 2 || f.Published == 0 || f.Expected != f.Published*5 || f.Delivered != f.Expected || f.Missing != 0 || f.Duplicates != 0 || f.Foreign != 0 {
			t.Fatalf("fanout: %+v", f)
		}
		for _, st := range f.Steps {
			if st.Latency.N == 0 || st.Latency.P99 <= 0 || st.Latency.P50 > st.Latency.P99 || st.Latency.P99 > st.Latency.Max || st.DeliveredPerS < 0.5*st.OfferedDelivered {
				t.Fatalf("step %s: %+v", st.Name, st)
			}
		}
		var svg bytes.Buffer
		if err := writePlot(&svg, "t", "s", f.Steps); err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil || !strings.Contains(svg.String(), "<polyline") {
			t.Fatalf("plot is not SVG (%v):\n%s", err, svg.String())
		}
	})

	t.Run("connections", func(t *testing.T) {
		c := base
		c.Scenario = "connections"
		c.Conns, c.Rooms = 60, 3
		c.Settle, c.Duration = 300*time.Millisecond, 200*time.Millisecond
		res := runOK(t, ctx, c)
		cr := res.Connections
		if cr.ConnectPerS <= 0 || len(cr.Instances) != 1 || cr.Instances[0].Reported < 60 || cr.GoroutinesPerConn <= 0 || cr.Instances[0].RSSAfter <= 0 {
			t.Fatalf("connections: %+v", cr)
		}
	})

	t.Run("presence", func(t *testing.T) {
		c := base
		c.Scenario = "presence"
		c.Users, c.Observers, c.Ramp, c.Duration = 40, 2, 400*time.Millisecond, 10*time.Second
		res := runOK(t, ctx, c)
		p := res.Presence
		if !p.CountsExact || p.NotConverged != 0 || len(p.ObserverJoins) != 2 || p.ObserverJoins[0] != 40 || p.ObserverLeaves[1] != 40 || p.Unknown != 0 {
			t.Fatalf("presence: %+v", p)
		}
	})

	t.Run("slow", func(t *testing.T) {
		c := base
		c.Scenario = "slow"
		c.Subs, c.Pubs, c.Rate, c.Size = 3, 2, 200, 8192
		c.Duration, c.Stuck = 700*time.Millisecond, 15*time.Second
		res := runOK(t, ctx, c)
		sl := res.Slow
		if sl.SlowCloseCode != 4008 || sl.ServerDropped != 1 || sl.Before.Latency.N == 0 || sl.Room.Missing != 0 || sl.Room.Duplicates != 0 {
			t.Fatalf("slow: %+v %+v", sl, sl.Room)
		}
	})
}

// TestPresenceAcrossInstancesSmoke is the presence storm over two
// instances sharing a Redis, with Redis commands per join.
func TestPresenceAcrossInstancesSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis and two servers")
	}
	rd := redisproc.Start(t)
	var addrs []string
	for range 2 {
		s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_REDIS_URL": rd.URL()}})
		addrs = append(addrs, s.Addr)
	}
	c := Config{Scenario: "presence", Addrs: addrs, Secret: testserver.Secret, Redis: rd.Addr(), Timeout: time.Minute,
		Users: 40, Observers: 2, Ramp: 400 * time.Millisecond, Duration: 10 * time.Second}
	res := runOK(t, context.Background(), c)
	p := res.Presence
	if !p.CountsExact || p.NotConverged != 0 || p.RedisJoinCmds <= 0 || p.RedisPerJoin <= 0 {
		t.Fatalf("presence: %+v", p)
	}
}

// TestLargeRoomStorm: 2,000 users join one room over 2 s across two
// instances, then leave. Every observer counts exactly one join and one
// leave per user, every client's member list comes right (the bound is
// for correctness, not speed: the figures are in docs/BENCHMARKS.md); the
// Redis work per join is logged.
func TestLargeRoomStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 connections on two servers")
	}
	rd := redisproc.Start(t)
	var addrs []string
	for range 2 {
		s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_REDIS_URL": rd.URL(), "ROOMCAST_RATE": "1000"}})
		addrs = append(addrs, s.Addr)
	}
	c := Config{Scenario: "presence", Addrs: addrs, Secret: testserver.Secret, Redis: rd.Addr(), Timeout: 3 * time.Minute,
		Users: 2000, Observers: 3, Ramp: 2 * time.Second, Duration: 60 * time.Second}
	res := runOK(t, context.Background(), c)
	p := res.Presence
	if !p.CountsExact || p.NotConverged != 0 {
		t.Fatalf("storm: counts exact %v, %d clients with a wrong member list", p.CountsExact, p.NotConverged)
	}
	// Commands per join are counted exactly, in rooms of 1 and 1,000, by
	// presence's TestRedisStoreCommandsPerJoinAndLeave: here heartbeats
	// and sweeps run meanwhile and blur the figure.
	t.Logf("%.2f Redis commands per join, heartbeats and sweeps included", p.RedisPerJoin)
}

// TestTenThousandMemberRoom: 10,000 count-mode users (presence=count)
// join one room over 4 s across two instances, then leave, while three
// full-mode observers count every join and leave. Every user must end up
// counting every member, every observer must see exactly one join and
// one leave per user, and no join may fail.
func TestTenThousandMemberRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections on two servers")
	}
	const users, observers, instances, dialers = 10000, 3, 2, 64
	// The test process holds every client socket (and, while a socket moves
	// to a poller, a duplicate per dialer); each instance holds its share.
	needFDs(t, users+observers+dialers+256)
	rd := redisproc.Start(t)
	var addrs []string
	for range instances {
		s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_REDIS_URL": rd.URL(), "ROOMCAST_RATE": "1000"}})
		addrs = append(addrs, s.Addr)
	}
	ctx := context.Background()
	for _, a := range addrs {
		m, err := scrape(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		need := float64((users+observers)/instances + 256)
		if lim, ok := m["process_max_fds"]; ok && lim < need {
			t.Fatalf("roomcast %s may open %.0f files (process_max_fds), this test puts about %.0f sockets on it: "+
				"raise the hard open-file limit (`ulimit -Hn`, as root) to at least %.0f", a, lim, need, need)
		}
	}
	// 64 dialers keep at most 64 handshakes in flight, far below the
	// listen backlog (somaxconn): an overflow would show as SYN retries
	// (a second each) in the ramp and in ListenOverflows.
	over0 := listenOverflows()
	c := Config{Scenario: "presence", PresenceMode: "count", Addrs: addrs, Secret: testserver.Secret, Redis: rd.Addr(),
		ServerRate: 1000, Concurrency: dialers, Timeout: 2 * time.Minute,
		Users: users, Observers: observers, Ramp: 4 * time.Second, Duration: 30 * time.Second}
	res := runOK(t, ctx, c)
	p := res.Presence
	if p.FailedJoins != 0 || !p.CountsExact || p.NotConverged != 0 || p.CountNotConverged != 0 || p.CountModeFrames != 0 || p.UserMode != "count" {
		t.Fatalf("10,000-member room: %d failed joins, counts exact %v, %d clients not converged (%d count-mode users), %d presence frames to count-mode users",
			p.FailedJoins, p.CountsExact, p.NotConverged, p.CountNotConverged, p.CountModeFrames)
	}
	for j := range p.ObserverJoins {
		if p.ObserverJoins[j] != users || p.ObserverLeaves[j] != users {
			t.Fatalf("observer %d: %d joins, %d leaves", j, p.ObserverJoins[j], p.ObserverLeaves[j])
		}
	}
	t.Logf("join ramp %.2f s (%.0f joins/s; dial→welcome p50 %.1f ms, p99 %.1f ms, max %.1f ms); counts right %.0f ms and observers' lists %.0f ms after the last welcome",
		p.JoinRampS, users/p.JoinRampS, p.JoinLatency.P50, p.JoinLatency.P99, p.JoinLatency.Max, p.CountConverge*1e3, p.JoinConverge*1e3)
	t.Logf("leave ramp %.2f s, observers empty %.0f ms after the last close; server CPU %.0f µs per join, %.0f µs per leave; %.2f Redis commands per join",
		p.LeaveRampS, p.LeaveConverge*1e3, p.ServerUSJoin, p.ServerUSLeave, p.RedisPerJoin)
	var welcomes []string
	for _, w := range p.ObserverWelcomeS {
		welcomes = append(welcomes, fmt.Sprintf("%.1f ms", w*1e3))
	}
	t.Logf("observers' dial→welcome (into the room before the storm): %s", strings.Join(welcomes, ", "))
	if over0 >= 0 {
		t.Logf("TCP listen overflows during the run (whole host): %d", listenOverflows()-over0)
	}
}

// needFDs fails the test unless this process may open n files, raising
// its soft limit to the hard one if that is what it takes.
func needFDs(t *testing.T, n int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < uint64(n) && lim.Max > lim.Cur {
		lim.Cur = min(lim.Max, uint64(n))
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
	}
	if lim.Cur < uint64(n) {
		t.Fatalf("this test opens about %d files but the open-file limit is %d (hard %d): raise it (`ulimit -n %d`; as root if the hard limit is lower)",
			n, lim.Cur, lim.Max, n)
	}
}

// listenOverflows is TcpExt ListenOverflows from /proc/net/netstat (-1
// when unreadable).
func listenOverflows() int64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return -1
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for k := range keys {
			if keys[k] == "ListenOverflows" && k < len(vals) {
				v, err := strconv.ParseInt(vals[k], 10, 64)
				if err != nil {
					return -1
				}
				return v
			}
		}
	}
	return -1
}

func runOK(t *testing.T, ctx context.Context, c Config) *Result {
	t.Helper()
	res, err := run(ctx, c)
	var out bytes.Buffer
	if res != nil {
		writeTable(&out, res)
		if err := writeJSON(io.Discard, res); err != nil {
			t.Errorf("json: %v", err)
		}
	}
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Closes) > 0 {
		t.Fatalf("unexpected closes: %v", res.Closes)
	}
	return res
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"10.0.0.1:8080", "example.com:80", "0.0.0.0:8080", "[2001:db8::1]:80"} {
		if err := checkLoopback(a); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
	for _, a := range []string{"127.0.0.1:8080", "127.1.2.3:1", "localhost:8080", "[::1]:8080"} {
		if err := checkLoopback(a); err != nil {
			t.Errorf("%s refused: %v", a, err)
		}
	}
	var stderr bytes.Buffer
	if code := mainErr([]string{"-addr", "192.168.1.1:8080", "-secret", "x", "-q"}, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "not loopback") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestPublishFrameRoundTrip(t *testing.T) {
	for _, size := range []int{48, 128, 2048} {
		b := appendPublish(nil, 1795763488123456789, 42, 7, size)
		var f struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &f); err != nil || f.Type != "publish" {
			t.Fatalf("%s: %v", b, err)
		}
		if d := len(f.Data) - size; d < -2 || d > 30 {
			t.Errorf("size %d: data is %d bytes", size, len(f.Data))
		}
		msg := `{"type":"message","room":"r","id":"x","from":{"user":"u","conn":"c"},"ts":1,"data":` + string(f.Data) + `}`
		ts, seq, pub, ok := parseStamp([]byte(msg))
		if !ok || ts != 1795763488123456789 || seq != 42 || pub != 7 {
			t.Fatalf("parseStamp(%s) = %d %d %d %v", msg, ts, seq, pub, ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	h := newHist()
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond) // 1 µs … 10 ms, uniform
	}
	s := h.summary()
	check := func(name string, got, want float64) {
		if got < want*0.97 || got > want*1.03 {
			t.Errorf("%s = %.3f ms, want %.3f", name, got, want)
		}
	}
	check("p50", s.P50, 5)
	check("p99", s.P99, 9.9)
	check("max", s.Max, 10)
	last := -1
	for us := uint64(0); us < 1<<30; us = us*11/10 + 1 {
		i := histIndex(us)
		if i < last || histValue(i) < float64(us)*0.98 && us > 200 {
			t.Fatalf("bucket %d for %d µs (value %.0f) after %d", i, us, histValue(i), last)
		}
		last = i
	}
}

func TestMemberScan(t *testing.T) {
	s := &storm{n: 3, o: 1, prefix: "lg1-"}
	s.want.Store(3)
	m := &model{bits: make([]uint64, 1), observer: true, joins: make([]uint8, 3), leaves: make([]uint8, 3)}
	s.apply(m, []byte(`{"type":"welcome","room":"r","conn":"c","me":{"id":"lg1-o0","name":"o","meta":{},"conns":1,"since":1},"members":[{"id":"lg1-o0","name":"o","meta":{},"conns":1,"since":1},{"id":"lg1-u2","name":"x","meta":{},"conns":1,"since":1}],"instance":"i"}`))
	if m.users != 1 || m.obs != 1 {
		t.Fatalf("after welcome: %d users %d observers", m.users, m.obs)
	}
	s.apply(m, []byte(`{"type":"join","room":"r","member":{"id":"lg1-u0","name":"a","meta":{},"conns":1,"since":2}}`))
	s.apply(m, []byte(`{"type":"update","room":"r","member":{"id":"lg1-u1","name":"a","meta":{},"conns":1,"since":2}}`))
	if m.users != 3 || m.fullAt.Load() == 0 {
		t.Fatalf("after join+update: %d users, fullAt %d", m.users, m.fullAt.Load())
	}
	s.apply(m, []byte(`{"type":"leave","room":"r","member":{"id":"lg1-u0","name":"a","meta":{},"conns":0,"since":2},"reason":"closed"}`))
	if m.users != 2 || m.fullAt.Load() != 0 || m.joins[0] != 1 || m.leaves[0] != 1 {
		t.Fatalf("after leave: %d users, fullAt %d", m.users, m.fullAt.Load())
	}
	s.apply(m, []byte(`{"type":"sync","room":"r","members":[{"id":"lg1-u1","name":"a","meta":{},"conns":1,"since":2}]}`))
	if m.users != 1 || m.obs != 0 || s.syncs.Load() != 1 {
		t.Fatalf("after sync: %d users %d observers", m.users, m.obs)
	}
}

func TestCountModel(t *testing.T) {
	s := &storm{n: 3, o: 1, prefix: "lg1-"}
	s.want.Store(3)
	m := &model{counted: true, count: -1}
	s.apply(m, []byte(`{"type":"welcome","room":"r","conn":"c","me":{"id":"lg1-u0","name":"a","meta":{},"conns":1,"since":1},"count":2,"instance":"i"}`))
	if m.count != 2 || m.fullAt.Load() != 0 {
		t.Fatalf("after welcome: count %d, fullAt %d", m.count, m.fullAt.Load())
	}
	s.apply(m, []byte(`{"type":"count","room":"r","count":4}`))
	if m.count != 4 || m.fullAt.Load() == 0 {
		t.Fatalf("after count 4: count %d, fullAt %d", m.count, m.fullAt.Load())
	}
	s.want.Add(-1) // a failed join: 3 members are all
	s.apply(m, []byte(`{"type":"count","room":"r","count":3}`))
	if m.count != 3 || m.fullAt.Load() == 0 || s.countFrames.Load() != 0 {
		t.Fatalf("after count 3: count %d, fullAt %d", m.count, m.fullAt.Load())
	}
	s.apply(m, []byte(`{"type":"join","room":"r","member":{"id":"lg1-u1","name":"a","meta":{},"conns":1,"since":2}}`))
	s.apply(m, []byte(`{"type":"welcome","room":"r","conn":"c","me":{"id":"lg1-u0","name":"a","meta":{},"conns":1,"since":1},"members":[],"instance":"i"}`))
	if s.countFrames.Load() != 2 || m.count != 3 || m.users != 0 {
		t.Fatalf("presence frames to a count-mode client: %d counted, count %d", s.countFrames.Load(), m.count)
	}
}

// TestReadPathAllocs: at 100,000 frames/s the client must not allocate
// per message.
func TestReadPathAllocs(t *testing.T) {
	r := &runner{closes: map[string]int{}}
	r.st.hist.Store(newHist())
	g := &fanoutRig{r: r, pubs: []*publisher{{room: 0}}, pubLocal: []int{0}}
	sub := &subscriber{room: 0, seq: make([]seqState, 1)}
	data := appendPublish(nil, time.Now().UnixNano(), 0, 0, 128)
	msg := []byte(`{"type":"message","room":"lg-r0","id":"7d1e","from":{"user":"lg-p0","conn":"5b0c"},"ts":1,"data":` + string(data[len(`{"type":"publish","data":`):len(data)-1]) + `}`)
	if a := testing.AllocsPerRun(1000, func() { g.onSub(sub, msg) }); a != 0 {
		t.Errorf("fanout subscriber: %.1f allocations per message", a)
	}
	if sub.seq[0].uniq != 1 || sub.seq[0].dup != 1000 {
		t.Errorf("seq state %+v", sub.seq[0])
	}
	s := &storm{r: r, n: 3, o: 1, prefix: "lg1-"}
	s.want.Store(3)
	m := &model{bits: make([]uint64, 1)}
	join := []byte(`{"type":"join","room":"r","member":{"id":"lg1-u0","name":"a","meta":{},"conns":1,"since":2}}`)
	leave := []byte(`{"type":"leave","room":"r","member":{"id":"lg1-u0","name":"a","meta":{},"conns":0,"since":2},"reason":"closed"}`)
	if a := testing.AllocsPerRun(1000, func() { s.apply(m, join); s.apply(m, leave) }); a != 0 {
		t.Errorf("presence: %.1f allocations per join+leave", a)
	}
	cm := &model{counted: true}
	count := []byte(`{"type":"count","room":"r","count":4812}`)
	if a := testing.AllocsPerRun(1000, func() { s.apply(cm, count) }); a != 0 || cm.count != 4812 {
		t.Errorf("presence=count: %.1f allocations per count frame (count %d)", a, cm.count)
	}
}
