package postgres

import (
	"context"
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

	// deferring is set on an Update's first run: writes whose only answer is whether they
	// changed a row (see later) are not sent when called but queued in pending, assumed to do
	// what the hot path expects, and sent with the next statement whose answer fn needs, or
	// with COMMIT — so a transaction of writes costs one round trip, not one per statement, and
	// holds its row locks for that long only. Should one not do as assumed (missed), the run is
	// void: Update rolls it back and runs fn again without deferring, where each answer is real.
	deferring bool
	pending   []deferredWrite
	missed    bool
	// queued and sent count deferred statements: a savepoint taken at queued == n can be rolled
	// back by dropping the pending statements past n, as long as none of them was sent.
	queued, sent int
	marks        map[string]int // savepoint name → queued when it was taken, while deferring
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

// later queues a deferred write of the row key at step of LockOrder when the transaction defers
// them, and reports whether it did. The statement must be one of expect's, which the server fails,
// aborting the transaction, when the write did not do what its caller was told it did: the
// failure voids the run (see send), and COMMIT, sent after it in the same round trip, is skipped
// with everything else that follows.
func (t *tx) later(step lockStep, key, sql string, args ...any) bool {
	return t.laterAs(deferredWrite{step: step, key: key, sql: sql, args: args})
}

// laterAs is later for a write that may coalesce with others of its kind (see coalesced).
func (t *tx) laterAs(w deferredWrite) bool {
	if !t.deferring || t.usable() != nil {
		return false
	}
	t.pending = append(t.pending, w)
	t.queued++
	return true
}

// expect wraps a write without a RETURNING clause so that it fails with a division by zero
// unless the number of rows it changed compares to 1 as cmp says ("=" or ">="). Data-modifying
// WITH queries run to completion whether or not the outer query reads them; the count is a
// subquery, so the planner cannot fold the division into a constant error.
func expect(sql, cmp string) string {
	return "WITH w AS (" + sql + " RETURNING 1) SELECT 1 / ((SELECT count(*) FROM w) " + cmp + " 1)::int"
}

// direct reports whether a statement can go on its own: the transaction has begun and no
// deferred write waits to go first.
func (t *tx) direct() bool { return t.begun && len(t.pending) == 0 }

// flush sends the deferred writes, if any, in one round trip.
func (t *tx) flush(ctx context.Context) error {
	if len(t.pending) == 0 {
		return nil
	}
	return t.batch(ctx, &pgx.Batch{})
}

// send sends b's statements in one round trip, after BEGIN if the transaction has not begun and
// after the deferred writes waiting, and runs their callbacks; the first error, of a statement or
// a callback, is returned as is. A failure of a batch that carried deferred writes voids the run
// (missed), since which of its statements failed is not known.
// A callback should not return pgx.ErrNoRows: pgx takes any error of a batch as a reason to
// prepare all its statements again.
func (t *tx) send(ctx context.Context, b *pgx.Batch) error {
	if err := t.usable(); err != nil {
		return err
	}
	carried := false
	if len(t.pending) > 0 {
		carried = true
		b.QueuedQueries = append(coalesced(t.pending), b.QueuedQueries...)
		t.pending = nil
		t.sent = t.queued
	}
	if !t.begun {
		t.begun = true
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: t.begin}}, b.QueuedQueries...)
	}
	err := t.conn.SendBatch(ctx, b).Close()
	if err != nil && carried {
		t.missed = true
	}
	return err
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
	case t.direct():
		tag, err := t.conn.Exec(ctx, sql, args...)
		return tag, t.note(err)
	case len(args) == 0 && len(t.pending) == 0:
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
	if t.direct() {
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
	if t.direct() {
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

// showRow scans a row of sGetShow or sListShows: a show and one of its tiers, or NULLs in the
// tier's columns for a show without tiers.
type showRow struct {
	s                    boxoffice.Show
	maxPerBuyer          pgtype.Int4
	cancelCutoff         pgtype.Int4
	tierID, name, cur    pgtype.Text
	capacity, held, sold pgtype.Int4
	amount               pgtype.Int8
	seated               pgtype.Bool
}

func (r *showRow) scan(sc scanner) error {
	r.maxPerBuyer, r.cancelCutoff, r.tierID = pgtype.Int4{}, pgtype.Int4{}, pgtype.Text{}
	if err := sc.Scan(&r.s.ID, &r.s.Name, &r.s.StartsAt, &r.s.HoldTTLSeconds, &r.maxPerBuyer, &r.s.CreatedAt,
		&r.s.UpdatedAt, &r.cancelCutoff, &r.tierID, &r.name, &r.capacity, &r.amount, &r.cur, &r.held, &r.sold, &r.seated); err != nil {
		return err
	}
	r.s.StartsAt, r.s.CreatedAt, r.s.UpdatedAt = utc(r.s.StartsAt), utc(r.s.CreatedAt), utc(r.s.UpdatedAt)
	r.s.MaxPerBuyer, r.s.CancelCutoffSeconds = optInt(r.maxPerBuyer), optInt(r.cancelCutoff)
	return nil
}

// optInt reads an optional integer, NULL as nil.
func optInt(v pgtype.Int4) *int {
	if !v.Valid {
		return nil
	}
	n := int(v.Int32)
	return &n
}

// nullInt stores an optional integer, nil as NULL.
func nullInt(v *int) pgtype.Int4 {
	if v == nil {
		return pgtype.Int4{}
	}
	return pgtype.Int4{Int32: int32(*v), Valid: true}
}

// tier returns the row's tier; ok is false for a show without tiers.
func (r *showRow) tier() (tr boxoffice.Tier, ok bool) {
	if !r.tierID.Valid {
		return tr, false
	}
	tr = boxoffice.Tier{
		ID: r.tierID.String, Name: r.name.String, Capacity: int(r.capacity.Int32),
		Price: boxoffice.Money{Amount: r.amount.Int64, Currency: r.cur.String},
		Held:  int(r.held.Int32), Sold: int(r.sold.Int32), Seated: r.seated.Bool,
	}
	tr.Available = tr.Capacity - tr.Held - tr.Sold
	return tr, true
}

// addTierCountsTries is how often AddTierCounts runs its conditional UPDATE without a lock
// before it locks the row to settle the outcome.
const addTierCountsTries = 3

// fits reports whether adding dHeld and dSold to c keeps the tier within its capacity: the
// condition of sAddTierCounts.
func fits(c boxoffice.TierCounts, dHeld, dSold int) bool {
	return c.Held+dHeld >= 0 && c.Sold+dSold >= 0 && c.Held+dHeld+c.Sold+dSold <= c.Capacity
}

// liveStatus reports whether an order in status s counts in orders_live_hold.
func liveStatus(s boxoffice.OrderStatus) bool {
	return s == boxoffice.OrderPendingPayment || s == boxoffice.OrderConfirmed
}

// optUTC is utc for an optional time.
func optUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
