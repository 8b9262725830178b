-- The async side: how far each relay has published the outbox, and which events each consumer
-- has applied. The inbox's primary key is what makes a redelivered event an ECONFLICT.
CREATE TABLE relay_checkpoints (
	name     TEXT    NOT NULL PRIMARY KEY,
	position INTEGER NOT NULL CHECK (position >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE inbox (
	consumer   TEXT    NOT NULL,
	event_id   TEXT    NOT NULL,
	applied_at INTEGER NOT NULL,
	PRIMARY KEY (consumer, event_id)
) STRICT, WITHOUT ROWID;
