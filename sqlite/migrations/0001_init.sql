-- The first schema. Times are INTEGER Unix microseconds (0 = the zero time); every table is
-- STRICT so that a wrongly typed value fails loudly instead of being stored as something else.

CREATE TABLE shows (
	id               TEXT    NOT NULL PRIMARY KEY,
	name             TEXT    NOT NULL,
	starts_at        INTEGER NOT NULL,
	hold_ttl_seconds INTEGER NOT NULL,
	max_per_buyer    INTEGER,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
) STRICT;

-- The counts live here and only AddTierCounts changes them, with a conditional UPDATE. The CHECK
-- is a second line of defence: no code path, buggy or not, can commit an oversold tier.
CREATE TABLE tiers (
	show_id        TEXT    NOT NULL REFERENCES shows (id) ON DELETE CASCADE,
	id             TEXT    NOT NULL,
	position       INTEGER NOT NULL,
	name           TEXT    NOT NULL,
	capacity       INTEGER NOT NULL,
	price_amount   INTEGER NOT NULL,
	price_currency TEXT    NOT NULL,
	held           INTEGER NOT NULL DEFAULT 0,
	sold           INTEGER NOT NULL DEFAULT 0,
	version        INTEGER NOT NULL DEFAULT 0,
	fence          INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (show_id, id),
	CHECK (held >= 0 AND sold >= 0 AND held + sold <= capacity)
) STRICT, WITHOUT ROWID;

-- Holds keep show and tier ids without foreign keys: a tier whose holds all ended may be removed
-- from its show, and its history must stay.
CREATE TABLE holds (
	id          TEXT    NOT NULL PRIMARY KEY,
	show_id     TEXT    NOT NULL,
	tier_id     TEXT    NOT NULL,
	quantity    INTEGER NOT NULL,
	buyer_email TEXT    NOT NULL,
	status      TEXT    NOT NULL,
	expires_at  INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX holds_status_expires_at ON holds (status, expires_at);
CREATE INDEX holds_show_buyer ON holds (show_id, buyer_email);

CREATE TABLE orders (
	id                 TEXT    NOT NULL PRIMARY KEY,
	status             TEXT    NOT NULL,
	show_id            TEXT    NOT NULL,
	tier_id            TEXT    NOT NULL,
	hold_id            TEXT    NOT NULL,
	quantity           INTEGER NOT NULL,
	amount             INTEGER NOT NULL,
	currency           TEXT    NOT NULL,
	buyer_email        TEXT    NOT NULL,
	tickets            TEXT    NOT NULL,
	payment_token      TEXT    NOT NULL,
	charge_id          TEXT    NOT NULL,
	refund_id          TEXT    NOT NULL,
	release_on_failure INTEGER NOT NULL,
	created_at         INTEGER NOT NULL,
	updated_at         INTEGER NOT NULL
) STRICT;

-- At most one live order per hold, whatever the callers do: the store, not the code, makes a
-- hold impossible to sell twice. A failed or cancelled order leaves room for a new one.
CREATE UNIQUE INDEX orders_live_hold ON orders (hold_id)
	WHERE status IN ('pending_payment', 'confirmed');
-- (status, id) serves PendingOrders without a sort; (show_id, id) serves ListOrders of a show.
CREATE INDEX orders_status_id ON orders (status, id);
CREATE INDEX orders_show_id ON orders (show_id, id);

CREATE TABLE idempotency_records (
	id                TEXT    NOT NULL PRIMARY KEY,
	scope             TEXT    NOT NULL,
	key               TEXT    NOT NULL,
	fingerprint       TEXT    NOT NULL,
	hold_id           TEXT    NOT NULL,
	order_id          TEXT    NOT NULL,
	locked_until      INTEGER NOT NULL,
	response_status   INTEGER,
	response_body     BLOB,
	response_location TEXT,
	created_at        INTEGER NOT NULL,
	expires_at        INTEGER NOT NULL,
	UNIQUE (scope, key)
) STRICT;

CREATE INDEX idempotency_records_order_id ON idempotency_records (order_id);
CREATE INDEX idempotency_records_expires_at ON idempotency_records (expires_at);

-- position is AUTOINCREMENT so that a position is never reused, even after the newest events
-- are deleted: consumers keep it as a cursor.
CREATE TABLE events (
	position   INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT    NOT NULL UNIQUE,
	type       TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	seq        INTEGER NOT NULL,
	data       BLOB,
	created_at INTEGER NOT NULL,
	UNIQUE (subject, seq)
) STRICT;

CREATE TABLE api_keys (
	id         TEXT    NOT NULL PRIMARY KEY,
	role       TEXT    NOT NULL,
	hash       TEXT    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
) STRICT;
