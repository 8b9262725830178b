package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"boxoffice"
)

// PutSeats implements boxoffice.Tx.
func (t *tx) PutSeats(ctx context.Context, showID, tierID string, seats []boxoffice.Seat) error {
	if _, err := t.exec(ctx, sDeleteSeats, showID, tierID); err != nil {
		return fmt.Errorf("delete seats of %s/%s: %w", showID, tierID, err)
	}
	for _, s := range seats {
		if _, err := t.exec(ctx, sInsertSeat, showID, tierID, s.ID, s.Section, s.Row, s.Label, s.Rank, s.Pos,
			s.Accessible, s.RestrictedView); err != nil {
			return wrapWrite(err, fmt.Sprintf("insert seat %q of %s/%s", s.ID, showID, tierID))
		}
	}
	if _, err := t.exec(ctx, sMarkSeated, len(seats) > 0, showID, tierID); err != nil {
		return fmt.Errorf("mark tier %s/%s seated: %w", showID, tierID, err)
	}
	return nil
}

// Seats implements boxoffice.Tx.
func (t *tx) Seats(ctx context.Context, showID, tierID string) ([]boxoffice.Seat, error) {
	if tierID == "" {
		return t.seats(ctx, "seats of show", sSeatsOfShow, showID)
	}
	return t.seats(ctx, "seats of tier", sSeatsOfTier, showID, tierID)
}

// AvailableSeats implements boxoffice.Tx.
func (t *tx) AvailableSeats(ctx context.Context, showID, tierID string, limit int) ([]boxoffice.Seat, error) {
	if limit <= 0 {
		return nil, nil
	}
	return t.seats(ctx, "available seats", sAvailableSeats, showID, tierID, limit)
}

// ClaimSeats implements boxoffice.Tx, one seat at a time: the writer is exclusive, so the
// statements of one claim cannot interleave with another's.
func (t *tx) ClaimSeats(ctx context.Context, showID, tierID, holdID string, ids []string) (int, error) {
	claimed := 0
	for _, id := range ids {
		res, err := t.exec(ctx, sClaimSeats, holdID, showID, tierID, id)
		if err != nil {
			return claimed, fmt.Errorf("claim seat %s for hold %s: %w", id, holdID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return claimed, err
		}
		claimed += int(n)
	}
	return claimed, nil
}

// FreeSeats implements boxoffice.Tx.
func (t *tx) FreeSeats(ctx context.Context, holdID string) (int, error) {
	res, err := t.exec(ctx, sFreeSeats, holdID)
	if err != nil {
		return 0, fmt.Errorf("free seats of hold %s: %w", holdID, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// SeatsOfHold implements boxoffice.Tx.
func (t *tx) SeatsOfHold(ctx context.Context, holdID string) ([]boxoffice.Seat, error) {
	return t.seats(ctx, "seats of hold", sSeatsOfHold, holdID)
}

// SeatsByID implements boxoffice.Tx, one primary-key read a seat, as ClaimSeats claims them.
func (t *tx) SeatsByID(ctx context.Context, showID, tierID string, ids []string) ([]boxoffice.Seat, error) {
	var out []boxoffice.Seat
	for _, id := range ids {
		one, err := t.seats(ctx, "seat by id", sSeatByID, showID, id, tierID)
		if err != nil {
			return nil, err
		}
		out = append(out, one...)
	}
	return out, nil
}

// seats collects the seats a query returns; what names the query in an error.
func (t *tx) seats(ctx context.Context, what string, id stmtID, args ...any) ([]boxoffice.Seat, error) {
	var seats []boxoffice.Seat
	rows, err := t.query(ctx, id, args...)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		var s boxoffice.Seat
		var state string
		if err := rows.Scan(&s.TierID, &s.ID, &s.Section, &s.Row, &s.Label, &s.Rank, &s.Pos, &s.Accessible,
			&s.RestrictedView, &s.HoldID, &state); err != nil {
			return err
		}
		s.State = boxoffice.SeatState(state)
		seats = append(seats, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return seats, nil
}
