package inventory

import (
	"context"
	"fmt"
	"slices"

	"boxoffice"
)

// Pessimistic is the row-lock strategy: a change locks its tier's row (SELECT … FOR UPDATE on
// PostgreSQL; on SQLite the single writer's immediate transaction already is that lock), reads the
// counts, decides in Go and writes the new counts back before the lock is let go at commit.
//
// Use it when a change must read and decide on more than one conditional write can say — several
// tiers at once, or counts together with other rows — and contention is moderate: it is the
// easiest strategy to reason about, since nothing another writer does can slip in between the
// read and the write.
//
// It guarantees held+sold <= capacity because no two transactions hold one tier's lock at once,
// and it never deadlocks on tiers: every lock of more than one tier goes through LockTiers, which
// takes them in one order.
//
// Its known failure mode is the hot row: every buyer of one tier queues on one lock that is held
// for the whole transaction (the hold, the order, the events and, on PostgreSQL, each statement's
// round trip), so one hot tier sells at most one transaction at a time, and a slow transaction
// stalls everyone behind it while their connections wait.
type Pessimistic struct{ store boxoffice.Store }

// NewPessimistic returns the row-lock strategy over store.
func NewPessimistic(store boxoffice.Store, _ Options) (boxoffice.Inventory, error) {
	return &Pessimistic{store: store}, nil
}

// Name is "pessimistic".
func (p *Pessimistic) Name() string { return "pessimistic" }

// Apply locks the tier, checks in Go that the change fits, runs write and writes the new counts,
// in one transaction. A reservation that does not fit is refused before write runs; every other
// change runs write first and changes no count when write fails, because write is what checks that
// the change is still due.
func (p *Pessimistic) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if c.Held == 0 && c.Sold == 0 {
		return p.store.Update(ctx, write)
	}
	return p.store.Update(ctx, func(tx boxoffice.Tx) error {
		locked, err := LockTiers(ctx, tx, c.ShowID, c.TierID)
		if err != nil {
			return err
		}
		cur := locked[c.TierID]
		if c.Held > 0 && !fits(cur, c) {
			return soldOut(cur, c.Held)
		}
		if err := write(tx); err != nil {
			return err
		}
		if !fits(cur, c) {
			return misfit(cur, c)
		}
		ok, err := tx.SetTierCounts(ctx, c.ShowID, c.TierID, cur.Version, cur.Held+c.Held, cur.Sold+c.Sold)
		if err != nil {
			return err
		}
		if !ok {
			// Only a writer that ignores the lock can get here; refuse rather than guess.
			return fmt.Errorf("tier %s/%s changed while it was locked", c.ShowID, c.TierID)
		}
		return nil
	})
}

// Reconfigure locks every tier the show has, in LockTiers' order, and then runs write, so that no
// count change of the show runs between write's check of the counts and its new capacities.
func (p *Pessimistic) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return p.store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := lockShow(ctx, tx, showID); err != nil {
			return err
		}
		return write(tx)
	})
}

// Close does nothing: the strategy has no goroutines.
func (p *Pessimistic) Close() error { return nil }

// LockTiers locks tiers of one show for the rest of tx and returns their counts by tier id. It
// takes the locks in tier id order whatever order tierIDs come in (duplicates are locked once), so
// two transactions that lock the same tiers "from two sides" queue behind each other instead of
// each holding the lock the other waits for. Every transaction that locks more than one tier must
// lock them through LockTiers, in one call: locks taken in two calls are ordered per call only.
func LockTiers(ctx context.Context, tx boxoffice.Tx, showID string, tierIDs ...string) (map[string]boxoffice.TierCounts, error) {
	ids := slices.Clone(tierIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	locked := make(map[string]boxoffice.TierCounts, len(ids))
	for _, id := range ids {
		c, err := tx.TierCounts(ctx, showID, id, true)
		if err != nil {
			return nil, err
		}
		locked[id] = c
	}
	return locked, nil
}

// lockShow locks every tier of a show through LockTiers; a show that does not exist yet has none.
func lockShow(ctx context.Context, tx boxoffice.Tx, showID string) error {
	show, err := tx.GetShow(ctx, showID)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	ids := make([]string, len(show.Tiers))
	for i, t := range show.Tiers {
		ids[i] = t.ID
	}
	_, err = LockTiers(ctx, tx, showID, ids...)
	return err
}
