package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"boxoffice"
)

// The waiting room works on the pool directly, one transaction per method (as the cluster's
// leases do): none of it belongs in a show writer's batch, and joins must not wait for one.

var _ boxoffice.WaitRoomStore = (*DB)(nil)

const (
	waitRoomColumns = `w.show_id, w.opens_at, w.admit_per_second, w.admission_ttl_seconds, w.admission, w.margin_percent, w.paused, w.admitted,
		CASE WHEN $2 THEN (SELECT count(*) FROM queue_entries q WHERE q.show_id = w.show_id AND q.admitted_at IS NULL) ELSE 0 END,
		w.created_at, w.updated_at`
	sGetWaitRoom = `SELECT ` + waitRoomColumns + ` FROM waitrooms w WHERE w.show_id = $1`
	// A replaced room keeps its admissions; while nothing has been admitted, its rate budget
	// restarts at the (new) on-sale. xmax = 0 tells an insert from an update.
	sPutWaitRoom = `INSERT INTO waitrooms (show_id, opens_at, admit_per_second, admission_ttl_seconds,
			admission, margin_percent, paused, credit_at, created_at, updated_at)
		SELECT $1, $2, $3, $4, $6, $7, $8, $2, $5, $5 WHERE EXISTS (SELECT 1 FROM shows WHERE id = $1)
		ON CONFLICT (show_id) DO UPDATE SET opens_at = EXCLUDED.opens_at,
			admit_per_second = EXCLUDED.admit_per_second, admission_ttl_seconds = EXCLUDED.admission_ttl_seconds,
			admission = EXCLUDED.admission, margin_percent = EXCLUDED.margin_percent, paused = EXCLUDED.paused,
			credit_at = CASE WHEN waitrooms.admitted = 0 THEN EXCLUDED.opens_at ELSE waitrooms.credit_at END,
			updated_at = EXCLUDED.updated_at
		RETURNING xmax = 0`
	entryColumns = `seq, show_id, identity, lane, rank, joined_at, admitted_at, coalesce(admit_no, 0)`
	// One statement inserts a whole batch of joins: each one's lane and rank are decided against
	// its show's room in the same statement, and a buyer already queued keeps their entry.
	sJoinQueue = `INSERT INTO queue_entries (show_id, identity, lane, rank, joined_at)
		SELECT j.show_id, j.identity, l.lane, CASE WHEN l.lane = 0 THEN j.rank ELSE 0 END, j.at
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[]) WITH ORDINALITY AS j(show_id, identity, rank, at, n)
		JOIN waitrooms w ON w.show_id = j.show_id
		CROSS JOIN LATERAL (SELECT CASE WHEN j.at < w.opens_at AND w.admitted = 0 THEN 0 ELSE 1 END AS lane) l
		ORDER BY j.n
		ON CONFLICT (show_id, identity) DO NOTHING
		RETURNING seq`
	sQueueEntries = `SELECT ` + entryColumns + ` FROM queue_entries
		WHERE (show_id, identity) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	sQueueEntry = `SELECT ` + entryColumns + `,
			coalesce((SELECT w.admitted FROM waitrooms w WHERE w.show_id = q.show_id), 0)
		FROM queue_entries q WHERE seq = $1`
	// sQueueAhead counts a range of the queue order and reads the room's admissions in the same
	// statement, so in the same snapshot. Both bounds are index conditions (an OR to make the
	// lower one optional would leave it a filter in the generic plan, counting from the head).
	sQueueAhead = `SELECT (SELECT count(*) FROM queue_entries
			WHERE show_id = $1 AND admitted_at IS NULL AND (lane, rank, seq) > ($2, $3, $4) AND (lane, rank, seq) < ($5, $6, $7)),
		coalesce((SELECT admitted FROM waitrooms WHERE show_id = $1), 0)`
	// sQueuePlaces numbers the waiting queue in its order (the partial index gives the order)
	// and keeps the rows that joined after $2, and the last (a backward step of the index: a
	// count of the rows over the window would hold them all for the filter to see). The rows come
	// out in the window's order, which nothing promises without an ORDER BY, and that would sort
	// them again: the callers of QueuePlaces do not depend on it.
	sQueuePlaces = `SELECT p.lane, p.rank, p.seq, p.joined_at, p.n, w.admitted FROM waitrooms w
		CROSS JOIN LATERAL (SELECT lane, rank, seq, joined_at, row_number() OVER (ORDER BY lane, rank, seq) - 1 AS n
			FROM queue_entries WHERE show_id = w.show_id AND admitted_at IS NULL) p
		WHERE w.show_id = $1 AND (p.joined_at > $2 OR (p.lane, p.rank, p.seq) = (SELECT lane, rank, seq FROM queue_entries
			WHERE show_id = $1 AND admitted_at IS NULL ORDER BY lane DESC, rank DESC, seq DESC LIMIT 1))`
	sLockWaitRoom = `SELECT opens_at, admit_per_second, admission_ttl_seconds, admitted, credit_at, paused FROM waitrooms WHERE show_id = $1 FOR UPDATE`
	// sShoppers counts the show's buyers shopping: admitted after $2, with no hold of the show
	// made since. holds_show_buyer answers each probe; lower() under "C" folds ASCII only, as
	// the identity (boxoffice.BuyerKey) does.
	sShoppers = `SELECT count(*) FROM queue_entries q
		WHERE q.show_id = $1 AND q.admitted_at > $2 AND NOT EXISTS (SELECT 1 FROM holds h
			WHERE h.show_id = $1 AND lower(h.buyer_email COLLATE "C") = q.identity AND h.created_at >= q.admitted_at)`
	// sAdmit numbers the queue's head and admits it. The head is read twice, once numbered and
	// once as an array of keys (the same rows: one statement, one snapshot), so that the entries
	// are found through the key, seq = ANY: joined to the numbered head alone, the planner took
	// a hash join over a sequential scan of the whole queue whenever it thought the head big
	// against the table — always, in the generic plan a prepared statement takes after five
	// runs, which knows no LIMIT (12 ms a tick at 50,000 entries).
	sAdmit = `UPDATE queue_entries q SET admitted_at = $1, admit_no = $2 + n.i
		FROM (SELECT seq, row_number() OVER (ORDER BY lane, rank, seq) - 1 AS i FROM
			(SELECT seq, lane, rank FROM queue_entries WHERE show_id = $3 AND admitted_at IS NULL
			 ORDER BY lane, rank, seq LIMIT $4) s) n
		WHERE q.seq = n.seq AND q.seq = ANY (ARRAY(SELECT seq FROM queue_entries
			WHERE show_id = $3 AND admitted_at IS NULL ORDER BY lane, rank, seq LIMIT $4))`
	sAdvanceWaitRoom = `UPDATE waitrooms SET admitted = admitted + $2, credit_at = $3 WHERE show_id = $1`
	sPauseWaitRoom   = `UPDATE waitrooms SET paused = $2, updated_at = $3 WHERE show_id = $1`
)

func scanWaitRoom(row pgx.Row) (*boxoffice.WaitRoom, error) {
	var w boxoffice.WaitRoom
	err := row.Scan(&w.ShowID, &w.OpensAt, &w.AdmitPerSecond, &w.AdmissionTTLSeconds, &w.Admission, &w.AutoMarginPercent, &w.Paused, &w.Admitted, &w.Waiting, &w.CreatedAt, &w.UpdatedAt)
	w.OpensAt, w.CreatedAt, w.UpdatedAt = utc(w.OpensAt), utc(w.CreatedAt), utc(w.UpdatedAt)
	return &w, err
}

func scanEntry(row pgx.Row) (*boxoffice.QueueEntry, error) {
	var e boxoffice.QueueEntry
	var lane int16
	var admitted *time.Time
	if err := row.Scan(&e.Seq, &e.ShowID, &e.Identity, &lane, &e.Rank, &e.JoinedAt, &admitted, &e.AdmitNo); err != nil {
		return nil, err
	}
	e.PreOnSale, e.JoinedAt = lane == 0, utc(e.JoinedAt)
	if admitted != nil {
		e.AdmittedAt = utc(*admitted)
	}
	return &e, nil
}

// PauseWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) PauseWaitRoom(ctx context.Context, showID string, paused bool, at time.Time) (w *boxoffice.WaitRoom, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sPauseWaitRoom, showID, paused, at); err != nil {
			return fmt.Errorf("pause waiting room of %s: %w", showID, err)
		}
		w, err = scanWaitRoom(tx.QueryRow(ctx, sGetWaitRoom, showID, true))
		if errors.Is(err, pgx.ErrNoRows) {
			return boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID)
		}
		return err
	})
	return w, err
}

// PutWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) PutWaitRoom(ctx context.Context, w *boxoffice.WaitRoom) (stored *boxoffice.WaitRoom, created bool, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, sPutWaitRoom, w.ShowID, w.OpensAt, w.AdmitPerSecond, w.AdmissionTTLSeconds, w.UpdatedAt,
			w.AdmissionMode(), w.AutoMarginPercent, w.Paused).Scan(&created)
		if errors.Is(err, pgx.ErrNoRows) {
			return boxoffice.Errorf(boxoffice.ENOTFOUND, "no show %s", w.ShowID)
		}
		if err != nil {
			return fmt.Errorf("put waiting room of %s: %w", w.ShowID, err)
		}
		stored, err = scanWaitRoom(tx.QueryRow(ctx, sGetWaitRoom, w.ShowID, true))
		return err
	})
	return stored, created, err
}

// GetWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) GetWaitRoom(ctx context.Context, showID string, counts bool) (*boxoffice.WaitRoom, error) {
	w, err := scanWaitRoom(db.pool.QueryRow(ctx, sGetWaitRoom, showID, counts))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID)
	}
	if err != nil {
		return nil, fmt.Errorf("read waiting room of %s: %w", showID, err)
	}
	return w, nil
}

// DeleteWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) DeleteWaitRoom(ctx context.Context, showID string) (found bool, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM queue_entries WHERE show_id = $1`, showID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM waitrooms WHERE show_id = $1`, showID)
		found = tag.RowsAffected() > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete waiting room of %s: %w", showID, err)
	}
	return found, nil
}

// WaitRoomShows implements boxoffice.WaitRoomStore.
func (db *DB) WaitRoomShows(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT show_id FROM waitrooms ORDER BY show_id`)
	if err != nil {
		return nil, fmt.Errorf("list waiting rooms: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list waiting rooms: %w", err)
	}
	return ids, nil
}

// JoinQueue implements boxoffice.WaitRoomStore: one round trip for the whole batch, the insert
// and the read of every entry it names pipelined in one implicit transaction (the read, a
// statement of its own under READ COMMITTED, sees the insert and any entry another server
// committed first for the same buyer).
func (db *DB) JoinQueue(ctx context.Context, joins []boxoffice.QueueJoin) ([]*boxoffice.QueueEntry, error) {
	type key struct{ show, identity string }
	first := make(map[key]int, len(joins))
	var shows, ids []string
	var ranks []int64
	var ats []time.Time
	for i, j := range joins {
		k := key{j.ShowID, j.Identity}
		if _, dup := first[k]; dup {
			continue // the same buyer twice in a batch: one insert, and both answered with it
		}
		first[k] = i
		shows, ids = append(shows, j.ShowID), append(ids, j.Identity)
		ranks, ats = append(ranks, j.Rank), append(ats, j.At)
	}
	b := &pgx.Batch{}
	created := map[int64]bool{}
	b.Queue(sJoinQueue, shows, ids, ranks, ats).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				return err
			}
			created[seq] = true
		}
		return rows.Err()
	})
	got := map[key]*boxoffice.QueueEntry{}
	b.Queue(sQueueEntries, shows, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return err
			}
			got[key{e.ShowID, e.Identity}] = e
		}
		return rows.Err()
	})
	// Two servers inserting the same buyers in opposite orders can deadlock on the unique index;
	// PostgreSQL then aborts one batch, which runs again (the other one has committed by then).
	for attempt := 1; ; attempt++ {
		clear(created)
		clear(got)
		err := db.pool.SendBatch(ctx, b).Close()
		if err == nil {
			break
		}
		if !isRetryable(err) || attempt == maxAttempts {
			return nil, fmt.Errorf("join queue: %w", err)
		}
	}
	entries := make([]*boxoffice.QueueEntry, len(joins))
	for i, j := range joins {
		k := key{j.ShowID, j.Identity}
		e := got[k]
		if e == nil {
			continue // no waiting room
		}
		c := *e
		c.Created = created[e.Seq] && first[k] == i
		entries[i] = &c
	}
	return entries, nil
}

// QueueEntry implements boxoffice.WaitRoomStore: one statement, so a poll is one round trip.
func (db *DB) QueueEntry(ctx context.Context, seq int64) (e *boxoffice.QueueEntry, admitted int64, err error) {
	e, err = scanEntry(scanWith(db.pool.QueryRow(ctx, sQueueEntry, seq), &admitted))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, boxoffice.Errorf(boxoffice.ENOTFOUND, "no queue entry %d", seq)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read queue entry %d: %w", seq, err)
	}
	return e, admitted, nil
}

// QueueAhead implements boxoffice.WaitRoomStore.
func (db *DB) QueueAhead(ctx context.Context, showID string, after *boxoffice.QueueKey, before boxoffice.QueueKey) (ahead, admitted int64, err error) {
	from := boxoffice.QueueHead
	if after != nil {
		from = *after
	}
	err = db.pool.QueryRow(ctx, sQueueAhead, showID, from.Lane, from.Rank, from.Seq,
		before.Lane, before.Rank, before.Seq).Scan(&ahead, &admitted)
	if err != nil {
		return 0, 0, fmt.Errorf("count the queue of %s before %+v: %w", showID, before, err)
	}
	return ahead, admitted, nil
}

// QueuePlaces implements boxoffice.WaitRoomStore.
func (db *DB) QueuePlaces(ctx context.Context, showID string, joinedAfter time.Time, each func(boxoffice.QueuePlace) error) (admitted int64, err error) {
	rows, err := db.pool.Query(ctx, sQueuePlaces, showID, joinedAfter)
	if err == nil {
		var p boxoffice.QueuePlace
		_, err = pgx.ForEachRow(rows, []any{&p.Key.Lane, &p.Key.Rank, &p.Key.Seq, &p.JoinedAt, &p.Ahead, &admitted}, func() error {
			p.JoinedAt = utc(p.JoinedAt)
			return each(p)
		})
	}
	if err != nil {
		return 0, fmt.Errorf("number the queue of %s: %w", showID, err)
	}
	return admitted, nil
}

// scanWith is row, scanning extra after the columns its caller names.
func scanWith(row pgx.Row, extra ...any) pgx.Row {
	return scanFunc(func(dest ...any) error { return row.Scan(append(dest, extra...)...) })
}

// scanFunc adapts a function to pgx.Row.
type scanFunc func(dest ...any) error

// Scan implements pgx.Row.
func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// AdmitQueue implements boxoffice.WaitRoomStore. The room's row is locked FOR UPDATE for the
// whole admission: a second admitter, on this server or another, waits for it and then reads the
// advanced count and credit mark, so it can neither admit an entry again nor spend the same
// budget twice.
func (db *DB) AdmitQueue(ctx context.Context, showID string, now time.Time, shoppers int) (admitted int, err error) {
	now = now.Truncate(time.Microsecond)
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		admitted = 0
		var opens, credit time.Time
		var rate, ttl, total int64
		var paused bool
		err := tx.QueryRow(ctx, sLockWaitRoom, showID).Scan(&opens, &rate, &ttl, &total, &credit, &paused)
		if errors.Is(err, pgx.ErrNoRows) || paused {
			return nil
		}
		if err != nil {
			return err
		}
		budget, start := boxoffice.AdmitBudget(now.UnixMicro(), opens.UnixMicro(), credit.UnixMicro(), rate)
		if budget > 0 && shoppers >= 0 {
			var shopping int64
			if err := tx.QueryRow(ctx, sShoppers, showID, now.Add(-time.Duration(ttl)*time.Second)).Scan(&shopping); err != nil {
				return err
			}
			budget = min(budget, max(0, int64(shoppers)-shopping))
		}
		if budget == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, sAdmit, now, total, showID, budget)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		n := tag.RowsAffected()
		if _, err := tx.Exec(ctx, sAdvanceWaitRoom, showID, n, time.UnixMicro(boxoffice.CreditAfter(start, n, rate))); err != nil {
			return err
		}
		admitted = int(n)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("admit from the queue of %s: %w", showID, err)
	}
	return admitted, nil
}

// Secret implements boxoffice.WaitRoomStore.
func (db *DB) Secret(ctx context.Context, name string, candidate []byte) ([]byte, error) {
	if _, err := db.pool.Exec(ctx, `INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, candidate); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var secret []byte
	if err := db.pool.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&secret); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return secret, nil
}
