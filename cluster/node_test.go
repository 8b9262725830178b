package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testTTL is short so that leases lapse within a test, and long enough that a heartbeat (every
// third of it, each bounded by a third) keeps them on a machine loaded by other tests.
const testTTL = time.Second

func openDB(t *testing.T) *postgres.DB {
	t.Helper()
	url := pgtest.Start(t)
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	show := &boxoffice.Show{ID: "gig", Name: "Gig", StartsAt: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Millisecond),
		HoldTTLSeconds: 60, Tiers: []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 10, Price: boxoffice.Money{Amount: 100, Currency: "EUR"}}}}
	show.CreatedAt, show.UpdatedAt = show.StartsAt, show.StartsAt
	if err := db.Update(context.Background(), func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), show) }); err != nil {
		t.Fatal(err)
	}
	return db
}

func startNode(t *testing.T, db *postgres.DB, name string) *Node {
	t.Helper()
	n, err := Start(context.Background(), Config{Store: db, Addr: name, Instance: "test:" + name + ":" + t.Name(),
		NATS: NATSCluster, Payments: PaymentsHTTP, Mail: MailShared, Inventory: "actor", TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// pause stops n's heartbeat without deregistering, as a SIGSTOP or a long GC pause would.
func (n *Node) pause() {
	n.cancel()
	<-n.done
	n.cancel = nil
}

func TestOneOwnerPerShow(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	a, b := startNode(t, db, "a"), startNode(t, db, "b")
	if owns, err := a.Owns(ctx, "gig"); err != nil || !owns {
		t.Fatalf("a owns the unowned show: %v %v", owns, err)
	}
	if owns, err := b.Owns(ctx, "gig"); err != nil || owns {
		t.Fatalf("b owns a's show: %v %v", owns, err)
	}
	if got := b.owner("gig"); got != a.ID() {
		t.Fatalf("b routes gig to %q, want a (%s)", got, a.ID())
	}
	// A show that does not exist is nobody's lease: the server asked answers it (not_found).
	if owns, err := b.Owns(ctx, "nope"); err != nil || !owns {
		t.Fatalf("missing show: %v %v", owns, err)
	}
	// Heartbeats keep a's lease past several TTLs.
	time.Sleep(3 * testTTL)
	if owns, err := b.Owns(ctx, "gig"); err != nil || owns {
		t.Fatalf("b took a live server's show: %v %v", owns, err)
	}
	leases, err := db.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gig boxoffice.Lease
	for _, l := range leases {
		if l.Name == boxoffice.ShowLease("gig") {
			gig = l
		}
		if l.Name == "show:nope" {
			t.Fatal("a lease was made for a show that does not exist")
		}
	}
	if gig.ServerID != a.ID() || gig.Epoch != 1 || !gig.Live {
		t.Fatalf("gig's lease %+v, want a's at epoch 1", gig)
	}
	// Exactly one of the two does the background work.
	if a.Leads() == b.Leads() {
		t.Fatalf("background lease: a %v, b %v", a.Leads(), b.Leads())
	}
}

func TestTakeoverAndFence(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	a, b := startNode(t, db, "a"), startNode(t, db, "b")
	if owns, _ := a.Owns(ctx, "gig"); !owns {
		t.Fatal("a does not own gig")
	}
	oldEpoch, _ := a.epoch(boxoffice.ShowLease("gig"))
	fence := func(n *Node) error {
		return db.Update(ctx, func(tx boxoffice.Tx) error { return n.Fence(ctx, tx, "gig") })
	}
	if err := fence(a); err != nil {
		t.Fatalf("owner's fence: %v", err)
	}
	if err := fence(b); boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED {
		t.Fatalf("non-owner's fence: %v, want overloaded", err)
	}
	a.pause()
	deadline := time.Now().Add(10 * testTTL)
	for {
		owns, err := b.Owns(ctx, "gig")
		if err != nil {
			t.Fatal(err)
		}
		if owns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never took over the paused server's show")
		}
		time.Sleep(testTTL / 4)
	}
	if epoch, _ := b.epoch(boxoffice.ShowLease("gig")); epoch != oldEpoch+1 {
		t.Fatalf("epoch after takeover %d, want %d", epoch, oldEpoch+1)
	}
	if err := fence(b); err != nil {
		t.Fatalf("new owner's fence: %v", err)
	}
	// The paused server's view has lapsed, and even with its old epoch the store refuses it.
	if err := fence(a); boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED {
		t.Fatalf("old owner's fence: %v, want overloaded", err)
	}
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.(boxoffice.LeaseTx).CheckLease(ctx, boxoffice.ShowLease("gig"), a.ID(), oldEpoch)
	})
	if boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED {
		t.Fatalf("the store's check of a stale epoch: %v, want overloaded", err)
	}
}

// TestTakeoverWaitsForFencedBatch shows the fence's point: a batch that checked its lease
// commits before a takeover of that lease completes, so nothing the old owner writes can land
// after the new owner holds the show.
func TestTakeoverWaitsForFencedBatch(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	a, b := startNode(t, db, "a"), startNode(t, db, "b")
	if owns, _ := a.Owns(ctx, "gig"); !owns {
		t.Fatal("a does not own gig")
	}
	// open is true while the batch cannot have committed: from its fence until just before it
	// is let go. A takeover that completes while it is true overtook the batch.
	var open, overtook atomic.Bool
	fenced, release := make(chan struct{}), make(chan struct{})
	batch := make(chan error, 1)
	go func() {
		batch <- db.Update(ctx, func(tx boxoffice.Tx) error {
			if err := a.Fence(ctx, tx, "gig"); err != nil {
				return err
			}
			open.Store(true)
			close(fenced)
			<-release
			return nil
		})
	}()
	<-fenced
	a.pause()
	time.Sleep(testTTL + testTTL/2) // a's lease has lapsed in the store
	took := make(chan bool, 1)
	go func() {
		// A takeover that meets the fence gives up after its lock timeout (the request is told
		// to retry), so b keeps asking, as clients' retries would.
		for range 100 {
			if owns, err := b.Owns(ctx, "gig"); err == nil && owns {
				overtook.Store(open.Load())
				took <- true
				return
			}
			time.Sleep(testTTL / 8)
		}
		took <- false
	}()
	time.Sleep(testTTL) // time enough for the takeover, were it not waiting for the batch
	open.Store(false)
	close(release)
	if err := <-batch; err != nil {
		t.Fatalf("the fenced batch: %v", err)
	}
	if !<-took {
		t.Fatal("b did not take the lapsed show over")
	}
	if overtook.Load() {
		t.Fatal("the takeover completed while the fenced batch was still open")
	}
}

func TestRefuseUnsharedState(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	startNode(t, db, "a")
	for _, c := range []Config{
		{NATS: NATSEmbedded, Payments: PaymentsHTTP, Mail: MailShared, Inventory: "actor"},
		{NATS: NATSCluster, Payments: PaymentsSim, Mail: MailShared, Inventory: "actor"},
		{NATS: NATSCluster, Payments: PaymentsHTTP, Mail: MailLocal, Inventory: "actor"},
		{NATS: NATSCluster, Payments: PaymentsHTTP, Mail: MailShared, Inventory: "pessimistic"},
	} {
		c.Store, c.TTL, c.Addr, c.Instance = db, testTTL, "c", "test:c"
		n, err := Start(ctx, c)
		if !errors.Is(err, ErrUnsafe) {
			if n != nil {
				n.Close()
			}
			t.Fatalf("%+v beside a live server: %v, want ErrUnsafe", c, err)
		}
	}
	servers, err := db.Servers(ctx, 3*testTTL)
	if err != nil || len(servers) != 1 {
		t.Fatalf("a refused server stayed registered: %+v %v", servers, err)
	}
}

// TestRestartOfSameInstance: a restart on the same host and data dir is not a peer: the previous
// run is dead, and its leases end at once.
func TestRestartOfSameInstance(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	cfg := Config{Store: db, TTL: time.Minute, Addr: "one", Instance: "test:one", NATS: NATSEmbedded, Payments: PaymentsSim, Mail: MailLocal}
	first, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if owns, _ := first.Owns(ctx, "gig"); !owns {
		t.Fatal("the only server does not own gig")
	}
	first.pause() // killed: no deregistration, a lease of a minute left
	second, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart on the same data dir refused: %v", err)
	}
	defer second.Close()
	if owns, err := second.Owns(ctx, "gig"); err != nil || !owns {
		t.Fatalf("the restarted server waits for its previous run's lease: %v %v", owns, err)
	}
}

// countingLeases counts AcquireLease calls by lease name.
type countingLeases struct {
	boxoffice.ClusterStore
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingLeases) AcquireLease(ctx context.Context, name, serverID string, ttl time.Duration) (boxoffice.Lease, bool, error) {
	c.mu.Lock()
	c.calls[name]++
	c.mu.Unlock()
	return c.ClusterStore.AcquireLease(ctx, name, serverID, ttl)
}

// TestFirstBurstAcquiresOnce: the requests of a show's first burst, all finding its lease not
// held, take it in one store call, not one each queued on the lease's row.
func TestFirstBurstAcquiresOnce(t *testing.T) {
	db := openDB(t)
	store := &countingLeases{ClusterStore: db, calls: map[string]int{}}
	n, err := Start(context.Background(), Config{Store: store, Addr: "a", Instance: "test:a:" + t.Name(),
		NATS: NATSCluster, Payments: PaymentsHTTP, Mail: MailShared, Inventory: "actor", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	const burst = 32
	start := make(chan struct{})
	var wg sync.WaitGroup
	owned := make([]bool, burst)
	errs := make([]error, burst)
	for i := range burst {
		wg.Go(func() {
			<-start
			owned[i], errs[i] = n.Owns(context.Background(), "gig")
		})
	}
	close(start)
	wg.Wait()
	for i := range burst {
		if errs[i] != nil || !owned[i] {
			t.Fatalf("request %d: owns %v, %v", i, owned[i], errs[i])
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if got := store.calls[boxoffice.ShowLease("gig")]; got != 1 {
		t.Fatalf("%d requests took the show's lease in %d store calls, want 1", burst, got)
	}
}
