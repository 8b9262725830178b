package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"boxoffice"
)

func scanShow(sc scanner) (*boxoffice.Show, error) {
	var (
		s                             boxoffice.Show
		startsAt, createdAt, updateAt int64
		maxPerBuyer, cancelCutoff     sql.NullInt64
	)
	if err := sc.Scan(&s.ID, &s.Name, &startsAt, &s.HoldTTLSeconds, &maxPerBuyer, &createdAt, &updateAt, &cancelCutoff); err != nil {
		return nil, err
	}
	s.CancelCutoffSeconds = optInt(cancelCutoff)
	s.StartsAt, s.CreatedAt, s.UpdatedAt = fromMicros(startsAt), fromMicros(createdAt), fromMicros(updateAt)
	s.MaxPerBuyer = optInt(maxPerBuyer)
	return &s, nil
}

// optInt reads an optional integer, NULL as nil.
func optInt(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	n := int(v.Int64)
	return &n
}

// nullInt stores an optional integer, nil as NULL.
func nullInt(v *int) sql.NullInt64 {
	if v == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*v), Valid: true}
}

// scanTier scans tierCols into a tier and returns its show id.
func scanTier(sc scanner) (string, boxoffice.Tier, error) {
	var (
		showID string
		tr     boxoffice.Tier
	)
	if err := sc.Scan(&showID, &tr.ID, &tr.Name, &tr.Capacity, &tr.Price.Amount, &tr.Price.Currency, &tr.Held, &tr.Sold, &tr.Seated); err != nil {
		return "", tr, err
	}
	tr.Available = tr.Capacity - tr.Held - tr.Sold
	return showID, tr, nil
}

// GetShow implements boxoffice.Tx.
func (t *tx) GetShow(ctx context.Context, id string) (*boxoffice.Show, error) {
	s, err := scanShow(t.queryRow(ctx, sGetShow, id))
	if err != nil {
		return nil, notFound(err, "show %q", id)
	}
	rows, err := t.query(ctx, sGetTiers, id)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		_, tr, err := scanTier(rows)
		s.Tiers = append(s.Tiers, tr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read tiers of show %q: %w", id, err)
	}
	return s, nil
}

// ListShows implements boxoffice.Tx.
func (t *tx) ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, error) {
	if limit <= 0 {
		return nil, nil
	}
	var shows []*boxoffice.Show
	byID := map[string]*boxoffice.Show{}
	rows, err := t.query(ctx, sListShows, after, limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		s, err := scanShow(rows)
		if err != nil {
			return err
		}
		shows = append(shows, s)
		byID[s.ID] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list shows: %w", err)
	}
	if len(shows) == 0 {
		return nil, nil
	}
	rows, err = t.query(ctx, sListShowTiers, after, limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		showID, tr, err := scanTier(rows)
		if err != nil {
			return err
		}
		// Both queries read the same snapshot, so every tier's show is on the page.
		if s := byID[showID]; s != nil {
			s.Tiers = append(s.Tiers, tr)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tiers of shows: %w", err)
	}
	return shows, nil
}

// PutShow implements boxoffice.Tx. It writes s but does not change it: the stored created_at of
// a replaced show and the counts of its tiers are read back with GetShow.
func (t *tx) PutShow(ctx context.Context, s *boxoffice.Show) error {
	if _, err := t.exec(ctx, sUpsertShow, s.ID, s.Name, micros(s.StartsAt), s.HoldTTLSeconds, nullInt(s.MaxPerBuyer),
		micros(s.CreatedAt), micros(s.UpdatedAt), nullInt(s.CancelCutoffSeconds)); err != nil {
		return wrapWrite(err, fmt.Sprintf("write show %q", s.ID))
	}
	ids := make([]string, len(s.Tiers))
	for i, tr := range s.Tiers {
		ids[i] = tr.ID
		if _, err := t.exec(ctx, sUpsertTier, s.ID, tr.ID, i, tr.Name, tr.Capacity, tr.Price.Amount,
			tr.Price.Currency); err != nil {
			return wrapWrite(err, fmt.Sprintf("write tier %q of show %q", tr.ID, s.ID))
		}
	}
	if _, err := t.exec(ctx, sDeleteOtherTiers, s.ID, jsonList(ids)); err != nil {
		return fmt.Errorf("delete removed tiers of show %q: %w", s.ID, err)
	}
	return nil
}
