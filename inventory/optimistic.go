package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"boxoffice"
)

// Defaults of the optimistic strategy's retries.
const (
	optimisticMaxAttempts = 10
	optimisticBaseDelay   = time.Millisecond
	optimisticMaxDelay    = 50 * time.Millisecond
	// optimisticRetryAfter is what a shed request is told to wait: long enough for the stampede
	// that made it lose ten times in a row to move on.
	optimisticRetryAfter = time.Second
)

// errVersionConflict is the rollback of an attempt whose compare-and-set lost to another writer.
var errVersionConflict = errors.New("tier changed since it was read")

// Optimistic is the version-column strategy: a change reads the tier's counts without locking,
// does its work, and writes the new counts only if the tier's version is still the one it read
// (a compare-and-set). When another writer came first, the whole transaction rolls back and runs
// again after a jittered, exponentially growing pause, up to a bounded number of attempts.
//
// Use it where contention on one tier is rare — many shows, each with a modest crowd — since no
// transaction ever waits for a lock while it works: the row is only locked from the
// compare-and-set to the commit.
//
// It guarantees held+sold <= capacity because a write lands only on the counts it was decided on.
// When one tier is hot, most attempts lose and are thrown away; after the last attempt the
// request is shed with EOVERLOADED and a Retry-After (a clear 503), never sold twice. That is its
// known failure mode: under a stampede on one tier throughput collapses into retries and sheds, so
// a hot on-sale wants the actor or atomic strategy instead. Changes that give tickets back can be
// shed too (their callers — the order driver, the expiry loop, a buyer's release — try again), so
// tickets may stay held a little longer under load. On SQLite, whose single writer is already
// exclusive, the compare-and-set never loses.
type Optimistic struct {
	store boxoffice.Store
	log   *slog.Logger

	// Retry policy; unexported so tests can tighten it.
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	retryAfter  time.Duration
}

// NewOptimistic returns the version-column strategy over store: at most 10 attempts per change,
// pauses of up to 1ms, 2ms, 4ms … 50ms between them.
func NewOptimistic(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Optimistic{
		store: store, log: log,
		maxAttempts: optimisticMaxAttempts, baseDelay: optimisticBaseDelay,
		maxDelay: optimisticMaxDelay, retryAfter: optimisticRetryAfter,
	}, nil
}

// Name is "optimistic".
func (o *Optimistic) Name() string { return "optimistic" }

// Apply runs write and a compare-and-set of the tier's counts in one transaction, and the whole
// transaction again while the compare-and-set loses, up to the attempt limit; then it sheds the
// change with EOVERLOADED. A reservation that does not fit is refused before write runs; every
// other change runs write first and changes no count when write fails, because write is what
// checks that the change is still due.
func (o *Optimistic) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if c.Held == 0 && c.Sold == 0 {
		return o.store.Update(ctx, write)
	}
	backoff := o.baseDelay
	for attempt := 1; ; attempt++ {
		err := o.store.Update(ctx, func(tx boxoffice.Tx) error { return o.attempt(ctx, tx, c, write) })
		if err != errVersionConflict {
			return err
		}
		if attempt >= o.maxAttempts {
			o.log.Warn("optimistic: tier too contended; shedding the change",
				"show", c.ShowID, "tier", c.TierID, "attempts", attempt)
			e := boxoffice.Errorf(boxoffice.EOVERLOADED, "tier %s is too busy right now (%d attempts lost to other buyers); retry shortly", c.TierID, attempt)
			e.RetryAfter = o.retryAfter
			return e
		}
		o.log.Debug("optimistic: version conflict; retrying", "show", c.ShowID, "tier", c.TierID, "attempt", attempt)
		// Full jitter: losers of one round spread out instead of colliding again in step.
		pause := time.NewTimer(time.Duration(rand.Int64N(int64(backoff) + 1)))
		select {
		case <-ctx.Done():
			pause.Stop()
			return ctx.Err()
		case <-pause.C:
		}
		backoff = min(2*backoff, o.maxDelay)
	}
}

// attempt is one try of Apply. The counts it decides on are read right before the
// compare-and-set, after write, so the window another writer can slip into is as short as it can
// be; a reservation also looks first, so a sold-out tier fails before any work.
func (o *Optimistic) attempt(ctx context.Context, tx boxoffice.Tx, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if c.Held > 0 {
		cur, err := tx.TierCounts(ctx, c.ShowID, c.TierID, false)
		if err != nil {
			return err
		}
		if !fits(cur, c) {
			return soldOut(cur, c.Held)
		}
	}
	if err := write(tx); err != nil {
		return err
	}
	cur, err := tx.TierCounts(ctx, c.ShowID, c.TierID, false)
	if err != nil {
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
		return errVersionConflict
	}
	return nil
}

// Reconfigure locks the show's tiers (LockTiers' order), runs write, and moves the version of
// every tier the show then has on (an empty AddTierCounts), in one transaction. The locks keep a
// compare-and-set from landing between write's check of the counts and its new capacities (which
// would fail write against the store's capacity check); the new versions make a change that read
// the counts before the new capacities lose its compare-and-set and decide again on them.
func (o *Optimistic) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return o.store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := lockShow(ctx, tx, showID); err != nil {
			return err
		}
		if err := write(tx); err != nil {
			return err
		}
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
		slices.Sort(ids) // LockTiers' order, since the writes lock new tiers' rows
		for _, id := range ids {
			_, ok, err := tx.AddTierCounts(ctx, showID, id, 0, 0)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("tier %s/%s does not fit its new capacity", showID, id)
			}
		}
		return nil
	})
}

// Close does nothing: the strategy has no goroutines.
func (o *Optimistic) Close() error { return nil }
