-- Seated tiers: a tier's seats, each free (hold_id NULL) or given to one hold. A seat's held or
-- sold state is its hold's (active or confirmed), so confirming a hold writes no seat.
ALTER TABLE tiers ADD COLUMN seated boolean NOT NULL DEFAULT false;
CREATE TABLE seats (
	show_id         text COLLATE "C" NOT NULL,
	tier_id         text COLLATE "C" NOT NULL,
	id              text COLLATE "C" NOT NULL,
	section         text NOT NULL,
	row_name        text NOT NULL,
	label           text NOT NULL,
	rank            integer NOT NULL,
	pos             integer NOT NULL,
	accessible      boolean NOT NULL DEFAULT false,
	restricted_view boolean NOT NULL DEFAULT false,
	hold_id         text COLLATE "C",
	PRIMARY KEY (show_id, id)
);
CREATE INDEX seats_tier_rank ON seats (show_id, tier_id, rank);
-- Best available reads a tier's free seats best first: an index of those alone, holding every
-- column it reads, so that the read skips the taken seats (most of them, late in an on-sale).
CREATE INDEX seats_free ON seats (show_id, tier_id, rank)
	INCLUDE (id, section, row_name, label, pos, accessible, restricted_view) WHERE hold_id IS NULL;
CREATE INDEX seats_hold ON seats (hold_id) WHERE hold_id IS NOT NULL;
