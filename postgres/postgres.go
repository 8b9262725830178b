// Package postgres is the server store: boxoffice.Store on PostgreSQL, through pgx's native
// interface and a connection pool.
//
// Unlike SQLite, PostgreSQL runs writers concurrently, so the store does what SQLite's single
// writer did for free: Update is a READ COMMITTED transaction whose reads that precede a write
// lock their rows (SELECT … FOR UPDATE), the conditional writes re-check their condition on the
// newest row version, and the outbox's per-subject numbering takes a lock per subject. View is a
// REPEATABLE READ READ ONLY transaction: one snapshot for all its statements, no writes.
//
// A failed statement aborts a PostgreSQL transaction, where SQLite undoes the statement only. The
// store's expected failures therefore never fail at the SQL level: a clash with a unique key is
// an INSERT … ON CONFLICT DO NOTHING that inserted nothing, a missing row is an empty result, and
// the one UPDATE that may clash runs under an internal savepoint. A caller that gets ECONFLICT or
// ENOTFOUND can carry on in the same transaction, as on SQLite.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"boxoffice"
	"boxoffice/internal/migrations"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// maxAttempts bounds how often Update runs fn when PostgreSQL aborts the transaction with a
// serialization failure or a deadlock: both mean "run it again", and fn is written to be
// re-runnable, but a transaction that keeps losing must fail rather than spin.
const maxAttempts = 5

// idleInTransaction is the default idle_in_transaction_session_timeout of the store's sessions.
const idleInTransaction = 5 * time.Second

// migrationLockKey is the pg_advisory_xact_lock key that serialises migrations of one database
// across processes ("boxoff" in ASCII, so that it is recognisable in pg_locks).
const migrationLockKey int64 = 0x626f786f6666

// DB is a PostgreSQL store. It implements boxoffice.Store and is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	// retries counts Update attempts run again after a serialization failure or a deadlock, for
	// tests that show a workload never deadlocks.
	retries atomic.Int64
	merge   merger
	// stopAnalysis ends the store's upkeep of its tables (maintain: the early analysis and the
	// churn vacuum); analyzed is closed once it has ended.
	stopAnalysis context.CancelFunc
	analyzed     chan struct{}
}

var _ boxoffice.SpeculativeStore = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value connection string, with
// pgxpool's pool_* parameters) and brings its schema up to date. Several processes may open the
// same database at once: migrations run under an advisory lock, each one once.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's error names the URL with its password masked.
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (the number of CPUs, at least 4) leaves most connections waiting on
		// the network during a stampede; a few per CPU keep the server busy while transactions
		// wait for a row lock, without approaching the server's max_connections.
		cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "boxoffice"
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		// No transaction of the store waits on anything but its own statements (payments and
		// requests happen between transactions), so one idle for seconds belongs to a process
		// that stopped — SIGSTOP, a VM paused, a partition. Its locks, among them a show's
		// lease fence, would hold a takeover back for as long; PostgreSQL ends it instead.
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.Itoa(int(idleInTransaction.Milliseconds()))
	}
	return open(ctx, cfg)
}

// open is Open with the pool's configuration made.
func open(ctx context.Context, cfg *pgxpool.Config) (*DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	db := &DB{pool: pool, analyzed: make(chan struct{})}
	var actx context.Context
	actx, db.stopAnalysis = context.WithCancel(context.Background())
	go func() {
		defer close(db.analyzed)
		db.maintain(actx)
	}()
	return db, nil
}

// Close closes every connection of the pool, waiting for those in use to be returned.
func (db *DB) Close() error {
	db.stopAnalysis()
	<-db.analyzed
	db.pool.Close()
	return nil
}

// beginWrite starts an Update: READ COMMITTED, so that each statement sees what committed before
// it started, and an UPDATE or SELECT … FOR UPDATE that waited for a row lock works on the row as
// its previous holder left it. That, with the row locks the store takes, is what keeps the counts
// right; SERIALIZABLE would add aborts the strategies do not need.
const beginWrite = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"

// beginRead starts a View: one snapshot for all of fn's statements, as View promises; read-only,
// so that a write is refused rather than committed.
const beginRead = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

// Update runs fn in a READ COMMITTED read-write transaction and commits when fn returns nil; the
// commit is durable when Update returns (as durable as the server's synchronous_commit makes
// it). An error from fn rolls back and is returned as is. When PostgreSQL aborted the transaction
// with a serialization failure or a deadlock, fn runs again as a whole in a new transaction, up
// to maxAttempts times. fn must not call Update.
func (db *DB) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return db.update(ctx, false, fn)
}

func (db *DB) update(ctx context.Context, deferring bool, fn func(tx boxoffice.Tx) error) error {
	for attempt := 1; ; attempt++ {
		retry, missed, err := db.run(ctx, beginWrite, deferring, fn)
		if missed && ctx.Err() == nil {
			// Not an attempt that failed: only one whose answers were guesses.
			deferring = false
			attempt--
			continue
		}
		if err == nil || !retry || attempt == maxAttempts || ctx.Err() != nil {
			return storageFull(err)
		}
		db.retries.Add(1)
		// A short random pause lets the transaction that won finish, so that the two do not
		// collide again in lockstep.
		pause := time.NewTimer(time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond))))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return err
		}
	}
}

// View runs fn in a REPEATABLE READ READ ONLY transaction: every statement sees the snapshot
// of the first, and a write fails.
func (db *DB) View(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	_, _, err := db.run(ctx, beginRead, false, fn)
	return err
}

// run runs fn in one transaction on a connection of the pool. The transaction's BEGIN is not a
// round trip of its own: it goes with fn's first statement (see tx.begun). retry says whether
// the transaction failed because PostgreSQL aborted it with a serialization failure or a deadlock,
// so that running fn again may succeed; missed, that a deferred write did not do as fn was told
// (the run is void and rolled back, whatever err says). Only an Update defers (deferring).
func (db *DB) run(ctx context.Context, begin string, deferring bool, fn func(tx boxoffice.Tx) error) (retry, missed bool, err error) {
	write := begin == beginWrite
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return false, false, fmt.Errorf("begin transaction: %w", err)
	}
	t := &tx{conn: conn, begin: begin, write: write, deferring: deferring && write}
	ended := false
	defer func() {
		if t.begun && !ended {
			// Also after a panic in fn. The caller's context may be why fn failed, so the
			// rollback gets a context of its own.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		// From here on every method of t fails. A connection left in a transaction (its
		// ROLLBACK failed) or in the middle of a statement is closed by the pool, not reused.
		t.closed = true
		conn.Release()
	}()
	if err := fn(t); err != nil {
		// fn's answer stands only if every guess it was given held: send what is deferred
		// (then roll back) to learn that.
		if !t.missed && len(t.pending) > 0 && t.usable() == nil {
			_ = t.flush(context.WithoutCancel(ctx))
		}
		return t.retry, t.missed, err
	}
	if t.missed {
		return false, true, errors.New("transaction not committed: a deferred write did not do as assumed")
	}
	if !t.begun && len(t.pending) == 0 {
		return false, false, nil // fn ran no statement: there is nothing to commit
	}
	if !write {
		return false, false, nil // the deferred ROLLBACK ends a read transaction as well as COMMIT would
	}
	if t.err != nil {
		// fn carried on after a statement failed on the client side; what the server has of
		// the transaction is not what fn meant to commit.
		return false, false, fmt.Errorf("transaction not committed after a failed statement: %w", t.err)
	}
	// fn's work is complete: the commit is not abandoned because the caller's context ended in
	// the meantime, which would only make its outcome unknown. COMMIT goes in the round trip of
	// the deferred writes; should one of them fail, the server skips the rest of the batch and
	// the transaction is rolled back like any other.
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	err = t.send(context.WithoutCancel(ctx), b)
	if err == nil && !t.missed {
		ended = true
	}
	switch {
	case t.missed:
		return false, true, errors.New("transaction not committed: a deferred write did not do as assumed")
	case err != nil:
		return isRetryable(err), false, fmt.Errorf("commit: %w", err)
	case tag.String() != "COMMIT":
		// A statement failed on the server and fn ignored it: PostgreSQL answers COMMIT of an
		// aborted transaction with ROLLBACK.
		return t.retry, false, errors.New("transaction not committed: a statement in it failed and was not rolled back to a savepoint")
	}
	return false, false, nil
}

// isRetryable reports whether err is PostgreSQL aborting a transaction that may succeed when
// run again: a serialization failure or a deadlock.
func isRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isUnique reports whether err is a violation of a primary key or unique index.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// storageFull turns PostgreSQL's disk_full (53100) into boxoffice.StorageFull, so the client
// gets a 503 to retry rather than a 500; other errors pass as they are.
func storageFull(err error) error {
	var pe *pgconn.PgError
	if err != nil && errors.As(err, &pe) && pe.Code == "53100" {
		return boxoffice.StorageFull(err)
	}
	return err
}

// migrate applies the migrations not yet recorded in schema_migrations, all in one transaction
// (PostgreSQL's DDL is transactional, so a failed migration leaves the schema as it was). The
// transaction first takes an advisory lock, so that servers starting at once take turns; it is
// READ COMMITTED, so that the statements after the lock see what the previous holder committed
// (a REPEATABLE READ snapshot would be taken before the lock was granted).
func migrate(ctx context.Context, pool *pgxpool.Pool) (err error) {
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	t, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = t.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("lock schema for migration: %w", err)
	}
	if _, err := t.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := t.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if len(ms) > 0 && current > ms[len(ms)-1].Version {
		// A newer program migrated this database; this one does not know the schema it would write.
		return fmt.Errorf("database schema version %d is newer than this program's %d", current, ms[len(ms)-1].Version)
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		// Without arguments pgx sends the text as a simple query, which may hold many statements.
		if _, err := t.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		if _, err := t.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
	}
	if err := t.Commit(ctx); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}

// utc is how a stored time comes back: pgx gives timestamptz in the local zone, the domain
// keeps UTC. The zero time is stored as itself (0001-01-01 UTC) and so comes back as
// time.Time{}.
func utc(t time.Time) time.Time { return t.UTC() }
