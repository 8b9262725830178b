-- Seated tiers: a tier's seats, each free (hold_id NULL) or given to one hold. A seat's held or
-- sold state is its hold's (active or confirmed), so confirming a hold writes no seat.
-- (Numbered 0012 as on PostgreSQL.)
ALTER TABLE tiers ADD COLUMN seated INTEGER NOT NULL DEFAULT 0;
CREATE TABLE seats (
	show_id         TEXT NOT NULL,
	tier_id         TEXT NOT NULL,
	id              TEXT NOT NULL,
	section         TEXT NOT NULL,
	row_name        TEXT NOT NULL,
	label           TEXT NOT NULL,
	rank            INTEGER NOT NULL,
	pos             INTEGER NOT NULL,
	accessible      INTEGER NOT NULL DEFAULT 0,
	restricted_view INTEGER NOT NULL DEFAULT 0,
	hold_id         TEXT,
	PRIMARY KEY (show_id, id)
) WITHOUT ROWID;
CREATE INDEX seats_tier_rank ON seats (show_id, tier_id, rank);
-- Best available reads a tier's free seats best first: an index of those alone, holding every
-- column it reads, so that the read skips the taken seats (most of them, late in an on-sale)
-- and never visits the table.
CREATE INDEX seats_free ON seats (show_id, tier_id, rank, id, section, row_name, label, pos, accessible, restricted_view, hold_id)
	WHERE hold_id IS NULL;
CREATE INDEX seats_hold ON seats (hold_id) WHERE hold_id IS NOT NULL;
