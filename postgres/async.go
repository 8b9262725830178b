package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"boxoffice"
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
	sInsertInboxes = `INSERT INTO inbox (consumer, event_id, applied_at) SELECT $1, unnest($2::text[]), $3
		ON CONFLICT DO NOTHING`
	sInboxHas     = `SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)`
	sInboxApplied = `SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2)`
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

// InsertInboxEvents implements boxoffice.Tx.
func (t *tx) InsertInboxEvents(ctx context.Context, consumer string, eventIDs []string, at time.Time) error {
	if len(eventIDs) == 0 {
		return nil
	}
	if _, err := t.exec(ctx, sInsertInboxes, consumer, eventIDs, at); err != nil {
		return fmt.Errorf("record %s applied %d events: %w", consumer, len(eventIDs), err)
	}
	return nil
}

// InboxApplied implements boxoffice.Tx.
func (t *tx) InboxApplied(ctx context.Context, consumer string, eventIDs []string) ([]string, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	var applied []string
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		applied = append(applied, id)
		return nil
	}, sInboxApplied, consumer, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", consumer, err)
	}
	return applied, nil
}

// InboxHas implements boxoffice.Tx.
func (t *tx) InboxHas(ctx context.Context, consumer, eventID string) (bool, error) {
	var ok bool
	if err := t.queryRow(ctx, sInboxHas, consumer, eventID).Scan(&ok); err != nil {
		return false, fmt.Errorf("read inbox of %s: %w", consumer, err)
	}
	return ok, nil
}

// Inbox sweep and webhook endpoints.
const (
	sSweepInbox = `DELETE FROM inbox WHERE (consumer, event_id) IN
		(SELECT consumer, event_id FROM inbox WHERE applied_at < $1 LIMIT $2)`
	webhookColumns = `id, url, event_types, secret, status, disabled_reason, created_at, updated_at,
		previous_secret, previous_secret_expires_at`
	sPutWebhookEndpoint = `INSERT INTO webhook_endpoints (` + webhookColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, event_types = excluded.event_types,
			secret = excluded.secret, status = excluded.status, disabled_reason = excluded.disabled_reason,
			created_at = excluded.created_at, updated_at = excluded.updated_at,
			previous_secret = excluded.previous_secret,
			previous_secret_expires_at = excluded.previous_secret_expires_at
		RETURNING (xmax = 0)`
	sGetWebhookEndpoint    = `SELECT ` + webhookColumns + ` FROM webhook_endpoints WHERE id = $1`
	sDeleteWebhookEndpoint = `DELETE FROM webhook_endpoints WHERE id = $1`
	sListWebhookEndpoints  = `SELECT ` + webhookColumns + ` FROM webhook_endpoints ORDER BY id`
)

// SweepInbox implements boxoffice.Tx.
func (t *tx) SweepInbox(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := t.exec(ctx, sSweepInbox, before, limit)
	if err != nil {
		return 0, fmt.Errorf("sweep inbox: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutWebhookEndpoint implements boxoffice.Tx. xmax is 0 on a row the statement inserted and the
// updating transaction's id on one it updated, which tells created from replaced in one round trip.
func (t *tx) PutWebhookEndpoint(ctx context.Context, w *boxoffice.WebhookEndpoint) (bool, error) {
	var created bool
	err := t.queryRow(ctx, sPutWebhookEndpoint, w.ID, w.URL, w.EventTypes, w.Secret, string(w.Status),
		w.DisabledReason, w.CreatedAt, w.UpdatedAt, w.PreviousSecret, w.PreviousSecretExpiresAt).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("put webhook endpoint %q: %w", w.ID, err)
	}
	return created, nil
}

// scanWebhook reads one row of webhookColumns.
func scanWebhook(scan func(dest ...any) error) (*boxoffice.WebhookEndpoint, error) {
	var (
		w      boxoffice.WebhookEndpoint
		status string
	)
	if err := scan(&w.ID, &w.URL, &w.EventTypes, &w.Secret, &status, &w.DisabledReason, &w.CreatedAt, &w.UpdatedAt,
		&w.PreviousSecret, &w.PreviousSecretExpiresAt); err != nil {
		return nil, err
	}
	w.Status, w.CreatedAt, w.UpdatedAt = boxoffice.WebhookStatus(status), utc(w.CreatedAt), utc(w.UpdatedAt)
	w.PreviousSecretExpiresAt = optUTC(w.PreviousSecretExpiresAt)
	return &w, nil
}

// GetWebhookEndpoint implements boxoffice.Tx.
func (t *tx) GetWebhookEndpoint(ctx context.Context, id string) (*boxoffice.WebhookEndpoint, error) {
	w, err := scanWebhook(t.queryRow(ctx, sGetWebhookEndpoint, id).Scan)
	if err != nil {
		return nil, notFound(err, "webhook endpoint %s", id)
	}
	return w, nil
}

// DeleteWebhookEndpoint implements boxoffice.Tx.
func (t *tx) DeleteWebhookEndpoint(ctx context.Context, id string) (bool, error) {
	tag, err := t.exec(ctx, sDeleteWebhookEndpoint, id)
	if err != nil {
		return false, fmt.Errorf("delete webhook endpoint %q: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ListWebhookEndpoints implements boxoffice.Tx.
func (t *tx) ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error) {
	var out []*boxoffice.WebhookEndpoint
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		w, err := scanWebhook(rows.Scan)
		if err == nil {
			out = append(out, w)
		}
		return err
	}, sListWebhookEndpoints)
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return out, nil
}
