package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestUpdateAnswersAfterTheWALSync: the writer commits without waiting for the disk, and the
// syncer answers the caller only once the WAL is fsync'd; meanwhile the writer already runs the
// next batch, which the next fsync covers. The durable event position follows the fsyncs.
func TestUpdateAnswersAfterTheWALSync(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	start := db.DurableEventPosition()

	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	db.beforeSync = func() error {
		once.Do(func() { close(held); <-release })
		return nil
	}
	appendOne := func(subject string) error {
		return db.Update(ctx, func(tx boxoffice.Tx) error {
			return tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_" + subject, Type: boxoffice.EventHoldCreated, Subject: subject, CreatedAt: base, Data: []byte(`{}`)})
		})
	}
	first := make(chan error, 1)
	go func() { first <- appendOne("hld_1") }()
	<-held // the first batch is committed and its fsync is held

	// Committed: a reader sees it; not on disk by the syncer's account: no answer, position unmoved.
	view(t, db, func(tx boxoffice.Tx) error {
		evs, err := tx.ListEvents(ctx, start, 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("a reader sees %d events (%v) of the committed batch, want 1", len(evs), err)
		}
		return nil
	})
	select {
	case err := <-first:
		t.Fatalf("Update answered (%v) before its commit was fsync'd", err)
	default:
	}
	if got := db.DurableEventPosition(); got != start {
		t.Fatalf("durable position %d before the fsync, want %d", got, start)
	}

	// The writer is not held up by the fsync: a second Update commits meanwhile.
	second := make(chan error, 1)
	go func() { second <- appendOne("hld_2") }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		view(t, db, func(tx boxoffice.Tx) error {
			evs, err := tx.ListEvents(ctx, start, 10)
			n = len(evs)
			return err
		})
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Update did not commit while the first one's fsync was held")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := db.DurableEventPosition(); got != start+2 {
		t.Fatalf("durable position %d after both fsyncs, want %d", got, start+2)
	}
}

// TestFailedWALSyncStopsWrites: after a failed fsync nothing is known to be on disk, so the
// callers of that batch get an error, and so does every later Update.
func TestFailedWALSyncStopsWrites(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	errDisk := errors.New("simulated EIO")
	db.beforeSync = func() error { return errDisk }
	add := func() error {
		return db.Update(ctx, func(tx boxoffice.Tx) error {
			_, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
			return err
		})
	}
	if err := add(); !errors.Is(err, errDisk) {
		t.Fatalf("Update whose fsync failed = %v, want the fsync's error", err)
	}
	db.beforeSync = nil
	if err := add(); !errors.Is(err, errDisk) {
		t.Fatalf("Update after a failed fsync = %v, want the sticky fsync error", err)
	}
}
