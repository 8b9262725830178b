package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// stmtID names one of the statements the store prepares once per pool.
type stmtID int

// The statements. Column lists are shared with the scan functions in tx.go; keep them in step.
const (
	sGetShow stmtID = iota
	sGetTiers
	sListShows
	sListShowTiers
	sUpsertShow
	sUpsertTier
	sDeleteOtherTiers

	sTierCounts
	sAddTierCounts
	sForEachTier

	sInsertHold
	sGetHold
	sEndHold
	sDueHolds
	sNextHoldExpiry
	sBuyerTickets
	sForEachHold

	sInsertOrder
	sGetOrder
	sLiveOrderForHold
	sUpdateOrder
	sListOrders
	sListShowOrders
	sListKeyOrders
	sListKeyShowOrders
	sPendingOrders
	sCountOrders
	sForEachOrder

	sInsertIdem
	sInsertIdems1
	sInsertIdems8
	sInsertIdems32
	sGetIdem
	sUpdateIdem
	sAnswerIdemForOrder
	sSweepIdem
	sClearIdemLeases
	sForEachIdem

	sAppendEvent
	sListEvents
	sEventsAt
	sEventByID
	sEventsByID
	sInboxApplied
	sInsertInbox
	sInsertInboxes
	sEventsOfSubject
	sEventsSeq

	sInsertAPIKey
	sAPIKeyByHash
	sListAPIKeys
	sRevokeAPIKey
	sTouchAPIKey

	sDeleteSeats
	sInsertSeat
	sMarkSeated
	sSeatsOfShow
	sSeatsOfTier
	sAvailableSeats
	sClaimSeats
	sFreeSeats
	sSeatsOfHold
	sSeatByID

	sSetTierCounts
	sFence
	sAppendInventoryEvent
	sInventoryEvents
	sInventoryHead

	sSavepointGC
	sReleaseGC
	sRollbackToGC
	sSavepointC
	sReleaseC
	sRollbackToC

	numStmts
)

const (
	showCols  = `id, name, starts_at, hold_ttl_seconds, max_per_buyer, created_at, updated_at, cancel_cutoff_seconds`
	tierCols  = `show_id, id, name, capacity, price_amount, price_currency, held, sold, seated`
	countCols = `show_id, id, capacity, held, sold, version, fence`
	holdCols  = `id, show_id, tier_id, quantity, buyer_email, status, expires_at, created_at, updated_at, api_key_id`
	orderCols = `id, status, show_id, tier_id, hold_id, quantity, amount, currency, buyer_email, tickets,
		payment_token, charge_id, refund_id, release_on_failure, created_at, updated_at, api_key_id`
	apiKeyCols = `id, role, label, hash, created_at, last_used_at, revoked_at`
	idemCols   = `id, scope, key, fingerprint, hold_id, order_id, locked_until, response_status,
		response_body, response_location, created_at, expires_at`
	eventCols = `position, id, type, subject, seq, data, created_at`
	// A seat's state is its hold's: held while the hold is active, sold once it is confirmed.
	seatCols = `s.tier_id, s.id, s.section, s.row_name, s.label, s.rank, s.pos, s.accessible, s.restricted_view,
		COALESCE(s.hold_id, ''), CASE WHEN s.hold_id IS NULL THEN 'available'
			WHEN h.status = 'confirmed' THEN 'sold' ELSE 'held' END`
)

var stmtSQL = [numStmts]string{
	sGetShow:   `SELECT ` + showCols + ` FROM shows WHERE id = ?`,
	sGetTiers:  `SELECT ` + tierCols + ` FROM tiers WHERE show_id = ? ORDER BY position`,
	sListShows: `SELECT ` + showCols + ` FROM shows WHERE id > ? ORDER BY id LIMIT ?`,
	// The tiers of the same page of shows, in one query rather than one per show.
	sListShowTiers: `SELECT ` + tierCols + ` FROM tiers
		WHERE show_id IN (SELECT id FROM shows WHERE id > ? ORDER BY id LIMIT ?)
		ORDER BY show_id, position`,
	// created_at is not in the update: a replaced show keeps the time it was first created.
	sUpsertShow: `INSERT INTO shows (` + showCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, starts_at = excluded.starts_at,
			hold_ttl_seconds = excluded.hold_ttl_seconds, max_per_buyer = excluded.max_per_buyer,
			updated_at = excluded.updated_at, cancel_cutoff_seconds = excluded.cancel_cutoff_seconds`,
	// held, sold, version and fence are not in the update: a tier that stays keeps its counts.
	sUpsertTier: `INSERT INTO tiers (show_id, id, position, name, capacity, price_amount, price_currency)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (show_id, id) DO UPDATE SET position = excluded.position, name = excluded.name,
			capacity = excluded.capacity, price_amount = excluded.price_amount,
			price_currency = excluded.price_currency`,
	sDeleteOtherTiers: `DELETE FROM tiers WHERE show_id = ? AND id NOT IN (SELECT value FROM json_each(?))`,

	sDeleteSeats: `DELETE FROM seats WHERE show_id = ? AND tier_id = ?`,
	sInsertSeat: `INSERT INTO seats (show_id, tier_id, id, section, row_name, label, rank, pos, accessible, restricted_view)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	sMarkSeated: `UPDATE tiers SET seated = ? WHERE show_id = ? AND id = ?`,
	sSeatsOfShow: `SELECT ` + seatCols + ` FROM seats AS s LEFT JOIN holds AS h ON h.id = s.hold_id
		WHERE s.show_id = ? ORDER BY s.tier_id, s.rank`,
	sSeatsOfTier: `SELECT ` + seatCols + ` FROM seats AS s LEFT JOIN holds AS h ON h.id = s.hold_id
		WHERE s.show_id = ? AND s.tier_id = ? ORDER BY s.rank`,
	// Free seats need no hold to say their state. Without statistics the planner would take
	// seats_tier_rank, and walk every taken seat before the first free one.
	sAvailableSeats: `SELECT s.tier_id, s.id, s.section, s.row_name, s.label, s.rank, s.pos, s.accessible, s.restricted_view,
			'', 'available'
		FROM seats AS s INDEXED BY seats_free
		WHERE s.show_id = ? AND s.tier_id = ? AND s.hold_id IS NULL ORDER BY s.rank LIMIT ?`,
	// The conditional write of a seat: only a free one is taken, so two holds can never have it.
	// One seat a statement, found by its primary key: a party is a few seats.
	sClaimSeats: `UPDATE seats SET hold_id = ?1 WHERE show_id = ?2 AND id = ?4 AND tier_id = ?3 AND hold_id IS NULL`,
	sFreeSeats:  `UPDATE seats SET hold_id = NULL WHERE hold_id = ?`,
	sSeatByID: `SELECT ` + seatCols + ` FROM seats AS s LEFT JOIN holds AS h ON h.id = s.hold_id
		WHERE s.show_id = ? AND s.id = ? AND s.tier_id = ?`,
	sSeatsOfHold: `SELECT ` + seatCols + ` FROM seats AS s LEFT JOIN holds AS h ON h.id = s.hold_id
		WHERE s.hold_id = ? ORDER BY s.rank`,

	sTierCounts: `SELECT ` + countCols + ` FROM tiers WHERE show_id = ? AND id = ?`,
	// The whole capacity check is in the WHERE clause, so that it and the write are one atomic
	// step whatever strategy calls it.
	sAddTierCounts: `UPDATE tiers SET held = held + ?1, sold = sold + ?2, version = version + 1
		WHERE show_id = ?3 AND id = ?4
			AND held + ?1 >= 0 AND sold + ?2 >= 0 AND held + ?1 + sold + ?2 <= capacity
		RETURNING ` + countCols,
	sForEachTier: `SELECT ` + countCols + ` FROM tiers ORDER BY show_id, id`,

	sInsertHold: `INSERT INTO holds (` + holdCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	sGetHold:    `SELECT ` + holdCols + ` FROM holds WHERE id = ?`,
	sEndHold:    `UPDATE holds SET status = ?, updated_at = ? WHERE id = ? AND status = 'active'`,
	// The status IN term repeats the WHERE of orders_live_hold so that SQLite may use that partial
	// index for the lookup; the status = term then narrows it to orders waiting for payment.
	sDueHolds: `SELECT ` + holdCols + ` FROM holds AS h
		WHERE h.status = 'active' AND h.expires_at <= ?
			AND NOT EXISTS (SELECT 1 FROM orders AS o
				WHERE o.hold_id = h.id AND o.status IN ('pending_payment', 'confirmed')
					AND o.status = 'pending_payment')
		ORDER BY h.expires_at LIMIT ?`,
	sNextHoldExpiry: `SELECT expires_at FROM holds WHERE status = 'active' ORDER BY expires_at LIMIT 1`,
	sBuyerTickets: `SELECT COALESCE(SUM(quantity), 0) FROM holds
		WHERE show_id = ? AND lower(buyer_email) = ? AND status IN ('active', 'confirmed')`,
	// No ORDER BY: the audit needs every row, not an order, and a scan in rowid order is the
	// cheapest way to stream them.
	sForEachHold: `SELECT ` + holdCols + ` FROM holds`,

	sInsertOrder: `INSERT INTO orders (` + orderCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	sGetOrder: `SELECT ` + orderCols + ` FROM orders WHERE id = ?`,
	sLiveOrderForHold: `SELECT ` + orderCols + ` FROM orders
		WHERE hold_id = ? AND status IN ('pending_payment', 'confirmed')`,
	sUpdateOrder: `UPDATE orders SET status = ?, tickets = ?, charge_id = ?, refund_id = ?,
			release_on_failure = ?, updated_at = ?
		WHERE id = ? AND status = ?`,
	sListOrders:     `SELECT ` + orderCols + ` FROM orders WHERE id > ? ORDER BY id LIMIT ?`,
	sListShowOrders: `SELECT ` + orderCols + ` FROM orders WHERE show_id = ? AND id > ? ORDER BY id LIMIT ?`,
	// A channel's orders: one statement per filter, so each is served by its index.
	sListKeyOrders: `SELECT ` + orderCols + ` FROM orders WHERE api_key_id = ? AND id > ? ORDER BY id LIMIT ?`,
	sListKeyShowOrders: `SELECT ` + orderCols + ` FROM orders
		WHERE api_key_id = ? AND show_id = ? AND id > ? ORDER BY id LIMIT ?`,
	// The LIMIT inside bounds the index range read; orders_status_id covers it.
	sCountOrders: `SELECT count(*) FROM (SELECT 1 FROM orders WHERE status = ? LIMIT ?)`,
	sPendingOrders: `SELECT ` + orderCols + ` FROM orders WHERE status = 'pending_payment'
		ORDER BY id LIMIT ?`,
	sForEachOrder: `SELECT ` + orderCols + ` FROM orders`,

	sInsertIdem: `INSERT INTO idempotency_records (` + idemCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	// InsertIdemRecords' statements, one per chunk size.
	sInsertIdems1:  insertIdems(1),
	sInsertIdems8:  insertIdems(8),
	sInsertIdems32: insertIdems(32),
	sGetIdem:       `SELECT ` + idemCols + ` FROM idempotency_records WHERE scope = ? AND key = ?`,
	// Only one request makes an order, so there is one record. Should a caller have copied the
	// id to another, LIMIT 1 takes the first in index order, which is insertion order.
	sUpdateIdem: `UPDATE idempotency_records SET hold_id = ?, order_id = ?, locked_until = ?,
			response_status = ?, response_body = ?, response_location = ?
		WHERE id = ?`,
	sAnswerIdemForOrder: `UPDATE idempotency_records SET locked_until = 0,
			response_status = ?, response_body = ?, response_location = ?
		WHERE order_id = ? AND response_status IS NULL`,
	// A record whose request is still working (a live lease) or whose order still waits for its
	// payment is kept past its expiry: sweeping it would let a retry start a second order and a
	// second charge.
	sSweepIdem: `DELETE FROM idempotency_records WHERE id IN (
		SELECT r.id FROM idempotency_records r
		WHERE r.expires_at < ?1 AND r.locked_until < ?1
			AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = r.order_id AND o.status = 'pending_payment')
		ORDER BY r.expires_at LIMIT ?2)`,
	sClearIdemLeases: `UPDATE idempotency_records SET locked_until = 0 WHERE locked_until <> 0`,
	sForEachIdem:     `SELECT ` + idemCols + ` FROM idempotency_records`,

	// The writer is exclusive, so reading the subject's last seq and inserting the next cannot
	// interleave with another append; UNIQUE (subject, seq) would catch it if it did.
	sAppendEvent: `INSERT INTO events (id, type, subject, seq, data, created_at)
		VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE subject = ?3), ?4, ?5)
		RETURNING position, seq`,
	sListEvents: `SELECT ` + eventCols + ` FROM events WHERE position > ? ORDER BY position LIMIT ?`,
	sEventsAt: `SELECT ` + eventCols + ` FROM events
		WHERE position IN (SELECT value FROM json_each(?)) ORDER BY position`,
	sEventByID:  `SELECT ` + eventCols + ` FROM events WHERE id = ?`,
	sEventsByID: `SELECT ` + eventCols + ` FROM events WHERE id IN (SELECT value FROM json_each(?))`,
	// Prepared, unlike the rest of the async side's statements: every receipt runs it.
	sInsertInbox: `INSERT INTO inbox (consumer, event_id, applied_at) VALUES (?, ?, ?)`,
	sInsertInboxes: `INSERT INTO inbox (consumer, event_id, applied_at)
		SELECT ?1, value, ?3 FROM json_each(?2) WHERE true ON CONFLICT DO NOTHING`,
	sInboxApplied: `SELECT event_id FROM inbox
		WHERE consumer = ? AND event_id IN (SELECT value FROM json_each(?))`,
	// UNIQUE (subject, seq) is the index.
	sEventsOfSubject: `SELECT ` + eventCols + ` FROM events WHERE subject = ? ORDER BY seq LIMIT ?`,
	// AUTOINCREMENT's counter: the highest position ever assigned, also by a rolled-back insert.
	sEventsSeq: `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)`,

	sInsertAPIKey: `INSERT INTO api_keys (` + apiKeyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)`,
	sAPIKeyByHash: `SELECT ` + apiKeyCols + ` FROM api_keys WHERE hash = ?`,
	sListAPIKeys:  `SELECT ` + apiKeyCols + ` FROM api_keys WHERE id > ? ORDER BY id LIMIT ?`,
	// The first revocation's time stays; the SELECT tells a missing key from a revoked one.
	sRevokeAPIKey: `UPDATE api_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN ?1 ELSE revoked_at END
		WHERE id = ?2 RETURNING id`,
	sTouchAPIKey: `UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND last_used_at < ?1`,

	sSetTierCounts: `UPDATE tiers SET held = ?1, sold = ?2, version = version + 1
		WHERE show_id = ?3 AND id = ?4 AND version = ?5`,
	// Equal tokens pass: one lock holder may write several times under the same token.
	sFence:                `UPDATE tiers SET fence = ?1 WHERE show_id = ?2 AND id = ?3 AND fence <= ?1`,
	sAppendInventoryEvent: `INSERT INTO inventory_events (` + invEventCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	sInventoryEvents: `SELECT ` + invEventCols + ` FROM inventory_events
		WHERE show_id = ? AND version > ? ORDER BY version LIMIT ?`,
	sInventoryHead: `SELECT COALESCE(MAX(version), 0) FROM inventory_events WHERE show_id = ?`,

	// The savepoints the writer makes all the time: the group commit's around each Update
	// ("gc") and the actor's around each command of a batch ("c"), compiled once rather than
	// parsed at every use (see preparedSavepoints).
	sSavepointGC:  `SAVEPOINT gc`,
	sReleaseGC:    `RELEASE gc`,
	sRollbackToGC: `ROLLBACK TO gc`,
	sSavepointC:   `SAVEPOINT c`,
	sReleaseC:     `RELEASE c`,
	sRollbackToC:  `ROLLBACK TO c`,
}

// preparedSavepoints finds the compiled statement of a savepoint statement by its text.
var preparedSavepoints = map[string]stmtID{
	"SAVEPOINT gc": sSavepointGC, "RELEASE gc": sReleaseGC, "ROLLBACK TO gc": sRollbackToGC,
	"SAVEPOINT c": sSavepointC, "RELEASE c": sReleaseC, "ROLLBACK TO c": sRollbackToC,
}

// insertIdems is the statement inserting n idempotency records.
func insertIdems(n int) string {
	values := strings.Repeat(",(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", n)[1:]
	return `INSERT INTO idempotency_records (` + idemCols + `) VALUES ` + values
}

const invEventCols = `show_id, version, tier_id, held, sold, held_after, sold_after, capacity, created_at`

// stmts are the statements prepared on one pool. A transaction binds them to its connection with
// sql.Tx.StmtContext, which database/sql caches per connection, so each is compiled once per
// connection rather than once per use.
type stmts [numStmts]*sql.Stmt

// prepare compiles every statement on db; an error names the statement that failed, which is a
// bug in stmtSQL or a migration.
func (s *stmts) prepare(ctx context.Context, db *sql.DB) error {
	for i, q := range stmtSQL {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare statement %d (%.60q): %w", i, q, err)
		}
		s[i] = st
	}
	return nil
}

// close closes the prepared statements.
func (s *stmts) close() error {
	var errs []error
	for i, st := range s {
		if st != nil {
			errs = append(errs, st.Close())
			s[i] = nil
		}
	}
	return errors.Join(errs...)
}
