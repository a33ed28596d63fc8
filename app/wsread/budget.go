package wsread

import "sync/atomic"

// SmallMessage is the size up to which a message is read without touching
// a Budget: small messages are bounded per connection already (the buffer
// a Reader keeps between messages is no larger).
const SmallMessage = retainMax

// Budget is the bytes the Readers sharing it may hold at once in messages
// over SmallMessage. A Reader reserves a large message's bytes when its
// frame header says how many are coming, before reading them, and gives
// them back once the message was handled (the next call to Next) or the
// Reader is released; a message that would pass the budget is refused
// unread. So a few clients sending big frames at once cannot make the
// process hold more than the budget in them.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used is the bytes reserved now.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *Budget) release(n int64) { b.used.Add(-n) }
