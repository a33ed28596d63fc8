package rooms

import "time"

// slowGrace is how long a connection dropped for a full queue has to take
// in what its writer is stuck on (and then the close frame) before its
// socket is ended. A variable so tests can shorten it.
var slowGrace = 5 * time.Second

func afterSlowGrace() <-chan time.Time { return time.After(slowGrace) }
