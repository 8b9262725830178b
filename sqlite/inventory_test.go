package sqlite

import (
	"context"
	"testing"

	"boxoffice"
)

func TestSetTierCountsIsCompareAndSet(t *testing.T) {
	db, _ := openTest(t)
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

func TestFenceRejectsOlderTokens(t *testing.T) {
	db, _ := openTest(t)
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

func TestSavepointUndoesOnlyItsPart(t *testing.T) {
	db, _ := openTest(t)
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

func TestInventoryStreamExpectedVersion(t *testing.T) {
	db, _ := openTest(t)
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
