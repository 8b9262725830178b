package postgres

import (
	"context"
	"errors"
	"fmt"

	"boxoffice"

	"github.com/jackc/pgx/v5"
)

func scanCounts(sc scanner) (boxoffice.TierCounts, error) {
	var c boxoffice.TierCounts
	err := sc.Scan(&c.ShowID, &c.TierID, &c.Capacity, &c.Held, &c.Sold, &c.Version, &c.Fence)
	return c, err
}

// TierCounts implements boxoffice.Tx. In an Update, forUpdate locks the row (FOR UPDATE) until
// the transaction ends; a View cannot lock and need not, its snapshot does not move.
func (t *tx) TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (boxoffice.TierCounts, error) {
	q := sTierCounts
	if forUpdate && t.write {
		q = sTierCountsForUpdate
	}
	c, err := scanCounts(t.queryRow(ctx, q, showID, tierID))
	if err != nil {
		return boxoffice.TierCounts{}, notFound(err, "tier %q of show %q", tierID, showID)
	}
	return c, nil
}

// AddTierCounts implements boxoffice.Tx.
//
// A refusal must be explained by the counts it returns: a sold-out answer whose counts show enough
// tickets would be no state the tier was ever in. Under READ COMMITTED the refused UPDATE and the
// SELECT that reads the counts after it see different moments, and a change committed in between
// (a release) may make the change fit. So the counts are read, without a lock, and a change that
// fits them is tried again; a refusal is returned only with counts that do not fit, as the tier
// was at the moment they were read. After a few rounds of that (a tier changing under every
// try), the row is locked so that the next round settles it. The usual refusal, a sold-out tier,
// thus takes no lock: locking would make every sold-out answer hold the hottest row of a sale
// until its transaction ends.
func (t *tx) AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (boxoffice.TierCounts, bool, error) {
	for try := 1; ; try++ {
		c, err := scanCounts(t.queryRow(ctx, sAddTierCounts, dHeld, dSold, showID, tierID))
		if err == nil {
			// Sent at once, not deferred: a failure of the caller's work after it must void a
			// merged or savepointed run rather than keep the count change (see wroteNow).
			t.wroteNow(1)
			return c, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return boxoffice.TierCounts{}, false, fmt.Errorf("change counts of tier %q of show %q: %w", tierID, showID, err)
		}
		// No row changed: there is no such tier, or the change did not fit.
		c, err = t.TierCounts(ctx, showID, tierID, try >= addTierCountsTries)
		if err != nil {
			return boxoffice.TierCounts{}, false, err
		}
		if !fits(c, dHeld, dSold) {
			return c, false, nil
		}
	}
}

// ForEachTier implements boxoffice.Tx.
func (t *tx) ForEachTier(ctx context.Context, fn func(boxoffice.TierCounts) error) error {
	var lastShow, lastTier string
	for {
		var page []boxoffice.TierCounts
		n, err := t.eachRow(ctx, func(rows pgx.Rows) error {
			c, err := scanCounts(rows)
			page = append(page, c)
			return err
		}, sForEachTier, lastShow, lastTier, forEachPage)
		if err != nil {
			return fmt.Errorf("read tiers: %w", err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if n < forEachPage {
			return nil
		}
		lastShow, lastTier = page[n-1].ShowID, page[n-1].TierID
	}
}
