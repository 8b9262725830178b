package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"boxoffice"
)

func scanCounts(sc scanner) (boxoffice.TierCounts, error) {
	var c boxoffice.TierCounts
	err := sc.Scan(&c.ShowID, &c.TierID, &c.Capacity, &c.Held, &c.Sold, &c.Version, &c.Fence)
	return c, err
}

// TierCounts implements boxoffice.Tx. forUpdate needs nothing here: inside Update the
// transaction holds SQLite's write lock, so nothing else can change the row until it ends.
func (t *tx) TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (boxoffice.TierCounts, error) {
	c, err := scanCounts(t.queryRow(ctx, sTierCounts, showID, tierID))
	if err != nil {
		return boxoffice.TierCounts{}, notFound(err, "tier %q of show %q", tierID, showID)
	}
	return c, nil
}

// AddTierCounts implements boxoffice.Tx.
func (t *tx) AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (boxoffice.TierCounts, bool, error) {
	c, err := scanCounts(t.queryRow(ctx, sAddTierCounts, dHeld, dSold, showID, tierID))
	if err == nil {
		return c, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return boxoffice.TierCounts{}, false, fmt.Errorf("change counts of tier %q of show %q: %w", tierID, showID, err)
	}
	// No row changed: either there is no such tier or the change does not fit.
	c, err = t.TierCounts(ctx, showID, tierID, true)
	if err != nil {
		return boxoffice.TierCounts{}, false, err
	}
	return c, false, nil
}

// ForEachTier implements boxoffice.Tx.
func (t *tx) ForEachTier(ctx context.Context, fn func(boxoffice.TierCounts) error) error {
	rows, err := t.query(ctx, sForEachTier)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		c, err := scanCounts(rows)
		if err != nil {
			return err
		}
		fnErr = fn(c)
		return fnErr
	})
	return passFnErr(err, fnErr, "read tiers")
}
