package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	"boxoffice"
)

// SetTierCounts implements boxoffice.Tx.
func (t *tx) SetTierCounts(ctx context.Context, showID, tierID string, version int64, held, sold int) (bool, error) {
	res, err := t.exec(ctx, sSetTierCounts, held, sold, showID, tierID, version)
	if err != nil {
		return false, fmt.Errorf("set counts of tier %q of show %q: %w", tierID, showID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Fence implements boxoffice.Tx.
func (t *tx) Fence(ctx context.Context, showID, tierID string, token int64) (bool, error) {
	res, err := t.exec(ctx, sFence, token, showID, tierID)
	if err != nil {
		return false, fmt.Errorf("fence tier %q of show %q: %w", tierID, showID, err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 1 {
		return n == 1, err
	}
	// Nothing changed: a newer token, or no such tier.
	if _, err := t.TierCounts(ctx, showID, tierID, false); err != nil {
		return false, err
	}
	return false, nil
}

var savepointRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// savepoint runs one savepoint statement. Names cannot be bound as parameters, so they are checked
// against a strict pattern before they become part of the SQL.
func (t *tx) savepoint(ctx context.Context, verb, name string) error {
	if !savepointRE.MatchString(name) {
		return fmt.Errorf("savepoint name %q is not [a-z0-9_]+", name)
	}
	if t.err != nil {
		return t.failed()
	}
	q := verb + " " + name
	if id, ok := preparedSavepoints[q]; ok {
		_, err := t.exec(ctx, id)
		return err
	}
	_, err := t.tx.ExecContext(t.stmtCtx(ctx), q)
	return t.note(err)
}

// Savepoint implements boxoffice.Tx.
func (t *tx) Savepoint(ctx context.Context, name string) error {
	return t.savepoint(ctx, "SAVEPOINT", name)
}

// RollbackTo implements boxoffice.Tx.
func (t *tx) RollbackTo(ctx context.Context, name string) error {
	return t.savepoint(ctx, "ROLLBACK TO", name)
}

// ReleaseSavepoint implements boxoffice.Tx.
func (t *tx) ReleaseSavepoint(ctx context.Context, name string) error {
	return t.savepoint(ctx, "RELEASE", name)
}

// AppendInventoryEvent implements boxoffice.Tx.
func (t *tx) AppendInventoryEvent(ctx context.Context, e *boxoffice.InventoryEvent) error {
	_, err := t.exec(ctx, sAppendInventoryEvent, e.ShowID, e.Version, e.TierID, e.Held, e.Sold,
		e.HeldAfter, e.SoldAfter, e.Capacity, micros(e.CreatedAt))
	if err != nil {
		return wrapWrite(err, fmt.Sprintf("append version %d to the inventory stream of show %q", e.Version, e.ShowID))
	}
	return nil
}

// InventoryEvents implements boxoffice.Tx.
func (t *tx) InventoryEvents(ctx context.Context, showID string, after int64, limit int) ([]*boxoffice.InventoryEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, sInventoryEvents, showID, after, limit)
	var evs []*boxoffice.InventoryEvent
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		var e boxoffice.InventoryEvent
		var created int64
		if err := rows.Scan(&e.ShowID, &e.Version, &e.TierID, &e.Held, &e.Sold, &e.HeldAfter, &e.SoldAfter, &e.Capacity, &created); err != nil {
			return err
		}
		e.CreatedAt = fromMicros(created)
		evs = append(evs, &e)
		return nil
	})
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
