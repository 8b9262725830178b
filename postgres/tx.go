package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"boxoffice"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// forEachPage is how many rows a ForEach method reads per statement. Reading in keyset pages
// rather than streaming one result lets fn use the transaction (a pgx connection runs one
// statement at a time) and keeps memory bounded.
const forEachPage = 500

// tx is one transaction, handed to Update's or View's fn and valid only while fn runs: after
// that its connection is back in the pool and every method fails.
type tx struct {
	conn  *pgxpool.Conn
	begin string // the BEGIN statement of the transaction
	// begun is set once BEGIN was sent. It is sent with the first statement, in the same round
	// trip (a pipeline, or one simple query), rather than on its own: a View of one query then
	// costs two round trips instead of three, an Update one fewer.
	begun  bool
	closed bool // fn has returned
	write  bool // an Update: reads that precede a write lock their rows
	// err is the first failure on the client side (a cancelled context, a broken connection, a
	// value pgx could not encode): the server may or may not have run the statement, so no
	// later statement runs and Update does not commit. A failure the server reports needs no
	// such care: PostgreSQL itself refuses every later statement of the transaction until a
	// RollbackTo, and refuses to commit it.
	err error
	// retry is set when a statement failed with a serialization failure or a deadlock, which
	// abort the transaction but may well succeed when run again.
	retry bool
}

var _ boxoffice.Tx = (*tx)(nil)

// errEnded is the error of a method called after fn returned.
var errEnded = errors.New("transaction has ended")

// usable returns why t can run no statement, or nil.
func (t *tx) usable() error {
	if t.closed {
		return errEnded
	}
	if t.err != nil {
		return fmt.Errorf("transaction failed earlier: %w", t.err)
	}
	return nil
}

// note records err as the transaction's failure unless it is no failure of the transaction at
// all (no row) or one the server reported (see tx.err).
func (t *tx) note(err error) error {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if isRetryable(err) {
			t.retry = true
		}
		return err
	}
	if t.err == nil {
		t.err = err
	}
	return err
}

// send sends b's statements in one round trip, after BEGIN if the transaction has not begun,
// and runs their callbacks; the first error, of a statement or a callback, is returned as is.
// A callback should not return pgx.ErrNoRows: pgx takes any error of a batch as a reason to
// prepare all its statements again.
func (t *tx) send(ctx context.Context, b *pgx.Batch) error {
	if err := t.usable(); err != nil {
		return err
	}
	if !t.begun {
		t.begun = true
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: t.begin}}, b.QueuedQueries...)
	}
	return t.conn.SendBatch(ctx, b).Close()
}

// batch is send with its error noted.
func (t *tx) batch(ctx context.Context, b *pgx.Batch) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.note(t.send(ctx, b))
}

func (t *tx) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.usable(); err != nil {
		return pgconn.CommandTag{}, err
	}
	switch {
	case t.begun:
		tag, err := t.conn.Exec(ctx, sql, args...)
		return tag, t.note(err)
	case len(args) == 0:
		// pgx sends a statement without arguments as a simple query, which may hold two.
		t.begun = true
		tag, err := t.conn.Exec(ctx, t.begin+"; "+sql)
		return tag, t.note(err)
	}
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	err := t.batch(ctx, b)
	return tag, err
}

// queryRow returns the row of a query that runs when the row is scanned.
func (t *tx) queryRow(ctx context.Context, sql string, args ...any) scanner {
	return row{t: t, ctx: ctx, sql: sql, args: args}
}

// row is a query that returns at most one row, run by Scan.
type row struct {
	t    *tx
	ctx  context.Context
	sql  string
	args []any
}

func (r row) Scan(dest ...any) error {
	t := r.t
	if err := t.usable(); err != nil {
		return err
	}
	if t.begun {
		return t.note(t.conn.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...))
	}
	noRows := false
	b := &pgx.Batch{}
	b.Queue(r.sql, r.args...).QueryRow(func(row pgx.Row) error {
		err := row.Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			noRows = true
			return nil
		}
		return err
	})
	if err := t.batch(r.ctx, b); err != nil {
		return err
	}
	if noRows {
		return pgx.ErrNoRows
	}
	return nil
}

// scanner is a row or pgx.Rows.
type scanner interface{ Scan(dest ...any) error }

// eachRow runs a query and calls scan for each row; scan's own error is returned as is. It
// returns how many rows there were.
func (t *tx) eachRow(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) (int, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	n := 0
	var scanErr error
	each := func(rows pgx.Rows) error {
		for rows.Next() {
			n++
			if err := scan(rows); err != nil {
				scanErr = err
				return err
			}
		}
		return rows.Err()
	}
	var err error
	if t.begun {
		var rows pgx.Rows
		rows, err = t.conn.Query(ctx, sql, args...)
		if err == nil {
			err = each(rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	} else {
		b := &pgx.Batch{}
		b.Queue(sql, args...).Query(each)
		err = t.send(ctx, b)
	}
	if scanErr != nil && err == scanErr {
		return n, err
	}
	return n, t.note(err)
}

// notFound maps pgx.ErrNoRows to ENOTFOUND and wraps any other error.
func notFound(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, pgx.ErrNoRows) {
		return boxoffice.Errorf(boxoffice.ENOTFOUND, "%s not found", what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// conflict is the ECONFLICT of an insert that inserted nothing because a unique key clashed.
func conflict(format string, args ...any) error {
	return boxoffice.Errorf(boxoffice.ECONFLICT, "%s: already exists", fmt.Sprintf(format, args...))
}

// Shows.

// showRow scans a row of sGetShow or sListShows: a show and one of its tiers, or NULLs in the
// tier's columns for a show without tiers.
type showRow struct {
	s                    boxoffice.Show
	maxPerBuyer          pgtype.Int4
	tierID, name, cur    pgtype.Text
	capacity, held, sold pgtype.Int4
	amount               pgtype.Int8
}

func (r *showRow) scan(sc scanner) error {
	r.maxPerBuyer, r.tierID = pgtype.Int4{}, pgtype.Text{}
	if err := sc.Scan(&r.s.ID, &r.s.Name, &r.s.StartsAt, &r.s.HoldTTLSeconds, &r.maxPerBuyer, &r.s.CreatedAt,
		&r.s.UpdatedAt, &r.tierID, &r.name, &r.capacity, &r.amount, &r.cur, &r.held, &r.sold); err != nil {
		return err
	}
	r.s.StartsAt, r.s.CreatedAt, r.s.UpdatedAt = utc(r.s.StartsAt), utc(r.s.CreatedAt), utc(r.s.UpdatedAt)
	r.s.MaxPerBuyer = nil
	if r.maxPerBuyer.Valid {
		v := int(r.maxPerBuyer.Int32)
		r.s.MaxPerBuyer = &v
	}
	return nil
}

// tier returns the row's tier; ok is false for a show without tiers.
func (r *showRow) tier() (tr boxoffice.Tier, ok bool) {
	if !r.tierID.Valid {
		return tr, false
	}
	tr = boxoffice.Tier{
		ID: r.tierID.String, Name: r.name.String, Capacity: int(r.capacity.Int32),
		Price: boxoffice.Money{Amount: r.amount.Int64, Currency: r.cur.String},
		Held:  int(r.held.Int32), Sold: int(r.sold.Int32),
	}
	tr.Available = tr.Capacity - tr.Held - tr.Sold
	return tr, true
}

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
	var maxPerBuyer pgtype.Int4
	if s.MaxPerBuyer != nil {
		maxPerBuyer = pgtype.Int4{Int32: int32(*s.MaxPerBuyer), Valid: true}
	}
	b := &pgx.Batch{}
	b.Queue(sUpsertShow, s.ID, s.Name, s.StartsAt, s.HoldTTLSeconds, maxPerBuyer, s.CreatedAt, s.UpdatedAt)
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

// Tier counts.

func scanCounts(sc scanner) (boxoffice.TierCounts, error) {
	var c boxoffice.TierCounts
	err := sc.Scan(&c.ShowID, &c.TierID, &c.Capacity, &c.Held, &c.Sold, &c.Version, &c.Fence)
	return c, err
}

// TierCounts implements boxoffice.Tx. In an Update, forUpdate locks the row (FOR UPDATE) until
// the transaction ends; a View cannot lock and need not, its snapshot does not move.
func (t *tx) TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (boxoffice.TierCounts, error) {
	q := sTierCounts
	if forUpdate && t.write {
		q = sTierCountsForUpdate
	}
	c, err := scanCounts(t.queryRow(ctx, q, showID, tierID))
	if err != nil {
		return boxoffice.TierCounts{}, notFound(err, "tier %q of show %q", tierID, showID)
	}
	return c, nil
}

// addTierCountsTries is how often AddTierCounts runs its conditional UPDATE without a lock
// before it locks the row to settle the outcome.
const addTierCountsTries = 3

// AddTierCounts implements boxoffice.Tx.
//
// A refusal must be explained by the counts it returns: a sold-out answer whose counts show enough
// tickets would be no state the tier was ever in. Under READ COMMITTED the refused UPDATE and the
// SELECT that reads the counts after it see different moments, and a change committed in between
// (a release) may make the change fit. So the counts are read, without a lock, and a change that
// fits them is tried again; a refusal is returned only with counts that do not fit, as the tier
// was at the moment they were read. After a few rounds of that (a tier changing under every
// try), the row is locked so that the next round settles it. The usual refusal, a sold-out tier,
// thus takes no lock: locking would make every sold-out answer hold the hottest row of a sale
// until its transaction ends.
func (t *tx) AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (boxoffice.TierCounts, bool, error) {
	for try := 1; ; try++ {
		c, err := scanCounts(t.queryRow(ctx, sAddTierCounts, dHeld, dSold, showID, tierID))
		if err == nil {
			return c, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return boxoffice.TierCounts{}, false, fmt.Errorf("change counts of tier %q of show %q: %w", tierID, showID, err)
		}
		// No row changed: there is no such tier, or the change did not fit.
		c, err = t.TierCounts(ctx, showID, tierID, try >= addTierCountsTries)
		if err != nil {
			return boxoffice.TierCounts{}, false, err
		}
		if !fits(c, dHeld, dSold) {
			return c, false, nil
		}
	}
}

// fits reports whether adding dHeld and dSold to c keeps the tier within its capacity: the
// condition of sAddTierCounts.
func fits(c boxoffice.TierCounts, dHeld, dSold int) bool {
	return c.Held+dHeld >= 0 && c.Sold+dSold >= 0 && c.Held+dHeld+c.Sold+dSold <= c.Capacity
}

// ForEachTier implements boxoffice.Tx.
func (t *tx) ForEachTier(ctx context.Context, fn func(boxoffice.TierCounts) error) error {
	var lastShow, lastTier string
	for {
		var page []boxoffice.TierCounts
		n, err := t.eachRow(ctx, func(rows pgx.Rows) error {
			c, err := scanCounts(rows)
			page = append(page, c)
			return err
		}, sForEachTier, lastShow, lastTier, forEachPage)
		if err != nil {
			return fmt.Errorf("read tiers: %w", err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if n < forEachPage {
			return nil
		}
		lastShow, lastTier = page[n-1].ShowID, page[n-1].TierID
	}
}

// Holds.

func scanHold(sc scanner) (*boxoffice.Hold, error) {
	var (
		h      boxoffice.Hold
		status string
	)
	if err := sc.Scan(&h.ID, &h.ShowID, &h.TierID, &h.Quantity, &h.Buyer.Email, &status, &h.ExpiresAt,
		&h.CreatedAt, &h.UpdatedAt, &h.APIKeyID); err != nil {
		return nil, err
	}
	h.Status = boxoffice.HoldStatus(status)
	h.ExpiresAt, h.CreatedAt, h.UpdatedAt = utc(h.ExpiresAt), utc(h.CreatedAt), utc(h.UpdatedAt)
	return &h, nil
}

// InsertHold implements boxoffice.Tx.
func (t *tx) InsertHold(ctx context.Context, h *boxoffice.Hold) error {
	tag, err := t.exec(ctx, sInsertHold, h.ID, h.ShowID, h.TierID, h.Quantity, h.Buyer.Email, string(h.Status),
		h.ExpiresAt, h.CreatedAt, h.UpdatedAt, h.APIKeyID)
	if err != nil {
		return fmt.Errorf("insert hold %q: %w", h.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert hold %q", h.ID)
	}
	return nil
}

// GetHold implements boxoffice.Tx. In an Update it locks the hold until the transaction ends,
// so that of a confirm and an expiry of one hold, the second to lock it sees what the first did.
func (t *tx) GetHold(ctx context.Context, id string) (*boxoffice.Hold, error) {
	q := sGetHold
	if t.write {
		q = sGetHoldForUpdate
	}
	h, err := scanHold(t.queryRow(ctx, q, id))
	if err != nil {
		return nil, notFound(err, "hold %q", id)
	}
	return h, nil
}

// EndHold implements boxoffice.Tx. A missing hold is not an error, only not active: ok is false.
func (t *tx) EndHold(ctx context.Context, id string, to boxoffice.HoldStatus, at time.Time) (bool, error) {
	tag, err := t.exec(ctx, sEndHold, string(to), at, id)
	if err != nil {
		return false, fmt.Errorf("end hold %q: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// DueHolds implements boxoffice.Tx.
func (t *tx) DueHolds(ctx context.Context, now time.Time, limit int) ([]*boxoffice.Hold, error) {
	if limit <= 0 {
		return nil, nil
	}
	holds, err := t.readHolds(ctx, sDueHolds, now, limit)
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	return holds, nil
}

// readHolds collects the holds a query returns.
func (t *tx) readHolds(ctx context.Context, sql string, args ...any) ([]*boxoffice.Hold, error) {
	var holds []*boxoffice.Hold
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		h, err := scanHold(rows)
		holds = append(holds, h)
		return err
	}, sql, args...)
	return holds, err
}

// NextHoldExpiry implements boxoffice.Tx. It counts every active hold, those with an order
// waiting for payment too, as the contract says.
func (t *tx) NextHoldExpiry(ctx context.Context) (time.Time, bool, error) {
	var v time.Time
	err := t.queryRow(ctx, sNextHoldExpiry).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next hold expiry: %w", err)
	}
	return utc(v), true, nil
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
	after := ""
	for {
		page, err := t.readHolds(ctx, sForEachHold, after, forEachPage)
		if err != nil {
			return fmt.Errorf("read holds: %w", err)
		}
		for _, h := range page {
			if err := fn(h); err != nil {
				return err
			}
		}
		if len(page) < forEachPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// Orders.

func scanOrder(sc scanner) (*boxoffice.Order, error) {
	var (
		o       boxoffice.Order
		status  string
		tickets []byte
	)
	if err := sc.Scan(&o.ID, &status, &o.ShowID, &o.TierID, &o.HoldID, &o.Quantity, &o.Amount.Amount,
		&o.Amount.Currency, &o.Buyer.Email, &tickets, &o.PaymentToken, &o.ChargeID, &o.RefundID,
		&o.ReleaseOnFailure, &o.CreatedAt, &o.UpdatedAt, &o.APIKeyID); err != nil {
		return nil, err
	}
	o.Status = boxoffice.OrderStatus(status)
	o.CreatedAt, o.UpdatedAt = utc(o.CreatedAt), utc(o.UpdatedAt)
	if len(tickets) > 0 && string(tickets) != "null" {
		if err := json.Unmarshal(tickets, &o.Tickets); err != nil {
			return nil, fmt.Errorf("decode tickets of order %q: %w", o.ID, err)
		}
	}
	return &o, nil
}

// encodeTickets stores tickets as a JSON array, nil as JSON null so that it reads back as nil.
// The string goes to the jsonb column as JSON text.
func encodeTickets(ts []boxoffice.Ticket) (string, error) {
	b, err := json.Marshal(ts)
	if err != nil {
		return "", fmt.Errorf("encode tickets: %w", err)
	}
	return string(b), nil
}

// InsertOrder implements boxoffice.Tx. A second pending_payment or confirmed order of one hold
// (the partial unique index orders_live_hold), like a second order with the same id, is not
// inserted: ECONFLICT.
func (t *tx) InsertOrder(ctx context.Context, o *boxoffice.Order) error {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return err
	}
	tag, err := t.exec(ctx, sInsertOrder, o.ID, string(o.Status), o.ShowID, o.TierID, o.HoldID, o.Quantity,
		o.Amount.Amount, o.Amount.Currency, o.Buyer.Email, tickets, o.PaymentToken, o.ChargeID, o.RefundID,
		o.ReleaseOnFailure, o.CreatedAt, o.UpdatedAt, o.APIKeyID)
	if err != nil {
		return fmt.Errorf("insert order %q: %w", o.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert order %q", o.ID)
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

// liveStatus reports whether an order in status s counts in orders_live_hold.
func liveStatus(s boxoffice.OrderStatus) bool {
	return s == boxoffice.OrderPendingPayment || s == boxoffice.OrderConfirmed
}

// updateOrderSavepoint guards the one UPDATE that may violate a unique index.
const updateOrderSavepoint = "boxoffice_update_order"

// UpdateOrder implements boxoffice.Tx. It also writes ReleaseOnFailure, which a confirm that
// answered 202 turns on. Moving an order back to a live status while its hold has another live
// order is an ECONFLICT.
//
// Only that move can clash with orders_live_hold (an order that stays live keeps its own index
// entry), and an UPDATE has no ON CONFLICT; so that move alone runs under an internal
// savepoint, sent with the UPDATE in one round trip, and a clash rolls back to it, leaving the
// transaction usable as SQLite would.
func (t *tx) UpdateOrder(ctx context.Context, o *boxoffice.Order, from boxoffice.OrderStatus) (bool, error) {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return false, err
	}
	args := []any{string(o.Status), tickets, o.ChargeID, o.RefundID, o.ReleaseOnFailure, o.UpdatedAt, o.ID, string(from)}
	if !liveStatus(o.Status) || liveStatus(from) {
		tag, err := t.exec(ctx, sUpdateOrder, args...)
		if err != nil {
			return false, fmt.Errorf("update order %q: %w", o.ID, err)
		}
		return tag.RowsAffected() == 1, nil
	}
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT " + updateOrderSavepoint)
	b.Queue(sUpdateOrder, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	b.Queue("RELEASE SAVEPOINT " + updateOrderSavepoint)
	err = t.batch(ctx, b)
	if err == nil {
		return tag.RowsAffected() == 1, nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false, fmt.Errorf("update order %q: %w", o.ID, err)
	}
	if _, rerr := t.exec(ctx, "ROLLBACK TO SAVEPOINT "+updateOrderSavepoint+"; RELEASE SAVEPOINT "+updateOrderSavepoint); rerr != nil {
		return false, fmt.Errorf("update order %q: %w (and rolling back: %w)", o.ID, err, rerr)
	}
	if isUnique(err) {
		return false, conflict("update order %q: a live order of hold %q", o.ID, o.HoldID)
	}
	return false, fmt.Errorf("update order %q: %w", o.ID, err)
}

// readOrders collects the orders a query returns.
func (t *tx) readOrders(ctx context.Context, sql string, args ...any) ([]*boxoffice.Order, error) {
	var orders []*boxoffice.Order
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		o, err := scanOrder(rows)
		orders = append(orders, o)
		return err
	}, sql, args...)
	return orders, err
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
		orders, err = t.readOrders(ctx, sListOrders, after, limit)
	case f.APIKeyID == "":
		orders, err = t.readOrders(ctx, sListShowOrders, f.ShowID, after, limit)
	case f.ShowID == "":
		orders, err = t.readOrders(ctx, sListKeyOrders, f.APIKeyID, after, limit)
	default:
		orders, err = t.readOrders(ctx, sListKeyShowOrders, f.APIKeyID, f.ShowID, after, limit)
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
	orders, err := t.readOrders(ctx, sPendingOrders, limit)
	if err != nil {
		return nil, fmt.Errorf("read pending orders: %w", err)
	}
	return orders, nil
}

// ForEachOrder implements boxoffice.Tx.
func (t *tx) ForEachOrder(ctx context.Context, fn func(*boxoffice.Order) error) error {
	after := ""
	for {
		page, err := t.readOrders(ctx, sForEachOrder, after, forEachPage)
		if err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < forEachPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// Idempotency records.

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

// InsertIdemRecord implements boxoffice.Tx.
func (t *tx) InsertIdemRecord(ctx context.Context, r *boxoffice.IdemRecord) error {
	status, body, location := responseArgs(r)
	tag, err := t.exec(ctx, sInsertIdem, r.ID, r.Scope, r.Key, r.Fingerprint, r.HoldID, r.OrderID,
		r.LockedUntil, status, body, location, r.CreatedAt, r.ExpiresAt)
	if err != nil {
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
	tag, err := t.exec(ctx, sUpdateIdem, r.HoldID, r.OrderID, r.LockedUntil, status, body, location, r.ID)
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

// Events.

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

// ListEvents implements boxoffice.Tx. Events come by position. PostgreSQL hands out positions
// at insert, so, unlike on SQLite, position order is commit order only among committed events;
// see AppendEvent for what that asks of a reader.
func (t *tx) ListEvents(ctx context.Context, after int64, limit int) ([]*boxoffice.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	var events []*boxoffice.Event
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		var (
			e    boxoffice.Event
			data []byte
		)
		if err := rows.Scan(&e.Position, &e.ID, &e.Type, &e.Subject, &e.Seq, &data, &e.CreatedAt); err != nil {
			return err
		}
		e.Data, e.CreatedAt = data, utc(e.CreatedAt)
		events = append(events, &e)
		return nil
	}, sListEvents, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// API keys.

// InsertAPIKey implements boxoffice.Tx.
func (t *tx) InsertAPIKey(ctx context.Context, k *boxoffice.APIKey) error {
	tag, err := t.exec(ctx, sInsertAPIKey, k.ID, string(k.Role), k.Label, k.Hash, k.CreatedAt, k.LastUsedAt, k.RevokedAt)
	if err != nil {
		return fmt.Errorf("insert api key %q: %w", k.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert api key %q", k.ID)
	}
	return nil
}

// scanAPIKey reads one row of apiKeyCols.
func scanAPIKey(sc scanner) (*boxoffice.APIKey, error) {
	var (
		k    boxoffice.APIKey
		role string
	)
	if err := sc.Scan(&k.ID, &role, &k.Label, &k.Hash, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt); err != nil {
		return nil, err
	}
	k.Role, k.CreatedAt = boxoffice.Role(role), utc(k.CreatedAt)
	k.LastUsedAt, k.RevokedAt = optUTC(k.LastUsedAt), optUTC(k.RevokedAt)
	return &k, nil
}

// optUTC is utc for an optional time.
func optUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
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
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		k, err := scanAPIKey(rows)
		keys = append(keys, k)
		return err
	}, sListAPIKeys, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey implements boxoffice.Tx.
func (t *tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	var got string
	if err := t.queryRow(ctx, sRevokeAPIKey, at, id).Scan(&got); err != nil {
		return notFound(err, "api key %q", id)
	}
	return nil
}

// TouchAPIKey implements boxoffice.Tx.
func (t *tx) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if _, err := t.exec(ctx, sTouchAPIKey, at, id); err != nil {
		return fmt.Errorf("touch api key %q: %w", id, err)
	}
	return nil
}
