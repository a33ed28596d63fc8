package yjs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// chainUpdate is a valid document on which YATA's conflict scan is
// quadratic. Client 0 writes "a", "t" after it and "b" between them
// ("abt"). Clients 1..n each insert a "w" right after "b" (concurrent
// siblings) whose right origin is the "z" that the client below wrote
// after "t": yjs must integrate the "w"s from the lowest client up, and
// each one scans past all the "w"s before it (lower clients go first),
// the "z"s likewise.
func chainUpdate(n int) []byte {
	secs := []craftSection{}
	for c := n; c >= 1; c-- {
		w := item{ref: refString, origin: &id{0, 2}, content: vstr("w")}
		if c > 1 {
			w.right = &id{uint64(c - 1), 1}
		}
		z := item{ref: refString, origin: &id{0, 1}, content: vstr("z")}
		secs = append(secs, craftSection{uint64(c), 0, [][]byte{w.bytes(), z.bytes()}})
	}
	a := item{ref: refString, parent: "text", content: vstr("a")}
	tt := item{ref: refString, origin: &id{0, 0}, content: vstr("t")}
	b := item{ref: refString, origin: &id{0, 0}, right: &id{0, 1}, content: vstr("b")}
	secs = append(secs, craftSection{0, 0, [][]byte{a.bytes(), tt.bytes(), b.bytes()}})
	return buildUpdate(secs, nil)
}

// textOf returns the text of the top-level type "text" of a JSON view.
func textOf(t *testing.T, view []byte) string {
	t.Helper()
	var v struct{ Text *string }
	if err := json.Unmarshal(view, &v); err != nil || v.Text == nil {
		t.Fatalf("view %s: %v", view, err)
	}
	return *v.Text
}

// TestJSONViewChainAgainstYjs checks the crafted chain against yjs, then
// that a long one crosses the work budget and is refused as invalid.
func TestJSONViewChainAgainstYjs(t *testing.T) {
	small := chainUpdate(40)
	got, err := JSONView(small)
	if err != nil {
		t.Fatal(err)
	}
	res := nodeApply(t, [][][]byte{{small}})
	if res[0].Error != "" || res[0].Pending {
		t.Fatalf("yjs: %+v", res[0])
	}
	var content struct {
		Text struct {
			Text []struct{ Insert string } `json:"$text"`
		} `json:"text"`
	}
	if err := json.Unmarshal([]byte(res[0].Content), &content); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, op := range content.Text.Text {
		want.WriteString(op.Insert)
	}
	if g := textOf(t, got); g != want.String() {
		t.Fatalf("chain of 40: view %q, yjs %q", g, want.String())
	}

	// 500 clients: about 2.5·10^5 steps, within the budget of 1 MiB
	// plus 16 per byte; 4,000: about 1.6·10^7, over it.
	if _, err := JSONView(chainUpdate(500)); err != nil {
		t.Fatalf("chain of 500: %v", err)
	}
	big := chainUpdate(4000)
	_, err = JSONView(big)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "too costly") {
		t.Fatalf("chain of 4000 (%d bytes): err %v, want the work budget's", len(big), err)
	}
}

// TestJSONViewKinds checks how the kind of a top-level type is inferred
// and what is left out.
func TestJSONViewKinds(t *testing.T) {
	s := func(v string) *string { return &v }
	anyStr := func(v string) []byte { return cAny(1, append([]byte{anyString}, vstr(v)...)) }
	cases := []struct {
		name   string
		update []byte
		want   string
	}{
		{"map entries", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refAny, parent: "m", sub: s("k"), content: anyStr("v")}.bytes(),
			item{ref: refAny, parent: "m", sub: s("10"), content: anyStr("ten")}.bytes(),
			item{ref: refAny, origin: &id{1, 0}, content: anyStr("v2")}.bytes(),
		}}}, nil), `{"m":{"10":"ten","k":"v2"}}`},
		{"array of values", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refAny, parent: "a", content: cAny(2, []byte{anyNull, anyUndefined})}.bytes(),
			item{ref: refJSON, origin: &id{1, 1}, content: cJSON(`{"b":1,"2":[1.50,"x"],"b":2}`, "undefined")}.bytes(),
			item{ref: refBinary, origin: &id{1, 3}, content: vstr("\x01\x02")}.bytes(),
		}}}, nil), `{"a":[null,null,{"2":[1.5,"x"],"b":2},null,{"0":1,"1":2}]}`},
		{"text with formats and embeds", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refFormat, parent: "t", content: append(vstr("bold"), vstr("true")...)}.bytes(),
			item{ref: refString, origin: &id{1, 0}, content: vstr("a\"\n")}.bytes(),
			item{ref: refEmbed, origin: &id{1, 3}, content: vstr(`{"image":"x"}`)}.bytes(),
		}}}, nil), `{"t":"a\"\n"}`},
		{"deleted text", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refString, parent: "t", content: vstr("gone")}.bytes(),
		}}}, []dsGroup{{1, [][2]uint64{{0, 4}}}}), `{"t":""}`},
		{"only garbage collected content", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refDeleted, parent: "t", content: appendVarUint(nil, 4)}.bytes(),
		}}}, nil), `{"t":null}`},
		{"xml fragment", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refType, parent: "x", content: append([]byte{typeXmlElement}, vstr("P")...)}.bytes(),
			item{ref: refAny, parent: id{1, 0}, sub: s("id"), content: cAny(1, []byte{anyInteger, 7})}.bytes(),
			item{ref: refType, parent: id{1, 0}, content: []byte{typeXmlText}}.bytes(),
			item{ref: refString, parent: id{1, 2}, content: vstr("hi")}.bytes(),
		}}}, nil), `{"x":"<p id=\"7\">hi</p>"}`},
		{"a missing dependency stays pending", buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refString, parent: "t", content: vstr("here")}.bytes(),
			item{ref: refString, origin: &id{9, 5}, content: vstr("pending")}.bytes(),
		}}}, nil), `{"t":"here"}`},
	}
	for _, c := range cases {
		got, err := JSONView(c.update)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// TestJSONViewRefusals: malformed updates, references to what the
// update does not hold, and types nested past the limit are errors that
// match ErrInvalid.
func TestJSONViewRefusals(t *testing.T) {
	nested := [][]byte{item{ref: refType, parent: "a", content: []byte{typeArray}}.bytes()}
	for i := 1; i <= maxAnyDepth; i++ {
		nested = append(nested, item{ref: refType, parent: id{1, uint64(i - 1)}, content: []byte{typeArray}}.bytes())
	}
	cases := map[string][]byte{
		"truncated": chainUpdate(3)[:20],
		"origin after the item": buildUpdate([]craftSection{{1, 0, [][]byte{
			item{ref: refString, parent: "t", content: vstr("a")}.bytes(),
			item{ref: refString, origin: &id{1, 5}, content: vstr("b")}.bytes(),
		}}}, nil),
		"types nested too deep": buildUpdate([]craftSection{{1, 0, nested}}, nil),
	}
	for name, u := range cases {
		if _, err := JSONView(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	// One level less is fine.
	if _, err := JSONView(buildUpdate([]craftSection{{1, 0, nested[:maxAnyDepth]}}, nil)); err != nil {
		t.Errorf("types nested %d deep: %v", maxAnyDepth-1, err)
	}
}

// TestJSONViewCrafted views every crafted edge case of the codec tests:
// valid JSON or an ErrInvalid error, never a panic.
func TestJSONViewCrafted(t *testing.T) {
	for name, u := range craftedUpdates([]byte{anyNull, anyInteger, 0x41}, 2) {
		got, err := JSONView(u)
		switch {
		case err != nil && !errors.Is(err, ErrInvalid):
			t.Errorf("%s: %v", name, err)
		case err == nil && !json.Valid(got):
			t.Errorf("%s: invalid JSON %s", name, got)
		}
	}
}

// FuzzJSONView feeds JSONView arbitrary updates, seeded with the oracle's
// real ones, the crafted edge cases and the chain: it must not panic,
// must answer valid JSON or an ErrInvalid error, and its work must stay
// within its budget (linear in the input).
func FuzzJSONView(f *testing.F) {
	d := loadOracle(f)
	for _, s := range d.Scenarios {
		if s.HistoryEdits > 0 {
			continue
		}
		for i, u := range s.Pool {
			if len(u) < 3000 && i%4 == 0 {
				f.Add(u)
			}
		}
	}
	for _, u := range craftedUpdates([]byte{anyNull, anyInteger, 0x41}, 2) {
		f.Add(u)
	}
	f.Add(chainUpdate(5))
	f.Fuzz(func(t *testing.T, u []byte) {
		var wk work
		got, err := jsonView(u, &wk)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("bad error %T %v", err, err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %s", got)
		}
		if limit := viewBudget(len(u)) + 2*len(u); wk.steps > limit {
			t.Fatal(fmt.Sprintf("work %d over %d for %d bytes", wk.steps, limit, len(u)))
		}
	})
}
