// Package tests drives the real roomcast binary over real sockets.
package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

const wait = 5 * time.Second

func TestTwoUsersSeeEachOther(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	alice := testserver.Join(t, s.WS, "doc-1", "alice", "Alice")
	if alice.Welcome.Me == nil || alice.Welcome.Me.ID != "alice" || alice.Welcome.Me.Conns != 1 || len(alice.Welcome.Members) != 1 {
		t.Fatalf("welcome: %s", alice.Welcome.Raw)
	}
	bob := testserver.Join(t, s.WS, "doc-1", "bob", "Bob")
	if len(bob.Welcome.Members) != 2 {
		t.Fatalf("bob's welcome lists %d members: %s", len(bob.Welcome.Members), bob.Welcome.Raw)
	}
	j := alice.Await(t, wait, "bob's join", func(f testserver.Frame) bool { return f.Type == "join" && f.Member.ID == "bob" })
	if j.Member.Name != "Bob" || string(j.Member.Meta) != "{}" || j.Member.Conns != 1 {
		t.Fatalf("join: %s", j.Raw)
	}

	alice.Send(t, map[string]any{"type": "publish", "data": map[string]any{"text": "hi bob"}, "ref": "m1"})
	ack := alice.AwaitType(t, "ack", wait)
	if ack.Ref != "m1" || ack.ID == "" {
		t.Fatalf("ack: %s", ack.Raw)
	}
	m := bob.AwaitType(t, "message", wait)
	if m.ID != ack.ID || m.From.User != "alice" || m.From.Conn != alice.Welcome.Conn || string(m.Data) != `{"text":"hi bob"}` || m.TS == 0 {
		t.Fatalf("message: %s", m.Raw)
	}
	bob.Send(t, map[string]any{"type": "publish", "data": "hi alice"})
	if m := alice.AwaitType(t, "message", wait); m.From.User != "bob" || string(m.Data) != `"hi alice"` {
		t.Fatalf("message: %s", m.Raw)
	}

	bob.Send(t, map[string]any{"type": "presence", "meta": map[string]any{"cursor": []int{3, 4}}, "ref": "p1"})
	// The ack and the update come in either order: presence frames wait
	// a moment to share a write.
	for _, c := range []*testserver.Client{alice, bob} {
		eventually(t, wait, "bob's update (and ack)", func() error {
			var update, ack bool
			for _, f := range c.Frames() {
				if f.Type == "update" && f.Member.ID == "bob" && string(f.Member.Meta) == `{"cursor":[3,4]}` {
					update = true
				}
				ack = ack || f.Type == "ack" && f.Ref == "p1"
			}
			if !update || c == bob && !ack {
				return fmt.Errorf("update %v, ack %v", update, ack)
			}
			return nil
		})
	}

	bob.Close()
	l := alice.AwaitType(t, "leave", wait)
	if l.Member.ID != "bob" || l.Reason != "closed" {
		t.Fatalf("leave: %s", l.Raw)
	}
}

func TestEchoOnlyWhenAsked(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	a := testserver.Join(t, s.WS, "r", "alice", "")
	a2 := testserver.Join(t, s.WS, "r", "alice", "")
	a.Send(t, map[string]any{"type": "publish", "data": 1})
	a.Send(t, map[string]any{"type": "publish", "data": 2, "echo": true})
	// The user's other tab always gets both; the sender only the echoed one.
	if m := a2.AwaitType(t, "message", wait); string(m.Data) != "1" {
		t.Fatalf("other tab: %s", m.Raw)
	}
	if m := a2.AwaitType(t, "message", wait); string(m.Data) != "2" {
		t.Fatalf("other tab: %s", m.Raw)
	}
	if m := a.AwaitType(t, "message", wait); string(m.Data) != "2" {
		t.Fatalf("sender got %s, want only the echoed message", m.Raw)
	}
}
