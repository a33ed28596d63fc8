package yjs

import "testing"

// workBound is how many steps (see work) per input byte MergeUpdates,
// DiffUpdate and Compact may take.
const workBound = 8

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
