package yjs

import (
	"fmt"
	"sort"
)

// Compact is MergeUpdates plus garbage collection of deleted content:
// every item whose whole range is in the merged delete set, and whose
// content is not a type (ContentType) or subdocument (ContentDoc), gets
// ContentDeleted of the same length. Items are split at delete set
// boundaries first, and then neighbours are merged again where Yjs would
// merge them in a document (same client, consecutive clocks, the right
// one's origin is the left one's last ID, same right origin, same
// mergeable content kind), so the result is about as small as
// Y.encodeStateAsUpdate of a document with gc on. The delete set is kept
// whole. Applying the result to a fresh Y.Doc gives the same content as
// applying all of updates.
func Compact(updates [][]byte) ([]byte, error) {
	out, err := compact(updates, nil)
	if err != nil {
		return nil, fmt.Errorf("yjs: compact: %w", err)
	}
	return out, nil
}

// compact is Compact; wk counts its work.
//
// The work is linear in the size of the merged update (plus sorting its
// delete set): an item is cut into at most one piece per delete range
// boundary inside it plus one, and its content is walked once however
// many pieces it is cut into.
func compact(updates [][]byte, wk *work) ([]byte, error) {
	merged, off, err := mergeUpdates(updates, wk)
	if err != nil {
		return nil, err
	}
	r := reader{buf: merged, pos: off, trusted: true}
	ds := readDeleteSet(&r, nil)
	if r.err != nil {
		return nil, protocolError("merged update: ", r.err)
	}
	ds = normalizeDeleteSet(ds)
	c := compactor{
		w:       structWriter{buf: make([]byte, 0, off), work: wk},
		deletes: map[uint64][]dsRange{},
		cur:     contentCursor{work: wk},
	}
	for i := 0; i < len(ds); {
		j := i
		for j < len(ds) && ds[j].client == ds[i].client {
			j++
		}
		c.deletes[ds[i].client] = ds[i:j]
		i = j
	}
	var s structReader
	s.init(merged, false, true)
	for ; s.has; s.next() {
		c.add(&s.cur)
	}
	if s.r.err != nil {
		return nil, protocolError("merged update: ", s.r.err)
	}
	c.flush()
	out := c.w.finish(make([]byte, 0, c.w.size()+len(merged)-off))
	return appendDeleteSet(out, ds), nil
}

// compactor turns deleted items into ContentDeleted and merges runs of
// items while writing them.
type compactor struct {
	w       structWriter
	deletes map[uint64][]dsRange // per client: sorted, disjoint, non-empty
	cur     contentCursor        // over the item being cut into pieces

	// The run being built: head with the header of its first item,
	// parts the content of each of its items, length their total.
	open   bool
	head   block
	parts  [][]byte
	length uint64
	bytes  int
}

// add writes b, split at delete set boundaries.
func (c *compactor) add(b *block) {
	if b.kind != kindItem {
		c.flush()
		c.w.write(b, 0)
		return
	}
	rs := c.deletes[b.client]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].end() > b.clock })
	end := b.end()
	c.cur.reset(b)
	for pos := b.clock; pos < end; {
		next, deleted := end, false
		if i < len(rs) && rs[i].clock <= pos {
			next, deleted = min(end, rs[i].end()), true
			i++
		} else if i < len(rs) && rs[i].clock < end {
			next = rs[i].clock
		}
		c.piece(b, pos-b.clock, next-b.clock, deleted)
		pos = next
	}
}

// piece adds the part [from, to) of item b, which follows the part
// added before it (c.cur walks b's content once).
func (c *compactor) piece(b *block, from, to uint64, deleted bool) {
	p := *b
	p.clock += from
	p.length = to - from
	if from > 0 {
		p.flags |= flagOrigin
		p.origin = id{b.client, p.clock - 1}
	}
	switch {
	case deleted && b.ref != refType && b.ref != refDoc:
		p.ref = refDeleted
		p.content = nil
	case from > 0 || to < b.length:
		p.content = c.cur.slice(from, to)
	}
	if c.open && c.canAppend(&p) {
		c.parts = append(c.parts, p.content)
		c.length += p.length
		c.bytes += len(p.content)
		return
	}
	c.flush()
	c.open = true
	c.head = p
	c.parts = append(c.parts[:0], p.content)
	c.length = p.length
	c.bytes = len(p.content)
}

// canAppend reports whether p continues the open run as Item.mergeWith
// would allow in a document.
func (c *compactor) canAppend(p *block) bool {
	h := &c.head
	switch p.ref {
	case refString, refDeleted, refJSON, refAny:
	default:
		return false
	}
	last := h.clock + c.length - 1
	return p.ref == h.ref && p.client == h.client && p.clock == last+1 &&
		p.flags&flagOrigin != 0 && p.origin == id{h.client, last} &&
		p.flags&flagRightOrigin == h.flags&flagRightOrigin &&
		(p.flags&flagRightOrigin == 0 || p.rightOrigin == h.rightOrigin)
}

// flush writes the open run as one item.
func (c *compactor) flush() {
	if !c.open {
		return
	}
	c.open = false
	h := &c.head
	if len(c.parts) == 1 {
		c.w.write(h, 0)
		return
	}
	c.w.begin(h.client, h.clock)
	buf := appendHeader(c.w.buf, h, 0)
	switch h.ref {
	case refString:
		buf = appendVarUint(buf, uint64(c.bytes))
	default:
		buf = appendVarUint(buf, c.length)
	}
	for _, part := range c.parts {
		buf = append(buf, part...)
	}
	c.w.buf = buf
}
