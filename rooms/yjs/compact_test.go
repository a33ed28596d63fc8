package yjs

import "testing"

// workBound is how many steps (see work) per input byte MergeUpdates,
// DiffUpdate and Compact may take: the merge order's budget
// (orderBudgetPerByte) and more.
const workBound = 2 * orderBudgetPerByte

// countWork runs compact on updates and returns its steps.
func countWork(t testing.TB, updates [][]byte) int {
	t.Helper()
	var wk work
	if _, err := compact(updates, &wk); err != nil {
		t.Fatal(err)
	}
	return wk.steps
}

// TestCompactSplitLinear checks that cutting one item into n pieces
// takes work linear in n: the steps counted at 4n must stay within 6
// times those at n (quadratic work would give 16), and within workBound
// per input byte. It counts steps, not time, which a busy machine would
// blur.
func TestCompactSplitLinear(t *testing.T) {
	for _, k := range splitKinds {
		small, big := splitUpdates(k.ref, 10_000), splitUpdates(k.ref, 40_000)
		s, b := countWork(t, small), countWork(t, big)
		t.Logf("%s: %d steps for %d bytes, %d for %d bytes", k.name, s, totalLen(small), b, totalLen(big))
		if s == 0 || b > 6*s {
			t.Errorf("%s: %d steps at 10k elements, %d at 40k: not linear", k.name, s, b)
		}
		if b > workBound*totalLen(big) {
			t.Errorf("%s: %d steps for %d input bytes", k.name, b, totalLen(big))
		}
	}
}

// manyUpdates returns n updates of two GC structs each, one of a high
// client and one of a low one, so that every struct written moves a
// decoder from the front of the merge order to its end; with tie, two
// more updates hold a GC and an Item at one ID, which yjs's comparator
// orders inconsistently.
func manyUpdates(n int, tie bool) [][]byte {
	var in [][]byte
	gc := []byte{refGC, 1}
	for i := range n {
		in = append(in, buildUpdate([]craftSection{{1000, uint64(i), [][]byte{gc}}, {7, uint64(i), [][]byte{gc}}}, nil))
	}
	if tie {
		in = append(in,
			buildUpdate([]craftSection{{1, 0, [][]byte{gc}}}, nil),
			buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refString, parent: "t", content: vstr("x")}.bytes()}}}, nil))
	}
	return in
}

// TestMergeManyUpdatesLinear checks that merging n updates takes work
// about linear in n (the merge order costs log n per struct), with and
// without GC/Item ties, which once made every round sort all decoders.
func TestMergeManyUpdatesLinear(t *testing.T) {
	for _, tie := range []bool{false, true} {
		small, big := manyUpdates(2_000, tie), manyUpdates(8_000, tie)
		s, b := countWork(t, small), countWork(t, big)
		t.Logf("tie %v: %d steps for %d bytes, %d for %d bytes", tie, s, totalLen(small), b, totalLen(big))
		if s == 0 || b > 6*s {
			t.Errorf("tie %v: %d steps for 2000 updates, %d for 8000: not linear", tie, s, b)
		}
		if b > workBound*totalLen(big) {
			t.Errorf("tie %v: %d steps for %d input bytes", tie, b, totalLen(big))
		}
	}
}
