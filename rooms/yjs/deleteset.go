package yjs

import (
	"cmp"
	"slices"
)

// dsRange is one delete set entry: len clocks of client from clock on.
type dsRange struct{ client, clock, len uint64 }

func (d dsRange) end() uint64 { return d.clock + d.len }

// readDeleteSet appends the delete set at r (DeleteSet.js readDeleteSet)
// to dst in the order read. Empty ranges are an error.
func readDeleteSet(r *reader, dst []dsRange) []dsRange {
	n := r.uint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		client := r.uint()
		m := r.uint()
		for j := uint64(0); j < m && r.err == nil; j++ {
			clock := r.uint()
			l := r.uint()
			switch {
			case r.err != nil:
			case l == 0:
				// Yjs never writes these, and Y.applyUpdate throws on
				// one it cannot apply yet: never pass them on.
				r.fail("empty delete range")
			case l > maxSafeInteger-clock:
				r.fail("delete set clock out of range")
			}
			dst = append(dst, dsRange{client, clock, l})
		}
	}
	return dst
}

// groupDeleteSet orders ds by client, highest first, keeping the order
// of each client's ranges: what readDeleteSet + writeDeleteSet do.
func groupDeleteSet(ds []dsRange) {
	slices.SortStableFunc(ds, func(a, b dsRange) int { return cmp.Compare(b.client, a.client) })
}

// normalizeDeleteSet is mergeDeleteSets / sortAndMergeDeleteSet: each
// client's ranges sorted by clock, overlapping or adjacent ones joined,
// clients highest first. It reuses ds.
func normalizeDeleteSet(ds []dsRange) []dsRange {
	slices.SortFunc(ds, func(a, b dsRange) int {
		if c := cmp.Compare(b.client, a.client); c != 0 {
			return c
		}
		if c := cmp.Compare(a.clock, b.clock); c != 0 {
			return c
		}
		return cmp.Compare(a.len, b.len)
	})
	j := 0
	for i := range ds {
		if j > 0 {
			left := &ds[j-1]
			right := ds[i]
			if left.client == right.client && left.end() >= right.clock {
				left.len = max(left.len, right.end()-left.clock)
				continue
			}
		}
		ds[j] = ds[i]
		j++
	}
	return ds[:j]
}

// appendDeleteSet appends ds, grouped by client in the order given, as
// writeDeleteSet does.
func appendDeleteSet(dst []byte, ds []dsRange) []byte {
	clients := 0
	for i := range ds {
		if i == 0 || ds[i].client != ds[i-1].client {
			clients++
		}
	}
	dst = appendVarUint(dst, uint64(clients))
	for i := 0; i < len(ds); {
		j := i + 1
		for j < len(ds) && ds[j].client == ds[i].client {
			j++
		}
		dst = appendVarUint(dst, ds[i].client)
		dst = appendVarUint(dst, uint64(j-i))
		for _, d := range ds[i:j] {
			dst = appendVarUint(dst, d.clock)
			dst = appendVarUint(dst, d.len)
		}
		i = j
	}
	return dst
}
