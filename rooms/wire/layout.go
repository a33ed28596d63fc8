package wire

import (
	"hash/fnv"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A Layout names the keys and channels of rooms in Redis. There are two:
//
//   - on a single Redis (Partitions 0) a room's names carry the room as
//     their hash tag, "<prefix>{<room>}:<name>", and the presence sweep
//     index is one key, "<prefix>due";
//   - on a Redis Cluster (Partitions > 0) every room belongs to one of
//     Partitions partitions, and its names carry the partition's tag:
//     "<prefix>{<tag>}/<room>/<name>". Each partition has its own sweep
//     index, "<prefix>{<tag>}/due", in the same slot as its rooms, so
//     every script touches one slot and the sweeper and the room list
//     read one index per partition. Partition i's tag is chosen to hash
//     to slot i×16384/Partitions: partitions spread evenly over the
//     slot range, and so over the masters of a cluster whose slots are
//     split in even ranges (what redis-cli --cluster create does).
//
// Room names cannot hold '{', '}' or '/' (rooms.ValidName), so no two
// rooms' names can meet. Every instance on one Redis must use the same
// Layout: its names are the contract between them.
type Layout struct {
	// Prefix starts every name. Zero value means DefaultPrefix.
	Prefix string
	// Partitions is the number of room partitions on a Redis Cluster; 0
	// means a single Redis. At most Slots (ClusterLayout clamps it). See
	// DefaultPartitions.
	Partitions int
}

// DefaultPartitions is the number of partitions on a Redis Cluster unless
// configured: enough to spread rooms over a cluster of up to about 40
// masters evenly; each partition costs the sweeper one call per sweep.
const DefaultPartitions = 128

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Sharded reports whether l is a Redis Cluster layout, whose room
// channels use sharded pub/sub (SSUBSCRIBE, SPUBLISH).
func (l Layout) Sharded() bool { return l.Partitions > 0 }

func (l Layout) prefix() string { return orDefault(l.Prefix) }

// Room returns the keys of room.
func (l Layout) Room(room string) Keys {
	if !l.Sharded() {
		return RoomKeys(l.Prefix, room)
	}
	return keysUnder(l.prefix() + "{" + l.tag(l.Partition(room)) + "}/" + room + "/")
}

// Partition returns the partition of room (0 on a single Redis).
func (l Layout) Partition(room string) int {
	if !l.Sharded() {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(room))
	return int(h.Sum32() % uint32(l.Partitions))
}

// DueIndex returns the sweep index that holds room.
func (l Layout) DueIndex(room string) string {
	if !l.Sharded() {
		return DueIndex(l.Prefix)
	}
	return l.partitionDue(l.Partition(room))
}

// DueIndexes returns every sweep index: one per partition on a cluster.
func (l Layout) DueIndexes() []string {
	if !l.Sharded() {
		return []string{DueIndex(l.Prefix)}
	}
	out := make([]string, l.Partitions)
	for i := range out {
		out[i] = l.partitionDue(i)
	}
	return out
}

// DirtyIndex returns the index of rooms with changes the store does not
// have yet (write-behind, with a store) that holds room: a ZSET room ->
// time of its first unsaved change in unix ms, or, while an instance
// saves it, the time its claim lapses less the store delay. One key on a
// single Redis, one per partition on a cluster, in the partition's slot
// like the sweep index.
func (l Layout) DirtyIndex(room string) string {
	if !l.Sharded() {
		return orDefault(l.Prefix) + "dirty"
	}
	return l.partitionDirty(l.Partition(room))
}

// DirtyIndexes returns every dirty index: one per partition on a cluster.
func (l Layout) DirtyIndexes() []string {
	if !l.Sharded() {
		return []string{orDefault(l.Prefix) + "dirty"}
	}
	out := make([]string, l.Partitions)
	for i := range out {
		out[i] = l.partitionDirty(i)
	}
	return out
}

// WebhookQueue is the Redis names of one webhook queue (see
// rooms/webhook/queue.lua): one on a single Redis, one per partition on a
// cluster, in the partition's slot like the sweep index, so a presence
// script queues its events in the step that decides them.
type WebhookQueue struct {
	Due    string // ZSET event key -> unix ms it is due (or its claim lapses)
	Events string // HASH event key -> event record
	Order  string // ZSET event key (score 0): oldest first, for the bound
	Meta   string // HASH next (event key counter), dropped (events the bound dropped)
	Lease  string // STRING the instance delivering the queue (expires)
}

// WebhookQueue returns the webhook queue of room.
func (l Layout) WebhookQueue(room string) WebhookQueue {
	return l.webhookQueue(l.Partition(room))
}

// WebhookQueues returns every webhook queue: one per partition on a cluster.
func (l Layout) WebhookQueues() []WebhookQueue {
	n := max(l.Partitions, 1)
	out := make([]WebhookQueue, n)
	for i := range out {
		out[i] = l.webhookQueue(i)
	}
	return out
}

func (l Layout) webhookQueue(p int) WebhookQueue {
	base := l.prefix() + "wh:"
	if l.Sharded() {
		base = l.prefix() + "{" + l.tag(p) + "}/wh:"
	}
	return WebhookQueue{Due: base + "due", Events: base + "events", Order: base + "order", Meta: base + "meta", Lease: base + "lease"}
}

func (l Layout) partitionDirty(p int) string {
	return l.prefix() + "{" + l.tag(p) + "}/dirty"
}

func (l Layout) partitionDue(p int) string {
	return l.prefix() + "{" + l.tag(p) + "}/due"
}

func (l Layout) tag(p int) string { return partitionTags(l.Partitions)[p] }

// PublishCommand is the command that publishes to the layout's room
// channels.
func (l Layout) PublishCommand() string {
	if l.Sharded() {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

var tagTables sync.Map // partitions -> []string

// partitionTags returns, for each of n partitions, the shortest decimal
// number that hashes to the partition's slot, i×Slots/n: found by trying
// 0, 1, 2, … once per n.
func partitionTags(n int) []string {
	if v, ok := tagTables.Load(n); ok {
		return v.([]string)
	}
	want := make(map[int]int, n) // slot -> partition
	for i := range n {
		want[i*Slots/n] = i
	}
	tags := make([]string, n)
	left := len(want)
	for c := 0; left > 0; c++ {
		s := strconv.Itoa(c)
		if p, ok := want[Slot(s)]; ok && tags[p] == "" {
			tags[p] = s
			left--
		}
	}
	v, _ := tagTables.LoadOrStore(n, tags)
	return v.([]string)
}

// Slot returns the Redis Cluster hash slot of key: CRC16 of its hash tag
// (the part between the first '{' and the next '}', when not empty) or
// of the whole key, modulo Slots.
func Slot(key string) int {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return int(crc16(key) % Slots)
				}
			}
			break
		}
	}
	return int(crc16(key) % Slots)
}

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// scriptPrelude is the first line of every script that publishes to a
// room channel: PUBLISH_CMD names the layout's publish command.
func (l Layout) scriptPrelude() string {
	return "local PUBLISH_CMD = '" + l.PublishCommand() + "'\n"
}

// A Script is a Lua script that publishes to room channels, in the form
// for each kind of layout: it calls redis.call(PUBLISH_CMD, …), and Go
// prepends the line that sets PUBLISH_CMD, then EnvelopeLua.
type Script struct {
	plain, sharded *redis.Script
}

// NewScript returns the Script of src (without the prelude or
// EnvelopeLua, which it prepends).
func NewScript(src string) Script {
	return Script{
		plain:   redis.NewScript(Layout{}.scriptPrelude() + EnvelopeLua + src),
		sharded: redis.NewScript(Layout{Partitions: 1}.scriptPrelude() + EnvelopeLua + src),
	}
}

// For returns the form of s for layout l.
func (s Script) For(l Layout) *redis.Script {
	if l.Sharded() {
		return s.sharded
	}
	return s.plain
}

// ClusterLayout returns the layout of client: a cluster layout of
// partitions (0 means DefaultPartitions) when it is a *redis.ClusterClient,
// else the single-Redis layout.
func ClusterLayout(client redis.UniversalClient, prefix string, partitions int) Layout {
	if _, ok := client.(*redis.ClusterClient); !ok {
		return Layout{Prefix: prefix}
	}
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	// More partitions than slots would leave some without a tag of their
	// own, and their rooms' names in several slots.
	return Layout{Prefix: prefix, Partitions: min(partitions, Slots)}
}
