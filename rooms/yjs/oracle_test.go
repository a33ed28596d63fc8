package yjs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/yjs"
)

// oracleData is what tests/yjs/oracle-gen.mjs prints: updates made by
// real Y.Docs and what the yjs update algebra returns for them.
type oracleData struct {
	YjsVersion string `json:"yjsVersion"`
	Frames     []struct {
		Type    uint64 `json:"type"`
		Sync    uint64 `json:"sync"`
		Frame   []byte `json:"frame"`
		Payload []byte `json:"payload"`
	} `json:"frames"`
	Awareness []struct {
		Update  []byte `json:"update"`
		Entries []struct {
			Client uint64 `json:"client"`
			Clock  uint64 `json:"clock"`
			State  string `json:"state"`
		} `json:"entries"`
	} `json:"awareness"`
	SortCases []struct {
		Input [][3]any `json:"input"` // client, clock, "gc" | "item" | "skip"
		Perm  []int    `json:"perm"`
	} `json:"sortCases"`
	Scenarios []*scenario `json:"scenarios"`
}

type scenario struct {
	Name    string   `json:"name"`
	Content string   `json:"content"` // canonical content of the converged doc
	Pool    [][]byte `json:"pool"`    // every update referred to by index
	Updates []int    `json:"updates"` // the updates clients sent, in order
	States  []int    `json:"states"`  // Y.encodeStateAsUpdate of each client
	Merged  int      `json:"merged"`  // Y.mergeUpdates(updates), or -1
	// MergedExpected is Y.mergeUpdates(updates) when Merged is -1.
	MergedExpected []byte `json:"mergedExpected"`
	MergeCases     []struct {
		Inputs   []int  `json:"inputs"`
		Expected []byte `json:"expected"`
	} `json:"mergeCases"`
	DiffCases []struct {
		Update   int    `json:"update"`
		SV       []byte `json:"sv"`
		Expected []byte `json:"expected"`
		Base     *int   `json:"base"` // a state whose state vector is SV
	} `json:"diffCases"`
	SVCases []struct {
		Update   int    `json:"update"`
		Expected []byte `json:"expected"`
	} `json:"svCases"`
	StateAsUpdateLength int `json:"stateAsUpdateLength"`
	HistoryEdits        int `json:"historyEdits"`
}

func (s *scenario) updates() [][]byte { return s.pick(s.Updates) }

func (s *scenario) pick(idx []int) [][]byte {
	out := make([][]byte, len(idx))
	for i, j := range idx {
		out[i] = s.Pool[j]
	}
	return out
}

var oracle struct {
	once sync.Once
	data *oracleData
	took time.Duration
}

// loadOracle runs oracle-gen.mjs once per test binary. It fails (never
// skips) when node or the npm packages are missing.
func loadOracle(t testing.TB) *oracleData {
	t.Helper()
	yjs.Ensure(t)
	oracle.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		out := yjs.Node(t, ctx, nil, "oracle-gen.mjs")
		var d oracleData
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatalf("decode oracle-gen.mjs output: %v", err)
		}
		oracle.took = time.Since(start)
		oracle.data = &d
	})
	if oracle.data == nil {
		t.Fatal("oracle-gen.mjs failed in an earlier test")
	}
	if len(oracle.data.Scenarios) == 0 {
		t.Fatal("oracle-gen.mjs produced no scenarios")
	}
	return oracle.data
}

// nodeApply applies each job's updates to a fresh Y.Doc with
// oracle-apply.mjs and returns what the docs hold.
type applied struct {
	Content string `json:"content"`
	Pending bool   `json:"pending"`
	Size    int    `json:"size"`
	Error   string `json:"error"`
}

func nodeApply(t *testing.T, jobs [][][]byte) []applied {
	t.Helper()
	in, err := json.Marshal(map[string]any{"jobs": jobs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := yjs.Node(t, ctx, in, "oracle-apply.mjs")
	var res []applied
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("decode oracle-apply.mjs output: %v", err)
	}
	if len(res) != len(jobs) {
		t.Fatalf("oracle-apply.mjs: %d results for %d jobs", len(res), len(jobs))
	}
	return res
}

func TestOracleMergeUpdates(t *testing.T) {
	d := loadOracle(t)
	t.Logf("yjs %s, oracle generated in %v", d.YjsVersion, oracle.took)
	cases := 0
	for _, s := range d.Scenarios {
		t.Run(s.Name, func(t *testing.T) {
			if s.Merged < 0 {
				got, err := MergeUpdates(s.updates())
				if err != nil {
					t.Fatal(err)
				}
				wantBytes(t, "MergeUpdates(all updates)", got, s.MergedExpected)
				cases++
			}
			for i, c := range s.MergeCases {
				got, err := MergeUpdates(s.pick(c.Inputs))
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				wantBytes(t, fmt.Sprintf("case %d: MergeUpdates of %d updates", i, len(c.Inputs)), got, c.Expected)
				cases++
			}
		})
	}
	t.Logf("%d merge cases byte-for-byte equal to Y.mergeUpdates", cases)
}

func TestOracleStateVectorOf(t *testing.T) {
	d := loadOracle(t)
	cases := 0
	for _, s := range d.Scenarios {
		for i, c := range s.SVCases {
			got, err := StateVectorOf(s.Pool[c.Update])
			if err != nil {
				t.Fatalf("%s: case %d: %v", s.Name, i, err)
			}
			want, err := DecodeStateVector(c.Expected)
			if err != nil {
				t.Fatalf("%s: case %d: decode expected: %v", s.Name, i, err)
			}
			if !equalSV(got, want) {
				t.Fatalf("%s: case %d: StateVectorOf = %v, Y.encodeStateVectorFromUpdate = %v", s.Name, i, got, want)
			}
			// Y.encodeStateVector sorts by client too: the encodings
			// agree whenever JS wrote each client once.
			back, err := DecodeStateVector(got.Encode())
			if err != nil || !equalSV(back, got) {
				t.Fatalf("%s: case %d: Encode does not round-trip: %v %v", s.Name, i, back, err)
			}
			cases++
		}
	}
	t.Logf("%d state vectors equal to Y.encodeStateVectorFromUpdate", cases)
}

func TestOracleDiffUpdate(t *testing.T) {
	d := loadOracle(t)
	cases := 0
	for _, s := range d.Scenarios {
		for i, c := range s.DiffCases {
			sv, err := DecodeStateVector(c.SV)
			if err != nil {
				t.Fatalf("%s: case %d: %v", s.Name, i, err)
			}
			got, err := DiffUpdate(s.Pool[c.Update], sv)
			if err != nil {
				t.Fatalf("%s: case %d: %v", s.Name, i, err)
			}
			wantBytes(t, fmt.Sprintf("%s: case %d: DiffUpdate(update, %v)", s.Name, i, sv), got, c.Expected)
			cases++
		}
	}
	t.Logf("%d diffs byte-for-byte equal to Y.diffUpdate", cases)
}

// TestOracleApply applies what Go made (MergeUpdates, Compact, DiffUpdate
// on top of an older state) to fresh Y.Docs and checks that they hold
// exactly the content of the clients' converged documents.
func TestOracleApply(t *testing.T) {
	d := loadOracle(t)
	type check struct {
		scenario *scenario
		what     string
		compact  bool // report sizes
	}
	var jobs [][][]byte
	var checks []check
	add := func(s *scenario, what string, compact bool, updates ...[]byte) {
		jobs = append(jobs, updates)
		checks = append(checks, check{s, what, compact})
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range d.Scenarios {
		us := s.updates()
		add(s, "MergeUpdates(updates)", false, must(MergeUpdates(us)))
		compacted := must(Compact(us))
		add(s, "Compact(updates)", true, compacted)
		shuffled := append([][]byte(nil), us...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		add(s, "Compact(shuffled updates)", false, must(Compact(shuffled)))
		if len(s.States) > 0 {
			add(s, "Compact(states)", false, must(Compact(s.pick(s.States))))
			add(s, "Compact(states + updates)", false, must(Compact(append(s.pick(s.States), us...))))
		}
		if s.Merged >= 0 {
			add(s, "Compact([merged])", false, must(Compact([][]byte{s.Pool[s.Merged]})))
		}
		// Compacting in rounds, as a server does: compact, add more
		// updates, compact again.
		var acc []byte = EmptyUpdate
		for i := 0; i < len(us); i += 1 + len(us)/7 {
			acc = must(Compact(append([][]byte{acc}, us[i:min(len(us), i+1+len(us)/7)]...)))
		}
		add(s, "Compact in rounds", false, acc)
		for i, c := range s.DiffCases {
			if c.Base == nil {
				continue
			}
			sv, err := DecodeStateVector(c.SV)
			if err != nil {
				t.Fatal(err)
			}
			base := s.Pool[*c.Base]
			add(s, fmt.Sprintf("diff case %d: base + DiffUpdate(merged, sv)", i), false, base, must(DiffUpdate(must(MergeUpdates(us)), sv)))
			// a server answers sync step 1 from its compacted doc
			add(s, fmt.Sprintf("diff case %d: base + DiffUpdate(Compact(updates), sv)", i), false, base, must(DiffUpdate(compacted, sv)))
		}
	}
	start := time.Now()
	res := nodeApply(t, jobs)
	t.Logf("%d documents applied by oracle-apply.mjs in %v", len(jobs), time.Since(start))
	for i, c := range checks {
		got := res[i]
		s := c.scenario
		switch {
		case got.Error != "":
			t.Errorf("%s: %s: Y.applyUpdate failed: %s", s.Name, c.what, got.Error)
		case got.Pending:
			t.Errorf("%s: %s: the doc has pending structs or deletes", s.Name, c.what)
		case got.Content != s.Content:
			t.Errorf("%s: %s: content differs\n got: %.600s\nwant: %.600s", s.Name, c.what, got.Content, s.Content)
		}
		if c.compact {
			size := len(jobs[i][0])
			ratio := float64(size) / float64(s.StateAsUpdateLength)
			t.Logf("%s: Compact of %d updates (%d bytes) = %d bytes; Y.encodeStateAsUpdate = %d bytes (%.2fx)",
				s.Name, len(s.Updates), totalLen(s.updates()), size, s.StateAsUpdateLength, ratio)
			if s.HistoryEdits > 0 && ratio > 1.5 {
				t.Errorf("%s: Compact of a %d-edit history is %.2fx Y.encodeStateAsUpdate, want <= 1.5x", s.Name, s.HistoryEdits, ratio)
			}
		}
	}
}

func TestOracleMessages(t *testing.T) {
	d := loadOracle(t)
	if len(d.Frames) == 0 || len(d.Awareness) == 0 {
		t.Fatal("oracle produced no frames")
	}
	for i, f := range d.Frames {
		m, err := ParseMessage(f.Frame)
		if err != nil {
			t.Fatalf("frame %d (%x): %v", i, f.Frame, err)
		}
		if m.Type != f.Type || !bytes.Equal(m.Payload, f.Payload) || (m.Type == MessageSync && m.Sync != f.Sync) {
			t.Fatalf("frame %d: got %+v, want type %d sync %d payload %x", i, m, f.Type, f.Sync, f.Payload)
		}
		var back []byte
		switch m.Type {
		case MessageSync:
			back = AppendSyncMessage(nil, m.Sync, m.Payload)
		case MessageAwareness:
			back = AppendAwarenessMessage(nil, m.Payload)
		default:
			back = appendVarUint(nil, m.Type)
		}
		wantBytes(t, fmt.Sprintf("frame %d re-encoded", i), back, f.Frame)
	}
	for i, a := range d.Awareness {
		entries, err := ParseAwareness(a.Update)
		if err != nil {
			t.Fatalf("awareness %d: %v", i, err)
		}
		if len(entries) != len(a.Entries) {
			t.Fatalf("awareness %d: %d entries, want %d", i, len(entries), len(a.Entries))
		}
		for j, e := range entries {
			w := a.Entries[j]
			if e.Client != w.Client || e.Clock != w.Clock || string(e.State) != w.State {
				t.Fatalf("awareness %d entry %d: got %d %d %s, want %d %d %s", i, j, e.Client, e.Clock, e.State, w.Client, w.Clock, w.State)
			}
		}
		wantBytes(t, fmt.Sprintf("awareness %d re-encoded", i), EncodeAwareness(entries), a.Update)
	}
	// Every update of every scenario parses as sync messages.
	for _, s := range d.Scenarios {
		for i, u := range s.Pool {
			for _, sub := range []uint64{SyncStep2, SyncUpdate} {
				m, err := ParseMessage(AppendSyncMessage(nil, sub, u))
				if err != nil || m.Sync != sub || !bytes.Equal(m.Payload, u) {
					t.Fatalf("%s: pool %d as sync %d: %+v %v", s.Name, i, sub, m, err)
				}
			}
		}
		for i, c := range s.DiffCases {
			if _, err := ParseMessage(AppendSyncMessage(nil, SyncStep1, c.SV)); err != nil {
				t.Fatalf("%s: state vector %d: %v", s.Name, i, err)
			}
		}
	}
}

// TestOracleSortOrder checks that mergeUpdates orders its decoders as
// V8's Array.prototype.sort does with the yjs comparator, whose GC/Item
// tie is inconsistent.
func TestOracleSortOrder(t *testing.T) {
	d := loadOracle(t)
	if len(d.SortCases) == 0 {
		t.Fatal("oracle produced no sort cases")
	}
	var sorter v8Sorter
	kinds := map[string]uint8{"gc": kindGC, "item": kindItem, "skip": kindSkip}
	for i, c := range d.SortCases {
		readers := make([]structReader, len(c.Input))
		a := make([]*structReader, len(c.Input))
		index := map[*structReader]int{}
		for j, in := range c.Input {
			readers[j].cur = block{client: uint64(in[0].(float64)), clock: uint64(in[1].(float64)), kind: kinds[in[2].(string)]}
			a[j] = &readers[j]
			index[a[j]] = j
		}
		sorter.sort(a)
		for j, want := range c.Perm {
			if got := index[a[j]]; got != want {
				t.Fatalf("case %d (n=%d): position %d holds element %d, V8 puts %d there", i, len(a), j, got, want)
			}
		}
	}
}

// TestCompactKeepsTypes checks that Compact leaves deleted types and
// subdocuments alone (their children may still refer to them) while it
// replaces other deleted content.
func TestCompactKeepsTypes(t *testing.T) {
	d := loadOracle(t)
	for _, s := range d.Scenarios {
		merged, err := MergeUpdates(s.updates())
		if err != nil {
			t.Fatal(err)
		}
		compacted, err := Compact(s.updates())
		if err != nil {
			t.Fatal(err)
		}
		m, c := countRefs(t, merged), countRefs(t, compacted)
		if m[refType] != c[refType] || m[refDoc] != c[refDoc] {
			t.Errorf("%s: merged has %d types and %d docs, compacted %d and %d", s.Name, m[refType], m[refDoc], c[refType], c[refDoc])
		}
		off, err := scanUpdate(merged, true)
		if err != nil {
			t.Fatal(err)
		}
		if ds := readDeleteSet(&reader{buf: merged, pos: off}, nil); len(ds) > 0 && c[refDeleted] <= m[refDeleted] {
			t.Errorf("%s: nothing was compacted: %v", s.Name, c)
		}
	}
}

// countRefs counts the items of each content kind in an update.
func countRefs(t *testing.T, u []byte) map[uint8]int {
	t.Helper()
	n := map[uint8]int{}
	var s structReader
	for s.init(u, false, false); s.has; s.next() {
		if s.cur.kind == kindItem {
			n[s.cur.ref]++
		}
	}
	if s.r.err != nil {
		t.Fatal(s.r.err)
	}
	return n
}

func equalSV(a, b StateVector) bool {
	if len(a) != len(b) {
		return false
	}
	for c, k := range a {
		if v, ok := b[c]; !ok || v != k {
			return false
		}
	}
	return true
}

func totalLen(us [][]byte) int {
	n := 0
	for _, u := range us {
		n += len(u)
	}
	return n
}

// wantBytes fails t when got != want, showing where they differ and the
// structs of both.
func wantBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at byte %d\n got: %s\nwant: %s",
		what, len(got), len(want), i, dumpUpdate(got), dumpUpdate(want))
}

// dumpUpdate describes the structs and delete set of an update, for
// test failures.
func dumpUpdate(u []byte) string {
	var sb strings.Builder
	var s structReader
	s.init(u, false, true)
	n := 0
	for ; s.has && n < 60; s.next() {
		b := &s.cur
		switch b.kind {
		case kindGC:
			fmt.Fprintf(&sb, "GC(%d:%d+%d) ", b.client, b.clock, b.length)
		case kindSkip:
			fmt.Fprintf(&sb, "Skip(%d:%d+%d) ", b.client, b.clock, b.length)
		default:
			fmt.Fprintf(&sb, "Item(%d:%d+%d ref%d f%x o%v r%v %q) ", b.client, b.clock, b.length, b.ref, b.flags, b.origin, b.rightOrigin, b.content)
		}
		n++
	}
	if s.r.err != nil {
		fmt.Fprintf(&sb, "error: %v", s.r.err)
		return sb.String()
	}
	if s.has {
		sb.WriteString("... ")
		for s.has {
			s.next()
		}
	}
	ds, err := readTail(&s.r, nil)
	fmt.Fprintf(&sb, "DS %v %v", ds, err)
	return sb.String()
}
