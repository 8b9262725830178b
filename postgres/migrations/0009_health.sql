-- One row the readiness probe rewrites: a write that needs the disk, so /readyz says not ready
-- while commits fail (a full disk), which a read alone would not show.
CREATE TABLE health (
    id        integer PRIMARY KEY CHECK (id = 1),
    probed_at timestamptz NOT NULL
);
