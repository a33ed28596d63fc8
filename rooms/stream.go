package rooms

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/roomcast/roomcast/rooms/store"
)

// Message is a message frame to publish.
type Message struct {
	ID      string // the frame's id, returned for the first of duplicates
	Exclude string // connection that must not receive it, or empty
	// Frame is the encoded message frame, a JSON object. For a stored
	// message the broker adds its "seq" before the closing brace.
	Frame  []byte
	Stored bool
	// Key, when set, makes the publish idempotent within KeyWindow.
	Key string
}

// Published is the outcome of PublishMessage.
type Published struct {
	ID        string
	Position  Position // Seq 0 for a message that is not stored
	Duplicate bool
}

// History is a run of stored messages after a seq.
type History struct {
	// Position is the room's position when it was read.
	Position Position
	// Messages are the stored message frames after the seq asked for, in
	// order, each with its seq.
	Messages []StoredMessage
	// Complete is false when the history no longer holds the first of
	// the messages asked for (they were trimmed or expired), or the seq
	// asked for is ahead of the room.
	Complete bool
}

// StoredMessage is a stored message frame and its seq.
type StoredMessage struct {
	Seq   uint64
	Frame []byte
	// Exclude is the connection the message was not sent to (a sender
	// without echo), so a gap filled from the history skips it too.
	Exclude string
}

// State is a room's state as a client sent it: the effect of every stored
// message up to Seq.
type State struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// KeyWindow is how long a publish key is remembered.
const KeyWindow = 5 * time.Minute

// StreamOptions configure a broker's stream. Zero values: no storing.
type StreamOptions struct {
	// HistorySize is how many stored messages a room keeps; 0 turns
	// storing off (messages are published without a seq).
	HistorySize int
	// HistoryTTL is how long a room's history and state live after its
	// last stored message. Zero value means 24h.
	HistoryTTL time.Duration
	// DocTTL is how long a room's Yjs document lives after its last
	// update. Zero value means 720h.
	DocTTL time.Duration
	// MaxDocBytes bounds a Yjs document's stored size: its base plus its
	// update log, as stored. An update that would pass it is refused.
	// Zero value means 64 MiB.
	MaxDocBytes int64
	// Store keeps rooms for good. The memory engine writes through it: a
	// stored message, a state or a document update is in the store before
	// it is delivered or acknowledged, a room not in memory is loaded from
	// it, and HistoryTTL and DocTTL only say how long an idle room stays
	// in memory. Zero value (nil) means nothing outlives the process.
	Store store.Store
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = 24 * time.Hour
	}
	if o.DocTTL <= 0 {
		o.DocTTL = 720 * time.Hour
	}
	if o.MaxDocBytes <= 0 {
		o.MaxDocBytes = 64 << 20
	}
	return o
}

// sweepInterval is how often the memory engine looks for rooms past their
// TTLs: half the shorter TTL, so a room leaves memory at most 1.5 TTLs
// after it went idle, but not more than once a second (a sweep visits
// every room in memory) nor less than once a minute (publish keys expire
// on the same sweep).
func (o StreamOptions) sweepInterval() time.Duration {
	return min(max(min(o.HistoryTTL, o.DocTTL)/2, time.Second), time.Minute)
}

// stateThreshold is how many stored messages may follow the latest state
// before a state request goes out.
func (o StreamOptions) stateThreshold() uint64 { return uint64(max(1, o.HistorySize/2)) }

// stateRequestRetry is how long a state request waits for an answer before
// another connection is asked.
const stateRequestRetry = 10 * time.Second

// withSeq returns a stored message frame: frame with "seq":seq added before
// its closing brace.
func withSeq(frame []byte, seq uint64) []byte {
	if len(frame) == 0 || frame[len(frame)-1] != '}' {
		return frame
	}
	b := make([]byte, 0, len(frame)+24)
	b = append(b, frame[:len(frame)-1]...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

// NewEpoch returns a fresh epoch name: 16 random hex digits.
func NewEpoch() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
