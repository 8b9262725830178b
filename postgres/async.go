package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The async side's statements: they run once per relay batch or consumed message.
const (
	sRelayCheckpoint    = `SELECT position FROM relay_checkpoints WHERE name = $1`
	sSetRelayCheckpoint = `INSERT INTO relay_checkpoints (name, position) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET position = excluded.position`
	// ON CONFLICT DO NOTHING turns a duplicate into "no row inserted" instead of an error that
	// would abort the transaction, whose effect the consumer may still want to commit.
	sInsertInbox = `INSERT INTO inbox (consumer, event_id, applied_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`
	sInboxHas = `SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)`
)

// RelayCheckpoint implements boxoffice.Tx.
func (t *tx) RelayCheckpoint(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := t.queryRow(ctx, sRelayCheckpoint, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read relay checkpoint %q: %w", name, err)
	}
	return pos, nil
}

// SetRelayCheckpoint implements boxoffice.Tx.
func (t *tx) SetRelayCheckpoint(ctx context.Context, name string, position int64) error {
	if _, err := t.exec(ctx, sSetRelayCheckpoint, name, position); err != nil {
		return fmt.Errorf("set relay checkpoint %q: %w", name, err)
	}
	return nil
}

// InsertInboxEvent implements boxoffice.Tx.
func (t *tx) InsertInboxEvent(ctx context.Context, consumer, eventID string, at time.Time) error {
	tag, err := t.exec(ctx, sInsertInbox, consumer, eventID, at)
	if err != nil {
		return fmt.Errorf("record %s applied event %q: %w", consumer, eventID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("record %s applied event %q", consumer, eventID)
	}
	return nil
}

// InboxHas implements boxoffice.Tx.
func (t *tx) InboxHas(ctx context.Context, consumer, eventID string) (bool, error) {
	var ok bool
	if err := t.queryRow(ctx, sInboxHas, consumer, eventID).Scan(&ok); err != nil {
		return false, fmt.Errorf("read inbox of %s: %w", consumer, err)
	}
	return ok, nil
}
