package yjs

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// render writes the top-level types as one JSON object.
func (v *view) render() []byte {
	dst := make([]byte, 0, 4096+v.size)
	dst = append(dst, '{')
	for i, t := range v.order {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, string(v.types[t].name))
		dst = append(dst, ':')
		dst = v.appendTypeJSON(dst, t, v.rootKind(t))
	}
	return append(dst, '}')
}

// rootKind infers the kind of top-level type t (see JSONView).
func (v *view) rootKind(t int32) uint8 {
	text, xml, array := false, false, false
	for x := v.types[t].start; x != none; x = v.nodes[x].right {
		n := &v.nodes[x]
		if n.gc {
			continue
		}
		switch n.ref {
		case refString, refFormat, refEmbed:
			text = true
		case refType:
			if r := v.types[n.typ].ref; r == typeXmlElement || r == typeXmlText || r == typeXmlHook {
				xml = true
			} else {
				array = true
			}
		case refDeleted:
		default:
			array = true
		}
		if text {
			return typeText
		}
	}
	switch {
	case array:
		return typeArray
	case xml:
		return typeXmlFragment
	case len(v.types[t].entries) > 0:
		return typeMap
	}
	return typeUnknown
}

// visible reports whether node x counts in its type's content (not
// deleted, and countable: formats and deleted content are not).
func (v *view) visible(x int32) bool {
	n := &v.nodes[x]
	return !n.gc && !n.deleted && n.ref != refFormat && n.ref != refDeleted
}

// element is one element of an item's content (Content.getContent):
// a type, or a value.
type element struct {
	typ int32
	val jsValue
}

// elements calls f with the elements of node x's content.
func (v *view) elements(x int32, f func(*element)) {
	n := &v.nodes[x]
	e := element{typ: none}
	switch n.ref {
	case refAny:
		r := reader{buf: n.content, trusted: true}
		for i := uint64(0); i < n.length && r.err == nil; i++ {
			e.val = readAnyValue(&r, 0)
			f(&e)
		}
	case refJSON:
		r := reader{buf: n.content, trusted: true}
		for i := uint64(0); i < n.length && r.err == nil; i++ {
			e.val, _ = parseJSONValue(r.varString())
			f(&e)
		}
	case refBinary:
		r := reader{buf: n.content, trusted: true}
		e.val = jsValue{kind: jsBytes, s: string(r.varBytes())}
		f(&e)
	case refEmbed:
		r := reader{buf: n.content, trusted: true}
		e.val, _ = parseJSONValue(r.varString())
		f(&e)
	case refString:
		// getContent splits a string into its UTF-16 code units; a
		// character outside the BMP stays whole here.
		for s := string(n.content); s != ""; {
			_, size := utf8.DecodeRuneInString(s)
			e.val = jsValue{kind: jsString, s: s[:size]}
			f(&e)
			s = s[size:]
		}
	case refType:
		e.typ = n.typ
		f(&e)
	case refDoc:
		e.val = jsValue{kind: jsDoc}
		f(&e)
	}
}

// lastElement is getContent()[length-1], what a map entry holds.
func (v *view) lastElement(x int32) (element, bool) {
	var last element
	ok := false
	v.elements(x, func(e *element) { last, ok = *e, true })
	return last, ok
}

// appendTypeJSON appends type t as its toJSON() is stringified, t being
// of kind ref.
func (v *view) appendTypeJSON(dst []byte, t int32, ref uint8) []byte {
	switch ref {
	case typeArray:
		dst = append(dst, '[')
		first := true
		for x := v.types[t].start; x != none; x = v.nodes[x].right {
			if !v.visible(x) {
				continue
			}
			v.elements(x, func(e *element) {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = v.appendElementJSON(dst, e)
			})
		}
		return append(dst, ']')
	case typeMap, typeXmlHook:
		dst = append(dst, '{')
		first := true
		for _, k := range v.mapKeys(t) {
			e, ok := v.mapValue(k)
			if !ok || (e.typ == none && e.val.kind == jsUndefined) {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, v.entries[k].key)
			dst = append(dst, ':')
			dst = v.appendElementJSON(dst, &e)
		}
		return append(dst, '}')
	case typeText:
		dst = append(dst, '"')
		for x := v.types[t].start; x != none; x = v.nodes[x].right {
			if n := &v.nodes[x]; n.ref == refString && v.visible(x) {
				dst = appendJSONStringBody(dst, n.content)
			}
		}
		return append(dst, '"')
	case typeXmlElement, typeXmlFragment, typeXmlText:
		return appendJSONString(dst, string(v.appendTypeString(nil, t, ref)))
	}
	return append(dst, "null"...)
}

func (v *view) appendElementJSON(dst []byte, e *element) []byte {
	if e.typ != none {
		return v.appendTypeJSON(dst, e.typ, v.types[e.typ].ref)
	}
	return appendJSONValue(dst, &e.val)
}

// mapKeys returns the entries of type t in the order an object built
// from its _map has its properties.
func (v *view) mapKeys(t int32) []int32 {
	keys := v.types[t].keys
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = v.entries[k].key
	}
	if slices.ContainsFunc(names, func(s string) bool { _, ok := arrayIndex(s); return ok }) {
		keys = slices.Clone(keys)
		slices.SortStableFunc(keys, func(a, b int32) int {
			na, ia := arrayIndex(v.entries[a].key)
			nb, ib := arrayIndex(v.entries[b].key)
			switch {
			case ia && ib:
				return int(int64(na) - int64(nb))
			case ia:
				return -1
			case ib:
				return 1
			}
			return 0
		})
	}
	return keys
}

// mapValue is the value of entry k: its winner's last element, unless
// the winner is deleted.
func (v *view) mapValue(k int32) (element, bool) {
	w := v.entries[k].winner
	if w == none || v.nodes[w].deleted || v.nodes[w].gc {
		return element{}, false
	}
	return v.lastElement(w)
}

// appendText appends YText.toString: the visible strings.
func (v *view) appendText(dst []byte, t int32) []byte {
	for x := v.types[t].start; x != none; x = v.nodes[x].right {
		if n := &v.nodes[x]; n.ref == refString && v.visible(x) {
			dst = append(dst, n.content...)
		}
	}
	return dst
}

// appendTypeString appends String(type): the XML of XML types, the text
// of a Y.Text, and what Object.prototype.toString gives for the others.
func (v *view) appendTypeString(dst []byte, t int32, ref uint8) []byte {
	switch ref {
	case typeText:
		return v.appendText(dst, t)
	case typeXmlText:
		return v.appendXMLText(dst, t)
	case typeXmlFragment:
		return v.appendChildren(dst, t)
	case typeXmlElement:
		name := strings.ToLower(string(v.types[t].name))
		dst = append(dst, '<')
		dst = append(dst, name...)
		type attr struct {
			key string
			val element
		}
		var attrs []attr
		for _, k := range v.types[t].keys {
			if e, ok := v.mapValue(k); ok {
				attrs = append(attrs, attr{v.entries[k].key, e})
			}
		}
		slices.SortFunc(attrs, func(a, b attr) int { return compareUTF16(a.key, b.key) })
		for _, a := range attrs {
			dst = append(dst, ' ')
			dst = append(dst, a.key...)
			dst = append(dst, '=', '"')
			dst = v.appendElementString(dst, &a.val)
			dst = append(dst, '"')
		}
		dst = append(dst, '>')
		dst = v.appendChildren(dst, t)
		dst = append(dst, '<', '/')
		dst = append(dst, name...)
		return append(dst, '>')
	}
	return append(dst, "[object Object]"...)
}

func (v *view) appendElementString(dst []byte, e *element) []byte {
	if e.typ != none {
		return v.appendTypeString(dst, e.typ, v.types[e.typ].ref)
	}
	return appendJSString(dst, &e.val)
}

// appendChildren appends the children of an XML fragment or element,
// each as String(child).
func (v *view) appendChildren(dst []byte, t int32) []byte {
	for x := v.types[t].start; x != none; x = v.nodes[x].right {
		if v.visible(x) {
			v.elements(x, func(e *element) { dst = v.appendElementString(dst, e) })
		}
	}
	return dst
}

// appendXMLText is YXmlText.toString: the text's delta, each insert
// wrapped in one tag per formatting attribute (tags and their attributes
// sorted by name).
func (v *view) appendXMLText(dst []byte, t int32) []byte {
	var attrs objectBuilder // current attributes
	var run []byte
	op := func(insert func([]byte) []byte) {
		type tag struct {
			name  string
			attrs []string // key, String(value) pairs
		}
		// Every op repeats the tags of all current attributes: count
		// them, as crafted formats could make that quadratic.
		if v.work += 1 + len(attrs.keys); v.work > v.budget {
			v.err = errViewBudget
			return
		}
		var tags []tag
		for i, k := range attrs.keys {
			tg := tag{name: k}
			val := &attrs.vals[i]
			switch val.kind {
			case jsObject:
				for j, ak := range val.keys {
					tg.attrs = append(tg.attrs, ak, string(appendJSString(nil, &val.arr[j])))
				}
			case jsArray:
				for j := range val.arr {
					tg.attrs = append(tg.attrs, strconv.Itoa(j), string(appendJSString(nil, &val.arr[j])))
				}
			case jsString:
				j := 0
				for _, r := range val.s {
					tg.attrs = append(tg.attrs, strconv.Itoa(j), string(r))
					j++
				}
			}
			tags = append(tags, tg)
		}
		slices.SortFunc(tags, func(a, b tag) int { return compareUTF16(a.name, b.name) })
		for _, tg := range tags {
			dst = append(dst, '<')
			dst = append(dst, tg.name...)
			type kv struct{ k, v string }
			pairs := make([]kv, 0, len(tg.attrs)/2)
			for i := 0; i+1 < len(tg.attrs); i += 2 {
				pairs = append(pairs, kv{tg.attrs[i], tg.attrs[i+1]})
			}
			slices.SortFunc(pairs, func(a, b kv) int { return compareUTF16(a.k, b.k) })
			for _, p := range pairs {
				dst = append(dst, ' ')
				dst = append(dst, p.k...)
				dst = append(dst, '=', '"')
				dst = append(dst, p.v...)
				dst = append(dst, '"')
			}
			dst = append(dst, '>')
		}
		dst = insert(dst)
		for i := len(tags) - 1; i >= 0; i-- {
			dst = append(dst, '<', '/')
			dst = append(dst, tags[i].name...)
			dst = append(dst, '>')
		}
	}
	flush := func() {
		if len(run) > 0 {
			op(func(d []byte) []byte { return append(d, run...) })
			run = run[:0]
		}
	}
	for x := v.types[t].start; x != none; x = v.nodes[x].right {
		n := &v.nodes[x]
		if n.gc || n.deleted {
			continue
		}
		switch n.ref {
		case refString:
			run = append(run, n.content...)
		case refEmbed, refType:
			flush()
			v.elements(x, func(e *element) {
				op(func(d []byte) []byte { return v.appendElementString(d, e) })
			})
		case refFormat:
			flush()
			r := reader{buf: n.content, trusted: true}
			key := string(r.varString())
			val, _ := parseJSONValue(r.varString())
			if val.kind == jsNull {
				if i := slices.Index(attrs.keys, key); i >= 0 {
					attrs.keys = slices.Delete(attrs.keys, i, i+1)
					attrs.vals = slices.Delete(attrs.vals, i, i+1)
					attrs.index = nil
				}
			} else {
				attrs.set(key, val)
			}
		}
	}
	flush()
	return dst
}
