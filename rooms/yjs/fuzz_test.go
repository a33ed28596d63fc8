package yjs

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseMessage feeds ParseMessage arbitrary frames, seeded with real
// y-websocket messages from the oracle (and truncated and corrupted
// copies). ParseMessage must never panic, must reject with a short
// *ProtocolError, and whatever it accepts must be usable: an accepted
// update merges, diffs and compacts into valid updates, a state vector
// round-trips, an awareness update re-encodes.
func FuzzParseMessage(f *testing.F) {
	d := loadOracle(f)
	var seeds [][]byte
	for _, fr := range d.Frames {
		seeds = append(seeds, fr.Frame)
	}
	for _, s := range d.Scenarios {
		if s.HistoryEdits > 0 {
			continue
		}
		n := 0
		for _, u := range s.Pool {
			if len(u) > 1500 || n >= 12 {
				continue
			}
			n++
			seeds = append(seeds, AppendSyncMessage(nil, SyncUpdate, u))
		}
		for i, c := range s.DiffCases {
			if i < 3 {
				seeds = append(seeds, AppendSyncMessage(nil, SyncStep1, c.SV))
			}
		}
	}
	for _, u := range craftedUpdates([]byte{anyNull, anyInteger, 0x41}, 2) {
		seeds = append(seeds, AppendSyncMessage(nil, SyncStep2, u))
	}
	for i, s := range seeds {
		f.Add(s)
		// corrupted copies: truncated, one byte changed, a byte dropped
		f.Add(s[:len(s)*2/3])
		c := append([]byte(nil), s...)
		c[(i*7+3)%len(c)] ^= 0x5a
		f.Add(c)
		if len(s) > 4 {
			f.Add(append(append([]byte(nil), s[:3]...), s[4:]...))
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := ParseMessage(frame)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || len(pe.Reason) > 100 || pe.Reason == "" {
				t.Fatalf("bad error %T %v", err, err)
			}
			return
		}
		switch {
		case m.Type == MessageSync && m.Sync == SyncStep1:
			sv, err := DecodeStateVector(m.Payload)
			if err != nil {
				t.Fatalf("accepted state vector: %v", err)
			}
			back, err := DecodeStateVector(sv.Encode())
			if err != nil || !equalSV(back, sv) {
				t.Fatalf("state vector round trip: %v %v", back, err)
			}
		case m.Type == MessageSync:
			u := m.Payload
			merged, err := MergeUpdates([][]byte{u})
			if err != nil {
				t.Fatalf("MergeUpdates([u]): %v", err)
			}
			if !bytes.Equal(merged, u) {
				// only when the client sections were out of order
				if sorted, _, _ := sortSections(u); &sorted[0] == &u[0] || !bytes.Equal(sorted, merged) {
					t.Fatalf("MergeUpdates([u]) changed u")
				}
			}
			diff, err := DiffUpdate(u, StateVector{})
			if err != nil {
				t.Fatalf("DiffUpdate(u, {}): %v", err)
			}
			sv, err := StateVectorOf(u)
			if err != nil {
				t.Fatalf("StateVectorOf: %v", err)
			}
			merged2, err := MergeUpdates([][]byte{u, diff})
			mustF(t, "MergeUpdates", err)
			compacted, err := Compact([][]byte{u})
			mustF(t, "Compact", err)
			diff2, err := DiffUpdate(u, sv)
			mustF(t, "DiffUpdate", err)
			for _, out := range [][]byte{diff, merged2, compacted, diff2} {
				if err := ValidateUpdate(out); err != nil {
					t.Fatalf("output of an accepted update is invalid: %v\n%s", err, dumpUpdate(out))
				}
			}
		case m.Type == MessageAwareness:
			entries, err := ParseAwareness(m.Payload)
			if err != nil {
				t.Fatalf("accepted awareness: %v", err)
			}
			again, err := ParseAwareness(EncodeAwareness(entries))
			if err != nil || len(again) != len(entries) {
				t.Fatalf("awareness round trip: %v", err)
			}
		}
	})
}

func mustF(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s of an accepted update: %v", what, err)
	}
}

// FuzzCompact feeds MergeUpdates, Compact and DiffUpdate two arbitrary
// updates and a state vector, seeded with crafted updates (and the worst
// cases of cutting items and of ordering many decoders). They must never
// panic, what they return must be valid, and their work (see work) must
// stay within workBound steps per input byte.
func FuzzCompact(f *testing.F) {
	var seeds [][]byte
	for _, u := range craftedUpdates([]byte{anyNull, anyInteger, 0x41}, 2) {
		seeds = append(seeds, u)
	}
	for _, k := range splitKinds {
		seeds = append(seeds, splitUpdates(k.ref, 64)...)
	}
	many, err := MergeUpdates(manyUpdates(70, true))
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, many)
	sv := StateVector{5: 3, 7: 1, 1: 20}.Encode()
	for i, a := range seeds {
		f.Add(a, seeds[(i+1)%len(seeds)], sv)
		f.Add(a, a[:len(a)*2/3], sv[:len(sv)-1])
	}
	f.Fuzz(func(t *testing.T, a, b, svBytes []byte) {
		bound := workBound * (len(a) + len(b) + 1)
		check := func(what string, out []byte, err error, wk work) {
			t.Helper()
			if wk.steps > bound {
				t.Fatalf("%s: %d steps for %d input bytes", what, wk.steps, len(a)+len(b))
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s: bad error %T %v", what, err, err)
				}
				return
			}
			if err := ValidateUpdate(out); err != nil {
				t.Fatalf("%s: output is invalid: %v\n%s", what, err, dumpUpdate(out))
			}
		}
		var wk work
		out, _, err := mergeUpdates([][]byte{a, b}, &wk)
		check("MergeUpdates", out, err, wk)
		wk = work{}
		out, err = compact([][]byte{a, b}, &wk)
		check("Compact", out, err, wk)
		sv, err := DecodeStateVector(svBytes)
		if err != nil {
			sv = StateVector{}
		}
		wk = work{}
		out, err = diffUpdate(a, sv, &wk)
		check("DiffUpdate", out, err, wk)
	})
}
