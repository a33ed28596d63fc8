package rooms

import "testing"

// StepTo is the one decision of the message stream and the documents on
// every stored payload.
func TestPositionStepTo(t *testing.T) {
	at := Position{Epoch: "e1", Seq: 5}
	for _, c := range []struct {
		from, next Position
		want       Step
	}{
		{Position{}, at, StepFirst},
		{Position{}, Position{Epoch: "e1"}, StepFirst},
		{at, Position{Epoch: "e2", Seq: 1}, StepNewEpoch},
		{at, Position{Epoch: "e2"}, StepNewEpoch}, // a reset's announcement
		{at, Position{Epoch: "e1"}, StepDelivered},
		{at, Position{Epoch: "e1", Seq: 4}, StepDelivered},
		{at, at, StepDelivered},
		{at, Position{Epoch: "e1", Seq: 6}, StepNext},
		{at, Position{Epoch: "e1", Seq: 7}, StepGap},
		{Position{Epoch: "e1"}, Position{Epoch: "e1", Seq: 1}, StepNext},
	} {
		if got := c.from.StepTo(c.next); got != c.want {
			t.Errorf("%+v.StepTo(%+v) = %d, want %d", c.from, c.next, got, c.want)
		}
	}
}
