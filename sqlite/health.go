package sqlite

import (
	"context"
	"fmt"
	"time"

	"boxoffice"
)

var _ boxoffice.WriteProber = (*DB)(nil)

// ProbeWrite implements boxoffice.WriteProber: it commits a one-row rewrite through the writer
// and the group commit, so it fails as a purchase's commit would (disk full, I/O error).
func (db *DB) ProbeWrite(ctx context.Context) error {
	err := db.Update(ctx, func(btx boxoffice.Tx) error {
		_, err := btx.(*tx).execRaw(ctx, `INSERT INTO health (id, probed_at) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`, micros(time.Now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	return nil
}
