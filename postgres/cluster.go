package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"boxoffice"
)

// The lease rows and their locks (see migrations/0008_cluster.sql). Three kinds of statement
// touch a lease row, and their row locks are chosen so that none waits in a cycle:
//
//   - a show writer's batch checks its lease with FOR KEY SHARE (the fence, CheckLease), for as
//     long as its transaction lasts;
//   - a takeover locks the row FOR UPDATE, which waits for every batch holding the fence to end,
//     then changes server and epoch, so that no batch of the old holder commits after it;
//   - a heartbeat renews expires_at with a plain UPDATE of non-key columns, whose FOR NO KEY
//     UPDATE lock does not conflict with FOR KEY SHARE: a busy show's endless stream of batches
//     never holds its renewal back, and the heartbeat, which locks many rows, never waits for
//     a batch that may itself wait for one of those rows.
const (
	sRegisterServer = `INSERT INTO servers (id, instance, addr, nats, payments, mail, inventory, started_at, heartbeat_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
		ON CONFLICT (id) DO UPDATE SET instance = EXCLUDED.instance, addr = EXCLUDED.addr, nats = EXCLUDED.nats,
			payments = EXCLUDED.payments, mail = EXCLUDED.mail, inventory = EXCLUDED.inventory, heartbeat_at = now()`
	// A previous run of the same instance is dead (see the migration): its leases end now, so a
	// restarted server takes its shows back at once, and its row goes.
	sEndPrevious = `UPDATE leases SET expires_at = now() - interval '1 microsecond'
		WHERE server_id IN (SELECT id FROM servers WHERE instance = $1 AND id <> $2)`
	sDropPrevious = `DELETE FROM servers WHERE instance = $1 AND id <> $2`
	// Servers gone for an hour are forgotten, so restarts (each a new id) do not pile up.
	sForgetServers = `DELETE FROM servers WHERE heartbeat_at < now() - interval '1 hour'`
	sBeat          = `UPDATE servers SET heartbeat_at = now() WHERE id = $1`
	sRenewLeases   = `UPDATE leases SET expires_at = now() + $2 * interval '1 microsecond'
		WHERE server_id = $1 AND expires_at > now()
		RETURNING name, server_id, epoch, expires_at, true`
	sLeaseForUpdate = `SELECT name, server_id, epoch, expires_at, expires_at > now() FROM leases
		WHERE name = $1 FOR UPDATE`
	sInsertLease = `INSERT INTO leases (name, server_id, epoch, expires_at)
		SELECT $1, $2, 1, now() + $3 * interval '1 microsecond'
		WHERE $4 = '' OR EXISTS (SELECT 1 FROM shows WHERE id = $4)
		ON CONFLICT (name) DO NOTHING
		RETURNING name, server_id, epoch, expires_at, true`
	sTakeLease = `UPDATE leases SET server_id = $2,
			epoch = epoch + CASE WHEN server_id = $2 THEN 0 ELSE 1 END,
			expires_at = now() + $3 * interval '1 microsecond'
		WHERE name = $1
		RETURNING name, server_id, epoch, expires_at, true`
	sServers = `SELECT id, instance, addr, nats, payments, mail, inventory, started_at, heartbeat_at,
		heartbeat_at > now() - $1 * interval '1 microsecond' FROM servers ORDER BY started_at, id`
	sLeases     = `SELECT name, server_id, epoch, expires_at, expires_at > now() FROM leases ORDER BY name`
	sEndLeases  = `UPDATE leases SET expires_at = now() - interval '1 microsecond' WHERE server_id = $1`
	sDropServer = `DELETE FROM servers WHERE id = $1`
	sCheckLease = `SELECT 1 FROM leases WHERE name = $1 AND server_id = $2 AND epoch = $3 FOR KEY SHARE`
	dCheckLease = `WITH l AS (` + sCheckLease + `) SELECT 1 / ((SELECT count(*) FROM l) = 1)::int`
)

var _ boxoffice.ClusterStore = (*DB)(nil)

// RegisterServer implements boxoffice.ClusterStore.
func (db *DB) RegisterServer(ctx context.Context, s boxoffice.ServerInfo) error {
	if _, err := db.pool.Exec(ctx, sForgetServers); err != nil {
		return fmt.Errorf("register server: %w", err)
	}
	if s.Instance != "" {
		for _, sql := range []string{sEndPrevious, sDropPrevious} {
			if _, err := db.pool.Exec(ctx, sql, s.Instance, s.ID); err != nil {
				return fmt.Errorf("register server: %w", err)
			}
		}
	}
	if _, err := db.pool.Exec(ctx, sRegisterServer, s.ID, s.Instance, s.Addr, s.NATS, s.Payments, s.Mail, s.Inventory); err != nil {
		return fmt.Errorf("register server: %w", err)
	}
	return nil
}

// Heartbeat implements boxoffice.ClusterStore.
func (db *DB) Heartbeat(ctx context.Context, serverID string, ttl time.Duration) ([]boxoffice.Lease, error) {
	// Two statements, each its own transaction: the renewal holds row locks on many leases, and
	// holding the server's row too would only lengthen that.
	if _, err := db.pool.Exec(ctx, sBeat, serverID); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	rows, err := db.pool.Query(ctx, sRenewLeases, serverID, ttl.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	leases, err := pgx.CollectRows(rows, scanLease)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return leases, nil
}

// AcquireLease implements boxoffice.ClusterStore.
func (db *DB) AcquireLease(ctx context.Context, name, serverID string, ttl time.Duration) (l boxoffice.Lease, ok bool, err error) {
	show, isShow := strings.CutPrefix(name, "show:")
	if !isShow {
		show = "" // not a show's lease: no show must exist for it
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// The row lock waits for the holder's fenced batches, which take milliseconds; a holder
		// stopped mid-batch holds it until PostgreSQL ends its idle transaction. The caller
		// (a request) is told to retry rather than wait that long.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+strconv.Itoa(int(max(ttl/3, 100*time.Millisecond).Milliseconds()))); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sLeaseForUpdate, name)
		if err != nil {
			return err
		}
		cur, err := pgx.CollectRows(rows, scanLease)
		if err != nil {
			return err
		}
		switch {
		case len(cur) == 0:
			rows, err = tx.Query(ctx, sInsertLease, name, serverID, ttl.Microseconds(), show)
		case cur[0].ServerID != serverID && cur[0].Live:
			l, ok = cur[0], true
			return nil
		default:
			rows, err = tx.Query(ctx, sTakeLease, name, serverID, ttl.Microseconds())
		}
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, scanLease)
		if err != nil || len(got) == 0 {
			// No such show, or another server inserted the lease first: the caller asks again.
			return err
		}
		l, ok = got[0], true
		return nil
	})
	if err != nil {
		return boxoffice.Lease{}, false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return l, ok, nil
}

// Servers implements boxoffice.ClusterStore.
func (db *DB) Servers(ctx context.Context, stale time.Duration) ([]boxoffice.ServerInfo, error) {
	rows, err := db.pool.Query(ctx, sServers, stale.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (boxoffice.ServerInfo, error) {
		var s boxoffice.ServerInfo
		err := r.Scan(&s.ID, &s.Instance, &s.Addr, &s.NATS, &s.Payments, &s.Mail, &s.Inventory, &s.StartedAt, &s.HeartbeatAt, &s.Live)
		s.StartedAt, s.HeartbeatAt = utc(s.StartedAt), utc(s.HeartbeatAt)
		return s, err
	})
}

// Leases implements boxoffice.ClusterStore.
func (db *DB) Leases(ctx context.Context) ([]boxoffice.Lease, error) {
	rows, err := db.pool.Query(ctx, sLeases)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return pgx.CollectRows(rows, scanLease)
}

// Deregister implements boxoffice.ClusterStore.
func (db *DB) Deregister(ctx context.Context, serverID string) error {
	if _, err := db.pool.Exec(ctx, sEndLeases, serverID); err != nil {
		return fmt.Errorf("end leases: %w", err)
	}
	if _, err := db.pool.Exec(ctx, sDropServer, serverID); err != nil {
		return fmt.Errorf("deregister: %w", err)
	}
	return nil
}

func scanLease(r pgx.CollectableRow) (boxoffice.Lease, error) {
	var l boxoffice.Lease
	err := r.Scan(&l.Name, &l.ServerID, &l.Epoch, &l.ExpiresAt, &l.Live)
	l.ExpiresAt = utc(l.ExpiresAt)
	return l, err
}

// CheckLease implements boxoffice.LeaseTx. In a speculative run it goes with the batch's other
// writes, and a lease that moved voids the run; the run without deferring then says so.
func (t *tx) CheckLease(ctx context.Context, name, serverID string, epoch int64) error {
	if t.laterAs(deferredWrite{kind: kindLease, step: stepLease, key: name, sql: dCheckLease, args: []any{name, serverID, epoch}}) {
		return nil
	}
	var one int
	err := t.queryRow(ctx, sCheckLease, name, serverID, epoch).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return boxoffice.Overloaded(time.Second, "%s is moving to another server; retry", strings.ReplaceAll(name, ":", " "))
	}
	if err != nil {
		return fmt.Errorf("check lease %s: %w", name, err)
	}
	return nil
}
