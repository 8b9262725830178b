package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"boxoffice"
)

// TestGroupCommitIsolatesCallers: many Updates at once share transactions, yet each one's error
// undoes its own writes only, and every success is committed.
func TestGroupCommitIsolatesCallers(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 1000)))
	errOdd := errors.New("odd callers fail")
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]error, 300)
	for i := range results {
		wg.Go(func() {
			<-start
			results[i] = db.Update(ctx, func(tx boxoffice.Tx) error {
				if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil {
					return err
				}
				if err := tx.InsertHold(ctx, testHold(fmt.Sprintf("hld_%d", i), "a@x", base)); err != nil {
					return err
				}
				if i%2 == 1 {
					return errOdd
				}
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range results {
		if want := map[bool]error{true: errOdd, false: nil}[i%2 == 1]; !errors.Is(err, want) && err != want {
			t.Fatalf("caller %d: got %v, want %v", i, err, want)
		}
	}
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 150 {
			t.Fatalf("held %d (%v), want the 150 successful callers' tickets", c.Held, err)
		}
		for i := range results {
			_, err := tx.GetHold(ctx, fmt.Sprintf("hld_%d", i))
			if (err == nil) != (i%2 == 0) {
				t.Fatalf("hold %d: %v", i, err)
			}
		}
		return nil
	})
}

// TestGroupCommitPanicReachesCaller: a panic in fn surfaces in the calling goroutine, and the
// store goes on serving the others.
func TestGroupCommitPanicReachesCaller(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	func() {
		defer func() {
			v := recover()
			if v == nil || !strings.Contains(fmt.Sprint(v), "boom") {
				t.Fatalf("recovered %v, want the fn's panic", v)
			}
		}()
		_ = db.Update(ctx, func(tx boxoffice.Tx) error {
			if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if _, ok := addCounts(t, db, "gig", "ga", 2, 0); !ok {
		t.Fatal("the store stopped after a panic")
	}
	view(t, db, func(tx boxoffice.Tx) error {
		if c, _ := tx.TierCounts(ctx, "gig", "ga", false); c.Held != 2 {
			t.Fatalf("held %d, want 2: the panicking fn's write must not commit", c.Held)
		}
		return nil
	})
}

// TestUpdateAfterClose fails cleanly instead of hanging.
func TestUpdateAfterClose(t *testing.T) {
	db, _ := openTest(t)
	db.Close()
	if err := db.Update(context.Background(), func(boxoffice.Tx) error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("got %v", err)
	}
}
