package boxoffice

import (
	"context"
	"time"
)

// CountChange is a change of one tier's counts: deltas to held and sold. A positive Held is a
// reservation and fails with ESOLDOUT (carrying Available) when the tier has too few tickets left.
type CountChange struct {
	ShowID string
	TierID string
	Held   int
	Sold   int
}

// Inventory is the race-condition strategy: it decides how concurrent changes of one tier's counts
// are serialised (a conditional write, a row lock, a version check, one writer per show, a
// distributed lock, an event log). Every strategy passes the same conformance suite.
type Inventory interface {
	// Apply changes a tier's counts and runs write in the same transaction, so the tickets and the
	// rows that account for them (hold, order, events, idempotency record) commit together or not
	// at all. An error from write aborts both and is returned as is. write may run more than once,
	// as Store.Update's fn may; only the last run counts.
	Apply(ctx context.Context, c CountChange, write func(tx Tx) error) error
	// Reconfigure runs write (a change of the show's tiers or capacities) in a transaction that no
	// count change of the show interleaves with, and lets strategies that cache counts reload them.
	Reconfigure(ctx context.Context, showID string, write func(tx Tx) error) error
	// Name is the strategy's name as --inventory takes it.
	Name() string
	// Close stops the strategy's goroutines, if any.
	Close() error
}

// InventoryEvent is one change in a show's append-only inventory stream (the eventlog strategy):
// deltas to one tier's counts and the tier's counts after them, so the stream's last event of a
// tier is its state without a fold over the whole stream. Version numbers a show's events from 1
// without gaps.
type InventoryEvent struct {
	ShowID    string
	Version   int64
	TierID    string
	Held      int // delta
	Sold      int // delta
	HeldAfter int
	SoldAfter int
	Capacity  int // the tier's capacity when the event was appended
	CreatedAt time.Time
}
