package storetest

import (
	"context"
	"testing"
	"time"

	"boxoffice"
)

// testSpeculative checks UpdateSpeculative on a store that offers it: guesses that hold commit
// as Update would; a wrong guess voids the run, fn runs again with real answers, and only what
// that run decided commits; a savepoint still undoes only its part.
func testSpeculative(t *testing.T, db boxoffice.Store) {
	sp, ok := db.(guarded).Store.(boxoffice.SpeculativeStore)
	if !ok {
		t.Skip("the store does not offer UpdateSpeculative")
	}
	ctx := context.Background()
	speculate := func(fn func(tx boxoffice.Tx) error) (runs int, err error) {
		err = sp.UpdateSpeculative(ctx, guard(func(tx boxoffice.Tx) error {
			runs++
			return fn(tx)
		}))
		return runs, err
	}
	exists := func(id string) bool {
		t.Helper()
		found := false
		view(t, db, func(tx boxoffice.Tx) error {
			_, err := tx.GetHold(ctx, id)
			found = err == nil
			if err != nil && boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
				return err
			}
			return nil
		})
		return found
	}
	putShow(t, db, testShow("gig", tier("ga", 10)))

	// Guesses that hold: one run, everything committed, the event's position known afterwards.
	ev := &boxoffice.Event{ID: "evt_1", Type: boxoffice.EventHoldCreated, Subject: "hld_1", Data: []byte(`{}`), CreatedAt: base}
	runs, err := speculate(func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, testHold("hld_1", "ann@x", base.Add(time.Hour))); err != nil {
			return err
		}
		if err := tx.AppendEvent(ctx, ev); err != nil {
			return err
		}
		return tx.InsertOrder(ctx, testOrder("ord_1", "hld_1", boxoffice.OrderPendingPayment))
	})
	if err != nil || runs != 1 {
		t.Fatalf("speculative inserts: %d runs, %v; want 1 run, nil", runs, err)
	}
	if ev.Position <= 0 || ev.Seq != 1 {
		t.Errorf("event position %d seq %d after a speculative append; want > 0 and 1", ev.Position, ev.Seq)
	}
	if !exists("hld_1") {
		t.Fatal("a speculative insert did not commit")
	}

	// A conflict is found where the statement runs: the run is void, the next one answers
	// ECONFLICT, and nothing of either commits.
	runs, err = speculate(func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, testHold("hld_2", "bob@x", base.Add(time.Hour))); err != nil {
			return err
		}
		return tx.InsertHold(ctx, testHold("hld_1", "ann@x", base.Add(time.Hour)))
	})
	wantCode(t, err, boxoffice.ECONFLICT)
	if runs != 2 {
		t.Errorf("a wrong guess ran fn %d times; want 2", runs)
	}
	if exists("hld_2") {
		t.Error("a write of a void run committed")
	}

	// A wrong guess that fn decided on: only the decision of the run with real answers commits.
	update(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.EndHold(ctx, "hld_1", boxoffice.HoldReleased, base)
		return err
	})
	runs, err = speculate(func(tx boxoffice.Tx) error {
		ended, err := tx.EndHold(ctx, "hld_1", boxoffice.HoldConfirmed, base)
		if err != nil {
			return err
		}
		id := "hld_if_ended"
		if !ended {
			id = "hld_if_not"
		}
		return tx.InsertHold(ctx, testHold(id, "cy@x", base.Add(time.Hour)))
	})
	if err != nil || runs != 2 {
		t.Fatalf("EndHold of an ended hold: %d runs, %v; want 2 runs, nil", runs, err)
	}
	if exists("hld_if_ended") || !exists("hld_if_not") {
		t.Error("the decision taken on a wrong guess committed")
	}

	// Savepoints: a rolled-back part is dropped, the rest commits, in one run when the part was
	// never sent and in two when a read had sent it.
	for _, readInside := range []bool{false, true} {
		a, b := "hld_sp_a", "hld_sp_b"
		if readInside {
			a, b = "hld_sp_c", "hld_sp_d"
		}
		runs, err = speculate(func(tx boxoffice.Tx) error {
			if err := tx.Savepoint(ctx, "cmd_1"); err != nil {
				return err
			}
			if err := tx.InsertHold(ctx, testHold(a, "di@x", base.Add(time.Hour))); err != nil {
				return err
			}
			if readInside {
				if _, err := tx.GetHold(ctx, a); err != nil {
					return err
				}
			}
			if err := tx.RollbackTo(ctx, "cmd_1"); err != nil {
				return err
			}
			if err := tx.ReleaseSavepoint(ctx, "cmd_1"); err != nil {
				return err
			}
			return tx.InsertHold(ctx, testHold(b, "di@x", base.Add(time.Hour)))
		})
		if err != nil {
			t.Fatalf("savepoint (read inside %v): %v", readInside, err)
		}
		if want := map[bool]int{false: 1, true: 2}[readInside]; runs != want {
			t.Errorf("savepoint (read inside %v): %d runs, want %d", readInside, runs, want)
		}
		if exists(a) || !exists(b) {
			t.Errorf("savepoint (read inside %v): rolled-back %s exists %v, kept %s exists %v; want false, true",
				readInside, a, exists(a), b, exists(b))
		}
	}
}
