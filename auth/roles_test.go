package auth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestRole(t *testing.T) {
	cases := []struct {
		name        string
		rooms, read []string
		room        string
		want        Role // "" refused
	}{
		{"no claims: every room written", nil, nil, "x", RoleWrite},
		{"rooms only", []string{"doc-*"}, nil, "doc-1", RoleWrite},
		{"rooms only, other room", []string{"doc-*"}, nil, "x", ""},
		{"read only: that room read", nil, []string{"doc-1"}, "doc-1", RoleRead},
		{"read only: no room written", nil, []string{"doc-1"}, "x", ""},
		{"read only by prefix", nil, []string{"doc-*"}, "doc-9", RoleRead},
		{"empty read: nothing at all", nil, []string{}, "x", ""},
		{"both: write wins", []string{"doc-1"}, []string{"doc-*"}, "doc-1", RoleWrite},
		{"both: read elsewhere", []string{"doc-1"}, []string{"doc-*"}, "doc-2", RoleRead},
		{"both: neither", []string{"doc-1"}, []string{"doc-*"}, "x", ""},
		{"empty rooms, read", []string{}, []string{"a"}, "a", RoleRead},
	}
	for _, tc := range cases {
		c := &Claims{Rooms: tc.rooms, Read: tc.read}
		got, ok := c.Role(tc.room)
		if ok != (tc.want != "") || got != tc.want || c.Allows(tc.room) != ok {
			t.Errorf("%s: Role(%q) = %q, %v; want %q", tc.name, tc.room, got, ok, tc.want)
		}
	}
}

func TestReadClaimVerified(t *testing.T) {
	v, err := NewVerifier(context.Background(), Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secret, with("read", []string{"board-*"})))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Role("board-1"); !ok || r != RoleRead {
		t.Fatalf("board-1: %q %v", r, ok)
	}
	if c.Allows("other") {
		t.Fatal("a read-only token let into a room it does not list")
	}
	for _, bad := range []any{42, map[string]any{"a": 1}, []any{1}} {
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secret, with("read", bad))); !errors.Is(err, ErrInvalid) {
			t.Fatalf("read %v: %v, want ErrInvalid", bad, err)
		}
	}
	tok, err := MintHS256(secret, MintOptions{Subject: "v", Read: []string{"r"}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(context.Background(), tok); err != nil || c.Rooms != nil || len(c.Read) != 1 {
		t.Fatalf("minted read token: %+v %v", c, err)
	}
}

func TestClaimMap(t *testing.T) {
	m, err := ParseClaimMap("name:nickname, rooms:https://app/rooms,read:https://app/read,sub:user_id,meta:https://app/meta")
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(context.Background(), Config{Secret: secret, Claims: m})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, secret, with("sub", "ignored", "user_id", "u1", "name", "ignored", "nickname", "Nick",
		"https://app/rooms", []string{"w"}, "https://app/read", "r-*", "https://app/meta", map[string]any{"c": 1}, "rooms", []string{"*"}))
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "u1" || c.Name != "Nick" || string(c.Meta) != `{"c":1}` {
		t.Fatalf("claims %+v", c)
	}
	if r, _ := c.Role("w"); r != RoleWrite {
		t.Fatalf("w: %q", r)
	}
	if r, _ := c.Role("r-1"); r != RoleRead {
		t.Fatalf("r-1: %q (a single string is a list of one)", r)
	}
	if c.Allows("x") {
		t.Fatal("the unmapped rooms claim was read")
	}
	// The mapped sub is required.
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secret, valid())); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "user_id") {
		t.Fatalf("without user_id: %v", err)
	}

	for _, bad := range []string{"nick:nickname", "name", "name:", "name:a,name:b", "role:x"} {
		if _, err := ParseClaimMap(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if m, err := ParseClaimMap(""); err != nil || m != (ClaimMap{}) {
		t.Fatalf("empty: %+v %v", m, err)
	}
}
