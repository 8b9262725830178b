-- The eventlog strategy's per-show append-only streams. The primary key is the expected-version
-- check: two writers that read the same head cannot both append the next version.
CREATE TABLE inventory_events (
	show_id    TEXT    NOT NULL,
	version    INTEGER NOT NULL CHECK (version >= 1),
	tier_id    TEXT    NOT NULL,
	held       INTEGER NOT NULL,
	sold       INTEGER NOT NULL,
	held_after INTEGER NOT NULL,
	sold_after INTEGER NOT NULL,
	capacity   INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (show_id, version)
) STRICT, WITHOUT ROWID;
