package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"boxoffice"
)

func scanHold(sc scanner) (*boxoffice.Hold, error) {
	var (
		h                               boxoffice.Hold
		status                          string
		expiresAt, createdAt, updatedAt int64
	)
	if err := sc.Scan(&h.ID, &h.ShowID, &h.TierID, &h.Quantity, &h.Buyer.Email, &status, &expiresAt,
		&createdAt, &updatedAt, &h.APIKeyID); err != nil {
		return nil, err
	}
	h.Status = boxoffice.HoldStatus(status)
	h.ExpiresAt, h.CreatedAt, h.UpdatedAt = fromMicros(expiresAt), fromMicros(createdAt), fromMicros(updatedAt)
	return &h, nil
}

// InsertHold implements boxoffice.Tx.
func (t *tx) InsertHold(ctx context.Context, h *boxoffice.Hold) error {
	if _, err := t.exec(ctx, sInsertHold, h.ID, h.ShowID, h.TierID, h.Quantity, h.Buyer.Email, string(h.Status),
		micros(h.ExpiresAt), micros(h.CreatedAt), micros(h.UpdatedAt), h.APIKeyID); err != nil {
		return wrapWrite(err, fmt.Sprintf("insert hold %q", h.ID))
	}
	return nil
}

// GetHold implements boxoffice.Tx.
func (t *tx) GetHold(ctx context.Context, id string) (*boxoffice.Hold, error) {
	h, err := scanHold(t.queryRow(ctx, sGetHold, id))
	if err != nil {
		return nil, notFound(err, "hold %q", id)
	}
	return h, nil
}

// EndHold implements boxoffice.Tx. A missing hold is not an error, only not active: ok is false.
func (t *tx) EndHold(ctx context.Context, id string, to boxoffice.HoldStatus, at time.Time) (bool, error) {
	res, err := t.exec(ctx, sEndHold, string(to), micros(at), id)
	if err != nil {
		return false, fmt.Errorf("end hold %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("end hold %q: %w", id, err)
	}
	return n == 1, nil
}

// DueHolds implements boxoffice.Tx.
func (t *tx) DueHolds(ctx context.Context, now time.Time, limit int) ([]*boxoffice.Hold, error) {
	if limit <= 0 {
		return nil, nil
	}
	var holds []*boxoffice.Hold
	rows, err := t.query(ctx, sDueHolds, now.UnixMicro(), limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		h, err := scanHold(rows)
		holds = append(holds, h)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	return holds, nil
}

// NextHoldExpiry implements boxoffice.Tx. It counts every active hold, those with an order
// waiting for payment too, as the contract says; such a hold may be past due and so returned
// again and again until its order settles.
func (t *tx) NextHoldExpiry(ctx context.Context) (time.Time, bool, error) {
	var v int64
	err := t.queryRow(ctx, sNextHoldExpiry).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next hold expiry: %w", err)
	}
	return fromMicros(v), true, nil
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
	rows, err := t.query(ctx, sForEachHold)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		h, err := scanHold(rows)
		if err != nil {
			return err
		}
		fnErr = fn(h)
		return fnErr
	})
	return passFnErr(err, fnErr, "read holds")
}
