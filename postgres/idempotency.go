package postgres

import (
	"context"
	"fmt"
	"time"

	"boxoffice"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

func scanIdem(sc scanner) (*boxoffice.IdemRecord, error) {
	var (
		r        boxoffice.IdemRecord
		status   pgtype.Int4
		body     []byte
		location pgtype.Text
	)
	if err := sc.Scan(&r.ID, &r.Scope, &r.Key, &r.Fingerprint, &r.HoldID, &r.OrderID, &r.LockedUntil, &status,
		&body, &location, &r.CreatedAt, &r.ExpiresAt); err != nil {
		return nil, err
	}
	r.LockedUntil, r.CreatedAt, r.ExpiresAt = utc(r.LockedUntil), utc(r.CreatedAt), utc(r.ExpiresAt)
	if status.Valid {
		r.Response = &boxoffice.Response{Status: int(status.Int32), Body: body, Location: location.String}
	}
	return &r, nil
}

// responseArgs are the response columns of r: NULL status, body and location when r has no
// response yet.
func responseArgs(r *boxoffice.IdemRecord) (status pgtype.Int4, body []byte, location pgtype.Text) {
	if r.Response == nil {
		return status, nil, location
	}
	body = r.Response.Body
	if body == nil {
		// A finished response with an empty body is stored as an empty bytea, not NULL, so that
		// the row says plainly which records have a response.
		body = []byte{}
	}
	return pgtype.Int4{Int32: int32(r.Response.Status), Valid: true}, body,
		pgtype.Text{String: r.Response.Location, Valid: true}
}

// InsertIdemRecord implements boxoffice.Tx. It claims the key first and never waits (LockOrder,
// step 1): a key that a transaction in flight has claimed is an ECONFLICT at once, like a key
// with a record, though the caller may find no record of it yet; that transaction's request is
// in progress. Waiting for it instead is what made two servers deadlock: the transaction that
// waits holds the rows of its batch's other requests, or the tier, meanwhile.
func (t *tx) InsertIdemRecord(ctx context.Context, r *boxoffice.IdemRecord) error {
	status, body, location := responseArgs(r)
	args := []any{r.ID, r.Scope, r.Key, r.Fingerprint, r.HoldID, r.OrderID,
		r.LockedUntil, status, body, location, r.CreatedAt, r.ExpiresAt}
	if t.laterAs(deferredWrite{kind: kindClaim, step: stepClaim, sql: dClaimIdem, args: []any{r.Scope, r.Key}}) {
		t.laterAs(deferredWrite{kind: kindIdem, step: stepInsert, sql: dInsertIdem, args: args})
		return nil
	}
	// One round trip: the claim, then the insert, which checks the claim again itself.
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue(sClaimIdem, r.Scope, r.Key)
	b.Queue(sInsertClaimedIdem, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	if err := t.batch(ctx, b); err != nil {
		return fmt.Errorf("insert idempotency record: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert idempotency record")
	}
	return nil
}

// GetIdemRecord implements boxoffice.Tx. In an Update it locks the record (FOR UPDATE) until
// the transaction ends, so that the read-then-write of its response is atomic.
func (t *tx) GetIdemRecord(ctx context.Context, scope, key string) (*boxoffice.IdemRecord, error) {
	q := sGetIdem
	if t.write {
		q = sGetIdemForUpdate
	}
	r, err := scanIdem(t.queryRow(ctx, q, scope, key))
	if err != nil {
		return nil, notFound(err, "idempotency record")
	}
	return r, nil
}

// UpdateIdemRecord implements boxoffice.Tx. The record is found by r.ID; ENOTFOUND when it is
// gone (swept).
func (t *tx) UpdateIdemRecord(ctx context.Context, r *boxoffice.IdemRecord) error {
	status, body, location := responseArgs(r)
	args := []any{r.HoldID, r.OrderID, r.LockedUntil, status, body, location, r.ID}
	if t.later(stepIdemRecord, r.ID, dUpdateIdem, args...) {
		return nil
	}
	tag, err := t.exec(ctx, sUpdateIdem, args...)
	if err != nil {
		return fmt.Errorf("update idempotency record %q: %w", r.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return boxoffice.Errorf(boxoffice.ENOTFOUND, "idempotency record %q not found", r.ID)
	}
	return nil
}

// AnswerIdemRecordForOrder implements boxoffice.Tx. The UPDATE locks the record, as the
// read-then-write it replaces did.
func (t *tx) AnswerIdemRecordForOrder(ctx context.Context, orderID string, res *boxoffice.Response) (bool, error) {
	if orderID == "" {
		return false, nil // records of requests that made no order have an empty order id
	}
	status, body, location := responseArgs(&boxoffice.IdemRecord{Response: res})
	if t.later(stepIdemRecord, orderID, dAnswerIdemForOrder, time.Time{}, status, body, location, orderID) {
		return true, nil
	}
	tag, err := t.exec(ctx, sAnswerIdemForOrder, time.Time{}, status, body, location, orderID)
	if err != nil {
		return false, fmt.Errorf("answer the idempotency record of order %q: %w", orderID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// SweepIdemRecords implements boxoffice.Tx. Records locked by a transaction in flight are left
// for a later sweep.
func (t *tx) SweepIdemRecords(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := t.exec(ctx, sSweepIdem, now, limit)
	if err != nil {
		return 0, fmt.Errorf("sweep idempotency records: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ClearIdemLeases implements boxoffice.Tx.
func (t *tx) ClearIdemLeases(ctx context.Context) error {
	if _, err := t.exec(ctx, sClearIdemLeases, time.Time{}); err != nil {
		return fmt.Errorf("clear idempotency leases: %w", err)
	}
	return nil
}

// ForEachIdemRecord implements boxoffice.Tx.
func (t *tx) ForEachIdemRecord(ctx context.Context, fn func(*boxoffice.IdemRecord) error) error {
	after := ""
	for {
		var page []*boxoffice.IdemRecord
		_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
			r, err := scanIdem(rows)
			page = append(page, r)
			return err
		}, sForEachIdem, after, forEachPage)
		if err != nil {
			return fmt.Errorf("read idempotency records: %w", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < forEachPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
