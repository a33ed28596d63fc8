package main

import (
	"context"
	"fmt"
	"time"
)

// ConnsResult is the connections scenario's figures.
type ConnsResult struct {
	Conns              int           `json:"conns"`
	Opened             int           `json:"opened"`
	Rooms              int           `json:"rooms"`
	Concurrency        int           `json:"concurrency"`
	RampS              float64       `json:"ramp_s"`
	ConnectPerS        float64       `json:"connects_per_s"`
	ConnectLat         latencies     `json:"connect_latency"` // dial → welcome read
	RampCPU            cpuFigures    `json:"ramp_cpu"`
	ServerUSPerConnect float64       `json:"server_cpu_us_per_connect"`
	Instances          []InstanceMem `json:"instances"`
	RSSPerConnKiB      float64       `json:"rss_per_conn_kib"`
	HeapPerConnKiB     float64       `json:"heap_inuse_per_conn_kib"`
	StackPerConnKiB    float64       `json:"stack_inuse_per_conn_kib"`
	GoroutinesPerConn  float64       `json:"goroutines_per_conn"`
	IdleCPU            cpuFigures    `json:"idle_cpu"` // while holding them open
	ToolRSSPerConnKiB  float64       `json:"tool_rss_per_conn_kib"`
}

// InstanceMem is one instance's /metrics before and after the ramp.
type InstanceMem struct {
	Addr        string  `json:"addr"`
	Conns       int     `json:"conns_opened"`
	Reported    float64 `json:"roomcast_connections"`
	RSSBefore   float64 `json:"rss_before_bytes"`
	RSSAfter    float64 `json:"rss_after_bytes"`
	HeapBefore  float64 `json:"heap_inuse_before_bytes"`
	HeapAfter   float64 `json:"heap_inuse_after_bytes"`
	StackBefore float64 `json:"stack_inuse_before_bytes"`
	StackAfter  float64 `json:"stack_inuse_after_bytes"`
	GorBefore   float64 `json:"goroutines_before"`
	GorAfter    float64 `json:"goroutines_after"`
}

func (r *runner) connections(ctx context.Context) error {
	c := r.cfg
	res := &ConnsResult{Conns: c.Conns, Rooms: c.Rooms, Concurrency: c.Concurrency}
	r.res.Connections = res
	before := map[string]promSample{}
	for _, a := range c.Addrs {
		s, err := scrape(ctx, a)
		if err != nil {
			return err
		}
		before[a] = s
	}
	for a, b := range before {
		if n := b.get("roomcast_connects_total"); n > 0 {
			r.warn("%s has served %.0f connections before this run: memory kept from them is reused, so its RSS per connection is a lower bound; measure on a freshly started instance", a, n)
		}
	}
	toolRSS := selfRSS()
	rooms := make([]string, c.Rooms)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("%s-c%d", r.id, i)
	}
	// Tokens are minted before the clock starts: the connect rate is the
	// server's, not the signer's.
	tokens := make([]string, c.Conns)
	for i := range tokens {
		t, err := r.token(fmt.Sprintf("%s-u%d", r.id, i))
		if err != nil {
			return err
		}
		tokens[i] = t
	}
	r.st.target.Store(int64(c.Conns))
	r.st.setPhase("connecting")
	lat := newHist()
	perAddr := map[string]int{}
	for i := 0; i < c.Conns; i++ {
		perAddr[c.Addrs[i%len(c.Addrs)]]++
	}
	cpu := r.startCPU(ctx)
	start := time.Now()
	err := r.dialAll(ctx, c.Conns, func(ctx context.Context, i int) error {
		addr := c.Addrs[i%len(c.Addrs)]
		t0 := time.Now()
		conn, err := r.dialToken(ctx, addr, rooms[i%c.Rooms], tokens[i], dialOptions{ReadBuffer: 2048, Query: presenceQuery(c.PresenceMode)}, nil)
		if err != nil {
			return fmt.Errorf("connection %d of %d: %w", i+1, c.Conns, err)
		}
		lat.record(time.Since(t0))
		r.readLoop(conn, func(p []byte) {
			if hasType(p, "error") {
				r.countErrorFrame(p)
			}
		})
		return nil
	})
	res.RampS = time.Since(start).Seconds()
	res.RampCPU = cpu.stop(ctx)
	res.ConnectLat = lat.summary()
	res.Opened = int(res.ConnectLat.N)
	if err != nil {
		return err
	}
	res.ConnectPerS = float64(c.Conns) / res.RampS
	res.ServerUSPerConnect = res.RampCPU.ServerS * 1e6 / float64(c.Conns)

	r.st.setPhase("settling")
	if !sleepCtx(ctx, c.Settle) {
		return ctx.Err()
	}
	r.st.setPhase("holding")
	idle := r.startCPU(ctx)
	var dRSS, dHeap, dStack, dGor float64
	for _, a := range c.Addrs {
		s, err := scrape(ctx, a)
		if err != nil {
			return err
		}
		b := before[a]
		m := InstanceMem{
			Addr: a, Conns: perAddr[a], Reported: s.get("roomcast_connections"),
			RSSBefore: b.get("process_resident_memory_bytes"), RSSAfter: s.get("process_resident_memory_bytes"),
			HeapBefore: b.get("go_memstats_heap_inuse_bytes"), HeapAfter: s.get("go_memstats_heap_inuse_bytes"),
			StackBefore: b.get("go_memstats_stack_inuse_bytes"), StackAfter: s.get("go_memstats_stack_inuse_bytes"),
			GorBefore: b.get("go_goroutines"), GorAfter: s.get("go_goroutines"),
		}
		if int(m.Reported-b.get("roomcast_connections")) != m.Conns {
			r.warn("%s reports %.0f connections more than before, the tool opened %d", a, m.Reported-b.get("roomcast_connections"), m.Conns)
		}
		res.Instances = append(res.Instances, m)
		dRSS += m.RSSAfter - m.RSSBefore
		dHeap += m.HeapAfter - m.HeapBefore
		dStack += m.StackAfter - m.StackBefore
		dGor += m.GorAfter - m.GorBefore
	}
	n := float64(c.Conns)
	res.RSSPerConnKiB = dRSS / n / 1024
	res.HeapPerConnKiB = dHeap / n / 1024
	res.StackPerConnKiB = dStack / n / 1024
	res.GoroutinesPerConn = dGor / n
	res.ToolRSSPerConnKiB = (selfRSS() - toolRSS) / n / 1024
	sleepCtx(ctx, c.Duration)
	res.IdleCPU = idle.stop(ctx)
	return ctx.Err()
}

// presenceQuery is the query that asks for mode.
func presenceQuery(mode string) string {
	if mode == "count" {
		return "&presence=count"
	}
	return ""
}
