package yjs

// work counts the steps of one MergeUpdates, DiffUpdate or Compact whose
// number the input decides and that are not plain reads of it: content
// bytes scanned to cut items, decoders moved to keep the merge in order.
// Tests and fuzzing check that it stays linear in the size of the input.
// A nil *work counts nothing.
type work struct{ steps int }

func (w *work) add(n int) {
	if w != nil {
		w.steps += n
	}
}

// contentCursor cuts the content of one item into consecutive pieces,
// walking it once from front to back: cutting an item into k pieces
// costs O(len + k), where finding each piece from the start would cost
// O(k·len).
type contentCursor struct {
	ref     uint8
	content []byte
	length  uint64 // of the item: elements, or UTF-16 units of a string
	off     uint64 // elements before pos
	pos     int    // byte offset in content
	work    *work
}

// reset points c at the start of the content of item b.
func (c *contentCursor) reset(b *block) {
	*c = contentCursor{ref: b.ref, content: b.content, length: b.length, work: c.work}
}

// seek moves c to element off, which must not be before it, and returns
// its byte offset. For a string, when off falls between the two halves
// of a surrogate pair, mid is true and i (where c stays) is the offset
// of that 4-byte character. Past the end it returns len(content).
func (c *contentCursor) seek(off uint64) (i int, mid bool) {
	start := c.pos
	if c.ref == refString {
		i, mid = c.seekUTF16(off)
	} else {
		r := reader{buf: c.content, pos: c.pos, trusted: true}
		for c.off < off && r.err == nil {
			if c.ref == refJSON {
				r.varBytes()
			} else {
				r.skipAny(0)
			}
			c.off++
		}
		c.pos = r.pos
		i = r.pos
	}
	c.work.add(1 + c.pos - start)
	return i, mid
}

func (c *contentCursor) seekUTF16(off uint64) (int, bool) {
	s, u, i := c.content, c.off, c.pos
	for i < len(s) && u != off {
		switch ch := s[i]; {
		case ch < 0x80:
			u++
			i++
		case ch < 0xe0:
			u++
			i += 2
		case ch < 0xf0:
			u++
			i += 3
		default:
			if u+1 == off {
				c.off, c.pos = u, i
				return i, true
			}
			u += 2
			i += 4
		}
	}
	c.off, c.pos = u, min(i, len(s))
	return c.pos, false
}

// slice returns the element range [from, to) of the content, where from
// is not before the end of the previous slice. It aliases the content
// unless a surrogate pair was cut: a cut pair becomes U+FFFD on that
// side, as ContentString.splice does (and as TextEncoder does with the
// lone surrogate that String.prototype.slice leaves).
func (c *contentCursor) slice(from, to uint64) []byte {
	switch c.ref {
	case refString:
		i, midFrom := c.seek(from)
		if midFrom {
			i += 4
		}
		j, midTo := c.seek(to)
		if !midFrom && !midTo {
			return c.content[i:j:j]
		}
		if i > j { // from == to inside one pair: an empty range
			return nil
		}
		out := make([]byte, 0, j-i+2*len(replacement))
		if midFrom {
			out = append(out, replacement...)
		}
		out = append(out, c.content[i:j]...)
		if midTo {
			out = append(out, replacement...)
		}
		return out
	case refJSON, refAny:
		i, _ := c.seek(from)
		if to == c.length {
			return c.content[i:]
		}
		j, _ := c.seek(to)
		return c.content[i:j:j]
	}
	return c.content
}

// replacement is U+FFFD in UTF-8.
var replacement = []byte{0xef, 0xbf, 0xbd}

// utf16Slice returns the UTF-16 range [from, to) of valid UTF-8 s, as
// contentCursor.slice does.
func utf16Slice(s []byte, from, to uint64) []byte {
	c := contentCursor{ref: refString, content: s}
	return c.slice(from, to)
}
