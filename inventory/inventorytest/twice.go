package inventorytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"boxoffice"
	"boxoffice/sale"
)

// twiceStore runs every Update's fn twice: first in a transaction that is rolled back, then again
// for real. Stores may do that (group commit runs a failed batch's fns again one by one;
// PostgreSQL's Update retries a serialization failure), as boxoffice.Store says, so neither the
// service nor a strategy may keep anything of a run that did not commit.
type twiceStore struct{ boxoffice.Store }

var errFirstRun = errors.New("inventorytest: the first run of fn is rolled back")

// Update runs fn once and rolls it back (whatever that run returned), then runs it again and
// returns what that run did.
func (s twiceStore) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	_ = s.Store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errFirstRun
	})
	return s.Store.Update(ctx, fn)
}

// fnRunsTwice: with every transaction's fn run twice (the first run rolled back), purchases with
// declines, same-key retries, holds that are confirmed and released, and a restart still leave
// one order per key, one charge per paid order, and counts that match the holds and orders.
func fnRunsTwice(t *testing.T, h Harness) {
	w := newWorld(t, h, nil, func(s boxoffice.Store) boxoffice.Store { return twiceStore{s} })
	w.Show("twice", 600, 12)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bodies := map[string]string{}
	for i := range 40 {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i%20) // every key twice, concurrently
			token := "tok_ok"
			if i%20%6 == 0 {
				token = "tok_declined"
			}
			res, err := purchase(w, key, "twice", "a", 1, token)
			if boxoffice.ErrorCode(err) == boxoffice.EIDEMINPROGRESS {
				return
			}
			if err != nil {
				t.Errorf("purchase %s: %v", key, err)
				return
			}
			switch res.Status {
			case 201, 202, 402, 409:
			default:
				t.Errorf("purchase %s: %d %s", key, res.Status, res.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := bodies[key]; ok && prev != string(res.Body) {
				t.Errorf("key %s answered twice differently:\n%s\n%s", key, prev, res.Body)
			}
			bodies[key] = string(res.Body)
		})
	}
	wg.Wait()
	w.WaitSettled()

	// A hold confirmed, another released: each once.
	for i, confirm := range []bool{true, false} {
		res, err := hold(w, fmt.Sprintf("h%d", i), "twice", "a", 1, "h@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == 409 {
			continue // sold out by the purchases
		}
		h := Decode[boxoffice.Hold](t, res)
		if confirm {
			in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: "tok_ok"}}
			if _, _, err := w.Svc.ConfirmHold(context.Background(), boxoffice.AdminPrincipal, Idem("confirm", "c"+h.ID, in), h.ID, in); err != nil {
				t.Fatalf("confirm: %v", err)
			}
		} else if err := w.Svc.ReleaseHold(context.Background(), boxoffice.AdminPrincipal, h.ID); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	w.WaitSettled()
	w.checkLedger()
	w.Restart(h)
	w.checkLedger()
	c := w.Counts("twice", "a")
	if c.Held != 0 || c.Sold > c.Capacity {
		t.Errorf("counts after the stampede and a restart: %+v", c)
	}
}
