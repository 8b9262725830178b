-- A waiting room can be paused (an incident at the payment provider, a problem with the show):
-- the queue keeps every place and keeps taking arrivals, and nobody is admitted until it is
-- resumed. The admitter reads it in the transaction that holds the room's row, so a pause stops
-- every server's admissions from its commit on.
ALTER TABLE waitrooms ADD COLUMN paused boolean NOT NULL DEFAULT false;
