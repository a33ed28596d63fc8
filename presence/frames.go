package presence

import (
	"encoding/json"
)

// Frame builds the join, leave or update frame for m. reason is set for
// leave only. The Redis Lua scripts build byte-identical frames.
func Frame(typ, room string, m Member, reason string) []byte {
	if len(m.Meta) == 0 {
		m.Meta = json.RawMessage("{}")
	}
	if m.Role == "" {
		m.Role = RoleWrite
	}
	f := struct {
		Type   string `json:"type"`
		Room   string `json:"room"`
		Member Member `json:"member"`
		Reason string `json:"reason,omitempty"`
	}{typ, room, m, reason}
	b, err := json.Marshal(f)
	if err != nil {
		// Meta is validated JSON and the rest are strings and ints.
		panic("presence: encode frame: " + err.Error())
	}
	return b
}
