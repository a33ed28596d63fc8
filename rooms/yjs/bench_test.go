package yjs

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/yjs"
)

// benchData is what oracle-bench.mjs prints: a ~1 MB document, 100 small
// updates after it, the final document, and the state vector of the
// document before the last of those updates.
type benchData struct {
	Doc          []byte   `json:"doc"`
	Updates      [][]byte `json:"updates"`
	Final        []byte   `json:"final"`
	SVBeforeLast []byte   `json:"svBeforeLast"`
}

var bench struct {
	once sync.Once
	data *benchData
}

func loadBench(b *testing.B) *benchData {
	b.Helper()
	yjs.Ensure(b)
	bench.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var d benchData
		if err := json.Unmarshal(yjs.Node(b, ctx, nil, "oracle-bench.mjs"), &d); err != nil {
			b.Fatal(err)
		}
		bench.data = &d
	})
	if bench.data == nil {
		b.Fatal("oracle-bench.mjs failed earlier")
	}
	return bench.data
}

func (d *benchData) inputs() [][]byte { return append([][]byte{d.Doc}, d.Updates...) }

// BenchmarkMergeUpdates merges a 1 MB document with 100 small updates.
func BenchmarkMergeUpdates(b *testing.B) {
	d := loadBench(b)
	in := d.inputs()
	b.SetBytes(int64(totalLen(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MergeUpdates(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompact compacts a 1 MB document with 100 small updates.
func BenchmarkCompact(b *testing.B) {
	d := loadBench(b)
	in := d.inputs()
	out, err := Compact(in)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(out)), "out-bytes")
	b.SetBytes(int64(totalLen(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compact(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiffUpdate diffs a 1 MB document against the state vector of
// a peer that lacks only its last small edit.
func BenchmarkDiffUpdate(b *testing.B) {
	d := loadBench(b)
	sv, err := DecodeStateVector(d.SVBeforeLast)
	if err != nil {
		b.Fatal(err)
	}
	out, err := DiffUpdate(d.Final, sv)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(out)), "out-bytes")
	b.SetBytes(int64(len(d.Final)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DiffUpdate(d.Final, sv); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateUpdate validates a 1 MB document (what ParseMessage
// does with a sync step 2 of a whole document).
func BenchmarkValidateUpdate(b *testing.B) {
	d := loadBench(b)
	b.SetBytes(int64(len(d.Final)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateUpdate(d.Final); err != nil {
			b.Fatal(err)
		}
	}
}
