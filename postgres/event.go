package postgres

import (
	"context"
	"errors"
	"fmt"

	"boxoffice"

	"github.com/jackc/pgx/v5"
)

// AppendEvent implements boxoffice.Tx. It sets e.Seq and e.Position. The subject's advisory
// lock and the insert go in one round trip (see sLockSubject); the lock is held until the
// transaction ends, so appends to one subject take turns and number its events without gaps.
//
// Position comes from a sequence when the row is inserted, not when its transaction commits:
// a transaction that started later may commit a higher position first. A reader of the feed
// (ListEvents) that moves its cursor past a gap may therefore skip an event that a transaction
// still in flight is about to commit; it must not treat gaps as final.
func (t *tx) AppendEvent(ctx context.Context, e *boxoffice.Event) error {
	var (
		position int64
		seq      int
	)
	if t.laterAs(deferredWrite{kind: kindLock, step: stepSubject, key: e.Subject, sql: sLockSubject, args: []any{e.Subject}}) {
		// Deferred: the position and seq are known once the write is sent, before Update returns.
		t.laterAs(deferredWrite{kind: kindEvent, step: stepEvent, sql: dAppendEvent,
			args: []any{e.ID, e.Type, e.Subject, []byte(e.Data), e.CreatedAt}, event: e})
		return nil
	}
	inserted := true
	b := &pgx.Batch{}
	b.Queue(sLockSubject, e.Subject)
	b.Queue(sAppendEvent, e.ID, e.Type, e.Subject, []byte(e.Data), e.CreatedAt).QueryRow(func(r pgx.Row) error {
		err := r.Scan(&position, &seq)
		if errors.Is(err, pgx.ErrNoRows) {
			inserted = false
			return nil
		}
		return err
	})
	if err := t.batch(ctx, b); err != nil {
		return fmt.Errorf("append event %q: %w", e.ID, err)
	}
	if !inserted {
		// ON CONFLICT DO NOTHING: the id exists (the subject's seq cannot clash, under the lock).
		return conflict("append event %q", e.ID)
	}
	e.Position, e.Seq = position, seq
	return nil
}

// EventsAt implements boxoffice.Tx.
func (t *tx) EventsAt(ctx context.Context, positions []int64) ([]*boxoffice.Event, error) {
	if len(positions) == 0 {
		return nil, nil
	}
	return t.events(ctx, "events at positions", sEventsAt, positions)
}

// EventsByID implements boxoffice.Tx.
func (t *tx) EventsByID(ctx context.Context, ids []string) ([]*boxoffice.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return t.events(ctx, "events by id", sEventsByID, ids)
}

// ListEvents implements boxoffice.Tx. Events come by position. PostgreSQL hands out positions
// at insert, so, unlike on SQLite, position order is commit order only among committed events;
// see AppendEvent for what that asks of a reader.
func (t *tx) ListEvents(ctx context.Context, after int64, limit int) ([]*boxoffice.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	return t.events(ctx, "list events", sListEvents, after, limit)
}

// events collects the events a query returns; what names the query in an error.
func (t *tx) events(ctx context.Context, what, sql string, args ...any) ([]*boxoffice.Event, error) {
	var events []*boxoffice.Event
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		events = append(events, e)
		return nil
	}, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return events, nil
}

func scanEvent(sc scanner) (*boxoffice.Event, error) {
	var (
		e    boxoffice.Event
		data []byte
	)
	if err := sc.Scan(&e.Position, &e.ID, &e.Type, &e.Subject, &e.Seq, &data, &e.CreatedAt); err != nil {
		return nil, err
	}
	e.Data, e.CreatedAt = data, utc(e.CreatedAt)
	return &e, nil
}

// EventByID implements boxoffice.Tx.
func (t *tx) EventByID(ctx context.Context, id string) (*boxoffice.Event, error) {
	e, err := scanEvent(t.queryRow(ctx, sEventByID, id))
	if err != nil {
		return nil, notFound(err, "event %q", id)
	}
	return e, nil
}

// EventsOfSubject implements boxoffice.Tx.
func (t *tx) EventsOfSubject(ctx context.Context, subject string, limit int) ([]*boxoffice.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	return t.events(ctx, "events of subject", sEventsOfSubject, subject, limit)
}
