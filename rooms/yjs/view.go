package yjs

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// JSONView returns the document that update holds (one whole v1 update,
// as Y.encodeStateAsUpdate or MergeUpdates give) as JSON: an object with
// one property per top-level type, holding what yjs's
// doc.getX(name).toJSON() gives for it: a Y.Text as its string, a Y.Map
// as an object, a Y.Array as an array, an XML fragment as its XML string.
// Nested types convert the same way, and values as JSON.stringify writes
// them (a Uint8Array as an object of its indices, undefined left out of
// objects and null in arrays, a subdocument as {}; a bigint, which
// JSON.stringify refuses, as a number).
//
// The update does not say which kind a top-level type is (yjs asks the
// caller: getText, getMap...); it is inferred from the items whose parent
// it is:
//   - text when a sequence item holds a string, a format or an embed;
//   - else an XML fragment when one holds an XML element, text or hook;
//   - else an array when one holds anything else (values, binary,
//     other types, subdocuments);
//   - else a map when it has keyed items (Y.Map entries);
//   - else (every item deleted and garbage collected) null.
//
// The items are placed as Y.applyUpdate would on a fresh Y.Doc: in yjs's
// integration order, by the YATA rules of Item.integrate, then the
// delete set applied; structs that would stay pending (missing
// dependencies) are left out as yjs leaves them out. The work is bounded
// by a budget linear in the size of the update: input that would cost
// more (crafted chains of concurrent inserts) is refused with an error
// that matches ErrInvalid, as malformed input is.
func JSONView(update []byte) ([]byte, error) {
	out, err := jsonView(update, nil)
	if err != nil {
		return nil, fmt.Errorf("yjs: JSON view: %w", err)
	}
	return out, nil
}

// viewBudget is the integration work (conflict scan steps, content
// cut) that an update of n bytes may cost.
func viewBudget(n int) int { return 1<<20 + 16*n }

// Nested type refs (ContentType.js typeRefs).
const (
	typeArray       = 0
	typeMap         = 1
	typeText        = 2
	typeXmlFragment = 4
	typeXmlText     = 6
	typeUnknown     = 255 // a top-level type of unknown kind
)

const none int32 = -1

// vnode is one piece of a struct: structs are cut beforehand at every
// place an origin, a right origin or a delete range points to, so that
// each of those points at a whole piece, as getItemCleanEnd and
// getItemCleanStart would make it.
type vnode struct {
	client, clock, length uint64
	origin, rightOrigin   id
	hasOrigin, hasRight   bool
	gc                    bool // a GC struct, or an item integrated as one
	deleted               bool
	ref                   uint8
	parentKind            uint8 // parentFromNeighbour, parentRoot, parentItem
	content               []byte
	parentSub             []byte
	hasSub                bool
	parentID              id
	left, right           int32
	parent                int32 // type index
	typ                   int32 // for ContentType: the type it holds
	before, conflict      uint64
}

const (
	parentFromNeighbour uint8 = iota
	parentRoot
	parentItem
)

// vtype is a shared type: a top-level one (item none) or one held by a
// ContentType item.
type vtype struct {
	ref     uint8
	name    []byte // of a top-level type; the node name of an XML element or hook
	start   int32
	depth   int              // of nesting: 0 for a top-level type
	entries map[string]int32 // index in view.entries
	keys    []int32          // entries in the order yjs's _map gets them
}

// mapEntry is the chain of items of one key of a type.
type mapEntry struct {
	key           string
	start, winner int32
}

// vclient is one client's pieces and the yjs structs they come from.
type vclient struct {
	pieces []int32 // by clock
	units  []unit  // the structs, by clock
	i      int     // next unit to integrate (clientsStructRefs' i)
	gone   bool    // its rest is pending
	state  uint64  // clock after the integrated structs
}

// unit is one struct of the update: pieces[first:last+1] of its client.
type unit struct {
	first, last int
	skip        bool
}

type view struct {
	nodes   []vnode
	types   []vtype
	entries []mapEntry
	roots   map[string]int32
	order   []int32 // top-level types in the order first named
	clients map[uint64]*vclient
	ds      []dsRange
	size    int // of the update: the output is about as large
	err     error
	gen     uint64
	work    int
	budget  int
}

var (
	errViewBudget = &ProtocolError{Reason: "document too costly to view"}
	errViewDepth  = &ProtocolError{Reason: "types nested too deep"}
)

func jsonView(update []byte, wk *work) ([]byte, error) {
	v := &view{roots: map[string]int32{}, clients: map[uint64]*vclient{}, budget: viewBudget(len(update)), size: len(update)}
	if err := v.load(update, wk); err != nil {
		return nil, err
	}
	if err := v.integrateAll(); err != nil {
		return nil, err
	}
	out := v.render()
	if v.err != nil {
		return nil, v.err
	}
	if wk != nil {
		wk.add(v.work)
	}
	return out, nil
}

// load reads the structs and delete set of update and cuts the structs
// into pieces.
func (v *view) load(update []byte, wk *work) error {
	// First pass: validate, and note where pieces must start.
	type point struct{ client, clock uint64 }
	var points []point
	items := 0
	var s structReader
	for s.init(update, false, false); s.has; s.next() {
		b := &s.cur
		items++
		if b.kind != kindItem {
			continue
		}
		if b.flags&flagOrigin != 0 {
			points = append(points, point{b.origin.client, b.origin.clock + 1})
		}
		if b.flags&flagRightOrigin != 0 {
			points = append(points, point{b.rightOrigin.client, b.rightOrigin.clock})
		}
	}
	if s.r.err != nil {
		return protocolError("update: ", s.r.err)
	}
	ds, err := readTail(&s.r, nil)
	if err != nil {
		return err
	}
	for _, d := range ds {
		points = append(points, point{d.client, d.clock}, point{d.client, d.end()})
	}
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.client, b.client); c != 0 {
			return c
		}
		return cmp.Compare(a.clock, b.clock)
	})
	points = slices.Compact(points)

	// Second pass: cut the structs into pieces.
	v.nodes = make([]vnode, 0, items+len(points))
	cur := contentCursor{work: wk}
	for s.init(update, false, true); s.has; s.next() {
		b := &s.cur
		c := v.clients[b.client]
		if c == nil {
			c = &vclient{}
			v.clients[b.client] = c
		}
		if b.kind == kindSkip {
			c.units = append(c.units, unit{skip: true, first: len(c.pieces), last: len(c.pieces) - 1})
			continue
		}
		j := sort.Search(len(points), func(j int) bool {
			p := points[j]
			return p.client > b.client || (p.client == b.client && p.clock > b.clock)
		})
		u := unit{first: len(c.pieces)}
		cur.reset(b)
		from := uint64(0)
		for {
			to := b.length
			if j < len(points) && points[j].client == b.client && points[j].clock < b.end() {
				to = points[j].clock - b.clock
				j++
			}
			v.addPiece(c, b, from, to, &cur)
			if to == b.length {
				break
			}
			from = to
		}
		u.last = len(c.pieces) - 1
		c.units = append(c.units, u)
	}
	v.work += len(v.nodes)
	v.ds = ds
	return nil
}

// addPiece adds the part [from, to) of b as a node of client c.
func (v *view) addPiece(c *vclient, b *block, from, to uint64, cur *contentCursor) {
	n := vnode{
		client: b.client, clock: b.clock + from, length: to - from,
		gc: b.kind == kindGC, ref: b.ref, left: none, right: none, parent: none, typ: none,
	}
	if b.kind == kindItem {
		n.origin, n.hasOrigin = b.origin, b.flags&flagOrigin != 0
		n.rightOrigin, n.hasRight = b.rightOrigin, b.flags&flagRightOrigin != 0
		if from > 0 {
			n.origin, n.hasOrigin = id{b.client, n.clock - 1}, true
		}
		n.parentSub, n.hasSub = b.parentSub, b.flags&flagParentSub != 0
		switch {
		case b.flags&(flagOrigin|flagRightOrigin) != 0:
			n.parentKind = parentFromNeighbour
		case b.parentIsKey:
			n.parentKind = parentRoot
			n.parent = v.root(b.parentKey)
		default:
			n.parentKind = parentItem
			n.parentID = b.parentID
		}
		if from > 0 && n.parentKind != parentFromNeighbour {
			// A later piece has the first one as origin and takes
			// its parent from it, as a split item does.
			n.parentKind = parentFromNeighbour
			n.parent = none
		}
		n.content = b.content
		if from > 0 || to < b.length {
			n.content = cur.slice(from, to)
		}
	}
	c.pieces = append(c.pieces, int32(len(v.nodes)))
	v.nodes = append(v.nodes, n)
}

// root returns the top-level type named name, adding it.
func (v *view) root(name []byte) int32 {
	if t, ok := v.roots[string(name)]; ok {
		return t
	}
	t := v.newType(typeUnknown, name)
	v.roots[string(name)] = t
	v.order = append(v.order, t)
	return t
}

func (v *view) newType(ref uint8, name []byte) int32 {
	v.types = append(v.types, vtype{ref: ref, name: name, start: none})
	return int32(len(v.types) - 1)
}

// find returns the integrated piece of client that holds clock, or none.
func (v *view) find(client, clock uint64) int32 {
	c := v.clients[client]
	if c == nil || clock >= c.state {
		return none
	}
	i := sort.Search(len(c.pieces), func(i int) bool { return v.nodes[c.pieces[i]].clock > clock }) - 1
	if i < 0 {
		return none
	}
	x := c.pieces[i]
	if n := &v.nodes[x]; clock >= n.clock+n.length {
		return none
	}
	return x
}

func (v *view) state(client uint64) uint64 {
	if c := v.clients[client]; c != nil {
		return c.state
	}
	return 0
}
