package yjs

import (
	"cmp"
	"fmt"
	"slices"
)

// MergeUpdates is Y.mergeUpdates: one update with the effect of all. It
// is a step-by-step port of updates.js mergeUpdatesV2 (v1 encoding): the
// structs of all updates are written client by client (highest first),
// overlapping structs are sliced, adjacent GC and Skip structs merged,
// gaps in a client's clocks filled with Skip structs, and the delete sets
// merged. Like Yjs it returns a single update unchanged (after
// validating it; the result is a copy, with its sections put in order as
// said below) and EmptyUpdate for none.
//
// The algorithm assumes what Yjs always writes: the client sections of
// an update ordered by client, highest first. With other orders
// Y.mergeUpdates can drop structs and repeat a client's section (which
// Y.applyUpdate then half ignores), so MergeUpdates first puts the
// sections of such an update in that order.
//
// For updates that Yjs wrote the result is byte-for-byte Y.mergeUpdates.
// Exceptions: content that Yjs would re-encode differently (non-minimal
// varints, JSON not in JSON.stringify form) is kept as it is; and with 64
// or more updates, when two of them hold a GC and an Item at the same ID,
// JavaScript's inconsistent comparator makes the pick depend on V8's
// TimSort merge details, so the other one may win (the result means the
// same: both are deleted content).
//
// The work is linear in the size of the updates times the logarithm of
// their number: JavaScript sorts all decoders for every struct it
// writes, MergeUpdates only puts back the one it read from.
func MergeUpdates(updates [][]byte) ([]byte, error) {
	out, _, err := mergeUpdates(updates, nil)
	if err != nil {
		return nil, fmt.Errorf("yjs: merge updates: %w", err)
	}
	return out, nil
}

// mergeUpdates returns the merged update and the offset of its delete
// set; wk counts its work.
func mergeUpdates(updates [][]byte, wk *work) ([]byte, int, error) {
	if len(updates) == 0 {
		return append([]byte(nil), EmptyUpdate...), 1, nil
	}
	// Validate everything first (so the merge can trust its input) and
	// put client sections in order.
	inputs := make([][]byte, len(updates))
	offs := make([]int, len(updates))
	for i, u := range updates {
		var err error
		if inputs[i], offs[i], err = sortSections(u); err != nil {
			return nil, 0, protocolError(fmt.Sprintf("update %d: ", i), err)
		}
	}
	if len(inputs) == 1 {
		return append([]byte(nil), inputs[0]...), offs[0], nil
	}
	total := 0
	readers := make([]structReader, len(inputs))
	decoders := make([]*structReader, len(inputs))
	for i, u := range inputs {
		total += len(u)
		readers[i].init(u, true, true)
		decoders[i] = &readers[i]
	}
	w := structWriter{buf: make([]byte, 0, total), work: wk}
	var cw block // currWrite
	hasCW := false
	var queue decoderQueue
	queue.init(decoders, total)
	for {
		// Write higher clients first ⇒ sort by clientID & clock and
		// remove decoders without content.
		cd := queue.first(wk)
		if cd == nil {
			break
		}
		firstClient := cd.cur.client
		if hasCW {
			curr := &cd.cur
			iterated := false
			// iterate until we find something that we haven't written
			// already (higher clients are written first)
			for cd.has && curr.end() <= cw.end() && curr.client >= cw.client {
				cd.next()
				iterated = true
			}
			if !cd.has || curr.client != firstClient || (iterated && curr.clock > cw.end()) {
				continue
			}
			if firstClient != cw.client {
				w.write(&cw, 0)
				cw = *curr
				cd.next()
			} else if cw.end() < curr.clock {
				if cw.kind == kindSkip {
					// extend existing skip
					cw.length = curr.end() - cw.clock
				} else {
					w.write(&cw, 0)
					diff := curr.clock - cw.end()
					cw = block{kind: kindSkip, client: firstClient, clock: cw.end(), length: diff}
				}
			} else {
				next := *curr
				if diff := cw.end() - curr.clock; diff > 0 {
					if cw.kind == kindSkip {
						// prefer to slice Skip because the other struct
						// might contain more information
						cw.length -= diff
					} else {
						next = sliceBlock(curr, diff, wk)
					}
				}
				if !mergeInto(&cw, &next) {
					w.write(&cw, 0)
					cw = next
					cd.next()
				}
			}
		} else {
			cw = cd.cur
			hasCW = true
			cd.next()
		}
		for cd.has && cd.cur.client == firstClient && cd.cur.clock == cw.end() && cd.cur.kind != kindSkip {
			w.write(&cw, 0)
			cw = cd.cur
			cd.next()
		}
	}
	if hasCW {
		w.write(&cw, 0)
	}
	var ds []dsRange
	for i := range readers {
		r := &readers[i].r
		if r.err != nil {
			return nil, 0, protocolError(fmt.Sprintf("update %d: ", i), r.err)
		}
		ds = readDeleteSet(r, ds)
		if r.err != nil {
			return nil, 0, protocolError(fmt.Sprintf("update %d: ", i), r.err)
		}
	}
	ds = normalizeDeleteSet(ds)
	out := w.finish(make([]byte, 0, w.size()+len(ds)*6+8))
	off := len(out)
	return appendDeleteSet(out, ds), off, nil
}

// sortSections validates u and returns it with its client sections
// ordered by client, highest first (u itself when they already are), and
// the offset of its delete set.
func sortSections(u []byte) ([]byte, int, error) {
	var s structReader
	s.initRecording(u, false, false, true)
	for s.has {
		s.next()
	}
	if s.r.err != nil {
		return nil, 0, protocolError("update: ", s.r.err)
	}
	off := s.r.pos
	if _, err := readTail(&s.r, nil); err != nil {
		return nil, 0, err
	}
	if !s.unsorted {
		return u, off, nil
	}
	spans := s.spans
	ends := make(map[int]int, len(spans))
	for i, sp := range spans {
		if i+1 < len(spans) {
			ends[sp.start] = spans[i+1].start
		} else {
			ends[sp.start] = off
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(b.client, a.client) })
	out := appendVarUint(make([]byte, 0, len(u)+10), uint64(len(spans)))
	for _, sp := range spans {
		out = append(out, u[sp.start:ends[sp.start]]...)
	}
	return append(out, u[off:]...), len(out), nil
}

// mergeInto is AbstractStruct.mergeWith as it behaves in mergeUpdates:
// GC merges with GC and Skip with Skip; Items never merge there (they
// are not linked, so Item.mergeWith's this.right === right fails).
func mergeInto(left, right *block) bool {
	if left.kind == kindItem || left.kind != right.kind {
		return false
	}
	left.length += right.length
	return true
}

// compareDecoders is the comparator of mergeUpdatesV2, including its
// inconsistency: a GC and an Item at the same ID each compare as less
// than the other.
func compareDecoders(a, b *structReader) int {
	x, y := &a.cur, &b.cur
	if x.client == y.client {
		switch {
		case x.clock < y.clock:
			return -1
		case x.clock > y.clock:
			return 1
		case x.kind == y.kind:
			return 0
		case x.kind == kindSkip:
			return 1
		}
		return -1
	}
	if y.client < x.client {
		return -1
	}
	return 1
}

// v8Sorter sorts decoders as V8's Array.prototype.sort (TimSort) does.
// Below 64 elements TimSort is one natural run extended by binary
// insertion sort, reproduced exactly here, so even the inconsistent
// comparator gives the order JavaScript gets. Longer arrays are split
// into runs the same way and merged stably (without galloping): the same
// order whenever the comparator is consistent.
type v8Sorter struct {
	tmp []*structReader
}

func (s *v8Sorter) sort(a []*structReader) {
	n := len(a)
	if n < 2 {
		return
	}
	minRun := minRunLength(n)
	type run struct{ lo, hi int }
	var runs []run
	for lo := 0; lo < n; {
		l := countAndMakeRun(a, lo, n)
		if l < minRun {
			forced := min(minRun, n-lo)
			binaryInsertionSort(a, lo, lo+l, lo+forced)
			l = forced
		}
		runs = append(runs, run{lo, lo + l})
		lo += l
	}
	for len(runs) > 1 {
		merged := runs[:0]
		for i := 0; i < len(runs); i += 2 {
			if i+1 == len(runs) {
				merged = append(merged, runs[i])
				continue
			}
			s.merge(a, runs[i].lo, runs[i].hi, runs[i+1].hi)
			merged = append(merged, run{runs[i].lo, runs[i+1].hi})
		}
		runs = merged
	}
}

// merge merges the sorted a[lo:mid] and a[mid:hi] stably.
func (s *v8Sorter) merge(a []*structReader, lo, mid, hi int) {
	s.tmp = append(s.tmp[:0], a[lo:mid]...)
	i, j, k := 0, mid, lo
	for i < len(s.tmp) && j < hi {
		if compareDecoders(a[j], s.tmp[i]) < 0 {
			a[k] = a[j]
			j++
		} else {
			a[k] = s.tmp[i]
			i++
		}
		k++
	}
	for i < len(s.tmp) {
		a[k] = s.tmp[i]
		i++
		k++
	}
}

// minRunLength is V8's ComputeMinRunLength.
func minRunLength(n int) int {
	r := 0
	for n >= 64 {
		r |= n & 1
		n >>= 1
	}
	return n + r
}

// countAndMakeRun is V8's CountAndMakeRun: the length of the run at lo,
// reversed in place when it is strictly descending.
func countAndMakeRun(a []*structReader, lo, hi int) int {
	low := lo + 1
	if low == hi {
		return 1
	}
	runLength := 2
	descending := compareDecoders(a[low], a[low-1]) < 0
	prev := a[low]
	for i := low + 1; i < hi; i++ {
		order := compareDecoders(a[i], prev)
		if descending {
			if order >= 0 {
				break
			}
		} else if order < 0 {
			break
		}
		prev = a[i]
		runLength++
	}
	if descending {
		for i, j := lo, lo+runLength-1; i < j; i, j = i+1, j-1 {
			a[i], a[j] = a[j], a[i]
		}
	}
	return runLength
}

// binaryInsertionSort is V8's BinaryInsertionSort: a[lo:start] is sorted;
// insert a[start:hi] one by one.
func binaryInsertionSort(a []*structReader, lo, start, hi int) {
	if lo == start {
		start++
	}
	for ; start < hi; start++ {
		left, right := lo, start
		pivot := a[start]
		for left < right {
			mid := left + (right-left)>>1
			if compareDecoders(pivot, a[mid]) < 0 {
				right = mid
			} else {
				left = mid + 1
			}
		}
		copy(a[left+1:start+1], a[left:start])
		a[left] = pivot
	}
}
