package inventorytest

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"boxoffice"
	"boxoffice/sale"
)

// SeatedShow creates a show with one seated tier "a" of rows rows (A, B, …) of perRow seats
// each, in section S: seat ids S-A-1 … .
func (w *World) SeatedShow(id string, ttl, rows, perRow int) {
	m := &sale.SeatMapInput{Sections: []sale.SectionInput{{ID: "S"}}}
	for r := range rows {
		m.Sections[0].Rows = append(m.Sections[0].Rows, sale.RowInput{ID: string(rune('A' + r)), Seats: perRow})
	}
	in := sale.ShowInput{Name: "Show " + id, StartsAt: ptr(time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC)), HoldTTLSeconds: &ttl,
		Tiers: []sale.TierInput{{ID: "a", Name: "Seated", SeatMap: m, Price: &boxoffice.Money{Amount: 5000, Currency: "EUR"}}}}
	if _, _, err := w.Svc.PutShow(context.Background(), id, in); err != nil {
		w.T.Fatalf("put seated show %s: %v", id, err)
	}
}

func seatHold(w *World, key, show string, q int, seats []string) (*boxoffice.Response, error) {
	in := sale.HoldInput{ShowID: show, TierID: "a", Quantity: q, Seats: seats, Buyer: sale.BuyerInput{Email: "s@example.com"}}
	res, _, err := w.Svc.CreateHold(context.Background(), boxoffice.AdminPrincipal, Idem("hold "+show, key, in), in)
	return res, err
}

// ExerciseSeats runs the seated cases of the suite.
func ExerciseSeats(t *testing.T, h Harness) {
	t.Run("LastSeatsRace", func(t *testing.T) { lastSeatsRace(t, h) })
	t.Run("OverlappingSeatHolds", func(t *testing.T) { overlappingSeatHolds(t, h) })
	t.Run("SeatLifecycle", func(t *testing.T) { seatLifecycle(t, h) })
	t.Run("SeatedInterleaved", func(t *testing.T) { seatedInterleaved(t, h) })
	t.Run("SeatsLinearizable", func(t *testing.T) { seatsLinearizable(t, h) })
}

// lastSeatsRace: 1,000 concurrent best-available requests for one seat on the last 7 seats of a
// tier: exactly 7 get a seat, 7 different ones, and the rest are told sold_out.
func lastSeatsRace(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.SeatedShow("seats", 600, 2, 10)
	// 13 of the 20 seats go first, so the race is for the last 7.
	for i, q := range []int{10, 3} {
		if res, err := seatHold(w, fmt.Sprint("first", i), "seats", q, nil); err != nil || res.Status != 201 {
			t.Fatalf("first holds: %v %v", res, err)
		}
	}
	const buyers = 1000
	var mu sync.Mutex
	got := map[string]int{}
	var soldOut atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range buyers {
		wg.Go(func() {
			<-start
			res, err := seatHold(w, fmt.Sprintf("k%d", i), "seats", 1, nil)
			if err != nil {
				t.Errorf("hold %d: %v", i, err)
				return
			}
			switch res.Status {
			case 201:
				hd := Decode[boxoffice.Hold](t, res)
				if len(hd.Seats) != 1 {
					t.Errorf("hold %d has seats %v, want one", i, hd.Seats)
					return
				}
				mu.Lock()
				got[hd.Seats[0]]++
				mu.Unlock()
			case 409:
				if p := Decode[map[string]any](t, res); p["code"] != boxoffice.ESOLDOUT {
					t.Errorf("want sold_out, got %s", res.Body)
				}
				soldOut.Add(1)
			default:
				t.Errorf("hold %d: status %d %s", i, res.Status, res.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(got) != 7 || soldOut.Load() != buyers-7 {
		t.Fatalf("%d distinct seats held (%v) and %d sold_out; want 7 and %d", len(got), got, soldOut.Load(), buyers-7)
	}
	for seat, n := range got {
		if n != 1 {
			t.Errorf("seat %s was given %d times", seat, n)
		}
	}
	if c := w.Counts("seats", "a"); c.Held != 20 || c.Available != 0 {
		t.Fatalf("tier after the race: %+v", c)
	}
	w.Check()
}

// overlappingSeatHolds: holds naming two seats side by side, each pair overlapping its
// neighbours', all at once: the holds that succeed have disjoint seats (all or none of each), the
// others are told seat_unavailable, and the store's seats are exactly the successful holds'.
func overlappingSeatHolds(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.SeatedShow("overlap", 600, 1, 12)
	var mu sync.Mutex
	won := map[string][]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 60 {
		wg.Go(func() {
			<-start
			n := i%11 + 1
			want := []string{fmt.Sprintf("S-A-%d", n), fmt.Sprintf("S-A-%d", n+1)}
			res, err := seatHold(w, fmt.Sprintf("o%d", i), "overlap", 0, want)
			if err != nil {
				// A strategy whose reservations of one tier run at once may find a seat being
				// changed by another and say so with a retryable overload.
				if boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED {
					t.Errorf("hold %d: %v", i, err)
				}
				return
			}
			switch res.Status {
			case 201:
				hd := Decode[boxoffice.Hold](t, res)
				if !slices.Equal(hd.Seats, want) {
					t.Errorf("hold %d got seats %v, asked %v", i, hd.Seats, want)
				}
				mu.Lock()
				won[hd.ID] = hd.Seats
				mu.Unlock()
			case 409:
				if p := Decode[map[string]any](t, res); p["code"] != boxoffice.ESEATUNAVAILABLE && p["code"] != boxoffice.ESOLDOUT {
					t.Errorf("want seat_unavailable or sold_out, got %s", res.Body)
				}
			default:
				t.Errorf("hold %d: status %d %s", i, res.Status, res.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	owner := map[string]string{}
	for id, seats := range won {
		for _, s := range seats {
			if prev, ok := owner[s]; ok {
				t.Fatalf("seat %s is in holds %s and %s", s, prev, id)
			}
			owner[s] = id
		}
	}
	if len(won) == 0 {
		t.Fatal("no hold succeeded")
	}
	if c := w.Counts("overlap", "a"); c.Held != 2*len(won) {
		t.Fatalf("tier holds %d, the %d successful holds have %d seats", c.Held, len(won), 2*len(won))
	}
	w.Check()
}

// seatsOf returns the show's seats by id.
func seatsOf(t *testing.T, w *World, show string) map[string]boxoffice.Seat {
	t.Helper()
	body, _, err := w.Svc.ShowSeats(context.Background(), show)
	if err != nil {
		t.Fatal(err)
	}
	m := Decode[sale.SeatMap](t, &boxoffice.Response{Body: body})
	out := map[string]boxoffice.Seat{}
	for _, s := range m.Seats {
		out[s.ID] = s
	}
	return out
}

// seatLifecycle: named seats are held all or none, a released hold's seats come back, a bought
// order's tickets name its seats and they read sold, a cancel gives them back, an expired hold's
// come back, best available keeps a party side by side, and a seat map cannot change under holds.
func seatLifecycle(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	ctx := context.Background()
	w.SeatedShow("life", 60, 2, 6)
	state := func(id string) boxoffice.SeatState {
		t.Helper()
		// The map is cached for half a second; the test clock does not move it, so read afresh.
		w.Clock.Advance(time.Second)
		return seatsOf(t, w, "life")[id].State
	}
	res, err := seatHold(w, "h1", "life", 0, []string{"S-A-1", "S-A-2"})
	if err != nil || res.Status != 201 {
		t.Fatalf("hold of two free seats: %v %v", res, err)
	}
	h1 := Decode[boxoffice.Hold](t, res)
	if h1.Quantity != 2 || !slices.Equal(h1.Seats, []string{"S-A-1", "S-A-2"}) || state("S-A-1") != boxoffice.SeatHeld {
		t.Fatalf("hold %+v, seat state %s", h1, state("S-A-1"))
	}
	// All or none: one seat taken makes the whole hold fail and take nothing.
	res, err = seatHold(w, "h2", "life", 0, []string{"S-A-2", "S-A-3"})
	if err != nil || res.Status != 409 || Decode[map[string]any](t, res)["code"] != boxoffice.ESEATUNAVAILABLE {
		t.Fatalf("hold over a taken seat: %v %v", res, err)
	}
	if state("S-A-3") != boxoffice.SeatAvailable {
		t.Fatal("a refused hold took a seat")
	}
	if res, err := seatHold(w, "h3", "life", 0, []string{"S-Z-1"}); err != nil || res.Status != 400 ||
		Decode[map[string]any](t, res)["code"] != boxoffice.EVALIDATION {
		t.Fatalf("hold of an unknown seat: %v %v", res, err)
	}
	got, err := w.Svc.GetHold(ctx, boxoffice.AdminPrincipal, h1.ID)
	if err != nil || !slices.Equal(got.Seats, h1.Seats) {
		t.Fatalf("GET hold = %+v, %v", got, err)
	}
	if err := w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, h1.ID); err != nil {
		t.Fatal(err)
	}
	if state("S-A-1") != boxoffice.SeatAvailable || state("S-A-2") != boxoffice.SeatAvailable {
		t.Fatal("released seats are not free")
	}

	// Bought: tickets name the seats, which read sold; a cancel frees them.
	in := sale.PurchaseInput{ShowID: "life", TierID: "a", Seats: []string{"S-B-3", "S-B-4"}, Buyer: sale.BuyerInput{Email: "p@example.com"},
		Payment: sale.PaymentInput{Token: "tok_ok"}}
	res, _, err = w.Svc.Purchase(ctx, boxoffice.AdminPrincipal, Idem("purchase", "p1", in), in)
	if err != nil || res.Status != 201 {
		t.Fatalf("purchase of named seats: %v %v", res, err)
	}
	o := Decode[boxoffice.Order](t, res)
	var ticketSeats []string
	for _, tk := range o.Tickets {
		ticketSeats = append(ticketSeats, tk.Seat)
	}
	if !slices.Equal(ticketSeats, []string{"S-B-3", "S-B-4"}) || state("S-B-3") != boxoffice.SeatSold {
		t.Fatalf("order tickets %+v, seat state %s", o.Tickets, state("S-B-3"))
	}
	if _, _, err := w.Svc.CancelOrder(ctx, boxoffice.AdminPrincipal, Idem("cancel", "c1", o.ID), o.ID); err != nil {
		t.Fatal(err)
	}
	if state("S-B-3") != boxoffice.SeatAvailable {
		t.Fatal("a cancelled order's seats are not free")
	}

	// Best available: a party of 3 is seated side by side in the best row that has room.
	if res, err := seatHold(w, "h4", "life", 0, []string{"S-A-2", "S-A-5"}); err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	res, err = seatHold(w, "h5", "life", 3, nil)
	if err != nil || res.Status != 201 {
		t.Fatalf("best available 3: %v %v", res, err)
	}
	// Row A has runs 1, 3-4, 6: no three together; row B is free.
	if best := Decode[boxoffice.Hold](t, res).Seats; !slices.Equal(best, []string{"S-B-1", "S-B-2", "S-B-3"}) {
		t.Fatalf("best available 3 = %v, want S-B-1..3", best)
	}
	// A seat map cannot change while seats are held; the same map may be PUT again.
	w.SeatedShow("life", 60, 2, 6)
	m := &sale.SeatMapInput{Sections: []sale.SectionInput{{ID: "S", Rows: []sale.RowInput{{ID: "A", Seats: 8}}}}}
	_, _, err = w.Svc.PutShow(ctx, "life", sale.ShowInput{Name: "x", StartsAt: ptr(time.Now()), Tiers: []sale.TierInput{
		{ID: "a", Name: "Seated", SeatMap: m, Price: &boxoffice.Money{Amount: 1, Currency: "EUR"}}}})
	if boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT {
		t.Fatalf("changing the seat map under holds: %v", err)
	}
	// Expiry gives every seat back.
	w.Clock.Advance(time.Hour)
	if _, err := w.Svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	for id, s := range seatsOf(t, w, "life") {
		if s.State != boxoffice.SeatAvailable {
			t.Errorf("seat %s is %s after every hold expired", id, s.State)
		}
	}
	w.Check()
}

// seatedInterleaved: workers hold named seats or the best available, confirm, decline, release,
// buy, cancel and let holds expire on a seated tier while the clock moves; after every step the
// store satisfies every guarantee, seats included (Verify: each standing hold has its seats, no
// seat is with an ended one, the tier's counts are its seats').
func seatedInterleaved(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.SeatedShow("mixs", 30, 3, 5)
	ctx := context.Background()
	var wg sync.WaitGroup
	for worker := range 5 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(worker), 11))
			var m mix
			for i := range 30 {
				key := fmt.Sprintf("w%d-%d", worker, i)
				var named []string
				if r.IntN(2) == 0 {
					for range 1 + r.IntN(2) {
						s := fmt.Sprintf("S-%c-%d", 'A'+r.IntN(3), 1+r.IntN(5))
						if !slices.Contains(named, s) {
							named = append(named, s)
						}
					}
				}
				q := 1 + r.IntN(3)
				if len(named) > 0 {
					q = 0
				}
				m.step(w, r, key, r.IntN(10),
					func() (*boxoffice.Response, error) { return seatHold(w, key, "mixs", q, named) },
					func() (*boxoffice.Response, error) {
						in := sale.PurchaseInput{ShowID: "mixs", TierID: "a", Quantity: min(q, 2), Seats: named,
							Buyer: sale.BuyerInput{Email: "p@example.com"}, Payment: sale.PaymentInput{Token: "tok_ok"}}
						res, _, err := w.Svc.Purchase(ctx, boxoffice.AdminPrincipal, Idem("purchase", key, in), in)
						return res, err
					})
				if !w.Check() {
					return
				}
			}
		})
	}
	wg.Wait()
	w.WaitSettled()
	w.Clock.Advance(time.Hour)
	if _, err := w.Svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if c := w.Counts("mixs", "a"); c.Held != 0 {
		t.Errorf("the tier still holds %d after every hold expired", c.Held)
	}
	w.Check()
	w.checkLedger()
}

// seatInput is one operation on a seated tier: a hold of the seats Named (a bitmask over the
// tier's seats by rank), a best-available hold of Quantity, a release of a hold's seats Release,
// or a read of the taken seats.
type seatInput struct {
	Named    uint64
	Quantity int
	Release  uint64
	Read     bool
}

// seatOutput is what it answered: OK with the seats it got, Unavailable (a named seat was taken),
// SoldOut (too few free seats), or the taken seats a read saw.
type seatOutput struct {
	OK, Unavailable, SoldOut bool
	Seats                    uint64
}

// seatModel is the sequential specification of a seated tier: the set of its taken seats. A hold
// takes free seats only, all it names or the number it asks for; it is refused only when a named
// seat is taken, or when fewer seats are free than it names or asks for (sold_out, answered from
// the tier's counts before any seat is looked at); a release frees its hold's seats.
func seatModel(all uint64) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return uint64(0) },
		Step: func(state, input, output any) (bool, any) {
			taken, in, out := state.(uint64), input.(seatInput), output.(seatOutput)
			switch {
			case in.Read:
				return out.Seats == taken, taken
			case in.Release != 0:
				return in.Release&taken == in.Release, taken &^ in.Release
			case out.OK && in.Named != 0:
				return out.Seats == in.Named && in.Named&taken == 0, taken | in.Named
			case out.OK:
				return bits.OnesCount64(out.Seats) == in.Quantity && out.Seats&taken == 0 && out.Seats&^all == 0, taken | out.Seats
			case out.Unavailable:
				return in.Named != 0 && in.Named&taken != 0, taken
			case out.SoldOut:
				// Also for named seats: fewer seats free than named means some named are taken.
				want := in.Quantity
				if in.Named != 0 {
					want = bits.OnesCount64(in.Named)
				}
				return bits.OnesCount64(all&^taken) < want, taken
			default: // refused for another reason (an overload): nothing changed
				return true, taken
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(seatInput), output.(seatOutput)
			return fmt.Sprintf("%+v → %+v", in, out)
		},
	}
}

// seatsLinearizable records a concurrent history of named and best-available holds, releases and
// reads of the taken seats, and checks it with porcupine against the set-of-seats model: whatever
// the strategy does inside, from outside a seated tier behaves like one set of taken seats.
func seatsLinearizable(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	const rows, perRow = 2, 6
	w.SeatedShow("lins", 600, rows, perRow)
	ctx := context.Background()
	bit := map[string]uint64{}
	var all uint64
	for r := range rows {
		for n := range perRow {
			b := uint64(1) << (r*perRow + n)
			bit[fmt.Sprintf("S-%c-%d", 'A'+r, n+1)] = b
			all |= b
		}
	}
	mask := func(ids []string) (m uint64) {
		for _, id := range ids {
			m |= bit[id]
		}
		return m
	}
	start := time.Now()
	var mu sync.Mutex
	var ops []porcupine.Operation
	record := func(in seatInput, do func() seatOutput) seatOutput {
		call := int64(time.Since(start))
		out := do()
		ret := int64(time.Since(start))
		mu.Lock()
		ops = append(ops, porcupine.Operation{Input: in, Call: call, Output: out, Return: ret})
		mu.Unlock()
		return out
	}
	holdOut := func(res *boxoffice.Response, err error) seatOutput {
		if err != nil {
			return seatOutput{}
		}
		switch res.Status {
		case 201:
			return seatOutput{OK: true, Seats: mask(Decode[boxoffice.Hold](t, res).Seats)}
		case 409:
			switch Decode[map[string]any](t, res)["code"] {
			case boxoffice.ESEATUNAVAILABLE:
				return seatOutput{Unavailable: true}
			case boxoffice.ESOLDOUT:
				return seatOutput{SoldOut: true}
			}
		}
		t.Errorf("hold: %d %s", res.Status, res.Body)
		return seatOutput{}
	}
	var wg sync.WaitGroup
	for worker := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(worker), 99))
			type held struct {
				id    string
				seats uint64
			}
			var mine []held
			for i := range 30 {
				key := fmt.Sprintf("ls%d-%d", worker, i)
				switch op := r.IntN(20); {
				case op < 7:
					var named []string
					for range 1 + r.IntN(2) {
						s := fmt.Sprintf("S-%c-%d", 'A'+r.IntN(rows), 1+r.IntN(perRow))
						if !slices.Contains(named, s) {
							named = append(named, s)
						}
					}
					var res *boxoffice.Response
					out := record(seatInput{Named: mask(named)}, func() seatOutput {
						var err error
						res, err = seatHold(w, key, "lins", 0, named)
						return holdOut(res, err)
					})
					if out.OK {
						mine = append(mine, held{Decode[boxoffice.Hold](t, res).ID, out.Seats})
					}
				case op < 12:
					q := 1 + r.IntN(3)
					var res *boxoffice.Response
					out := record(seatInput{Quantity: q}, func() seatOutput {
						var err error
						res, err = seatHold(w, key, "lins", q, nil)
						return holdOut(res, err)
					})
					if out.OK {
						mine = append(mine, held{Decode[boxoffice.Hold](t, res).ID, out.Seats})
					}
				case op < 17 && len(mine) > 0:
					k := r.IntN(len(mine))
					hd := mine[k]
					mine = slices.Delete(mine, k, k+1)
					record(seatInput{Release: hd.seats}, func() seatOutput {
						if err := w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, hd.id); err != nil {
							t.Errorf("release %s: %v", hd.id, err)
						}
						return seatOutput{OK: true}
					})
				default:
					record(seatInput{Read: true}, func() seatOutput {
						var taken uint64
						err := w.Store.View(ctx, func(tx boxoffice.Tx) error {
							seats, err := tx.Seats(ctx, "lins", "a")
							for _, s := range seats {
								if s.State != boxoffice.SeatAvailable {
									taken |= bit[s.ID]
								}
							}
							return err
						})
						if err != nil {
							t.Errorf("read seats: %v", err)
						}
						return seatOutput{Seats: taken}
					})
				}
			}
		})
	}
	wg.Wait()
	if len(ops) < 100 {
		t.Fatalf("only %d operations recorded", len(ops))
	}
	model := seatModel(all)
	res, info := porcupine.CheckOperationsVerbose(model, ops, 30*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/seats.html"
		_ = porcupine.VisualizePath(model, info, path)
		t.Fatalf("history of %d seat operations is %s (not linearizable); visualization: %s", len(ops), res, path)
	}
	w.Check()
}
