package yjs

import (
	"cmp"
	"fmt"
	"slices"
)

// EmptyUpdate is the update with no structs and no deletes (00 00).
var EmptyUpdate = []byte{0, 0}

// scanUpdate reads every struct of update (validating it unless trusted)
// and returns the offset of its delete set.
func scanUpdate(update []byte, trusted bool) (int, error) {
	var s structReader
	s.init(update, false, trusted)
	for s.has {
		s.next()
	}
	if s.r.err != nil {
		return 0, protocolError("update: ", s.r.err)
	}
	return s.r.pos, nil
}

// readTail reads the delete set at r and checks that nothing follows it.
func readTail(r *reader, dst []dsRange) ([]dsRange, error) {
	dst = readDeleteSet(r, dst)
	if r.err == nil && r.pos != len(r.buf) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return dst, protocolError("update: ", r.err)
	}
	return dst, nil
}

// validateUpdate checks that update is a complete v1 update and returns
// the offset of its delete set.
func validateUpdate(update []byte) (int, error) {
	off, err := scanUpdate(update, false)
	if err != nil {
		return 0, err
	}
	r := reader{buf: update, pos: off}
	if _, err := readTail(&r, nil); err != nil {
		return 0, err
	}
	return off, nil
}

// ValidateUpdate checks that update is one complete v1 update with no
// trailing bytes: known struct and content kinds, complete varints and
// lengths, UTF-8 strings, JSON where Yjs parses JSON, no empty or
// out-of-range structs, at most one section per client and no empty
// delete ranges. Client sections may come in any order.
func ValidateUpdate(update []byte) error {
	if _, err := validateUpdate(update); err != nil {
		return fmt.Errorf("yjs: validate update: %w", err)
	}
	return nil
}

// StateVector maps each client to the next clock expected from it.
type StateVector map[uint64]uint64

// DecodeStateVector decodes an encoded state vector (Y.encodeStateVector;
// later entries of a repeated client win, as in Yjs). Trailing bytes are
// an error.
func DecodeStateVector(b []byte) (StateVector, error) {
	sv, err := decodeStateVector(b)
	if err != nil {
		return nil, fmt.Errorf("yjs: decode state vector: %w", err)
	}
	return sv, nil
}

func decodeStateVector(b []byte) (StateVector, error) {
	r := reader{buf: b}
	n := r.uint()
	// Each entry takes at least two bytes: bound the size hint by that.
	sv := make(StateVector, min(n, uint64(len(b)-r.pos)/2))
	for i := uint64(0); i < n && r.err == nil; i++ {
		client := r.uint()
		clock := r.uint()
		if r.err == nil {
			sv[client] = clock
		}
	}
	if r.err == nil && r.pos != len(b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, protocolError("state vector: ", r.err)
	}
	return sv, nil
}

// Encode encodes sv as Y.encodeStateVector does: the entry count, then
// (client, clock) pairs with the highest client first.
func (sv StateVector) Encode() []byte {
	clients := make([]uint64, 0, len(sv))
	for c := range sv {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, func(a, b uint64) int { return cmp.Compare(b, a) })
	out := appendVarUint(make([]byte, 0, 1+len(sv)*8), uint64(len(sv)))
	for _, c := range clients {
		out = appendVarUint(out, c)
		out = appendVarUint(out, sv[c])
	}
	return out
}

// StateVectorOf is Y.encodeStateVectorFromUpdate, decoded: for each
// client, the clock after the run of its structs that starts at clock 0
// and has no Skip. The whole update is validated.
func StateVectorOf(update []byte) (StateVector, error) {
	sv, err := stateVectorOf(update)
	if err != nil {
		return nil, fmt.Errorf("yjs: state vector of update: %w", err)
	}
	return sv, nil
}

func stateVectorOf(update []byte) (StateVector, error) {
	sv := StateVector{}
	var s structReader
	s.init(update, false, false)
	// A literal port of encodeStateVectorFromUpdateV2, quirks included
	// (a first struct that is a Skip at clock 0 still counts).
	if s.has {
		curr := &s.cur
		currClient := curr.client
		stopCounting := curr.clock != 0
		currClock := uint64(0)
		if !stopCounting {
			currClock = curr.end()
		}
		for ; s.has; s.next() {
			if currClient != curr.client {
				if currClock != 0 {
					sv[currClient] = currClock
				}
				currClient = curr.client
				currClock = 0
				stopCounting = curr.clock != 0
			}
			if curr.kind == kindSkip {
				stopCounting = true
			}
			if !stopCounting {
				currClock = curr.end()
			}
		}
		if s.r.err == nil && currClock != 0 {
			sv[currClient] = currClock
		}
	}
	if s.r.err != nil {
		return nil, protocolError("update: ", s.r.err)
	}
	if _, err := readTail(&s.r, nil); err != nil {
		return nil, err
	}
	return sv, nil
}

// DiffUpdate is Y.diffUpdate(update, sv): the structs of update that a
// peer with state vector sv lacks (a struct it knows in part is sliced),
// plus the whole delete set.
func DiffUpdate(update []byte, sv StateVector) ([]byte, error) {
	out, err := diffUpdate(update, sv, nil)
	if err != nil {
		return nil, fmt.Errorf("yjs: diff update: %w", err)
	}
	return out, nil
}

// diffUpdate is DiffUpdate; wk counts its work.
func diffUpdate(update []byte, sv StateVector, wk *work) ([]byte, error) {
	w := structWriter{buf: make([]byte, 0, len(update)), work: wk}
	var s structReader
	s.init(update, false, false)
	// A literal port of diffUpdateV2.
	for s.has {
		curr := &s.cur
		currClient := curr.client
		svClock := sv[currClient]
		if curr.kind == kindSkip {
			// the first written struct shouldn't be a skip
			s.next()
			continue
		}
		if curr.end() > svClock {
			offset := uint64(0)
			if svClock > curr.clock {
				offset = svClock - curr.clock
			}
			w.write(curr, offset)
			s.next()
			for s.has && curr.client == currClient {
				w.write(curr, 0)
				s.next()
			}
		} else {
			for s.has && curr.client == currClient && curr.end() <= svClock {
				s.next()
			}
		}
	}
	if s.r.err != nil {
		return nil, protocolError("update: ", s.r.err)
	}
	ds, err := readTail(&s.r, nil)
	if err != nil {
		return nil, err
	}
	groupDeleteSet(ds)
	out := w.finish(make([]byte, 0, w.size()+len(update)-s.r.pos+8))
	return appendDeleteSet(out, ds), nil
}
