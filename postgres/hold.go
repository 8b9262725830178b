package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"boxoffice"

	"github.com/jackc/pgx/v5"
)

func scanHold(sc scanner) (*boxoffice.Hold, error) {
	var (
		h      boxoffice.Hold
		status string
	)
	if err := sc.Scan(&h.ID, &h.ShowID, &h.TierID, &h.Quantity, &h.Buyer.Email, &status, &h.ExpiresAt,
		&h.CreatedAt, &h.UpdatedAt, &h.APIKeyID); err != nil {
		return nil, err
	}
	h.Status = boxoffice.HoldStatus(status)
	h.ExpiresAt, h.CreatedAt, h.UpdatedAt = utc(h.ExpiresAt), utc(h.CreatedAt), utc(h.UpdatedAt)
	return &h, nil
}

// InsertHold implements boxoffice.Tx.
func (t *tx) InsertHold(ctx context.Context, h *boxoffice.Hold) error {
	args := []any{h.ID, h.ShowID, h.TierID, h.Quantity, h.Buyer.Email, string(h.Status),
		h.ExpiresAt, h.CreatedAt, h.UpdatedAt, h.APIKeyID}
	if t.laterAs(deferredWrite{kind: kindHold, step: stepInsert, sql: dInsertHold, args: args}) {
		return nil
	}
	tag, err := t.exec(ctx, sInsertHold, args...)
	if err != nil {
		return fmt.Errorf("insert hold %q: %w", h.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert hold %q", h.ID)
	}
	return nil
}

// GetHold implements boxoffice.Tx. In an Update it locks the hold until the transaction ends,
// so that of a confirm and an expiry of one hold, the second to lock it sees what the first did.
func (t *tx) GetHold(ctx context.Context, id string) (*boxoffice.Hold, error) {
	q := sGetHold
	if t.write {
		q = sGetHoldForUpdate
	}
	h, err := scanHold(t.queryRow(ctx, q, id))
	if err != nil {
		return nil, notFound(err, "hold %q", id)
	}
	return h, nil
}

// EndHold implements boxoffice.Tx. A missing hold is not an error, only not active: ok is false.
func (t *tx) EndHold(ctx context.Context, id string, to boxoffice.HoldStatus, at time.Time) (bool, error) {
	if t.later(stepHold, id, dEndHold, string(to), at, id) {
		return true, nil
	}
	tag, err := t.exec(ctx, sEndHold, string(to), at, id)
	if err != nil {
		return false, fmt.Errorf("end hold %q: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// DueHolds implements boxoffice.Tx.
func (t *tx) DueHolds(ctx context.Context, now time.Time, limit int) ([]*boxoffice.Hold, error) {
	if limit <= 0 {
		return nil, nil
	}
	holds, err := t.readHolds(ctx, sDueHolds, now, limit)
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	return holds, nil
}

// readHolds collects the holds a query returns.
func (t *tx) readHolds(ctx context.Context, sql string, args ...any) ([]*boxoffice.Hold, error) {
	var holds []*boxoffice.Hold
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		h, err := scanHold(rows)
		holds = append(holds, h)
		return err
	}, sql, args...)
	return holds, err
}

// NextHoldExpiry implements boxoffice.Tx. It counts every active hold, those with an order
// waiting for payment too, as the contract says.
func (t *tx) NextHoldExpiry(ctx context.Context) (time.Time, bool, error) {
	var v time.Time
	err := t.queryRow(ctx, sNextHoldExpiry).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next hold expiry: %w", err)
	}
	return utc(v), true, nil
}

// BuyerTickets implements boxoffice.Tx.
func (t *tx) BuyerTickets(ctx context.Context, showID, email string) (int, error) {
	var n int
	if err := t.queryRow(ctx, sBuyerTickets, showID, boxoffice.BuyerKey(email)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tickets of buyer: %w", err)
	}
	return n, nil
}

// ForEachHold implements boxoffice.Tx.
func (t *tx) ForEachHold(ctx context.Context, fn func(*boxoffice.Hold) error) error {
	after := ""
	for {
		page, err := t.readHolds(ctx, sForEachHold, after, forEachPage)
		if err != nil {
			return fmt.Errorf("read holds: %w", err)
		}
		for _, h := range page {
			if err := fn(h); err != nil {
				return err
			}
		}
		if len(page) < forEachPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
