package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"boxoffice"
)

// The waiting room's statements run unprepared, as the async side's do: a join batch runs a
// handful of them for hundreds of joins, and the admitter a few a tick.

var _ boxoffice.WaitRoomStore = (*DB)(nil)

// waitRoomColumns reads a room; the count of those waiting only when ?2 is 1.
const waitRoomColumns = `w.show_id, w.opens_at, w.admit_per_second, w.admission_ttl_seconds, w.admission, w.margin_percent, w.paused, w.admitted,
	CASE WHEN ?2 THEN (SELECT COUNT(*) FROM queue_entries q WHERE q.show_id = w.show_id AND q.admitted_at = 0) ELSE 0 END,
	w.created_at, w.updated_at`

func scanWaitRoom(scan func(dest ...any) error) (*boxoffice.WaitRoom, error) {
	var w boxoffice.WaitRoom
	var opens, created, updated int64
	if err := scan(&w.ShowID, &opens, &w.AdmitPerSecond, &w.AdmissionTTLSeconds, &w.Admission, &w.AutoMarginPercent, &w.Paused, &w.Admitted, &w.Waiting, &created, &updated); err != nil {
		return nil, err
	}
	w.OpensAt, w.CreatedAt, w.UpdatedAt = fromMicros(opens), fromMicros(created), fromMicros(updated)
	return &w, nil
}

func (t *tx) getWaitRoom(ctx context.Context, showID string, counts bool) (*boxoffice.WaitRoom, error) {
	var w *boxoffice.WaitRoom
	err := t.queryRaw(ctx, `SELECT `+waitRoomColumns+` FROM waitrooms w WHERE w.show_id = ?1`, []any{showID, counts},
		func(rows *sql.Rows) (err error) {
			w, err = scanWaitRoom(rows.Scan)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("read waiting room of %s: %w", showID, err)
	}
	if w == nil {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID)
	}
	return w, nil
}

// PutWaitRoom implements boxoffice.WaitRoomStore. A replaced room keeps its admissions; while
// nothing has been admitted, its rate budget restarts at the (new) on-sale.
func (db *DB) PutWaitRoom(ctx context.Context, w *boxoffice.WaitRoom) (stored *boxoffice.WaitRoom, created bool, err error) {
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		var n int
		if err := t.queryRowRaw(ctx, `SELECT COUNT(*) FROM shows WHERE id = ?`, []any{w.ShowID}, &n); err != nil {
			return fmt.Errorf("read show %s: %w", w.ShowID, err)
		}
		if n == 0 {
			return boxoffice.Errorf(boxoffice.ENOTFOUND, "no show %s", w.ShowID)
		}
		if err := t.queryRowRaw(ctx, `SELECT COUNT(*) FROM waitrooms WHERE show_id = ?`, []any{w.ShowID}, &n); err != nil {
			return fmt.Errorf("read waiting room of %s: %w", w.ShowID, err)
		}
		created = n == 0
		at := micros(w.UpdatedAt)
		_, err := t.execRaw(ctx, `INSERT INTO waitrooms (show_id, opens_at, admit_per_second, admission_ttl_seconds,
				admission, margin_percent, paused, credit_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?6, ?7, ?8, ?2, ?5, ?5)
			ON CONFLICT (show_id) DO UPDATE SET opens_at = excluded.opens_at,
				admit_per_second = excluded.admit_per_second, admission_ttl_seconds = excluded.admission_ttl_seconds,
				admission = excluded.admission, margin_percent = excluded.margin_percent, paused = excluded.paused,
				credit_at = CASE WHEN admitted = 0 THEN excluded.opens_at ELSE credit_at END,
				updated_at = excluded.updated_at`,
			w.ShowID, micros(w.OpensAt), w.AdmitPerSecond, w.AdmissionTTLSeconds, at, w.AdmissionMode(), w.AutoMarginPercent, w.Paused)
		if err != nil {
			return fmt.Errorf("put waiting room of %s: %w", w.ShowID, err)
		}
		stored, err = t.getWaitRoom(ctx, w.ShowID, true)
		return err
	})
	return stored, created, err
}

// GetWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) GetWaitRoom(ctx context.Context, showID string, counts bool) (w *boxoffice.WaitRoom, err error) {
	err = db.View(ctx, func(btx boxoffice.Tx) (err error) {
		w, err = btx.(*tx).getWaitRoom(ctx, showID, counts)
		return err
	})
	return w, err
}

// PauseWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) PauseWaitRoom(ctx context.Context, showID string, paused bool, at time.Time) (w *boxoffice.WaitRoom, err error) {
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		if _, err := t.execRaw(ctx, `UPDATE waitrooms SET paused = ?, updated_at = ? WHERE show_id = ?`, paused, micros(at), showID); err != nil {
			return fmt.Errorf("pause waiting room of %s: %w", showID, err)
		}
		w, err = t.getWaitRoom(ctx, showID, true)
		return err
	})
	return w, err
}

// DeleteWaitRoom implements boxoffice.WaitRoomStore.
func (db *DB) DeleteWaitRoom(ctx context.Context, showID string) (found bool, err error) {
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		if _, err := t.execRaw(ctx, `DELETE FROM queue_entries WHERE show_id = ?`, showID); err != nil {
			return fmt.Errorf("delete queue of %s: %w", showID, err)
		}
		res, err := t.execRaw(ctx, `DELETE FROM waitrooms WHERE show_id = ?`, showID)
		if err != nil {
			return fmt.Errorf("delete waiting room of %s: %w", showID, err)
		}
		n, err := res.RowsAffected()
		found = n > 0
		return err
	})
	return found, err
}

// WaitRoomShows implements boxoffice.WaitRoomStore.
func (db *DB) WaitRoomShows(ctx context.Context) (ids []string, err error) {
	err = db.View(ctx, func(btx boxoffice.Tx) error {
		ids = nil
		return btx.(*tx).queryRaw(ctx, `SELECT show_id FROM waitrooms ORDER BY show_id`, nil, func(rows *sql.Rows) error {
			var id string
			err := rows.Scan(&id)
			ids = append(ids, id)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list waiting rooms: %w", err)
	}
	return ids, nil
}

const entryColumns = `seq, show_id, identity, lane, rank, joined_at, admitted_at, COALESCE(admit_no, 0)`

func scanEntry(scan func(dest ...any) error) (*boxoffice.QueueEntry, error) {
	var e boxoffice.QueueEntry
	var lane int
	var joined, admitted int64
	if err := scan(&e.Seq, &e.ShowID, &e.Identity, &lane, &e.Rank, &joined, &admitted, &e.AdmitNo); err != nil {
		return nil, err
	}
	e.PreOnSale, e.JoinedAt, e.AdmittedAt = lane == 0, fromMicros(joined), fromMicros(admitted)
	return &e, nil
}

// JoinQueue implements boxoffice.WaitRoomStore: the whole batch is one transaction (and the group
// commit may put several batches in one), so a join costs its share of one insert statement and
// of one fsync. The batch goes in as one INSERT … SELECT over a JSON array: a statement per join
// cost the writer about 75 µs a join (database/sql and the VDBE's setup, per row), which made the
// writer the bound of the waiting room's joins. Both statements are compiled once per store.
func (db *DB) JoinQueue(ctx context.Context, joins []boxoffice.QueueJoin) (entries []*boxoffice.QueueEntry, err error) {
	// Prepared outside the transaction: the writer has one connection, which the transaction
	// holds, and preparing on the pool takes one.
	insPool, selPool, err := db.joinStmts()
	if err != nil {
		return nil, err
	}
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		entries = make([]*boxoffice.QueueEntry, len(joins))
		// Bound under a background context, as tx.stmt binds: the statement is compiled on the
		// connection once, and a failure cached here would poison it for the transaction.
		ins, sel := t.tx.StmtContext(context.Background(), insPool), t.tx.StmtContext(context.Background(), selPool)
		type room struct {
			ok       bool
			opens    int64
			admitted int64
		}
		rooms := map[string]room{}
		rows := make([][5]any, 0, len(joins))
		for _, j := range joins {
			r, seen := rooms[j.ShowID]
			if !seen {
				err := t.queryRowRaw(ctx, `SELECT opens_at, admitted FROM waitrooms WHERE show_id = ?`, []any{j.ShowID}, &r.opens, &r.admitted)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("read waiting room of %s: %w", j.ShowID, err)
				}
				r.ok = err == nil
				rooms[j.ShowID] = r
			}
			if !r.ok {
				continue
			}
			lane, rank := 1, int64(0)
			if micros(j.At) < r.opens && r.admitted == 0 {
				lane, rank = 0, j.Rank
			}
			rows = append(rows, [5]any{j.ShowID, j.Identity, lane, rank, micros(j.At)})
		}
		if len(rows) == 0 {
			return nil
		}
		arg, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		type place struct{ show, identity string }
		made := make(map[place]*boxoffice.QueueEntry, len(rows))
		res, err := ins.QueryContext(t.stmtCtx(ctx), string(arg))
		err = t.eachRow(res, t.note(err), func(rows *sql.Rows) error {
			e, err := scanEntry(rows.Scan)
			if err == nil {
				e.Created = true
				made[place{e.ShowID, e.Identity}] = e
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("join queues: %w", err)
		}
		for i, j := range joins {
			if !rooms[j.ShowID].ok {
				continue
			}
			k := place{j.ShowID, j.Identity}
			e := made[k]
			if e == nil {
				// Already in the queue: the place they had. A buyer twice in one batch gets the
				// entry the first one made, as created only once.
				res, err := sel.QueryContext(t.stmtCtx(ctx), j.ShowID, j.Identity)
				if err = t.eachRow(res, t.note(err), func(rows *sql.Rows) (err error) {
					e, err = scanEntry(rows.Scan)
					return err
				}); err != nil || e == nil {
					return fmt.Errorf("read queue entry of %s: %v", j.ShowID, err)
				}
			} else {
				delete(made, k)
			}
			entries[i] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// joinStmts are JoinQueue's statements, compiled on the writer once.
type joinStmts struct {
	once     sync.Once
	ins, sel *sql.Stmt
	err      error
}

func (db *DB) joinStmts() (ins, sel *sql.Stmt, err error) {
	js := &db.joins
	js.once.Do(func() {
		ctx := context.Background()
		// Rows are inserted in the array's order, so seq keeps arrival order within a batch;
		// "WHERE true" is how SQLite's grammar tells an upsert's ON from a join's.
		if js.ins, js.err = db.w.PrepareContext(ctx, `INSERT INTO queue_entries (show_id, identity, lane, rank, joined_at)
			SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4 FROM json_each(?) j WHERE true
			ORDER BY j.key
			ON CONFLICT (show_id, identity) DO NOTHING RETURNING `+entryColumns); js.err != nil {
			return
		}
		js.sel, js.err = db.w.PrepareContext(ctx, `SELECT `+entryColumns+` FROM queue_entries WHERE show_id = ? AND identity = ?`)
	})
	if js.err != nil {
		return nil, nil, fmt.Errorf("prepare the queue's statements: %w", js.err)
	}
	return js.ins, js.sel, nil
}

// QueueEntry implements boxoffice.WaitRoomStore.
func (db *DB) QueueEntry(ctx context.Context, seq int64) (e *boxoffice.QueueEntry, admitted int64, err error) {
	err = db.View(ctx, func(btx boxoffice.Tx) error {
		e, admitted = nil, 0
		err := btx.(*tx).queryRaw(ctx, `SELECT `+entryColumns+`,
				COALESCE((SELECT w.admitted FROM waitrooms w WHERE w.show_id = q.show_id), 0)
			FROM queue_entries q WHERE seq = ?`, []any{seq},
			func(rows *sql.Rows) (err error) {
				e, err = scanEntry(func(dest ...any) error { return rows.Scan(append(dest, &admitted)...) })
				return err
			})
		if err != nil {
			return fmt.Errorf("read queue entry %d: %w", seq, err)
		}
		if e == nil {
			return boxoffice.Errorf(boxoffice.ENOTFOUND, "no queue entry %d", seq)
		}
		return nil
	})
	return e, admitted, err
}

// QueueAhead implements boxoffice.WaitRoomStore. It counts each lane apart: a row-value bound
// over (lane, rank, seq) ranges the index over (lane, rank) alone (seq is the rowid), and every
// post-on-sale entry has rank 0, so a count between two of them would read the whole lane.
// Counted on its own, lane 1 ranges over seq; lane 0 over its random ranks.
func (db *DB) QueueAhead(ctx context.Context, showID string, after *boxoffice.QueueKey, before boxoffice.QueueKey) (ahead, admitted int64, err error) {
	from := boxoffice.QueueHead
	if after != nil {
		from = *after
	}
	// Lane 0 between (rank, seq) bounds, lane 1 between seq bounds; an empty range where the
	// interval misses the lane. Ranks and seqs are never negative.
	lo0, hi0 := [2]int64{-1, -1}, [2]int64{math.MaxInt64, math.MaxInt64}
	lo1, hi1 := int64(-1), int64(math.MaxInt64)
	switch from.Lane {
	case 0:
		lo0 = [2]int64{from.Rank, from.Seq}
	case 1:
		lo0, lo1 = hi0, from.Seq
	}
	switch before.Lane {
	case 0:
		hi0, hi1 = [2]int64{before.Rank, before.Seq}, -1
	case 1:
		hi1 = before.Seq
	}
	err = db.View(ctx, func(btx boxoffice.Tx) error {
		return btx.(*tx).queryRowRaw(ctx, `SELECT
				(SELECT COUNT(*) FROM queue_entries WHERE show_id = ?1 AND admitted_at = 0 AND lane = 0
					AND (rank, seq) > (?2, ?3) AND (rank, seq) < (?4, ?5))
				+ (SELECT COUNT(*) FROM queue_entries WHERE show_id = ?1 AND admitted_at = 0 AND lane = 1 AND rank = 0
					AND seq > ?6 AND seq < ?7),
			COALESCE((SELECT admitted FROM waitrooms WHERE show_id = ?1), 0)`,
			[]any{showID, lo0[0], lo0[1], hi0[0], hi0[1], lo1, hi1}, &ahead, &admitted)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("count the queue of %s before %+v: %w", showID, before, err)
	}
	return ahead, admitted, nil
}

// QueuePlaces implements boxoffice.WaitRoomStore: one read transaction, so one snapshot.
func (db *DB) QueuePlaces(ctx context.Context, showID string, joinedAfter time.Time, each func(boxoffice.QueuePlace) error) (admitted int64, err error) {
	err = db.View(ctx, func(btx boxoffice.Tx) error {
		admitted = 0
		// As on PostgreSQL: the last entry is one step of the index, not a count over the
		// window, and the rows come in the window's order without an ORDER BY to sort them again.
		return btx.(*tx).queryRaw(ctx, `SELECT p.lane, p.rank, p.seq, p.joined_at, p.n, w.admitted FROM waitrooms w
			JOIN (SELECT lane, rank, seq, joined_at, row_number() OVER (ORDER BY lane, rank, seq) - 1 AS n
				FROM queue_entries WHERE show_id = ?1 AND admitted_at = 0) p
			WHERE w.show_id = ?1 AND (p.joined_at > ?2 OR (p.lane, p.rank, p.seq) = (SELECT lane, rank, seq FROM queue_entries
				WHERE show_id = ?1 AND admitted_at = 0 ORDER BY lane DESC, rank DESC, seq DESC LIMIT 1))`, []any{showID, micros(joinedAfter)},
			func(rows *sql.Rows) error {
				var p boxoffice.QueuePlace
				var joined int64
				if err := rows.Scan(&p.Key.Lane, &p.Key.Rank, &p.Key.Seq, &joined, &p.Ahead, &admitted); err != nil {
					return err
				}
				p.JoinedAt = fromMicros(joined)
				return each(p)
			})
	})
	if err != nil {
		return 0, fmt.Errorf("number the queue of %s: %w", showID, err)
	}
	return admitted, nil
}

// AdmitQueue implements boxoffice.WaitRoomStore. SQLite's one writer runs it alone, so the
// room's row needs no lock beyond the transaction; other processes on the file wait for it too.
func (db *DB) AdmitQueue(ctx context.Context, showID string, now time.Time, shoppers int) (admitted int, err error) {
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		admitted = 0
		var opens, credit, total int64
		var rate, ttl int64
		var paused bool
		err := t.queryRowRaw(ctx, `SELECT opens_at, admit_per_second, admission_ttl_seconds, admitted, credit_at, paused FROM waitrooms WHERE show_id = ?`,
			[]any{showID}, &opens, &rate, &ttl, &total, &credit, &paused)
		if errors.Is(err, sql.ErrNoRows) || paused {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read waiting room of %s: %w", showID, err)
		}
		budget, start := boxoffice.AdmitBudget(micros(now), opens, credit, rate)
		if budget > 0 && shoppers >= 0 {
			var shopping int64
			if err := t.queryRowRaw(ctx, shoppersSQL,
				[]any{showID, micros(now) - ttl*1e6}, &shopping); err != nil {
				return fmt.Errorf("count the shoppers of %s: %w", showID, err)
			}
			budget = min(budget, max(0, int64(shoppers)-shopping))
		}
		if budget == 0 {
			return nil
		}
		res, err := t.execRaw(ctx, `UPDATE queue_entries SET admitted_at = ?1, admit_no = ?2 + n.i
			FROM (SELECT seq, row_number() OVER (ORDER BY lane, rank, seq) - 1 AS i FROM
				(SELECT seq, lane, rank FROM queue_entries WHERE show_id = ?3 AND admitted_at = 0
				 ORDER BY lane, rank, seq LIMIT ?4)) AS n
			WHERE queue_entries.seq = n.seq`, micros(now), total, showID, budget)
		if err != nil {
			return fmt.Errorf("admit from the queue of %s: %w", showID, err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		if _, err := t.execRaw(ctx, `UPDATE waitrooms SET admitted = admitted + ?, credit_at = ? WHERE show_id = ?`,
			n, boxoffice.CreditAfter(start, n, rate), showID); err != nil {
			return fmt.Errorf("advance the waiting room of %s: %w", showID, err)
		}
		admitted = int(n)
		return nil
	})
	return admitted, err
}

// shoppersSQL counts the show ?1's buyers shopping: admitted after ?2, with no hold of the show
// made since. "admitted_at > 0" lets the partial index queue_entries_admitted serve; holds_show_buyer
// answers each probe by lower(buyer_email), which folds ASCII only as the identity
// (boxoffice.BuyerKey) does; the unary + drops the identity column's TEXT affinity, without
// which SQLite probes that expression index by show_id alone.
const shoppersSQL = `SELECT count(*) FROM queue_entries q
	WHERE q.show_id = ?1 AND q.admitted_at > 0 AND q.admitted_at > ?2 AND NOT EXISTS (SELECT 1 FROM holds h
		WHERE h.show_id = ?1 AND lower(h.buyer_email) = +q.identity AND h.created_at >= q.admitted_at)`

// Secret implements boxoffice.WaitRoomStore.
func (db *DB) Secret(ctx context.Context, name string, candidate []byte) (secret []byte, err error) {
	err = db.Update(ctx, func(btx boxoffice.Tx) error {
		t := btx.(*tx)
		if _, err := t.execRaw(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, candidate); err != nil {
			return err
		}
		return t.queryRowRaw(ctx, `SELECT value FROM secrets WHERE name = ?`, []any{name}, &secret)
	})
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return secret, nil
}
