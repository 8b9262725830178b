package sqlite

import (
	"context"
	"strconv"
	"time"
)

// Bounds of the WAL. SQLite checkpoints after commits once the WAL passes 1,000 pages, but a
// checkpoint cannot start the WAL over while a reader still uses its older frames, and under a
// steady crowd of readers some reader always does: the WAL then only grows, until it has taken
// the free space of a small disk. Past walLimit, the writer forces a checkpoint that waits for
// the readers (TRUNCATE) — briefly, so that a long reader costs the writer at most walWait now
// and then rather than a stall — and journal_size_limit trims the file after ordinary
// checkpoints too.
const (
	walLimit      = 64 << 20
	walWait       = 100 * time.Millisecond
	walRetryAfter = 5 * time.Second
)

// walBound is the writer's state for boundWAL; only the group commit's loop uses it.
type walBound struct {
	limit     int64
	lastTried time.Time
}

// boundWAL runs in the writer between batches: when the WAL has grown past its limit, it
// checkpoints it into the database and truncates it, waiting for readers at most walWait, and
// tries again no sooner than walRetryAfter when readers held it up.
func (db *DB) boundWAL() {
	limit := db.walb.limit
	if limit <= 0 {
		limit = walLimit
	}
	st, err := db.wal.Stat()
	if err != nil || st.Size() <= limit || time.Since(db.walb.lastTried) < walRetryAfter {
		return
	}
	db.walb.lastTried = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*walWait)
	defer cancel()
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	// The wait is the connection's busy timeout: short for this checkpoint only.
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.Itoa(int(walWait.Milliseconds()))); err != nil {
		return
	}
	defer func() {
		_, _ = conn.ExecContext(context.Background(), "PRAGMA busy_timeout = "+strconv.Itoa(busyTimeoutMS))
	}()
	var busy, frames, done int
	_ = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
}
