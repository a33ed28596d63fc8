package main

import (
	"fmt"
	"strings"
	"time"
)

// startProgress prints one line a second on cfg.Progress until stopped:
//
//	12s fanout 50000/s  conns 10100/10100  sent 500/s  delivered 49980/s  p99 3.1ms  cpu tool 0.41
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		lastSent, lastDel := r.st.sent.Load(), r.st.delivered.load()
		lastCPU, lastAt := selfCPU(), start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				sent, del := r.st.sent.Load(), r.st.delivered.load()
				cpu := selfCPU()
				dt := now.Sub(lastAt).Seconds()
				var b strings.Builder
				phase := ""
				if p := r.st.phase.Load(); p != nil {
					phase = *p
				}
				fmt.Fprintf(&b, "%5.0fs %-22s conns %d/%d", now.Sub(start).Seconds(), phase, r.st.open.Load(), r.st.target.Load())
				if sent > 0 || del > 0 {
					fmt.Fprintf(&b, "  sent %.0f/s  delivered %.0f/s", float64(sent-lastSent)/dt, float64(del-lastDel)/dt)
				}
				if h := r.st.hist.Load(); h != nil && h.count() > 0 {
					fmt.Fprintf(&b, "  p99 %s", fmtMS(h.quantile(0.99)/1e3))
				}
				fmt.Fprintf(&b, "  tool cpu %.2f", (cpu-lastCPU)/dt)
				if n := r.st.rateLimited.Load(); n > 0 {
					fmt.Fprintf(&b, "  RATE_LIMITED %d", n)
				}
				if n := r.st.serverErrs.Load(); n > 0 {
					fmt.Fprintf(&b, "  server errors %d", n)
				}
				fmt.Fprintln(r.cfg.Progress, b.String())
				lastSent, lastDel, lastCPU, lastAt = sent, del, cpu, now
			}
		}
	}()
	return func() { close(done); <-finished }
}

func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "0"
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}
