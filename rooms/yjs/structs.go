package yjs

import (
	"encoding/binary"
	"strconv"
)

// Struct kinds.
const (
	kindGC uint8 = iota
	kindSkip
	kindItem
)

// Content refs: the low 5 bits of a struct's info byte (Item.js
// contentRefs; 0 is GC and 10 is Skip).
const (
	refGC      = 0
	refDeleted = 1
	refJSON    = 2
	refBinary  = 3
	refString  = 4
	refEmbed   = 5
	refFormat  = 6
	refType    = 7
	refAny     = 8
	refDoc     = 9
	refSkip    = 10
)

// Info byte flags (and block.flags).
const (
	flagOrigin      = 0x80 // origin ID follows
	flagRightOrigin = 0x40 // right origin ID follows
	flagParentSub   = 0x20 // parentSub is non-null
)

// Type refs of ContentType (ContentType.js typeRefs).
const (
	typeXmlElement = 3
	typeXmlHook    = 5
	typeMax        = 6
)

// id is a Yjs ID: client and clock.
type id struct{ client, clock uint64 }

// block is one decoded struct: a GC, a Skip or an Item. Slices alias the
// update it was read from unless the block was split.
type block struct {
	client, clock, length uint64
	origin, rightOrigin   id
	parentID              id
	parentKey             []byte // parent root type name, when parentIsKey
	parentSub             []byte // when flags&flagParentSub and the parent was read
	// content is, for String, the UTF-8 text; for JSON and Any, the
	// encoded elements without their count; for Binary, Embed, Format,
	// Type and Doc, the whole encoded content; nil for Deleted.
	content     []byte
	kind        uint8
	ref         uint8
	flags       uint8
	parentIsKey bool
}

// end is the clock right after the block.
func (b *block) end() uint64 { return b.clock + b.length }

// structReader reads the structs of a v1 update one at a time, like
// updates.js LazyStructReader. After the last struct the reader is
// positioned at the delete set.
type structReader struct {
	r           reader
	clients     uint64 // client sections not started yet
	structs     uint64 // structs left in the current section
	client      uint64
	clock       uint64
	filterSkips bool
	has         bool // cur holds a struct
	cur         block

	// Section bookkeeping (of untrusted input, and when record is set).
	unsorted bool                // a section's client was not below the previous one's
	seen     map[uint64]struct{} // clients of all sections, once unsorted
	prev     []uint64            // clients of the sections, until unsorted
	prevBuf  [4]uint64
	record   bool
	spans    []span // when record: where each section starts
}

// span locates one client section of an update.
type span struct {
	client uint64
	start  int
}

// init starts reading update; filterSkips drops Skip structs, trusted
// skips validation.
func (s *structReader) init(update []byte, filterSkips, trusted bool) {
	s.initRecording(update, filterSkips, trusted, false)
}

// initRecording is init that, with record, notes where every client
// section starts (in spans).
func (s *structReader) initRecording(update []byte, filterSkips, trusted, record bool) {
	*s = structReader{r: reader{buf: update, trusted: trusted}, filterSkips: filterSkips, record: record}
	s.prev = s.prevBuf[:0]
	s.clients = s.r.uint()
	s.next()
}

// next advances to the next struct and reports whether there is one. At
// the end, or on an error (s.r.err), has becomes false.
func (s *structReader) next() bool {
	for s.readOne() {
		if s.filterSkips && s.cur.kind == kindSkip {
			continue
		}
		s.has = true
		return true
	}
	s.has = false
	return false
}

func (s *structReader) readOne() bool {
	for s.structs == 0 {
		if s.clients == 0 || s.r.err != nil {
			return false
		}
		start := s.r.pos
		s.clients--
		s.structs = s.r.uint()
		s.client = s.r.uint()
		s.clock = s.r.uint()
		if s.r.err != nil {
			return false
		}
		if !s.r.trusted || s.record {
			s.section(start)
			if s.r.err != nil {
				return false
			}
		}
	}
	s.structs--
	s.readBlock(&s.cur)
	if s.r.err != nil {
		return false
	}
	s.clock += s.cur.length
	return true
}

// section checks a new client section that started at offset start: a
// client may have one section only (Y.applyUpdate would keep just the
// last one, Y.mergeUpdates all of them). While the clients descend, as
// Yjs writes them, no client can repeat; after that a set is kept.
func (s *structReader) section(start int) {
	if !s.unsorted && len(s.prev) > 0 && s.client >= s.prev[len(s.prev)-1] {
		s.unsorted = true
		s.seen = make(map[uint64]struct{}, len(s.prev)+1)
		for _, c := range s.prev {
			s.seen[c] = struct{}{}
		}
		s.prev = nil
	}
	if s.unsorted {
		if _, dup := s.seen[s.client]; dup {
			s.r.pos = start
			s.r.fail("repeated client " + strconv.FormatUint(s.client, 10))
			return
		}
		s.seen[s.client] = struct{}{}
	} else {
		s.prev = append(s.prev, s.client)
	}
	if s.record {
		s.spans = append(s.spans, span{s.client, start})
	}
}

// readBlock decodes one struct at s.client, s.clock (updates.js
// lazyStructReaderGenerator and Item.js readItem / contentRefs).
func (s *structReader) readBlock(b *block) {
	r := &s.r
	*b = block{client: s.client, clock: s.clock}
	start := r.pos
	info := r.byte()
	switch {
	case info == refSkip:
		b.kind = kindSkip
		b.length = r.uint()
	case info&0x1f == refGC:
		b.kind = kindGC
		b.length = r.uint()
	default:
		b.kind = kindItem
		s.readItem(b, info)
	}
	if r.err != nil {
		return
	}
	if b.length == 0 {
		r.pos = start
		r.fail("empty struct")
		return
	}
	if b.length > maxSafeInteger-b.clock {
		r.pos = start
		r.fail("clock out of range")
	}
}

func (s *structReader) readItem(b *block, info byte) {
	r := &s.r
	b.ref = info & 0x1f
	if info&flagOrigin != 0 {
		b.flags |= flagOrigin
		b.origin = id{r.uint(), r.uint()}
	}
	if info&flagRightOrigin != 0 {
		b.flags |= flagRightOrigin
		b.rightOrigin = id{r.uint(), r.uint()}
	}
	if info&(flagOrigin|flagRightOrigin) == 0 {
		// Yjs reads parentInfo === 1 as "root type name follows".
		if r.uint() == 1 {
			b.parentIsKey = true
			b.parentKey = r.varString()
		} else {
			b.parentID = id{r.uint(), r.uint()}
		}
		if info&flagParentSub != 0 {
			b.flags |= flagParentSub
			b.parentSub = r.varString()
		}
	}
	start := r.pos
	switch b.ref {
	case refDeleted:
		b.length = r.uint()
	case refJSON:
		n := r.uint()
		start = r.pos
		for i := uint64(0); i < n && r.err == nil; i++ {
			if s := r.varString(); r.err == nil && !r.trusted && string(s) != "undefined" && !jsonValid(s) {
				r.pos -= len(s)
				r.fail("invalid JSON")
			}
		}
		b.length = n
		b.content = r.buf[start:r.pos:r.pos]
	case refBinary:
		r.varBytes()
		b.length = 1
		b.content = r.buf[start:r.pos:r.pos]
	case refString:
		b.content = r.varString()
		b.length = utf16Len(b.content)
	case refEmbed:
		r.jsonString()
		b.length = 1
		b.content = r.buf[start:r.pos:r.pos]
	case refFormat:
		r.varString()
		r.jsonString()
		b.length = 1
		b.content = r.buf[start:r.pos:r.pos]
	case refType:
		t := r.uint()
		if t > typeMax {
			r.pos = start
			r.fail("unknown type ref " + strconv.FormatUint(t, 10))
			return
		}
		if t == typeXmlElement || t == typeXmlHook {
			r.varString()
		}
		b.length = 1
		b.content = r.buf[start:r.pos:r.pos]
	case refAny:
		n := r.uint()
		start = r.pos
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.skipAny(0)
		}
		b.length = n
		b.content = r.buf[start:r.pos:r.pos]
	case refDoc:
		r.varString()
		r.skipAny(0)
		b.length = 1
		b.content = r.buf[start:r.pos:r.pos]
	default:
		r.pos--
		r.fail("unknown content ref " + strconv.Itoa(int(b.ref)))
	}
}

// utf16Len is the UTF-16 length of valid UTF-8 s (JavaScript's
// string.length, which is a ContentString's Yjs length).
func utf16Len(s []byte) uint64 {
	n := uint64(0)
	for len(s) >= 8 {
		if binary.LittleEndian.Uint64(s)&0x8080808080808080 == 0 {
			n += 8 // ASCII
		} else {
			n += utf16LenSlow(s[:8])
		}
		s = s[8:]
	}
	return n + utf16LenSlow(s)
}

// utf16LenSlow counts what utf16Len counts, one byte at a time: every
// byte that starts a character, and again those of 4-byte characters.
func utf16LenSlow(s []byte) uint64 {
	n := uint64(0)
	for _, c := range s {
		if c&0xc0 != 0x80 {
			n++
		}
		if c >= 0xf0 {
			n++
		}
	}
	return n
}

// sliceBlock is updates.js sliceStruct: the part of b from diff on, an
// Item of which gets the last ID before diff as origin.
func sliceBlock(b *block, diff uint64, wk *work) block {
	nb := *b
	nb.clock += diff
	nb.length -= diff
	if b.kind == kindItem {
		nb.flags |= flagOrigin
		nb.origin = id{b.client, b.clock + diff - 1}
		nb.content = sliceContent(b, diff, b.length, wk)
	}
	return nb
}

// sliceContent returns the content of item b restricted to the element
// range [from, to) of its length. To cut one item into several pieces,
// use one contentCursor instead.
func sliceContent(b *block, from, to uint64, wk *work) []byte {
	c := contentCursor{work: wk}
	c.reset(b)
	return c.slice(from, to)
}

// appendID appends an ID (client, clock).
func appendID(dst []byte, x id) []byte {
	return appendVarUint(appendVarUint(dst, x.client), x.clock)
}

// appendHeader appends an Item's info byte, origins and parent as
// Item.write does, where offset > 0 writes only the part from offset on.
func appendHeader(dst []byte, b *block, offset uint64) []byte {
	flags := b.flags
	origin := b.origin
	if offset > 0 {
		flags |= flagOrigin
		origin = id{b.client, b.clock + offset - 1}
	}
	dst = append(dst, b.ref|flags)
	if flags&flagOrigin != 0 {
		dst = appendID(dst, origin)
	}
	if flags&flagRightOrigin != 0 {
		dst = appendID(dst, b.rightOrigin)
	}
	if flags&(flagOrigin|flagRightOrigin) == 0 {
		if b.parentIsKey {
			dst = append(dst, 1)
			dst = appendVarBytes(dst, b.parentKey)
		} else {
			dst = append(dst, 0)
			dst = appendID(dst, b.parentID)
		}
		if flags&flagParentSub != 0 {
			dst = appendVarBytes(dst, b.parentSub)
		}
	}
	return dst
}

// appendBlock appends b from offset on, as GC.write, Skip.write and
// Item.write do; wk counts the content scanned to find offset.
func appendBlock(dst []byte, b *block, offset uint64, wk *work) []byte {
	switch b.kind {
	case kindGC:
		return appendVarUint(append(dst, refGC), b.length-offset)
	case kindSkip:
		return appendVarUint(append(dst, refSkip), b.length-offset)
	}
	dst = appendHeader(dst, b, offset)
	switch b.ref {
	case refDeleted:
		return appendVarUint(dst, b.length-offset)
	case refString:
		if offset == 0 {
			return appendVarBytes(dst, b.content)
		}
		return appendVarBytes(dst, sliceContent(b, offset, b.length, wk))
	case refJSON, refAny:
		dst = appendVarUint(dst, b.length-offset)
		if offset == 0 {
			return append(dst, b.content...)
		}
		return append(dst, sliceContent(b, offset, b.length, wk)...)
	}
	return append(dst, b.content...)
}

// structWriter is updates.js LazyStructWriter: structs are written in
// sections of consecutive structs of one client, each prefixed with its
// struct count, client and first clock.
type structWriter struct {
	buf      []byte // client, clock and structs of every section
	sections []section
	written  int // structs in the open section
	client   uint64
	start    int   // offset of the open section in buf
	work     *work // counts the content scanned by write
}

type section struct {
	start, end int
	count      int
}

// begin prepares to append one struct of client at clock to w.buf,
// opening a new section when the client changes.
func (w *structWriter) begin(client, clock uint64) {
	if w.written > 0 && w.client != client {
		w.flush()
	}
	if w.written == 0 {
		w.client = client
		w.start = len(w.buf)
		w.buf = appendVarUint(w.buf, client)
		w.buf = appendVarUint(w.buf, clock)
	}
	w.written++
}

// write appends b from offset on (writeStructToLazyStructWriter).
func (w *structWriter) write(b *block, offset uint64) {
	w.begin(b.client, b.clock+offset)
	w.buf = appendBlock(w.buf, b, offset, w.work)
}

func (w *structWriter) flush() {
	if w.written > 0 {
		w.sections = append(w.sections, section{start: w.start, end: len(w.buf), count: w.written})
		w.written = 0
	}
}

// finish appends the structs part of an update to dst
// (finishLazyStructWriting).
func (w *structWriter) finish(dst []byte) []byte {
	w.flush()
	dst = appendVarUint(dst, uint64(len(w.sections)))
	for _, s := range w.sections {
		dst = appendVarUint(dst, uint64(s.count))
		dst = append(dst, w.buf[s.start:s.end]...)
	}
	return dst
}

// size is an upper bound of what finish appends.
func (w *structWriter) size() int {
	return len(w.buf) + 10*(len(w.sections)+2)
}
