package boxoffice

import (
	"context"
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

// EventTx is what a transaction does with the outbox, the relay's checkpoint and the consumers'
// inboxes.
type EventTx interface {
	// AppendEvent writes e to the outbox, giving it the next Seq of its subject and the next
	// Position.
	AppendEvent(ctx context.Context, e *Event) error
	// ListEvents returns up to limit events with Position after after, in commit order.
	ListEvents(ctx context.Context, after int64, limit int) ([]*Event, error)
	// EventsAt returns the events at those positions that exist, by position: how the relay
	// looks into the gaps a feed read left, one index lookup each, rather than reading again
	// every event since the oldest gap.
	EventsAt(ctx context.Context, positions []int64) ([]*Event, error)
	// EventByID returns the event with that id from the outbox, or ENOTFOUND. Consumers check a
	// message from the bus against it, so that a message nobody committed causes nothing.
	EventByID(ctx context.Context, id string) (*Event, error)
	// EventsByID returns the events with those ids that exist, in no order: how a consumer checks
	// a batch of messages against the outbox in one read.
	EventsByID(ctx context.Context, ids []string) ([]*Event, error)
	// EventsOfSubject returns up to limit events of subject in Seq order: an order's history,
	// and how a consumer finds the earlier event of a subject it must apply first.
	EventsOfSubject(ctx context.Context, subject string, limit int) ([]*Event, error)
	// RelayCheckpoint returns the position up to which the relay called name has published the
	// outbox, 0 when it has not started.
	RelayCheckpoint(ctx context.Context, name string) (int64, error)
	// SetRelayCheckpoint records that the relay called name has published the outbox up to
	// position. It is kept in the store, beside the outbox, so that it survives what the outbox
	// survives.
	SetRelayCheckpoint(ctx context.Context, name string, position int64) error
	// InsertInboxEvent records that consumer applied the event eventID; one already recorded is an
	// ECONFLICT. A consumer calls it in the transaction of the effect's record, so the effect and
	// "done" commit together and a redelivered event is recognised.
	InsertInboxEvent(ctx context.Context, consumer, eventID string, at time.Time) error
	// InsertInboxEvents records that consumer applied each of eventIDs, in one statement; one
	// already recorded is left as it is, not an error. A consumer that applies a batch of events
	// records them with it: a row at a time had cost a statement (on PostgreSQL a round trip)
	// per event.
	InsertInboxEvents(ctx context.Context, consumer string, eventIDs []string, at time.Time) error
	// InboxHas says whether consumer has applied the event eventID.
	InboxHas(ctx context.Context, consumer, eventID string) (bool, error)
	// InboxApplied returns those of eventIDs that consumer has applied, in no order: InboxHas for
	// a batch of messages in one read.
	InboxApplied(ctx context.Context, consumer string, eventIDs []string) ([]string, error)
	// SweepInbox deletes up to limit inbox rows applied before before and returns how many: the
	// inbox must outlive any redelivery of an event, not the events themselves.
	SweepInbox(ctx context.Context, before time.Time, limit int) (int, error)
}
