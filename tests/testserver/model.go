package testserver

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Model is a client's view of a room's members: the welcome snapshot with
// every later join, update, leave and sync applied, as the SDK does it.
type Model map[string]Member

// Apply folds one frame into the model. A join for a member already held
// is an update; a sync replaces everything.
func (m Model) Apply(f Frame) {
	switch f.Type {
	case "welcome", "sync":
		for k := range m {
			delete(m, k)
		}
		for _, mem := range f.Members {
			m[mem.ID] = mem
		}
	case "join", "update":
		m[f.Member.ID] = *f.Member
	case "leave":
		delete(m, f.Member.ID)
	}
}

// String is a canonical form for comparisons: id, name, conns and meta of
// each member, sorted by id.
func (m Model) String() string { return m.format(false) }

// Full is String with each member's since as well.
func (m Model) Full() string { return m.format(true) }

func (m Model) format(since bool) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for _, id := range ids {
		mem := m[id]
		fmt.Fprintf(&b, "%s(%s,%d,%s", id, mem.Name, mem.Conns, compact(mem.Meta))
		if since {
			fmt.Fprintf(&b, ",%d", mem.Since)
		}
		b.WriteString(") ")
	}
	return strings.TrimSpace(b.String())
}

func compact(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Model folds every frame the client has read, welcome first, into a
// fresh model.
func (c *Client) Model() Model {
	m := Model{}
	for _, f := range c.Frames() {
		m.Apply(f)
	}
	return m
}

// Members reads GET /api/rooms/{room}/members with the API key.
func Members(ctx context.Context, base, room string) (Model, error) {
	resp, body, err := Get(ctx, base+"/api/rooms/"+room+"/members", APIKey)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("members: HTTP %d: %s", resp.StatusCode, body)
	}
	var out struct {
		Members []Member `json:"members"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	m := Model{}
	m.Apply(Frame{Type: "sync", Members: out.Members})
	return m, nil
}

// ModelOf is the model of a member list.
func ModelOf(members []Member) Model {
	m := Model{}
	m.Apply(Frame{Type: "sync", Members: members})
	return m
}
