package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

func writeJSON(w io.Writer, res *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// writeTable prints the human summary of a run.
func writeTable(w io.Writer, res *Result) {
	fmt.Fprintf(w, "roomcast loadgen: %s on %s (%.1f s)\n", res.Scenario, strings.Join(res.Addrs, ", "), res.Elapsed)
	switch {
	case res.Fanout != nil:
		f := res.Fanout
		fmt.Fprintf(w, "%d rooms × %d subscribers, %d publisher connections (%d users), data %d B, publishers on %s, subscribers on %s, setup %.1f s\n",
			f.Rooms, f.SubsPerRoom, f.PubConns, f.PubUsers, f.Size, res.Params["pub_addrs"], res.Params["sub_addrs"], f.SetupS)
		writeSteps(w, f.Steps)
		writeLoss(w, f)
	case res.Connections != nil:
		c := res.Connections
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "connections\t%d in %d rooms, %d dialers\n", c.Conns, c.Rooms, c.Concurrency)
		if c.Opened < c.Conns {
			fmt.Fprintf(tw, "FAILED\tafter opening %d of %d in %.2f s\n", c.Opened, c.Conns, c.RampS)
			tw.Flush()
			break
		}
		fmt.Fprintf(tw, "connect rate\t%.0f conns/s (%d in %.2f s; dial→welcome p50 %s p99 %s max %s)\n", c.ConnectPerS, c.Conns, c.RampS,
			fmtMS(c.ConnectLat.P50), fmtMS(c.ConnectLat.P99), fmtMS(c.ConnectLat.Max))
		fmt.Fprintf(tw, "server CPU (ramp)\t%.2f s, %.2f cores, %.0f µs per connect; tool %.2f cores\n", c.RampCPU.ServerS, c.RampCPU.ServerCores, c.ServerUSPerConnect, c.RampCPU.ToolCores)
		fmt.Fprintf(tw, "per connection\tRSS %.1f KiB, heap in use %.1f KiB, stacks %.1f KiB, goroutines %.2f\n", c.RSSPerConnKiB, c.HeapPerConnKiB, c.StackPerConnKiB, c.GoroutinesPerConn)
		for _, m := range c.Instances {
			fmt.Fprintf(tw, "  %s\troomcast_connections %.0f (opened %d), RSS %.1f → %.1f MiB, goroutines %.0f → %.0f\n", m.Addr, m.Reported, m.Conns,
				m.RSSBefore/(1<<20), m.RSSAfter/(1<<20), m.GorBefore, m.GorAfter)
		}
		fmt.Fprintf(tw, "server CPU (idle)\t%.3f cores while holding them (%.1f s)\n", c.IdleCPU.ServerCores, c.IdleCPU.WindowS)
		fmt.Fprintf(tw, "tool\tRSS %.1f KiB per connection\n", c.ToolRSSPerConnKiB)
		tw.Flush()
	case res.Presence != nil:
		p := res.Presence
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		mode := ""
		if p.UserMode == "count" {
			mode = " (presence=count)"
		}
		fmt.Fprintf(tw, "presence storm\t%d users%s + %d observers in one room over %d instance(s)\n", p.Users, mode, p.Observers, p.Instances)
		if p.FailedJoins > 0 {
			fmt.Fprintf(tw, "FAILED JOINS\t%d of %d: %s\n", p.FailedJoins, p.Users, sortedCloses(p.FailReasons))
		}
		if p.UserMode == "count" {
			fmt.Fprintf(tw, "join\tramp %.2f s (dial→welcome p50 %s p99 %s max %s); every observer's list right %.1f ms after the last join\n",
				p.JoinRampS, fmtMS(p.JoinLatency.P50), fmtMS(p.JoinLatency.P99), fmtMS(p.JoinLatency.Max), p.JoinConverge*1e3)
			fmt.Fprintf(tw, "  counts\tevery user's count right %.1f ms after the last join (%d users not, %d clients in all); %d presence frames to count-mode users\n",
				p.CountConverge*1e3, p.CountNotConverged, p.NotConverged, p.CountModeFrames)
		} else {
			fmt.Fprintf(tw, "join\tramp %.2f s (dial→welcome p50 %s p99 %s max %s); every client's list right %.1f ms after the last join (%d clients not)\n",
				p.JoinRampS, fmtMS(p.JoinLatency.P50), fmtMS(p.JoinLatency.P99), fmtMS(p.JoinLatency.Max), p.JoinConverge*1e3, p.NotConverged)
		}
		fmt.Fprintf(tw, "  server CPU\t%.2f s, %.0f µs per join; redis-server %.2f s; tool %.2f cores\n", p.JoinCPU.ServerS, p.ServerUSJoin, p.JoinCPU.RedisS, p.JoinCPU.ToolCores)
		fmt.Fprintf(tw, "leave\tramp %.2f s; every observer's list empty %.1f ms after the last leave\n", p.LeaveRampS, p.LeaveConverge*1e3)
		fmt.Fprintf(tw, "  server CPU\t%.2f s, %.0f µs per leave; redis-server %.2f s\n", p.LeaveCPU.ServerS, p.ServerUSLeave, p.LeaveCPU.RedisS)
		if p.RedisJoinBy != nil {
			fmt.Fprintf(tw, "redis\t%.1f commands per join (%s)\n", p.RedisPerJoin, topCalls(p.RedisJoinBy, 5))
			fmt.Fprintf(tw, "\t%.1f commands per leave (%s)\n", p.RedisPerLeave, topCalls(p.RedisLeaveBy, 5))
		}
		exact := "exact: one join and one leave per user at every observer"
		if !p.CountsExact {
			exact = "NOT EXACT: " + strings.Join(p.Violations, " | ")
		}
		fmt.Fprintf(tw, "counts\t%s (joins %v, leaves %v)\n", exact, p.ObserverJoins, p.ObserverLeaves)
		for _, e := range p.ObserverEnds {
			fmt.Fprintf(tw, "\t%s\n", e)
		}
		fmt.Fprintf(tw, "\trepeat joins %d (allowed: snapshot races), syncs %d, unknown members %d\n", p.RepeatJoins, p.Syncs, p.Unknown)
		tw.Flush()
	case res.Slow != nil:
		s := res.Slow
		f := s.Room
		fmt.Fprintf(w, "one room of %d subscribers, %d publisher connections, data %d B, plus one client that stops reading\n", f.SubsPerRoom, f.PubConns, f.Size)
		writeSteps(w, []StepResult{s.Before, s.Stuck, s.After})
		drop := "never"
		if s.DropAfterS >= 0 {
			drop = fmt.Sprintf("%.2f s after it stopped reading", s.DropAfterS)
		}
		fmt.Fprintf(w, "slow client: dropped %s (server counted %.0f), socket ended with %s after %d messages\n", drop, s.ServerDropped, s.SlowEnd, s.SlowMessages)
		fmt.Fprintf(w, "others' p99 while it was stuck: %.2f× before\n", s.P99StuckRatio)
		writeLoss(w, f)
	}
	if len(res.Closes) > 0 {
		fmt.Fprintf(w, "unexpected closes: %s\n", sortedCloses(res.Closes))
	}
	for _, x := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}

func writeSteps(w io.Writer, steps []StepResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\toffered/s\tpublished/s\tdelivered/s\tp50\tp95\tp99\tmax\tserver cores\tserver µs/msg\ttool cores\ttool µs/msg\t")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.Name, s.OfferedDelivered, s.PublishedPerS, s.DeliveredPerS,
			fmtMS(s.Latency.P50), fmtMS(s.Latency.P95), fmtMS(s.Latency.P99), fmtMS(s.Latency.Max),
			s.CPU.ServerCores, s.ServerUSPerMsg, s.CPU.ToolCores, s.ToolUSPerMsg)
	}
	tw.Flush()
	for _, s := range steps {
		if s.CPU.RedisS > 0 && s.DeliveredAll > 0 {
			fmt.Fprintf(w, "  %s: redis-server %.2f cores, %.2f µs/msg\n", s.Name, s.CPU.RedisCores, s.CPU.RedisS*1e6/float64(s.DeliveredAll))
		}
		if len(s.CPU.PerInstanceS) > 1 && s.CPU.WindowS > 0 {
			var parts []string
			for _, a := range sortedKeys(s.CPU.PerInstanceS) {
				parts = append(parts, fmt.Sprintf("%s %.2f", a, s.CPU.PerInstanceS[a]/s.CPU.WindowS))
			}
			fmt.Fprintf(w, "  %s: server cores by instance: %s\n", s.Name, strings.Join(parts, ", "))
		}
	}
	if len(steps) > 0 {
		fmt.Fprintf(w, "(server CPU from %s; µs/msg over every message frame the tool read)\n", steps[0].CPU.Source)
	}
}

func sortedKeys(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func writeLoss(w io.Writer, f *FanoutResult) {
	fmt.Fprintf(w, "delivery: %d published, %d of %d expected deliveries arrived, %d missing (loss %.4f%%), %d duplicates",
		f.Published, f.Delivered, f.Expected, f.Missing, 100*f.Loss, f.Duplicates)
	if f.Foreign > 0 {
		fmt.Fprintf(w, ", %d from another room's publisher", f.Foreign)
	}
	fmt.Fprintln(w)
}
