// Package storetest is the behaviour every boxoffice.Store must show, as one suite that each store
// adapter runs against itself (after River's riverdrivertest): the SQLite and the PostgreSQL store
// are interchangeable only as long as both pass it. Tests of what is particular to one adapter
// (its configuration, its files, its query plans) stay in the adapter's package.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
)

// Exercise runs the whole suite. open returns a new, empty store and arranges for it to be
// closed when t ends; every subtest opens its own.
func Exercise(t *testing.T, open func(t *testing.T) boxoffice.Store) {
	for _, c := range []struct {
		name string
		test func(t *testing.T, db boxoffice.Store)
	}{
		{"ShowRoundTrip", testShowRoundTrip},
		{"PutShowKeepsCountsAndDeletesRemovedTiers", testPutShowKeepsCountsAndDeletesRemovedTiers},
		{"ListShows", testListShows},
		{"AddTierCounts", testAddTierCounts},
		{"ForEachTier", testForEachTier},
		{"Holds", testHolds},
		{"DueHoldsAndNextExpiry", testDueHoldsAndNextExpiry},
		{"BuyerTickets", testBuyerTickets},
		{"Orders", testOrders},
		{"ListAndPendingOrders", testListAndPendingOrders},
		{"IdemRecords", testIdemRecords},
		{"IdemLeasesAndSweep", testIdemLeasesAndSweep},
		{"IdemSweepKeepsWorkingRequests", testIdemSweepKeepsWorkingRequests},
		{"Events", testEvents},
		{"APIKeys", testAPIKeys},
		{"RelayCheckpointAndInbox", testRelayCheckpointAndInbox},
		{"InboxSweep", testInboxSweep},
		{"WebhookEndpoints", testWebhookEndpoints},
		{"ForEachStreamsEveryRow", testForEachStreamsEveryRow},
		{"UpdateRollsBackOnError", testUpdateRollsBackOnError},
		{"TxIsDeadAfterFn", testTxIsDeadAfterFn},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"ViewSnapshot", testViewSnapshot},
		{"FailedStatementPoisonsTx", testFailedStatementPoisonsTx},
		{"SetTierCountsIsCompareAndSet", testSetTierCountsIsCompareAndSet},
		{"FenceRejectsOlderTokens", testFenceRejectsOlderTokens},
		{"SavepointUndoesOnlyItsPart", testSavepointUndoesOnlyItsPart},
		{"InventoryStreamExpectedVersion", testInventoryStreamExpectedVersion},
		{"ConflictsKeepTheTxUsable", testConflictsKeepTheTxUsable},
		{"ConcurrentAddTierCounts", testConcurrentAddTierCounts},
		{"ConcurrentLiveOrders", testConcurrentLiveOrders},
		{"ConcurrentAppendEvent", testConcurrentAppendEvent},
		{"ConfirmVsExpire", testConfirmVsExpire},
		{"Seats", testSeats},
		{"ConcurrentClaimSeats", testConcurrentClaimSeats},
		{"Speculative", testSpeculative},
		{"SpeculativeConcurrent", testSpeculativeConcurrent},
		{"SpeculativeTiersAndLeases", testSpeculativeTiersAndLeases},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, guarded{open(t)}) })
	}
}

// guarded runs each fn of Update and View on a goroutine of its own, so that a t.Fatal in fn
// (which ends the goroutine it is called on) fails the test instead of hanging it: a store may
// run fn on a goroutine of its own, such as a group commit's writer, which must not end.
type guarded struct{ boxoffice.Store }

// Update runs fn guarded in the store's Update.
func (g guarded) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return g.Store.Update(ctx, guard(fn))
}

// View runs fn guarded in the store's View.
func (g guarded) View(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return g.Store.View(ctx, guard(fn))
}

// errStopped is what a guarded fn returns when the test stopped in it.
var errStopped = errors.New("the test stopped inside the transaction")

// guard returns fn run on a new goroutine: its result and its panic come back to the caller's
// goroutine, and a runtime.Goexit (t.Fatal, t.Skip) becomes errStopped.
func guard(fn func(tx boxoffice.Tx) error) func(tx boxoffice.Tx) error {
	return func(tx boxoffice.Tx) error {
		type outcome struct {
			err      error
			panicked bool
			value    any
		}
		done := make(chan outcome, 1)
		go func() {
			returned := false
			defer func() {
				if v := recover(); v != nil {
					done <- outcome{panicked: true, value: v}
				} else if !returned {
					done <- outcome{err: errStopped}
				}
			}()
			err := fn(tx)
			returned = true
			done <- outcome{err: err}
		}()
		o := <-done
		if o.panicked {
			panic(o.value)
		}
		return o.err
	}
}

// base is a fixed time with sub-microsecond digits, which the store drops.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// at is base plus d, as the store gives it back: microseconds, UTC.
func at(d time.Duration) time.Time { return base.Add(d).Truncate(time.Microsecond) }

func update(t *testing.T, db boxoffice.Store, fn func(tx boxoffice.Tx) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, db boxoffice.Store, fn func(tx boxoffice.Tx) error) {
	t.Helper()
	if err := db.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := boxoffice.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func intp(v int) *int { return &v }

func testShow(id string, tiers ...boxoffice.Tier) *boxoffice.Show {
	return &boxoffice.Show{
		ID: id, Name: "Show " + id, StartsAt: base.Add(30 * 24 * time.Hour), HoldTTLSeconds: 600,
		Tiers: tiers, CreatedAt: base, UpdatedAt: base,
	}
}

func tier(id string, capacity int) boxoffice.Tier {
	return boxoffice.Tier{ID: id, Name: "Tier " + id, Capacity: capacity, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}}
}

func putShow(t *testing.T, db boxoffice.Store, s *boxoffice.Show) {
	t.Helper()
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), s) })
}

func addCounts(t *testing.T, db boxoffice.Store, showID, tierID string, dHeld, dSold int) (c boxoffice.TierCounts, ok bool) {
	t.Helper()
	update(t, db, func(tx boxoffice.Tx) error {
		var err error
		c, ok, err = tx.AddTierCounts(context.Background(), showID, tierID, dHeld, dSold)
		return err
	})
	return c, ok
}

func getShow(t *testing.T, db boxoffice.Store, id string) *boxoffice.Show {
	t.Helper()
	var s *boxoffice.Show
	view(t, db, func(tx boxoffice.Tx) error {
		var err error
		s, err = tx.GetShow(context.Background(), id)
		return err
	})
	return s
}

func testShowRoundTrip(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	s := testShow("gig", tier("vip", 10), tier("floor", 100))
	s.MaxPerBuyer, s.CancelCutoffSeconds = intp(4), intp(86400)
	putShow(t, db, s)

	got := getShow(t, db, "gig")
	want := &boxoffice.Show{
		ID: "gig", Name: "Show gig", StartsAt: at(30 * 24 * time.Hour), HoldTTLSeconds: 600, MaxPerBuyer: intp(4),
		CancelCutoffSeconds: intp(86400), CreatedAt: at(0), UpdatedAt: at(0),
		Tiers: []boxoffice.Tier{
			{ID: "vip", Name: "Tier vip", Capacity: 10, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}, Available: 10},
			{ID: "floor", Name: "Tier floor", Capacity: 100, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}, Available: 100},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetShow =\n%+v\nwant\n%+v", got, want)
	}
	if got.StartsAt.Location() != time.UTC {
		t.Errorf("StartsAt location %v, want UTC", got.StartsAt.Location())
	}

	// MaxPerBuyer nil is NULL and comes back nil.
	s.MaxPerBuyer = nil
	putShow(t, db, s)
	if got := getShow(t, db, "gig"); got.MaxPerBuyer != nil {
		t.Errorf("MaxPerBuyer = %d, want nil", *got.MaxPerBuyer)
	}

	view(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.GetShow(ctx, "nope")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
}

func testPutShowKeepsCountsAndDeletesRemovedTiers(t *testing.T, db boxoffice.Store) {
	putShow(t, db, testShow("gig", tier("a", 10), tier("b", 10), tier("c", 10)))
	addCounts(t, db, "gig", "a", 3, 2)
	before, _ := addCounts(t, db, "gig", "c", 1, 0)

	s := testShow("gig", tier("c", 20), tier("a", 6), tier("d", 5))
	s.Name = "Renamed"
	s.CreatedAt = base.Add(time.Hour) // a replacement keeps the first created_at
	s.UpdatedAt = base.Add(time.Hour)
	s.Tiers[0].Price = boxoffice.Money{Amount: 9900, Currency: "USD"}
	putShow(t, db, s)

	got := getShow(t, db, "gig")
	if got.Name != "Renamed" || !got.CreatedAt.Equal(at(0)) || !got.UpdatedAt.Equal(at(time.Hour)) {
		t.Errorf("show = %q created %v updated %v", got.Name, got.CreatedAt, got.UpdatedAt)
	}
	var ids []string
	for _, tr := range got.Tiers {
		ids = append(ids, tr.ID)
	}
	if !reflect.DeepEqual(ids, []string{"c", "a", "d"}) {
		t.Fatalf("tiers %v, want [c a d] (b deleted, in the new order)", ids)
	}
	c, a, d := got.Tiers[0], got.Tiers[1], got.Tiers[2]
	if c.Capacity != 20 || c.Held != 1 || c.Available != 19 || c.Price.Amount != 9900 || c.Price.Currency != "USD" {
		t.Errorf("tier c = %+v", c)
	}
	if a.Capacity != 6 || a.Held != 3 || a.Sold != 2 || a.Available != 1 {
		t.Errorf("tier a = %+v", a)
	}
	if d.Held != 0 || d.Sold != 0 || d.Available != 5 {
		t.Errorf("tier d = %+v", d)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		cc, err := tx.TierCounts(context.Background(), "gig", "c", false)
		if err != nil {
			return err
		}
		if cc.Version != before.Version {
			t.Errorf("version of kept tier = %d, want %d", cc.Version, before.Version)
		}
		_, err = tx.TierCounts(context.Background(), "gig", "b", false)
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})

	// A show may lose all its tiers.
	putShow(t, db, testShow("gig"))
	if got := getShow(t, db, "gig"); len(got.Tiers) != 0 {
		t.Errorf("tiers after removing all: %+v", got.Tiers)
	}
}

func testListShows(t *testing.T, db boxoffice.Store) {
	for _, id := range []string{"d", "b", "a", "c", "e"} {
		putShow(t, db, testShow(id, tier("t2", 2), tier("t1", 1)))
	}
	view(t, db, func(tx boxoffice.Tx) error {
		ctx := context.Background()
		var pages [][]string
		after := ""
		for {
			shows, err := tx.ListShows(ctx, after, 2)
			if err != nil {
				return err
			}
			if len(shows) == 0 {
				break
			}
			var page []string
			for _, s := range shows {
				page = append(page, s.ID)
				if len(s.Tiers) != 2 || s.Tiers[0].ID != "t2" || s.Tiers[1].Available != 1 {
					t.Errorf("show %s tiers %+v", s.ID, s.Tiers)
				}
			}
			pages = append(pages, page)
			after = shows[len(shows)-1].ID
		}
		want := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
		if !reflect.DeepEqual(pages, want) {
			t.Errorf("pages %v, want %v", pages, want)
		}
		return nil
	})
}

func testAddTierCounts(t *testing.T, db boxoffice.Store) {
	putShow(t, db, testShow("gig", tier("ga", 10)))
	ctx := context.Background()

	c, ok := addCounts(t, db, "gig", "ga", 4, 0)
	if !ok || c.Held != 4 || c.Sold != 0 || c.Capacity != 10 || c.Version != 1 || c.ShowID != "gig" || c.TierID != "ga" {
		t.Fatalf("hold 4: %+v ok=%v", c, ok)
	}
	c, ok = addCounts(t, db, "gig", "ga", -2, 2) // confirm 2 of them
	if !ok || c.Held != 2 || c.Sold != 2 || c.Version != 2 {
		t.Fatalf("confirm 2: %+v ok=%v", c, ok)
	}
	c, ok = addCounts(t, db, "gig", "ga", 7, 0) // 2+2+7 > 10
	if ok || c.Held != 2 || c.Sold != 2 || c.Version != 2 || c.Available() != 6 {
		t.Fatalf("over capacity: %+v ok=%v, want refused with current counts", c, ok)
	}
	c, ok = addCounts(t, db, "gig", "ga", 6, 0) // exactly full
	if !ok || c.Held != 8 || c.Available() != 0 {
		t.Fatalf("fill: %+v ok=%v", c, ok)
	}
	if c, ok = addCounts(t, db, "gig", "ga", -9, 0); ok || c.Held != 8 {
		t.Fatalf("negative held: %+v ok=%v", c, ok)
	}
	if c, ok = addCounts(t, db, "gig", "ga", 0, -3); ok || c.Sold != 2 {
		t.Fatalf("negative sold: %+v ok=%v", c, ok)
	}
	update(t, db, func(tx boxoffice.Tx) error {
		_, _, err := tx.AddTierCounts(ctx, "gig", "nope", 1, 0)
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, _, err = tx.AddTierCounts(ctx, "nope", "ga", 1, 0)
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, err = tx.TierCounts(ctx, "gig", "nope", true)
		wantCode(t, err, boxoffice.ENOTFOUND)
		got, err := tx.TierCounts(ctx, "gig", "ga", true)
		if err != nil || got.Held != 8 || got.Sold != 2 || got.Version != 3 {
			t.Errorf("TierCounts = %+v, %v", got, err)
		}
		return nil
	})
}

func testForEachTier(t *testing.T, db boxoffice.Store) {
	putShow(t, db, testShow("b", tier("x", 1), tier("y", 2)))
	putShow(t, db, testShow("a", tier("z", 3)))
	addCounts(t, db, "b", "y", 1, 1)
	var got []boxoffice.TierCounts
	view(t, db, func(tx boxoffice.Tx) error {
		return tx.ForEachTier(context.Background(), func(c boxoffice.TierCounts) error {
			got = append(got, c)
			return nil
		})
	})
	want := []boxoffice.TierCounts{
		{ShowID: "a", TierID: "z", Capacity: 3},
		{ShowID: "b", TierID: "x", Capacity: 1},
		{ShowID: "b", TierID: "y", Capacity: 2, Held: 1, Sold: 1, Version: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ForEachTier = %+v, want %+v", got, want)
	}
}

// idsOf is the ids of a listing, in order; a listing that failed fails the test.
func idsOf[T any](t *testing.T, items []T, err error, id func(T) string) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, id(it))
	}
	return ids
}

func testHold(id, email string, expiresAt time.Time) *boxoffice.Hold {
	return &boxoffice.Hold{
		ID: id, ShowID: "gig", TierID: "ga", Quantity: 2, Buyer: boxoffice.Buyer{Email: email},
		Status: boxoffice.HoldActive, ExpiresAt: expiresAt, CreatedAt: base, UpdatedAt: base,
	}
}

func testHolds(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	h := testHold("hld_1", "ann@example.com", base.Add(10*time.Minute))
	h.APIKeyID = "key_shop" // the channel that made it reads back with it
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertHold(ctx, h) })

	update(t, db, func(tx boxoffice.Tx) error {
		wantCode(t, tx.InsertHold(ctx, h), boxoffice.ECONFLICT)
		got, err := tx.GetHold(ctx, "hld_1")
		if err != nil {
			return err
		}
		want := *h
		want.ExpiresAt, want.CreatedAt, want.UpdatedAt = at(10*time.Minute), at(0), at(0)
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("GetHold = %+v, want %+v", got, &want)
		}
		_, err = tx.GetHold(ctx, "hld_nope")
		wantCode(t, err, boxoffice.ENOTFOUND)

		ok, err := tx.EndHold(ctx, "hld_1", boxoffice.HoldReleased, base.Add(time.Minute))
		if err != nil || !ok {
			t.Fatalf("EndHold = %v, %v", ok, err)
		}
		ok, err = tx.EndHold(ctx, "hld_1", boxoffice.HoldExpired, base.Add(2*time.Minute))
		if err != nil || ok {
			t.Fatalf("second EndHold = %v, %v, want false", ok, err)
		}
		ok, err = tx.EndHold(ctx, "hld_nope", boxoffice.HoldExpired, base)
		if err != nil || ok {
			t.Fatalf("EndHold of a missing hold = %v, %v, want false", ok, err)
		}
		got, err = tx.GetHold(ctx, "hld_1")
		if err != nil {
			return err
		}
		if got.Status != boxoffice.HoldReleased || !got.UpdatedAt.Equal(at(time.Minute)) {
			t.Errorf("ended hold = %+v", got)
		}
		return nil
	})
}

func testDueHoldsAndNextExpiry(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	view(t, db, func(tx boxoffice.Tx) error {
		if _, ok, err := tx.NextHoldExpiry(ctx); ok || err != nil {
			t.Errorf("NextHoldExpiry with no holds: ok=%v err=%v", ok, err)
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		for _, h := range []*boxoffice.Hold{
			testHold("hld_c", "a@x", base.Add(3*time.Minute)),
			testHold("hld_a", "a@x", base.Add(1*time.Minute)),
			testHold("hld_b", "a@x", base.Add(2*time.Minute)),
			testHold("hld_pending", "a@x", base.Add(30*time.Second)), // has an order waiting for payment
			testHold("hld_failed", "a@x", base.Add(90*time.Second)),  // its only order failed
			testHold("hld_late", "a@x", base.Add(time.Hour)),
			testHold("hld_done", "a@x", base),
		} {
			if err := tx.InsertHold(ctx, h); err != nil {
				return err
			}
		}
		if _, err := tx.EndHold(ctx, "hld_done", boxoffice.HoldReleased, base); err != nil {
			return err
		}
		if err := tx.InsertOrder(ctx, testOrder("ord_1", "hld_pending", boxoffice.OrderPendingPayment)); err != nil {
			return err
		}
		return tx.InsertOrder(ctx, testOrder("ord_2", "hld_failed", boxoffice.OrderPaymentFailed))
	})
	view(t, db, func(tx boxoffice.Tx) error {
		due := func(now time.Time, limit int) []string {
			holds, err := tx.DueHolds(ctx, now, limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, h := range holds {
				ids = append(ids, h.ID)
			}
			return ids
		}
		if got := due(base.Add(2*time.Minute), 10); !reflect.DeepEqual(got, []string{"hld_a", "hld_failed", "hld_b"}) {
			t.Errorf("DueHolds at +2m = %v", got)
		}
		if got := due(base.Add(10*time.Minute), 2); !reflect.DeepEqual(got, []string{"hld_a", "hld_failed"}) {
			t.Errorf("DueHolds limit 2 = %v", got)
		}
		if got := due(base.Add(59*time.Second), 10); len(got) != 0 {
			t.Errorf("DueHolds before any expiry = %v", got)
		}
		next, ok, err := tx.NextHoldExpiry(ctx)
		if err != nil || !ok || !next.Equal(at(30*time.Second)) {
			t.Errorf("NextHoldExpiry = %v %v %v, want %v", next, ok, err, at(30*time.Second))
		}
		return nil
	})
}

func testBuyerTickets(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error {
		for i, st := range []boxoffice.HoldStatus{boxoffice.HoldActive, boxoffice.HoldConfirmed, boxoffice.HoldReleased, boxoffice.HoldExpired} {
			h := testHold(fmt.Sprintf("hld_%d", i), "ann@x", base)
			h.Quantity = 1 << i
			h.Status = st
			if err := tx.InsertHold(ctx, h); err != nil {
				return err
			}
		}
		other := testHold("hld_other_show", "ann@x", base)
		other.ShowID = "other"
		if err := tx.InsertHold(ctx, other); err != nil {
			return err
		}
		if err := tx.InsertHold(ctx, testHold("hld_bob", "bob@x", base)); err != nil {
			return err
		}
		// The same buyer in capitals: one buyer, one limit (BuyerKey).
		upper := testHold("hld_ann_upper", "ANN@X", base)
		upper.Quantity = 16
		if err := tx.InsertHold(ctx, upper); err != nil {
			return err
		}
		// Only ASCII letters fold: Ä is not ä.
		umlaut := testHold("hld_umlaut", "Äda@x", base)
		umlaut.Quantity = 32
		return tx.InsertHold(ctx, umlaut)
	})
	view(t, db, func(tx boxoffice.Tx) error {
		for email, want := range map[string]int{"ann@x": 19, "Ann@X": 19, "bob@x": 2, "BOB@x": 2, "nobody@x": 0, "Äda@x": 32, "äda@x": 0} {
			n, err := tx.BuyerTickets(ctx, "gig", email)
			if err != nil || n != want {
				t.Errorf("BuyerTickets(%s) = %d, %v, want %d", email, n, err, want)
			}
		}
		return nil
	})
}

func testOrder(id, holdID string, status boxoffice.OrderStatus) *boxoffice.Order {
	return &boxoffice.Order{
		ID: id, Status: status, ShowID: "gig", TierID: "ga", HoldID: holdID, Quantity: 2,
		Amount: boxoffice.Money{Amount: 10000, Currency: "EUR"}, Buyer: boxoffice.Buyer{Email: "ann@x"},
		CreatedAt: base, UpdatedAt: base, PaymentToken: "tok_ok",
	}
}

func testOrders(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	o := testOrder("ord_1", "hld_1", boxoffice.OrderPendingPayment)
	o.ReleaseOnFailure, o.APIKeyID = true, "key_shop"
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertOrder(ctx, o) })

	update(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.GetOrder(ctx, "ord_1")
		if err != nil {
			return err
		}
		want := *o
		want.CreatedAt, want.UpdatedAt = at(0), at(0)
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("GetOrder = %+v, want %+v", got, &want)
		}
		_, err = tx.GetOrder(ctx, "ord_nope")
		wantCode(t, err, boxoffice.ENOTFOUND)

		// The same id again, and a second live order of the same hold, are conflicts.
		wantCode(t, tx.InsertOrder(ctx, testOrder("ord_1", "hld_9", boxoffice.OrderPendingPayment)), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertOrder(ctx, testOrder("ord_2", "hld_1", boxoffice.OrderConfirmed)), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertOrder(ctx, testOrder("ord_2", "hld_1", boxoffice.OrderPendingPayment)), boxoffice.ECONFLICT)

		live, err := tx.LiveOrderForHold(ctx, "hld_1")
		if err != nil || live.ID != "ord_1" {
			t.Errorf("LiveOrderForHold = %+v, %v", live, err)
		}

		// The wrong from status changes nothing.
		o.Status = boxoffice.OrderPaymentFailed
		ok, err := tx.UpdateOrder(ctx, o, boxoffice.OrderConfirmed)
		if err != nil || ok {
			t.Fatalf("UpdateOrder from the wrong status = %v, %v", ok, err)
		}
		ok, err = tx.UpdateOrder(ctx, o, boxoffice.OrderPendingPayment)
		if err != nil || !ok {
			t.Fatalf("UpdateOrder = %v, %v", ok, err)
		}
		_, err = tx.LiveOrderForHold(ctx, "hld_1")
		wantCode(t, err, boxoffice.ENOTFOUND)

		// After a failed payment the hold may get a new order, which then is its live one.
		if err := tx.InsertOrder(ctx, testOrder("ord_2", "hld_1", boxoffice.OrderPendingPayment)); err != nil {
			t.Fatalf("order after a failed one: %v", err)
		}
		live, err = tx.LiveOrderForHold(ctx, "hld_1")
		if err != nil || live.ID != "ord_2" {
			t.Errorf("LiveOrderForHold = %+v, %v", live, err)
		}
		// Bringing the failed order back to life while ord_2 is live is a conflict too.
		o.Status = boxoffice.OrderConfirmed
		_, err = tx.UpdateOrder(ctx, o, boxoffice.OrderPaymentFailed)
		wantCode(t, err, boxoffice.ECONFLICT)

		// UpdateOrder writes status, tickets, charge and refund ids, release_on_failure, updated_at
		// and nothing else.
		o2 := testOrder("ord_2", "hld_1", boxoffice.OrderConfirmed)
		o2.Tickets = []boxoffice.Ticket{{Code: "AAA"}, {Code: "BBB"}}
		o2.ChargeID, o2.RefundID, o2.ReleaseOnFailure = "ch_1", "re_1", true
		o2.UpdatedAt = base.Add(time.Minute)
		o2.Quantity, o2.PaymentToken, o2.CreatedAt = 99, "changed", base.Add(time.Hour)
		if ok, err := tx.UpdateOrder(ctx, o2, boxoffice.OrderPendingPayment); err != nil || !ok {
			t.Fatalf("UpdateOrder = %v, %v", ok, err)
		}
		got, err = tx.GetOrder(ctx, "ord_2")
		if err != nil {
			return err
		}
		want = *testOrder("ord_2", "hld_1", boxoffice.OrderConfirmed)
		want.Tickets = o2.Tickets
		want.ChargeID, want.RefundID, want.ReleaseOnFailure = "ch_1", "re_1", true
		want.CreatedAt, want.UpdatedAt = at(0), at(time.Minute)
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("updated order = %+v, want %+v", got, &want)
		}
		ok, err = tx.UpdateOrder(ctx, testOrder("ord_nope", "h", boxoffice.OrderConfirmed), boxoffice.OrderPendingPayment)
		if err != nil || ok {
			t.Errorf("UpdateOrder of a missing order = %v, %v", ok, err)
		}
		return nil
	})
}

func testListAndPendingOrders(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error {
		for i := 0; i < 7; i++ {
			o := testOrder(fmt.Sprintf("ord_%d", i), fmt.Sprintf("hld_%d", i), boxoffice.OrderConfirmed)
			if i%2 == 1 {
				o.ShowID = "other"
			}
			if i%3 == 0 {
				o.Status = boxoffice.OrderPendingPayment
			}
			if i >= 2 && i <= 5 {
				o.APIKeyID = "key_shop" // a sales channel's orders: ord_2..ord_5
			}
			if err := tx.InsertOrder(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	ids := func(orders []*boxoffice.Order, err error) []string {
		t.Helper()
		return idsOf(t, orders, err, func(o *boxoffice.Order) string { return o.ID })
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for _, c := range []struct {
			show, after string
			limit       int
			want        []string
			key         string
		}{
			{"", "", 3, []string{"ord_0", "ord_1", "ord_2"}, ""},
			{"", "ord_2", 3, []string{"ord_3", "ord_4", "ord_5"}, ""},
			{"", "ord_5", 3, []string{"ord_6"}, ""},
			{"", "ord_6", 3, nil, ""},
			{"gig", "", 10, []string{"ord_0", "ord_2", "ord_4", "ord_6"}, ""},
			{"gig", "ord_2", 1, []string{"ord_4"}, ""},
			{"other", "", 10, []string{"ord_1", "ord_3", "ord_5"}, ""},
			// A channel sees its own orders only, of every show or of one.
			{"", "", 10, []string{"ord_2", "ord_3", "ord_4", "ord_5"}, "key_shop"},
			{"", "ord_3", 1, []string{"ord_4"}, "key_shop"},
			{"other", "", 10, []string{"ord_3", "ord_5"}, "key_shop"},
			{"gig", "ord_2", 10, []string{"ord_4"}, "key_shop"},
			{"", "", 10, nil, "key_other"},
		} {
			f := boxoffice.OrderFilter{ShowID: c.show, APIKeyID: c.key}
			if got := ids(tx.ListOrders(ctx, f, c.after, c.limit)); !reflect.DeepEqual(got, c.want) {
				t.Errorf("ListOrders(%+v, %q, %d) = %v, want %v", f, c.after, c.limit, got, c.want)
			}
		}
		if got := ids(tx.PendingOrders(ctx, 10)); !reflect.DeepEqual(got, []string{"ord_0", "ord_3", "ord_6"}) {
			t.Errorf("PendingOrders = %v", got)
		}
		if got := ids(tx.PendingOrders(ctx, 2)); !reflect.DeepEqual(got, []string{"ord_0", "ord_3"}) {
			t.Errorf("PendingOrders(2) = %v", got)
		}
		for _, c := range []struct {
			status      boxoffice.OrderStatus
			limit, want int
		}{
			{boxoffice.OrderPendingPayment, 10, 3}, {boxoffice.OrderConfirmed, 10, 4},
			{boxoffice.OrderConfirmed, 2, 2}, {boxoffice.OrderCancelled, 10, 0}, {boxoffice.OrderConfirmed, 0, 0},
		} {
			if n, err := tx.CountOrders(ctx, c.status, c.limit); err != nil || n != c.want {
				t.Errorf("CountOrders(%s, %d) = %d, %v; want %d", c.status, c.limit, n, err, c.want)
			}
		}
		return nil
	})
}

func testRecord(id, key string) *boxoffice.IdemRecord {
	return &boxoffice.IdemRecord{
		ID: id, Scope: "key_1 POST /v1/purchases", Key: key, Fingerprint: "fp-" + key,
		CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour),
	}
}

func testIdemRecords(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	r := testRecord("idr_1", "k1")
	r.LockedUntil = base.Add(30 * time.Second)
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertIdemRecord(ctx, r) })

	update(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.GetIdemRecord(ctx, r.Scope, "k1")
		if err != nil {
			return err
		}
		want := *r
		want.LockedUntil, want.CreatedAt, want.ExpiresAt = at(30*time.Second), at(0), at(24*time.Hour)
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("GetIdemRecord = %+v, want %+v", got, &want)
		}
		if got.Response != nil {
			t.Errorf("Response = %+v, want nil", got.Response)
		}
		_, err = tx.GetIdemRecord(ctx, "other scope", "k1")
		wantCode(t, err, boxoffice.ENOTFOUND)

		// The same scope and key is a conflict; the same key in another scope is not.
		wantCode(t, tx.InsertIdemRecord(ctx, testRecord("idr_2", "k1")), boxoffice.ECONFLICT)
		other := testRecord("idr_2", "k1")
		other.Scope = "key_2 POST /v1/purchases"
		if err := tx.InsertIdemRecord(ctx, other); err != nil {
			return err
		}

		// The response, the ids and the lease are written; the zero lease reads back as zero.
		r.HoldID, r.OrderID, r.LockedUntil = "hld_1", "ord_1", time.Time{}
		r.Response = &boxoffice.Response{Status: 201, Body: []byte(`{"id":"ord_1"}` + "\n"), Location: "/v1/orders/ord_1"}
		if err := tx.UpdateIdemRecord(ctx, r); err != nil {
			return err
		}
		got, err = tx.GetIdemRecord(ctx, r.Scope, "k1")
		if err != nil {
			return err
		}
		if got.ID != "idr_1" || got.HoldID != "hld_1" || got.OrderID != "ord_1" || !got.LockedUntil.IsZero() ||
			got.LockedUntil != (time.Time{}) || got.Response == nil || got.Response.Status != 201 ||
			!bytes.Equal(got.Response.Body, r.Response.Body) || got.Response.Location != "/v1/orders/ord_1" {
			t.Errorf("updated record = %+v response %+v", got, got.Response)
		}

		// A response with no body and no Location is still a response.
		r.Response = &boxoffice.Response{Status: 204}
		if err := tx.UpdateIdemRecord(ctx, r); err != nil {
			return err
		}
		got, err = tx.GetIdemRecord(ctx, r.Scope, "k1")
		if err != nil {
			return err
		}
		if got.Response == nil || got.Response.Status != 204 || len(got.Response.Body) != 0 || got.Response.Location != "" {
			t.Errorf("empty response = %+v", got.Response)
		}

		// And it can be taken away again.
		r.Response = nil
		if err := tx.UpdateIdemRecord(ctx, r); err != nil {
			return err
		}
		if got, err = tx.GetIdemRecord(ctx, r.Scope, "k1"); err != nil || got.Response != nil {
			t.Errorf("record without response = %+v, %v", got, err)
		}

		wantCode(t, tx.UpdateIdemRecord(ctx, testRecord("idr_nope", "k9")), boxoffice.ENOTFOUND)
		return nil
	})

	// AnswerIdemRecordForOrder: answers the leased record of an order once, and nothing else.
	leased := testRecord("idr_3", "k3")
	leased.HoldID, leased.OrderID, leased.LockedUntil = "hld_3", "ord_3", base.Add(time.Minute)
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertIdemRecord(ctx, leased) })
	answer := &boxoffice.Response{Status: 201, Body: []byte(`{"id":"ord_3"}`), Location: ""}
	update(t, db, func(tx boxoffice.Tx) error {
		for _, id := range []string{"", "ord_nope"} {
			if ok, err := tx.AnswerIdemRecordForOrder(ctx, id, answer); err != nil || ok {
				t.Errorf("AnswerIdemRecordForOrder(%q) = %v, %v; want false", id, ok, err)
			}
		}
		if ok, err := tx.AnswerIdemRecordForOrder(ctx, "ord_3", answer); err != nil || !ok {
			t.Errorf("AnswerIdemRecordForOrder(ord_3) = %v, %v; want true", ok, err)
		}
		// Answered already (say, 202 to a request that stopped waiting): kept as it is.
		later := &boxoffice.Response{Status: 402, Body: []byte(`{"code":"payment_declined"}`)}
		if ok, err := tx.AnswerIdemRecordForOrder(ctx, "ord_3", later); err != nil || ok {
			t.Errorf("second AnswerIdemRecordForOrder(ord_3) = %v, %v; want false", ok, err)
		}
		got, err := tx.GetIdemRecord(ctx, leased.Scope, "k3")
		if err != nil {
			return err
		}
		if got.Response == nil || got.Response.Status != 201 || !bytes.Equal(got.Response.Body, answer.Body) ||
			!got.LockedUntil.IsZero() || got.HoldID != "hld_3" || got.OrderID != "ord_3" {
			t.Errorf("answered record = %+v response %+v", got, got.Response)
		}
		return nil
	})
}

func testIdemLeasesAndSweep(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error {
		for i := 0; i < 5; i++ {
			r := testRecord(fmt.Sprintf("idr_%d", i), fmt.Sprintf("k%d", i))
			r.ExpiresAt = base.Add(time.Duration(i) * time.Hour)
			r.LockedUntil = base.Add(time.Minute)
			if err := tx.InsertIdemRecord(ctx, r); err != nil {
				return err
			}
		}
		return tx.ClearIdemLeases(ctx)
	})
	update(t, db, func(tx boxoffice.Tx) error {
		err := tx.ForEachIdemRecord(ctx, func(r *boxoffice.IdemRecord) error {
			if !r.LockedUntil.IsZero() {
				t.Errorf("record %s still leased until %v", r.ID, r.LockedUntil)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Expired before base+3h: records 0, 1, 2; at most 2 per call.
		now := base.Add(3 * time.Hour)
		for _, want := range []int{2, 1, 0} {
			n, err := tx.SweepIdemRecords(ctx, now, 2)
			if err != nil || n != want {
				t.Fatalf("SweepIdemRecords = %d, %v, want %d", n, err, want)
			}
		}
		var left []string
		if err := tx.ForEachIdemRecord(ctx, func(r *boxoffice.IdemRecord) error {
			left = append(left, r.ID)
			return nil
		}); err != nil {
			return err
		}
		if !reflect.DeepEqual(left, []string{"idr_3", "idr_4"}) {
			t.Errorf("records left %v, want [idr_3 idr_4]", left)
		}
		return nil
	})
}

// testIdemSweepKeepsWorkingRequests: a record past its expiry is kept while its request is still
// working (its lease is live) or its order still waits for the payment; sweeping it would let a
// retry start a second order and a second charge. Finished and abandoned ones go.
func testIdemSweepKeepsWorkingRequests(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	now := base.Add(48 * time.Hour) // every record below expired at base+24h
	update(t, db, func(tx boxoffice.Tx) error {
		for _, o := range []*boxoffice.Order{
			testOrder("ord_pending", "hld_p", boxoffice.OrderPendingPayment),
			testOrder("ord_done", "hld_d", boxoffice.OrderConfirmed),
		} {
			if err := tx.InsertOrder(ctx, o); err != nil {
				return err
			}
		}
		leased := testRecord("idr_leased", "leased")
		leased.LockedUntil = now.Add(time.Minute)
		pending := testRecord("idr_pending", "pending")
		pending.OrderID = "ord_pending"
		done := testRecord("idr_done", "done")
		done.OrderID, done.Response = "ord_done", &boxoffice.Response{Status: 201, Body: []byte(`{}`)}
		abandoned := testRecord("idr_abandoned", "abandoned")
		abandoned.LockedUntil = now.Add(-time.Minute) // its process died; the lease ran out
		for _, r := range []*boxoffice.IdemRecord{leased, pending, done, abandoned} {
			if err := tx.InsertIdemRecord(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		if n, err := tx.SweepIdemRecords(ctx, now, 10); err != nil || n != 2 {
			t.Fatalf("SweepIdemRecords = %d, %v; want the finished and the abandoned record", n, err)
		}
		var left []string
		if err := tx.ForEachIdemRecord(ctx, func(r *boxoffice.IdemRecord) error {
			left = append(left, r.ID)
			return nil
		}); err != nil {
			return err
		}
		sort.Strings(left)
		if !reflect.DeepEqual(left, []string{"idr_leased", "idr_pending"}) {
			t.Errorf("records left %v, want [idr_leased idr_pending]", left)
		}
		return nil
	})
}

func testEvents(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	var appended []*boxoffice.Event
	for i, subject := range []string{"ord_a", "ord_b", "ord_a", "hld_c", "ord_a", "ord_b"} {
		update(t, db, func(tx boxoffice.Tx) error {
			e := &boxoffice.Event{
				ID: fmt.Sprintf("evt_%d", i), Type: boxoffice.EventOrderConfirmed, Subject: subject,
				CreatedAt: base.Add(time.Duration(i) * time.Second), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
			}
			if err := tx.AppendEvent(ctx, e); err != nil {
				return err
			}
			appended = append(appended, e)
			return nil
		})
	}
	wantSeq := []int{1, 1, 2, 1, 3, 2}
	for i, e := range appended {
		if e.Seq != wantSeq[i] {
			t.Errorf("event %d seq %d, want %d", i, e.Seq, wantSeq[i])
		}
		if i > 0 && e.Position <= appended[i-1].Position {
			t.Errorf("event %d position %d not after %d", i, e.Position, appended[i-1].Position)
		}
	}
	update(t, db, func(tx boxoffice.Tx) error {
		wantCode(t, tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_0", Subject: "x"}), boxoffice.ECONFLICT)
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		all, err := tx.ListEvents(ctx, 0, 100)
		if err != nil {
			return err
		}
		if len(all) != len(appended) {
			t.Fatalf("ListEvents returned %d events, want %d", len(all), len(appended))
		}
		for i, e := range all {
			a := appended[i]
			if e.ID != a.ID || e.Type != a.Type || e.Subject != a.Subject || e.Seq != a.Seq || e.Position != a.Position ||
				!e.CreatedAt.Equal(at(time.Duration(i)*time.Second)) || !bytes.Equal(e.Data, a.Data) {
				t.Errorf("event %d = %+v, want %+v", i, e, a)
			}
		}
		page, err := tx.ListEvents(ctx, appended[1].Position, 2)
		if err != nil {
			return err
		}
		if len(page) != 2 || page[0].ID != "evt_2" || page[1].ID != "evt_3" {
			t.Errorf("ListEvents after %d: %+v", appended[1].Position, page)
		}
		if rest, err := tx.ListEvents(ctx, appended[5].Position, 10); err != nil || len(rest) != 0 {
			t.Errorf("ListEvents after the last = %v, %v", rest, err)
		}
		got, err := tx.EventByID(ctx, "evt_3")
		if err != nil || got.Position != appended[3].Position || got.Subject != "hld_c" || got.Seq != 1 ||
			!bytes.Equal(got.Data, appended[3].Data) || !got.CreatedAt.Equal(at(3*time.Second)) {
			t.Errorf("EventByID(evt_3) = %+v, %v; want %+v", got, err, appended[3])
		}
		_, err = tx.EventByID(ctx, "evt_nope")
		wantCode(t, err, boxoffice.ENOTFOUND)
		// The batch form: the ones that exist, whole, in any order.
		byID, err := tx.EventsByID(ctx, []string{"evt_4", "evt_nope", "evt_3"})
		if err != nil || len(byID) != 2 {
			t.Errorf("EventsByID(evt_4 evt_nope evt_3) = %+v, %v; want evt_3 and evt_4", byID, err)
		} else {
			for _, e := range byID {
				i := slices.IndexFunc(appended, func(a *boxoffice.Event) bool { return a.ID == e.ID })
				if i < 0 || (e.ID != "evt_3" && e.ID != "evt_4") || e.Position != appended[i].Position || e.Seq != appended[i].Seq ||
					e.Subject != appended[i].Subject || e.Type != appended[i].Type || !bytes.Equal(e.Data, appended[i].Data) ||
					!e.CreatedAt.Equal(appended[i].CreatedAt.Truncate(time.Microsecond)) {
					t.Errorf("EventsByID gave %+v; want one of evt_3, evt_4 as appended", e)
				}
			}
		}
		if none, err := tx.EventsByID(ctx, nil); err != nil || len(none) != 0 {
			t.Errorf("EventsByID(none) = %v, %v", none, err)
		}

		// EventsOfSubject: the subject's events only, by seq, up to limit.
		of, err := tx.EventsOfSubject(ctx, "ord_a", 10)
		if err != nil || len(of) != 3 || of[0].ID != "evt_0" || of[1].ID != "evt_2" || of[2].ID != "evt_4" ||
			of[2].Seq != 3 || !bytes.Equal(of[1].Data, appended[2].Data) {
			t.Errorf("EventsOfSubject(ord_a) = %+v, %v; want evt_0, evt_2, evt_4", of, err)
		}
		if two, err := tx.EventsOfSubject(ctx, "ord_a", 2); err != nil || len(two) != 2 || two[1].ID != "evt_2" {
			t.Errorf("EventsOfSubject(ord_a, 2) = %+v, %v; want evt_0, evt_2", two, err)
		}
		if none, err := tx.EventsOfSubject(ctx, "ord_nope", 10); err != nil || len(none) != 0 {
			t.Errorf("EventsOfSubject(ord_nope) = %+v, %v; want none", none, err)
		}

		// EventsAt: the ones that exist, by position, whatever order they were asked in.
		missing := appended[5].Position + 1000
		found, err := tx.EventsAt(ctx, []int64{appended[4].Position, missing, appended[1].Position})
		if err != nil || len(found) != 2 || found[0].ID != "evt_1" || found[1].ID != "evt_4" || !bytes.Equal(found[1].Data, appended[4].Data) {
			t.Errorf("EventsAt = %+v, %v; want evt_1, evt_4", found, err)
		}
		if none, err := tx.EventsAt(ctx, nil); err != nil || len(none) != 0 {
			t.Errorf("EventsAt(nil) = %v, %v", none, err)
		}
		return nil
	})
}

func testAPIKeys(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	k := &boxoffice.APIKey{ID: "key_1", Role: boxoffice.RoleClient, Hash: boxoffice.HashKey("secret"), CreatedAt: base}
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertAPIKey(ctx, k) })
	update(t, db, func(tx boxoffice.Tx) error {
		wantCode(t, tx.InsertAPIKey(ctx, &boxoffice.APIKey{ID: "key_2", Role: boxoffice.RoleAdmin, Hash: k.Hash}), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertAPIKey(ctx, &boxoffice.APIKey{ID: "key_1", Role: boxoffice.RoleAdmin, Hash: "other"}), boxoffice.ECONFLICT)
		got, err := tx.APIKeyByHash(ctx, k.Hash)
		if err != nil {
			return err
		}
		if got.ID != "key_1" || got.Role != boxoffice.RoleClient || got.Hash != k.Hash || !got.CreatedAt.Equal(at(0)) {
			t.Errorf("APIKeyByHash = %+v", got)
		}
		_, err = tx.APIKeyByHash(ctx, boxoffice.HashKey("wrong"))
		wantCode(t, err, boxoffice.ENOTFOUND)
		if got.Label != "" || got.LastUsedAt != nil || got.RevokedAt != nil {
			t.Errorf("a new key: label %q, last used %v, revoked %v; want none", got.Label, got.LastUsedAt, got.RevokedAt)
		}
		return nil
	})
	testAPIKeyLifeCycle(t, db)
}

// testAPIKeyLifeCycle: keys list by id in pages, revocation keeps its first time and tells an
// unknown key, and last_used_at only ever moves forward.
func testAPIKeyLifeCycle(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error {
		for _, id := range []string{"key_3", "key_2"} {
			k := &boxoffice.APIKey{ID: id, Role: boxoffice.RoleAdmin, Label: "ops " + id, Hash: boxoffice.HashKey(id), CreatedAt: at(time.Minute)}
			if err := tx.InsertAPIKey(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	keyIDs := func(keys []*boxoffice.APIKey, err error) []string {
		t.Helper()
		return idsOf(t, keys, err, func(k *boxoffice.APIKey) string { return k.ID })
	}
	view(t, db, func(tx boxoffice.Tx) error {
		if got := keyIDs(tx.ListAPIKeys(ctx, "", 2)); !reflect.DeepEqual(got, []string{"key_1", "key_2"}) {
			t.Errorf("ListAPIKeys first page = %v", got)
		}
		if got := keyIDs(tx.ListAPIKeys(ctx, "key_2", 2)); !reflect.DeepEqual(got, []string{"key_3"}) {
			t.Errorf("ListAPIKeys after key_2 = %v", got)
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.RevokeAPIKey(ctx, "key_2", at(2*time.Minute)); err != nil {
			return err
		}
		if err := tx.RevokeAPIKey(ctx, "key_2", at(3*time.Minute)); err != nil {
			t.Errorf("revoke again = %v; want nil", err)
		}
		wantCode(t, tx.RevokeAPIKey(ctx, "key_nope", at(0)), boxoffice.ENOTFOUND)
		if err := tx.TouchAPIKey(ctx, "key_3", at(5*time.Minute)); err != nil {
			return err
		}
		return tx.TouchAPIKey(ctx, "key_3", at(4*time.Minute)) // older: ignored
	})
	view(t, db, func(tx boxoffice.Tx) error {
		k2, err := tx.APIKeyByHash(ctx, boxoffice.HashKey("key_2"))
		if err != nil {
			return err
		}
		if k2.RevokedAt == nil || !k2.RevokedAt.Equal(at(2*time.Minute)) || k2.Label != "ops key_2" {
			t.Errorf("revoked key = %+v; want revoked at %v, label kept", k2, at(2*time.Minute))
		}
		k3, err := tx.APIKeyByHash(ctx, boxoffice.HashKey("key_3"))
		if err != nil {
			return err
		}
		if k3.RevokedAt != nil || k3.LastUsedAt == nil || !k3.LastUsedAt.Equal(at(5*time.Minute)) {
			t.Errorf("touched key = %+v; want live, last used at %v", k3, at(5*time.Minute))
		}
		return nil
	})
}

func testForEachStreamsEveryRow(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	const n = 1000
	update(t, db, func(tx boxoffice.Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.InsertHold(ctx, testHold(fmt.Sprintf("hld_%05d", i), "a@x", base)); err != nil {
				return err
			}
			if err := tx.InsertOrder(ctx, testOrder(fmt.Sprintf("ord_%05d", i), fmt.Sprintf("hld_%05d", i), boxoffice.OrderConfirmed)); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		holds, orders := map[string]bool{}, map[string]bool{}
		if err := tx.ForEachHold(ctx, func(h *boxoffice.Hold) error { holds[h.ID] = true; return nil }); err != nil {
			return err
		}
		if err := tx.ForEachOrder(ctx, func(o *boxoffice.Order) error { orders[o.ID] = true; return nil }); err != nil {
			return err
		}
		if len(holds) != n || len(orders) != n {
			t.Errorf("ForEach saw %d holds and %d orders, want %d each", len(holds), len(orders), n)
		}

		// fn's error stops the walk and comes back as is.
		stop := errors.New("stop")
		calls := 0
		err := tx.ForEachHold(ctx, func(*boxoffice.Hold) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Errorf("ForEachHold with a failing fn = %v after %d calls", err, calls)
		}
		err = tx.ForEachOrder(ctx, func(*boxoffice.Order) error { return stop })
		if err != stop {
			t.Errorf("ForEachOrder with a failing fn = %v", err)
		}
		// The transaction is still usable afterwards.
		_, err = tx.GetHold(ctx, "hld_00000")
		return err
	})
}

func testUpdateRollsBackOnError(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	boom := boxoffice.Errorf(boxoffice.ESOLDOUT, "no")
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 5, 0); err != nil || !ok {
			t.Fatalf("AddTierCounts = %v, %v", ok, err)
		}
		if err := tx.InsertHold(ctx, testHold("hld_1", "a@x", base)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update returned %v, want fn's error as is", err)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 0 || c.Version != 0 {
			t.Errorf("counts after rollback = %+v, %v", c, err)
		}
		_, err = tx.GetHold(ctx, "hld_1")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})

	// A panic in fn rolls back too, and the writer is free afterwards.
	func() {
		defer func() { _ = recover() }()
		_ = db.Update(ctx, func(tx boxoffice.Tx) error {
			_ = tx.InsertHold(ctx, testHold("hld_2", "a@x", base))
			panic("boom")
		})
	}()
	update(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.GetHold(ctx, "hld_2")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
}

func testTxIsDeadAfterFn(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	var kept boxoffice.Tx
	update(t, db, func(tx boxoffice.Tx) error {
		kept = tx
		_, err := tx.GetHold(ctx, "warm up the statement")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
	if err := kept.InsertHold(ctx, testHold("hld_1", "a@x", base)); err == nil {
		t.Fatal("InsertHold on a finished transaction succeeded")
	}
	if _, err := kept.GetHold(ctx, "hld_1"); err == nil || boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		t.Fatalf("GetHold on a finished transaction = %v, want a store error", err)
	}
}

func testViewIsReadOnly(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	err := db.View(ctx, func(tx boxoffice.Tx) error {
		return tx.InsertHold(ctx, testHold("hld_1", "a@x", base))
	})
	if err == nil {
		t.Fatal("a write in View succeeded")
	}
	view(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.GetHold(ctx, "hld_1")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
}

// testViewSnapshot shows that a reader neither blocks the writer nor sees its commits halfway
// through its own transaction.
func testViewSnapshot(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	view(t, db, func(tx boxoffice.Tx) error {
		before, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil {
			return err
		}
		if _, ok := addCounts(t, db, "gig", "ga", 3, 0); !ok {
			t.Fatal("AddTierCounts refused")
		}
		after, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil {
			return err
		}
		if after != before {
			t.Errorf("snapshot moved from %+v to %+v", before, after)
		}
		return nil
	})
	if s := getShow(t, db, "gig"); s.Tiers[0].Held != 3 {
		t.Errorf("held after the View = %d, want 3", s.Tiers[0].Held)
	}
}

// countParams counts the distinct ? parameters of q (numbered ones by their highest number).
// testFailedStatementPoisonsTx: after a statement fails in a way that is not an answer (here
// the RELEASE of a savepoint that does not exist), no later statement runs and Update does not
// commit, even if fn ignores the error.
func testFailedStatementPoisonsTx(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil {
			t.Error(err)
			return err
		}
		if err := tx.InsertHold(ctx, testHold("hld_1", "a@x", base)); err != nil {
			t.Error(err)
			return err
		}
		// Releasing a savepoint that does not exist is an SQL error that is not a constraint:
		// after it, the transaction is not what fn meant, and must not commit.
		if err := tx.ReleaseSavepoint(ctx, "nosuch"); err == nil {
			t.Error("RELEASE of an unknown savepoint succeeded")
			return nil
		}
		if err := tx.InsertHold(ctx, testHold("hld_2", "a@x", base)); err == nil {
			t.Error("a statement ran after the transaction failed")
		}
		return nil // fn ignores the failure
	})
	if err == nil {
		t.Fatal("Update committed a failed transaction")
	}
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 0 {
			t.Errorf("counts = %+v, %v, want nothing committed", c, err)
		}
		for _, id := range []string{"hld_1", "hld_2"} {
			_, err := tx.GetHold(ctx, id)
			wantCode(t, err, boxoffice.ENOTFOUND)
		}
		return nil
	})
	// The store is usable again.
	if _, ok := addCounts(t, db, "gig", "ga", 1, 0); !ok {
		t.Error("AddTierCounts refused after a failed transaction")
	}
}

func testSetTierCountsIsCompareAndSet(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	var c boxoffice.TierCounts
	view(t, db, func(tx boxoffice.Tx) (err error) { c, err = tx.TierCounts(ctx, "gig", "ga", false); return err })
	update(t, db, func(tx boxoffice.Tx) error {
		ok, err := tx.SetTierCounts(ctx, "gig", "ga", c.Version, 3, 2)
		if err != nil || !ok {
			t.Fatalf("first set: %v %v", ok, err)
		}
		// The version moved on: a writer that read the old one loses.
		ok, err = tx.SetTierCounts(ctx, "gig", "ga", c.Version, 4, 2)
		if err != nil || ok {
			t.Fatalf("stale set: %v %v", ok, err)
		}
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || got.Held != 3 || got.Sold != 2 || got.Version != c.Version+1 {
			t.Fatalf("after set: %+v %v", got, err)
		}
		return nil
	})
	// Oversold counts are refused even with the right version.
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		_, err := tx.SetTierCounts(ctx, "gig", "ga", c.Version+1, 9, 2)
		return err
	})
	if err == nil {
		t.Fatal("held+sold > capacity was written")
	}
}

func testFenceRejectsOlderTokens(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	update(t, db, func(tx boxoffice.Tx) error {
		for _, c := range []struct {
			token int64
			ok    bool
		}{{5, true}, {5, true}, {7, true}, {6, false}, {1, false}, {8, true}} {
			ok, err := tx.Fence(ctx, "gig", "ga", c.token)
			if err != nil || ok != c.ok {
				t.Fatalf("fence %d: got %v %v, want %v", c.token, ok, err, c.ok)
			}
		}
		_, err := tx.Fence(ctx, "gig", "nope", 1)
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
}

func testSavepointUndoesOnlyItsPart(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	update(t, db, func(tx boxoffice.Tx) error {
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil {
			return err
		}
		if err := tx.Savepoint(ctx, "cmd_1"); err != nil {
			return err
		}
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 5, 0); err != nil {
			return err
		}
		if err := tx.RollbackTo(ctx, "cmd_1"); err != nil {
			return err
		}
		if err := tx.ReleaseSavepoint(ctx, "cmd_1"); err != nil {
			return err
		}
		if err := tx.Savepoint(ctx, "bad name;"); err == nil {
			t.Fatal("a savepoint name outside [a-z0-9_] was accepted")
		}
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 1 {
			t.Fatalf("held %d %v, want 1", c.Held, err)
		}
		return nil
	})
}

func testInventoryStreamExpectedVersion(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	ev := func(v int64) *boxoffice.InventoryEvent {
		return &boxoffice.InventoryEvent{ShowID: "gig", Version: v, TierID: "ga", Held: 1, HeldAfter: int(v), Capacity: 10, CreatedAt: at(0)}
	}
	update(t, db, func(tx boxoffice.Tx) error {
		for v := int64(1); v <= 3; v++ {
			if err := tx.AppendInventoryEvent(ctx, ev(v)); err != nil {
				return err
			}
		}
		wantCode(t, tx.AppendInventoryEvent(ctx, ev(3)), boxoffice.ECONFLICT)
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		head, err := tx.InventoryHead(ctx, "gig")
		if err != nil || head != 3 {
			t.Fatalf("head %d %v", head, err)
		}
		if h, _ := tx.InventoryHead(ctx, "other"); h != 0 {
			t.Fatalf("empty stream head %d", h)
		}
		evs, err := tx.InventoryEvents(ctx, "gig", 1, 10)
		if err != nil || len(evs) != 2 || evs[0].Version != 2 || evs[1].HeldAfter != 3 || !evs[0].CreatedAt.Equal(at(0)) {
			t.Fatalf("events after 1: %+v %v", evs, err)
		}
		return nil
	})
}

// testConcurrentAddTierCounts is the stampede in small: many goroutines race to hold one ticket
// each of a tier with fewer tickets than requests. Exactly capacity of them win and the tier ends
// full, never over.
func testConcurrentAddTierCounts(t *testing.T, db boxoffice.Store) {
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

// testConcurrentLiveOrders races inserts of a live order for one hold: the partial unique index
// lets exactly one through.
func testConcurrentLiveOrders(t *testing.T, db boxoffice.Store) {
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

// testConflictsKeepTheTxUsable: an ECONFLICT or ENOTFOUND is an answer, not a failure of the
// transaction. Callers carry on after one (re-read, or take another path), so every statement
// after it must still run and the transaction must still commit. (On PostgreSQL a failed
// statement would abort the transaction; the store must not let these fail at the SQL level.)
func testConflictsKeepTheTxUsable(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	key := &boxoffice.APIKey{ID: "key_1", Role: boxoffice.RoleClient, Hash: "hash_1", CreatedAt: base}
	ev := &boxoffice.InventoryEvent{ShowID: "gig", Version: 1, TierID: "ga", Held: 1, HeldAfter: 1, Capacity: 10, CreatedAt: base}
	failed := testOrder("ord_failed", "hld_1", boxoffice.OrderPaymentFailed)
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, testHold("hld_1", "a@x", base)); err != nil {
			return err
		}
		if err := tx.InsertOrder(ctx, testOrder("ord_1", "hld_1", boxoffice.OrderPendingPayment)); err != nil {
			return err
		}
		if err := tx.InsertOrder(ctx, failed); err != nil {
			return err
		}
		if err := tx.InsertIdemRecord(ctx, testRecord("idr_1", "k1")); err != nil {
			return err
		}
		if err := tx.AppendInventoryEvent(ctx, ev); err != nil {
			return err
		}
		if err := tx.InsertAPIKey(ctx, key); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_1", Type: boxoffice.EventHoldCreated, Subject: "hld_1", CreatedAt: base})
	})
	update(t, db, func(tx boxoffice.Tx) error {
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 2, 0); err != nil {
			return err
		}
		// Every kind of clash, one after the other in the same transaction.
		wantCode(t, tx.InsertHold(ctx, testHold("hld_1", "a@x", base)), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertOrder(ctx, testOrder("ord_1", "hld_9", boxoffice.OrderPendingPayment)), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertOrder(ctx, testOrder("ord_2", "hld_1", boxoffice.OrderConfirmed)), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertIdemRecord(ctx, testRecord("idr_2", "k1")), boxoffice.ECONFLICT)
		wantCode(t, tx.AppendInventoryEvent(ctx, ev), boxoffice.ECONFLICT)
		wantCode(t, tx.InsertAPIKey(ctx, &boxoffice.APIKey{ID: "key_2", Role: boxoffice.RoleAdmin, Hash: "hash_1"}), boxoffice.ECONFLICT)
		wantCode(t, tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_1", Subject: "hld_9", CreatedAt: base}), boxoffice.ECONFLICT)
		live := *failed
		live.Status = boxoffice.OrderConfirmed
		_, err := tx.UpdateOrder(ctx, &live, boxoffice.OrderPaymentFailed)
		wantCode(t, err, boxoffice.ECONFLICT)
		// And every kind of miss.
		_, err = tx.GetHold(ctx, "hld_nope")
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, err = tx.GetIdemRecord(ctx, "nope", "nope")
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, err = tx.LiveOrderForHold(ctx, "hld_nope")
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, err = tx.TierCounts(ctx, "gig", "nope", true)
		wantCode(t, err, boxoffice.ENOTFOUND)
		_, _, err = tx.AddTierCounts(ctx, "gig", "nope", 1, 0)
		wantCode(t, err, boxoffice.ENOTFOUND)
		wantCode(t, tx.UpdateIdemRecord(ctx, testRecord("idr_nope", "k9")), boxoffice.ENOTFOUND)
		// Refused counts are no failure either.
		if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 100, 0); ok || err != nil {
			t.Fatalf("AddTierCounts over capacity = %v, %v", ok, err)
		}
		if ok, err := tx.SetTierCounts(ctx, "gig", "ga", 0, 1, 0); ok || err != nil {
			t.Fatalf("SetTierCounts at a stale version = %v, %v", ok, err)
		}
		// The transaction goes on and commits.
		if err := tx.InsertHold(ctx, testHold("hld_2", "b@x", base)); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_2", Type: boxoffice.EventHoldCreated, Subject: "hld_2", CreatedAt: base})
	})
	view(t, db, func(tx boxoffice.Tx) error {
		if _, err := tx.GetHold(ctx, "hld_2"); err != nil {
			t.Errorf("the hold written after the conflicts: %v", err)
		}
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 2 {
			t.Errorf("counts = %+v, %v, want held 2", c, err)
		}
		o, err := tx.GetOrder(ctx, "ord_failed")
		if err != nil || o.Status != boxoffice.OrderPaymentFailed {
			t.Errorf("order whose update clashed = %+v, %v", o, err)
		}
		evs, err := tx.ListEvents(ctx, 0, 10)
		if err != nil || len(evs) != 2 || evs[1].ID != "evt_2" || evs[1].Seq != 1 {
			t.Errorf("events = %+v, %v", evs, err)
		}
		return nil
	})
}

// testConcurrentAppendEvent races appends to one subject: its events are numbered 1..n without
// a gap or a clash, and no append fails.
func testConcurrentAppendEvent(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	const (
		goroutines = 32
		perG       = 5
	)
	var (
		mu        sync.Mutex
		seqs      []int
		positions = map[int64]bool{}
		wg        sync.WaitGroup
	)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				e := &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, base), Type: boxoffice.EventOrderConfirmed,
					Subject: "ord_hot", CreatedAt: base, Data: json.RawMessage(`{}`)}
				// Another subject in the same transaction: appends to different subjects must not
				// wait for each other for long, nor deadlock.
				other := &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, base), Type: boxoffice.EventHoldCreated,
					Subject: fmt.Sprintf("hld_%d_%d", g, i), CreatedAt: base}
				err := db.Update(ctx, func(tx boxoffice.Tx) error {
					if err := tx.AppendEvent(ctx, other); err != nil {
						return err
					}
					return tx.AppendEvent(ctx, e)
				})
				if err != nil {
					t.Errorf("AppendEvent: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, e.Seq)
				if positions[e.Position] {
					t.Errorf("position %d given twice", e.Position)
				}
				positions[e.Position] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Ints(seqs)
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("seqs of one subject (sorted) = %v, want 1..%d", seqs, goroutines*perG)
		}
	}
	view(t, db, func(tx boxoffice.Tx) error {
		evs, err := tx.ListEvents(ctx, 0, 10*goroutines*perG)
		if err != nil {
			return err
		}
		if len(evs) != 2*goroutines*perG {
			t.Errorf("ListEvents returned %d events, want %d", len(evs), 2*goroutines*perG)
		}
		last := map[string]int{}
		for _, e := range evs {
			if e.Seq != last[e.Subject]+1 {
				t.Errorf("event %s of %s has seq %d after %d: the feed does not list a subject's events in order",
					e.ID, e.Subject, e.Seq, last[e.Subject])
			}
			last[e.Subject] = e.Seq
		}
		return nil
	})
}

// testConfirmVsExpire races confirms of holds against the expiry of the same holds, both taking
// their locks in the service's order (tier, then hold): every hold ends exactly once, either
// confirmed with one order or expired, the counts add up, and nothing fails — on a store with
// concurrent writers that means no deadlock.
func testConfirmVsExpire(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	const holds = 40
	putShow(t, db, testShow("gig", tier("ga", 2*holds)))
	update(t, db, func(tx boxoffice.Tx) error {
		for i := 0; i < holds; i++ {
			if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 2, 0); err != nil || !ok {
				return fmt.Errorf("take tickets: %v %w", ok, err)
			}
			if err := tx.InsertHold(ctx, testHold(fmt.Sprintf("hld_%02d", i), "a@x", base)); err != nil {
				return err
			}
		}
		return nil
	})
	var confirmed, expired atomic.Int64
	// end locks the tier, then the hold, and ends the hold if it is still active.
	end := func(tx boxoffice.Tx, id string, to boxoffice.HoldStatus) (bool, error) {
		if _, err := tx.TierCounts(ctx, "gig", "ga", true); err != nil {
			return false, err
		}
		h, err := tx.GetHold(ctx, id)
		if err != nil || h.Status != boxoffice.HoldActive {
			return false, err
		}
		if ok, err := tx.EndHold(ctx, id, to, base.Add(time.Minute)); err != nil || !ok {
			return false, fmt.Errorf("end active hold %s: %v %w", id, ok, err)
		}
		dSold := 0
		if to == boxoffice.HoldConfirmed {
			dSold = h.Quantity
			if err := tx.InsertOrder(ctx, testOrder("ord_"+id, id, boxoffice.OrderConfirmed)); err != nil {
				return false, err
			}
		}
		if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", -h.Quantity, dSold); err != nil || !ok {
			return false, fmt.Errorf("give back hold %s: %v %w", id, ok, err)
		}
		return true, tx.AppendEvent(ctx, &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, base),
			Type: "hold." + string(to), Subject: id, CreatedAt: base})
	}
	var wg sync.WaitGroup
	for i := 0; i < holds; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok bool
			err := db.Update(ctx, func(tx boxoffice.Tx) (err error) {
				ok, err = end(tx, fmt.Sprintf("hld_%02d", i), boxoffice.HoldConfirmed)
				return err
			})
			if err != nil {
				t.Errorf("confirm: %v", err)
			} else if ok {
				confirmed.Add(1)
			}
		}()
	}
	// Two expiry loops, as two servers would run, each ending a batch of due holds per transaction.
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := 0
				err := db.Update(ctx, func(tx boxoffice.Tx) error {
					n = 0
					due, err := tx.DueHolds(ctx, base.Add(time.Hour), 5)
					if err != nil {
						return err
					}
					for _, h := range due {
						ok, err := end(tx, h.ID, boxoffice.HoldExpired)
						if err != nil {
							return err
						}
						if ok {
							n++
						}
					}
					if len(due) == 0 {
						n = -1
					}
					return nil
				})
				if err != nil {
					t.Errorf("expire: %v", err)
					return
				}
				if n < 0 {
					return
				}
				expired.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	if got := confirmed.Load() + expired.Load(); got != holds {
		t.Errorf("%d confirmed + %d expired = %d, want every one of %d holds ended once", confirmed.Load(), expired.Load(), got, holds)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil {
			return err
		}
		if c.Held != 0 || c.Sold != 2*int(confirmed.Load()) {
			t.Errorf("counts %+v, want held 0 and sold %d", c, 2*confirmed.Load())
		}
		orders := 0
		if err := tx.ForEachOrder(ctx, func(o *boxoffice.Order) error { orders++; return nil }); err != nil {
			return err
		}
		if orders != int(confirmed.Load()) {
			t.Errorf("%d orders for %d confirmed holds", orders, confirmed.Load())
		}
		return tx.ForEachHold(ctx, func(h *boxoffice.Hold) error {
			if h.Status == boxoffice.HoldActive {
				t.Errorf("hold %s is still active", h.ID)
			}
			if h.Status == boxoffice.HoldConfirmed {
				if _, err := tx.LiveOrderForHold(ctx, h.ID); err != nil {
					t.Errorf("confirmed hold %s has no order: %v", h.ID, err)
				}
			}
			return nil
		})
	})
}
