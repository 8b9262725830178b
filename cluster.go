package boxoffice

import (
	"context"
	"time"
)

// ServerInfo is one `boxoffice serve` process registered in a store that several servers share.
type ServerInfo struct {
	ID string `json:"id"`
	// Instance is the host and data dir. One process at a time holds a data dir, so a
	// registration of the same instance under another id is a previous run, dead: registering
	// ends its leases at once.
	Instance string `json:"instance"`
	Addr     string `json:"addr"`
	// NATS, Payments and Mail say how the server was started, so that a server joining a peer
	// can refuse what cannot be shared: "embedded" or "cluster"; "sim" or "http"; "local",
	// "shared" or "smtp".
	NATS     string `json:"nats"`
	Payments string `json:"payments"`
	Mail     string `json:"mail"`
	// Inventory is the race-condition strategy: servers on one store must run one, or their
	// transactions could take locks in opposite orders (postgres.LockOrder).
	Inventory   string    `json:"inventory"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// Live is whether the heartbeat is recent, by the store's clock.
	Live bool `json:"live"`
}

// Lease is one named lease: "show:<id>" (the show's writer) or "background" (the work one server
// does for all: the outbox relay, the sweeps).
type Lease struct {
	Name     string `json:"name"`
	ServerID string `json:"server_id"`
	// Epoch grows by one each time the lease passes to another server; a commit checks it.
	Epoch     int64     `json:"epoch"`
	ExpiresAt time.Time `json:"expires_at"`
	// Live is whether the lease has not expired, by the store's clock.
	Live bool `json:"live"`
}

// ShowLease is the name of the lease of a show's writer.
func ShowLease(showID string) string { return "show:" + showID }

// BackgroundLease is the name of the lease of the work one server does for all.
const BackgroundLease = "background"

// ClusterStore is a store that several servers may share (PostgreSQL): a registry of servers
// and leases with epochs. Every time is the store's, so servers' clocks need not agree.
type ClusterStore interface {
	// RegisterServer records s (replacing a row of the same id) with a heartbeat of now.
	RegisterServer(ctx context.Context, s ServerInfo) error
	// Heartbeat renews serverID's heartbeat and every lease it holds for ttl, and returns the
	// leases it still holds: one missing from the answer was taken over or has gone.
	Heartbeat(ctx context.Context, serverID string, ttl time.Duration) ([]Lease, error)
	// AcquireLease takes the lease name for serverID for ttl when no live server holds it (the
	// epoch grows when it changes hands) or renews it when serverID does, and returns the lease
	// as it stands: held by serverID or, when a live server holds it, by that one. A show's lease
	// is only created for a show that exists (ok false otherwise).
	AcquireLease(ctx context.Context, name, serverID string, ttl time.Duration) (l Lease, ok bool, err error)
	// Servers lists the registered servers; a server whose heartbeat is older than stale is not
	// Live.
	Servers(ctx context.Context, stale time.Duration) ([]ServerInfo, error)
	// Leases lists every lease.
	Leases(ctx context.Context) ([]Lease, error)
	// Deregister removes serverID and ends its leases at once, so that a clean stop hands its
	// shows over without waiting for them to expire.
	Deregister(ctx context.Context, serverID string) error
}

// LeaseTx is a transaction that can check a lease (a fence): CheckLease fails the transaction
// unless serverID holds the lease name at epoch, and makes a change of hands wait for the
// transaction's end, so nothing it writes can land after a successor's first write. The
// failure's code is EOVERLOADED with a Retry-After: the show is moving between servers.
type LeaseTx interface {
	CheckLease(ctx context.Context, name, serverID string, epoch int64) error
}
