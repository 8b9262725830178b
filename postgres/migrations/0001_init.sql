-- The first schema, the PostgreSQL twin of sqlite/migrations/0001_init.sql: the same tables,
-- keys and checks. Times are timestamptz (microseconds, as the store writes them in UTC); the zero
-- time of Go is stored as itself, 0001-01-01 00:00:00+00, so that every time column can stay
-- NOT NULL. Identifiers are COLLATE "C": ids are compared and ordered byte by byte, as SQLite
-- does, whatever the database's default collation, so pagination by id gives the same pages on
-- both stores (and "C" comparisons are the cheapest ones).

CREATE TABLE shows (
	id               text COLLATE "C" NOT NULL PRIMARY KEY,
	name             text        NOT NULL,
	starts_at        timestamptz NOT NULL,
	hold_ttl_seconds integer     NOT NULL,
	max_per_buyer    integer,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL
);

-- The counts live here and change only through conditional UPDATEs. The CHECK is a second line
-- of defence: no code path, buggy or not, can commit an oversold tier.
CREATE TABLE tiers (
	show_id        text COLLATE "C" NOT NULL REFERENCES shows (id) ON DELETE CASCADE,
	id             text COLLATE "C" NOT NULL,
	position       integer NOT NULL,
	name           text    NOT NULL,
	capacity       integer NOT NULL,
	price_amount   bigint  NOT NULL,
	price_currency text    NOT NULL,
	held           integer NOT NULL DEFAULT 0,
	sold           integer NOT NULL DEFAULT 0,
	version        bigint  NOT NULL DEFAULT 0,
	fence          bigint  NOT NULL DEFAULT 0,
	PRIMARY KEY (show_id, id),
	CHECK (held >= 0 AND sold >= 0 AND held + sold <= capacity)
);

-- Holds keep show and tier ids without foreign keys: a tier whose holds all ended may be removed
-- from its show, and its history must stay.
CREATE TABLE holds (
	id          text COLLATE "C" NOT NULL PRIMARY KEY,
	show_id     text COLLATE "C" NOT NULL,
	tier_id     text COLLATE "C" NOT NULL,
	quantity    integer     NOT NULL,
	buyer_email text        NOT NULL,
	status      text        NOT NULL,
	expires_at  timestamptz NOT NULL,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);

CREATE INDEX holds_status_expires_at ON holds (status, expires_at);
CREATE INDEX holds_show_buyer ON holds (show_id, buyer_email);

CREATE TABLE orders (
	id                 text COLLATE "C" NOT NULL PRIMARY KEY,
	status             text        NOT NULL,
	show_id            text COLLATE "C" NOT NULL,
	tier_id            text COLLATE "C" NOT NULL,
	hold_id            text COLLATE "C" NOT NULL,
	quantity           integer     NOT NULL,
	amount             bigint      NOT NULL,
	currency           text        NOT NULL,
	buyer_email        text        NOT NULL,
	tickets            jsonb       NOT NULL,
	payment_token      text        NOT NULL,
	charge_id          text        NOT NULL,
	refund_id          text        NOT NULL,
	release_on_failure boolean     NOT NULL,
	created_at         timestamptz NOT NULL,
	updated_at         timestamptz NOT NULL
);

-- At most one live order per hold, whatever the callers do: the store, not the code, makes a
-- hold impossible to sell twice. A failed or cancelled order leaves room for a new one.
CREATE UNIQUE INDEX orders_live_hold ON orders (hold_id)
	WHERE status IN ('pending_payment', 'confirmed');
-- (status, id) serves PendingOrders without a sort; (show_id, id) serves ListOrders of a show.
CREATE INDEX orders_status_id ON orders (status, id);
CREATE INDEX orders_show_id ON orders (show_id, id);

CREATE TABLE idempotency_records (
	id                text COLLATE "C" NOT NULL PRIMARY KEY,
	scope             text COLLATE "C" NOT NULL,
	key               text COLLATE "C" NOT NULL,
	fingerprint       text        NOT NULL,
	hold_id           text COLLATE "C" NOT NULL,
	order_id          text COLLATE "C" NOT NULL,
	locked_until      timestamptz NOT NULL,
	response_status   integer,
	response_body     bytea,
	response_location text,
	created_at        timestamptz NOT NULL,
	expires_at        timestamptz NOT NULL,
	UNIQUE (scope, key)
);

CREATE INDEX idempotency_records_order_id ON idempotency_records (order_id);
CREATE INDEX idempotency_records_expires_at ON idempotency_records (expires_at);

-- position comes from an identity sequence, so a position is never reused, even after the newest
-- events are deleted: consumers keep it as a cursor. A sequence hands out numbers at insert, not at
-- commit, and never takes one back: a reader of the feed sees gaps, some of them for transactions
-- still in flight that will fill in later (see AppendEvent).
CREATE TABLE events (
	position   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id         text COLLATE "C" NOT NULL UNIQUE,
	type       text        NOT NULL,
	subject    text COLLATE "C" NOT NULL,
	seq        integer     NOT NULL,
	data       bytea,
	created_at timestamptz NOT NULL,
	UNIQUE (subject, seq)
);

CREATE TABLE api_keys (
	id         text COLLATE "C" NOT NULL PRIMARY KEY,
	role       text        NOT NULL,
	hash       text COLLATE "C" NOT NULL UNIQUE,
	created_at timestamptz NOT NULL
);
