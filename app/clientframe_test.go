package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeClientFrame(t *testing.T) {
	ok := []struct {
		in   string
		want clientFrame
	}{
		{`{"type":"publish","data":{"a":[1,"}",{"b":null}]},"ref":"r1","echo":true}`,
			clientFrame{Type: "publish", Data: json.RawMessage(`{"a":[1,"}",{"b":null}]}`), Ref: ptr("r1"), Echo: true}},
		{` { "type" : "state" , "seq" : 7 , "data" : "x\"y" } `,
			clientFrame{Type: "state", Seq: ptr(uint64(7)), Data: json.RawMessage(`"x\"y"`)}},
		{`{"type":"presence","meta":{"c":"red"},"extra":[1,2],"extra":3}`, // unknown keys, even repeated, are ignored
			clientFrame{Type: "presence", Meta: json.RawMessage(`{"c":"red"}`)}},
		{`{"typ\u0065":"ping"}`, clientFrame{Type: "ping"}},
		{`{"TYPE":"publish","type":"ping"}`, clientFrame{Type: "ping"}}, // names match exactly
		{`{"type":"publish","data":null,"key":"k","ephemeral":false}`,
			clientFrame{Type: "publish", Data: json.RawMessage(`null`), Key: ptr("k")}},
		{`{}`, clientFrame{}},
	}
	for _, tc := range ok {
		got, err := decodeClientFrame([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !sameFrame(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
	bad := []string{
		``, `null`, `[]`, `"publish"`, `{"type":"publish"`, `{"type":"publish"}x`,
		`{"type":"state","type":"publish","data":1}`, // the bypass of the size rule
		`{"type":"publish","typ\u0065":"state"}`,
		`{"data":1,"data":2}`, `{"seq":1,"seq":1}`, `{"meta":{},"meta":{}}`,
		`{"type":1}`, `{"seq":-1}`, `{"seq":"1"}`, `{"echo":"yes"}`, `{"ref":7}`, `{"key":[]}`,
	}
	for _, in := range bad {
		if f, err := decodeClientFrame([]byte(in)); err == nil {
			t.Errorf("%s: accepted as %+v", in, f)
		}
	}
}

func sameFrame(a, b clientFrame) bool {
	eqp := func(x, y *string) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.Type == b.Type && eqp(a.Ref, b.Ref) && eqp(a.Key, b.Key) && bytes.Equal(a.Data, b.Data) &&
		bytes.Equal(a.Meta, b.Meta) && a.Echo == b.Echo && a.Ephemeral == b.Ephemeral &&
		(a.Seq == nil) == (b.Seq == nil) && (a.Seq == nil || *a.Seq == *b.Seq)
}

// FuzzClientFrame: the decoder never panics, accepts only JSON objects
// without a repeated field, and what it reads is what encoding/json reads
// from a frame with one spelling of each field; its work is one pass.
func FuzzClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"publish","data":{"a":[1,"}"]},"ref":"r","echo":true,"ephemeral":false,"key":"k"}`,
		`{"type":"state","seq":3,"data":[{"x":"]"}]}`,
		`{"type":"presence","meta":{"c":"\u00e9"}}`,
		`{"type":"state","type":"publish","data":"x"}`,
		`{"typ\u0065":"ping","Type":"publish"}`,
		` {"data" : [ [ [ ] ] ] , "x":{"type":"no"}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeClientFrame(in)
		if err != nil {
			return
		}
		if !json.Valid(in) || bytes.TrimSpace(in)[0] != '{' {
			t.Fatalf("accepted a frame that is not a JSON object: %q", in)
		}
		for _, raw := range []json.RawMessage{got.Data, got.Meta} {
			if raw != nil && !json.Valid(raw) {
				t.Fatalf("field value %q is not JSON (frame %q)", raw, in)
			}
		}
		// Every key decoded once, matched exactly: the standard decoder,
		// given the members of the known names alone, agrees.
		var members map[string]json.RawMessage
		if err := json.Unmarshal(in, &members); err != nil {
			t.Fatalf("frame %q: %v", in, err)
		}
		var std struct {
			Type      string          `json:"type"`
			Ref       *string         `json:"ref"`
			Data      json.RawMessage `json:"data"`
			Echo      bool            `json:"echo"`
			Ephemeral bool            `json:"ephemeral"`
			Key       *string         `json:"key"`
			Meta      json.RawMessage `json:"meta"`
			Seq       *uint64         `json:"seq"`
		}
		var b strings.Builder
		b.WriteByte('{')
		for k, v := range members {
			if _, known := clientFields[k]; known {
				if b.Len() > 1 {
					b.WriteByte(',')
				}
				kb, _ := json.Marshal(k)
				b.Write(kb)
				b.WriteByte(':')
				b.Write(v)
			}
		}
		b.WriteByte('}')
		if err := json.Unmarshal([]byte(b.String()), &std); err != nil {
			t.Fatalf("frame %q: the standard decoder refuses its known members %s: %v", in, b.String(), err)
		}
		want := clientFrame{Type: std.Type, Ref: std.Ref, Data: std.Data, Echo: std.Echo, Ephemeral: std.Ephemeral, Key: std.Key, Meta: std.Meta, Seq: std.Seq}
		if !sameFrame(compactFrame(got), compactFrame(want)) {
			t.Fatalf("frame %q: decoded %+v, encoding/json reads %+v", in, got, want)
		}
	})
}

// compactFrame drops insignificant whitespace from the raw fields.
func compactFrame(f clientFrame) clientFrame {
	for _, p := range []*json.RawMessage{&f.Data, &f.Meta} {
		if *p != nil {
			var b bytes.Buffer
			if json.Compact(&b, *p) == nil {
				*p = b.Bytes()
			}
		}
	}
	return f
}
