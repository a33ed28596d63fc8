// Command loadgen measures roomcast instances over real WebSocket
// connections: fan-out throughput and latency, memory and goroutines per
// idle connection, presence storms, slow consumers. See -h.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `loadgen drives roomcast instances (loopback only) with many real WebSocket
connections and reports what they delivered, how fast, and at what cost.

usage: go run ./tests/loadgen -scenario fanout|connections|presence|slow [flags]

scenarios (each a preset; every flag left at 0 takes the preset):
  fanout       -rooms 100 -subs 100 -pubs 10 -load 50000 -size 128 -duration 10s
               rooms × subs subscribers read; max(pubs, rooms) publisher connections
               (pubs users spread over the rooms) publish timestamped, numbered
               messages. Reports delivered/s, latency p50/p95/p99/max, loss and
               duplicates per subscriber, server CPU µs per delivered message.
               -rates 10000,25000,50000,100000 runs one step per offered load;
               -plot out.svg draws latency percentiles against it.
  connections  -conns 10000 -rooms 100 -concurrency 64 -settle 3s -duration 3s
               opens idle connections; reports connects/s and, from /metrics
               before and after, RSS, heap, stacks and goroutines per connection.
               Measure on a freshly started instance. fasthttp keeps up to
               -concurrency idle accept workers for 10-20 s: with few connections
               they show in goroutines per connection.
  presence     -users 2000 -ramp 2s -observers 3 -duration 20s
               users join one room over the ramp (spread over every -addr) and
               leave over the ramp; reports when every member list was right,
               exact join/leave counts at the observers, Redis commands per
               join with -redis. -presence-mode count: the users join with
               presence=count and must each end up counting every member
               (the observers stay in full mode and still count exactly).
  slow         -subs 50 -pubs 10 -rate 400 -size 2048 -duration 5s -stuck 30s
               one busy room; one client stops reading: the others' latency
               before/while/after, and that the slow one was closed with 4008.

rates: -rate is published msgs/s (all publishers together); -load and -rates are
delivered msgs/s (published × subscribers per room), the figure the targets use.
The server limits each connection to ROOMCAST_RATE frames/s (default 50): the tool
refuses a plan above 90% of -server-rate per publisher connection.

server CPU is read from /proc/<pid>/stat with -pid (a pid per -addr, or "auto" to
find the listening process) and from /metrics process_cpu_seconds_total otherwise.

flags:
`

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var c Config
	var addrs, pubAddrs, subAddrs, pids, rates, plot string
	var jsonOut bool
	envRate, _ := strconv.Atoi(os.Getenv("ROOMCAST_RATE"))
	fs.StringVar(&c.Scenario, "scenario", "fanout", "fanout | connections | presence | slow")
	fs.StringVar(&addrs, "addr", "127.0.0.1:8080", "roomcast instances, comma-separated host:port (loopback only)")
	fs.StringVar(&pubAddrs, "pub-addr", "", "fanout/slow: instances for publishers (default: the first -addr)")
	fs.StringVar(&subAddrs, "sub-addr", "", "fanout/slow: instances for subscribers (default: the last -addr)")
	fs.StringVar(&c.Secret, "secret", "", "HS256 secret of the instances (default $ROOMCAST_JWT_SECRET; never printed)")
	fs.StringVar(&pids, "pid", "", `server pids, one per -addr, for CPU from /proc/<pid>/stat; "auto" finds them`)
	fs.StringVar(&c.Redis, "redis", "", "Redis host:port or redis:// URL (loopback): its CPU next to the servers' (INFO cpu), and commands per join in presence (INFO commandstats)")
	fs.DurationVar(&c.Duration, "duration", 0, "fanout: each step; connections: hold time; presence: convergence bound; slow: each window")
	fs.DurationVar(&c.Warmup, "warmup", 0, "fanout/slow: unmeasured start of each step (default min(2s, duration/4) for fanout, 0 for slow)")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.IntVar(&c.Rooms, "rooms", 0, "rooms (fanout 100, connections 100)")
	fs.IntVar(&c.Subs, "subs", 0, "subscribers per room (fanout 100, slow 50)")
	fs.IntVar(&c.Pubs, "pubs", 0, "publisher users (fanout 10, slow 10); connections: max(pubs, rooms)")
	fs.Float64Var(&c.Rate, "rate", 0, "published msgs/s in total")
	fs.Float64Var(&c.Load, "load", 0, "delivered msgs/s offered (published = load / subs); fanout default 50000")
	fs.StringVar(&rates, "rates", "", "delivered msgs/s per step, comma-separated (e.g. 10000,25000,50000,100000)")
	fs.IntVar(&c.Size, "size", 0, "bytes of each message's data: timestamp, sequence, padding (fanout 128, slow 2048)")
	fs.IntVar(&c.ServerRate, "server-rate", max(envRate, 50), "the instances' ROOMCAST_RATE, per-connection frames/s (taken from $ROOMCAST_RATE when set)")
	fs.IntVar(&c.Conns, "conns", 0, "connections: how many (10000)")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "parallel dialers")
	fs.StringVar(&c.PresenceMode, "presence-mode", "full", "connections, and presence's users (its observers stay full): full (every member and event) or count (presence=count: the member count only)")
	fs.DurationVar(&c.Settle, "settle", 0, "connections: wait after the ramp before reading /metrics (3s)")
	fs.IntVar(&c.Users, "users", 0, "presence: users (2000)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "presence: join (and leave) ramp (2s)")
	fs.IntVar(&c.Observers, "observers", 0, "presence: clients that stay and verify exact join/leave counts (3)")
	fs.DurationVar(&c.Stuck, "stuck", 0, "slow: longest wait for the server to drop the slow client (30s)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&plot, "plot", "", "fanout: write an SVG of latency percentiles versus offered load to this file")
	fs.BoolVar(&c.Quiet, "q", false, "no progress line")
	fs.BoolVar(&c.GoReaders, "go-readers", false, "read each connection on its own goroutine instead of epoll pollers (for comparison)")
	var cpuProfile string
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write the tool's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "warmup" && c.Warmup == 0 {
			c.Warmup = -1 // an explicit 0: none
		}
	})
	if c.Secret == "" {
		c.Secret = os.Getenv("ROOMCAST_JWT_SECRET")
	}
	c.Addrs, c.PubAddrs, c.SubAddrs = splitList(addrs), splitList(pubAddrs), splitList(subAddrs)
	for _, f := range splitList(rates) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(stderr, "loadgen: -rates: bad rate %q\n", f)
			return 2
		}
		c.Rates = append(c.Rates, v)
	}
	if plot != "" && c.Scenario != "fanout" {
		fmt.Fprintln(stderr, "loadgen: -plot draws the fanout scenario's steps; use it with -scenario fanout")
		return 2
	}
	if pids != "" {
		for i, a := range c.Addrs {
			if pids == "auto" {
				pid, err := findListenerPid(a)
				if err != nil {
					fmt.Fprintf(stderr, "loadgen: -pid auto: %s: %v\n", a, err)
					return 2
				}
				c.Pids = append(c.Pids, pid)
				continue
			}
			ps := splitList(pids)
			if i >= len(ps) {
				break
			}
			pid, err := strconv.Atoi(ps[i])
			if err != nil {
				fmt.Fprintf(stderr, "loadgen: -pid: bad pid %q\n", ps[i])
				return 2
			}
			c.Pids = append(c.Pids, pid)
		}
		if pids != "auto" && len(splitList(pids)) != len(c.Addrs) {
			fmt.Fprintf(stderr, "loadgen: -pid lists %d pids for %d addresses\n", len(splitList(pids)), len(c.Addrs))
			return 2
		}
	}
	if !c.Quiet {
		c.Progress = stderr
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, c)
	if res != nil {
		if jsonOut {
			if err != nil {
				res.Warnings = append(res.Warnings, "error: "+err.Error())
			}
			_ = writeJSON(stdout, res)
		} else {
			writeTable(stdout, res)
		}
		if plot != "" && res.Fanout != nil && len(res.Fanout.Steps) > 0 {
			if perr := writePlotFile(plot, res); perr != nil {
				fmt.Fprintln(stderr, "loadgen: plot:", perr)
				if err == nil {
					err = perr
				}
			} else if !c.Quiet {
				fmt.Fprintln(stderr, "loadgen: wrote", plot)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	return 0
}

func writePlotFile(path string, res *Result) error {
	f := res.Fanout
	title := "roomcast fan-out: latency vs offered load"
	where := res.Params["pub_addrs"] + " → " + res.Params["sub_addrs"]
	if res.Params["pub_addrs"] == res.Params["sub_addrs"] {
		where = "one instance " + res.Params["pub_addrs"]
	}
	sub := fmt.Sprintf("%d rooms × %d subscribers, %d publisher connections, %d B data; %s; %s",
		f.Rooms, f.SubsPerRoom, f.PubConns, f.Size, where, time.Now().Format("2006-01-02"))
	var b strings.Builder
	if err := writePlot(&b, title, sub, f.Steps); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
