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
	_, err := t.exec(ctx, sInsertInbox, consumer, eventID, micros(at))
	if err != nil {
		return wrapWrite(err, fmt.Sprintf("record %s applied event %q", consumer, eventID))
	}
	return nil
}

// InsertInboxEvents implements boxoffice.Tx.
func (t *tx) InsertInboxEvents(ctx context.Context, consumer string, eventIDs []string, at time.Time) error {
	if len(eventIDs) == 0 {
		return nil
	}
	if _, err := t.exec(ctx, sInsertInboxes, consumer, jsonList(eventIDs), micros(at)); err != nil {
		return wrapWrite(err, fmt.Sprintf("record %s applied %d events", consumer, len(eventIDs)))
	}
	return nil
}

// InboxApplied implements boxoffice.Tx.
func (t *tx) InboxApplied(ctx context.Context, consumer string, eventIDs []string) ([]string, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	var applied []string
	rows, err := t.query(ctx, sInboxApplied, consumer, jsonList(eventIDs))
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		applied = append(applied, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", consumer, err)
	}
	return applied, nil
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

// queryRaw runs an unprepared query and calls scan for each row.
func (t *tx) queryRaw(ctx context.Context, q string, args []any, scan func(*sql.Rows) error) error {
	if t.err != nil {
		return t.failed()
	}
	rows, err := t.tx.QueryContext(t.stmtCtx(ctx), q, args...)
	return t.eachRow(rows, t.note(err), scan)
}

// SweepInbox implements boxoffice.Tx.
func (t *tx) SweepInbox(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.execRaw(ctx, `DELETE FROM inbox WHERE (consumer, event_id) IN
		(SELECT consumer, event_id FROM inbox WHERE applied_at < ? LIMIT ?)`, micros(before), limit)
	if err != nil {
		return 0, fmt.Errorf("sweep inbox: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Webhook endpoints.

const webhookColumns = `id, url, event_types, secret, status, disabled_reason, created_at, updated_at,
	previous_secret, previous_secret_expires_at`

// PutWebhookEndpoint implements boxoffice.Tx.
func (t *tx) PutWebhookEndpoint(ctx context.Context, w *boxoffice.WebhookEndpoint) (bool, error) {
	types, err := json.Marshal(w.EventTypes)
	if err != nil {
		return false, err
	}
	var n int
	if err := t.queryRowRaw(ctx, `SELECT COUNT(*) FROM webhook_endpoints WHERE id = ?`, []any{w.ID}, &n); err != nil {
		return false, fmt.Errorf("read webhook endpoint %q: %w", w.ID, err)
	}
	_, err = t.execRaw(ctx, `INSERT INTO webhook_endpoints (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, event_types = excluded.event_types,
			secret = excluded.secret, status = excluded.status, disabled_reason = excluded.disabled_reason,
			created_at = excluded.created_at, updated_at = excluded.updated_at,
			previous_secret = excluded.previous_secret,
			previous_secret_expires_at = excluded.previous_secret_expires_at`,
		w.ID, w.URL, string(types), w.Secret, string(w.Status), w.DisabledReason, micros(w.CreatedAt), micros(w.UpdatedAt),
		w.PreviousSecret, optMicros(w.PreviousSecretExpiresAt))
	if err != nil {
		return false, wrapWrite(err, fmt.Sprintf("put webhook endpoint %q", w.ID))
	}
	return n == 0, nil
}

// scanWebhook reads one row of webhookColumns.
func scanWebhook(scan func(dest ...any) error) (*boxoffice.WebhookEndpoint, error) {
	var (
		w                             boxoffice.WebhookEndpoint
		types, status                 string
		createdAt, updatedAt, prevExp int64
	)
	if err := scan(&w.ID, &w.URL, &types, &w.Secret, &status, &w.DisabledReason, &createdAt, &updatedAt,
		&w.PreviousSecret, &prevExp); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(types), &w.EventTypes); err != nil {
		return nil, fmt.Errorf("webhook endpoint %q: event types: %w", w.ID, err)
	}
	w.Status, w.CreatedAt, w.UpdatedAt = boxoffice.WebhookStatus(status), fromMicros(createdAt), fromMicros(updatedAt)
	w.PreviousSecretExpiresAt = optTime(prevExp)
	return &w, nil
}

// GetWebhookEndpoint implements boxoffice.Tx.
func (t *tx) GetWebhookEndpoint(ctx context.Context, id string) (*boxoffice.WebhookEndpoint, error) {
	if t.err != nil {
		return nil, t.failed()
	}
	row := t.tx.QueryRowContext(t.stmtCtx(ctx), `SELECT `+webhookColumns+` FROM webhook_endpoints WHERE id = ?`, id)
	w, err := scanWebhook(row.Scan)
	if err != nil {
		return nil, notFound(t.note(err), "webhook endpoint %s", id)
	}
	return w, nil
}

// DeleteWebhookEndpoint implements boxoffice.Tx.
func (t *tx) DeleteWebhookEndpoint(ctx context.Context, id string) (bool, error) {
	res, err := t.execRaw(ctx, `DELETE FROM webhook_endpoints WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("delete webhook endpoint %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ListWebhookEndpoints implements boxoffice.Tx.
func (t *tx) ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error) {
	var out []*boxoffice.WebhookEndpoint
	err := t.queryRaw(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints ORDER BY id`, nil, func(rows *sql.Rows) error {
		w, err := scanWebhook(rows.Scan)
		if err == nil {
			out = append(out, w)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return out, nil
}
