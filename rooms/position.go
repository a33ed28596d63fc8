package rooms

// Position is a place in a room's stream or in its document: the epoch
// names one unbroken history (a room's stored messages, or its document's
// updates), seq counts what was stored in it (1, 2, 3, …).
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Step is what a delivery at some position means to the position up to
// which an instance delivered: the one decision both the message stream
// (Hub.Deliver) and the documents (rooms/ydoc) make on every stored
// payload, in the room's order.
type Step int

const (
	// StepFirst: nothing was delivered yet; the payload's position is the
	// baseline.
	StepFirst Step = iota
	// StepNewEpoch: the payload is of another epoch (the history was
	// lost or deleted); what was delivered of the old one is over.
	StepNewEpoch
	// StepDelivered: the payload is at or before the position (an epoch's
	// announcement, seq 0, or delivered already by a gap fill).
	StepDelivered
	// StepNext: the payload is the next one.
	StepNext
	// StepGap: payloads between the position and this one were missed.
	StepGap
)

// StepTo returns what a payload at next means to p, the position delivered.
func (p Position) StepTo(next Position) Step {
	switch {
	case p.Epoch == "":
		return StepFirst
	case next.Epoch != p.Epoch:
		return StepNewEpoch
	case next.Seq <= p.Seq:
		return StepDelivered
	case next.Seq > p.Seq+1:
		return StepGap
	default:
		return StepNext
	}
}
