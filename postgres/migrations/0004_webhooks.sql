-- Webhook endpoints: one row per partner URL. The secret is kept in clear because every delivery
-- is signed with it.
CREATE TABLE webhook_endpoints (
	id              text COLLATE "C" PRIMARY KEY,
	url             text NOT NULL,
	event_types     text[] NOT NULL,
	secret          text NOT NULL,
	status          text NOT NULL CHECK (status IN ('enabled', 'disabled')),
	disabled_reason text NOT NULL DEFAULT '',
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL
);

-- The inbox sweep deletes by age.
CREATE INDEX inbox_applied_at ON inbox (applied_at);
