package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/inventory/inventorytest"
	"boxoffice/sale"
)

// conflictStore makes compare-and-sets lose as a competing writer would make them lose: each
// SetTierCounts first asks lose, and when it says so, moves the tier's version on (an empty
// AddTierCounts, as if another buyer had committed in between) and then really runs, and so
// really fails, the compare-and-set.
type conflictStore struct {
	boxoffice.Store
	lose func() bool
	sets atomic.Int64 // compare-and-sets tried
}

func (s *conflictStore) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return s.Store.Update(ctx, func(tx boxoffice.Tx) error { return fn(conflictTx{tx, s}) })
}

type conflictTx struct {
	boxoffice.Tx
	s *conflictStore
}

func (t conflictTx) SetTierCounts(ctx context.Context, showID, tierID string, version int64, held, sold int) (bool, error) {
	t.s.sets.Add(1)
	if t.s.lose() {
		if _, _, err := t.Tx.AddTierCounts(ctx, showID, tierID, 0, 0); err != nil {
			return false, err
		}
	}
	return t.Tx.SetTierCounts(ctx, showID, tierID, version, held, sold)
}

// loseFirst returns a lose func that says yes k times, then no.
func loseFirst(k int64) func() bool {
	var n atomic.Int64
	return func() bool { return n.Add(1) <= k }
}

func newOptimistic(t *testing.T, st boxoffice.Store, maxAttempts int) *Optimistic {
	t.Helper()
	inv, err := NewOptimistic(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := inv.(*Optimistic)
	o.maxAttempts = maxAttempts
	return o
}

// holdCount is how many holds the store has.
func holdCount(t *testing.T, st boxoffice.Store) int {
	t.Helper()
	n := 0
	err := st.View(context.Background(), func(tx boxoffice.Tx) error {
		return tx.ForEachHold(context.Background(), func(*boxoffice.Hold) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOptimisticRetriesLostCompareAndSet: a change whose compare-and-set loses k times (k below
// the attempt limit) runs its whole transaction k+1 times and commits once.
func TestOptimisticRetriesLostCompareAndSet(t *testing.T) {
	st := &conflictStore{Store: openSQLite(t), lose: loseFirst(3)}
	putShow(t, st, "s", 5)
	o := newOptimistic(t, st, 10)
	var writes atomic.Int64
	h := newHold("s", "a", 2)
	err := o.Apply(context.Background(), boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 2}, func(tx boxoffice.Tx) error {
		writes.Add(1)
		return tx.InsertHold(context.Background(), h)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := writes.Load(); got != 4 {
		t.Errorf("write ran %d times, want 4 (3 lost attempts and the one that won)", got)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 2 {
		t.Errorf("held %d, want 2", c.Held)
	}
	if n := holdCount(t, st); n != 1 {
		t.Errorf("%d holds, want 1", n)
	}
	verify(t, st)
}

// TestOptimisticShedsWhenRetriesRunOut: a change that loses every attempt is shed with
// EOVERLOADED and a Retry-After after exactly the attempt limit, and nothing of it commits.
func TestOptimisticShedsWhenRetriesRunOut(t *testing.T) {
	st := &conflictStore{Store: openSQLite(t), lose: func() bool { return true }}
	putShow(t, st, "s", 5)
	o := newOptimistic(t, st, 3)
	var writes atomic.Int64
	_, err := reserve(context.Background(), &countingInventory{o, &writes}, "s", "a", 1)
	e := boxoffice.AsError(err)
	if e == nil || e.Code != boxoffice.EOVERLOADED || e.RetryAfter <= 0 {
		t.Fatalf("got %v, want EOVERLOADED with a Retry-After", err)
	}
	if got := writes.Load(); got != 3 {
		t.Errorf("write ran %d times, want 3", got)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 0 {
		t.Errorf("held %d after a shed change, want 0", c.Held)
	}
	if n := holdCount(t, st); n != 0 {
		t.Errorf("%d holds after a shed change, want 0", n)
	}
	verify(t, st)
}

// countingInventory counts the runs of every write it passes on.
type countingInventory struct {
	boxoffice.Inventory
	n *atomic.Int64
}

func (c *countingInventory) Apply(ctx context.Context, ch boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	return c.Inventory.Apply(ctx, ch, func(tx boxoffice.Tx) error { c.n.Add(1); return write(tx) })
}

// TestOptimisticBackoffHonoursContext: a caller whose context ends while it waits to retry gets
// the context's error at once, not after the pause.
func TestOptimisticBackoffHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	st := &conflictStore{Store: openSQLite(t), lose: func() bool { cancel(); return true }}
	putShow(t, st, "s", 5)
	o := newOptimistic(t, st, 10)
	o.baseDelay, o.maxDelay = time.Hour, time.Hour
	if _, err := reserve(ctx, o, "s", "a", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 0 {
		t.Errorf("held %d, want 0", c.Held)
	}
}

// TestOptimisticNotDueChangesNothing: a release whose write says it is no longer due returns
// write's error and leaves the counts alone.
func TestOptimisticNotDueChangesNothing(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 5)
	o := newOptimistic(t, st, 10)
	h, err := reserve(context.Background(), o, "s", "a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := release(context.Background(), o, h); err != nil {
		t.Fatal(err)
	}
	if err := release(context.Background(), o, h); err != errNotDue {
		t.Fatalf("second release: got %v, want errNotDue", err)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 0 {
		t.Errorf("held %d, want 0", c.Held)
	}
	verify(t, st)
}

// TestOptimisticRetryStorm is the hot-row fault test through the whole sale service: a crowd
// takes and gives back the few tickets of one tier, round after round, while every
// compare-and-set loses with even odds (a competing writer) and only two attempts are allowed.
// Some requests must be shed with EOVERLOADED and a Retry-After; no buyer may get a ticket that is
// not there, and the counts must equal the holds.
func TestOptimisticRetryStorm(t *testing.T) {
	h := inventorytest.Harness{
		OpenStore: func(t *testing.T, dir string) boxoffice.Store {
			return &conflictStore{Store: openSQLiteAt(t, dir), lose: func() bool { return rand.IntN(2) == 0 }}
		},
		NewInventory: func(t *testing.T, st boxoffice.Store) boxoffice.Inventory { return newOptimistic(t, st, 2) },
	}
	w := inventorytest.NewWorld(t, h)
	const capacity = 3
	w.Show("storm", 600, capacity)
	ctx := context.Background()
	var ok, soldOut, shed, holding atomic.Int64
	overloaded := func(err error) bool {
		e := boxoffice.AsError(err)
		if e == nil || e.Code != boxoffice.EOVERLOADED {
			return false
		}
		if e.RetryAfter <= 0 {
			t.Errorf("shed without a Retry-After: %v", err)
		}
		shed.Add(1)
		return true
	}
	var wg sync.WaitGroup
	for b := range 30 {
		wg.Go(func() {
			for round := range 10 {
				in := sale.HoldInput{ShowID: "storm", TierID: "a", Quantity: 1, Buyer: sale.BuyerInput{Email: fmt.Sprintf("b%d@example.com", b)}}
				res, _, err := w.Svc.CreateHold(ctx, boxoffice.AdminPrincipal, inventorytest.Idem("hold storm", fmt.Sprintf("k%d-%d", b, round), in), in)
				switch {
				case overloaded(err):
					continue
				case err != nil:
					t.Errorf("hold: %v", err)
					return
				case res.Status == 409:
					soldOut.Add(1)
					continue
				case res.Status != 201:
					t.Errorf("hold: %d %s", res.Status, res.Body)
					return
				}
				ok.Add(1)
				if n := holding.Add(1); n > capacity {
					t.Errorf("%d buyers hold a ticket of a tier of %d", n, capacity)
				}
				id := inventorytest.Decode[boxoffice.Hold](t, res).ID
				holding.Add(-1) // before the release commits, so the count above never overstates
				for {
					err := w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, id)
					if overloaded(err) {
						continue // a release is retried until it lands: tickets are never lost
					}
					if err != nil {
						t.Errorf("release: %v", err)
					}
					break
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d held and released, %d sold out, %d shed", ok.Load(), soldOut.Load(), shed.Load())
	if shed.Load() == 0 {
		t.Error("nothing was shed: the storm exhausted no retries")
	}
	if c := w.Counts("storm", "a"); c.Held != 0 || c.Sold != 0 {
		t.Errorf("tier after every hold was released: %+v", c)
	}
	w.Check()
}

// TestOptimisticHotRowOnPostgres is the retry storm with real lost compare-and-sets: many
// goroutines take and give back tickets of one tier of PostgreSQL at once, with two attempts
// each. Whatever is shed, the counts stay within capacity and equal the holds.
func TestOptimisticHotRowOnPostgres(t *testing.T) {
	st := openPostgres(t)
	putShow(t, st, "hot", 3)
	o := newOptimistic(t, st, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ok, soldOut, shed atomic.Int64
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			for range 15 {
				h, err := reserve(ctx, o, "hot", "a", 1)
				switch boxoffice.ErrorCode(err) {
				case "":
					ok.Add(1)
					// Give it back, retrying while shed: a release is never lost.
					for {
						err := release(ctx, o, h)
						if boxoffice.ErrorCode(err) == boxoffice.EOVERLOADED {
							shed.Add(1)
							continue
						}
						if err != nil {
							t.Errorf("release: %v", err)
						}
						break
					}
				case boxoffice.ESOLDOUT:
					soldOut.Add(1)
				case boxoffice.EOVERLOADED:
					shed.Add(1)
				default:
					t.Errorf("reserve: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d held and released, %d sold out, %d shed", ok.Load(), soldOut.Load(), shed.Load())
	if c := tierCounts(t, st, "hot", "a"); c.Held != 0 || c.Sold != 0 {
		t.Errorf("counts after every hold was released: %+v", c)
	}
	verify(t, st)
}

// TestOptimisticReconfigureUnderLoad runs the shared capacity-change stampede on the optimistic
// strategy.
func TestOptimisticReconfigureUnderLoad(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) { reconfigureUnderLoad(t, sk.open(t), "optimistic") })
	}
}
