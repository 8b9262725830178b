package postgres

// The statements. pgx prepares each one on a connection the first time it runs there and keeps
// it in the connection's statement cache, so these are parsed and planned once per connection.
// Column lists are shared with the scan functions in tx.go; keep them in step.

const (
	showCols  = `id, name, starts_at, hold_ttl_seconds, max_per_buyer, created_at, updated_at, cancel_cutoff_seconds`
	countCols = `show_id, id, capacity, held, sold, version, fence`
	holdCols  = `id, show_id, tier_id, quantity, buyer_email, status, expires_at, created_at, updated_at, api_key_id`
	orderCols = `id, status, show_id, tier_id, hold_id, quantity, amount, currency, buyer_email, tickets,
		payment_token, charge_id, refund_id, release_on_failure, created_at, updated_at, api_key_id`
	apiKeyCols = `id, role, label, hash, created_at, last_used_at, revoked_at`
	idemCols   = `id, scope, key, fingerprint, hold_id, order_id, locked_until, response_status,
		response_body, response_location, created_at, expires_at`
	eventCols    = `position, id, type, subject, seq, data, created_at`
	invEventCols = `show_id, version, tier_id, held, sold, held_after, sold_after, capacity, created_at`
)

// Shows. A show comes with its tiers in one statement (a LEFT JOIN, so that a show without tiers
// comes too): one round trip, and under READ COMMITTED one snapshot for the show and its tiers.
const (
	sGetShow = `SELECT s.id, s.name, s.starts_at, s.hold_ttl_seconds, s.max_per_buyer, s.created_at, s.updated_at,
			s.cancel_cutoff_seconds, t.id, t.name, t.capacity, t.price_amount, t.price_currency, t.held, t.sold, t.seated
		FROM shows AS s LEFT JOIN tiers AS t ON t.show_id = s.id
		WHERE s.id = $1
		ORDER BY t.position`
	// The page of shows and all their tiers in one statement, rather than one query per show.
	sListShows = `SELECT s.id, s.name, s.starts_at, s.hold_ttl_seconds, s.max_per_buyer, s.created_at, s.updated_at,
			s.cancel_cutoff_seconds, t.id, t.name, t.capacity, t.price_amount, t.price_currency, t.held, t.sold, t.seated
		FROM (SELECT ` + showCols + ` FROM shows WHERE id > $1 ORDER BY id LIMIT $2) AS s
			LEFT JOIN tiers AS t ON t.show_id = s.id
		ORDER BY s.id, t.position`
	// created_at is not in the update: a replaced show keeps the time it was first created.
	sUpsertShow = `INSERT INTO shows (` + showCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, starts_at = excluded.starts_at,
			hold_ttl_seconds = excluded.hold_ttl_seconds, max_per_buyer = excluded.max_per_buyer,
			updated_at = excluded.updated_at, cancel_cutoff_seconds = excluded.cancel_cutoff_seconds`
	// held, sold, version and fence are not in the update: a tier that stays keeps its counts.
	sUpsertTier = `INSERT INTO tiers (show_id, id, position, name, capacity, price_amount, price_currency)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (show_id, id) DO UPDATE SET position = excluded.position, name = excluded.name,
			capacity = excluded.capacity, price_amount = excluded.price_amount,
			price_currency = excluded.price_currency`
	sDeleteOtherTiers = `DELETE FROM tiers WHERE show_id = $1 AND id <> ALL ($2::text[])`
)

// Seats. A seat's state is its hold's: held while the hold is active, sold once it is confirmed.
const (
	seatCols = `s.tier_id, s.id, s.section, s.row_name, s.label, s.rank, s.pos, s.accessible, s.restricted_view,
		COALESCE(s.hold_id, ''), CASE WHEN s.hold_id IS NULL THEN 'available'
			WHEN h.status = 'confirmed' THEN 'sold' ELSE 'held' END`
	seatFrom     = ` FROM seats AS s LEFT JOIN holds AS h ON h.id = s.hold_id`
	sDeleteSeats = `DELETE FROM seats WHERE show_id = $1 AND tier_id = $2`
	sInsertSeats = `INSERT INTO seats (show_id, tier_id, id, section, row_name, label, rank, pos, accessible, restricted_view)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::bool[], $10::bool[])`
	sMarkSeated  = `UPDATE tiers SET seated = $1 WHERE show_id = $2 AND id = $3`
	sSeatsOfShow = `SELECT ` + seatCols + seatFrom + ` WHERE s.show_id = $1 ORDER BY s.tier_id, s.rank`
	sSeatsOfTier = `SELECT ` + seatCols + seatFrom + ` WHERE s.show_id = $1 AND s.tier_id = $2 ORDER BY s.rank`
	// Free seats need no hold to say their state.
	sAvailableSeats = `SELECT s.tier_id, s.id, s.section, s.row_name, s.label, s.rank, s.pos, s.accessible, s.restricted_view,
			'', 'available'
		FROM seats AS s WHERE s.show_id = $1 AND s.tier_id = $2 AND s.hold_id IS NULL ORDER BY s.rank LIMIT $3`
	// The conditional write of a seat: only a free one is taken, so two holds can never have it.
	// It never waits (SKIP LOCKED): a seat that another transaction is changing right now (being
	// claimed, or freed by a release or a cancel that then waits for the tier this claim's
	// strategy may hold) counts as taken for now, so a claim is in no lock cycle; see LockOrder.
	sClaimSeats = `UPDATE seats SET hold_id = $1 WHERE show_id = $2 AND id IN (
		SELECT id FROM seats WHERE show_id = $2 AND tier_id = $3 AND hold_id IS NULL AND id = ANY($4::text[])
		FOR UPDATE SKIP LOCKED)`
	sFreeSeats   = `UPDATE seats SET hold_id = NULL WHERE hold_id = $1`
	sSeatsOfHold = `SELECT ` + seatCols + seatFrom + ` WHERE s.hold_id = $1 ORDER BY s.rank`
	sSeatsByID   = `SELECT ` + seatCols + seatFrom + ` WHERE s.show_id = $1 AND s.tier_id = $2 AND s.id = ANY($3::text[])`
)

// Tier counts.
const (
	sTierCounts          = `SELECT ` + countCols + ` FROM tiers WHERE show_id = $1 AND id = $2`
	sTierCountsForUpdate = sTierCounts + ` FOR UPDATE`
	// The whole capacity check is in the WHERE clause, so that it and the write are one atomic
	// step whatever strategy calls it. A concurrent writer's row lock makes this UPDATE wait, and
	// PostgreSQL then evaluates the WHERE again on the row that writer committed.
	sAddTierCounts = `UPDATE tiers SET held = held + $1, sold = sold + $2, version = version + 1
		WHERE show_id = $3 AND id = $4
			AND held + $1 >= 0 AND sold + $2 >= 0 AND held + $1 + sold + $2 <= capacity
		RETURNING ` + countCols
	// The capacity is checked in the WHERE clause rather than left to the CHECK constraint, whose
	// violation would abort the whole transaction; SetTierCounts tells the cases apart.
	sSetTierCounts = `UPDATE tiers SET held = $1, sold = $2, version = version + 1
		WHERE show_id = $3 AND id = $4 AND version = $5 AND $1::integer + $2::integer <= capacity`
	// Equal tokens pass: one lock holder may write several times under the same token.
	sFence = `UPDATE tiers SET fence = $1 WHERE show_id = $2 AND id = $3 AND fence <= $1`
	// Keyset pages, so that ForEachTier neither holds the connection while fn runs nor loads every
	// row at once.
	sForEachTier = `SELECT ` + countCols + ` FROM tiers WHERE (show_id, id) > ($1, $2)
		ORDER BY show_id, id LIMIT $3`
)

// Holds.
const (
	// ON CONFLICT DO NOTHING turns a duplicate into "no row inserted" instead of an error that
	// would abort the transaction.
	sInsertHold = `INSERT INTO holds (` + holdCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT DO NOTHING`
	sGetHold          = `SELECT ` + holdCols + ` FROM holds WHERE id = $1`
	sGetHoldForUpdate = sGetHold + ` FOR UPDATE`
	sEndHold          = `UPDATE holds SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'active'`
	// The status IN term repeats the WHERE of orders_live_hold so that the planner may use that
	// partial index for the lookup; the status = term then narrows it to orders waiting for payment.
	sDueHolds = `SELECT ` + holdCols + ` FROM holds AS h
		WHERE h.status = 'active' AND h.expires_at <= $1
			AND NOT EXISTS (SELECT 1 FROM orders AS o
				WHERE o.hold_id = h.id AND o.status IN ('pending_payment', 'confirmed')
					AND o.status = 'pending_payment')
		ORDER BY h.expires_at LIMIT $2`
	sNextHoldExpiry = `SELECT expires_at FROM holds WHERE status = 'active' ORDER BY expires_at LIMIT 1`
	sBuyerTickets   = `SELECT COALESCE(SUM(quantity), 0) FROM holds
		WHERE show_id = $1 AND lower(buyer_email COLLATE "C") = $2 AND status IN ('active', 'confirmed')`
	sForEachHold = `SELECT ` + holdCols + ` FROM holds WHERE id > $1 ORDER BY id LIMIT $2`
)

// Orders.
const (
	// Without a conflict target, DO NOTHING covers the primary key and the partial unique index
	// orders_live_hold alike.
	sInsertOrder = `INSERT INTO orders (` + orderCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
		ON CONFLICT DO NOTHING`
	sGetOrder         = `SELECT ` + orderCols + ` FROM orders WHERE id = $1`
	sLiveOrderForHold = `SELECT ` + orderCols + ` FROM orders
		WHERE hold_id = $1 AND status IN ('pending_payment', 'confirmed')`
	sUpdateOrder = `UPDATE orders SET status = $1, tickets = $2, charge_id = $3, refund_id = $4,
			release_on_failure = $5, updated_at = $6
		WHERE id = $7 AND status = $8`
	sListOrders     = `SELECT ` + orderCols + ` FROM orders WHERE id > $1 ORDER BY id LIMIT $2`
	sListShowOrders = `SELECT ` + orderCols + ` FROM orders WHERE show_id = $1 AND id > $2 ORDER BY id LIMIT $3`
	// A channel's orders: one statement per filter, so each is served by its index.
	sListKeyOrders     = `SELECT ` + orderCols + ` FROM orders WHERE api_key_id = $1 AND id > $2 ORDER BY id LIMIT $3`
	sListKeyShowOrders = `SELECT ` + orderCols + ` FROM orders
		WHERE api_key_id = $1 AND show_id = $2 AND id > $3 ORDER BY id LIMIT $4`
	// The LIMIT inside bounds the index range read; orders_status_id covers it.
	sCountOrders   = `SELECT count(*) FROM (SELECT 1 FROM orders WHERE status = $1 LIMIT $2) AS o`
	sPendingOrders = `SELECT ` + orderCols + ` FROM orders WHERE status = 'pending_payment'
		ORDER BY id LIMIT $1`
	sForEachOrder = `SELECT ` + orderCols + ` FROM orders WHERE id > $1 ORDER BY id LIMIT $2`
)

// Idempotency records.
const (
	// A key is claimed before its record is inserted (LockOrder, step 1): sClaimIdem tries the
	// key's advisory lock, in a statement of its own so that the insert's snapshot, taken after
	// it, shows every record whose claim ended; the insert then inserts only a key without a
	// record visible. Neither waits: a key claimed by a transaction in flight, or stored, is not
	// inserted. The lock's 64-bit key is apart from the subjects' two-int ones; a collision of two
	// keys' hashes only makes one of them wait for a retry.
	sClaimIdem  = `SELECT pg_try_advisory_xact_lock(` + idemLockKeyParams + `)`
	sInsertIdem = `INSERT INTO idempotency_records (` + idemCols + `)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::timestamptz, $8::int4,
			$9::bytea, $10::text, $11::timestamptz, $12::timestamptz
		WHERE NOT EXISTS (SELECT 1 FROM idempotency_records WHERE scope = $2 AND key = $3)` + idemInsertTail
	// sInsertClaimedIdem is sInsertIdem sent after sClaimIdem without knowing its answer: it
	// inserts only if the claim holds (trying a lock this transaction holds succeeds again).
	sInsertClaimedIdem = `INSERT INTO idempotency_records (` + idemCols + `)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::timestamptz, $8::int4,
			$9::bytea, $10::text, $11::timestamptz, $12::timestamptz
		WHERE NOT EXISTS (SELECT 1 FROM idempotency_records WHERE scope = $2 AND key = $3)
			AND pg_try_advisory_xact_lock(` + idemLockKeyInsert + `)` + idemInsertTail
	sGetIdem          = `SELECT ` + idemCols + ` FROM idempotency_records WHERE scope = $1 AND key = $2`
	sGetIdemForUpdate = sGetIdem + ` FOR UPDATE`
	// Only one request makes an order, so there is one record. Should a caller have copied the
	// id to another, the first one created is taken.
	sUpdateIdem = `UPDATE idempotency_records SET hold_id = $1, order_id = $2, locked_until = $3,
			response_status = $4, response_body = $5, response_location = $6
		WHERE id = $7`
	sAnswerIdemForOrder = `UPDATE idempotency_records SET locked_until = $1,
			response_status = $2, response_body = $3, response_location = $4
		WHERE order_id = $5 AND response_status IS NULL`
	// SKIP LOCKED: a record a request has locked (it is working on it) is not worth waiting for;
	// the next sweep takes it if it is still expired.
	// A record whose request is still working (a live lease) or whose order still waits for its
	// payment is kept past its expiry: sweeping it would let a retry start a second order and a
	// second charge.
	sSweepIdem = `DELETE FROM idempotency_records WHERE id IN (
		SELECT r.id FROM idempotency_records r
		WHERE r.expires_at < $1 AND r.locked_until < $1
			AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = r.order_id AND o.status = 'pending_payment')
		ORDER BY r.expires_at LIMIT $2
		FOR UPDATE OF r SKIP LOCKED)`
	// $1 is the zero time, which is what "no lease" is stored as.
	sClearIdemLeases = `UPDATE idempotency_records SET locked_until = $1 WHERE locked_until <> $1`
	sForEachIdem     = `SELECT ` + idemCols + ` FROM idempotency_records WHERE id > $1 ORDER BY id LIMIT $2`
)

// Events.
const (
	// The outbox numbers each subject's events 1, 2, 3…. Writers run concurrently, so the
	// read of the subject's last seq and the insert of the next must not interleave with another
	// transaction's: sLockSubject takes a transaction-scoped advisory lock per subject first (the
	// two-int form, whose key space is apart from the migration lock's bigint one; a hash
	// collision only makes two subjects take turns). It must be a statement of its own: under READ
	// COMMITTED the insert's snapshot is then taken after the lock is granted and so sees the
	// previous holder's committed event.
	sLockSubject = `SELECT pg_advisory_xact_lock(1, hashtext($1))`
	// The casts: the values of an INSERT … SELECT are typed by the SELECT, which would take an
	// untyped parameter for text.
	sAppendEvent = `INSERT INTO events (id, type, subject, seq, data, created_at)
		SELECT $1::text, $2::text, $3::text, COALESCE(MAX(seq), 0) + 1, $4::bytea, $5::timestamptz
		FROM events WHERE subject = $3
		ON CONFLICT DO NOTHING
		RETURNING position, seq`
	sListEvents = `SELECT ` + eventCols + ` FROM events WHERE position > $1 ORDER BY position LIMIT $2`
	sEventByID  = `SELECT ` + eventCols + ` FROM events WHERE id = $1`
	sEventsAt   = `SELECT ` + eventCols + ` FROM events WHERE position = ANY($1) ORDER BY position`
	sEventsByID = `SELECT ` + eventCols + ` FROM events WHERE id = ANY($1)`
	// UNIQUE (subject, seq) is the index.
	sEventsOfSubject = `SELECT ` + eventCols + ` FROM events WHERE subject = $1 ORDER BY seq LIMIT $2`
)

// API keys.
const (
	sInsertAPIKey = `INSERT INTO api_keys (` + apiKeyCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT DO NOTHING`
	sAPIKeyByHash = `SELECT ` + apiKeyCols + ` FROM api_keys WHERE hash = $1`
	sListAPIKeys  = `SELECT ` + apiKeyCols + ` FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2`
	// The first revocation's time stays; RETURNING tells a missing key from a revoked one.
	sRevokeAPIKey = `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING id`
	sTouchAPIKey  = `UPDATE api_keys SET last_used_at = $1
		WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`
)

// Inventory streams.
const (
	sAppendInventoryEvent = `INSERT INTO inventory_events (` + invEventCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING`
	sInventoryEvents = `SELECT ` + invEventCols + ` FROM inventory_events
		WHERE show_id = $1 AND version > $2 ORDER BY version LIMIT $3`
	sInventoryHead = `SELECT COALESCE(MAX(version), 0) FROM inventory_events WHERE show_id = $1`
)

// The deferred forms of the hot path's blind writes (see tx.later): each fails on the server
// unless it did what the caller was told it did.
var (
	dInsertHold         = expect(sInsertHold, "=")
	dEndHold            = expect(sEndHold, "=")
	dInsertOrder        = expect(sInsertOrder, "=")
	dUpdateOrder        = expect(sUpdateOrder, "=")
	dClaimIdem          = `SELECT 1 / pg_try_advisory_xact_lock(` + idemLockKeyParams + `)::int`
	dInsertIdem         = expect(sInsertIdem, "=")
	dUpdateIdem         = expect(sUpdateIdem, "=")
	dAnswerIdemForOrder = expect(sAnswerIdemForOrder, ">=")
	dSetTierCounts      = expect(sSetTierCounts, "=")
	// dAppendEvent answers one row whether or not the event was inserted, so that the check runs.
	dAppendEvent = `WITH w AS (` + sAppendEvent + `)
		SELECT (SELECT position FROM w), (SELECT seq FROM w), 1 / ((SELECT count(*) FROM w) = 1)::int`
)

// The advisory lock key of an idempotency key: a 64-bit hash of its scope ($1) and key ($2),
// and of the same in the columns of sInsertClaimedIdem ($2, $3) and sMultiClaim (v.s, v.k).
const (
	idemLockKeyParams = `hashtextextended($1::text || E'\n' || $2::text, 0)`
	idemLockKeyInsert = `hashtextextended($2::text || E'\n' || $3::text, 0)`
	idemLockKeyMulti  = `hashtextextended(v.s || E'\n' || v.k, 0)`
)

// idemInsertTail ends the inserts of idempotency records: should a record of the key appear
// despite the claim, the clash is no row rather than an error that aborts the transaction.
const idemInsertTail = `
		ON CONFLICT DO NOTHING`
