package yjs

import (
	"slices"
	"strconv"
)

// stackRef is one struct on the integration stack: a unit of a client.
type stackRef struct {
	c *vclient
	u int
}

// integrateAll is a port of encoding.js integrateStructs followed by
// the delete set: structs are taken client by client, highest client
// first, and a struct whose origin, right origin or parent is not there
// yet sends the loop to the client that holds it first. What cannot be
// integrated stays out, as it stays pending in yjs.
func (v *view) integrateAll() error {
	ids := make([]uint64, 0, len(v.clients))
	for c := range v.clients {
		ids = append(ids, c)
	}
	slices.Sort(ids)
	next := func() *vclient {
		for len(ids) > 0 {
			if c := v.clients[ids[len(ids)-1]]; c.i < len(c.units) {
				return c
			}
			ids = ids[:len(ids)-1]
		}
		return nil
	}
	target := next()
	var stack []stackRef
	// addStackToRest: the clients of the stack's structs keep their rest
	// pending.
	addStackToRest := func() {
		for _, r := range stack {
			r.c.gone = true
			r.c.i = len(r.c.units)
		}
		stack = stack[:0]
	}
	if target != nil {
		head := stackRef{target, target.i}
		target.i++
		for {
			if u := head.c.units[head.u]; !u.skip {
				x := head.c.pieces[u.first]
				first := &v.nodes[x]
				switch {
				case first.clock > head.c.state:
					// an update from the same client is missing
					stack = append(stack, head)
					addStackToRest()
				default:
					missing, has, err := v.resolve(x)
					if err != nil {
						return err
					}
					if has {
						stack = append(stack, head)
						mc := v.clients[missing]
						if mc == nil || mc.i == len(mc.units) {
							addStackToRest()
						} else {
							head = stackRef{mc, mc.i}
							mc.i++
							continue
						}
					} else if first.clock == head.c.state {
						if err := v.integrate(head.c, u); err != nil {
							return err
						}
					}
				}
			}
			switch {
			case len(stack) > 0:
				head = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			case target != nil && target.i < len(target.units):
				head = stackRef{target, target.i}
				target.i++
			default:
				if target = next(); target == nil {
					return v.applyDeletes()
				}
				head = stackRef{target, target.i}
				target.i++
			}
		}
	}
	return v.applyDeletes()
}

// resolve is Item.getMissing: the client of a dependency that is not
// integrated yet, or else the piece's left, right and parent.
func (v *view) resolve(x int32) (uint64, bool, error) {
	n := &v.nodes[x]
	if n.gc {
		return 0, false, nil
	}
	if n.hasOrigin && n.origin.client != n.client && n.origin.clock >= v.state(n.origin.client) {
		return n.origin.client, true, nil
	}
	if n.hasRight && n.rightOrigin.client != n.client && n.rightOrigin.clock >= v.state(n.rightOrigin.client) {
		return n.rightOrigin.client, true, nil
	}
	if n.parentKind == parentItem && n.parentID.client != n.client && n.parentID.clock >= v.state(n.parentID.client) {
		return n.parentID.client, true, nil
	}
	n.left, n.right = none, none
	if n.hasOrigin {
		if n.left = v.find(n.origin.client, n.origin.clock); n.left == none {
			return 0, false, v.fail("origin", n)
		}
	}
	if n.hasRight {
		if n.right = v.find(n.rightOrigin.client, n.rightOrigin.clock); n.right == none {
			return 0, false, v.fail("right origin", n)
		}
	}
	leftGC := n.left != none && v.nodes[n.left].gc
	rightGC := n.right != none && v.nodes[n.right].gc
	switch {
	case leftGC || rightGC:
		n.parent = none
	case n.parentKind == parentFromNeighbour:
		n.parent = none
		if n.left != none {
			l := &v.nodes[n.left]
			n.parent, n.parentSub, n.hasSub = l.parent, l.parentSub, l.hasSub
		} else if n.right != none {
			r := &v.nodes[n.right]
			n.parent, n.parentSub, n.hasSub = r.parent, r.parentSub, r.hasSub
		}
	case n.parentKind == parentItem:
		n.parent = none
		if p := v.find(n.parentID.client, n.parentID.clock); p == none {
			return 0, false, v.fail("parent", n)
		} else if pn := &v.nodes[p]; !pn.gc && pn.ref == refType {
			n.parent = pn.typ
		}
	}
	return 0, false, nil
}

func (v *view) fail(what string, n *vnode) error {
	return &ProtocolError{Reason: truncateReason("the " + what + " of item " +
		strconv.FormatUint(n.client, 10) + ":" + strconv.FormatUint(n.clock, 10) + " is not in the document")}
}

// integrate is Item.integrate (GC.integrate for GC structs and items
// without a parent) of the unit u of client c, whose first piece was
// resolved; the unit's further pieces follow it, as the parts of one
// item do.
func (v *view) integrate(c *vclient, u unit) error {
	x := c.pieces[u.first]
	n := &v.nodes[x]
	last := &v.nodes[c.pieces[u.last]]
	c.state = last.clock + last.length
	if n.gc || n.parent == none {
		for _, p := range c.pieces[u.first : u.last+1] {
			v.nodes[p].gc = true
		}
		return nil
	}
	t := n.parent
	var e *mapEntry
	if n.hasSub {
		e = &v.entries[v.entry(t, n.parentSub)]
	}
	if (n.left == none && (n.right == none || v.nodes[n.right].left != none)) || (n.left != none && v.nodes[n.left].right != n.right) {
		left := n.left
		var o int32
		switch {
		case left != none:
			o = v.nodes[left].right
		case e != nil:
			o = e.start
		default:
			o = v.types[t].start
		}
		// itemsBeforeOrigin holds the nodes with before == gen,
		// conflictingItems those with conflict == cgen; clearing the
		// latter takes a new cgen.
		v.gen++
		gen := v.gen
		v.gen++
		cgen := v.gen
		for o != none && o != n.right {
			if v.work++; v.work > v.budget {
				return errViewBudget
			}
			on := &v.nodes[o]
			on.before, on.conflict = gen, cgen
			if sameOrigin(n.hasOrigin, n.origin, on.hasOrigin, on.origin) {
				if on.client < n.client {
					left = o
					v.gen++
					cgen = v.gen
				} else if sameOrigin(n.hasRight, n.rightOrigin, on.hasRight, on.rightOrigin) {
					break
				}
			} else if on.hasOrigin {
				if oo := v.find(on.origin.client, on.origin.clock); oo != none && v.nodes[oo].before == gen {
					if v.nodes[oo].conflict != cgen {
						left = o
						v.gen++
						cgen = v.gen
					}
				} else {
					break
				}
			} else {
				break
			}
			o = on.right
		}
		n.left = left
	}
	v.link(x, t, e)
	if err := v.integrateContent(x); err != nil {
		return err
	}
	// The further pieces of the struct, each right after the one before.
	prev := x
	for _, p := range c.pieces[u.first+1 : u.last+1] {
		pn := &v.nodes[p]
		pn.parent, pn.parentSub, pn.hasSub = t, n.parentSub, n.hasSub
		pn.left = prev
		v.link(p, t, e)
		if err := v.integrateContent(p); err != nil {
			return err
		}
		prev = p
	}
	return nil
}

// link puts node x, whose left is decided, into the list of type t (or
// of the map entry e).
func (v *view) link(x, t int32, e *mapEntry) {
	n := &v.nodes[x]
	if n.left != none {
		l := &v.nodes[n.left]
		n.right = l.right
		l.right = x
	} else if e != nil {
		n.right = e.start
		e.start = x
	} else {
		n.right = v.types[t].start
		v.types[t].start = x
	}
	if n.right != none {
		v.nodes[n.right].left = x
	} else if e != nil {
		if e.winner == none {
			v.types[t].keys = append(v.types[t].keys, v.types[t].entries[e.key])
		}
		e.winner = x
	}
}

// entry returns the index of the chain of key in type t, adding an
// empty one.
func (v *view) entry(t int32, key []byte) int32 {
	tp := &v.types[t]
	if i, ok := tp.entries[string(key)]; ok {
		return i
	}
	if tp.entries == nil {
		tp.entries = map[string]int32{}
	}
	tp.entries[string(key)] = int32(len(v.entries))
	v.entries = append(v.entries, mapEntry{key: string(key), start: none, winner: none})
	return int32(len(v.entries) - 1)
}

// integrateContent is Content.integrate: a type comes to life, deleted
// content is deleted. Types may nest maxAnyDepth deep (the view is
// written recursively, as yjs's toJSON is).
func (v *view) integrateContent(x int32) error {
	n := &v.nodes[x]
	switch n.ref {
	case refDeleted:
		n.deleted = true
	case refType:
		r := reader{buf: n.content, trusted: true}
		ref := uint8(r.uint())
		var name []byte
		if ref == typeXmlElement || ref == typeXmlHook {
			name = r.varString()
		}
		depth := v.types[n.parent].depth + 1
		if depth > maxAnyDepth {
			return errViewDepth
		}
		n.typ = v.newType(ref, name)
		v.types[n.typ].depth = depth
	}
	return nil
}

// sameOrigin is compareIDs of two optional IDs.
func sameOrigin(hasA bool, a id, hasB bool, b id) bool {
	if !hasA || !hasB {
		return hasA == hasB
	}
	return a == b
}

// applyDeletes marks the integrated pieces in the delete set deleted
// (ranges past what is integrated stay pending in yjs).
func (v *view) applyDeletes() error {
	for _, d := range normalizeDeleteSet(v.ds) {
		c := v.clients[d.client]
		if c == nil {
			continue
		}
		end := min(d.end(), c.state)
		i, _ := slices.BinarySearchFunc(c.pieces, d.clock, func(p int32, clock uint64) int {
			pc := v.nodes[p].clock
			switch {
			case pc < clock:
				return -1
			case pc > clock:
				return 1
			}
			return 0
		})
		for ; i < len(c.pieces) && v.nodes[c.pieces[i]].clock < end; i++ {
			if v.work++; v.work > v.budget {
				return errViewBudget
			}
			v.nodes[c.pieces[i]].deleted = true
		}
	}
	return nil
}
