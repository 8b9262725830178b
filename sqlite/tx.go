package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"boxoffice"
)

// tx is one transaction, handed to Update's or View's fn and valid only while fn runs: after
// that its sql.Tx is done and every method fails.
type tx struct {
	tx       *sql.Tx
	prepared *stmts
	bound    stmts // prepared[i] bound to this transaction, on first use
	// err is the first error after which SQLite may have rolled the transaction back by itself
	// (an interrupted write, an I/O error, a full disk). database/sql would still see it as open
	// and run later statements, which SQLite would then commit one by one; so once err is set no
	// statement runs and Update does not commit.
	err error
	// ctx, when set, is the context of every statement, whatever context the caller passed: in a
	// group commit one caller's cancelled request must not interrupt a transaction that carries
	// other callers' work too.
	ctx context.Context
	// appended is set once an event was appended: the commit then moves the durable position.
	appended bool
}

// stmtCtx is the context a statement runs under.
func (t *tx) stmtCtx(ctx context.Context) context.Context {
	if t.ctx != nil {
		return t.ctx
	}
	return ctx
}

var _ boxoffice.Tx = (*tx)(nil)

// stmt returns statement id bound to the transaction. Binding uses a background context: it only
// compiles the statement on this connection once, and a failure cached here would poison every
// later use of the statement in the transaction.
func (t *tx) stmt(id stmtID) *sql.Stmt {
	s := t.bound[id]
	if s == nil {
		s = t.tx.StmtContext(context.Background(), t.prepared[id])
		t.bound[id] = s
	}
	return s
}

// note records err as the transaction's failure unless it is one that leaves the transaction
// intact: no row, or a constraint violation, which SQLite undoes for the one statement only.
func (t *tx) note(err error) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) || isConstraint(err) {
		return err
	}
	if t.err == nil {
		t.err = err
	}
	return err
}

// failed is the error of every call after the transaction failed.
func (t *tx) failed() error {
	return fmt.Errorf("transaction failed earlier: %w", t.err)
}

func (t *tx) exec(ctx context.Context, id stmtID, args ...any) (sql.Result, error) {
	if t.err != nil {
		return nil, t.failed()
	}
	res, err := t.stmt(id).ExecContext(t.stmtCtx(ctx), args...)
	return res, t.note(err)
}

func (t *tx) query(ctx context.Context, id stmtID, args ...any) (*sql.Rows, error) {
	if t.err != nil {
		return nil, t.failed()
	}
	rows, err := t.stmt(id).QueryContext(t.stmtCtx(ctx), args...)
	return rows, t.note(err)
}

func (t *tx) queryRow(ctx context.Context, id stmtID, args ...any) scanner {
	if t.err != nil {
		return row{err: t.failed()}
	}
	return row{t: t, row: t.stmt(id).QueryRowContext(t.stmtCtx(ctx), args...)}
}

// row is a *sql.Row whose error goes through note.
type row struct {
	t   *tx
	row *sql.Row
	err error
}

func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.t.note(r.row.Scan(dest...))
}

// scanner is a row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// notFound maps sql.ErrNoRows to ENOTFOUND and wraps any other error.
func notFound(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return boxoffice.Errorf(boxoffice.ENOTFOUND, "%s not found", what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// eachRow calls scan for each row of a query, closing the rows whatever happens; scan's own
// error is returned as is. The rows stream from SQLite one at a time, so a query over every row
// of a table holds one in memory.
func (t *tx) eachRow(rows *sql.Rows, err error, scan func(*sql.Rows) error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return t.note(rows.Err())
}

// Shows.

func scanShow(sc scanner) (*boxoffice.Show, error) {
	var (
		s                             boxoffice.Show
		startsAt, createdAt, updateAt int64
		maxPerBuyer                   sql.NullInt64
	)
	if err := sc.Scan(&s.ID, &s.Name, &startsAt, &s.HoldTTLSeconds, &maxPerBuyer, &createdAt, &updateAt); err != nil {
		return nil, err
	}
	s.StartsAt, s.CreatedAt, s.UpdatedAt = fromMicros(startsAt), fromMicros(createdAt), fromMicros(updateAt)
	if maxPerBuyer.Valid {
		v := int(maxPerBuyer.Int64)
		s.MaxPerBuyer = &v
	}
	return &s, nil
}

// scanTier scans tierCols into a tier and returns its show id.
func scanTier(sc scanner) (string, boxoffice.Tier, error) {
	var (
		showID string
		tr     boxoffice.Tier
	)
	if err := sc.Scan(&showID, &tr.ID, &tr.Name, &tr.Capacity, &tr.Price.Amount, &tr.Price.Currency, &tr.Held, &tr.Sold); err != nil {
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
	var maxPerBuyer sql.NullInt64
	if s.MaxPerBuyer != nil {
		maxPerBuyer = sql.NullInt64{Int64: int64(*s.MaxPerBuyer), Valid: true}
	}
	if _, err := t.exec(ctx, sUpsertShow, s.ID, s.Name, micros(s.StartsAt), s.HoldTTLSeconds, maxPerBuyer,
		micros(s.CreatedAt), micros(s.UpdatedAt)); err != nil {
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
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("encode tier ids: %w", err)
	}
	if _, err := t.exec(ctx, sDeleteOtherTiers, s.ID, string(idsJSON)); err != nil {
		return fmt.Errorf("delete removed tiers of show %q: %w", s.ID, err)
	}
	return nil
}

// Tier counts.

func scanCounts(sc scanner) (boxoffice.TierCounts, error) {
	var c boxoffice.TierCounts
	err := sc.Scan(&c.ShowID, &c.TierID, &c.Capacity, &c.Held, &c.Sold, &c.Version, &c.Fence)
	return c, err
}

// TierCounts implements boxoffice.Tx. forUpdate needs nothing here: inside Update the
// transaction holds SQLite's write lock, so nothing else can change the row until it ends.
func (t *tx) TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (boxoffice.TierCounts, error) {
	c, err := scanCounts(t.queryRow(ctx, sTierCounts, showID, tierID))
	if err != nil {
		return boxoffice.TierCounts{}, notFound(err, "tier %q of show %q", tierID, showID)
	}
	return c, nil
}

// AddTierCounts implements boxoffice.Tx.
func (t *tx) AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (boxoffice.TierCounts, bool, error) {
	c, err := scanCounts(t.queryRow(ctx, sAddTierCounts, dHeld, dSold, showID, tierID))
	if err == nil {
		return c, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return boxoffice.TierCounts{}, false, fmt.Errorf("change counts of tier %q of show %q: %w", tierID, showID, err)
	}
	// No row changed: either there is no such tier or the change does not fit.
	c, err = t.TierCounts(ctx, showID, tierID, true)
	if err != nil {
		return boxoffice.TierCounts{}, false, err
	}
	return c, false, nil
}

// ForEachTier implements boxoffice.Tx.
func (t *tx) ForEachTier(ctx context.Context, fn func(boxoffice.TierCounts) error) error {
	rows, err := t.query(ctx, sForEachTier)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		c, err := scanCounts(rows)
		if err != nil {
			return err
		}
		fnErr = fn(c)
		return fnErr
	})
	return passFnErr(err, fnErr, "read tiers")
}

// passFnErr returns fn's own error as is and wraps a store error.
func passFnErr(err, fnErr error, what string) error {
	if err == nil || (fnErr != nil && err == fnErr) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Holds.

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
	if err := t.queryRow(ctx, sBuyerTickets, showID, email).Scan(&n); err != nil {
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

// Orders.

func scanOrder(sc scanner) (*boxoffice.Order, error) {
	var (
		o                    boxoffice.Order
		status, tickets      string
		release              bool
		createdAt, updatedAt int64
	)
	if err := sc.Scan(&o.ID, &status, &o.ShowID, &o.TierID, &o.HoldID, &o.Quantity, &o.Amount.Amount,
		&o.Amount.Currency, &o.Buyer.Email, &tickets, &o.PaymentToken, &o.ChargeID, &o.RefundID, &release,
		&createdAt, &updatedAt, &o.APIKeyID); err != nil {
		return nil, err
	}
	o.Status = boxoffice.OrderStatus(status)
	o.ReleaseOnFailure = release
	o.CreatedAt, o.UpdatedAt = fromMicros(createdAt), fromMicros(updatedAt)
	if tickets != "" && tickets != "null" {
		if err := json.Unmarshal([]byte(tickets), &o.Tickets); err != nil {
			return nil, fmt.Errorf("decode tickets of order %q: %w", o.ID, err)
		}
	}
	return &o, nil
}

// encodeTickets stores tickets as a JSON array, nil as "null" so that it reads back as nil.
func encodeTickets(ts []boxoffice.Ticket) (string, error) {
	b, err := json.Marshal(ts)
	if err != nil {
		return "", fmt.Errorf("encode tickets: %w", err)
	}
	return string(b), nil
}

// InsertOrder implements boxoffice.Tx. The partial unique index orders_live_hold refuses a
// second pending_payment or confirmed order of one hold with ECONFLICT.
func (t *tx) InsertOrder(ctx context.Context, o *boxoffice.Order) error {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, sInsertOrder, o.ID, string(o.Status), o.ShowID, o.TierID, o.HoldID, o.Quantity,
		o.Amount.Amount, o.Amount.Currency, o.Buyer.Email, tickets, o.PaymentToken, o.ChargeID, o.RefundID,
		o.ReleaseOnFailure, micros(o.CreatedAt), micros(o.UpdatedAt), o.APIKeyID); err != nil {
		return wrapWrite(err, fmt.Sprintf("insert order %q", o.ID))
	}
	return nil
}

// GetOrder implements boxoffice.Tx.
func (t *tx) GetOrder(ctx context.Context, id string) (*boxoffice.Order, error) {
	o, err := scanOrder(t.queryRow(ctx, sGetOrder, id))
	if err != nil {
		return nil, notFound(err, "order %q", id)
	}
	return o, nil
}

// LiveOrderForHold implements boxoffice.Tx.
func (t *tx) LiveOrderForHold(ctx context.Context, holdID string) (*boxoffice.Order, error) {
	o, err := scanOrder(t.queryRow(ctx, sLiveOrderForHold, holdID))
	if err != nil {
		return nil, notFound(err, "live order of hold %q", holdID)
	}
	return o, nil
}

// UpdateOrder implements boxoffice.Tx. It also writes ReleaseOnFailure, which a confirm that
// answered 202 turns on. Moving an order back to a live status while its hold has another live
// order is an ECONFLICT.
func (t *tx) UpdateOrder(ctx context.Context, o *boxoffice.Order, from boxoffice.OrderStatus) (bool, error) {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return false, err
	}
	res, err := t.exec(ctx, sUpdateOrder, string(o.Status), tickets, o.ChargeID, o.RefundID, o.ReleaseOnFailure,
		micros(o.UpdatedAt), o.ID, string(from))
	if err != nil {
		return false, wrapWrite(err, fmt.Sprintf("update order %q", o.ID))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("update order %q: %w", o.ID, err)
	}
	return n == 1, nil
}

// readOrders collects the orders a query returns.
func (t *tx) readOrders(rows *sql.Rows, err error) ([]*boxoffice.Order, error) {
	var orders []*boxoffice.Order
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		o, err := scanOrder(rows)
		orders = append(orders, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return orders, nil
}

// ListOrders implements boxoffice.Tx.
func (t *tx) ListOrders(ctx context.Context, f boxoffice.OrderFilter, after string, limit int) ([]*boxoffice.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	var orders []*boxoffice.Order
	var err error
	switch {
	case f.APIKeyID == "" && f.ShowID == "":
		orders, err = t.readOrders(t.query(ctx, sListOrders, after, limit))
	case f.APIKeyID == "":
		orders, err = t.readOrders(t.query(ctx, sListShowOrders, f.ShowID, after, limit))
	case f.ShowID == "":
		orders, err = t.readOrders(t.query(ctx, sListKeyOrders, f.APIKeyID, after, limit))
	default:
		orders, err = t.readOrders(t.query(ctx, sListKeyShowOrders, f.APIKeyID, f.ShowID, after, limit))
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return orders, nil
}

// PendingOrders implements boxoffice.Tx. Ids sort by creation time, so by id is oldest first.
func (t *tx) PendingOrders(ctx context.Context, limit int) ([]*boxoffice.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	orders, err := t.readOrders(t.query(ctx, sPendingOrders, limit))
	if err != nil {
		return nil, fmt.Errorf("read pending orders: %w", err)
	}
	return orders, nil
}

// ForEachOrder implements boxoffice.Tx.
func (t *tx) ForEachOrder(ctx context.Context, fn func(*boxoffice.Order) error) error {
	rows, err := t.query(ctx, sForEachOrder)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		o, err := scanOrder(rows)
		if err != nil {
			return err
		}
		fnErr = fn(o)
		return fnErr
	})
	return passFnErr(err, fnErr, "read orders")
}

// Idempotency records.

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

// Events.

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
	var events []*boxoffice.Event
	rows, err := t.query(ctx, sListEvents, after, limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		var (
			e         boxoffice.Event
			data      []byte
			createdAt int64
		)
		if err := rows.Scan(&e.Position, &e.ID, &e.Type, &e.Subject, &e.Seq, &data, &createdAt); err != nil {
			return err
		}
		e.Data, e.CreatedAt = data, fromMicros(createdAt)
		events = append(events, &e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// API keys.

// InsertAPIKey implements boxoffice.Tx.
func (t *tx) InsertAPIKey(ctx context.Context, k *boxoffice.APIKey) error {
	if _, err := t.exec(ctx, sInsertAPIKey, k.ID, string(k.Role), k.Label, k.Hash, micros(k.CreatedAt),
		optMicros(k.LastUsedAt), optMicros(k.RevokedAt)); err != nil {
		return wrapWrite(err, fmt.Sprintf("insert api key %q", k.ID))
	}
	return nil
}

// optMicros stores an optional time, nil as 0.
func optMicros(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return micros(*t)
}

// optTime reads an optional time, 0 as nil.
func optTime(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := fromMicros(v)
	return &t
}

// scanAPIKey reads one row of apiKeyCols.
func scanAPIKey(sc scanner) (*boxoffice.APIKey, error) {
	var (
		k                            boxoffice.APIKey
		role                         string
		createdAt, lastUsed, revoked int64
	)
	if err := sc.Scan(&k.ID, &role, &k.Label, &k.Hash, &createdAt, &lastUsed, &revoked); err != nil {
		return nil, err
	}
	k.Role, k.CreatedAt = boxoffice.Role(role), fromMicros(createdAt)
	k.LastUsedAt, k.RevokedAt = optTime(lastUsed), optTime(revoked)
	return &k, nil
}

// APIKeyByHash implements boxoffice.Tx.
func (t *tx) APIKeyByHash(ctx context.Context, hash string) (*boxoffice.APIKey, error) {
	k, err := scanAPIKey(t.queryRow(ctx, sAPIKeyByHash, hash))
	if err != nil {
		return nil, notFound(err, "api key")
	}
	return k, nil
}

// ListAPIKeys implements boxoffice.Tx.
func (t *tx) ListAPIKeys(ctx context.Context, after string, limit int) ([]*boxoffice.APIKey, error) {
	if limit <= 0 {
		return nil, nil
	}
	var keys []*boxoffice.APIKey
	rows, err := t.query(ctx, sListAPIKeys, after, limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		k, err := scanAPIKey(rows)
		keys = append(keys, k)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey implements boxoffice.Tx.
func (t *tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	var got string
	if err := t.queryRow(ctx, sRevokeAPIKey, micros(at), id).Scan(&got); err != nil {
		return notFound(err, "api key %q", id)
	}
	return nil
}

// TouchAPIKey implements boxoffice.Tx.
func (t *tx) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if _, err := t.exec(ctx, sTouchAPIKey, micros(at), id); err != nil {
		return fmt.Errorf("touch api key %q: %w", id, err)
	}
	return nil
}
