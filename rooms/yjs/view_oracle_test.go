package yjs

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/yjs"
)

// viewCase is one history of tests/yjs/oracle-view.mjs.
type viewCase struct {
	Seed     int               `json:"seed"`
	GC       bool              `json:"gc"`
	Clients  int               `json:"clients"`
	Ops      int               `json:"ops"`
	Updates  [][]byte          `json:"updates"`
	State    []byte            `json:"state"`
	Expected map[string]string `json:"expected"` // top-level name → JSON.stringify(toJSON())
}

// TestOracleJSONView checks JSONView against yjs's toJSON() on random
// concurrent editing histories (text with formatting and embeds, maps,
// arrays, nested types, XML, deletions; several clients syncing in
// random orders): for one client's Y.encodeStateAsUpdate, for the
// updates the clients sent merged (what a server holds) and for them
// compacted, every top-level type must equal what a fresh Y.Doc that
// applied the state gives.
func TestOracleJSONView(t *testing.T) {
	yjs.Ensure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var data struct{ Cases []viewCase }
	if err := json.Unmarshal(yjs.Node(t, ctx, nil, "oracle-view.mjs"), &data); err != nil {
		t.Fatalf("decode oracle-view.mjs output: %v", err)
	}
	if len(data.Cases) < 200 {
		t.Fatalf("oracle-view.mjs gave %d histories, want at least 200", len(data.Cases))
	}
	t.Logf("%d histories generated in %v", len(data.Cases), time.Since(start))
	checked := 0
	for _, c := range data.Cases {
		merged, err := MergeUpdates(c.Updates)
		if err != nil {
			t.Fatalf("seed %d: merge: %v", c.Seed, err)
		}
		compacted, err := Compact(c.Updates)
		if err != nil {
			t.Fatalf("seed %d: compact: %v", c.Seed, err)
		}
		for _, u := range []struct {
			what   string
			update []byte
		}{{"state", c.State}, {"merged updates", merged}, {"compacted updates", compacted}} {
			got, err := JSONView(u.update)
			if err != nil {
				t.Fatalf("seed %d (%d clients, %d ops, gc %v): %s: %v", c.Seed, c.Clients, c.Ops, c.GC, u.what, err)
			}
			checkView(t, c, u.what, got)
			checked++
		}
	}
	t.Logf("%d documents viewed as yjs's toJSON() gives them", checked)
}

// checkView compares a JSON view with what yjs gave for each top-level
// type, as values (object key order aside). A type the view leaves out,
// or shows as null (kind unknown), must be empty in yjs.
func checkView(t *testing.T, c viewCase, what string, got []byte) {
	t.Helper()
	var view map[string]json.RawMessage
	if err := json.Unmarshal(got, &view); err != nil {
		t.Fatalf("seed %d: %s: the view is not a JSON object: %v\n%s", c.Seed, what, err, got)
	}
	for name := range view {
		if _, ok := c.Expected[name]; !ok {
			t.Fatalf("seed %d: %s: the view has %q, yjs has no such type", c.Seed, what, name)
		}
	}
	for name, want := range c.Expected {
		g, ok := view[name]
		if !ok || string(g) == "null" {
			if want != `""` && want != "[]" && want != "{}" {
				t.Fatalf("seed %d: %s: %q is %s in the view, yjs has %.300s", c.Seed, what, name, g, want)
			}
			continue
		}
		if !sameJSON(t, g, []byte(want)) {
			t.Fatalf("seed %d (%d clients, %d ops, gc %v): %s: %q differs\n got: %.2000s\nwant: %.2000s", c.Seed, c.Clients, c.Ops, c.GC, what, name, g, want)
		}
	}
}

// sameJSON compares two JSON texts as values, numbers by their text.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	decode := func(s []byte) any {
		d := json.NewDecoder(bytes.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("invalid JSON %.200s: %v", s, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
