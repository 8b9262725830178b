package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"boxoffice"

	"github.com/jackc/pgx/v5"
)

// SetTierCounts implements boxoffice.Tx. Counts that do not fit are an error and are never
// written; they are caught before the CHECK constraint would be, since its violation would abort
// the transaction where SQLite's undoes only the statement.
func (t *tx) SetTierCounts(ctx context.Context, showID, tierID string, version int64, held, sold int) (bool, error) {
	if held < 0 || sold < 0 {
		return false, fmt.Errorf("set counts of tier %q of show %q: held %d and sold %d must not be negative", tierID, showID, held, sold)
	}
	if t.laterAs(deferredWrite{kind: kindTier, step: stepTier, key: showID + "\x00" + tierID, sql: dSetTierCounts,
		args: []any{held, sold, showID, tierID, version}}) {
		return true, nil
	}
	tag, err := t.exec(ctx, sSetTierCounts, held, sold, showID, tierID, version)
	if err != nil {
		return false, fmt.Errorf("set counts of tier %q of show %q: %w", tierID, showID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	// Nothing written: another writer moved the version on (the usual case), there is no such
	// tier, or the counts exceed the capacity, which is the caller's bug and must not pass for a
	// lost race.
	var capacity int
	var current int64
	err = t.queryRow(ctx, `SELECT capacity, version FROM tiers WHERE show_id = $1 AND id = $2`, showID, tierID).
		Scan(&capacity, &current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("set counts of tier %q of show %q: %w", tierID, showID, err)
	case current == version && held+sold > capacity:
		return false, fmt.Errorf("set counts of tier %q of show %q: held %d + sold %d exceed capacity %d",
			tierID, showID, held, sold, capacity)
	}
	return false, nil
}

// Fence implements boxoffice.Tx.
func (t *tx) Fence(ctx context.Context, showID, tierID string, token int64) (bool, error) {
	tag, err := t.exec(ctx, sFence, token, showID, tierID)
	if err != nil {
		return false, fmt.Errorf("fence tier %q of show %q: %w", tierID, showID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	// Nothing changed: a newer token, or no such tier.
	if _, err := t.TierCounts(ctx, showID, tierID, false); err != nil {
		return false, err
	}
	return false, nil
}

var savepointRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// savepoint runs one savepoint statement. Names cannot be bound as parameters, so they are checked
// against a strict pattern before they become part of the SQL. Without arguments pgx sends the
// statement as a simple query, so the many names a batching strategy uses do not each take a
// place in the prepared-statement cache.
func (t *tx) savepoint(ctx context.Context, verb, name string) error {
	if !savepointRE.MatchString(name) {
		return fmt.Errorf("savepoint name %q is not [a-z0-9_]+", name)
	}
	if _, err := t.exec(ctx, verb+" "+name); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return nil
}

// Savepoint implements boxoffice.Tx. While the transaction defers its writes a savepoint costs
// nothing: it is a mark in the queue of deferred writes (see RollbackTo). A savepoint per command
// would also make PostgreSQL assign a subtransaction to each, and past 64 of them in one
// transaction every other session's snapshots slow down.
func (t *tx) Savepoint(ctx context.Context, name string) error {
	if t.deferring && t.usable() == nil {
		if !savepointRE.MatchString(name) {
			return fmt.Errorf("savepoint name %q is not [a-z0-9_]+", name)
		}
		if t.marks == nil {
			t.marks = make(map[string]int)
		}
		t.marks[name] = t.queued
		return nil
	}
	return t.savepoint(ctx, "SAVEPOINT", name)
}

// RollbackTo implements boxoffice.Tx. On PostgreSQL it also ends the aborted state a failed
// statement since the savepoint left the transaction in, as SQLite never needed. While the
// transaction defers its writes, the writes queued since the mark are dropped — unless one of
// them was sent already, which only a real savepoint could undo: then the run is void (missed)
// and Update runs fn again without deferring.
func (t *tx) RollbackTo(ctx context.Context, name string) error {
	if mark, ok := t.marks[name]; ok && t.deferring {
		if t.sent > mark {
			t.missed = true
			return fmt.Errorf("rollback to %s: deferred writes since it were sent; the transaction runs again", name)
		}
		t.pending = t.pending[:len(t.pending)-(t.queued-mark)]
		t.queued = mark
		return nil
	}
	return t.savepoint(ctx, "ROLLBACK TO SAVEPOINT", name)
}

// ReleaseSavepoint implements boxoffice.Tx.
func (t *tx) ReleaseSavepoint(ctx context.Context, name string) error {
	if _, ok := t.marks[name]; ok && t.deferring {
		delete(t.marks, name)
		return nil
	}
	return t.savepoint(ctx, "RELEASE SAVEPOINT", name)
}

// AppendInventoryEvent implements boxoffice.Tx. An event at a version the stream already has is
// not inserted (ON CONFLICT DO NOTHING): ECONFLICT. If another transaction in flight appended that
// version, the insert waits for it and conflicts when it commits.
func (t *tx) AppendInventoryEvent(ctx context.Context, e *boxoffice.InventoryEvent) error {
	if e.Version < 1 {
		// The table's CHECK would say the same, but aborting the transaction.
		return fmt.Errorf("append version %d to the inventory stream of show %q: versions start at 1", e.Version, e.ShowID)
	}
	tag, err := t.exec(ctx, sAppendInventoryEvent, e.ShowID, e.Version, e.TierID, e.Held, e.Sold,
		e.HeldAfter, e.SoldAfter, e.Capacity, e.CreatedAt)
	if err != nil {
		return fmt.Errorf("append version %d to the inventory stream of show %q: %w", e.Version, e.ShowID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("append version %d to the inventory stream of show %q", e.Version, e.ShowID)
	}
	return nil
}

// InventoryEvents implements boxoffice.Tx.
func (t *tx) InventoryEvents(ctx context.Context, showID string, after int64, limit int) ([]*boxoffice.InventoryEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	var evs []*boxoffice.InventoryEvent
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		var e boxoffice.InventoryEvent
		if err := rows.Scan(&e.ShowID, &e.Version, &e.TierID, &e.Held, &e.Sold, &e.HeldAfter, &e.SoldAfter,
			&e.Capacity, &e.CreatedAt); err != nil {
			return err
		}
		e.CreatedAt = utc(e.CreatedAt)
		evs = append(evs, &e)
		return nil
	}, sInventoryEvents, showID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read the inventory stream of show %q: %w", showID, err)
	}
	return evs, nil
}

// InventoryHead implements boxoffice.Tx.
func (t *tx) InventoryHead(ctx context.Context, showID string) (int64, error) {
	var v int64
	if err := t.queryRow(ctx, sInventoryHead, showID).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the inventory head of show %q: %w", showID, err)
	}
	return v, nil
}
