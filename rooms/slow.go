package rooms

import (
	"sync/atomic"
	"time"
)

// slowGrace is how long a closing connection's writer, stuck on a peer
// that does not read, has to finish (and send the close frame) before the
// socket is ended. Atomic so tests can shorten it while other
// connections' timers read it.
var slowGrace atomic.Int64

func init() { slowGrace.Store(int64(5 * time.Second)) }

func afterSlowGrace() <-chan time.Time { return time.After(time.Duration(slowGrace.Load())) }
