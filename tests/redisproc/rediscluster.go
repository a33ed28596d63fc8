package redisproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster of 3 masters and 3 replicas owned by
// one test, with a short cluster-node-timeout (1 s) so a failover takes a
// few seconds.
type Cluster struct {
	Nodes []*Node // all six; the first three start as masters
}

// Node is one redis-server of a Cluster.
type Node struct{ *Server }

// Alive reports whether the node's process runs.
func (n *Node) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// StartCluster starts six cluster-enabled redis-servers on free ports,
// joins them with redis-cli --cluster create (one replica per master) and
// waits until every slot is served and every replica is in sync. Then it
// resets every node's INFO commandstats and errorstats, so they count what
// the test did. The nodes stop when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redisproc: redis-server is required for this test and was not found in PATH: %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redisproc: redis-cli is required for this test and was not found in PATH: %v", err)
	}
	c := &Cluster{}
	for i := range 6 {
		c.Nodes = append(c.Nodes, startNode(t, bin, i))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redisproc: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 30*time.Second)
	// Count commands and errors from here on: what the test ran, not
	// what creating the cluster did.
	for _, n := range c.Nodes {
		if err := n.Client(t).ConfigResetStat(ctx).Err(); err != nil {
			t.Fatalf("redisproc: CONFIG RESETSTAT on %s: %v", n.Addr(), err)
		}
	}
	return c
}

// startNode starts one cluster node on a free port whose bus port
// (port+10000) is free too.
func startNode(t testing.TB, bin string, i int) *Node {
	t.Helper()
	var lastErr error
	for range 10 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redisproc: find a free port: %v", err)
		}
		if port+10000 > 65535 || !portFree(port+10000) {
			continue
		}
		dir := filepath.Join(t.TempDir(), "node-"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := &Server{Port: port, bin: bin, dir: dir, args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "1000",
			"--cluster-allow-replica-migration", "no",
			// A replica syncs at once (the default waits 5 s for more).
			"--repl-diskless-sync-delay", "0",
		}}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return &Node{s}
		}
	}
	t.Fatalf("redisproc: start cluster node %d: %v", i, lastErr)
	return nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// URL is the cluster form of ROOMCAST_REDIS_URL naming every node.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Client returns a client of the node, closed when the test ends.
func (n *Node) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: n.Addr(), DisableIdentity: true, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the node with SIGKILL, as a crash would.
func (n *Node) Kill() { n.Server.Kill() }

// shard is one master's view: its slot ranges and replicas.
type shard struct {
	master   string
	replicas []string
	slots    [][2]int
}

// view reads CLUSTER NODES from the first live node that answers.
func (c *Cluster) view() ([]shard, error) {
	var lastErr error = fmt.Errorf("no live node")
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), DisableIdentity: true, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		text, err := cl.ClusterNodes(ctx).Result()
		cancel()
		_ = cl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return parseNodes(text), nil
	}
	return nil, lastErr
}

// parseNodes reads CLUSTER NODES: live masters with their slots and
// live replicas.
func parseNodes(text string) []shard {
	byID := map[string]*shard{}
	type repl struct{ addr, master string }
	var repls []repl
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		id, addr, flags, masterID := f[0], f[1], f[2], f[3]
		if i := strings.IndexByte(addr, '@'); i >= 0 {
			addr = addr[:i]
		}
		if strings.Contains(flags, "fail") && !strings.Contains(flags, "fail?") {
			continue
		}
		switch {
		case strings.Contains(flags, "master"):
			s := &shard{master: addr}
			for _, r := range f[8:] {
				if strings.HasPrefix(r, "[") {
					continue // a slot being migrated
				}
				lo, hi, found := strings.Cut(r, "-")
				a, _ := strconv.Atoi(lo)
				b := a
				if found {
					b, _ = strconv.Atoi(hi)
				}
				s.slots = append(s.slots, [2]int{a, b})
			}
			byID[id] = s
		case strings.Contains(flags, "slave"):
			repls = append(repls, repl{addr, masterID})
		}
	}
	for _, r := range repls {
		if s := byID[r.master]; s != nil {
			s.replicas = append(s.replicas, r.addr)
		}
	}
	var out []shard
	for _, s := range byID {
		if len(s.slots) > 0 {
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].slots[0][0] < out[j].slots[0][0] })
	return out
}

func (c *Cluster) node(t testing.TB, addr string) *Node {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	t.Fatalf("redisproc: no node %s in the cluster", addr)
	return nil
}

func (c *Cluster) mustView(t testing.TB) []shard {
	t.Helper()
	v, err := c.view()
	if err != nil {
		t.Fatalf("redisproc: read the cluster's nodes: %v", err)
	}
	return v
}

// Masters returns the masters that serve slots now, in slot order.
func (c *Cluster) Masters(t testing.TB) []*Node {
	t.Helper()
	var out []*Node
	for _, s := range c.mustView(t) {
		out = append(out, c.node(t, s.master))
	}
	return out
}

// MasterOfSlot returns the master that serves slot now, or nil while
// none does (its master failed and no replica has taken over yet).
func (c *Cluster) MasterOfSlot(t testing.TB, slot int) *Node {
	t.Helper()
	for _, s := range c.mustView(t) {
		for _, r := range s.slots {
			if slot >= r[0] && slot <= r[1] {
				return c.node(t, s.master)
			}
		}
	}
	return nil
}

// ReplicaOf returns a replica of master. The node whose view is read may
// learn of the replica a moment after the cluster is healthy (gossip), so
// it is looked for again for a few seconds.
func (c *Cluster) ReplicaOf(t testing.TB, master *Node) *Node {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range c.mustView(t) {
			if s.master == master.Addr() && len(s.replicas) > 0 {
				return c.node(t, s.replicas[0])
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redisproc: master %s has no replica", master.Addr())
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok, they
// agree on which master serves each of the 16384 slots, and every live
// replica's link to its master is up.
func (c *Cluster) WaitHealthy(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var why error
	for {
		if why = c.healthy(); why == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redisproc: cluster not healthy after %v: %v", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var first string
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), DisableIdentity: true, Protocol: 2, MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("node %s: cluster_state not ok", n.Addr())
		}
		var nodes, repl string
		if err == nil {
			nodes, err = cl.ClusterNodes(ctx).Result()
		}
		if err == nil {
			repl, err = cl.Info(ctx, "replication").Result()
		}
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("replica %s: link to its master is not up", n.Addr())
		}
		covered := 0
		for _, s := range parseNodes(nodes) {
			for _, r := range s.slots {
				covered += r[1] - r[0] + 1
			}
		}
		if covered != 16384 {
			return fmt.Errorf("node %s sees %d slots served", n.Addr(), covered)
		}
		// Compare masters and slots only: replica lists may lag.
		owners := slotOwners(parseNodes(nodes))
		if first == "" {
			first = owners
		} else if owners != first {
			return fmt.Errorf("nodes disagree on slot owners")
		}
	}
	return nil
}

func slotOwners(shards []shard) string {
	var b strings.Builder
	for _, s := range shards {
		fmt.Fprintf(&b, "%s:%v;", s.master, s.slots)
	}
	return b.String()
}

// MoveSlot migrates slot, keys and all, from the master that serves it to
// the master to, the way redis-cli --cluster reshard does: IMPORTING and
// MIGRATING, MIGRATE of its keys in batches, then SETSLOT NODE on every
// master.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to *Node) {
	t.Helper()
	ctx := context.Background()
	from := c.MasterOfSlot(t, slot)
	if from == nil || from.Addr() == to.Addr() {
		t.Fatalf("redisproc: move slot %d: served by %v, target %s", slot, from, to.Addr())
	}
	fc, tc := from.Client(t), to.Client(t)
	fromID, err := fc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("redisproc: CLUSTER MYID: %v", err)
	}
	toID, err := tc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("redisproc: CLUSTER MYID: %v", err)
	}
	must := func(cl *redis.Client, args ...any) {
		t.Helper()
		if err := cl.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("redisproc: %v on %s: %v", args, cl.Options().Addr, err)
		}
	}
	must(tc, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	must(fc, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	host, port, _ := strings.Cut(to.Addr(), ":")
	for {
		keys, err := fc.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			t.Fatalf("redisproc: CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(fc, args...)
	}
	// The target first, then the source, then the others (the order
	// redis-cli uses, so no node answers for a slot it gave away).
	must(tc, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	must(fc, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	for _, m := range c.Masters(t) {
		if m.Addr() != from.Addr() && m.Addr() != to.Addr() {
			must(m.Client(t), "CLUSTER", "SETSLOT", slot, "NODE", toID)
		}
	}
}
