-- A show may close the cancel (and refund) window of its orders this many seconds before it
-- starts; NULL leaves it open.
ALTER TABLE shows ADD COLUMN cancel_cutoff_seconds integer;
