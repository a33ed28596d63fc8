package yjs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsValue is a JavaScript value as yjs hands it out of a content: what
// lib0's readAny or JSON.parse returns, a Uint8Array or a subdocument.
type jsValue struct {
	kind uint8
	b    bool
	n    float64
	s    string    // string; the digits of a bigint
	arr  []jsValue // array elements; object values
	keys []string  // object keys, in JavaScript's property order
}

const (
	jsUndefined uint8 = iota
	jsNull
	jsBool
	jsNumber
	jsBigInt
	jsString
	jsArray
	jsObject
	jsBytes // a Uint8Array: s holds the bytes
	jsDoc   // a subdocument (ContentDoc)
)

// readAnyValue is lib0 decoding.readAny, on input already validated.
func readAnyValue(r *reader, depth int) jsValue {
	tag := r.byte()
	switch tag {
	case anyUndefined:
		return jsValue{kind: jsUndefined}
	case anyNull:
		return jsValue{kind: jsNull}
	case anyInteger:
		v, _ := r.int()
		return jsValue{kind: jsNumber, n: float64(v)}
	case anyFloat32:
		b := r.bytes(4)
		if len(b) < 4 {
			return jsValue{}
		}
		return jsValue{kind: jsNumber, n: float64(math.Float32frombits(binary.BigEndian.Uint32(b)))}
	case anyFloat64:
		b := r.bytes(8)
		if len(b) < 8 {
			return jsValue{}
		}
		return jsValue{kind: jsNumber, n: math.Float64frombits(binary.BigEndian.Uint64(b))}
	case anyBigInt:
		b := r.bytes(8)
		if len(b) < 8 {
			return jsValue{}
		}
		return jsValue{kind: jsBigInt, s: strconv.FormatInt(int64(binary.BigEndian.Uint64(b)), 10)}
	case anyFalse, anyTrue:
		return jsValue{kind: jsBool, b: tag == anyTrue}
	case anyString:
		return jsValue{kind: jsString, s: string(r.varString())}
	case anyUint8Array:
		return jsValue{kind: jsBytes, s: string(r.varBytes())}
	case anyArray:
		n := r.uint()
		if depth >= maxAnyDepth {
			r.fail("any value nested too deep")
			return jsValue{}
		}
		out := jsValue{kind: jsArray, arr: make([]jsValue, 0, min(n, uint64(len(r.buf)-r.pos)))}
		for i := uint64(0); i < n && r.err == nil; i++ {
			out.arr = append(out.arr, readAnyValue(r, depth+1))
		}
		return out
	case anyObject:
		n := r.uint()
		if depth >= maxAnyDepth {
			r.fail("any value nested too deep")
			return jsValue{}
		}
		var o objectBuilder
		for i := uint64(0); i < n && r.err == nil; i++ {
			k := string(r.varString())
			o.set(k, readAnyValue(r, depth+1))
		}
		return o.value()
	}
	r.fail("unknown any type")
	return jsValue{}
}

// objectBuilder collects the properties of a JavaScript object as
// assignments do: a repeated key keeps its first place and its last
// value; value orders the keys as JavaScript does (array indices first,
// ascending, then the other keys in the order first set).
type objectBuilder struct {
	keys  []string
	vals  []jsValue
	index map[string]int
}

func (o *objectBuilder) set(k string, v jsValue) {
	if o.index == nil && len(o.keys) >= 8 {
		o.index = make(map[string]int, 2*len(o.keys))
		for i, k := range o.keys {
			o.index[k] = i
		}
	}
	if o.index != nil {
		if i, ok := o.index[k]; ok {
			o.vals[i] = v
			return
		}
		o.index[k] = len(o.keys)
	} else if i := slices.Index(o.keys, k); i >= 0 {
		o.vals[i] = v
		return
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *objectBuilder) value() jsValue {
	orderKeys(o.keys, o.vals)
	return jsValue{kind: jsObject, keys: o.keys, arr: o.vals}
}

// arrayIndex reports whether k is an array index (a canonical integer
// below 2^32-1), which JavaScript enumerates first, in numeric order.
func arrayIndex(k string) (uint64, bool) {
	if k == "" || len(k) > 10 || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	if err != nil || n >= 1<<32-1 {
		return 0, false
	}
	return n, true
}

// orderKeys puts keys (and vals alongside, when not nil) in JavaScript's
// property order, keeping the order of the non-index keys.
func orderKeys(keys []string, vals []jsValue) {
	idx := 0
	for _, k := range keys {
		if _, ok := arrayIndex(k); ok {
			idx++
		}
	}
	if idx == 0 {
		return
	}
	type kv struct {
		k string
		v jsValue
		n uint64
		i bool
	}
	all := make([]kv, len(keys))
	for i, k := range keys {
		n, ok := arrayIndex(k)
		all[i] = kv{k: k, n: n, i: ok}
		if vals != nil {
			all[i].v = vals[i]
		}
	}
	slices.SortStableFunc(all, func(a, b kv) int {
		switch {
		case a.i && b.i:
			return int(int64(a.n) - int64(b.n))
		case a.i:
			return -1
		case b.i:
			return 1
		}
		return 0
	})
	for i := range all {
		keys[i] = all[i].k
		if vals != nil {
			vals[i] = all[i].v
		}
	}
}

// parseJSONValue is JSON.parse of valid JSON text s; "undefined" is
// undefined (ContentJSON writes undefined so).
func parseJSONValue(s []byte) (jsValue, error) {
	if string(s) == "undefined" {
		return jsValue{kind: jsUndefined}, nil
	}
	d := json.NewDecoder(bytes.NewReader(s))
	d.UseNumber()
	v, err := parseJSONToken(d, 0)
	if err != nil {
		return jsValue{}, err
	}
	if _, err := d.Token(); err != io.EOF {
		return jsValue{}, errors.New("trailing JSON")
	}
	return v, nil
}

func parseJSONToken(d *json.Decoder, depth int) (jsValue, error) {
	if depth > maxAnyDepth {
		return jsValue{}, errors.New("JSON nested too deep")
	}
	t, err := d.Token()
	if err != nil {
		return jsValue{}, err
	}
	switch t := t.(type) {
	case nil:
		return jsValue{kind: jsNull}, nil
	case bool:
		return jsValue{kind: jsBool, b: t}, nil
	case string:
		return jsValue{kind: jsString, s: t}, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return jsValue{}, err
		}
		return jsValue{kind: jsNumber, n: f}, nil
	case json.Delim:
		if t == '[' {
			out := jsValue{kind: jsArray}
			for d.More() {
				v, err := parseJSONToken(d, depth+1)
				if err != nil {
					return jsValue{}, err
				}
				out.arr = append(out.arr, v)
			}
			_, err := d.Token()
			return out, err
		}
		var o objectBuilder
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return jsValue{}, err
			}
			v, err := parseJSONToken(d, depth+1)
			if err != nil {
				return jsValue{}, err
			}
			o.set(k.(string), v)
		}
		if _, err := d.Token(); err != nil {
			return jsValue{}, err
		}
		return o.value(), nil
	}
	return jsValue{}, errors.New("unexpected JSON token")
}

// appendJSONValue appends v as JSON.stringify writes it; undefined is
// written as null (the caller leaves out undefined object properties).
// A bigint, which JSON.stringify refuses, is written as a number.
func appendJSONValue(dst []byte, v *jsValue) []byte {
	switch v.kind {
	case jsUndefined, jsNull:
		return append(dst, "null"...)
	case jsBool:
		return strconv.AppendBool(dst, v.b)
	case jsNumber:
		if math.IsNaN(v.n) || math.IsInf(v.n, 0) {
			return append(dst, "null"...)
		}
		return appendJSNumber(dst, v.n)
	case jsBigInt:
		return append(dst, v.s...)
	case jsString:
		return appendJSONString(dst, v.s)
	case jsArray:
		dst = append(dst, '[')
		for i := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, &v.arr[i])
		}
		return append(dst, ']')
	case jsObject:
		dst = append(dst, '{')
		first := true
		for i := range v.arr {
			if v.arr[i].kind == jsUndefined {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, v.keys[i])
			dst = append(dst, ':')
			dst = appendJSONValue(dst, &v.arr[i])
		}
		return append(dst, '}')
	case jsBytes:
		// A Uint8Array stringifies as an object of its indices.
		dst = append(dst, '{')
		for i := 0; i < len(v.s); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = strconv.AppendInt(dst, int64(i), 10)
			dst = append(dst, '"', ':')
			dst = strconv.AppendUint(dst, uint64(v.s[i]), 10)
		}
		return append(dst, '}')
	case jsDoc:
		// Doc.toJSON of a subdocument that is not loaded: no types.
		return append(dst, "{}"...)
	}
	return append(dst, "null"...)
}

// appendJSNumber appends finite f as JavaScript's Number.prototype.toString
// (and JSON.stringify) write it: shortest round-trip digits, exponent
// form below 1e-6 and from 1e21 on, and -0 as 0.
func appendJSNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, as JavaScript writes exponents.
		s := dst[start:]
		if i := bytes.IndexByte(s, 'e'); i >= 0 && i+3 < len(s) && s[i+2] == '0' {
			copy(s[i+2:], s[i+3:])
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// appendJSONString appends s quoted as JSON.stringify does: only ", \
// and control characters are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringBody(dst, s)
	return append(dst, '"')
}

// appendJSONStringBody appends s escaped as appendJSONString does,
// without the quotes.
func appendJSONStringBody[S ~string | ~[]byte](dst []byte, s S) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// appendJSString appends String(v), as a template literal writes a value.
func appendJSString(dst []byte, v *jsValue) []byte {
	switch v.kind {
	case jsUndefined:
		return append(dst, "undefined"...)
	case jsNull:
		return append(dst, "null"...)
	case jsBool:
		return strconv.AppendBool(dst, v.b)
	case jsNumber:
		switch {
		case math.IsNaN(v.n):
			return append(dst, "NaN"...)
		case math.IsInf(v.n, 1):
			return append(dst, "Infinity"...)
		case math.IsInf(v.n, -1):
			return append(dst, "-Infinity"...)
		}
		return appendJSNumber(dst, v.n)
	case jsBigInt, jsString:
		return append(dst, v.s...)
	case jsArray:
		for i := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			if k := v.arr[i].kind; k != jsUndefined && k != jsNull {
				dst = appendJSString(dst, &v.arr[i])
			}
		}
		return dst
	case jsBytes:
		for i := 0; i < len(v.s); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, uint64(v.s[i]), 10)
		}
		return dst
	}
	return append(dst, "[object Object]"...)
}

// compareUTF16 compares strings as JavaScript's < does: by UTF-16 code
// units (which differs from byte order above U+FFFF).
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := utf16Units(ra), utf16Units(rb)
			if ua[0] != ub[0] {
				return int(ua[0]) - int(ub[0])
			}
			return int(ua[1]) - int(ub[1])
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

func utf16Units(r rune) [2]uint16 {
	if r < 0x10000 {
		return [2]uint16{uint16(r), 0}
	}
	h, l := utf16.EncodeRune(r)
	return [2]uint16{uint16(h), uint16(l)}
}
