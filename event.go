package boxoffice

import (
	"encoding/json"
	"time"
)

// Event types.
const (
	EventHoldCreated        = "hold.created"
	EventHoldReleased       = "hold.released"
	EventHoldExpired        = "hold.expired"
	EventOrderConfirmed     = "order.confirmed"
	EventOrderPaymentFailed = "order.payment_failed"
	EventOrderCancelled     = "order.cancelled"
)

// Event is a domain event, written to the outbox in the same transaction as the change it tells of.
// Subject is the hold or order it is about; Seq numbers the events of one subject from 1, so that
// consumers can apply them in order; Position is its place in commit order across all subjects.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
	Subject   string          `json:"-"`
	Seq       int             `json:"-"`
	Position  int64           `json:"-"`
}
