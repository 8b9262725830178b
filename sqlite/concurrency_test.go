package sqlite

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"boxoffice"
)

// TestConcurrentAddTierCounts is the stampede in small: many goroutines race to hold one ticket
// each of a tier with fewer tickets than requests. Exactly capacity of them win and the tier ends
// full, never over.
func TestConcurrentAddTierCounts(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const (
		capacity   = 100
		goroutines = 64
		perG       = 10
	)
	putShow(t, db, testShow("gig", tier("ga", capacity)))

	var wins, losses atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				err := db.Update(ctx, func(tx boxoffice.Tx) error {
					c, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
					if err != nil {
						return err
					}
					if c.Held+c.Sold > c.Capacity {
						t.Errorf("oversold: %+v", c)
					}
					if ok {
						wins.Add(1)
					} else {
						losses.Add(1)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A reader runs alongside and must never see an oversold tier. One is enough: more would
	// only take the CPU from the writers.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := db.View(ctx, func(tx boxoffice.Tx) error {
				c, err := tx.TierCounts(ctx, "gig", "ga", false)
				if err == nil && c.Held+c.Sold > c.Capacity {
					t.Errorf("reader saw an oversold tier: %+v", c)
				}
				return err
			})
			if err != nil {
				t.Errorf("View: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Update: %v", err)
	}

	if wins.Load() != capacity || losses.Load() != goroutines*perG-capacity {
		t.Errorf("%d holds succeeded and %d failed, want %d and %d", wins.Load(), losses.Load(), capacity, goroutines*perG-capacity)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil {
			return err
		}
		if c.Held != capacity || c.Sold != 0 || c.Version != capacity {
			t.Errorf("final counts %+v, want held %d version %d", c, capacity, capacity)
		}
		return nil
	})
}

// TestConcurrentLiveOrders races inserts of a live order for one hold: the partial unique index
// lets exactly one through.
func TestConcurrentLiveOrders(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const n = 32
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := boxoffice.NewID(boxoffice.PrefixOrder, base)
			err := db.Update(ctx, func(tx boxoffice.Tx) error {
				return tx.InsertOrder(ctx, testOrder(id, "hld_1", boxoffice.OrderPendingPayment))
			})
			switch boxoffice.ErrorCode(err) {
			case "":
				wins.Add(1)
			case boxoffice.ECONFLICT:
				conflicts.Add(1)
			default:
				t.Errorf("InsertOrder: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != n-1 {
		t.Errorf("%d inserts won and %d conflicted, want 1 and %d", wins.Load(), conflicts.Load(), n-1)
	}
}
