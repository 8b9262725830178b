-- Webhook endpoints: one row per partner URL. event_types is a JSON array of event type names;
-- the secret is kept in clear because every delivery is signed with it.
CREATE TABLE webhook_endpoints (
	id              TEXT    NOT NULL PRIMARY KEY,
	url             TEXT    NOT NULL,
	event_types     TEXT    NOT NULL,
	secret          TEXT    NOT NULL,
	status          TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled')),
	disabled_reason TEXT    NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The inbox sweep deletes by age.
CREATE INDEX inbox_applied_at ON inbox (applied_at);
