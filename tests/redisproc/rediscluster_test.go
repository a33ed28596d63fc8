package redisproc

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The cluster the tests run on: 3 masters, 3 replicas, every slot served;
// kill -9 of a master promotes its replica with the data it had.
func TestClusterStartsAndFailsOver(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t)
	t.Logf("cluster up in %v", time.Since(start).Round(10*time.Millisecond))
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("%d masters", len(masters))
	}
	ctx := context.Background()
	cl := c.Client(t)
	for i := range 20 {
		if err := cl.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	victim := c.MasterOfSlot(t, 0)
	replica := c.ReplicaOf(t, victim)
	// A key in slot 0 ("3560" hashes there), written and replicated.
	vc := victim.Client(t)
	if err := vc.Set(ctx, "{3560}", "kept", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := vc.Do(ctx, "WAIT", 1, 1000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d %v", n, err)
	}
	killed := time.Now()
	victim.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for m := c.MasterOfSlot(t, 0); m == nil || m.Addr() != replica.Addr(); m = c.MasterOfSlot(t, 0) {
		if time.Now().After(deadline) {
			t.Fatal("replica not promoted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.WaitHealthy(t, 20*time.Second)
	t.Logf("replica promoted and cluster healthy %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	if v, err := replica.Client(t).Get(ctx, "{3560}").Result(); err != nil || v != "kept" {
		t.Fatalf("key after failover: %q %v", v, err)
	}
}
