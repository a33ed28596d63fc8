package yjs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestVarUint(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want uint64
		err  string // substring of the error; "" for none
		n    int    // bytes consumed
	}{
		{in: []byte{0}, want: 0, n: 1},
		{in: []byte{0x7f}, want: 127, n: 1},
		{in: []byte{0x80, 0x01}, want: 128, n: 2},
		{in: []byte{0xff, 0x7f}, want: 16383, n: 2},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, want: 1<<32 - 1, n: 5},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}, want: maxSafeInteger, n: 8},
		// non-minimal encodings are accepted up to 10 bytes
		{in: []byte{0x80, 0x00}, want: 0, n: 2},
		{in: []byte{0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, want: 1, n: 10},
		{in: []byte{0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, err: "varint too long"},
		{in: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, err: "varint too long"},
		// 2^53 and beyond
		{in: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10}, err: "integer out of range"},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, err: "integer out of range"},
		{in: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, err: "integer out of range"},
		// truncated
		{in: nil, err: "truncated varint"},
		{in: []byte{0x80}, err: "truncated varint"},
		{in: []byte{0xff, 0xff, 0xff}, err: "truncated varint"},
	} {
		r := reader{buf: c.in}
		got := r.uint()
		if c.err != "" {
			if r.err == nil || !strings.Contains(r.err.Error(), c.err) {
				t.Errorf("%x: err %v, want %q", c.in, r.err, c.err)
			}
			continue
		}
		if r.err != nil || got != c.want || r.pos != c.n {
			t.Errorf("%x: %d (pos %d, %v), want %d (pos %d)", c.in, got, r.pos, r.err, c.want, c.n)
		}
	}
	// The sticky error: later reads return zero and keep the first error.
	r := reader{buf: []byte{0x80}}
	r.uint()
	first := r.err
	if r.uint() != 0 || r.byte() != 0 || r.varBytes() != nil || r.err != first {
		t.Fatal("reads after an error must return zero values and keep the error")
	}
}

func TestVarUintRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 10000; i++ {
		v := rng.Uint64N(maxSafeInteger + 1)
		if i < 64 {
			v = 1<<(i%54) - 1
		}
		b := appendVarUint(nil, v)
		if len(b) != varUintLen(v) {
			t.Fatalf("%d: %d bytes, varUintLen %d", v, len(b), varUintLen(v))
		}
		r := reader{buf: b}
		if got := r.uint(); got != v || !r.done() {
			t.Fatalf("%d: decoded %d (%v)", v, got, r.err)
		}
	}
}

func TestVarInt(t *testing.T) {
	for _, c := range []struct {
		in      []byte
		want    int64
		negZero bool
		err     string
	}{
		{in: []byte{0x00}, want: 0},
		{in: []byte{0x01}, want: 1},
		{in: []byte{0x41}, want: -1},
		{in: []byte{0x40}, want: 0, negZero: true},
		{in: []byte{0x3f}, want: 63},
		{in: []byte{0x80, 0x01}, want: 64},
		{in: []byte{0xc0, 0x01}, want: -64},
		{in: []byte{0xbf, 0xff, 0xff, 0xff, 0x0f}, want: 1<<31 - 1},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07}, want: -(1<<51 - 1)},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, err: "integer out of range"},
		{in: []byte{0x80}, err: "truncated varint"},
		{in: nil, err: "unexpected end"},
		{in: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, err: "varint too long"},
		{in: []byte{0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, err: "integer out of range"},
	} {
		r := reader{buf: c.in}
		got, nz := r.int()
		if c.err != "" {
			if r.err == nil || !strings.Contains(r.err.Error(), c.err) {
				t.Errorf("%x: err %v, want %q", c.in, r.err, c.err)
			}
			continue
		}
		if r.err != nil || got != c.want || nz != c.negZero || !r.done() {
			t.Errorf("%x: %d %v (%v), want %d %v", c.in, got, nz, r.err, c.want, c.negZero)
		}
	}
}

func TestHugeLengths(t *testing.T) {
	// A length near 2^53 with four bytes behind it must fail at once,
	// without allocating.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a', 'b', 'c', 'd'}
	allocs := testing.AllocsPerRun(100, func() {
		r := reader{buf: huge}
		if r.varString() != nil || r.err == nil || !strings.Contains(r.err.Error(), "length beyond end") {
			t.Fatalf("varString of a huge length: %v", r.err)
		}
	})
	if allocs > 3 {
		t.Fatalf("%v allocations for a rejected length", allocs)
	}
	// Counts that promise more elements than there are bytes: every
	// decoder must stop at the end of the input, quickly.
	for _, in := range [][]byte{
		append([]byte{anyArray}, huge[:8]...),                     // any array of 2^53-1 elements
		append([]byte{anyObject}, huge[:8]...),                    // any object
		append(append([]byte{}, huge[:8]...), 0, 0),               // update with 2^53-1 clients
		{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0},                   // a section of 2^32 structs
		{1, 1, 1, 0, refAny | flagOrigin, 1, 0, 0xff, 0xff, 0x03}, // any content of 65535 values
		{0, 1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f},                   // delete set: 2^32 ranges
	} {
		r := reader{buf: in}
		r.skipAny(0)
		if _, err := validateUpdate(in); err == nil {
			t.Fatalf("%x: accepted", in)
		}
		if _, err := DecodeStateVector(in); err == nil {
			t.Fatalf("%x: accepted as a state vector", in)
		}
		if _, err := ParseAwareness(in); err == nil {
			t.Fatalf("%x: accepted as awareness", in)
		}
	}
}

func TestSkipAny(t *testing.T) {
	valid := [][]byte{
		{anyUndefined}, {anyNull}, {anyTrue}, {anyFalse},
		{anyInteger, 0x41}, {anyInteger, 0x80, 0x01},
		{anyFloat32, 0x3f, 0xc0, 0, 0},
		{anyFloat64, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a},
		{anyBigInt, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{anyString, 4, 0xf0, 0x9f, 0x98, 0x80},
		{anyUint8Array, 2, 0xff, 0x00},
		{anyArray, 0},
		{anyObject, 2, 1, 'a', anyNull, 1, 'b', anyArray, 1, anyObject, 0},
	}
	for _, in := range valid {
		r := reader{buf: in}
		r.skipAny(0)
		if !r.done() {
			t.Errorf("%x: pos %d, %v", in, r.pos, r.err)
		}
		// every truncation fails
		for n := 0; n < len(in); n++ {
			r := reader{buf: in[:n]}
			r.skipAny(0)
			if r.err == nil {
				t.Errorf("%x truncated to %d: accepted", in, n)
			}
		}
	}
	for _, c := range []struct {
		in  []byte
		err string
	}{
		{[]byte{115}, "unknown any type 115"},
		{[]byte{0}, "unknown any type 0"},
		{[]byte{anyString, 2, 0xc3, 0x28}, "invalid UTF-8"},
		{[]byte{anyString, 3, 0xed, 0xa0, 0x80}, "invalid UTF-8"}, // a surrogate in UTF-8
		{[]byte{anyObject, 1, 1, 0xff, anyNull}, "invalid UTF-8"},
		{bytes.Repeat([]byte{anyArray, 1}, maxAnyDepth+1), "nested too deep"},
	} {
		r := reader{buf: c.in}
		r.skipAny(0)
		if r.err == nil || !strings.Contains(r.err.Error(), c.err) {
			t.Errorf("%x: %v, want %q", c.in, r.err, c.err)
		}
	}
	deep := append(bytes.Repeat([]byte{anyArray, 1}, maxAnyDepth), anyNull)
	r := reader{buf: deep}
	r.skipAny(0)
	if !r.done() {
		t.Errorf("nesting of %d: %v", maxAnyDepth, r.err)
	}
}

func TestUTF16(t *testing.T) {
	s := []byte("a😀bé中😀") // units: a 0, 😀 1-2, b 3, é 4, 中 5, 😀 6-7
	if n := utf16Len(s); n != 8 {
		t.Fatalf("utf16Len = %d", n)
	}
	for _, c := range []struct {
		from, to uint64
		want     string
	}{
		{0, 8, "a😀bé中😀"},
		{0, 1, "a"},
		{1, 3, "😀"},
		{0, 2, "a\uFFFD"},
		{2, 8, "\uFFFDbé中😀"},
		{2, 3, "\uFFFD"},
		{2, 7, "\uFFFDbé中\uFFFD"},
		{7, 8, "\uFFFD"},
		{3, 6, "bé中"},
		{4, 4, ""},
		{2, 2, ""},
	} {
		if got := string(utf16Slice(s, c.from, c.to)); got != c.want {
			t.Errorf("utf16Slice(%d, %d) = %q, want %q", c.from, c.to, got, c.want)
		}
	}
}

func TestDeleteSets(t *testing.T) {
	ds := normalizeDeleteSet([]dsRange{
		{5, 10, 2}, {5, 0, 3}, {9, 0, 1}, {5, 3, 2}, {5, 12, 1}, {5, 20, 5}, {5, 21, 2}, {9, 4, 4}, {9, 1, 1},
	})
	want := []dsRange{{9, 0, 2}, {9, 4, 4}, {5, 0, 5}, {5, 10, 3}, {5, 20, 5}}
	if len(ds) != len(want) {
		t.Fatalf("normalizeDeleteSet = %v, want %v", ds, want)
	}
	for i := range ds {
		if ds[i] != want[i] {
			t.Fatalf("normalizeDeleteSet = %v, want %v", ds, want)
		}
	}
	enc := appendDeleteSet(nil, ds)
	r := reader{buf: enc}
	back := readDeleteSet(&r, nil)
	if !r.done() || len(back) != len(ds) {
		t.Fatalf("round trip: %v %v", back, r.err)
	}
}

func TestValidateUpdateRejects(t *testing.T) {
	text := item{ref: refString, parent: "text", content: vstr("hi")}
	for _, c := range []struct {
		name string
		in   []byte
		err  string
	}{
		{"empty input", nil, "truncated varint at byte 0"},
		{"trailing bytes", append(buildUpdate(nil, nil), 0), "trailing bytes"},
		{"no delete set", []byte{0}, "truncated varint at byte 1"},
		{"empty GC", buildUpdate([]craftSection{{1, 0, [][]byte{{0, 0}}}}, nil), "empty struct"},
		{"empty skip", buildUpdate([]craftSection{{1, 0, [][]byte{{refSkip, 0}}}}, nil), "empty struct"},
		{"empty string", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refString, parent: "t", content: vstr("")}.bytes()}}}, nil), "empty struct"},
		{"unknown content ref", buildUpdate([]craftSection{{1, 0, [][]byte{{11 | flagOrigin, 0, 0}}}}, nil), "unknown content ref 11"},
		{"skip ref with flags", buildUpdate([]craftSection{{1, 0, [][]byte{{refSkip | flagOrigin, 0, 0, 1}}}}, nil), "unknown content ref 10"},
		{"unknown type ref", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refType, parent: "t", content: []byte{7}}.bytes()}}}, nil), "unknown type ref 7"},
		{"invalid UTF-8 string", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refString, parent: "t", content: []byte{1, 0xff}}.bytes()}}}, nil), "invalid UTF-8"},
		{"invalid UTF-8 key", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refString, parent: "t\xff", content: vstr("x")}.bytes()}}}, nil), "invalid UTF-8"},
		{"invalid JSON", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refJSON, parent: "t", content: cJSON("{")}.bytes()}}}, nil), "invalid JSON"},
		{"invalid embed", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refEmbed, parent: "t", content: vstr("undefined")}.bytes()}}}, nil), "invalid JSON"},
		{"invalid format value", buildUpdate([]craftSection{{1, 0, [][]byte{item{ref: refFormat, parent: "t", content: append(vstr("b"), vstr("tru")...)}.bytes()}}}, nil), "invalid JSON"},
		{"repeated client", buildUpdate([]craftSection{{1, 0, [][]byte{text.bytes()}}, {1, 2, [][]byte{{0, 1}}}}, nil), "repeated client 1"},
		{"repeated client, unsorted", buildUpdate([]craftSection{{1, 0, [][]byte{text.bytes()}}, {3, 0, nil}, {2, 0, nil}, {3, 0, nil}}, nil), "repeated client 3"},
		{"clock overflow", buildUpdate([]craftSection{{1, maxSafeInteger - 1, [][]byte{text.bytes()}}}, nil), "clock out of range"},
		{"empty delete range", buildUpdate(nil, []dsGroup{{1, [][2]uint64{{4, 0}}}}), "empty delete range"},
		{"delete range overflow", buildUpdate(nil, []dsGroup{{1, [][2]uint64{{maxSafeInteger, 1}}}}), "delete set clock out of range"},
	} {
		err := ValidateUpdate(c.in)
		var pe *ProtocolError
		if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid) || !errors.As(err, &pe) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
		// the same from every entry point
		if _, err := MergeUpdates([][]byte{c.in, EmptyUpdate}); err == nil {
			t.Errorf("%s: MergeUpdates accepted it", c.name)
		}
		if _, err := Compact([][]byte{c.in}); err == nil {
			t.Errorf("%s: Compact accepted it", c.name)
		}
		if _, err := DiffUpdate(c.in, nil); err == nil {
			t.Errorf("%s: DiffUpdate accepted it", c.name)
		}
		if _, err := StateVectorOf(c.in); err == nil {
			t.Errorf("%s: StateVectorOf accepted it", c.name)
		}
	}
	// Sections of clients in ascending order, and a GC with flag bits,
	// are valid (Yjs reads them).
	ok := buildUpdate([]craftSection{{1, 0, [][]byte{text.bytes(), {0x80, 1}}}, {2, 0, [][]byte{text.bytes()}}}, nil)
	if err := ValidateUpdate(ok); err != nil {
		t.Fatal(err)
	}
	if err := ValidateUpdate(EmptyUpdate); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyInputs(t *testing.T) {
	for _, in := range [][][]byte{nil, {EmptyUpdate}, {EmptyUpdate, EmptyUpdate}} {
		for name, f := range map[string]func([][]byte) ([]byte, error){"MergeUpdates": MergeUpdates, "Compact": Compact} {
			got, err := f(in)
			if err != nil || !bytes.Equal(got, EmptyUpdate) {
				t.Errorf("%s(%d empty updates) = %x, %v", name, len(in), got, err)
			}
		}
	}
	got, err := MergeUpdates(nil)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 9 // a copy, not EmptyUpdate itself
	if EmptyUpdate[0] != 0 {
		t.Fatal("MergeUpdates(nil) returned EmptyUpdate itself")
	}
	sv, err := StateVectorOf(EmptyUpdate)
	if err != nil || len(sv) != 0 {
		t.Fatalf("StateVectorOf(EmptyUpdate) = %v, %v", sv, err)
	}
	if !bytes.Equal(StateVector{}.Encode(), []byte{0}) {
		t.Fatal("empty state vector encoding")
	}
	if !bytes.Equal((StateVector{1: 2, 300: 4, 7: 0}).Encode(), []byte{3, 0xac, 0x02, 4, 7, 0, 1, 2}) {
		t.Fatalf("Encode: %x", (StateVector{1: 2, 300: 4, 7: 0}).Encode())
	}
}

func TestUTF16LenChunks(t *testing.T) {
	// every alignment of multi-byte characters across 8-byte chunks
	for _, s := range []string{"abcdefgh😀ijklmnop", "abcdefg😀hijklmno中é", "😀😀😀😀😀", "aé中😀aé中😀aé中😀x", ""} {
		want := uint64(0)
		for _, r := range s {
			want++
			if r >= 0x10000 {
				want++
			}
		}
		for i := 0; i <= len(s); i++ {
			p := strings.Repeat("x", i) + s
			if got := utf16Len([]byte(p)); got != want+uint64(i) {
				t.Fatalf("utf16Len(%q) = %d, want %d", p, got, want+uint64(i))
			}
		}
	}
}
