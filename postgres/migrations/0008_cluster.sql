-- Several servers on one database (issue: scale-out). Each server registers itself and beats a
-- heartbeat; each show's writer, and the background work, are leased to one server at a time.
-- The epoch of a lease grows whenever the lease changes hands, and every batch a show's writer
-- commits checks it in the same transaction (a fence), so a server that lost its lease while
-- paused can never write after its successor.
CREATE TABLE servers (
    id           text PRIMARY KEY,
    -- The host and data dir: a process holds its data dir's lock, so a row of the same instance
    -- and another id is a previous run of this server, dead whatever its heartbeat says.
    instance     text NOT NULL,
    addr         text NOT NULL,
    nats         text NOT NULL,  -- "embedded" or "cluster"
    payments     text NOT NULL,  -- "sim" (a ledger on this machine) or "http"
    mail         text NOT NULL,  -- "local" (a folder of this server's), "shared" or "smtp"
    inventory    text NOT NULL,  -- the strategy: servers on one database must run one (LockOrder)
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

CREATE TABLE leases (
    name       text PRIMARY KEY,  -- "show:<id>" or "background"
    server_id  text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_server ON leases (server_id);
