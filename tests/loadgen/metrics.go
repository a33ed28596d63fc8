package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// promSample is one scrape of an instance's /metrics: unlabelled series by
// name, labelled ones by their full "name{labels}" text.
type promSample map[string]float64

var httpClient = &http.Client{Timeout: 5 * time.Second}

func scrape(ctx context.Context, addr string) (promSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET http://%s/metrics: %s", addr, resp.Status)
	}
	return parseProm(resp.Body)
}

func parseProm(r io.Reader) (promSample, error) {
	s := promSample{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	return s, sc.Err()
}

// get returns a series, or NaN-free 0 when absent.
func (s promSample) get(name string) float64 { return s[name] }

// cpuSource reads one instance's CPU seconds: from /proc/<pid>/stat when
// the pid is known (no HTTP round trip, nothing added to the server's own
// work), else from process_cpu_seconds_total on /metrics.
type cpuSource struct {
	addr string
	pid  int
}

func (c cpuSource) read(ctx context.Context) (float64, error) {
	if c.pid > 0 {
		return procCPU(c.pid)
	}
	s, err := scrape(ctx, c.addr)
	if err != nil {
		return 0, err
	}
	v, ok := s["process_cpu_seconds_total"]
	if !ok {
		return 0, fmt.Errorf("%s/metrics has no process_cpu_seconds_total", c.addr)
	}
	return v, nil
}

var clkTck = 100.0 // USER_HZ; 100 on every Linux this runs on

// procCPU is utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may contain spaces; fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return (ut + st) / clkTck, nil
}

// selfCPU is this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// selfRSS is this process's resident set in bytes.
func selfRSS() float64 { return procRSS(os.Getpid()) }

func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// findListenerPid finds the process listening on the loopback TCP addr
// (host:port) through /proc/net/tcp{,6} and /proc/*/fd. It only sees
// processes of the same user.
func findListenerPid(addr string) (int, error) {
	_, portStr, err := splitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, _ := strconv.Atoi(portStr)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			local := fs[1]
			j := strings.LastIndexByte(local, ':')
			p, err := strconv.ParseUint(local[j+1:], 16, 16)
			if err != nil || int(p) != port {
				continue
			}
			inodes["socket:["+fs[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no listening socket on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range procs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			l, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err == nil && inodes[l] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
				if pid != os.Getpid() {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("port %d is listened on by a process this user cannot see", port)
}

// cpuWindow measures server CPU (every instance) and the tool's own CPU
// over a window.
type cpuWindow struct {
	srcs   []cpuSource
	start  time.Time
	server []float64
	self   float64
	rdb    *redis.Client
	redis  float64
}

func startCPU(ctx context.Context, srcs []cpuSource, rdb *redis.Client) *cpuWindow {
	w := &cpuWindow{srcs: srcs, start: time.Now(), self: selfCPU(), rdb: rdb}
	if rdb != nil {
		w.redis, _ = redisCPU(ctx, rdb)
	}
	for _, s := range srcs {
		v, err := s.read(ctx)
		if err != nil {
			v = -1
		}
		w.server = append(w.server, v)
	}
	return w
}

// cpuFigures is CPU time over a measured window.
type cpuFigures struct {
	WindowS      float64            `json:"window_s"`
	ServerS      float64            `json:"server_cpu_s"`
	ServerCores  float64            `json:"server_cores"` // average cores busy
	PerInstanceS map[string]float64 `json:"server_cpu_s_by_instance"`
	RedisS       float64            `json:"redis_cpu_s,omitempty"` // with -redis: redis-server's CPU
	RedisCores   float64            `json:"redis_cores,omitempty"`
	ToolS        float64            `json:"tool_cpu_s"`
	ToolCores    float64            `json:"tool_cores"`
	Source       string             `json:"server_cpu_source"`
	Err          string             `json:"error,omitempty"`
}

func (w *cpuWindow) stop(ctx context.Context) cpuFigures {
	f := cpuFigures{WindowS: time.Since(w.start).Seconds(), PerInstanceS: map[string]float64{}}
	f.ToolS = selfCPU() - w.self
	if w.rdb != nil {
		if v, err := redisCPU(ctx, w.rdb); err == nil {
			f.RedisS = v - w.redis
		}
	}
	src := "/metrics process_cpu_seconds_total"
	for i, s := range w.srcs {
		if s.pid > 0 {
			src = "/proc/<pid>/stat"
		}
		v, err := s.read(ctx)
		if err != nil || w.server[i] < 0 {
			f.Err = fmt.Sprintf("server CPU of %s unreadable: %v", s.addr, err)
			continue
		}
		d := v - w.server[i]
		f.PerInstanceS[s.addr] += d
		f.ServerS += d
	}
	f.Source = src
	if f.WindowS > 0 {
		f.ServerCores = f.ServerS / f.WindowS
		f.ToolCores = f.ToolS / f.WindowS
		f.RedisCores = f.RedisS / f.WindowS
	}
	return f
}

// redisCPU is redis-server's used_cpu_user + used_cpu_sys (INFO cpu).
func redisCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total, nil
}
