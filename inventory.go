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

// CountsKeeper is an Inventory that holds the committed counts of the shows it writes in memory,
// as the one writer of each does (the actor).
type CountsKeeper interface {
	// Committed returns the tier's counts as of its writer's last commit; ok is false when the
	// strategy holds none (no writer for the show now, or its counts are being read again).
	// They are the store's counts only while no other process writes the store.
	Committed(showID, tierID string) (c TierCounts, ok bool)
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

// InventoryTx is what a transaction does with a tier's counts, for the race-condition strategies:
// the conditional write, the compare-and-set, fencing, savepoints for batching, and the inventory
// event stream.
type InventoryTx interface {
	// TierCounts returns a tier's counts; forUpdate locks the row until the transaction ends where
	// the store can lock rows (PostgreSQL's FOR UPDATE; SQLite's writer is already exclusive).
	TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (TierCounts, error)
	// AddTierCounts adds dHeld and dSold to a tier's counts if the result keeps
	// 0 <= held, 0 <= sold and held+sold <= capacity, in one conditional write, and bumps the
	// version. ok is false when it would not fit; c is the counts after the write, or the current
	// ones when it did not fit.
	AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (c TierCounts, ok bool, err error)
	// SetTierCounts writes a tier's held and sold if its version is still version, and bumps the
	// version: the compare-and-set of optimistic locking. ok is false when another writer changed
	// the tier since it was read. Counts outside 0 <= held, 0 <= sold, held+sold <= capacity are
	// an error, never written.
	SetTierCounts(ctx context.Context, showID, tierID string, version int64, held, sold int) (ok bool, err error)
	// Fence raises a tier's fencing token to token unless a higher one was seen; ok is false when a
	// writer with a newer token came first, so a lock holder whose lock ran out cannot write after
	// its successor.
	Fence(ctx context.Context, showID, tierID string, token int64) (ok bool, err error)
	// ForEachTier calls fn for every tier's counts.
	ForEachTier(ctx context.Context, fn func(TierCounts) error) error
	// Savepoint starts a nested unit of the transaction; RollbackTo undoes what ran since and
	// ReleaseSavepoint keeps it. Strategies that batch many requests into one transaction use it
	// to undo one request without the others. name is [a-z0-9_]+; anything else is an error.
	Savepoint(ctx context.Context, name string) error
	// RollbackTo undoes everything since Savepoint(name); the savepoint stays and must be released.
	RollbackTo(ctx context.Context, name string) error
	// ReleaseSavepoint ends the savepoint, keeping its work in the transaction.
	ReleaseSavepoint(ctx context.Context, name string) error
	// AppendInventoryEvent appends e to its show's stream at e.Version, which must be one past the
	// stream's last; an event already at that version is an ECONFLICT: another writer appended
	// first (the expected-version append of event sourcing).
	AppendInventoryEvent(ctx context.Context, e *InventoryEvent) error
	// InventoryEvents returns up to limit events of a show's stream after version after, in order.
	InventoryEvents(ctx context.Context, showID string, after int64, limit int) ([]*InventoryEvent, error)
	// InventoryHead returns the last version of a show's stream, 0 when it has none.
	InventoryHead(ctx context.Context, showID string) (int64, error)
}
