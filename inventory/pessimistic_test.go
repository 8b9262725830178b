package inventory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	"boxoffice/sale"
	"boxoffice/sqlite"
)

// TestMain stops the PostgreSQL server that the tests of the package start on first use.
func TestMain(m *testing.M) { pgtest.Main(m) }

// The helpers below serve the tests of all three strategies in this directory (pessimistic,
// optimistic, actor).

// storeKind opens one kind of store for a test, closed when the test ends.
type storeKind struct {
	name string
	open func(t *testing.T) boxoffice.Store
}

// storeKinds are the stores the strategies' own tests run on: SQLite, whose single writer
// serialises everything, and PostgreSQL, where row locks, deadlocks and lost compare-and-sets are
// real (skipped where PostgreSQL is not installed).
var storeKinds = []storeKind{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

func openSQLite(t *testing.T) boxoffice.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/boxoffice.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openSQLiteAt opens the SQLite store kept in dir, for a harness that closes it itself.
func openSQLiteAt(t *testing.T, dir string) boxoffice.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir+"/boxoffice.db")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openPostgres(t *testing.T) boxoffice.Store {
	t.Helper()
	url := pgtest.Start(t)
	st, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after Start's cleanup registration, so it runs before the drop
	return st
}

// putShow creates show id with tiers "a", "b", … of the given capacities.
func putShow(t *testing.T, st boxoffice.Store, id string, capacities ...int) {
	t.Helper()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	s := &boxoffice.Show{ID: id, Name: "Show " + id, StartsAt: now.Add(24 * time.Hour), HoldTTLSeconds: 600, CreatedAt: now, UpdatedAt: now}
	for i, c := range capacities {
		s.Tiers = append(s.Tiers, boxoffice.Tier{ID: string(rune('a' + i)), Name: "Tier", Capacity: c, Price: boxoffice.Money{Amount: 100, Currency: "EUR"}})
	}
	if err := st.Update(context.Background(), func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), s) }); err != nil {
		t.Fatalf("put show %s: %v", id, err)
	}
}

// newHold returns an active hold of q tickets.
func newHold(show, tier string, q int) *boxoffice.Hold {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &boxoffice.Hold{
		ID: boxoffice.NewID(boxoffice.PrefixHold, now), ShowID: show, TierID: tier, Quantity: q,
		Buyer: boxoffice.Buyer{Email: "b@example.com"}, Status: boxoffice.HoldActive,
		ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now,
	}
}

// reserve takes q tickets of a tier for a new hold, the way the sale service does: the count
// change and the hold row in one Apply. It returns the hold.
func reserve(ctx context.Context, inv boxoffice.Inventory, show, tier string, q int) (*boxoffice.Hold, error) {
	h := newHold(show, tier, q)
	err := inv.Apply(ctx, boxoffice.CountChange{ShowID: show, TierID: tier, Held: q}, func(tx boxoffice.Tx) error {
		return tx.InsertHold(ctx, h)
	})
	return h, err
}

// release gives a hold's tickets back; errNotDue when the hold is no longer active.
func release(ctx context.Context, inv boxoffice.Inventory, h *boxoffice.Hold) error {
	return inv.Apply(ctx, boxoffice.CountChange{ShowID: h.ShowID, TierID: h.TierID, Held: -h.Quantity}, func(tx boxoffice.Tx) error {
		ok, err := tx.EndHold(ctx, h.ID, boxoffice.HoldReleased, time.Now().UTC().Truncate(time.Millisecond))
		if err == nil && !ok {
			err = errNotDue
		}
		return err
	})
}

var errNotDue = errors.New("not due any more")

// tierCounts reads a tier's counts.
func tierCounts(t *testing.T, st boxoffice.Store, show, tier string) boxoffice.TierCounts {
	t.Helper()
	var c boxoffice.TierCounts
	err := st.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		c, err = tx.TierCounts(context.Background(), show, tier, false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify fails the test for every guarantee the store breaks: above all held+sold <= capacity
// and counts that equal what the holds and orders say.
func verify(t *testing.T, st boxoffice.Store) {
	t.Helper()
	bad, err := sale.Verify(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("violation: %s", b)
	}
}

// newInventory builds a strategy by name, closed when the test ends.
func newInventory(t *testing.T, name string, st boxoffice.Store) boxoffice.Inventory {
	t.Helper()
	inv, err := New(name, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	return inv
}

// slowLockTx widens the window between two row locks: after each locking read it yields, so that
// a transaction locking tiers in the other order would all but surely take its first lock in
// between and deadlock.
type slowLockTx struct{ boxoffice.Tx }

func (s slowLockTx) TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (boxoffice.TierCounts, error) {
	c, err := s.Tx.TierCounts(ctx, showID, tierID, forUpdate)
	if forUpdate {
		for range 20 {
			runtime.Gosched()
		}
		time.Sleep(100 * time.Microsecond)
	}
	return c, err
}

// TestLockTiersFromTwoSides is the deadlock fault test: two goroutines lock the same two tiers
// round after round, one naming them (a, b) and the other (b, a), each changing both counts while
// it holds them. LockTiers takes them in one order, so no transaction ever waits for a lock the
// other holds while holding one it wants: every Update runs its function exactly once (the
// PostgreSQL store runs it again after a deadlock) and ends without error, and the counts add up.
func TestLockTiersFromTwoSides(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			st := sk.open(t)
			putShow(t, st, "s", 1_000_000, 1_000_000)
			// A bound on the whole test, so that a deadlock that nothing detects fails instead of
			// hanging; it is no timing assertion.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const rounds = 150
			var runs atomic.Int64
			var wg sync.WaitGroup
			for _, order := range [][]string{{"a", "b"}, {"b", "a"}} {
				wg.Go(func() {
					for range rounds {
						err := st.Update(ctx, func(tx boxoffice.Tx) error {
							runs.Add(1)
							locked, err := LockTiers(ctx, slowLockTx{tx}, "s", order...)
							if err != nil {
								return err
							}
							for _, id := range order {
								c := locked[id]
								if ok, err := tx.SetTierCounts(ctx, "s", id, c.Version, c.Held+1, c.Sold); err != nil || !ok {
									return fmt.Errorf("set %s under lock: ok=%v err=%v", id, ok, err)
								}
							}
							return nil
						})
						if err != nil {
							t.Errorf("lock %v: %v", order, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if got := runs.Load(); got != 2*rounds {
				t.Errorf("transactions ran %d times for %d Updates: some were aborted (deadlock) and run again", got, 2*rounds)
			}
			for _, id := range []string{"a", "b"} {
				if c := tierCounts(t, st, "s", id); c.Held != 2*rounds {
					t.Errorf("tier %s held %d, want %d", id, c.Held, 2*rounds)
				}
			}
		})
	}
}

// TestLockTiersNaiveOrderDeadlocks proves that the fault test above has teeth on PostgreSQL: two
// transactions that each lock one tier and then, once both hold one, the other, deadlock; the
// server aborts one of them (and the store runs it again, or returns the error).
func TestLockTiersNaiveOrderDeadlocks(t *testing.T) {
	st := openPostgres(t)
	putShow(t, st, "s", 10, 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var both sync.WaitGroup
	both.Add(2)
	var runs, failed atomic.Int64
	var wg sync.WaitGroup
	for _, order := range [][]string{{"a", "b"}, {"b", "a"}} {
		wg.Go(func() {
			first := true
			err := st.Update(ctx, func(tx boxoffice.Tx) error {
				runs.Add(1)
				if _, err := tx.TierCounts(ctx, "s", order[0], true); err != nil {
					return err
				}
				if first {
					first = false
					both.Done()
					both.Wait() // each now holds the lock the other will ask for
				}
				_, err := tx.TierCounts(ctx, "s", order[1], true)
				return err
			})
			if err != nil {
				t.Logf("lock %v: %v", order, err) // the deadlock, when the store does not retry it
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if runs.Load() == 2 && failed.Load() == 0 {
		t.Fatal("two transactions locking from two sides both ran once: no deadlock was detected, so the fault test proves nothing here")
	}
}

// TestPessimisticReconfigureUnderLoad runs the shared capacity-change stampede on the pessimistic
// strategy.
func TestPessimisticReconfigureUnderLoad(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) { reconfigureUnderLoad(t, sk.open(t), "pessimistic") })
	}
}

// reconfigureUnderLoad has buyers reserve and release on two tiers while capacities move up and
// down under them through Reconfigure, with the sale service's check (a capacity below held+sold
// is refused). A strategy that let a count change slip in between the check and the new capacity
// would try to write counts over capacity, which the store refuses with an error that fails the
// test; at the end the counts must equal the holds and fit the capacities.
func reconfigureUnderLoad(t *testing.T, st boxoffice.Store, name string) {
	inv := newInventory(t, name, st)
	putShow(t, st, "re", 8, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var stop atomic.Bool
	var reconfigured atomic.Int64
	wg.Go(func() {
		defer stop.Store(true)
		for i := range 60 {
			caps := []int{2 + i%7, 9 - i%7}
			err := inv.Reconfigure(ctx, "re", func(tx boxoffice.Tx) error {
				show, err := tx.GetShow(ctx, "re")
				if err != nil {
					return err
				}
				for j := range show.Tiers {
					tr := &show.Tiers[j]
					if caps[j] < tr.Held+tr.Sold {
						return boxoffice.Errorf(boxoffice.ECAPACITYCONFLICT, "tier %s has %d", tr.ID, tr.Held+tr.Sold)
					}
					tr.Capacity = caps[j]
				}
				return tx.PutShow(ctx, show)
			})
			switch {
			case err == nil:
				reconfigured.Add(1)
			case boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT:
				t.Errorf("reconfigure: %v", err)
				return
			}
		}
	})
	for w := range 4 {
		wg.Go(func() {
			tier := []string{"a", "b"}[w%2]
			var mine []*boxoffice.Hold
			for i := 0; !stop.Load(); i++ {
				h, err := reserve(ctx, inv, "re", tier, 1+i%2)
				switch code := boxoffice.ErrorCode(err); {
				case err == nil:
					mine = append(mine, h)
				case code == boxoffice.ESOLDOUT, code == boxoffice.EOVERLOADED:
				default:
					t.Errorf("reserve: %v", err)
					return
				}
				if len(mine) > 2 {
					if err := release(ctx, inv, mine[0]); err != nil {
						t.Errorf("release: %v", err)
						return
					}
					mine = mine[1:]
				}
			}
		})
	}
	wg.Wait()
	// How many of the changes above fitted depends on how the buyers ran; one that fits the
	// counts now must go through.
	t.Logf("%d of 60 capacity changes fitted under load", reconfigured.Load())
	err := inv.Reconfigure(ctx, "re", func(tx boxoffice.Tx) error {
		show, err := tx.GetShow(ctx, "re")
		if err != nil {
			return err
		}
		for j := range show.Tiers {
			show.Tiers[j].Capacity = show.Tiers[j].Held + show.Tiers[j].Sold + 1
		}
		return tx.PutShow(ctx, show)
	})
	if err != nil {
		t.Fatalf("a capacity change that fits was refused: %v", err)
	}
	verify(t, st)
}
