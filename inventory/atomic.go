package inventory

import (
	"context"
	"fmt"

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
func (a *Atomic) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	return a.store.Update(ctx, func(tx boxoffice.Tx) error {
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
	counts, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case c.Held > 0:
		return soldOut(counts, c.Held)
	default:
		return fmt.Errorf("tier %s/%s: change %+v does not fit counts held=%d sold=%d", c.ShowID, c.TierID, c, counts.Held, counts.Sold)
	}
}

// Reconfigure runs write in a plain transaction: the conditional writes of Apply re-check the
// capacity themselves, so nothing needs quiescing.
func (a *Atomic) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return a.store.Update(ctx, write)
}

// Close does nothing: the strategy has no goroutines.
func (a *Atomic) Close() error { return nil }
