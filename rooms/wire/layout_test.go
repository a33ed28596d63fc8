package wire

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Known slots (Redis Cluster specification, redis-cli CLUSTER KEYSLOT).
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":            0x31C3 % Slots, // the CRC-16/XMODEM check value
		"foo":                  12182,
		"bar":                  5061,
		"{foo}.following":      12182,
		"x{foo}y{bar}":         12182,              // the first tag counts
		"foo{}{bar}":           Slot("foo{}{bar}"), // empty tag: the whole key
		"{user1000}.followers": Slot("user1000"),
		"{user1000}.following": Slot("user1000"),
		"no-tag-{":             int(crc16("no-tag-{") % Slots),
		"foo{{bar}}zap":        Slot("{bar"),
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("foo{}{bar}") != int(crc16("foo{}{bar}")%Slots) {
		t.Error("an empty hash tag must hash the whole key")
	}
}

// Every name of a room, and its sweep and dirty indexes, hash to one slot in both
// layouts, so no script touches two slots.
func TestLayoutKeepsARoomInOneSlot(t *testing.T) {
	for _, l := range []Layout{{}, {Prefix: "t:", Partitions: DefaultPartitions}, {Partitions: 7}} {
		for i := range 500 {
			room := fmt.Sprintf("room-%d", i)
			k := l.Room(room)
			want := Slot(k.Channel)
			names := []string{k.Meta, k.Stream, k.State, k.StateReq, k.StateClaim, k.Conns, k.Members, k.Doc, k.DocLog, k.Idem("a/b:c")}
			if l.Sharded() {
				// One sweep index and one dirty index per partition.
				names = append(names, l.DueIndex(room), l.DirtyIndex(room))
			}
			for _, n := range names {
				if Slot(n) != want {
					t.Fatalf("layout %+v room %q: %q in slot %d, its channel %q in %d", l, room, n, Slot(n), k.Channel, want)
				}
			}
			if !strings.Contains(k.Channel, room) {
				t.Fatalf("channel %q does not name room %q", k.Channel, room)
			}
		}
	}
	if got := (Layout{}).Room("doc-1").Channel; got != DefaultPrefix+"{doc-1}:msg" {
		t.Fatalf("single-Redis channel %q changed: instances of two versions would miss each other", got)
	}
}

// Partitions sit on evenly spaced slots, so redis-cli's even split of the
// slots over 3 masters gives each master a third of them.
func TestPartitionsSpreadOverTheSlots(t *testing.T) {
	l := Layout{Partitions: DefaultPartitions}
	idx := l.DueIndexes()
	if len(idx) != DefaultPartitions {
		t.Fatalf("%d indexes", len(idx))
	}
	perMaster := [3]int{}
	seen := map[int]bool{}
	for i, name := range idx {
		s := Slot(name)
		if s != i*Slots/DefaultPartitions {
			t.Fatalf("partition %d index %q in slot %d, want %d", i, name, s, i*Slots/DefaultPartitions)
		}
		seen[s] = true
		switch { // redis-cli --cluster create with 3 masters
		case s <= 5460:
			perMaster[0]++
		case s <= 10922:
			perMaster[1]++
		default:
			perMaster[2]++
		}
	}
	for _, n := range perMaster {
		if n < 42 || n > 43 {
			t.Fatalf("partitions per master %v, want 42 or 43 each", perMaster)
		}
	}
	// Rooms spread over the partitions.
	counts := make([]int, DefaultPartitions)
	for i := range 128000 {
		counts[l.Partition(fmt.Sprintf("r%d", i))]++
	}
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Fatalf("partition %d holds %d of 128000 rooms, want about 1000", p, n)
		}
	}
}

// More partitions than slots are clamped: every partition keeps a tag of
// its own, so no room's names spread over slots.
func TestClusterLayoutClampsPartitions(t *testing.T) {
	l := ClusterLayout(redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), "", Slots+5000)
	if l.Partitions != Slots {
		t.Fatalf("partitions %d, want %d", l.Partitions, Slots)
	}
	for i, idx := range l.DueIndexes() {
		if Slot(idx) != i {
			t.Fatalf("partition %d index %q in slot %d", i, idx, Slot(idx))
		}
	}
	if got := ClusterLayout(redis.NewClient(&redis.Options{}), "", 64); got.Sharded() {
		t.Fatalf("a single-Redis client got the cluster layout %+v", got)
	}
}
