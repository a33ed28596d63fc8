package webhook

import (
	"container/heap"
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Persister keeps a MemoryQueue's events across restarts (the store of a
// single instance). Keys are the queue's event numbers.
type Persister interface {
	// LoadWebhooks returns every kept event.
	LoadWebhooks(ctx context.Context) ([]PersistedEvent, error)
	// SaveWebhooks writes puts (new or changed events) and removes dels,
	// atomically.
	SaveWebhooks(ctx context.Context, puts []PersistedEvent, dels []int64) error
}

// PersistedEvent is one kept event: its record (the queue's format, see
// rooms/wire webhook.lua) and when it is due.
type PersistedEvent struct {
	Key    int64
	Room   string
	Due    time.Time
	Record []byte
}

// MemoryQueue is the queue of a single instance (no Redis): presence
// decisions come in through presence.Events (MemberJoined, MemberLeft),
// under the presence store's lock, and never wait for the Persister: its
// writes go out with each delivery round (Options.Poll) and on shutdown.
// It follows the Redis queue's rules exactly (cancelled room.vacated,
// debounce, bound).
type MemoryQueue struct {
	o       Options
	persist Persister

	mu      sync.Mutex
	next    int64
	events  map[int64]*memEvent
	order   *list.List // keys, oldest first
	due     dueHeap
	markers map[string]memMarker // room marker -> pending event or window
	dropped int
	puts    map[int64]bool // changed since the last save
	dels    map[int64]bool // removed since the last save
}

type memEvent struct {
	it  item
	due int64
	el  *list.Element
}

type memMarker struct {
	key   int64     // the waiting event; 0 for a debounce window
	until time.Time // end of the window (key 0)
}

// NewMemoryQueue returns a queue in this process; with persist, loading
// what it kept (nil: events are lost with the process).
func NewMemoryQueue(ctx context.Context, o Options, persist Persister) (*MemoryQueue, error) {
	q := &MemoryQueue{o: o.withDefaults(), persist: persist, events: make(map[int64]*memEvent), order: list.New(),
		markers: make(map[string]memMarker), puts: make(map[int64]bool), dels: make(map[int64]bool)}
	if persist == nil {
		return q, nil
	}
	kept, err := persist.LoadWebhooks(ctx)
	if err != nil {
		return nil, fmt.Errorf("webhook: load queued events: %w", err)
	}
	for _, p := range kept {
		key := fmt.Sprintf("%016d", p.Key)
		it, err := parseRecord(0, key, string(p.Record))
		if err != nil {
			return nil, fmt.Errorf("webhook: queued event %d: %w", p.Key, err)
		}
		q.insert(p.Key, it, p.Due.UnixMilli())
		if it.marker != "" {
			q.markers[it.marker] = memMarker{key: p.Key}
		}
		q.next = max(q.next, p.Key)
	}
	clear(q.puts)
	return q, nil
}

// Len is the number of queued events.
func (q *MemoryQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.events)
}

// markerOf names the marker of room for kind; a record holds it, so no newline.
func markerOf(room, kind string) string { return kind + " " + room }

// MemberJoined implements presence.Events.
func (q *MemoryQueue) MemberJoined(room string, member []byte, first bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	if first && !q.cancelLocked(markerOf(room, RoomVacated)) {
		q.addLocked(now, now, room, RoomOccupied, "", []byte("}"))
	}
	q.addLocked(now, now, room, MemberJoined, "", memberData(member, ""))
}

// MemberLeft implements presence.Events.
func (q *MemoryQueue) MemberLeft(room string, member []byte, reason string, last bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	q.addLocked(now, now, room, MemberLeft, "", memberData(member, reason))
	if last {
		m := markerOf(room, RoomVacated)
		q.cancelLocked(m)
		k := q.addLocked(now, now.Add(q.o.VacateDelay), room, RoomVacated, m, []byte("}"))
		q.markers[m] = memMarker{key: k}
	}
}

func memberData(member []byte, reason string) []byte {
	d := append([]byte(`,"member":`), member...)
	if reason != "" {
		r, _ := json.Marshal(reason) // a string always encodes
		d = append(append(d, `,"reason":`...), r...)
	}
	return append(d, '}')
}

func (q *MemoryQueue) notify(_ context.Context, room, typ string, data []byte, debounce bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	if !debounce {
		q.addLocked(now, now, room, typ, "", data)
		return nil
	}
	m := markerOf(room, typ)
	mk, ok := q.markers[m]
	if ok && mk.key != 0 {
		if e := q.events[mk.key]; e != nil {
			e.it.body = eventBody(typ, now, room, data)
			q.puts[mk.key] = true
			return nil
		}
	}
	due := now
	if ok && mk.key == 0 && mk.until.After(now) {
		due = mk.until
	}
	k := q.addLocked(now, due, room, typ, m, data)
	q.markers[m] = memMarker{key: k}
	return nil
}

// eventBody is an event's JSON body, as wh_body in webhook.lua makes it.
func eventBody(typ string, now time.Time, room string, data []byte) []byte {
	r, _ := json.Marshal(room) // a string always encodes
	b := make([]byte, 0, 64+len(r)+len(data))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = strconv.AppendInt(append(b, `","timestamp":`...), now.UnixMilli(), 10)
	b = append(append(b, `,"data":{"room":`...), r...)
	b = append(b, data...)
	return append(b, '}')
}

func (q *MemoryQueue) addLocked(now, due time.Time, room, typ, marker string, data []byte) int64 {
	q.next++
	k := q.next
	it := item{key: fmt.Sprintf("%016d", k), created: now.UnixMilli(), marker: marker, typ: typ, room: room,
		body: eventBody(typ, now, room, data)}
	q.insert(k, it, due.UnixMilli())
	if len(q.events) > MaxPerQueue(q.o.MaxPending, 1) {
		old := q.order.Front().Value.(int64)
		q.removeLocked(old)
		q.dropped++
	}
	return k
}

func (q *MemoryQueue) insert(k int64, it item, due int64) {
	e := &memEvent{it: it, due: due, el: q.order.PushBack(k)}
	q.events[k] = e
	heap.Push(&q.due, dueEntry{due: due, key: k})
	q.puts[k] = true
}

func (q *MemoryQueue) removeLocked(k int64) {
	e := q.events[k]
	if e == nil {
		return
	}
	q.order.Remove(e.el)
	delete(q.events, k)
	delete(q.puts, k)
	q.dels[k] = true
}

// cancelLocked removes the event marker m points at, if it still waits,
// and the marker; true when one was removed.
func (q *MemoryQueue) cancelLocked(m string) bool {
	mk, ok := q.markers[m]
	if !ok {
		return false
	}
	delete(q.markers, m)
	if mk.key == 0 || q.events[mk.key] == nil {
		return false
	}
	q.removeLocked(mk.key)
	return true
}

func (q *MemoryQueue) claim(ctx context.Context, limit int) (claimed, error) {
	q.save(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	ms := now.UnixMilli()
	c := claimed{pending: len(q.events), dropped: q.dropped}
	q.dropped = 0
	var again []dueEntry
	for len(c.items) < limit && q.due.Len() > 0 && q.due[0].due <= ms {
		d := heap.Pop(&q.due).(dueEntry)
		e := q.events[d.key]
		if e == nil || e.due != d.due {
			continue // removed, or due at another time now
		}
		if m := e.it.marker; m != "" {
			if mk, ok := q.markers[m]; ok && mk.key == d.key {
				if e.it.typ == RoomVacated {
					delete(q.markers, m)
				} else {
					q.markers[m] = memMarker{until: now.Add(q.o.Debounce)}
				}
			}
		}
		e.due = ms + q.o.Lease.Milliseconds()
		again = append(again, dueEntry{due: e.due, key: d.key})
		c.items = append(c.items, e.it)
	}
	for _, d := range again {
		heap.Push(&q.due, d)
	}
	// Debounce windows that ended are forgotten.
	if len(q.markers) > 1024 {
		for m, mk := range q.markers {
			if mk.key == 0 && !mk.until.After(now) {
				delete(q.markers, m)
			}
		}
	}
	return c, nil
}

func (q *MemoryQueue) settle(ctx context.Context, outs []outcome) error {
	q.mu.Lock()
	for _, o := range outs {
		k, err := strconv.ParseInt(o.it.key, 10, 64)
		if err != nil {
			continue
		}
		e := q.events[k]
		if e == nil {
			continue // the bound dropped it
		}
		if o.remove {
			q.removeLocked(k)
			continue
		}
		e.it.attempts, e.it.targets = o.it.attempts, o.it.targets
		e.due = o.due
		heap.Push(&q.due, dueEntry{due: o.due, key: k})
		q.puts[k] = true
	}
	q.mu.Unlock()
	q.save(ctx)
	return nil
}

func (q *MemoryQueue) release(ctx context.Context) error {
	return q.save(ctx)
}

// save writes the changes since the last save to the Persister. A failed
// save is kept for the next one.
func (q *MemoryQueue) save(ctx context.Context) error {
	if q.persist == nil {
		return nil
	}
	q.mu.Lock()
	if len(q.puts) == 0 && len(q.dels) == 0 {
		q.mu.Unlock()
		return nil
	}
	puts := make([]PersistedEvent, 0, len(q.puts))
	for k := range q.puts {
		e := q.events[k]
		puts = append(puts, PersistedEvent{Key: k, Room: e.it.room, Due: time.UnixMilli(e.due), Record: []byte(e.it.record())})
	}
	dels := make([]int64, 0, len(q.dels))
	for k := range q.dels {
		dels = append(dels, k)
	}
	clear(q.puts)
	clear(q.dels)
	q.mu.Unlock()
	if err := q.persist.SaveWebhooks(ctx, puts, dels); err != nil {
		q.mu.Lock()
		for _, p := range puts {
			if q.events[p.Key] != nil {
				q.puts[p.Key] = true
			}
		}
		for _, k := range dels {
			if q.events[k] == nil {
				q.dels[k] = true
			}
		}
		q.mu.Unlock()
		q.o.Logger.Warn("webhook: keep queued events in the store", "puts", len(puts), "dels", len(dels), "err", err)
		return err
	}
	return nil
}

type dueEntry struct {
	due int64
	key int64
}

// dueHeap orders events by due time, then by key (the order they were
// queued). Entries of removed or rescheduled events are skipped when popped.
type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	return h[i].due < h[j].due || (h[i].due == h[j].due && h[i].key < h[j].key)
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
