package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"boxoffice"
)

// seatRow is row's seats 1..n in section sec, ranked after rank0.
func seatRow(sec, row string, n, rank0 int) []boxoffice.Seat {
	var seats []boxoffice.Seat
	for i := range n {
		label := fmt.Sprint(i + 1)
		seats = append(seats, boxoffice.Seat{ID: boxoffice.SeatID(sec, row, label), Section: sec, Row: row, Label: label,
			Rank: rank0 + i, Pos: i})
	}
	return seats
}

func seatIDs(seats []boxoffice.Seat) []string {
	ids := make([]string, len(seats))
	for i, s := range seats {
		ids[i] = s.ID
	}
	return ids
}

// testSeats: a seat map round trip with flags and the tier marked seated; claims that take only
// free seats (all of a hold's or, as the caller then aborts, fewer); states that follow the
// hold (held, sold once confirmed); freeing; the best available first; and a map replaced by none.
func testSeats(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 6), tier("floor", 10)))
	seats := append(seatRow("A", "1", 3, 0), seatRow("A", "2", 3, 3)...)
	seats[0].Accessible, seats[5].RestrictedView = true, true
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutSeats(ctx, "gig", "ga", seats) })
	view(t, db, func(tx boxoffice.Tx) error {
		s, err := tx.GetShow(ctx, "gig")
		if err != nil || !s.Tier("ga").Seated || s.Tier("floor").Seated {
			t.Errorf("tiers after PutSeats: %+v, %v; want ga seated only", s, err)
		}
		got, err := tx.Seats(ctx, "gig", "ga")
		if err != nil || len(got) != 6 || got[0].ID != "A-1-1" || !got[0].Accessible || !got[5].RestrictedView ||
			got[4].Row != "2" || got[4].Pos != 1 || got[4].Rank != 4 || got[2].State != boxoffice.SeatAvailable || got[2].TierID != "ga" {
			t.Errorf("Seats = %+v, %v", got, err)
		}
		return nil
	})
	h1 := testHold("hld_1", "ann@x", base.Add(time.Hour))
	h1.Quantity = 2
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, h1); err != nil {
			return err
		}
		n, err := tx.ClaimSeats(ctx, "gig", "ga", "hld_1", []string{"A-1-2", "A-1-3"})
		if err != nil || n != 2 {
			t.Errorf("ClaimSeats of two free seats = %d, %v", n, err)
		}
		return err
	})
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		// A taken seat, a seat of another tier's name and an unknown one are not given.
		n, err := tx.ClaimSeats(ctx, "gig", "ga", "hld_2", []string{"A-1-3", "A-2-1", "Z-9-9"})
		if err != nil || n != 1 {
			t.Errorf("ClaimSeats of one free, one taken, one unknown = %d, %v; want 1", n, err)
		}
		if n, err := tx.ClaimSeats(ctx, "gig", "floor", "hld_2", []string{"A-2-2"}); err != nil || n != 0 {
			t.Errorf("ClaimSeats of a seat of another tier = %d, %v; want 0", n, err)
		}
		return errAbort // the caller aborts a partial claim
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("aborted claim: %v", err)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		free, err := tx.AvailableSeats(ctx, "gig", "ga", 10)
		if got := seatIDs(free); err != nil || !slices.Equal(got, []string{"A-1-1", "A-2-1", "A-2-2", "A-2-3"}) {
			t.Errorf("AvailableSeats = %v, %v", got, err)
		}
		if two, err := tx.AvailableSeats(ctx, "gig", "ga", 2); err != nil || len(two) != 2 || two[1].ID != "A-2-1" {
			t.Errorf("AvailableSeats(2) = %v, %v", seatIDs(two), err)
		}
		of, err := tx.SeatsOfHold(ctx, "hld_1")
		if err != nil || !slices.Equal(seatIDs(of), []string{"A-1-2", "A-1-3"}) || of[0].State != boxoffice.SeatHeld {
			t.Errorf("SeatsOfHold = %+v, %v", of, err)
		}
		by, err := tx.SeatsByID(ctx, "gig", "ga", []string{"A-1-2", "A-2-1", "Z-9-9"})
		states := map[string]boxoffice.SeatState{}
		for _, st := range by {
			states[st.ID] = st.State
		}
		if err != nil || len(by) != 2 || states["A-1-2"] != boxoffice.SeatHeld || states["A-2-1"] != boxoffice.SeatAvailable {
			t.Errorf("SeatsByID(A-1-2, A-2-1, Z-9-9) = %+v, %v; want the two that exist, held and free", by, err)
		}
		if other, err := tx.SeatsByID(ctx, "gig", "floor", []string{"A-1-2"}); err != nil || len(other) != 0 {
			t.Errorf("SeatsByID of another tier = %+v, %v; want none", other, err)
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.EndHold(ctx, "hld_1", boxoffice.HoldConfirmed, base)
		return err
	})
	view(t, db, func(tx boxoffice.Tx) error {
		all, err := tx.Seats(ctx, "gig", "")
		if err != nil || len(all) != 6 {
			t.Fatalf("Seats of the show = %d, %v", len(all), err)
		}
		states := map[string]boxoffice.SeatState{}
		for _, s := range all {
			states[s.ID] = s.State
		}
		if states["A-1-2"] != boxoffice.SeatSold || states["A-1-3"] != boxoffice.SeatSold || states["A-1-1"] != boxoffice.SeatAvailable {
			t.Errorf("states after confirming the hold: %v", states)
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		n, err := tx.FreeSeats(ctx, "hld_1")
		if err != nil || n != 2 {
			t.Errorf("FreeSeats = %d, %v", n, err)
		}
		if n, err := tx.FreeSeats(ctx, "hld_1"); err != nil || n != 0 {
			t.Errorf("FreeSeats again = %d, %v", n, err)
		}
		return err
	})
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutSeats(ctx, "gig", "ga", nil) })
	view(t, db, func(tx boxoffice.Tx) error {
		s, err := tx.GetShow(ctx, "gig")
		all, err2 := tx.Seats(ctx, "gig", "")
		if err != nil || err2 != nil || s.Tier("ga").Seated || len(all) != 0 {
			t.Errorf("after PutSeats(nil): seated %v, %d seats, %v %v", s.Tier("ga").Seated, len(all), err, err2)
		}
		return nil
	})
}

var errAbort = errors.New("abort")

// testConcurrentClaimSeats: many transactions claim overlapping seats at once; each seat ends in
// exactly one claim, and a transaction that got fewer than it asked for and aborted left none.
func testConcurrentClaimSeats(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 10)))
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutSeats(ctx, "gig", "ga", seatRow("A", "1", 10, 0)) })
	const claimers = 16
	var wg sync.WaitGroup
	won := make([][]string, claimers)
	for i := range claimers {
		wg.Go(func() {
			// Claimer i wants seats i%9+1 and i%9+2: every pair overlaps its neighbours'.
			want := []string{boxoffice.SeatID("A", "1", fmt.Sprint(i%9+1)), boxoffice.SeatID("A", "1", fmt.Sprint(i%9+2))}
			for range 20 {
				err := db.Update(ctx, func(tx boxoffice.Tx) error {
					n, err := tx.ClaimSeats(ctx, "gig", "ga", fmt.Sprintf("hld_%d", i), want)
					if err != nil {
						return err
					}
					if n != len(want) {
						return errAbort
					}
					return nil
				})
				if err == nil {
					won[i] = want
					return
				}
				if errors.Is(err, errAbort) {
					return
				}
				if c := boxoffice.ErrorCode(err); c != boxoffice.ECONFLICT && c != boxoffice.EOVERLOADED {
					t.Errorf("claimer %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	owner := map[string]string{}
	for i, seats := range won {
		for _, s := range seats {
			if prev, ok := owner[s]; ok {
				t.Fatalf("seat %s claimed by hld_%d and %s", s, i, prev)
			}
			owner[s] = fmt.Sprintf("hld_%d", i)
		}
	}
	view(t, db, func(tx boxoffice.Tx) error {
		all, err := tx.Seats(ctx, "gig", "ga")
		if err != nil {
			return err
		}
		for _, s := range all {
			if s.HoldID != owner[s.ID] {
				t.Errorf("seat %s is with %q in the store, %q by the claims", s.ID, s.HoldID, owner[s.ID])
			}
		}
		return nil
	})
	if len(owner) == 0 {
		t.Fatal("no claim succeeded")
	}
}
