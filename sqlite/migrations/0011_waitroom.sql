-- Waiting rooms (issue 15). A show's room holds its admission settings and the admitter's state;
-- the queue is an append-only list of entries, one per buyer, admitted in (lane, rank, seq) order:
-- lane 0, the pre-on-sale arrivals, by the random rank drawn when they joined, then everyone else
-- (lane 1) by arrival (seq). Joining writes one entry row and nothing else, so the crowd never touches the
-- show's tiers, and its writer.
CREATE TABLE waitrooms (
    show_id               TEXT    NOT NULL PRIMARY KEY REFERENCES shows (id),
    opens_at              INTEGER NOT NULL,
    admit_per_second      INTEGER NOT NULL CHECK (admit_per_second > 0),
    admission_ttl_seconds INTEGER NOT NULL CHECK (admission_ttl_seconds > 0),
    -- admitted counts admissions so far and numbers the next one (queue_entries.admit_no).
    admitted              INTEGER NOT NULL DEFAULT 0,
    -- credit_at is how far the rate's budget has been spent: admitting k moves it k/rate on. The
    -- admitter may admit (now - max(credit_at, now - 1 s)) * rate entries at a time, so together
    -- all admitters never pass the rate since the on-sale.
    credit_at             INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE queue_entries (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    show_id     TEXT    NOT NULL,
    identity    TEXT    NOT NULL,
    lane        INTEGER NOT NULL CHECK (lane IN (0, 1)), -- 0: joined before the on-sale
    rank        INTEGER NOT NULL,           -- the draw (0 after the on-sale: seq orders those)
    joined_at   INTEGER NOT NULL,
    admitted_at INTEGER NOT NULL DEFAULT 0, -- 0 while waiting
    admit_no    INTEGER,                    -- set with admitted_at
    UNIQUE (show_id, identity)
) STRICT;

-- The queue's order among the entries still waiting: the admitter takes its head, and a
-- position is a count of the entries before one.
CREATE INDEX queue_entries_waiting ON queue_entries (show_id, lane, rank, seq) WHERE admitted_at = 0;
-- One admission number per entry of a show: a second admitter cannot hand one out twice.
CREATE UNIQUE INDEX queue_entries_admit_no ON queue_entries (show_id, admit_no) WHERE admit_no IS NOT NULL;

-- Secrets every server sharing the store uses alike (the queue tickets' signing key).
CREATE TABLE secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
