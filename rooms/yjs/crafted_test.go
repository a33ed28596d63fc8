package yjs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/yjs"
)

// Hand-made updates with what real clients rarely or never write
// (ContentJSON, client sections out of order, empty sections, GC structs with
// flag bits, parentInfo other than 0/1, info bit 0x20 next to an origin,
// Skip structs, unsorted and overlapping delete sets, deletes that cut
// surrogate pairs), checked against yjs with oracle-algebra.mjs.

type craftSection struct {
	client, clock uint64
	structs       [][]byte
}

// dsGroup is one client entry of a delete set as written, in order.
type dsGroup struct {
	client uint64
	ranges [][2]uint64
}

func buildUpdate(secs []craftSection, ds []dsGroup) []byte {
	b := appendVarUint(nil, uint64(len(secs)))
	for _, s := range secs {
		b = appendVarUint(b, uint64(len(s.structs)))
		b = appendVarUint(b, s.client)
		b = appendVarUint(b, s.clock)
		for _, st := range s.structs {
			b = append(b, st...)
		}
	}
	b = appendVarUint(b, uint64(len(ds)))
	for _, g := range ds {
		b = appendVarUint(b, g.client)
		b = appendVarUint(b, uint64(len(g.ranges)))
		for _, r := range g.ranges {
			b = appendVarUint(appendVarUint(b, r[0]), r[1])
		}
	}
	return b
}

// item encodes an Item. parent is a root type name (string) or an id;
// info adds flag bits that are not implied (0x20 next to an origin).
type item struct {
	ref           byte
	origin, right *id
	parent        any
	parentInfo    uint64 // written when parent is an id (0 unless testing)
	sub           *string
	info          byte
	content       []byte
}

func (x item) bytes() []byte {
	info := x.ref | x.info
	if x.origin != nil {
		info |= flagOrigin
	}
	if x.right != nil {
		info |= flagRightOrigin
	}
	if x.sub != nil {
		info |= flagParentSub
	}
	b := []byte{info}
	if x.origin != nil {
		b = appendID(b, *x.origin)
	}
	if x.right != nil {
		b = appendID(b, *x.right)
	}
	if x.origin == nil && x.right == nil {
		switch p := x.parent.(type) {
		case string:
			b = appendVarBytes(append(b, 1), []byte(p))
		case id:
			b = appendID(appendVarUint(b, x.parentInfo), p)
		}
		if x.sub != nil {
			b = appendVarBytes(b, []byte(*x.sub))
		}
	}
	return append(b, x.content...)
}

func vstr(s string) []byte { return appendVarBytes(nil, []byte(s)) }

func cJSON(texts ...string) []byte {
	b := appendVarUint(nil, uint64(len(texts)))
	for _, t := range texts {
		b = append(b, vstr(t)...)
	}
	return b
}

func cAny(n int, encoded []byte) []byte { return append(appendVarUint(nil, uint64(n)), encoded...) }

func ptr[T any](v T) *T { return &v }

// craftedUpdates returns named edge-case updates; anyBytes is lib0's
// encoding of anyValues (from JS), anyCount values.
func craftedUpdates(anyBytes []byte, anyCount int) map[string][]byte {
	const a, b, c = 5, 7, 300
	out := map[string][]byte{}
	emoji := item{ref: refString, parent: "text", content: vstr("a😀b😀")} // 6 units
	for _, d := range [][2]uint64{{1, 1}, {2, 1}, {2, 2}, {0, 2}, {1, 2}, {3, 3}, {2, 3}} {
		out[fmt.Sprintf("surrogate cut by delete %v", d)] = buildUpdate(
			[]craftSection{{a, 0, [][]byte{emoji.bytes(), item{ref: refString, origin: &id{a, 5}, content: vstr("z😀")}.bytes()}}},
			[]dsGroup{{a, [][2]uint64{d}}})
	}
	out["json and any in an array"] = buildUpdate([]craftSection{{a, 0, [][]byte{
		item{ref: refJSON, parent: "arr", content: cJSON("1", `"x😀"`, "undefined", `{"k":[1,2]}`, "null")}.bytes(),
		item{ref: refAny, origin: &id{a, 4}, content: cAny(anyCount, anyBytes)}.bytes(),
		item{ref: refJSON, origin: &id{a, 4 + uint64(anyCount)}, content: cJSON("2", "3")}.bytes(),
		item{ref: refBinary, origin: &id{a, 5 + uint64(anyCount)}, content: vstr("\x00\x01\xff")}.bytes(),
	}}}, []dsGroup{{a, [][2]uint64{{2, 3}, {uint64(anyCount) + 6, 1}}}})
	mapType := appendVarUint(nil, 1) // YMap
	out["nested map, parentInfo 2, bit 0x20 beside an origin"] = buildUpdate([]craftSection{{a, 0, [][]byte{
		item{ref: refType, parent: "map", sub: ptr("m"), content: mapType}.bytes(),
		item{ref: refAny, parent: id{a, 0}, parentInfo: 2, sub: ptr("x"), content: cAny(1, []byte{125, 1})}.bytes(),
		item{ref: refAny, origin: &id{a, 1}, info: flagParentSub, content: cAny(1, []byte{125, 2})}.bytes(),
		item{ref: refAny, parent: "map", sub: ptr("y"), content: cAny(2, []byte{119, 1, 'q', 126})}.bytes(),
	}}}, []dsGroup{{a, [][2]uint64{{1, 1}, {3, 1}}}})
	out["rich text: formats, embeds"] = buildUpdate([]craftSection{{a, 0, [][]byte{
		item{ref: refString, parent: "text", content: vstr("hi")}.bytes(),
		item{ref: refFormat, origin: &id{a, 1}, content: append(vstr("bold"), vstr("true")...)}.bytes(),
		item{ref: refString, origin: &id{a, 2}, content: vstr("yo")}.bytes(),
		item{ref: refFormat, origin: &id{a, 4}, content: append(vstr("bold"), vstr("null")...)}.bytes(),
		item{ref: refEmbed, origin: &id{a, 5}, content: vstr(`{"image":"x.png"}`)}.bytes(),
		item{ref: refString, origin: &id{a, 6}, content: vstr("end")}.bytes(),
	}}}, []dsGroup{{a, [][2]uint64{{1, 2}}}})
	xml := append(appendVarUint(nil, typeXmlElement), vstr("p")...)
	out["xml element and hook"] = buildUpdate([]craftSection{{a, 0, [][]byte{
		item{ref: refType, parent: "xml", content: xml}.bytes(),
		item{ref: refString, parent: id{a, 0}, sub: ptr("class"), content: vstr("big")}.bytes(),
		item{ref: refType, origin: &id{a, 0}, content: append(appendVarUint(nil, typeXmlHook), vstr("h")...)}.bytes(),
		item{ref: refType, parent: id{a, 0}, content: appendVarUint(nil, 6)}.bytes(), // XmlText
		item{ref: refString, parent: id{a, 3}, content: vstr("inner")}.bytes(),
	}}}, nil)
	// Sections in ascending client order (Yjs writes descending), a GC
	// with flag bits, an empty section; the delete set is unsorted,
	// repeats clients and overlaps.
	out["unsorted sections, GC with flags, messy delete set"] = buildUpdate([]craftSection{
		{a, 0, [][]byte{item{ref: refString, parent: "text", content: vstr("aa")}.bytes(), {0x80, 2}, item{ref: refString, origin: &id{a, 1}, content: vstr("AA")}.bytes()}},
		{b, 0, [][]byte{item{ref: refString, parent: "text", content: vstr("bbb")}.bytes()}},
		{c, 3, nil},
		{c + 1, 0, [][]byte{item{ref: refString, origin: &id{b, 2}, content: vstr("cc")}.bytes()}},
	}, []dsGroup{{a, [][2]uint64{{4, 1}, {0, 1}, {1, 1}, {9, 2}}}, {b, nil}, {a, [][2]uint64{{0, 2}}}, {c + 1, [][2]uint64{{1, 3}}}})
	out["skips"] = buildUpdate([]craftSection{
		{a, 0, [][]byte{item{ref: refString, parent: "text", content: vstr("ab")}.bytes(), {refSkip, 3}, item{ref: refString, origin: &id{a, 1}, content: vstr("cd")}.bytes()}},
		{b, 0, [][]byte{{refSkip, 2}, item{ref: refString, parent: "text", content: vstr("x")}.bytes()}},
	}, []dsGroup{{b, [][2]uint64{{0, 1}}}})
	out["gc only"] = buildUpdate([]craftSection{{a, 0, [][]byte{{0, 3}}}, {b, 2, [][]byte{{0, 1}, {0, 4}}}}, nil)
	out["deletes only"] = buildUpdate(nil, []dsGroup{{b, [][2]uint64{{3, 1}, {0, 2}}}, {a, [][2]uint64{{0, 1}}}})
	return out
}

type algebraCase struct {
	Op      string   `json:"op"`
	Updates [][]byte `json:"updates,omitempty"`
	Update  []byte   `json:"update,omitempty"`
	SV      []byte   `json:"sv,omitempty"`
	Values  []any    `json:"values,omitempty"`
}

type algebraResult struct {
	Result  []byte `json:"result"`
	Content string `json:"content"`
	Pending bool   `json:"pending"`
	Error   string `json:"error"`
}

func runAlgebra(t *testing.T, cases []algebraCase) []algebraResult {
	t.Helper()
	in, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res []algebraResult
	if err := json.Unmarshal(yjs.Node(t, ctx, in, "oracle-algebra.mjs"), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != len(cases) {
		t.Fatalf("%d results for %d cases", len(res), len(cases))
	}
	return res
}

// anyValues are encoded by lib0's writeAny in JS (so the encoding is
// the canonical one) and used as ContentAny.
var anyValues = []any{
	0, 1, -1, 63, 64, -8191, 2147483647, -2147483648, 1.5, 0.1, -2.75e-300, 1099511627776, 1e21,
	map[string]any{"$bigint": "-9007199254740993"}, true, false, nil, map[string]any{"$undefined": true},
	"", "s😀é", map[string]any{"b": 1, "a": []any{1, map[string]any{"$bin": base64.StdEncoding.EncodeToString([]byte{0, 1})}}, "ключ": nil},
	[]any{[]any{}, map[string]any{}}, map[string]any{"$bin": ""},
}

func TestOracleCrafted(t *testing.T) {
	yjs.Ensure(t)
	res := runAlgebra(t, []algebraCase{{Op: "any", Values: anyValues}})
	if res[0].Error != "" {
		t.Fatal(res[0].Error)
	}
	anyBytes := res[0].Result
	r := reader{buf: anyBytes}
	for range anyValues {
		r.skipAny(0)
	}
	if !r.done() {
		t.Fatalf("skipAny over lib0's encoding of %d values: pos %d of %d, %v", len(anyValues), r.pos, len(anyBytes), r.err)
	}

	updates := craftedUpdates(anyBytes, len(anyValues))
	var cases []algebraCase
	type check struct {
		name, what string
		want       func(algebraResult) // compares with Go
	}
	var checks []check
	add := func(name, what string, c algebraCase, want func(algebraResult)) {
		cases = append(cases, c)
		checks = append(checks, check{name, what, want})
	}
	// addCompactCheck checks that a doc gets the same content from
	// Compact(in) as from MergeUpdates(in). (Not as from in: Yjs
	// replicas themselves disagree when a struct starts inside a
	// surrogate pair, depending on what they split.)
	addCompactCheck := func(name string, in [][]byte) {
		compacted, err := Compact(in)
		if err != nil {
			t.Fatalf("%s: Compact: %v", name, err)
		}
		merged, err := MergeUpdates(in)
		if err != nil {
			t.Fatalf("%s: MergeUpdates: %v", name, err)
		}
		// With client sections out of order the JS merge algorithm can
		// lose structs (Compact sorts them first): compare with the
		// updates themselves then.
		ref := [][]byte{merged}
		if strings.HasPrefix(name, "unsorted") {
			ref = in
		}
		var original algebraResult
		add(name, "apply reference", algebraCase{Op: "apply", Updates: ref}, func(r algebraResult) { original = r })
		add(name, "apply compacted", algebraCase{Op: "apply", Updates: [][]byte{compacted}}, func(r algebraResult) {
			if r.Error != "" || original.Error != "" {
				t.Errorf("%s: apply: %s %s", name, r.Error, original.Error)
			} else if r.Content != original.Content || r.Pending != original.Pending {
				t.Errorf("%s: Compact changes the content:\n got %s (pending %v)\nwant %s (pending %v)", name, r.Content, r.Pending, original.Content, original.Pending)
			}
		})
	}
	// mergeCheck compares MergeUpdates(in) with Y.mergeUpdates of in
	// with client sections in descending order (which Yjs assumes and
	// MergeUpdates establishes first).
	mergeCheck := func(name, what string, in [][]byte) {
		m, err := MergeUpdates(in)
		if err != nil {
			t.Fatalf("%s: %s: %v", name, what, err)
		}
		js := make([][]byte, len(in))
		for i, u := range in {
			if js[i], _, err = sortSections(u); err != nil {
				t.Fatal(err)
			}
		}
		add(name, what, algebraCase{Op: "merge", Updates: js}, wantResult(t, name, "MergeUpdates "+what, m))
	}
	for name, u := range updates {
		if err := ValidateUpdate(u); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		goSV, err := StateVectorOf(u)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		add(name, "state vector", algebraCase{Op: "sv", Update: u}, func(r algebraResult) {
			want, err := DecodeStateVector(r.Result)
			if err != nil || !equalSV(goSV, want) {
				t.Errorf("%s: StateVectorOf = %v, JS %v (%v)", name, goSV, want, err)
			}
		})
		// diff at every clock of every client
		full, err := StateVectorOf(u)
		if err != nil {
			t.Fatal(err)
		}
		svs := []StateVector{{}}
		for client, end := range full {
			for k := uint64(0); k <= end+1; k++ {
				svs = append(svs, StateVector{client: k})
			}
		}
		for _, sv := range svs {
			got, err := DiffUpdate(u, sv)
			if err != nil {
				t.Fatalf("%s: DiffUpdate(%v): %v", name, sv, err)
			}
			if err := ValidateUpdate(got); err != nil {
				t.Fatalf("%s: DiffUpdate(%v) is not valid: %v", name, sv, err)
			}
			add(name, fmt.Sprintf("diff %v", sv), algebraCase{Op: "diff", Update: u, SV: sv.Encode()}, wantResult(t, name, fmt.Sprintf("DiffUpdate(%v)", sv), got))
			for _, in := range [][][]byte{{got, u}, {u, got}, {got, got}} {
				mergeCheck(name, fmt.Sprintf("with diff %v", sv), in)
				if name != "skips" {
					addCompactCheck(name+fmt.Sprintf(" with diff %v", sv), in)
				}
			}
		}
		for other, v := range updates {
			mergeCheck(name, "with "+other, [][]byte{u, v})
		}
		// Compact must not change what a document holds.
		if name != "skips" {
			addCompactCheck(name, [][]byte{u})
		}
	}
	// A later update on top of the unsorted one, by a client lower than
	// all of its clients: the JS merge algorithm assumes descending
	// sections, which Compact restores first.
	unsorted := updates["unsorted sections, GC with flags, messy delete set"]
	companion := buildUpdate([]craftSection{{2, 0, [][]byte{
		item{ref: refString, origin: &id{5, 1}, right: &id{5, 4}, content: vstr("q")}.bytes(),
		item{ref: refString, origin: &id{300 + 1, 0}, content: vstr("Q")}.bytes(),
	}}}, []dsGroup{{7, [][2]uint64{{1, 1}}}})
	for _, in := range [][][]byte{{unsorted, companion}, {companion, unsorted}} {
		mergeCheck("unsorted + companion", "merge", in)
		addCompactCheck("unsorted + companion", in)
		// MergeUpdates keeps what the updates hold, too
		if m, err := MergeUpdates(in); err == nil {
			addCompactCheck("unsorted + companion merged", [][]byte{m})
		}
	}
	res = runAlgebra(t, cases)
	for i, c := range checks {
		if res[i].Error != "" {
			t.Errorf("%s: %s: JS failed: %s", c.name, c.what, res[i].Error)
			continue
		}
		c.want(res[i])
	}
	t.Logf("%d crafted updates, %d cases checked against yjs", len(updates), len(cases))
}

func wantResult(t *testing.T, name, what string, got []byte) func(algebraResult) {
	return func(r algebraResult) {
		t.Helper()
		if string(got) != string(r.Result) {
			t.Errorf("%s: %s:\n got %x\n     %s\nwant %x\n     %s", name, what, got, dumpUpdate(got), r.Result, dumpUpdate(r.Result))
		}
	}
}
