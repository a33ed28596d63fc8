package yjs

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/yjs"
)

// BenchmarkJSONView views a ~1 MiB document made by 10,000 edits of
// three clients (tests/yjs/oracle-view.mjs bench): as one client's
// Y.encodeStateAsUpdate, and as the merge of the 9,864 updates they sent
// (what a server holds before compaction). The view is checked against
// yjs's toJSON() first.
func BenchmarkJSONView(b *testing.B) {
	d := loadViewBench(b)
	merged, err := MergeUpdates(d.Updates)
	if err != nil {
		b.Fatal(err)
	}
	for _, in := range []struct {
		name   string
		update []byte
	}{{"state", d.State}, {"merged", merged}} {
		got, err := JSONView(in.update)
		if err != nil {
			b.Fatal(err)
		}
		var view map[string]json.RawMessage
		if err := json.Unmarshal(got, &view); err != nil {
			b.Fatal(err)
		}
		for name, want := range d.Expected {
			if _, ok := view[name]; !ok && (want == `""` || want == "[]" || want == "{}") {
				continue // a type nobody wrote to
			}
			if !sameJSON(b, view[name], []byte(want)) {
				b.Fatalf("%s: %q differs from yjs's toJSON()", in.name, name)
			}
		}
		b.Run(in.name, func(b *testing.B) {
			b.ReportMetric(float64(len(in.update)), "doc-bytes")
			b.SetBytes(int64(len(in.update)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := JSONView(in.update); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// viewBench is what oracle-view.mjs bench prints.
type viewBench struct {
	Edits    int               `json:"edits"`
	Updates  [][]byte          `json:"updates"`
	State    []byte            `json:"state"`
	Expected map[string]string `json:"expected"`
}

var viewBenchData struct {
	once sync.Once
	data *viewBench
}

// loadViewBench runs oracle-view.mjs bench once per test binary.
func loadViewBench(b *testing.B) *viewBench {
	b.Helper()
	yjs.Ensure(b)
	viewBenchData.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var d viewBench
		if err := json.Unmarshal(yjs.Node(b, ctx, nil, "oracle-view.mjs", "bench"), &d); err != nil {
			b.Fatal(err)
		}
		viewBenchData.data = &d
	})
	if viewBenchData.data == nil {
		b.Fatal("oracle-view.mjs bench failed earlier")
	}
	return viewBenchData.data
}
