package postgres

import (
	"context"
	"fmt"

	"boxoffice"

	"github.com/jackc/pgx/v5"
)

// GetShow implements boxoffice.Tx.
func (t *tx) GetShow(ctx context.Context, id string) (*boxoffice.Show, error) {
	var s *boxoffice.Show
	var r showRow
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		if err := r.scan(rows); err != nil {
			return err
		}
		if s == nil {
			show := r.s
			s = &show
		}
		if tr, ok := r.tier(); ok {
			s.Tiers = append(s.Tiers, tr)
		}
		return nil
	}, sGetShow, id)
	if err != nil {
		return nil, fmt.Errorf("read show %q: %w", id, err)
	}
	if s == nil {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %q not found", id)
	}
	return s, nil
}

// ListShows implements boxoffice.Tx.
func (t *tx) ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, error) {
	if limit <= 0 {
		return nil, nil
	}
	var shows []*boxoffice.Show
	var r showRow
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		if err := r.scan(rows); err != nil {
			return err
		}
		// Rows come by show, so a new id starts the next show.
		if len(shows) == 0 || shows[len(shows)-1].ID != r.s.ID {
			show := r.s
			shows = append(shows, &show)
		}
		if tr, ok := r.tier(); ok {
			s := shows[len(shows)-1]
			s.Tiers = append(s.Tiers, tr)
		}
		return nil
	}, sListShows, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list shows: %w", err)
	}
	return shows, nil
}

// PutShow implements boxoffice.Tx. It writes s but does not change it: the stored created_at of
// a replaced show and the counts of its tiers are read back with GetShow. Its statements go in
// one round trip.
func (t *tx) PutShow(ctx context.Context, s *boxoffice.Show) error {
	b := &pgx.Batch{}
	b.Queue(sUpsertShow, s.ID, s.Name, s.StartsAt, s.HoldTTLSeconds, nullInt(s.MaxPerBuyer), s.CreatedAt, s.UpdatedAt,
		nullInt(s.CancelCutoffSeconds))
	ids := make([]string, len(s.Tiers))
	for i, tr := range s.Tiers {
		ids[i] = tr.ID
		b.Queue(sUpsertTier, s.ID, tr.ID, i, tr.Name, tr.Capacity, tr.Price.Amount, tr.Price.Currency)
	}
	b.Queue(sDeleteOtherTiers, s.ID, ids)
	if err := t.batch(ctx, b); err != nil {
		return fmt.Errorf("write show %q: %w", s.ID, err)
	}
	return nil
}
