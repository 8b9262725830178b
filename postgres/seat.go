package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"boxoffice"
)

// PutSeats implements boxoffice.Tx. The seats go as one multi-row insert of arrays, however many
// there are: a stadium's tier is tens of thousands.
func (t *tx) PutSeats(ctx context.Context, showID, tierID string, seats []boxoffice.Seat) error {
	if _, err := t.exec(ctx, sDeleteSeats, showID, tierID); err != nil {
		return fmt.Errorf("delete seats of %s/%s: %w", showID, tierID, err)
	}
	if len(seats) > 0 {
		n := len(seats)
		ids, sections, rows, labels := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ranks, pos := make([]int32, n), make([]int32, n)
		acc, restricted := make([]bool, n), make([]bool, n)
		for i, s := range seats {
			ids[i], sections[i], rows[i], labels[i] = s.ID, s.Section, s.Row, s.Label
			ranks[i], pos[i], acc[i], restricted[i] = int32(s.Rank), int32(s.Pos), s.Accessible, s.RestrictedView
		}
		if _, err := t.exec(ctx, sInsertSeats, showID, tierID, ids, sections, rows, labels, ranks, pos, acc, restricted); err != nil {
			return fmt.Errorf("insert seats of %s/%s: %w", showID, tierID, err)
		}
	}
	if _, err := t.exec(ctx, sMarkSeated, len(seats) > 0, showID, tierID); err != nil {
		return fmt.Errorf("mark tier %s/%s seated: %w", showID, tierID, err)
	}
	t.wroteNow(1)
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

// ClaimSeats implements boxoffice.Tx. It runs at once, also in a speculative transaction: its
// answer (how many seats it took) decides the hold.
func (t *tx) ClaimSeats(ctx context.Context, showID, tierID, holdID string, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := t.exec(ctx, sClaimSeats, holdID, showID, tierID, ids)
	if err != nil {
		return 0, fmt.Errorf("claim seats for hold %s: %w", holdID, err)
	}
	t.wroteNow(tag.RowsAffected())
	return int(tag.RowsAffected()), nil
}

// FreeSeats implements boxoffice.Tx.
func (t *tx) FreeSeats(ctx context.Context, holdID string) (int, error) {
	tag, err := t.exec(ctx, sFreeSeats, holdID)
	if err != nil {
		return 0, fmt.Errorf("free seats of hold %s: %w", holdID, err)
	}
	t.wroteNow(tag.RowsAffected())
	return int(tag.RowsAffected()), nil
}

// wroteNow records that a write sent at once changed rows in a transaction that defers its other
// writes, as a deferred write already sent is recorded: a virtual savepoint's rollback or a
// merged call's failure cannot take it back, so they void the run instead (missed, unmerged),
// which then runs again with real savepoints, or on its own. A seat write cannot wait for the
// commit like the others: its answer (how many seats it took) decides the hold.
func (t *tx) wroteNow(rows int64) {
	if t.deferring && rows > 0 {
		t.queued++
		t.sent = t.queued
	}
}

// SeatsOfHold implements boxoffice.Tx.
func (t *tx) SeatsOfHold(ctx context.Context, holdID string) ([]boxoffice.Seat, error) {
	return t.seats(ctx, "seats of hold", sSeatsOfHold, holdID)
}

// SeatsByID implements boxoffice.Tx.
func (t *tx) SeatsByID(ctx context.Context, showID, tierID string, ids []string) ([]boxoffice.Seat, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return t.seats(ctx, "seats by id", sSeatsByID, showID, tierID, ids)
}

// seats collects the seats a query returns; what names the query in an error.
func (t *tx) seats(ctx context.Context, what, sql string, args ...any) ([]boxoffice.Seat, error) {
	var seats []boxoffice.Seat
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		var s boxoffice.Seat
		var state string
		var rank, pos int32
		if err := rows.Scan(&s.TierID, &s.ID, &s.Section, &s.Row, &s.Label, &rank, &pos, &s.Accessible,
			&s.RestrictedView, &s.HoldID, &state); err != nil {
			return err
		}
		s.Rank, s.Pos, s.State = int(rank), int(pos), boxoffice.SeatState(state)
		seats = append(seats, s)
		return nil
	}, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return seats, nil
}
