package rooms

import (
	"hash/maphash"
)

// A subscriber instance's fan-out runs on delivery shards: the pub/sub
// loop only reads and hands each payload to the shard of its room, so one
// busy room cannot hold up pongs or the other rooms, and fan-out uses every
// core instead of the one goroutine that reads the connection. A room
// always maps to the same shard, which keeps its payloads (and its resync)
// in order.

type delivery struct {
	room    string
	payload []byte
	resync  []string // when set, a Resync of these rooms instead of a payload
}

var shardSeed = maphash.MakeSeed()

// startShards starts n delivery goroutines; Close stops them.
func (b *RedisBroker) startShards(n int) {
	b.shards = make([]chan delivery, n)
	for i := range b.shards {
		ch := make(chan delivery, 1024)
		b.shards[i] = ch
		b.wg.Add(1)
		go b.shardLoop(ch)
	}
}

func (b *RedisBroker) shardOf(room string) chan delivery {
	return b.shards[maphash.String(shardSeed, room)%uint64(len(b.shards))]
}

// dispatch hands d to its shard, waiting while the shard is full (the
// subscriber is behind; Redis buffers meanwhile) unless the broker closes.
func (b *RedisBroker) dispatch(ch chan delivery, d delivery) {
	select {
	case ch <- d:
	case <-b.ctx.Done():
	}
}

// dispatchResync sends each shard the rooms of it that are owed a Resync,
// behind the payloads it already holds.
func (b *RedisBroker) dispatchResync(rooms []string) {
	byShard := make(map[chan delivery][]string)
	for _, r := range rooms {
		ch := b.shardOf(r)
		byShard[ch] = append(byShard[ch], r)
	}
	for ch, rs := range byShard {
		b.dispatch(ch, delivery{resync: rs})
	}
}

func (b *RedisBroker) shardLoop(ch chan delivery) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case d := <-ch:
			if d.resync != nil {
				b.recv.Resync(d.resync)
			} else {
				// A document update published without its bytes (over
				// DocInlineBytes) goes on as it is: the document engine
				// reads it off this goroutine, which serves other rooms.
				b.recv.Deliver(d.room, d.payload)
			}
		}
	}
}
