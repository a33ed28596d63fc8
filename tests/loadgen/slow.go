package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// SlowResult is the slow-consumer scenario's figures: the room's latency
// before, while and after one member stops reading, and how that member
// was dropped.
type SlowResult struct {
	Before        StepResult    `json:"before"`
	Stuck         StepResult    `json:"stuck"`
	After         StepResult    `json:"after"`
	DropAfterS    float64       `json:"drop_after_s"` // stall → server counted the drop (-1: never)
	SlowEnd       string        `json:"slow_end"`     // how the slow client's socket ended
	SlowCloseCode int           `json:"slow_close_code"`
	SlowMessages  int64         `json:"slow_messages_read"`
	ServerDropped float64       `json:"server_slow_dropped"` // roomcast_slow_consumers_dropped_total delta
	P99StuckRatio float64       `json:"p99_stuck_over_before"`
	Room          *FanoutResult `json:"room"`
}

func (r *runner) slow(ctx context.Context) error {
	c := r.cfg
	steps := r.fanoutSteps()
	plan := steps[0]
	res := &SlowResult{DropAfterS: -1}
	r.res.Slow = res
	room := &FanoutResult{Rooms: 1, SubsPerRoom: c.Subs, PubUsers: c.Pubs, Size: c.Size}
	res.Room = room
	t0 := time.Now()
	g, err := r.newFanoutRig(ctx, steps[:1])
	if err != nil {
		return err
	}
	room.PubConns = len(g.pubs)

	// The slow client: a tiny receive buffer so that not reading fills the
	// path quickly, and a reader that can be stopped between frames.
	slowAddr := c.SubAddrs[0]
	r.st.target.Add(1)
	sc, err := r.dial(ctx, slowAddr, g.rooms[0], r.id+"-slow", dialOptions{RcvBuf: 4096}, nil)
	if err != nil {
		return err
	}
	room.SetupS = time.Since(t0).Seconds()
	var stalled atomic.Bool
	release := make(chan struct{})
	ended := make(chan error, 1)
	var read atomic.Int64
	go func() {
		for {
			if stalled.Load() {
				<-release
				stalled.Store(false)
			}
			_, p, err := sc.next()
			if err != nil {
				r.st.open.Add(-1)
				ended <- err
				return
			}
			if hasType(p, "message") {
				read.Add(1)
			}
		}
	}()
	base, err := scrape(ctx, slowAddr)
	if err != nil {
		return err
	}
	dropped0 := base.get("roomcast_slow_consumers_dropped_total")

	sleepCtx(ctx, 300*time.Millisecond)
	g.setRate(plan.published)
	g.start()
	defer g.stopPublishers()
	warm := c.Warmup
	if warm <= 0 {
		warm = 0
	}
	r.st.setPhase("warmup")
	r.st.hist.Store(newHist())
	if !sleepCtx(ctx, warm) {
		return ctx.Err()
	}
	r.st.setPhase("before (all reading)")
	w := r.beginWindow(ctx)
	if !sleepCtx(ctx, c.Duration) {
		return ctx.Err()
	}
	res.Before = w.end(ctx, "before", plan)

	r.st.setPhase("stuck (one not reading)")
	stalledAt := time.Now()
	stalled.Store(true)
	w = r.beginWindow(ctx)
	dropped := false
	for time.Since(stalledAt) < c.Stuck && ctx.Err() == nil {
		if !sleepCtx(ctx, 100*time.Millisecond) {
			break
		}
		if m, err := scrape(ctx, slowAddr); err == nil && m.get("roomcast_slow_consumers_dropped_total") > dropped0 {
			dropped = true
			res.DropAfterS = time.Since(stalledAt).Seconds()
			break
		}
	}
	res.Stuck = w.end(ctx, "stuck", plan)
	// Read again at once: the server gives a dropped client a few seconds
	// to take in what was on its way, then the 4008 close frame.
	close(release)
	select {
	case err := <-ended:
		res.SlowEnd, res.SlowCloseCode = describeEnd(sc, err)
	case <-time.After(10 * time.Second):
		res.SlowEnd = "still open 10 s after reading again"
		sc.abort()
	}
	res.SlowMessages = read.Load()

	r.st.setPhase("after (slow one gone)")
	w = r.beginWindow(ctx)
	sleepCtx(ctx, c.Duration)
	res.After = w.end(ctx, "after", plan)
	g.stopPublishers()
	r.st.setPhase("draining")
	r.st.hist.Store(nil)
	g.drain(ctx, g.expected(), 5*time.Second)
	if m, err := scrape(ctx, slowAddr); err == nil {
		res.ServerDropped = m.get("roomcast_slow_consumers_dropped_total") - dropped0
	}
	r.closeAll()
	g.tally(room)
	if res.Before.Latency.P99 > 0 {
		res.P99StuckRatio = res.Stuck.Latency.P99 / res.Before.Latency.P99
	}
	switch {
	case !dropped:
		return fmt.Errorf("the server did not drop the slow client within %v (-stuck): roomcast_slow_consumers_dropped_total stayed at %.0f", c.Stuck, dropped0)
	case res.SlowCloseCode != 4008:
		return fmt.Errorf("the slow client's socket ended with %s, want close 4008", res.SlowEnd)
	}
	return ctx.Err()
}

func describeEnd(c *wsConn, err error) (string, int) {
	if errors.Is(err, errClosed) {
		return fmt.Sprintf("close %d %q", c.CloseCode, c.CloseReason), c.CloseCode
	}
	return "no close frame: " + err.Error(), 0
}
