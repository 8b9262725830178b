package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"boxoffice"
)

// AppendEvent implements boxoffice.Tx. It sets e.Seq and e.Position.
func (t *tx) AppendEvent(ctx context.Context, e *boxoffice.Event) error {
	var (
		position int64
		seq      int
	)
	err := t.queryRow(ctx, sAppendEvent, e.ID, e.Type, e.Subject, []byte(e.Data), micros(e.CreatedAt)).
		Scan(&position, &seq)
	if err != nil {
		return wrapWrite(err, fmt.Sprintf("append event %q", e.ID))
	}
	e.Position, e.Seq = position, seq
	t.appended = true
	return nil
}

// ListEvents implements boxoffice.Tx. Positions grow in commit order because only one
// transaction writes at a time.
func (t *tx) ListEvents(ctx context.Context, after int64, limit int) ([]*boxoffice.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	return t.events(ctx, "list events", sListEvents, after, limit)
}

// events collects the events a query returns; what names the query in an error.
func (t *tx) events(ctx context.Context, what string, id stmtID, args ...any) ([]*boxoffice.Event, error) {
	var events []*boxoffice.Event
	rows, err := t.query(ctx, id, args...)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return events, nil
}

// EventsAt implements boxoffice.Tx. The positions go as one JSON array, so that one prepared
// statement serves any number of them.
func (t *tx) EventsAt(ctx context.Context, positions []int64) ([]*boxoffice.Event, error) {
	if len(positions) == 0 {
		return nil, nil
	}
	return t.events(ctx, "events at positions", sEventsAt, jsonList(positions))
}

// jsonList encodes a list of ids or positions as the JSON array a statement reads with
// json_each, so that one prepared statement serves any number of them. Such a list always
// encodes.
func jsonList[T int64 | string](list []T) string {
	b, _ := json.Marshal(list)
	return string(b)
}

func scanEvent(sc scanner) (*boxoffice.Event, error) {
	var (
		e         boxoffice.Event
		data      []byte
		createdAt int64
	)
	if err := sc.Scan(&e.Position, &e.ID, &e.Type, &e.Subject, &e.Seq, &data, &createdAt); err != nil {
		return nil, err
	}
	e.Data, e.CreatedAt = data, fromMicros(createdAt)
	return &e, nil
}

// EventsByID implements boxoffice.Tx.
func (t *tx) EventsByID(ctx context.Context, ids []string) ([]*boxoffice.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return t.events(ctx, "events by id", sEventsByID, jsonList(ids))
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
