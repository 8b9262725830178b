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

// Apply changes the counts with one conditional write, then runs write, in one transaction.
func (a *Atomic) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	return a.store.Update(ctx, func(tx boxoffice.Tx) error {
		if c.Held != 0 || c.Sold != 0 {
			counts, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
			if err != nil {
				return err
			}
			if !ok {
				if c.Held > 0 {
					return soldOut(counts, c.Held)
				}
				// Giving tickets back can only fail when the counts disagree with the holds and
				// orders; refuse rather than make it worse.
				return fmt.Errorf("tier %s/%s: change %+v does not fit counts held=%d sold=%d", c.ShowID, c.TierID, c, counts.Held, counts.Sold)
			}
		}
		return write(tx)
	})
}

// Reconfigure runs write in a plain transaction: the conditional writes of Apply re-check the
// capacity themselves, so nothing needs quiescing.
func (a *Atomic) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return a.store.Update(ctx, write)
}

// Close does nothing: the strategy has no goroutines.
func (a *Atomic) Close() error { return nil }
