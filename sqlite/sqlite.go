// Package sqlite is the embedded store: boxoffice.Store on one SQLite file, through the CGo-free
// modernc.org/sqlite driver.
//
// SQLite has one writer at a time, so the store has exactly one writing connection and every
// Update is a BEGIN IMMEDIATE transaction on it: writes are serialised in the process by the
// connection pool rather than by SQLite's busy loop, and a transaction never has to upgrade a read
// lock to a write lock halfway (which could fail with SQLITE_BUSY). Reads go to a separate pool of
// read-only connections; in WAL mode they see a snapshot and never wait on the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"boxoffice"
	"boxoffice/internal/migrations"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// busyTimeoutMS is how long a connection waits for a lock another process holds (a `verify` run,
// a backup) before it fails with SQLITE_BUSY. In-process writers never contend: they queue for
// the single writing connection.
const busyTimeoutMS = 10000

// DB is a SQLite store. It implements boxoffice.Store and is safe for concurrent use.
type DB struct {
	path string
	w    *sql.DB // one connection: the only writer
	r    *sql.DB // read-only connections for View
	ws   stmts   // statements prepared on w
	rs   stmts   // statements prepared on r

	gc groupCommit
	// wal is the WAL file, fsync'd by the group commit's syncer after each batch: the writer runs
	// with synchronous=NORMAL, so COMMIT writes the frames without waiting for the disk.
	wal *os.File
	// beforeSync, in tests, runs before each fsync of the WAL; an error is taken as the fsync's.
	beforeSync func() error
	// walb bounds the WAL's size (walbound.go); the writer's loop alone uses it.
	walb walBound
	// joins are the waiting room's join statements (waitroom.go), prepared on first use.
	joins joinStmts
}

var _ boxoffice.Store = (*DB)(nil)

// Open opens the store at path, creating the file and its directory when missing, and brings
// its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve database path: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	db := &DB{path: abs}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()

	// synchronous=NORMAL: COMMIT writes the WAL frames (so a killed process loses nothing) but
	// does not fsync them; the group commit's syncer fsyncs the WAL before any caller of the batch
	// is answered (groupCommit), so nothing acknowledged is lost on a power cut either, and the
	// writer runs the next batch while the disk syncs this one. (FULL syncs inside COMMIT, with
	// the writer waiting.) Checkpoints still sync the WAL and the database file themselves.
	// cache_size is negative KiB; the writer keeps its cache across transactions (no other
	// connection writes), so a cache saves reads on the hot path. 8 MiB holds the pages a sale
	// touches (the tier rows, the right edges of the growing indexes); more only kept cold pages
	// of a big sale in memory, which the OS's page cache holds for a re-read anyway.
	// temp_store=memory keeps the statement and savepoint sub-journals in memory: group commit
	// runs every transaction of a batch under a savepoint, and with the default (a temp file) each
	// page a savepoint first touched was copied out with a pwrite, 17% of the writer's CPU in the
	// profile. The sub-journal only serves rollbacks inside the open transaction, which a crash
	// discards anyway, so it needs no file.
	db.w, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_txlock":       {"immediate"},
		"_busy_timeout": {strconv.Itoa(busyTimeoutMS)},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_foreign_keys": {"on"},
		"_pragma":       {"cache_size(-8192)", "temp_store(memory)", "journal_size_limit(" + strconv.Itoa(walLimit) + ")"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)
	if err := db.w.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := migrate(ctx, db.w); err != nil {
		return nil, err
	}
	// The migrations wrote, so the WAL exists; it stays (same file) while a connection is open.
	if db.wal, err = os.Open(abs + "-wal"); err != nil {
		return nil, fmt.Errorf("open the WAL: %w", err)
	}
	// What a killed process committed but did not sync is in the WAL now: sync it, so that all
	// the store shows from here on is on disk, and start the durable event position there.
	if err := db.syncWAL(); err != nil {
		return nil, err
	}
	var last int64
	if err := db.w.QueryRowContext(ctx, stmtSQL[sEventsSeq]).Scan(&last); err != nil {
		return nil, fmt.Errorf("read the last event position: %w", err)
	}
	db.gc.durablePos.Store(last)

	// The readers are opened after the writer has switched the file to WAL (a persistent
	// setting), so they need not and, being query_only, could not.
	db.r, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_busy_timeout": {strconv.Itoa(busyTimeoutMS)},
		"_foreign_keys": {"on"},
		"_query_only":   {"on"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open database readers: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	db.r.SetMaxOpenConns(n)
	db.r.SetMaxIdleConns(n)
	db.r.SetConnMaxLifetime(0)
	db.r.SetConnMaxIdleTime(0)

	if err := db.ws.prepare(ctx, db.w); err != nil {
		return nil, err
	}
	if err := db.rs.prepare(ctx, db.r); err != nil {
		return nil, err
	}
	db.gc.start(db)
	ok = true
	return db, nil
}

// dsn is a file: URI, so that any path (one with '?' or '#' in it too) reaches SQLite intact; the
// driver reads the underscore parameters and SQLite ignores them.
func dsn(abs string, params url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: params.Encode()}
	return u.String()
}

// syncWAL makes every committed WAL frame durable. fsync on a descriptor of our own flushes the
// file's pages whichever descriptor wrote them.
func (db *DB) syncWAL() error {
	if db.beforeSync != nil {
		if err := db.beforeSync(); err != nil {
			return err
		}
	}
	if err := db.wal.Sync(); err != nil {
		return fmt.Errorf("fsync the WAL: %w", err)
	}
	return nil
}

// DurableEventPosition is the highest event position whose commit is on disk. A reader may see a
// commit shortly before that (see groupCommit); the relay publishes no event past this position,
// so that a power cut cannot take back an event that already left.
func (db *DB) DurableEventPosition() int64 { return db.gc.durablePos.Load() }

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Close closes the statements and connections. The last connection to close checkpoints the WAL
// into the database file.
func (db *DB) Close() error {
	db.gc.stop()
	var errs []error
	errs = append(errs, db.ws.close(), db.rs.close())
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.wal != nil {
		errs = append(errs, db.wal.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// View runs fn in a read transaction on a reader connection. Its snapshot is taken at its first
// read and holds until fn returns; a write fails, the connection being query_only.
func (db *DB) View(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	sqlTx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read transaction: %w", err)
	}
	defer func() { _ = sqlTx.Rollback() }()
	return fn(&tx{tx: sqlTx, prepared: &db.rs})
}

// migrate applies the migrations not yet recorded in schema_migrations, all in one immediate
// transaction, so that two processes opening a new file at once apply each migration once and a
// failed migration leaves the schema as it was.
func migrate(ctx context.Context, w *sql.DB) (err error) {
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	t, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = t.Rollback()
		}
	}()
	if _, err := t.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if len(ms) > 0 && current > ms[len(ms)-1].Version {
		// A newer binary migrated this file; this one does not know the schema it would write.
		return fmt.Errorf("database schema version %d is newer than this program's %d", current, ms[len(ms)-1].Version)
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if _, err := t.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}

// isUnique reports whether err is a violation of a primary key or unique index.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// storageFull turns SQLite's "database or disk is full" into boxoffice.StorageFull, so the
// client gets a 503 to retry rather than a 500; other errors pass as they are.
func storageFull(err error) error {
	var se *sqlite.Error
	if err != nil && errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return boxoffice.StorageFull(err)
	}
	return err
}

// isConstraint reports whether err is a constraint violation, which SQLite undoes for the
// failing statement only, leaving the transaction as it was.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// wrapWrite turns a unique-key violation into ECONFLICT, which callers handle by re-reading,
// and wraps any other error with what was being done.
func wrapWrite(err error, what string) error {
	if isUnique(err) {
		return boxoffice.Errorf(boxoffice.ECONFLICT, "%s: already exists", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// micros is how a time is stored: Unix microseconds, with the zero time as 0 (its UnixMicro is a
// large negative number that would mean nothing to anyone reading the file).
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros reverses micros; stored times come back in UTC.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
