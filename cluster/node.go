// Package cluster lets several `boxoffice serve` processes share one PostgreSQL database and
// one NATS cluster: each server registers itself and beats a heartbeat, each show is owned by
// one server at a time through a lease with an epoch, every batch a show's writer commits checks
// that epoch (the fence), writes for a show another server owns are forwarded to it over NATS
// request-reply, and the work one server does for all (the outbox relay, the sweeps) follows a
// lease of its own.
//
// The shape is Orleans' single activation and Akka's cluster sharding, with the store as the
// directory: a lease is a row, its epoch is the fencing token Kleppmann asks of any lock, and
// the store's clock is the only clock that decides, so servers' clocks need not agree.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"boxoffice"
)

// Defaults of a Node.
const (
	// DefaultTTL is a lease's life without renewal. A killed owner's shows answer 503 for at most
	// this long (plus a heartbeat) before another server takes them over; a server paused longer
	// loses them, and its fence refuses what it had in flight.
	DefaultTTL = 3 * time.Second
	// ownerCache is how long a server trusts what it read of another server's lease before it
	// reads it again; a forward to an owner that has gone fails at once (no responders) and
	// forgets it.
	ownerCache = time.Second
)

// Modes of a server, recorded with it (boxoffice.ServerInfo) so that peers can refuse what
// cannot be shared.
const (
	NATSEmbedded    = "embedded"
	NATSCluster     = "cluster"
	PaymentsSim     = "sim"
	PaymentsHTTP    = "http"
	MailLocal       = "local"
	MailShared      = "shared"
	MailSMTP        = "smtp"
	backgroundLease = boxoffice.BackgroundLease
)

// Config configures Start.
type Config struct {
	Store boxoffice.ClusterStore
	// Addr is the server's listening address, shown in GET /v1/cluster and in refusals.
	Addr string
	// Instance names the server's host and data dir (boxoffice.ServerInfo.Instance).
	Instance string
	// NATS, Payments and Mail are the server's modes (NATSEmbedded, PaymentsSim, MailLocal, …).
	NATS, Payments, Mail string
	// Inventory is the server's strategy; live peers must run the same one.
	Inventory string
	// TTL is the leases' life; 0 means DefaultTTL.
	TTL    time.Duration
	Logger *slog.Logger
}

// Node is this server's membership: its registration, its heartbeat and the leases it holds.
type Node struct {
	id    string
	cfg   Config
	log   *slog.Logger
	store boxoffice.ClusterStore

	mu     sync.Mutex
	held   map[string]held  // by lease name
	owners map[string]owner // other servers' shows, by show id

	// acquiring joins the requests that find a lease not held into one AcquireLease: at a
	// show's first burst each of them asked for it at once, and their FOR UPDATE of the
	// lease's row queued one behind the other (16 in one bench's first second, 97 ms the
	// longest wait), holding back the show's first batches meanwhile.
	acquiring singleflight.Group

	cancel context.CancelFunc
	done   chan struct{}
}

// held is a lease this server holds, valid here until until: the local time before the request
// that last renewed it plus the TTL, less a tenth for the clocks' drift, which is never later
// than the store's expiry.
type held struct {
	epoch int64
	until time.Time
}

// owner is what this server last read of another server's lease of a show.
type owner struct {
	serverID string
	until    time.Time
}

// ErrUnsafe is wrapped by Start's refusal to join live peers in a mode that cannot be shared.
var ErrUnsafe = errors.New("unsafe with other servers on this database")

// Start registers this server, refuses to run beside live peers when either side keeps state
// of its own (embedded NATS, the simulator's local ledger, a local mail folder), and beats a
// heartbeat that renews its leases until Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := &Node{
		id: "srv_" + hex.EncodeToString(b[:]), cfg: cfg, log: log, store: cfg.Store,
		held: make(map[string]held), owners: make(map[string]owner), done: make(chan struct{}),
	}
	me := boxoffice.ServerInfo{ID: n.id, Instance: cfg.Instance, Addr: cfg.Addr, NATS: cfg.NATS, Payments: cfg.Payments, Mail: cfg.Mail, Inventory: cfg.Inventory}
	if err := n.store.RegisterServer(ctx, me); err != nil {
		return nil, err
	}
	servers, err := n.store.Servers(ctx, n.stale())
	if err == nil {
		err = refuse(me, servers)
	}
	if err != nil {
		_ = n.store.Deregister(context.WithoutCancel(ctx), n.id)
		return nil, err
	}
	run, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.beat(run)
	go n.loop(run)
	return n, nil
}

// refuse says why me may not run beside the live servers of servers, or nil: every server of
// several must reach the same NATS, the same payment provider and the same receipts, or a
// receipt is written twice, a charge is unknown to the server that settles it, an event never
// reaches the consumers of another bus.
func refuse(me boxoffice.ServerInfo, servers []boxoffice.ServerInfo) error {
	for _, s := range servers {
		if s.ID == me.ID || !s.Live {
			continue
		}
		if s.Inventory != me.Inventory {
			return fmt.Errorf("%w: server %s at %s shares this database with --inventory %s; start this one with --inventory %s too (strategies that lock in different orders could deadlock each other)",
				ErrUnsafe, s.ID, s.Addr, s.Inventory, s.Inventory)
		}
		for _, c := range []struct{ mode, bad, who, fix string }{
			{me.NATS, NATSEmbedded, "this server", "start it with --nats nats://… (one NATS cluster for all servers)"},
			{me.Payments, PaymentsSim, "this server", "start it with --payments URL (one `boxoffice payments-sim` or provider for all servers)"},
			{me.Mail, MailLocal, "this server", "start it with --mail-dir DIR (one folder all servers write to) or --smtp URL"},
			{s.NATS, NATSEmbedded, "server " + s.ID + " at " + s.Addr, "restart it with --nats nats://…"},
			{s.Payments, PaymentsSim, "server " + s.ID + " at " + s.Addr, "restart it with --payments URL"},
			{s.Mail, MailLocal, "server " + s.ID + " at " + s.Addr, "restart it with --mail-dir DIR or --smtp URL"},
		} {
			if c.mode == c.bad {
				return fmt.Errorf("%w: server %s at %s shares this database, and %s keeps its %s to itself: %s",
					ErrUnsafe, s.ID, s.Addr, c.who, what(c.bad), c.fix)
			}
		}
	}
	return nil
}

func what(mode string) string {
	switch mode {
	case NATSEmbedded:
		return "event bus (embedded NATS)"
	case PaymentsSim:
		return "payments (the built-in simulator's ledger)"
	}
	return "receipts (a mail folder under its data dir)"
}

// ID is this server's id, new at every start.
func (n *Node) ID() string { return n.id }

// stale is how old a heartbeat may be for its server to count as live: a few missed beats.
func (n *Node) stale() time.Duration { return 3 * n.cfg.TTL }

func (n *Node) loop(ctx context.Context) {
	defer close(n.done)
	t := time.NewTicker(n.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.beat(ctx)
		}
	}
}

// beat renews the heartbeat and the leases, forgets those lost, and takes the background lease
// when no live server holds it.
func (n *Node) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.TTL/3)
	defer cancel()
	t0 := time.Now()
	leases, err := n.store.Heartbeat(ctx, n.id, n.cfg.TTL)
	if err != nil {
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			n.log.Warn("cluster: heartbeat failed; leases lapse unless the next one works", "err", err)
		}
		return
	}
	n.mu.Lock()
	kept := make(map[string]held, len(leases))
	for _, l := range leases {
		kept[l.Name] = held{epoch: l.Epoch, until: n.validUntil(t0)}
	}
	for name := range n.held {
		if _, ok := kept[name]; !ok {
			n.log.Warn("cluster: lease lost", "lease", name, "server", n.id)
		}
	}
	n.held = kept
	_, leads := kept[backgroundLease]
	n.mu.Unlock()
	if !leads {
		if _, err := n.acquire(ctx, backgroundLease); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: taking the background lease failed", "err", err)
		}
	}
}

// validUntil is how long a lease renewed by a request sent at t0 is this server's to use.
func (n *Node) validUntil(t0 time.Time) time.Time { return t0.Add(n.cfg.TTL * 9 / 10) }

// acquire takes or renews the lease name and reports whether this server holds it now. Calls
// for one lease while one is in flight share its answer.
func (n *Node) acquire(ctx context.Context, name string) (bool, error) {
	ch := n.acquiring.DoChan(name, func() (any, error) {
		// The shared call goes on if the request that started it ends; AcquireLease's own
		// lock timeout bounds it.
		return n.acquireOnce(context.WithoutCancel(ctx), name)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return false, r.Err
		}
		return r.Val.(bool), nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// acquireOnce is acquire's store call.
func (n *Node) acquireOnce(ctx context.Context, name string) (bool, error) {
	t0 := time.Now()
	l, ok, err := n.store.AcquireLease(ctx, name, n.id, n.cfg.TTL)
	if err != nil || !ok {
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.ServerID != n.id {
		if show, isShow := strings.CutPrefix(name, "show:"); isShow {
			n.owners[show] = owner{serverID: l.ServerID, until: t0.Add(min(ownerCache, time.Until(l.ExpiresAt)))}
		}
		return false, nil
	}
	prev, had := n.held[name]
	n.held[name] = held{epoch: l.Epoch, until: n.validUntil(t0)}
	if !had || prev.epoch != l.Epoch {
		n.log.Info("cluster: lease taken", "lease", name, "epoch", l.Epoch, "server", n.id)
	}
	return true, nil
}

// epoch is the epoch of a lease this server holds and may still use.
func (n *Node) epoch(name string) (int64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.held[name]
	if !ok || !time.Now().Before(h.until) {
		return 0, false
	}
	return h.epoch, true
}

// Owns implements sale.Router: whether this server owns showID, taking the show over when no
// live server holds its lease. A show that does not exist is this server's to answer.
func (n *Node) Owns(ctx context.Context, showID string) (bool, error) {
	name := boxoffice.ShowLease(showID)
	if _, ok := n.epoch(name); ok {
		return true, nil
	}
	n.mu.Lock()
	o, known := n.owners[showID]
	fresh := known && time.Now().Before(o.until)
	if known && !fresh {
		delete(n.owners, showID)
	}
	n.mu.Unlock()
	if fresh {
		return false, nil
	}
	owns, err := n.acquire(ctx, name)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// A takeover waiting for a stopped holder's fence, or the store failing: retry soon.
		n.log.Warn("cluster: taking a show's lease failed", "show", showID, "err", err)
		return false, moving(showID)
	}
	if !owns {
		n.mu.Lock()
		_, known = n.owners[showID]
		n.mu.Unlock()
		return !known, nil // not known: no such show, so nobody's lease
	}
	return true, nil
}

// owner is the server that owns showID as last read, or "".
func (n *Node) owner(showID string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owners[showID].serverID
}

// forget drops what this server read of showID's owner, after a forward found it gone.
func (n *Node) forget(showID string) {
	n.mu.Lock()
	delete(n.owners, showID)
	n.mu.Unlock()
}

// Leads reports whether this server does the work one server does for all right now.
func (n *Node) Leads() bool {
	_, ok := n.epoch(backgroundLease)
	return ok
}

// Fence is inventory.Options.Fence: it fails the batch's transaction unless this server still
// holds showID's lease at the epoch it holds it by.
func (n *Node) Fence(ctx context.Context, tx boxoffice.Tx, showID string) error {
	name := boxoffice.ShowLease(showID)
	epoch, ok := n.epoch(name)
	if !ok {
		// Taken over or lapsed since the request was routed here. Not taken here: this runs
		// inside a transaction that may hold other shows' fences, and a takeover waits for
		// fences, so two servers doing so at once would wait on each other where PostgreSQL
		// cannot see it. The client's retry is routed afresh.
		return moving(showID)
	}
	lt, ok := tx.(boxoffice.LeaseTx)
	if !ok {
		return fmt.Errorf("cluster: the store cannot check leases")
	}
	return lt.CheckLease(ctx, name, n.id, epoch)
}

// moving is the retryable answer for a show this server may not write.
func moving(showID string) error {
	return boxoffice.Overloaded(time.Second, "show %s is moving to another server; retry", showID)
}

// Status is GET /v1/cluster: the servers and the leases, by the store's clock.
type Status struct {
	Self    string                 `json:"self"`
	Servers []boxoffice.ServerInfo `json:"servers"`
	Leases  []boxoffice.Lease      `json:"leases"`
}

// Status reads the servers and leases from the store.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	servers, err := n.store.Servers(ctx, n.stale())
	if err != nil {
		return nil, err
	}
	leases, err := n.store.Leases(ctx)
	if err != nil {
		return nil, err
	}
	return &Status{Self: n.id, Servers: servers, Leases: leases}, nil
}

// Held lists the leases this server holds now, by name, for logs and tests.
func (n *Node) Held() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	now := time.Now()
	for name, h := range n.held {
		if now.Before(h.until) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Collectors are this server's cluster metrics for Prometheus: the leases it holds (shows and
// the background lease; one series each, whatever the number of shows) and whether it does the
// background work.
func (n *Node) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "boxoffice_cluster_leases_held",
			Help: "Leases this server holds: the shows whose writer runs here, and the background lease."},
			func() float64 { return float64(len(n.Held())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "boxoffice_cluster_background",
			Help: "1 when this server runs the work one server does for all (outbox relay, sweeps)."},
			func() float64 {
				if n.Leads() {
					return 1
				}
				return 0
			}),
	}
}

// Close stops the heartbeat and ends this server's leases and registration, so that its shows
// pass to other servers at once rather than when the leases run out. Call it after the writers
// have stopped.
func (n *Node) Close() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.store.Deregister(ctx, n.id); err != nil {
		n.log.Warn("cluster: deregister failed; leases run out instead", "err", err)
	}
}
