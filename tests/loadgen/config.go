package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is one run of one scenario. Zero values take the scenario's
// preset (see withDefaults), so a test sets only what it shrinks.
type Config struct {
	Scenario string   // fanout | connections | presence | slow
	Addrs    []string // roomcast instances, host:port on loopback
	PubAddrs []string // fanout/slow: where publishers connect (default: first of Addrs)
	SubAddrs []string // fanout/slow: where subscribers connect (default: last of Addrs)
	Secret   string   // HS256 secret of the instances
	Pids     []int    // server pids per address (0: use /metrics)
	Redis    string   // presence: Redis address for INFO commandstats

	Duration time.Duration // fanout: each step; connections: hold; presence: convergence bound; slow: each window
	Warmup   time.Duration // fanout: start of each step not measured
	Timeout  time.Duration // the whole run

	// fanout, slow
	Rooms      int       // rooms (also connections)
	Subs       int       // subscribers per room
	Pubs       int       // publisher users (connections: max(Pubs, Rooms), spread over rooms)
	Rate       float64   // published msgs/s, total
	Load       float64   // delivered msgs/s target (= Rate × Subs); overrides Rate
	Rates      []float64 // delivered msgs/s, one step each; overrides Load and Rate
	Size       int       // bytes of each message's data
	ServerRate int       // the instances' ROOMCAST_RATE (per-connection publish limit)

	// connections
	Conns        int
	PresenceMode string // "full" (default) or "count": the connections (presence: the storm's users, not the observers) join with presence=count
	Concurrency  int    // parallel dialers
	Settle       time.Duration

	// presence
	Users     int
	Ramp      time.Duration
	Observers int

	// slow
	Stuck time.Duration // longest wait for the slow client to be dropped

	// GoReaders reads each connection on its own goroutine (Go's netpoller)
	// instead of the epoll pollers.
	GoReaders bool

	Progress io.Writer // one line per second; nil: silent
	Quiet    bool
}

func (c *Config) withDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.ServerRate <= 0 {
		c.ServerRate = 50
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	switch c.Scenario {
	case "fanout":
		def(&c.Rooms, 100)
		def(&c.Subs, 100)
		def(&c.Pubs, 10)
		def(&c.Size, 128)
		if c.Rate <= 0 && c.Load <= 0 && len(c.Rates) == 0 {
			c.Load = 50000
		}
		defD(&c.Duration, 10*time.Second)
		if c.Warmup < 0 {
			c.Warmup = 0
		} else if c.Warmup == 0 {
			c.Warmup = min(2*time.Second, c.Duration/4)
		}
	case "connections":
		def(&c.Conns, 10000)
		def(&c.Rooms, 100)
		defD(&c.Duration, 3*time.Second)
		defD(&c.Settle, 3*time.Second)
	case "presence":
		def(&c.Users, 2000)
		def(&c.Observers, 3)
		defD(&c.Ramp, 2*time.Second)
		defD(&c.Duration, 20*time.Second)
	case "slow":
		c.Rooms = 1
		def(&c.Subs, 50)
		def(&c.Pubs, 10)
		// Big enough messages that a stopped reader fills the kernel's
		// socket buffers (several MB on loopback) within seconds.
		def(&c.Size, 2048)
		if c.Rate <= 0 && c.Load <= 0 && len(c.Rates) == 0 {
			c.Rate = 400
		}
		defD(&c.Duration, 5*time.Second)
		defD(&c.Stuck, 30*time.Second)
	}
	if len(c.PubAddrs) == 0 && len(c.Addrs) > 0 {
		c.PubAddrs = c.Addrs[:1]
	}
	if len(c.SubAddrs) == 0 && len(c.Addrs) > 0 {
		c.SubAddrs = c.Addrs[len(c.Addrs)-1:]
	}
}

func def(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

func defD(p *time.Duration, v time.Duration) {
	if *p <= 0 {
		*p = v
	}
}

func (c *Config) validate() error {
	switch c.Scenario {
	case "fanout", "connections", "presence", "slow":
	default:
		return fmt.Errorf("unknown scenario %q: want fanout, connections, presence or slow", c.Scenario)
	}
	if len(c.Addrs) == 0 {
		return errors.New("no address: -addr 127.0.0.1:8080[,127.0.0.1:8081]")
	}
	for _, list := range [][]string{c.Addrs, c.PubAddrs, c.SubAddrs} {
		for _, a := range list {
			if err := checkLoopback(a); err != nil {
				return err
			}
		}
	}
	if c.Secret == "" {
		return errors.New("no JWT secret: pass -secret or set ROOMCAST_JWT_SECRET (the instances' HS256 secret)")
	}
	if len(c.Pids) > 0 && len(c.Pids) != len(c.Addrs) {
		return fmt.Errorf("-pid lists %d pids for %d addresses", len(c.Pids), len(c.Addrs))
	}
	if c.PresenceMode != "" && c.PresenceMode != "full" && c.PresenceMode != "count" {
		return fmt.Errorf("-presence-mode %q: want full or count", c.PresenceMode)
	}
	if c.Scenario == "fanout" || c.Scenario == "slow" {
		if c.Size < 48 {
			return fmt.Errorf("-size %d: at least 48 bytes hold the timestamp and sequence", c.Size)
		}
		if c.Size > 60000 {
			return fmt.Errorf("-size %d: over the server's default frame limit", c.Size)
		}
	}
	return nil
}

// checkLoopback refuses anything but a loopback host:port: this tool floods
// what it points at.
func checkLoopback(addr string) error {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v (want host:port)", addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("address %q: bad port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not loopback: this load tool only targets 127.0.0.0/8, ::1 or localhost", addr)
	}
	return nil
}

func splitHostPort(addr string) (string, string, error) {
	return net.SplitHostPort(addr)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
