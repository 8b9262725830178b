package inventory

import (
	"context"

	"boxoffice"
)

// Atomic is the conditional-write strategy: one UPDATE … WHERE held+sold+n <= capacity does the
// check and the change at once, so no reader can act on a count that is stale by the time it
// writes. It needs nothing but the store's own atomicity.
type Atomic struct{ store boxoffice.Store }

// NewAtomic returns the conditional-write strategy over store.
func NewAtomic(store boxoffice.Store) *Atomic { return &Atomic{store: store} }

// Name is "atomic".
func (a *Atomic) Name() string { return "atomic" }

// Apply changes the counts with one conditional write and runs write, in one transaction. A
// reservation takes its tickets first, so a sold-out tier fails before any other work; every other
// change runs write first, because write is what checks that the change is still due (the hold
// still active, the order still pending) and a change that is no longer due must not touch counts.
//
// The transaction is speculative (boxoffice.UpdateSpeculative): on PostgreSQL write's blind
// writes go with COMMIT in one round trip, so the tier's row lock, taken by the first statement,
// is held for two round trips however much write does.
func (a *Atomic) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	return boxoffice.UpdateSpeculative(ctx, a.store, func(tx boxoffice.Tx) error {
		if c.Held > 0 {
			if err := addCounts(ctx, tx, c); err != nil {
				return err
			}
			return write(tx)
		}
		if err := write(tx); err != nil {
			return err
		}
		return addCounts(ctx, tx, c)
	})
}

// addCounts applies c with the store's conditional write; a reservation that does not fit is
// ESOLDOUT, and any other change that does not fit means the counts disagree with the holds and
// orders, which is refused rather than made worse.
func addCounts(ctx context.Context, tx boxoffice.Tx, c boxoffice.CountChange) error {
	if c.Held == 0 && c.Sold == 0 {
		return nil
	}
	for range 3 {
		counts, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case fits(counts, c):
			// Where writers run concurrently (PostgreSQL) the counts read after the refused
			// write may already be newer: tickets came back in between. Answering sold_out with
			// counts that would have fitted is an answer no single instant explains, so try again.
			continue
		default:
			return misfit(counts, c)
		}
	}
	return boxoffice.Errorf(boxoffice.EOVERLOADED, "tier %s/%s changes too fast to take tickets from; retry", c.ShowID, c.TierID)
}

// Reconfigure locks the show's tiers (in LockTiers' order) and runs write. The conditional writes
// of Apply re-check the capacity themselves, but write checks the counts before it changes the
// capacities, and where writers run concurrently (PostgreSQL) a hold between that check and the
// new capacity would meet the store's CHECK as an error instead of a clear capacity_conflict.
func (a *Atomic) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return a.store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := lockShow(ctx, tx, showID); err != nil {
			return err
		}
		return write(tx)
	})
}

// Close does nothing: the strategy has no goroutines.
func (a *Atomic) Close() error { return nil }
