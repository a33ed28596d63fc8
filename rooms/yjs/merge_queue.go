package yjs

// decoderQueue keeps the decoders of a merge in the order that
// mergeUpdatesV2 sorts them into every round: highest client first, then
// lowest clock, a Skip after any other struct at its ID.
//
// Each round only the first decoder moves (it is read from, or runs
// out). Below 64 decoders the queue sorts them every round with V8's
// algorithm, which reproduces Y.mergeUpdates exactly even where the yjs
// comparator is inconsistent (a GC and an Item at the same ID: a tie).
// From 64 decoders on, without ties, moving the first one to its place
// is what the sort would do; with ties the whole array is sorted again.
// Both cost up to the number of decoders per round, quadratic in the
// number of updates, so they draw on a budget linear in the input; once
// it is spent the decoders move to a binary heap, where putting the
// first one back costs O(log n). Among equal decoders the heap puts the
// one that moved last first (seq), as a stable sort of the array does:
// the same order as long as there are no ties, which the heap orders by
// seq as well.
type decoderQueue struct {
	list   []*structReader // until the budget is spent
	ties   bool            // whether list may hold a tie
	budget int             // steps list may still take from 64 decoders on
	sorter v8Sorter
	heap   []queued // after that
	seq    uint64
}

// queued is a decoder in the heap; a higher seq moved more recently.
type queued struct {
	d   *structReader
	seq uint64
}

// heapMin is the number of decoders from which ordering them draws on
// the budget.
const heapMin = 64

// orderBudgetPerByte is the budget per input byte.
const orderBudgetPerByte = 32

// init starts the queue with decoders reading inputs of size bytes in
// all.
func (q *decoderQueue) init(decoders []*structReader, size int) {
	*q = decoderQueue{list: decoders, ties: true, budget: orderBudgetPerByte * size}
}

// first puts back the decoder that the last round read from and returns
// the one to read from now, or nil when all have run out.
func (q *decoderQueue) first(wk *work) *structReader {
	if q.heap != nil {
		q.fixTop(wk)
		if len(q.heap) >= heapMin {
			return q.heap[0].d
		}
		// Few enough to sort exactly again: the heap in order.
		q.list = q.list[:0]
		for len(q.heap) > 0 {
			q.list = append(q.list, q.heap[0].d)
			q.pop(wk)
		}
		q.heap = nil
		q.ties = true
	}
	a := q.list
	steps := 0
	switch {
	case len(a) >= heapMin && !q.ties && !a[0].has:
		a = a[1:]
		steps = 1
	case len(a) >= heapMin && !q.ties && reinsertFirst(a, &steps):
	default:
		j := 0
		for _, d := range a {
			if d.has {
				a[j] = d
				j++
			}
		}
		a = a[:j]
		q.sorter.sort(a)
		q.ties = hasTies(a)
		steps = 1 + len(a)
	}
	q.list = a
	wk.add(steps)
	if len(a) >= heapMin {
		if q.budget -= steps; q.budget < 0 {
			q.toHeap(wk)
			return q.heap[0].d
		}
	}
	if len(a) == 0 {
		return nil
	}
	return a[0]
}

// toHeap moves the sorted list into the heap, earlier ones first among
// equals.
func (q *decoderQueue) toHeap(wk *work) {
	q.heap = make([]queued, len(q.list))
	for i, d := range q.list {
		q.heap[i] = queued{d, uint64(len(q.list) - i)}
	}
	q.seq = uint64(len(q.list))
	q.list = q.list[:0]
	// Sorted, it is a heap already, unless ties were sorted apart.
	for i := len(q.heap)/2 - 1; i >= 0; i-- {
		q.down(i, wk)
	}
}

// fixTop restores the heap after its top decoder was read from.
func (q *decoderQueue) fixTop(wk *work) {
	if !q.heap[0].d.has {
		q.pop(wk)
		return
	}
	q.seq++
	q.heap[0].seq = q.seq
	q.down(0, wk)
}

func (q *decoderQueue) pop(wk *work) {
	n := len(q.heap) - 1
	q.heap[0] = q.heap[n]
	q.heap = q.heap[:n]
	if n > 0 {
		q.down(0, wk)
	}
}

func (q *decoderQueue) down(i int, wk *work) {
	h := q.heap
	for {
		wk.add(1)
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && queuedLess(h[r], h[l]) {
			m = r
		}
		if !queuedLess(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// queuedLess is compareDecoders < 0, with a GC and an Item at the same
// ID equal, and equal decoders ordered by seq, latest first.
func queuedLess(a, b queued) bool {
	x, y := &a.d.cur, &b.d.cur
	switch {
	case x.client != y.client:
		return x.client > y.client
	case x.clock != y.clock:
		return x.clock < y.clock
	case (x.kind == kindSkip) != (y.kind == kindSkip):
		return y.kind == kindSkip
	}
	return a.seq > b.seq
}

// reinsertFirst sorts a when only a[0] may be out of place, moving a[0]
// after the elements less than it, as a stable sort does. It reports
// false, leaving a as it is, when a[0] would tie inconsistently with a
// neighbour.
func reinsertFirst(a []*structReader, steps *int) bool {
	x := a[0]
	lo, hi := 1, len(a)
	for lo < hi {
		mid := lo + (hi-lo)>>1
		if compareDecoders(a[mid], x) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if (lo > 1 && tie(a[lo-1], x)) || (lo < len(a) && tie(a[lo], x)) {
		return false
	}
	copy(a[:lo-1], a[1:lo])
	*steps = lo
	a[lo-1] = x
	return true
}

// tie reports whether a and b are a GC and an Item at the same ID, which
// compareDecoders orders inconsistently.
func tie(a, b *structReader) bool {
	return a.cur.client == b.cur.client && a.cur.clock == b.cur.clock && a.cur.kind != b.cur.kind
}

// hasTies reports whether sorted a holds a pair that ties.
func hasTies(a []*structReader) bool {
	for i := 1; i < len(a); i++ {
		if tie(a[i-1], a[i]) {
			return true
		}
	}
	return false
}
