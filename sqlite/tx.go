package sqlite

import (
	"context"
	"database/sql"
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

// passFnErr returns fn's own error as is and wraps a store error.
func passFnErr(err, fnErr error, what string) error {
	if err == nil || (fnErr != nil && err == fnErr) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
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
