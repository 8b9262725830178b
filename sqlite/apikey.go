package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"boxoffice"
)

// InsertAPIKey implements boxoffice.Tx.
func (t *tx) InsertAPIKey(ctx context.Context, k *boxoffice.APIKey) error {
	if _, err := t.exec(ctx, sInsertAPIKey, k.ID, string(k.Role), k.Label, k.Hash, micros(k.CreatedAt),
		optMicros(k.LastUsedAt), optMicros(k.RevokedAt)); err != nil {
		return wrapWrite(err, fmt.Sprintf("insert api key %q", k.ID))
	}
	return nil
}

// scanAPIKey reads one row of apiKeyCols.
func scanAPIKey(sc scanner) (*boxoffice.APIKey, error) {
	var (
		k                            boxoffice.APIKey
		role                         string
		createdAt, lastUsed, revoked int64
	)
	if err := sc.Scan(&k.ID, &role, &k.Label, &k.Hash, &createdAt, &lastUsed, &revoked); err != nil {
		return nil, err
	}
	k.Role, k.CreatedAt = boxoffice.Role(role), fromMicros(createdAt)
	k.LastUsedAt, k.RevokedAt = optTime(lastUsed), optTime(revoked)
	return &k, nil
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
	rows, err := t.query(ctx, sListAPIKeys, after, limit)
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		k, err := scanAPIKey(rows)
		keys = append(keys, k)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey implements boxoffice.Tx.
func (t *tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	var got string
	if err := t.queryRow(ctx, sRevokeAPIKey, micros(at), id).Scan(&got); err != nil {
		return notFound(err, "api key %q", id)
	}
	return nil
}

// TouchAPIKey implements boxoffice.Tx.
func (t *tx) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if _, err := t.exec(ctx, sTouchAPIKey, micros(at), id); err != nil {
		return fmt.Errorf("touch api key %q: %w", id, err)
	}
	return nil
}
