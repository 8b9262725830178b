package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"boxoffice"
)

// speculator returns a function that runs fn in db's UpdateSpeculative and counts its runs, or
// skips the test when the store does not offer it.
func speculator(t *testing.T, db boxoffice.Store) func(fn func(tx boxoffice.Tx) error) (int, error) {
	t.Helper()
	sp, ok := db.(guarded).Store.(boxoffice.SpeculativeStore)
	if !ok {
		t.Skip("the store does not offer UpdateSpeculative")
	}
	return func(fn func(tx boxoffice.Tx) error) (runs int, err error) {
		err = sp.UpdateSpeculative(context.Background(), guard(func(tx boxoffice.Tx) error {
			runs++
			return fn(tx)
		}))
		return runs, err
	}
}

// testSpeculative checks UpdateSpeculative on a store that offers it: guesses that hold commit
// as Update would; a wrong guess voids the run, fn runs again with real answers, and only what
// that run decided commits; a savepoint still undoes only its part.
func testSpeculative(t *testing.T, db boxoffice.Store) {
	speculate := speculator(t, db)
	ctx := context.Background()
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

	// Many writes of a kind in one run (which a store may send as one statement each kind):
	// all commit, and the events are numbered in the order they were appended, each after the
	// last of its subject.
	var evs []*boxoffice.Event
	runs, err = speculate(func(tx boxoffice.Tx) error {
		evs = evs[:0]
		for i := range 5 {
			id := fmt.Sprintf("hld_many_%d", i)
			if err := tx.InsertHold(ctx, testHold(id, "many@x", base.Add(time.Hour))); err != nil {
				return err
			}
			o := testOrder(fmt.Sprintf("ord_many_%d", i), id, boxoffice.OrderPendingPayment)
			o.Tickets = []boxoffice.Ticket{{Code: fmt.Sprintf("T-%d", i)}}
			if err := tx.InsertOrder(ctx, o); err != nil {
				return err
			}
			rec := testRecord(fmt.Sprintf("idem_many_%d", i), fmt.Sprintf("many-%d", i))
			if i%2 == 0 {
				rec.Response = &boxoffice.Response{Status: 201, Body: []byte(`{"n":1}`), Location: "/v1/orders/x"}
			}
			if err := tx.InsertIdemRecord(ctx, rec); err != nil {
				return err
			}
			subject := id
			if i == 4 {
				subject = "hld_1" // has an event already
			}
			e := &boxoffice.Event{ID: fmt.Sprintf("evt_many_%d", i), Type: boxoffice.EventHoldCreated, Subject: subject, Data: []byte(`{}`), CreatedAt: base}
			if err := tx.AppendEvent(ctx, e); err != nil {
				return err
			}
			evs = append(evs, e)
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("many writes of a kind: %d runs, %v; want 1 run, nil", runs, err)
	}
	for i, e := range evs {
		wantSeq := 1
		if i == 4 {
			wantSeq = 2
		}
		if e.Seq != wantSeq || (i > 0 && e.Position <= evs[i-1].Position) {
			t.Errorf("event %d: position %d seq %d; want after %d, seq %d", i, e.Position, e.Seq, evs[max(i-1, 0)].Position, wantSeq)
		}
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for i := range 5 {
			o, err := tx.GetOrder(ctx, fmt.Sprintf("ord_many_%d", i))
			if err != nil {
				return err
			}
			if len(o.Tickets) != 1 || o.Tickets[0].Code != fmt.Sprintf("T-%d", i) {
				t.Errorf("order %d tickets %+v", i, o.Tickets)
			}
			r, err := tx.GetIdemRecord(ctx, "key_1 POST /v1/purchases", fmt.Sprintf("many-%d", i))
			if err != nil {
				return err
			}
			if (i%2 == 0) != (r.Response != nil) || (r.Response != nil && (r.Response.Status != 201 || r.Response.Location != "/v1/orders/x")) {
				t.Errorf("record %d response %+v", i, r.Response)
			}
		}
		got, err := tx.ListEvents(ctx, evs[0].Position-1, 10)
		if err != nil {
			return err
		}
		if len(got) != 5 || got[4].ID != "evt_many_4" || got[4].Seq != 2 {
			t.Errorf("events after a run of many: %+v", got)
		}
		return nil
	})

	testSpeculativeSettles(t, db, speculate)

	// One clash among many voids the run; the next answers ECONFLICT and nothing commits.
	// Two events of one subject in a run are appended in turn.
	runs, err = speculate(func(tx boxoffice.Tx) error {
		for i := range 3 {
			if err := tx.InsertHold(ctx, testHold(fmt.Sprintf("hld_clash_%d", i), "c@x", base.Add(time.Hour))); err != nil {
				return err
			}
		}
		return tx.InsertHold(ctx, testHold("hld_many_2", "c@x", base.Add(time.Hour)))
	})
	wantCode(t, err, boxoffice.ECONFLICT)
	if runs != 2 || exists("hld_clash_0") {
		t.Errorf("a clash among many: %d runs, first hold committed %v; want 2 runs, false", runs, exists("hld_clash_0"))
	}
	var pair [2]*boxoffice.Event
	_, err = speculate(func(tx boxoffice.Tx) error {
		for i := range pair {
			pair[i] = &boxoffice.Event{ID: fmt.Sprintf("evt_pair_%d", i), Type: boxoffice.EventHoldCreated, Subject: "hld_pair", Data: []byte(`{}`), CreatedAt: base}
			if err := tx.AppendEvent(ctx, pair[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || pair[0].Seq != 1 || pair[1].Seq != 2 {
		t.Errorf("two events of one subject: seqs %d, %d, %v; want 1, 2", pair[0].Seq, pair[1].Seq, err)
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

// testSpeculativeConcurrent runs many UpdateSpeculative calls at once, which a store may merge
// into one transaction: each call still gets its own outcome and only its own writes — a clash
// is ECONFLICT for that call alone, a refusal made before any write changes nothing, a refusal
// after writes undoes them — and every other call commits.
func testSpeculativeConcurrent(t *testing.T, db boxoffice.Store) {
	sp, ok := db.(guarded).Store.(boxoffice.SpeculativeStore)
	if !ok {
		t.Skip("the store does not offer UpdateSpeculative")
	}
	ctx := context.Background()
	putShow(t, db, testShow("gig", tier("ga", 1000)))
	update(t, db, func(tx boxoffice.Tx) error {
		return tx.InsertHold(ctx, testHold("hld_taken", "x@x", base.Add(time.Hour)))
	})
	errRefused := errors.New("refused by fn")
	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	// Rounds 0 and 1 have no clash, so a merged transaction commits; round 2 has clashes, which
	// void a merged transaction and have every call run alone.
	for round := range 3 {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("hld_c%d_%d", round, i)
				errs[i] = sp.UpdateSpeculative(ctx, guard(func(tx boxoffice.Tx) error {
					switch i % 10 {
					case 3: // refused before writing
						return errRefused
					case 7: // clashes in round 2
						if round < 2 {
							break
						}
						if err := tx.InsertHold(ctx, testHold(id, "c@x", base.Add(time.Hour))); err != nil {
							return err
						}
						return tx.InsertHold(ctx, testHold("hld_taken", "c@x", base.Add(time.Hour)))
					case 9: // refused after writing
						if err := tx.InsertHold(ctx, testHold(id, "c@x", base.Add(time.Hour))); err != nil {
							return err
						}
						return errRefused
					}
					if err := tx.InsertHold(ctx, testHold(id, "c@x", base.Add(time.Hour))); err != nil {
						return err
					}
					return tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_" + id, Type: boxoffice.EventHoldCreated, Subject: id, Data: []byte(`{}`), CreatedAt: base})
				}))
			}()
		}
		wg.Wait()
		view(t, db, func(tx boxoffice.Tx) error {
			for i := range n {
				id := fmt.Sprintf("hld_c%d_%d", round, i)
				_, err := tx.GetHold(ctx, id)
				committed := err == nil
				switch i % 10 {
				case 3, 9:
					if !errors.Is(errs[i], errRefused) || committed {
						t.Errorf("round %d call %d: %v, hold committed %v; want the refusal and no hold", round, i, errs[i], committed)
					}
				case 7:
					if round < 2 {
						if errs[i] != nil || !committed {
							t.Errorf("round %d call %d: %v, hold committed %v; want nil and the hold", round, i, errs[i], committed)
						}
						break
					}
					if boxoffice.ErrorCode(errs[i]) != boxoffice.ECONFLICT || committed {
						t.Errorf("round %d call %d: %v, hold committed %v; want ECONFLICT and no hold", round, i, errs[i], committed)
					}
				default:
					if errs[i] != nil || !committed {
						t.Errorf("round %d call %d: %v, hold committed %v; want nil and the hold", round, i, errs[i], committed)
					} else if e, err := tx.EventByID(ctx, "evt_"+id); err != nil || e.Seq != 1 {
						t.Errorf("round %d call %d: event %+v, %v", round, i, e, err)
					}
				}
			}
			return nil
		})
	}
}

// testSpeculativeSettles runs the writes that settle orders — EndHold, UpdateOrder and
// AnswerIdemRecordForOrder, one of each an order — many at a time, as a batch of purchases does
// (a store may send each kind as one statement): all commit with their own values; one wrong
// guess among them voids the run and only the decisions of the run with real answers commit;
// two writes of one row in a run take effect in the order they were made.
func testSpeculativeSettles(t *testing.T, db boxoffice.Store, speculate func(fn func(tx boxoffice.Tx) error) (int, error)) {
	ctx := context.Background()
	const n = 6
	hold := func(i int) string { return fmt.Sprintf("hld_set_%d", i) }
	order := func(i int) string { return fmt.Sprintf("ord_set_%d", i) }
	runs, err := speculate(func(tx boxoffice.Tx) error {
		for i := range n {
			if err := tx.InsertHold(ctx, testHold(hold(i), "set@x", base.Add(time.Hour))); err != nil {
				return err
			}
			if err := tx.InsertOrder(ctx, testOrder(order(i), hold(i), boxoffice.OrderPendingPayment)); err != nil {
				return err
			}
			rec := testRecord(fmt.Sprintf("idem_set_%d", i), fmt.Sprintf("set-%d", i))
			rec.HoldID, rec.OrderID = hold(i), order(i)
			if err := tx.InsertIdemRecord(ctx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("inserting orders to settle: %d runs, %v", runs, err)
	}
	settled := func(i int) *boxoffice.Order {
		o := testOrder(order(i), hold(i), boxoffice.OrderConfirmed)
		o.Tickets = []boxoffice.Ticket{{Code: fmt.Sprintf("SET-%d", i)}}
		o.ChargeID, o.ReleaseOnFailure, o.UpdatedAt = fmt.Sprintf("ch_set_%d", i), i%2 == 0, base.Add(time.Duration(i)*time.Second)
		return o
	}
	answer := func(i int) *boxoffice.Response {
		return &boxoffice.Response{Status: 201, Body: fmt.Appendf(nil, `{"id":%q}`, order(i)), Location: "/v1/orders/" + order(i)}
	}
	// settle settles orders from..to-1 and reports what each write answered.
	settle := func(from, to int) (ended []bool, err error) {
		runs, err = speculate(func(tx boxoffice.Tx) error {
			ended = ended[:0]
			for i := from; i < to; i++ {
				ok, err := tx.EndHold(ctx, hold(i), boxoffice.HoldConfirmed, base)
				if err != nil {
					return err
				}
				ended = append(ended, ok)
				if !ok {
					continue // as a settle does: this order is not confirmed
				}
				if ok, err := tx.UpdateOrder(ctx, settled(i), boxoffice.OrderPendingPayment); err != nil || !ok {
					return fmt.Errorf("update order %d: %v, %w", i, ok, err)
				}
				if ok, err := tx.AnswerIdemRecordForOrder(ctx, order(i), answer(i)); err != nil || !ok {
					return fmt.Errorf("answer order %d: %v, %w", i, ok, err)
				}
			}
			return nil
		})
		return ended, err
	}
	// rows reads order i's hold, order and idempotency record.
	rows := func(tx boxoffice.Tx, i int) (h *boxoffice.Hold, o *boxoffice.Order, r *boxoffice.IdemRecord, err error) {
		if h, err = tx.GetHold(ctx, hold(i)); err != nil {
			return
		}
		if o, err = tx.GetOrder(ctx, order(i)); err != nil {
			return
		}
		r, err = tx.GetIdemRecord(ctx, "key_1 POST /v1/purchases", fmt.Sprintf("set-%d", i))
		return
	}
	check := func(i int, confirmed bool) {
		t.Helper()
		view(t, db, func(tx boxoffice.Tx) error {
			h, o, r, err := rows(tx, i)
			if err != nil {
				return err
			}
			if !confirmed {
				if o.Status != boxoffice.OrderPendingPayment || r.Response != nil {
					t.Errorf("order %d: %s, record answered %v; want untouched", i, o.Status, r.Response != nil)
				}
				return nil
			}
			want := settled(i)
			if h.Status != boxoffice.HoldConfirmed || o.Status != want.Status || o.ChargeID != want.ChargeID ||
				o.ReleaseOnFailure != want.ReleaseOnFailure || o.UpdatedAt.Sub(want.UpdatedAt).Abs() >= time.Microsecond ||
				len(o.Tickets) != 1 || o.Tickets[0] != want.Tickets[0] {
				t.Errorf("settled order %d: hold %s, order %+v; want confirmed, %+v", i, h.Status, o, want)
			}
			if r.Response == nil || r.Response.Status != 201 || string(r.Response.Body) != string(answer(i).Body) ||
				r.Response.Location != answer(i).Location || !r.LockedUntil.IsZero() {
				t.Errorf("record of settled order %d: %+v", i, r)
			}
			return nil
		})
	}

	// Guesses that hold: one run settles them all, each with its own values.
	ended, err := settle(0, 3)
	if err != nil || runs != 1 || len(ended) != 3 {
		t.Fatalf("settling 3 at once: %d runs, %v, %v; want 1 run", runs, ended, err)
	}
	for i := range 3 {
		check(i, true)
	}

	// Order 2's hold is confirmed already and order 4's released: the guesses that they end are
	// wrong, the run is void, and the run with real answers settles 3 and 5 and leaves 4 as it was.
	update(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.EndHold(ctx, hold(4), boxoffice.HoldReleased, base)
		return err
	})
	ended, err = settle(2, 6)
	if err != nil || runs != 2 {
		t.Fatalf("settling with two holds ended: %d runs, %v; want 2 runs, nil", runs, err)
	}
	if want := []bool{false, true, false, true}; fmt.Sprint(ended) != fmt.Sprint(want) {
		t.Errorf("EndHold answered %v; want %v", ended, want)
	}
	check(3, true)
	check(4, false)
	check(5, true)

	// Each kind of write on its own, many in a run with one wrong guess: the run is void, the
	// run with real answers changes only the rows whose guess held, and the others stay as
	// they were. (Above, a wrong EndHold is also caught by the UpdateOrder after it.)
	runs, err = speculate(func(tx boxoffice.Tx) error {
		var ends []bool
		for _, i := range []int{0, 4, 1} {
			ok, err := tx.EndHold(ctx, hold(i), boxoffice.HoldExpired, base)
			if err != nil {
				return err
			}
			ends = append(ends, ok)
		}
		if fmt.Sprint(ends) != "[false false false]" {
			return fmt.Errorf("EndHold of ended holds answered %v", ends)
		}
		return nil
	})
	if err != nil || runs != 2 {
		t.Fatalf("ending ended holds: %d runs, %v; want 2 runs, nil", runs, err)
	}
	// writeEach runs write for each of orders is in one speculated transaction, and returns what
	// the writes answered in its last run.
	writeEach := func(is []int, write func(tx boxoffice.Tx, i int) (bool, error)) (answers []bool, runs int, err error) {
		runs, err = speculate(func(tx boxoffice.Tx) error {
			answers = answers[:0]
			for _, i := range is {
				ok, err := write(tx, i)
				if err != nil {
					return err
				}
				answers = append(answers, ok)
			}
			return nil
		})
		return answers, runs, err
	}
	updated, runs, err := writeEach([]int{0, 4, 1}, func(tx boxoffice.Tx, i int) (bool, error) {
		o := settled(i)
		o.Status, o.RefundID = boxoffice.OrderCancelled, fmt.Sprintf("re_each_%d", i)
		return tx.UpdateOrder(ctx, o, boxoffice.OrderConfirmed)
	})
	if err != nil || runs != 2 || fmt.Sprint(updated) != "[true false true]" {
		t.Fatalf("cancelling orders 0, 4 (pending) and 1: %d runs, %v, %v; want 2 runs, [true false true]", runs, updated, err)
	}
	answered, runs, err := writeEach([]int{0, 4}, func(tx boxoffice.Tx, i int) (bool, error) {
		res := answer(i)
		res.Body = fmt.Appendf(nil, `{"again":%d}`, i)
		return tx.AnswerIdemRecordForOrder(ctx, order(i), res)
	})
	if err != nil || runs != 2 || fmt.Sprint(answered) != "[false true]" {
		t.Fatalf("answering orders 0 (answered) and 4: %d runs, %v, %v; want 2 runs, [false true]", runs, answered, err)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for _, i := range []int{0, 1, 4} {
			h, o, r, err := rows(tx, i)
			if err != nil {
				return err
			}
			wantHold, wantOrder, wantBody := boxoffice.HoldConfirmed, boxoffice.OrderCancelled, string(answer(i).Body)
			switch i {
			case 4:
				wantHold, wantOrder, wantBody = boxoffice.HoldReleased, boxoffice.OrderPendingPayment, `{"again":4}`
			}
			if h.Status != wantHold || o.Status != wantOrder || r.Response == nil || string(r.Response.Body) != wantBody {
				t.Errorf("order %d: hold %s, order %s, answer %v; want %s, %s, %s", i, h.Status, o.Status, r.Response, wantHold, wantOrder, wantBody)
			}
		}
		return nil
	})

	// Two updates of one order in a run take effect in turn: the last one stands.
	runs, err = speculate(func(tx boxoffice.Tx) error {
		o := settled(3)
		o.Status, o.RefundID = boxoffice.OrderCancelled, "re_set_3"
		if ok, err := tx.UpdateOrder(ctx, o, boxoffice.OrderConfirmed); err != nil || !ok {
			return fmt.Errorf("cancel: %v, %w", ok, err)
		}
		o.Status, o.RefundID = boxoffice.OrderPaymentFailed, "re_set_3b"
		if ok, err := tx.UpdateOrder(ctx, o, boxoffice.OrderCancelled); err != nil || !ok {
			return fmt.Errorf("second update: %v, %w", ok, err)
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("two updates of one order: %d runs, %v; want 1 run, nil", runs, err)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		o, err := tx.GetOrder(ctx, order(3))
		if err == nil && (o.Status != boxoffice.OrderPaymentFailed || o.RefundID != "re_set_3b") {
			t.Errorf("after two updates in a run: %s %s; want payment_failed re_set_3b", o.Status, o.RefundID)
		}
		return err
	})
}

// testSpeculativeTiersAndLeases checks the counts of many tiers, and the leases of many shows,
// set and checked in one speculative run (which a store may send as one statement each): right
// guesses commit in one run; one stale version or one moved lease voids the run, and the run
// with real answers decides on them, tier by tier; two sets of one tier keep their order.
func testSpeculativeTiersAndLeases(t *testing.T, db boxoffice.Store) {
	speculate := speculator(t, db)
	ctx := context.Background()
	shows := []string{"s1", "s2", "s3"}
	for _, s := range shows {
		putShow(t, db, testShow(s, tier("a", 10), tier("b", 10)))
	}
	counts := func(show, tierID string) boxoffice.TierCounts {
		t.Helper()
		var c boxoffice.TierCounts
		view(t, db, func(tx boxoffice.Tx) (err error) { c, err = tx.TierCounts(ctx, show, tierID, false); return err })
		return c
	}
	type ref struct{ show, tier string }
	var refs []ref
	for _, s := range shows {
		refs = append(refs, ref{s, "a"}, ref{s, "b"})
	}

	// Every version right: one run, every tier set.
	start := map[ref]int64{}
	for _, r := range refs {
		start[r] = counts(r.show, r.tier).Version
	}
	runs, err := speculate(func(tx boxoffice.Tx) error {
		for i, r := range refs {
			if ok, err := tx.SetTierCounts(ctx, r.show, r.tier, start[r], i+1, 1); err != nil || !ok {
				return fmt.Errorf("set %v: %v %v", r, ok, err)
			}
		}
		return nil
	})
	if err != nil || runs != 1 {
		t.Fatalf("sets at the right versions: %d runs, %v; want 1 run, nil", runs, err)
	}
	for i, r := range refs {
		if c := counts(r.show, r.tier); c.Held != i+1 || c.Sold != 1 || c.Version != start[r]+1 {
			t.Errorf("%v after the run: %+v; want held %d, sold 1, version %d", r, c, i+1, start[r]+1)
		}
	}

	// One tier's version stale: the run is void, and the run with real answers sets the others.
	stale := refs[3]
	var refused []ref
	runs, err = speculate(func(tx boxoffice.Tx) error {
		refused = refused[:0]
		for _, r := range refs {
			v := start[r] + 1
			if r == stale {
				v = start[r] // what a writer that missed the last change would send
			}
			ok, err := tx.SetTierCounts(ctx, r.show, r.tier, v, 5, 5)
			if err != nil {
				return err
			}
			if !ok {
				refused = append(refused, r)
			}
		}
		return nil
	})
	if err != nil || runs != 2 || len(refused) != 1 || refused[0] != stale {
		t.Fatalf("one stale version: %d runs, %v, refused %v; want 2 runs, nil, refused [%v]", runs, err, refused, stale)
	}
	for i, r := range refs {
		want := boxoffice.TierCounts{Held: 5, Sold: 5, Version: start[r] + 2}
		if r == stale {
			want = boxoffice.TierCounts{Held: i + 1, Sold: 1, Version: start[r] + 1}
		}
		if c := counts(r.show, r.tier); c.Held != want.Held || c.Sold != want.Sold || c.Version != want.Version {
			t.Errorf("%v after the run: %+v; want %+v", r, c, want)
		}
	}

	// Two sets of one tier in one run: the second at the version the first made.
	r := refs[0]
	v := counts(r.show, r.tier).Version
	runs, err = speculate(func(tx boxoffice.Tx) error {
		for i := range 2 {
			if ok, err := tx.SetTierCounts(ctx, r.show, r.tier, v+int64(i), 7+i, 0); err != nil || !ok {
				return fmt.Errorf("set %d of %v: %v %v", i, r, ok, err)
			}
		}
		return nil
	})
	if c := counts(r.show, r.tier); err != nil || c.Held != 8 || c.Version != v+2 {
		t.Errorf("two sets of %v in one run: %d runs, %v, counts %+v; want held 8 at version %d", r, runs, err, c, v+2)
	}

	// The leases of many shows, where the store keeps leases.
	cs, ok := db.(guarded).Store.(boxoffice.ClusterStore)
	if !ok {
		return
	}
	epochs := map[string]int64{}
	for _, s := range shows {
		l, ok, err := cs.AcquireLease(ctx, boxoffice.ShowLease(s), "srv-a", time.Minute)
		if err != nil || !ok {
			t.Fatalf("acquire the lease of %s: %v %v", s, ok, err)
		}
		epochs[s] = l.Epoch
	}
	check := func(moved string) (int, error) {
		return speculate(func(tx boxoffice.Tx) error {
			lt, ok := tx.(boxoffice.LeaseTx)
			if !ok {
				return errors.New("a cluster store's transaction cannot check a lease")
			}
			for _, s := range shows {
				e := epochs[s]
				if s == moved {
					e++ // a lease that has passed to another server since
				}
				if err := lt.CheckLease(ctx, boxoffice.ShowLease(s), "srv-a", e); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if runs, err := check(""); err != nil || runs != 1 {
		t.Errorf("leases all held: %d runs, %v; want 1 run, nil", runs, err)
	}
	if runs, err := check("s2"); boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED || runs != 2 {
		t.Errorf("one lease moved: %d runs, %v; want 2 runs and EOVERLOADED", runs, err)
	}
}
