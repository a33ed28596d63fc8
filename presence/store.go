// Package presence knows who is online in each room: one Member per user
// per room however many connections (tabs) the user has, exactly one join
// when the user's first connection arrives and one leave when the last goes,
// cluster-wide. It owns the Store (in memory for one instance, Redis for a
// cluster), the Keeper that heartbeats this instance's connections, and the
// sweeper that expires connections whose instance stopped heartbeating.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Member is one user in a room, as clients see it.
type Member struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Role is RoleWrite or RoleRead: write when any connection the user
	// opened since joining writes (a read member that opens a write
	// connection becomes write, and stays so until it leaves).
	Role  string          `json:"role"`
	Meta  json.RawMessage `json:"meta"`
	Conns int             `json:"conns"`
	Since int64           `json:"since"` // unix ms of the user's join
}

// Session is one connection of a user in a room.
type Session struct {
	Room string
	// Conn is the connection's id: not empty, no newline (ErrBadConn).
	Conn string
	User string
	Name string
	// Role is the connection's role, RoleWrite or RoleRead; empty means
	// RoleWrite.
	Role string
	// Meta is the member's initial meta, used when this session makes the
	// user join; an existing member keeps its meta.
	Meta json.RawMessage
	// Indexed: the caller holds another live session in the room, so the
	// room is in the sweep index already (its timers keep it there) and
	// the store may skip making sure of it. The Keeper sets it.
	Indexed bool
}

// Roles of a member and of a session.
const (
	RoleWrite = "write"
	RoleRead  = "read"
)

// sessionRole is s's role, RoleWrite unless it is RoleRead.
func sessionRole(s Session) string {
	if s.Role == RoleRead {
		return RoleRead
	}
	return RoleWrite
}

// RoomCount is a room with the number of its members.
type RoomCount struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// Leave reasons.
const (
	ReasonClosed  = "closed"
	ReasonTimeout = "timeout"
)

// MaxMetaBytes bounds a member's meta (JSON object).
const MaxMetaBytes = 1024

// ErrTooLarge is returned for meta over MaxMetaBytes.
var ErrTooLarge = errors.New("presence: meta over 1 KiB")

// ErrNotObject is returned for meta that is not a JSON object.
var ErrNotObject = errors.New("presence: meta must be a JSON object")

// ErrUnknownConn is returned by SetMeta for a connection the store does not hold.
var ErrUnknownConn = errors.New("presence: unknown connection")

// ErrBadConn is returned by Join for a connection id that is empty or has a
// newline.
var ErrBadConn = errors.New("presence: connection id empty or with a newline")

func checkConn(conn string) error {
	if conn == "" || strings.IndexByte(conn, '\n') >= 0 {
		return ErrBadConn
	}
	return nil
}

// Store holds presence. Every change that clients must see is published to
// the room as a join, leave or update frame, in the order the changes
// happened.
type Store interface {
	// Join adds a connection. The user's member is created (and `join`
	// published) when this is the user's first connection in the room,
	// counted across all instances; otherwise `update` is published with
	// the new connection count. It returns the member.
	Join(ctx context.Context, s Session) (Member, error)
	// Leave removes a connection of user whose socket ended; a connection
	// the store does not hold for that user is left alone. When it was the
	// user's last, `leave` with reason closed follows — after LeaveGrace,
	// unless the user comes back within it.
	Leave(ctx context.Context, room, conn, user string) error
	// SetMeta replaces the meta of user, whose connection conn is, and
	// publishes `update`; ErrUnknownConn when the store does not hold conn
	// for user.
	SetMeta(ctx context.Context, room, conn, user string, meta json.RawMessage) (Member, error)
	// Members lists the room's members, oldest first.
	Members(ctx context.Context, room string) ([]Member, error)
	// Rooms lists rooms with at least one member.
	Rooms(ctx context.Context) ([]RoomCount, error)
	// Heartbeat keeps this instance's sessions alive for another TTL, in
	// one round trip, and re-adds any the store lost.
	Heartbeat(ctx context.Context, sessions []Session) error
	// Sweep removes connections whose heartbeat lapsed (leave reason
	// timeout) and ends leave graces that ran out. It is safe to run on
	// every instance at once; each leave is published exactly once.
	Sweep(ctx context.Context) error
}

// Publisher carries presence frames to a room; *rooms.Hub is one.
type Publisher interface {
	Publish(ctx context.Context, room, exclude string, frame []byte) error
}

// Options configure a Store. Zero values: TTL 30s, LeaveGrace none.
type Options struct {
	// TTL is how long a connection stays without a heartbeat.
	TTL time.Duration
	// LeaveGrace delays the leave after a user's last connection closes;
	// a user back within it causes neither leave nor join.
	LeaveGrace time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Events, when set, hears the MemoryStore's joins and leaves as it
	// decides them, under its lock (webhooks); nil means none. The
	// RedisStore queues its webhooks in its scripts (RedisOptions.Webhooks).
	Events Events
}

// Events hears joins and leaves in the order a MemoryStore decides them.
// member is the Member as JSON (as in a join or leave frame). Its methods
// must not block.
type Events interface {
	// MemberJoined: a user session began; first when the room was empty.
	MemberJoined(room string, member []byte, first bool)
	// MemberLeft: a user session ended for reason; last when the room is
	// empty now.
	MemberLeft(room string, member []byte, reason string, last bool)
}

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ValidateMeta checks a meta document: a JSON object of at most
// MaxMetaBytes. Empty means {}.
func ValidateMeta(meta json.RawMessage) (json.RawMessage, error) {
	if len(meta) == 0 || string(meta) == "null" {
		return json.RawMessage("{}"), nil
	}
	if len(meta) > MaxMetaBytes {
		return nil, ErrTooLarge
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(meta, &obj); err != nil || obj == nil {
		return nil, ErrNotObject
	}
	return meta, nil
}
