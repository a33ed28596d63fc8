package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/tests/testserver"
)

// roleToken mints a token with the given rooms (write) and read claims;
// nil leaves a claim out.
func roleToken(t testing.TB, sub string, rooms, read []string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testserver.Secret), auth.MintOptions{Subject: sub, Name: "Name " + sub, TTL: time.Hour, Rooms: rooms, Read: read})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// awaitError waits for c's error frame with ref and checks its code.
func awaitError(t testing.TB, c *testserver.Client, ref, code string) {
	t.Helper()
	f := c.Await(t, wait, "error "+ref, func(f testserver.Frame) bool { return f.Type == "error" && f.Ref == ref })
	if f.Code != code || f.Message == "" {
		t.Fatalf("error %s: %s, want code %s", ref, f.Raw, code)
	}
}

// awaitAck waits for c's ack with ref, failing on an error frame for it.
func awaitAck(t testing.TB, c *testserver.Client, ref string) testserver.Frame {
	t.Helper()
	f := c.Await(t, wait, "ack "+ref, func(f testserver.Frame) bool { return (f.Type == "ack" || f.Type == "error") && f.Ref == ref })
	if f.Type != "ack" {
		t.Fatalf("%s: %s, want an ack", ref, f.Raw)
	}
	return f
}

// storedMessages lists the room's stored message data over HTTP.
func storedData(t testing.TB, s *testserver.Server, room, bearer string) []string {
	t.Helper()
	st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/messages", bearer, "")
	if st != http.StatusOK {
		t.Fatalf("GET messages: %d %s", st, b)
	}
	var r struct {
		Messages []struct {
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("messages body %s: %v", b, err)
	}
	var out []string
	for _, m := range r.Messages {
		out = append(out, compactJSON(m.Data))
	}
	return out
}

func roleOf(ms []testserver.Member, id string) string {
	for _, m := range ms {
		if m.ID == id {
			return m.Role
		}
	}
	return "(absent)"
}

// TestReadOnlyConnection: a token's read claim lets its holder into a room
// read-only. The connection receives everything, is a member with role
// read, sets its presence and sends ephemeral messages, but a stored
// publish or a state gets error forbidden on a socket that stays open, and
// nothing of it is kept.
func TestReadOnlyConnection(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	const room = "ro-board"
	w := testserver.JoinURL(t, testserver.WSURL(s.WS, room, roleToken(t, "wanda", nil, nil)), nil)
	if w.Welcome.Me == nil || w.Welcome.Me.Role != "write" {
		t.Fatalf("writer's welcome.me: %s", w.Welcome.Raw)
	}
	r := testserver.JoinURL(t, testserver.WSURL(s.WS, room, roleToken(t, "rhea", nil, []string{"ro-*"})), nil)
	if r.Welcome.Me == nil || r.Welcome.Me.Role != "read" || roleOf(r.Welcome.Members, "rhea") != "read" || roleOf(r.Welcome.Members, "wanda") != "write" {
		t.Fatalf("reader's welcome: %s", r.Welcome.Raw)
	}
	j := w.Await(t, wait, "rhea's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member != nil && f.Member.ID == "rhea" })
	if j.Member.Role != "read" {
		t.Fatalf("join frame: %s", j.Raw)
	}
	if ms := members(t, s, room); roleOf(ms, "rhea") != "read" || roleOf(ms, "wanda") != "write" {
		t.Fatalf("members API: %+v", ms)
	}

	// Refused, the socket open.
	r.Send(t, map[string]any{"type": "publish", "data": map[string]any{"kept": "no"}, "ref": "p1"})
	awaitError(t, r, "p1", "forbidden")
	r.Send(t, map[string]any{"type": "publish", "data": map[string]any{"kept": "no"}, "ref": "p2", "key": "k"})
	awaitError(t, r, "p2", "forbidden")
	r.Send(t, map[string]any{"type": "state", "seq": 0, "data": map[string]any{"board": "wiped"}, "ref": "s1"})
	awaitError(t, r, "s1", "forbidden")

	// Allowed: an ephemeral publish (everyone gets it) and presence meta.
	r.Send(t, map[string]any{"type": "publish", "ephemeral": true, "data": map[string]any{"cursor": 7}, "ref": "e1"})
	awaitAck(t, r, "e1")
	m := w.Await(t, wait, "rhea's cursor", func(f testserver.Frame) bool { return f.Type == "message" && f.From != nil && f.From.User == "rhea" })
	if compactJSON(m.Data) != `{"cursor":7}` {
		t.Fatalf("relayed: %s", m.Raw)
	}
	r.Send(t, map[string]any{"type": "presence", "meta": map[string]any{"color": "teal"}, "ref": "m1"})
	awaitAck(t, r, "m1")
	u := w.Await(t, wait, "rhea's meta", func(f testserver.Frame) bool {
		return f.Type == "update" && f.Member != nil && f.Member.ID == "rhea" && compactJSON(f.Member.Meta) == `{"color":"teal"}`
	})
	if u.Member.Role != "read" {
		t.Fatalf("update frame: %s", u.Raw)
	}

	// It receives everything the room sends.
	w.Send(t, map[string]any{"type": "publish", "data": map[string]any{"kept": "yes"}, "ref": "w1"})
	awaitAck(t, w, "w1")
	r.Await(t, wait, "wanda's message", func(f testserver.Frame) bool { return f.Type == "message" && compactJSON(f.Data) == `{"kept":"yes"}` })

	// Nothing of the reader was kept; it may read what was.
	if got := storedData(t, s, room, roleToken(t, "rhea", nil, []string{room})); len(got) != 1 || got[0] != `{"kept":"yes"}` {
		t.Fatalf("stored messages: %v", got)
	}
	st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/state", roleToken(t, "rhea", nil, []string{room}), "")
	if st != http.StatusOK {
		t.Fatalf("GET state with a read token: %d %s", st, b)
	}
	fence(t, r)
}

// TestRoleClaims: a room in both claims is written; a token with a read
// claim and no rooms claim writes no room and enters only the rooms it
// reads.
func TestRoleClaims(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})

	both := testserver.JoinURL(t, testserver.WSURL(s.WS, "rc-1", roleToken(t, "bo", []string{"rc-1"}, []string{"rc-*"})), nil)
	if both.Welcome.Me.Role != "write" {
		t.Fatalf("welcome: %s", both.Welcome.Raw)
	}
	both.Send(t, map[string]any{"type": "publish", "data": 1, "ref": "b1"})
	if a := awaitAck(t, both, "b1"); a.Seq == 0 {
		t.Fatalf("the publish was not stored: %s", a.Raw)
	}
	// Its other rooms by the read prefix are read.
	other := testserver.JoinURL(t, testserver.WSURL(s.WS, "rc-2", roleToken(t, "bo", []string{"rc-1"}, []string{"rc-*"})), nil)
	if other.Welcome.Me.Role != "read" {
		t.Fatalf("welcome: %s", other.Welcome.Raw)
	}

	readOnly := roleToken(t, "vi", nil, []string{"rc-3"})
	st, b := upgradeRequest(t, testserver.WSURL(s.URL, "elsewhere", readOnly), nil)
	if st != http.StatusForbidden {
		t.Fatalf("read-only token into a room it does not list: %d %s", st, b)
	}
	assertErrorBody(t, b, "room_not_allowed")
	v := testserver.JoinURL(t, testserver.WSURL(s.WS, "rc-3", readOnly), nil)
	if v.Welcome.Me.Role != "read" {
		t.Fatalf("welcome: %s", v.Welcome.Raw)
	}
	v.Send(t, map[string]any{"type": "publish", "data": 1, "ref": "v1"})
	awaitError(t, v, "v1", "forbidden")

	// No claim at all: every room, written (as before roles).
	a := testserver.JoinURL(t, testserver.WSURL(s.WS, "rc-4", roleToken(t, "al", nil, nil)), nil)
	if a.Welcome.Me.Role != "write" {
		t.Fatalf("welcome: %s", a.Welcome.Raw)
	}
}

// TestReadOnlyHTTP: POST routes answer a read token 403 forbidden and
// change nothing; reads allow it.
func TestReadOnlyHTTP(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	const room = "ro-doc"
	up := makeUpdate(t, "hello", map[string]any{"k": "v"})
	reader := roleToken(t, "rhea", nil, []string{room})

	st, b := postDoc(t, s, room, reader, up)
	if st != http.StatusForbidden {
		t.Fatalf("POST doc with a read token: %d %s", st, b)
	}
	assertErrorBody(t, b, "forbidden")
	if st, _, b := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/doc", reader, nil); st != http.StatusNotFound {
		t.Fatalf("GET doc after the refused POST: %d %q (nothing may have changed)", st, b)
	}
	// The same with a write token goes through, and the reader reads it.
	if st, b := postDoc(t, s, room, roleToken(t, "wanda", []string{room}, nil), up); st != http.StatusNoContent {
		t.Fatalf("POST doc with a write token: %d %s", st, b)
	}
	st, _, doc := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/doc", reader, nil)
	if st != http.StatusOK {
		t.Fatalf("GET doc with a read token: %d", st)
	}
	if c := readDoc(t, doc); c.Text != "hello" {
		t.Fatalf("document: %+v", c)
	}
	if st, b := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/versions", reader, ""); st != http.StatusOK {
		t.Fatalf("GET versions with a read token: %d %s", st, b)
	}
	// A second refused POST leaves the document as it is.
	if st, b := postDoc(t, s, room, reader, makeUpdate(t, "overwritten", nil)); st != http.StatusForbidden {
		t.Fatalf("POST doc with a read token: %d %s", st, b)
	}
	if c := getDoc(t, s, room); c.Text != "hello" {
		t.Fatalf("document after a refused POST: %+v", c)
	}
	// The server-side POST needs the API key whatever the user token.
	st, b = httpCall(t, http.MethodPost, s.URL+"/api/rooms/"+room+"/messages", reader, `{"data":1}`)
	if st != http.StatusUnauthorized && st != http.StatusForbidden {
		t.Fatalf("POST messages with a read token: %d %s", st, b)
	}
}

// TestReadOnlyRoleAcrossInstances: the role is part of presence, so a
// member joined on one instance shows its role on the other, in the join
// frame, the welcome and the members API; a write tab makes it write.
func TestReadOnlyRoleAcrossInstances(t *testing.T) {
	t.Parallel()
	_, s := cluster(t, 2, nil)
	const room = "ro-across"
	w := testserver.JoinURL(t, testserver.WSURL(s[0].WS, room, roleToken(t, "wanda", nil, nil)), nil)
	r := testserver.JoinURL(t, testserver.WSURL(s[1].WS, room, roleToken(t, "rhea", nil, []string{room})), nil)
	j := w.Await(t, wait, "rhea's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member != nil && f.Member.ID == "rhea" })
	if j.Member.Role != "read" {
		t.Fatalf("join on the other instance: %s", j.Raw)
	}
	for i, inst := range s {
		eventually(t, wait, "members API", func() error {
			if ms := members(t, inst, room); roleOf(ms, "rhea") != "read" || roleOf(ms, "wanda") != "write" {
				return fmt.Errorf("instance %d members: %+v", i, ms)
			}
			return nil
		})
	}
	late := testserver.JoinURL(t, testserver.WSURL(s[0].WS, room, roleToken(t, "lou", nil, []string{room})), nil)
	if roleOf(late.Welcome.Members, "rhea") != "read" || roleOf(late.Welcome.Members, "wanda") != "write" {
		t.Fatalf("welcome on the other instance: %s", late.Welcome.Raw)
	}
	r.Send(t, map[string]any{"type": "state", "seq": 0, "data": 1, "ref": "s1"})
	awaitError(t, r, "s1", "forbidden")

	// rhea opens an edit tab on the first instance: one member, now write.
	testserver.JoinURL(t, testserver.WSURL(s[0].WS, room, roleToken(t, "rhea", []string{room}, nil)), nil)
	u := w.Await(t, wait, "rhea's second tab", func(f testserver.Frame) bool {
		return f.Type == "update" && f.Member != nil && f.Member.ID == "rhea" && f.Member.Conns == 2
	})
	if u.Member.Role != "write" {
		t.Fatalf("update: %s", u.Raw)
	}
	// The read-only tab stays read-only whatever the member shows.
	r.Send(t, map[string]any{"type": "publish", "data": 1, "ref": "p1"})
	awaitError(t, r, "p1", "forbidden")
}

// TestDevTokenRole: with -dev, /dev/token?role=read mints a view token
// (the room read-only); role=write or none an edit token.
func TestDevTokenRole(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Args: []string{"-dev"}})
	mint := func(q string) (int, string) {
		st, b := httpCall(t, http.MethodGet, s.URL+"/dev/token?"+q, "", "")
		var r struct{ Token string }
		_ = json.Unmarshal(b, &r)
		return st, r.Token
	}
	_, view := mint("user=vic&room=dv-1&role=read")
	v := testserver.JoinURL(t, testserver.WSURL(s.WS, "dv-1", view), nil)
	if v.Welcome.Me.Role != "read" {
		t.Fatalf("view token welcome: %s", v.Welcome.Raw)
	}
	if st, b := upgradeRequest(t, testserver.WSURL(s.URL, "dv-2", view), nil); st != http.StatusForbidden {
		t.Fatalf("view token into another room: %d %s", st, b)
	}
	_, edit := mint("user=eda&room=dv-1&role=write")
	if e := testserver.JoinURL(t, testserver.WSURL(s.WS, "dv-1", edit), nil); e.Welcome.Me.Role != "write" {
		t.Fatalf("edit token welcome: %s", e.Welcome.Raw)
	}
	if st, _ := mint("user=x&role=admin"); st != http.StatusBadRequest {
		t.Fatalf("role=admin: %d", st)
	}
}
