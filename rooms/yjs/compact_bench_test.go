package yjs

import (
	"fmt"
	"strings"
	"testing"
)

// splitSizes are the item lengths of the split benchmarks and tests.
var splitSizes = []int{50_000, 100_000, 200_000, 400_000}

// splitKinds are the content kinds an item can be split into pieces of.
var splitKinds = []struct {
	name string
	ref  byte
}{{"String", refString}, {"Any", refAny}, {"JSON", refJSON}}

// splitUpdates is the worst case of compaction: one item of n elements
// (ContentString, ContentAny or ContentJSON), then a delete set that
// removes every other clock of it, which splits it into n pieces.
func splitUpdates(ref byte, n int) [][]byte {
	var content []byte
	switch ref {
	case refString:
		content = vstr(strings.Repeat("ab", n/2))
	case refAny:
		content = appendVarUint(nil, uint64(n))
		for i := range n {
			content = append(content, anyInteger, byte(i&0x3f))
		}
	case refJSON:
		content = appendVarUint(nil, uint64(n))
		for range n {
			content = append(content, vstr("1")...)
		}
	}
	const client = 1
	doc := buildUpdate([]craftSection{{client, 0, [][]byte{item{ref: ref, parent: "t", content: content}.bytes()}}}, nil)
	ranges := make([][2]uint64, 0, n/2)
	for c := 1; c < n; c += 2 {
		ranges = append(ranges, [2]uint64{uint64(c), 1})
	}
	deletes := buildUpdate(nil, []dsGroup{{client, ranges}})
	return [][]byte{doc, deletes}
}

// BenchmarkCompactSplit compacts one item of 50k to 400k elements of
// which every other one is deleted: the work must grow linearly.
func BenchmarkCompactSplit(b *testing.B) {
	for _, k := range splitKinds {
		for _, n := range splitSizes {
			in := splitUpdates(k.ref, n)
			b.Run(fmt.Sprintf("%s/%dk", k.name, n/1000), func(b *testing.B) {
				b.SetBytes(int64(totalLen(in)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Compact(in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMergeManyUpdates merges 2k to 32k small updates, each of
// which moves a decoder from the front of the merge order to its end.
func BenchmarkMergeManyUpdates(b *testing.B) {
	for _, n := range []int{2_000, 8_000, 32_000} {
		in := manyUpdates(n, true)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.SetBytes(int64(totalLen(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MergeUpdates(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
