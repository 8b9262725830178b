-- The async side: how far each relay has published the outbox, and which events each consumer
-- has applied. The inbox's primary key is what makes a redelivered event an ECONFLICT.
CREATE TABLE relay_checkpoints (
	name     text COLLATE "C" PRIMARY KEY,
	position bigint NOT NULL CHECK (position >= 0)
);

CREATE TABLE inbox (
	consumer   text COLLATE "C" NOT NULL,
	event_id   text COLLATE "C" NOT NULL,
	applied_at timestamptz NOT NULL,
	PRIMARY KEY (consumer, event_id)
);
