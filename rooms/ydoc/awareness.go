package ydoc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
	"github.com/roomcast/roomcast/rooms/yjs"
)

// awClient is the latest awareness state of one Yjs client (clientID) of a
// document, and the connection that owns it: the first to announce it.
// y-websocket providers echo every state they receive, so a connection
// also sends states of clients it does not own; those are never its own.
type awClient struct {
	clock      uint64
	state      []byte
	conn, user string
	local      bool      // conn is on this instance
	seen       time.Time // last announced by its owner
}

// awareness handles a client's awareness message: the states that are new
// (a higher clock than known) are recorded and relayed to every client of
// the document; echoes of states everyone has go no further.
func (e *Engine) awareness(ctx context.Context, r *docRoom, c *Conn, update []byte) error {
	entries, err := yjs.ParseAwareness(update)
	if err != nil {
		return fmt.Errorf("parse awareness: %w", err) // ParseMessage checked it already
	}
	r.mu.Lock()
	fresh := r.applyLocked(entries, c.ID, c.User, true, time.Now())
	r.mu.Unlock()
	if len(fresh) > 0 {
		e.publishAwareness(ctx, r.name, c.ID, c.User, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(fresh)))
	}
	return nil
}

// applyLocked records entries announced by conn (of user) and returns those
// that changed something. r.mu is held.
func (r *docRoom) applyLocked(entries []yjs.AwarenessEntry, conn, user string, local bool, now time.Time) []yjs.AwarenessEntry {
	var fresh []yjs.AwarenessEntry
	for _, e := range entries {
		cur := r.clients[e.Client]
		null := string(e.State) == "null"
		switch {
		case cur != nil && cur.user != user:
			continue // another user's client: only its own connections speak for it
		case len(e.State) > maxAwarenessState:
			continue
		case cur == nil && null:
			continue // the removal of a state nobody has
		case cur == nil && len(r.owned[conn]) >= maxAwarenessStates:
			continue // beyond what one connection may announce
		case cur != nil && e.Clock < cur.clock:
			continue // older than what we have
		case cur != nil && e.Clock == cur.clock && !null:
			if cur.conn == conn {
				cur.seen = now // its owner confirms it (an answer to a query)
			}
			continue // an echo
		}
		// Kept: the entry aliases a read buffer or a payload.
		e.State = append([]byte(nil), e.State...)
		switch {
		case null:
			delete(r.clients, e.Client)
			r.disownLocked(cur.conn, e.Client)
		case cur == nil:
			r.clients[e.Client] = &awClient{clock: e.Clock, state: e.State, conn: conn, user: user, local: local, seen: now}
			r.ownLocked(conn, e.Client)
		default:
			// The same user's newer connection (a reconnect whose old
			// socket has not ended yet) takes the state over.
			if cur.conn != conn {
				r.disownLocked(cur.conn, e.Client)
				r.ownLocked(conn, e.Client)
			}
			cur.clock, cur.state, cur.conn, cur.local, cur.seen = e.Clock, e.State, conn, local, now
		}
		fresh = append(fresh, e)
	}
	return fresh
}

// ownLocked records that conn owns client's state. r.mu is held.
func (r *docRoom) ownLocked(conn string, client uint64) {
	set := r.owned[conn]
	if set == nil {
		set = make(map[uint64]struct{}, 1)
		r.owned[conn] = set
	}
	set[client] = struct{}{}
}

// disownLocked records that conn no longer owns client's state. r.mu is
// held.
func (r *docRoom) disownLocked(conn string, client uint64) {
	if set := r.owned[conn]; set != nil {
		delete(set, client)
		if len(set) == 0 {
			delete(r.owned, conn)
		}
	}
}

// dropConnLocked removes the states conn owns and returns their removal
// entries, at a cost of its own states, not the room's. r.mu is held.
func (r *docRoom) dropConnLocked(conn string) []yjs.AwarenessEntry {
	var gone []yjs.AwarenessEntry
	for client := range r.owned[conn] {
		if c := r.clients[client]; c != nil {
			delete(r.clients, client)
			gone = append(gone, yjs.AwarenessEntry{Client: client, Clock: c.clock + 1, State: []byte("null")})
		}
	}
	delete(r.owned, conn)
	return gone
}

// dropLocked removes the states for which match holds and returns their
// removal entries (clock + 1, state null). r.mu is held.
func (r *docRoom) dropLocked(match func(*awClient) bool) []yjs.AwarenessEntry {
	var gone []yjs.AwarenessEntry
	for client, c := range r.clients {
		if match(c) {
			delete(r.clients, client)
			r.disownLocked(c.conn, client)
			gone = append(gone, yjs.AwarenessEntry{Client: client, Clock: c.clock + 1, State: []byte("null")})
		}
	}
	return gone
}

// publishAwareness sends an awareness message of conn to every instance:
// the payload is varString instance, varString user, then the message.
func (e *Engine) publishAwareness(ctx context.Context, room, conn, user string, msg []byte) {
	inst := e.o.Instance
	b := binary.AppendUvarint(make([]byte, 0, len(inst)+len(user)+len(msg)+8), uint64(len(inst)))
	b = append(b, inst...)
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	b = append(b, msg...)
	if err := e.o.Broker.Publish(ctx, room, wire.SealDoc(conn, wire.DocAwareness, b)); err != nil {
		e.log.Warn("publish awareness", "room", room, "conn", conn, "err", err)
	}
}

// query asks every instance to announce the awareness of its connections
// of user in room (every user when empty).
func (e *Engine) query(ctx context.Context, room, user string) {
	if err := e.o.Broker.Publish(ctx, room, wire.SealDoc(e.o.Instance, wire.DocQuery, []byte(user))); err != nil {
		e.log.Warn("ask for awareness", "room", room, "err", err)
	}
}

// deliverAwareness relays an awareness payload to the local connections:
// one of a local connection as it is (its states were recorded when it
// arrived), one of another instance's connection with only what is new.
func (e *Engine) deliverAwareness(r *docRoom, env wire.Envelope) {
	inst, rest, ok1 := varString(env.Frame)
	user, msg, ok2 := varString(rest)
	if !ok1 || !ok2 {
		e.log.Warn("dropped a malformed awareness payload", "room", r.name)
		return
	}
	if inst == e.o.Instance {
		// Recorded when it arrived from the client: relay only.
		r.send(env.Exclude, msg)
		return
	}
	m, err := yjs.ParseMessage(msg)
	if err != nil || m.Type != yjs.MessageAwareness {
		e.log.Warn("dropped an invalid awareness payload", "room", r.name, "err", err)
		return
	}
	entries, _ := yjs.ParseAwareness(m.Payload)
	r.mu.Lock()
	fresh := r.applyLocked(entries, env.Exclude, user, false, time.Now())
	r.mu.Unlock()
	if len(fresh) > 0 {
		r.send(env.Exclude, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(fresh)))
	}
}

// varString splits a lib0 varString off b.
func varString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// answerQuery announces the awareness states owned by this instance's
// connections of user (all when empty) in r, one payload per connection.
func (e *Engine) answerQuery(r *docRoom, user string) {
	type owned struct {
		user    string
		entries []yjs.AwarenessEntry
	}
	byConn := make(map[string]*owned)
	r.mu.Lock()
	for client, c := range r.clients {
		if !c.local || (user != "" && c.user != user) {
			continue
		}
		o := byConn[c.conn]
		if o == nil {
			o = &owned{user: c.user}
			byConn[c.conn] = o
		}
		o.entries = append(o.entries, yjs.AwarenessEntry{Client: client, Clock: c.clock, State: c.state})
	}
	r.mu.Unlock()
	ctx, cancel := e.opContext()
	defer cancel()
	for conn, o := range byConn {
		e.publishAwareness(ctx, r.name, conn, o.user, yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(o.entries)))
	}
}

// awarenessFor returns an awareness message with every known state of the
// document's clients but those owned by except (nil for all), or nil when
// there are none.
func (r *docRoom) awarenessFor(except *Conn) []byte {
	var all []yjs.AwarenessEntry
	r.mu.Lock()
	for client, c := range r.clients {
		if except == nil || c.conn != except.ID {
			all = append(all, yjs.AwarenessEntry{Client: client, Clock: c.clock, State: c.state})
		}
	}
	r.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	return yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(all))
}

// ObservePresence is fed every presence frame of the rooms (HubOptions.Observe).
// When a user leaves, the awareness states of their connections on other
// instances go at once; when they lose a connection but stay, the
// instances are asked which of their states still stand, and the rest go
// after awarenessWait. This is how the states of an instance that crashed
// are removed: its connections' presence expires.
func (e *Engine) ObservePresence(room string, frame []byte) {
	r := e.room(room)
	if r == nil {
		return
	}
	var f struct {
		Type   string `json:"type"`
		Member struct {
			ID string `json:"id"`
		} `json:"member"`
	}
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	user := f.Member.ID
	r.mu.Lock()
	defer r.mu.Unlock()
	switch f.Type {
	case "sync":
		// Events may have been lost: every remote state must be confirmed.
		for _, c := range r.clients {
			if !c.local {
				e.verifyLocked(r, "")
				break
			}
		}
	case "leave":
		gone := r.dropLocked(func(c *awClient) bool { return !c.local && c.user == user })
		e.sendRemoved(r, gone)
	case "update":
		for _, c := range r.clients {
			if !c.local && c.user == user {
				e.verifyLocked(r, user)
				break
			}
		}
	}
}

// verifyLocked asks the instances to announce again the states of user's
// connections ("" for every user), and removes the remote states not
// confirmed within awarenessWait. r.mu is held.
func (e *Engine) verifyLocked(r *docRoom, user string) {
	if _, pending := r.verify[user]; pending {
		return
	}
	asked := time.Now()
	r.verify[user] = time.AfterFunc(awarenessWait, func() {
		r.mu.Lock()
		delete(r.verify, user)
		gone := r.dropLocked(func(c *awClient) bool {
			return !c.local && (user == "" || c.user == user) && c.seen.Before(asked)
		})
		r.mu.Unlock()
		e.sendRemoved(r, gone)
	})
	e.async(func() {
		ctx, cancel := e.opContext()
		e.query(ctx, r.name, user)
		cancel()
	})
}

func (e *Engine) sendRemoved(r *docRoom, gone []yjs.AwarenessEntry) {
	if len(gone) == 0 {
		return
	}
	e.log.Info("removed awareness of connections gone from presence", "room", r.name, "states", len(gone))
	r.send("", yjs.AppendAwarenessMessage(nil, yjs.EncodeAwareness(gone)))
}
