package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The async side's statements run unprepared: they run once per relay batch or consumed
// message, not on the hot path of a sale, so compiling them each time costs nothing that shows.

// execRaw runs an unprepared statement with the same failure bookkeeping as exec.
func (t *tx) execRaw(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if t.err != nil {
		return nil, t.failed()
	}
	res, err := t.tx.ExecContext(t.stmtCtx(ctx), q, args...)
	return res, t.note(err)
}

// queryRowRaw runs an unprepared query of one row and scans it into dest.
func (t *tx) queryRowRaw(ctx context.Context, q string, args []any, dest ...any) error {
	if t.err != nil {
		return t.failed()
	}
	return t.note(t.tx.QueryRowContext(t.stmtCtx(ctx), q, args...).Scan(dest...))
}

// RelayCheckpoint implements boxoffice.Tx.
func (t *tx) RelayCheckpoint(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := t.queryRowRaw(ctx, `SELECT position FROM relay_checkpoints WHERE name = ?`, []any{name}, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read relay checkpoint %q: %w", name, err)
	}
	return pos, nil
}

// SetRelayCheckpoint implements boxoffice.Tx.
func (t *tx) SetRelayCheckpoint(ctx context.Context, name string, position int64) error {
	_, err := t.execRaw(ctx, `INSERT INTO relay_checkpoints (name, position) VALUES (?1, ?2)
		ON CONFLICT (name) DO UPDATE SET position = excluded.position`, name, position)
	if err != nil {
		return fmt.Errorf("set relay checkpoint %q: %w", name, err)
	}
	return nil
}

// InsertInboxEvent implements boxoffice.Tx.
func (t *tx) InsertInboxEvent(ctx context.Context, consumer, eventID string, at time.Time) error {
	_, err := t.execRaw(ctx, `INSERT INTO inbox (consumer, event_id, applied_at) VALUES (?, ?, ?)`,
		consumer, eventID, micros(at))
	if err != nil {
		return wrapWrite(err, fmt.Sprintf("record %s applied event %q", consumer, eventID))
	}
	return nil
}

// InboxHas implements boxoffice.Tx.
func (t *tx) InboxHas(ctx context.Context, consumer, eventID string) (bool, error) {
	var n int
	err := t.queryRowRaw(ctx, `SELECT COUNT(*) FROM inbox WHERE consumer = ? AND event_id = ?`,
		[]any{consumer, eventID}, &n)
	if err != nil {
		return false, fmt.Errorf("read inbox of %s: %w", consumer, err)
	}
	return n > 0, nil
}
