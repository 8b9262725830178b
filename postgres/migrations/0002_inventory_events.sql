-- The eventlog strategy's per-show append-only streams. The primary key is the expected-version
-- check: two writers that read the same head cannot both append the next version.
CREATE TABLE inventory_events (
	show_id    text COLLATE "C" NOT NULL,
	version    bigint      NOT NULL CHECK (version >= 1),
	tier_id    text COLLATE "C" NOT NULL,
	held       integer     NOT NULL,
	sold       integer     NOT NULL,
	held_after integer     NOT NULL,
	sold_after integer     NOT NULL,
	capacity   integer     NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (show_id, version)
);
