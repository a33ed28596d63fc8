package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FanoutResult is the fanout scenario's (and the slow scenario's) figures.
type FanoutResult struct {
	Rooms         int          `json:"rooms"`
	SubsPerRoom   int          `json:"subs_per_room"`
	PubConns      int          `json:"publisher_conns"`
	PubUsers      int          `json:"publisher_users"`
	Size          int          `json:"size"`
	SetupS        float64      `json:"setup_s"`
	Steps         []StepResult `json:"steps"`
	Published     int64        `json:"published"`
	Expected      int64        `json:"expected_deliveries"`
	Delivered     int64        `json:"delivered_unique"`
	Missing       int64        `json:"missing"`
	Duplicates    int64        `json:"duplicates"`
	Foreign       int64        `json:"foreign"` // from a publisher outside the room
	PublisherLags int64        `json:"publisher_lags"`
	Loss          float64      `json:"loss_ratio"`
}

// StepResult is one measured window at one offered load.
type StepResult struct {
	Name             string     `json:"name"`
	OfferedDelivered float64    `json:"offered_delivered_per_s"`
	OfferedPublished float64    `json:"offered_published_per_s"`
	Published        int64      `json:"published"`
	Delivered        int64      `json:"delivered"`         // message frames read by subscribers
	DeliveredAll     int64      `json:"delivered_all"`     // ... by every connection (publishers see each other)
	ServerFramesOut  float64    `json:"server_frames_out"` // roomcast_frames_out_total delta
	PublishedPerS    float64    `json:"published_per_s"`
	DeliveredPerS    float64    `json:"delivered_per_s"`
	Latency          latencies  `json:"latency"`
	CPU              cpuFigures `json:"cpu"`
	ServerUSPerMsg   float64    `json:"server_cpu_us_per_delivered"` // over DeliveredAll
	ToolUSPerMsg     float64    `json:"tool_cpu_us_per_delivered"`
}

// fanoutRig is rooms of subscribers and publishers sending timestamped,
// numbered messages at an adjustable total rate.
type fanoutRig struct {
	r        *runner
	rooms    []string
	subs     []*subscriber
	pubs     []*publisher
	pubUsers int
	pubLocal []int   // publisher k → its index among its room's publishers
	roomPubs [][]int // room → publishers
	interval atomic.Int64
	stop     chan struct{}
	pubWG    sync.WaitGroup
	lags     atomic.Int64
	foreign  atomic.Int64
	bad      atomic.Int64
}

type subscriber struct {
	c    *wsConn
	idx  int
	room int
	seq  []seqState // by local publisher index; touched by the reader only
}

type seqState struct{ next, uniq, dup int64 }

type publisher struct {
	c         *wsConn
	k, room   int
	user      string
	published atomic.Int64
	buf       []byte
}

type stepPlan struct{ delivered, published float64 }

func (r *runner) fanoutSteps() []stepPlan {
	c := r.cfg
	switch {
	case len(c.Rates) > 0:
		var out []stepPlan
		for _, d := range c.Rates {
			out = append(out, stepPlan{d, d / float64(c.Subs)})
		}
		return out
	case c.Load > 0:
		return []stepPlan{{c.Load, c.Load / float64(c.Subs)}}
	default:
		return []stepPlan{{c.Rate * float64(c.Subs), c.Rate}}
	}
}

// checkPubRate refuses a plan whose per-connection rate the server would
// cut with rate_limited.
func (r *runner) checkPubRate(steps []stepPlan, pubConns int) error {
	maxPub := 0.0
	for _, s := range steps {
		maxPub = max(maxPub, s.published)
	}
	per := maxPub / float64(pubConns)
	if per > 0.9*float64(r.cfg.ServerRate) {
		need := int(maxPub/(0.8*float64(r.cfg.ServerRate))) + 1
		return fmt.Errorf("publishing %.0f msgs/s over %d publisher connections is %.1f/s each, over the server's per-connection limit "+
			"ROOMCAST_RATE=%d (-server-rate): use -pubs %d or more, or start the server with e.g. ROOMCAST_RATE=%d and pass -server-rate %d",
			maxPub, pubConns, per, r.cfg.ServerRate, need, int(per*2)+1, int(per*2)+1)
	}
	return nil
}

// newFanoutRig dials rooms × subs subscribers on the subscriber addresses
// and max(pubs, rooms) publisher connections on the publisher addresses.
func (r *runner) newFanoutRig(ctx context.Context, steps []stepPlan) (*fanoutRig, error) {
	c := r.cfg
	g := &fanoutRig{r: r, stop: make(chan struct{}), pubUsers: c.Pubs}
	k := max(c.Pubs, c.Rooms)
	if err := r.checkPubRate(steps, k); err != nil {
		return nil, err
	}
	for i := 0; i < c.Rooms; i++ {
		g.rooms = append(g.rooms, fmt.Sprintf("%s-r%d", r.id, i))
	}
	g.roomPubs = make([][]int, c.Rooms)
	g.pubLocal = make([]int, k)
	for i := 0; i < k; i++ {
		room := i % c.Rooms
		g.pubLocal[i] = len(g.roomPubs[room])
		g.roomPubs[room] = append(g.roomPubs[room], i)
		g.pubs = append(g.pubs, &publisher{k: i, room: room, user: fmt.Sprintf("%s-p%d", r.id, i%c.Pubs)})
	}
	g.subs = make([]*subscriber, c.Rooms*c.Subs)
	r.st.target.Add(int64(len(g.subs) + len(g.pubs)))
	r.st.setPhase("connecting")
	err := r.dialAll(ctx, len(g.subs), func(ctx context.Context, j int) error {
		room := j / c.Subs
		s := &subscriber{idx: j, room: room, seq: make([]seqState, len(g.roomPubs[room]))}
		addr := c.SubAddrs[j%len(c.SubAddrs)]
		conn, err := r.dial(ctx, addr, g.rooms[room], fmt.Sprintf("%s-s%d", r.id, j), dialOptions{}, nil)
		if err != nil {
			return err
		}
		s.c = conn
		g.subs[j] = s
		r.readLoop(conn, func(p []byte) { g.onSub(s, p) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.dialAll(ctx, len(g.pubs), func(ctx context.Context, i int) error {
		p := g.pubs[i]
		conn, err := r.dial(ctx, c.PubAddrs[i%len(c.PubAddrs)], g.rooms[p.room], p.user, dialOptions{}, nil)
		if err != nil {
			return err
		}
		p.c = conn
		r.readLoop(conn, func(b []byte) { g.onPub(p, b) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (g *fanoutRig) onSub(s *subscriber, p []byte) {
	if !hasType(p, "message") {
		if hasType(p, "error") {
			g.r.countErrorFrame(p)
		}
		return
	}
	now := time.Now().UnixNano()
	t, seq, pub, ok := parseStamp(p)
	if !ok {
		g.bad.Add(1)
		return
	}
	g.r.st.delivered.add(s.idx)
	g.r.st.received.add(s.idx)
	if h := g.r.st.hist.Load(); h != nil {
		h.record(time.Duration(now - t))
	}
	if pub < 0 || pub >= len(g.pubs) || g.pubs[pub].room != s.room {
		g.foreign.Add(1)
		return
	}
	st := &s.seq[g.pubLocal[pub]]
	switch {
	case seq >= st.next:
		st.uniq++
		st.next = seq + 1
	default:
		st.dup++
	}
}

func (g *fanoutRig) onPub(pub *publisher, p []byte) {
	if hasType(p, "message") {
		g.r.st.received.add(pub.k)
	} else if hasType(p, "error") {
		g.r.countErrorFrame(p)
	}
}

// parseStamp reads t, s and p from a message frame's data, which the
// publisher wrote first: ..."data":{"t":<ns>,"s":<seq>,"p":<publisher>,...
func parseStamp(f []byte) (t, seq int64, pub int, ok bool) {
	const key = `"data":{"t":`
	i := lastIndex(f, key)
	if i < 0 {
		return 0, 0, 0, false
	}
	f = f[i+len(key):]
	t, f, ok = parseInt(f)
	if !ok || !hasPrefix(f, `,"s":`) {
		return 0, 0, 0, false
	}
	seq, f, ok = parseInt(f[5:])
	if !ok || !hasPrefix(f, `,"p":`) {
		return 0, 0, 0, false
	}
	p, _, ok := parseInt(f[5:])
	return t, seq, int(p), ok
}

// lastIndex finds key searching from the end: data is the last field of a
// message frame, after from.user, whose text this tool chose.
func lastIndex(b []byte, key string) int {
	for i := len(b) - len(key); i >= 0; i-- {
		if b[i] == key[0] && string(b[i:i+len(key)]) == key {
			return i
		}
	}
	return -1
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func parseInt(b []byte) (int64, []byte, bool) {
	var v int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}

// setRate sets the total published rate, spread evenly over publishers.
func (g *fanoutRig) setRate(published float64) {
	if published <= 0 {
		g.interval.Store(int64(time.Hour))
		return
	}
	g.interval.Store(int64(float64(len(g.pubs)) / published * 1e9))
}

// start runs the publishers, their first sends spread over one interval.
func (g *fanoutRig) start() {
	start := time.Now()
	for i, p := range g.pubs {
		g.pubWG.Add(1)
		go g.publish(p, start, float64(i)/float64(len(g.pubs)))
	}
}

// stopPublishers stops sending and waits for the publishers.
func (g *fanoutRig) stopPublishers() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.pubWG.Wait()
}

func (g *fanoutRig) publish(p *publisher, start time.Time, phase float64) {
	defer g.pubWG.Done()
	size := g.r.cfg.Size
	iv := time.Duration(g.interval.Load())
	next := start.Add(time.Duration(phase * float64(iv)))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var seq int64
	for {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-g.stop:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-g.stop:
				return
			default:
			}
		}
		now := time.Now()
		p.buf = appendPublish(p.buf[:0], now.UnixNano(), seq, p.k, size)
		if err := p.c.writeText(p.buf); err != nil {
			g.r.warn("publisher %d: %v", p.k, err)
			return
		}
		seq++
		p.published.Store(seq)
		g.r.st.sent.Add(1)
		next = next.Add(time.Duration(g.interval.Load()))
		if now.Sub(next) > time.Second {
			// Far behind schedule (the machine is saturated): skip ahead
			// rather than burst, and say so.
			g.lags.Add(1)
			next = now
		}
	}
}

// appendPublish builds a publish frame whose data is about size bytes:
// {"t":<unix ns>,"s":<seq>,"p":<publisher>,"x":"xxxx…"}.
func appendPublish(b []byte, t, seq int64, pub, size int) []byte {
	b = append(b, `{"type":"publish","data":`...)
	start := len(b)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"p":`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, `,"x":"`...)
	for pad := size - (len(b) - start) - 2; pad > 0; pad-- {
		b = append(b, 'x')
	}
	b = append(b, `"}}`...)
	return b
}

// window measures one step: latency, counts and CPU between begin and end.
type window struct {
	r      *runner
	h      *hist
	cpu    *cpuWindow
	start  time.Time
	sent   int64
	del    int64
	recv   int64
	frames map[string]float64
}

func (r *runner) beginWindow(ctx context.Context) *window {
	w := &window{r: r, h: newHist(), frames: map[string]float64{}}
	for _, a := range r.cfg.Addrs {
		if s, err := scrape(ctx, a); err == nil {
			w.frames[a] = s.get("roomcast_frames_out_total")
		}
	}
	w.cpu = r.startCPU(ctx)
	w.start = time.Now()
	w.sent, w.del, w.recv = r.st.sent.Load(), r.st.delivered.load(), r.st.received.load()
	r.st.hist.Store(w.h)
	return w
}

func (w *window) end(ctx context.Context, name string, plan stepPlan) StepResult {
	r := w.r
	el := time.Since(w.start).Seconds()
	s := StepResult{
		Name: name, OfferedDelivered: plan.delivered, OfferedPublished: plan.published,
		Published: r.st.sent.Load() - w.sent, Delivered: r.st.delivered.load() - w.del,
		DeliveredAll: r.st.received.load() - w.recv,
	}
	s.CPU = w.cpu.stop(ctx)
	s.Latency = w.h.summary()
	for _, a := range r.cfg.Addrs {
		if m, err := scrape(ctx, a); err == nil {
			s.ServerFramesOut += m.get("roomcast_frames_out_total") - w.frames[a]
		}
	}
	s.PublishedPerS = float64(s.Published) / el
	s.DeliveredPerS = float64(s.Delivered) / el
	if s.DeliveredAll > 0 {
		s.ServerUSPerMsg = s.CPU.ServerS * 1e6 / float64(s.DeliveredAll)
		s.ToolUSPerMsg = s.CPU.ToolS * 1e6 / float64(s.DeliveredAll)
	}
	return s
}

// drain waits until deliveries stop (or what was published has arrived).
func (g *fanoutRig) drain(ctx context.Context, expected int64, within time.Duration) {
	deadline := time.Now().Add(within)
	last, stable := g.r.st.delivered.load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		d := g.r.st.delivered.load()
		if d >= expected {
			return
		}
		if d != last {
			last, stable = d, time.Now()
		} else if time.Since(stable) > 500*time.Millisecond {
			return
		}
	}
}

// tally counts loss per subscriber and publisher; call after the readers
// have ended.
func (g *fanoutRig) tally(res *FanoutResult) {
	for _, p := range g.pubs {
		res.Published += p.published.Load()
	}
	for _, s := range g.subs {
		if s == nil {
			continue
		}
		for li, k := range g.roomPubs[s.room] {
			pub := g.pubs[k].published.Load()
			res.Expected += pub
			res.Delivered += s.seq[li].uniq
			res.Duplicates += s.seq[li].dup
			if m := pub - s.seq[li].uniq; m > 0 {
				res.Missing += m
			}
		}
	}
	res.Foreign = g.foreign.Load()
	res.PublisherLags = g.lags.Load()
	if res.Expected > 0 {
		res.Loss = float64(res.Missing) / float64(res.Expected)
	}
}

func (g *fanoutRig) expected() int64 {
	var n int64
	for _, p := range g.pubs {
		n += p.published.Load() * int64(g.r.cfg.Subs)
	}
	return n
}

func (r *runner) fanout(ctx context.Context) error {
	c := r.cfg
	steps := r.fanoutSteps()
	res := &FanoutResult{Rooms: c.Rooms, SubsPerRoom: c.Subs, PubUsers: c.Pubs, Size: c.Size}
	r.res.Fanout = res
	t0 := time.Now()
	g, err := r.newFanoutRig(ctx, steps)
	if err != nil {
		return err
	}
	res.PubConns = len(g.pubs)
	res.SetupS = time.Since(t0).Seconds()
	// Joins of the setup are still being fanned out; let them settle.
	sleepCtx(ctx, 300*time.Millisecond)
	g.setRate(steps[0].published)
	g.start()
	for i, st := range steps {
		g.setRate(st.published)
		name := fmt.Sprintf("%.0f/s", st.delivered)
		if c.Warmup > 0 {
			r.st.setPhase(fmt.Sprintf("step %d/%d %s warmup", i+1, len(steps), name))
			r.st.hist.Store(newHist())
			if !sleepCtx(ctx, c.Warmup) {
				break
			}
		}
		r.st.setPhase(fmt.Sprintf("step %d/%d %s", i+1, len(steps), name))
		w := r.beginWindow(ctx)
		if !sleepCtx(ctx, c.Duration-c.Warmup) {
			break
		}
		res.Steps = append(res.Steps, w.end(ctx, name, st))
	}
	g.stopPublishers()
	r.st.setPhase("draining")
	r.st.hist.Store(nil)
	g.drain(ctx, g.expected(), 5*time.Second)
	r.closeAll()
	g.tally(res)
	if n := g.bad.Load(); n > 0 {
		r.warn("%d message frames without this tool's timestamp", n)
	}
	if res.PublisherLags > 0 {
		r.warn("publishers fell more than 1 s behind schedule %d times: the offered rate was not sent (machine saturated)", res.PublisherLags)
	}
	return ctx.Err()
}

// sleepCtx sleeps d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
