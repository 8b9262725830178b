package postgres

import (
	"context"
	"fmt"

	"boxoffice"
)

var _ boxoffice.WriteProber = (*DB)(nil)

// ProbeWrite implements boxoffice.WriteProber: a one-row rewrite in a committed transaction,
// which fails when the database cannot commit (its disk full, read-only, a failover under way).
func (db *DB) ProbeWrite(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO health (id, probed_at) VALUES (1, now())
		ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`); err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	return nil
}
