package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"boxoffice"
)

func scanIdem(sc scanner) (*boxoffice.IdemRecord, error) {
	var (
		r                                 boxoffice.IdemRecord
		lockedUntil, createdAt, expiresAt int64
		status                            sql.NullInt64
		body                              []byte
		location                          sql.NullString
	)
	if err := sc.Scan(&r.ID, &r.Scope, &r.Key, &r.Fingerprint, &r.HoldID, &r.OrderID, &lockedUntil, &status,
		&body, &location, &createdAt, &expiresAt); err != nil {
		return nil, err
	}
	r.LockedUntil, r.CreatedAt, r.ExpiresAt = fromMicros(lockedUntil), fromMicros(createdAt), fromMicros(expiresAt)
	if status.Valid {
		r.Response = &boxoffice.Response{Status: int(status.Int64), Body: body, Location: location.String}
	}
	return &r, nil
}

// responseArgs are the response columns of r: NULL status, body and location when r has no
// response yet.
func responseArgs(r *boxoffice.IdemRecord) (status sql.NullInt64, body []byte, location sql.NullString) {
	if r.Response == nil {
		return status, nil, location
	}
	body = r.Response.Body
	if body == nil {
		// A finished response with an empty body is stored as an empty blob, not NULL, so that
		// the row says plainly which records have a response.
		body = []byte{}
	}
	return sql.NullInt64{Int64: int64(r.Response.Status), Valid: true}, body,
		sql.NullString{String: r.Response.Location, Valid: true}
}

// InsertIdemRecord implements boxoffice.Tx.
func (t *tx) InsertIdemRecord(ctx context.Context, r *boxoffice.IdemRecord) error {
	status, body, location := responseArgs(r)
	if _, err := t.exec(ctx, sInsertIdem, r.ID, r.Scope, r.Key, r.Fingerprint, r.HoldID, r.OrderID,
		micros(r.LockedUntil), status, body, location, micros(r.CreatedAt), micros(r.ExpiresAt)); err != nil {
		return wrapWrite(err, "insert idempotency record")
	}
	return nil
}

// InsertIdemRecords implements sale's batch insert of records: it inserts recs in a few
// statements of many rows and says which it inserted. A record whose key has a record already,
// or an earlier one in recs, is not inserted, and the transaction stays intact, as after
// InsertIdemRecord's ECONFLICT. Such a clash aborts its statement only (SQLite undoes that
// statement's rows), and the records of that statement are then inserted one by one, so that
// each gets its own answer; clashes are rare, as keys are checked before a record is written.
func (t *tx) InsertIdemRecords(ctx context.Context, recs []*boxoffice.IdemRecord) ([]bool, error) {
	inserted := make([]bool, len(recs))
	args := make([]any, 0, 12*32)
	for done := 0; done < len(recs); {
		id, n := sInsertIdems1, 1
		switch rest := len(recs) - done; {
		case rest >= 32:
			id, n = sInsertIdems32, 32
		case rest >= 8:
			id, n = sInsertIdems8, 8
		}
		chunk := recs[done : done+n]
		args = args[:0]
		for _, r := range chunk {
			status, body, location := responseArgs(r)
			args = append(args, r.ID, r.Scope, r.Key, r.Fingerprint, r.HoldID, r.OrderID,
				micros(r.LockedUntil), status, body, location, micros(r.CreatedAt), micros(r.ExpiresAt))
		}
		_, err := t.exec(ctx, id, args...)
		switch {
		case err == nil:
			for i := range chunk {
				inserted[done+i] = true
			}
		case isUnique(err):
			for i, r := range chunk {
				err := t.InsertIdemRecord(ctx, r)
				if err != nil && boxoffice.ErrorCode(err) != boxoffice.ECONFLICT {
					return nil, err
				}
				inserted[done+i] = err == nil
			}
		default:
			return nil, wrapWrite(err, "insert idempotency records")
		}
		done += n
	}
	return inserted, nil
}

// GetIdemRecord implements boxoffice.Tx. Inside Update the writer's exclusive lock already
// serialises the read-then-write of a record.
func (t *tx) GetIdemRecord(ctx context.Context, scope, key string) (*boxoffice.IdemRecord, error) {
	r, err := scanIdem(t.queryRow(ctx, sGetIdem, scope, key))
	if err != nil {
		return nil, notFound(err, "idempotency record")
	}
	return r, nil
}

// UpdateIdemRecord implements boxoffice.Tx. The record is found by r.ID; ENOTFOUND when it is
// gone (swept).
func (t *tx) UpdateIdemRecord(ctx context.Context, r *boxoffice.IdemRecord) error {
	status, body, location := responseArgs(r)
	res, err := t.exec(ctx, sUpdateIdem, r.HoldID, r.OrderID, micros(r.LockedUntil), status, body, location, r.ID)
	if err != nil {
		return fmt.Errorf("update idempotency record %q: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update idempotency record %q: %w", r.ID, err)
	}
	if n == 0 {
		return boxoffice.Errorf(boxoffice.ENOTFOUND, "idempotency record %q not found", r.ID)
	}
	return nil
}

// AnswerIdemRecordForOrder implements boxoffice.Tx.
func (t *tx) AnswerIdemRecordForOrder(ctx context.Context, orderID string, res *boxoffice.Response) (bool, error) {
	if orderID == "" {
		return false, nil // records of requests that made no order have an empty order id
	}
	status, body, location := responseArgs(&boxoffice.IdemRecord{Response: res})
	r, err := t.exec(ctx, sAnswerIdemForOrder, status, body, location, orderID)
	if err != nil {
		return false, fmt.Errorf("answer the idempotency record of order %q: %w", orderID, err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("answer the idempotency record of order %q: %w", orderID, err)
	}
	return n > 0, nil
}

// SweepIdemRecords implements boxoffice.Tx.
func (t *tx) SweepIdemRecords(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := t.exec(ctx, sSweepIdem, now.UnixMicro(), limit)
	if err != nil {
		return 0, fmt.Errorf("sweep idempotency records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sweep idempotency records: %w", err)
	}
	return int(n), nil
}

// ClearIdemLeases implements boxoffice.Tx.
func (t *tx) ClearIdemLeases(ctx context.Context) error {
	if _, err := t.exec(ctx, sClearIdemLeases); err != nil {
		return fmt.Errorf("clear idempotency leases: %w", err)
	}
	return nil
}

// ForEachIdemRecord implements boxoffice.Tx.
func (t *tx) ForEachIdemRecord(ctx context.Context, fn func(*boxoffice.IdemRecord) error) error {
	rows, err := t.query(ctx, sForEachIdem)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		r, err := scanIdem(rows)
		if err != nil {
			return err
		}
		fnErr = fn(r)
		return fnErr
	})
	return passFnErr(err, fnErr, "read idempotency records")
}
