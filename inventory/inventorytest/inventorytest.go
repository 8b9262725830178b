// Package inventorytest is the conformance suite every race-condition strategy runs, over every
// store it supports: the same stampedes, interleavings and restarts, checked against the same
// invariants. A strategy is honest when Exercise passes for it with -race.
package inventorytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/payments"
	"boxoffice/sale"
)

// Harness says how to make the parts under test.
type Harness struct {
	// OpenStore opens the store kept in dir, creating it when dir is new; the suite closes it.
	// Opening the same dir again must give the same data, as after a restart.
	OpenStore func(t *testing.T, dir string) boxoffice.Store
	// NewInventory returns the strategy under test over store; the suite closes it.
	NewInventory func(t *testing.T, store boxoffice.Store) boxoffice.Inventory
}

// Exercise runs the whole suite.
func Exercise(t *testing.T, h Harness) {
	t.Run("LastTicketRace", func(t *testing.T) { lastTicketRace(t, h) })
	t.Run("PurchaseStampede", func(t *testing.T) { purchaseStampede(t, h) })
	t.Run("SameKeyRetries", func(t *testing.T) { sameKeyRetries(t, h) })
	t.Run("Interleaved", func(t *testing.T) { interleaved(t, h) })
	t.Run("Restart", func(t *testing.T) { restart(t, h) })
	t.Run("Linearizable", func(t *testing.T) { linearizable(t, h) })
	t.Run("FnRunsTwice", func(t *testing.T) { fnRunsTwice(t, h) })
	ExerciseSeats(t, h)
}

// Clock is a test clock that moves only when told.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// World is one running service over a store and a strategy.
type World struct {
	T     *testing.T
	Dir   string
	Store boxoffice.Store
	Inv   boxoffice.Inventory
	Pay   *payments.Sim
	Svc   *sale.Service
	Clock *Clock

	wrap      func(boxoffice.Inventory) boxoffice.Inventory
	wrapStore func(boxoffice.Store) boxoffice.Store
}

// NewWorld starts a service over a new store in a temp dir, with the simulator as payments and a
// test clock; background loops are not started, so tests drive expiry and completion themselves.
func NewWorld(t *testing.T, h Harness) *World {
	return newWorld(t, h, nil, nil)
}

// newWorld is NewWorld with the strategy wrapped, e.g. to record its history, and the store
// wrapped (under the strategy too), e.g. to run every transaction's fn twice.
func newWorld(t *testing.T, h Harness, wrap func(boxoffice.Inventory) boxoffice.Inventory, wrapStore func(boxoffice.Store) boxoffice.Store) *World {
	w := &World{T: t, Dir: t.TempDir(), Clock: NewClock(), wrap: wrap, wrapStore: wrapStore}
	pay, err := payments.NewSim(payments.SimOptions{SlowDelay: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Pay = pay
	t.Cleanup(func() { pay.Close() })
	w.open(h)
	t.Cleanup(w.close)
	return w
}

func (w *World) open(h Harness) {
	w.Store = h.OpenStore(w.T, w.Dir)
	if w.wrapStore != nil {
		w.Store = w.wrapStore(w.Store)
	}
	w.Inv = h.NewInventory(w.T, w.Store)
	if w.wrap != nil {
		w.Inv = w.wrap(w.Inv)
	}
	w.Svc = sale.New(sale.Config{
		Store: w.Store, Inventory: w.Inv, Payments: w.Pay, Renderer: bohttp.Renderer{},
		Now: w.Clock.Now, SyncBudget: 5 * time.Second, AdminKey: "admin",
	})
}

func (w *World) close() {
	if w.Svc == nil {
		return
	}
	w.Svc.Close()
	w.Inv.Close()
	w.Store.Close()
	w.Svc = nil
}

// Restart closes the service, strategy and store and opens them again over the same data, as a
// process restart would.
func (w *World) Restart(h Harness) {
	w.close()
	w.open(h)
}

// Show creates a show with the given capacity per tier ("a", "b", …).
func (w *World) Show(id string, ttl int, capacities ...int) {
	in := sale.ShowInput{Name: "Show " + id, StartsAt: ptr(time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC)), HoldTTLSeconds: &ttl}
	for i, c := range capacities {
		in.Tiers = append(in.Tiers, sale.TierInput{ID: string(rune('a' + i)), Name: "Tier", Capacity: ptr(c), Price: &boxoffice.Money{Amount: 5000, Currency: "EUR"}})
	}
	if _, _, err := w.Svc.PutShow(context.Background(), id, in); err != nil {
		w.T.Fatalf("put show %s: %v", id, err)
	}
}

// Idem returns the idempotency context of a request: the scope and fingerprint are derived from
// the operation and body, as a transport would.
func Idem(op, key string, body any) sale.Idem {
	b, _ := json.Marshal(body)
	sum := sha256.Sum256(append([]byte(op+"\n"), b...))
	return sale.Idem{Scope: "client " + op, Key: key, Fingerprint: hex.EncodeToString(sum[:])}
}

// WaitSettled waits (bounded) until no order waits for its payment.
func (w *World) WaitSettled() {
	w.T.Helper()
	for range 600 {
		var n int
		err := w.Store.View(context.Background(), func(tx boxoffice.Tx) error {
			o, err := tx.PendingOrders(context.Background(), 1)
			n = len(o)
			return err
		})
		if err != nil {
			w.T.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.T.Fatal("orders still pending after 30s")
}

// Check reports (with Errorf, so it may run in any goroutine) every guarantee the store breaks
// now, and returns whether all held.
func (w *World) Check() bool {
	w.T.Helper()
	bad, err := sale.Verify(context.Background(), w.Store, nil)
	if err != nil {
		w.T.Errorf("verify: %v", err)
		return false
	}
	for _, b := range bad {
		w.T.Errorf("violation: %s", b)
	}
	return len(bad) == 0
}

// Counts returns a tier's counts from a show read.
func (w *World) Counts(show, tier string) boxoffice.Tier {
	w.T.Helper()
	s, err := w.Svc.GetShow(context.Background(), show)
	if err != nil {
		w.T.Fatal(err)
	}
	return *s.Tier(tier)
}

// Decode unmarshals a stored response body.
func Decode[T any](t *testing.T, res *boxoffice.Response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(res.Body, &v); err != nil {
		t.Fatalf("decode %d %s: %v", res.Status, res.Body, err)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

func hold(w *World, key, show, tier string, q int, email string) (*boxoffice.Response, error) {
	in := sale.HoldInput{ShowID: show, TierID: tier, Quantity: q, Buyer: sale.BuyerInput{Email: email}}
	res, _, err := w.Svc.CreateHold(context.Background(), boxoffice.AdminPrincipal, Idem("hold "+show, key, in), in)
	return res, err
}

func purchase(w *World, key, show, tier string, q int, token string) (*boxoffice.Response, error) {
	in := sale.PurchaseInput{ShowID: show, TierID: tier, Quantity: q, Buyer: sale.BuyerInput{Email: "p@example.com"}, Payment: sale.PaymentInput{Token: token}}
	res, _, err := w.Svc.Purchase(context.Background(), boxoffice.AdminPrincipal, Idem("purchase", key, in), in)
	return res, err
}

// lastTicketRace: many more buyers than tickets, all at once; exactly capacity holds succeed and
// everyone else is told sold_out with what is left.
func lastTicketRace(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	const capacity, buyers = 7, 1000
	w.Show("race", 600, capacity)
	var ok, soldOut atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range buyers {
		wg.Go(func() {
			<-start
			res, err := hold(w, fmt.Sprintf("k%d", i), "race", "a", 1, fmt.Sprintf("b%d@example.com", i))
			if err != nil {
				t.Errorf("hold %d: %v", i, err)
				return
			}
			switch res.Status {
			case 201:
				ok.Add(1)
			case 409:
				p := Decode[map[string]any](t, res)
				if p["code"] != boxoffice.ESOLDOUT || p["available"] != float64(0) {
					t.Errorf("want sold_out with available 0, got %s", res.Body)
				}
				soldOut.Add(1)
			default:
				t.Errorf("hold %d: status %d %s", i, res.Status, res.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != capacity || soldOut.Load() != buyers-capacity {
		t.Fatalf("got %d holds and %d sold_out, want %d and %d", ok.Load(), soldOut.Load(), capacity, buyers-capacity)
	}
	if c := w.Counts("race", "a"); c.Held != capacity || c.Available != 0 {
		t.Fatalf("tier after race: %+v", c)
	}
	w.Check()
}

// purchaseStampede: one-shot purchases of several tickets each, some declined, on two tiers;
// exactly the capacity is sold and every confirmed order is charged once.
func purchaseStampede(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.Show("stampede", 600, 20, 13)
	var sold [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			tier := []string{"a", "b"}[i%2]
			token := "tok_ok"
			if i%7 == 0 {
				token = "tok_declined"
			}
			q := 1 + i%3
			res, err := purchase(w, fmt.Sprintf("p%d", i), "stampede", tier, q, token)
			if err != nil {
				t.Errorf("purchase %d: %v", i, err)
				return
			}
			switch res.Status {
			case 201:
				if token != "tok_ok" {
					t.Errorf("declined token bought: %s", res.Body)
				}
				sold[i%2].Add(int64(q))
			case 202:
				// A loaded machine can take longer than the sync budget; the order settles later.
			case 402, 409:
			default:
				t.Errorf("purchase %d: %d %s", i, res.Status, res.Body)
			}
		})
	}
	wg.Wait()
	w.WaitSettled()
	for i, tier := range []string{"a", "b"} {
		c := w.Counts("stampede", tier)
		if int64(c.Sold) < sold[i].Load() || c.Held != 0 || c.Sold > c.Capacity {
			t.Errorf("tier %s: %+v, 201s sold %d", tier, c, sold[i].Load())
		}
		// Declined purchases hold tickets for a moment, so the crowd may have been told sold_out
		// while tickets were still to come back. None may be lost: what is left can be bought now.
		left := c.Capacity - c.Sold
		for j := range left + 1 {
			res, err := purchase(w, fmt.Sprintf("rest-%s-%d", tier, j), "stampede", tier, 1, "tok_ok")
			if err != nil {
				t.Fatalf("buy the rest of %s: %v", tier, err)
			}
			if want := map[bool]int{true: 201, false: 409}[j < left]; res.Status != want {
				t.Fatalf("tier %s: ticket %d of the %d left: got %d %s, want %d", tier, j+1, left, res.Status, res.Body, want)
			}
		}
		if c := w.Counts("stampede", tier); c.Sold != c.Capacity {
			t.Errorf("tier %s ends with %d of %d sold", tier, c.Sold, c.Capacity)
		}
	}
	w.checkLedger()
}

func (w *World) checkLedger() {
	w.T.Helper()
	var ledger []sale.LedgerCharge
	for _, c := range w.Pay.Charges() {
		ledger = append(ledger, sale.LedgerCharge{Key: c.Key, ChargeID: c.ID, Succeeded: c.Status == "succeeded", Refunded: c.Refunded})
	}
	if ledger == nil {
		ledger = []sale.LedgerCharge{} // no charges is a ledger too: every paid order must be in it
	}
	bad, err := sale.Verify(context.Background(), w.Store, ledger)
	if err != nil {
		w.T.Fatal(err)
	}
	for _, b := range bad {
		w.T.Errorf("violation: %s", b)
	}
}

// sameKeyRetries: one logical request sent by many goroutines with one key, concurrently and
// after it finished, has one effect and one answer.
func sameKeyRetries(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.Show("retry", 600, 50)
	var wg sync.WaitGroup
	bodies := make([]string, 40)
	for i := range bodies {
		wg.Go(func() {
			key := fmt.Sprintf("key-%d", i%4)
			res, err := purchase(w, key, "retry", "a", 2, "tok_ok")
			if boxoffice.ErrorCode(err) == boxoffice.EIDEMINPROGRESS {
				return // the first is still paying; a real client retries later
			}
			if err != nil {
				t.Errorf("purchase: %v", err)
				return
			}
			if res.Status != 201 {
				t.Errorf("purchase: %d %s", res.Status, res.Body)
			}
			bodies[i] = string(res.Body)
		})
	}
	wg.Wait()
	// Every key answered once more after the stampede gives the same bytes as before.
	for k := range 4 {
		res, err := purchase(w, fmt.Sprintf("key-%d", k), "retry", "a", 2, "tok_ok")
		if err != nil || res.Status != 201 {
			t.Fatalf("replay: %v %v", res, err)
		}
		for i := k; i < len(bodies); i += 4 {
			if bodies[i] != "" && bodies[i] != string(res.Body) {
				t.Errorf("key-%d answered two different bodies:\n%s\n%s", k, bodies[i], res.Body)
			}
		}
	}
	if c := w.Counts("retry", "a"); c.Sold != 8 || c.Held != 0 {
		t.Fatalf("4 keys × 2 tickets should sell 8, got %+v", c)
	}
	// The same key with another body is refused and changes nothing.
	_, err := purchase(w, "key-0", "retry", "a", 3, "tok_ok")
	if boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("reused key: got %v", err)
	}
	w.checkLedger()
	if n := len(w.Pay.Charges()); n != 4 {
		t.Fatalf("4 keys made %d charges", n)
	}
}

// interleaved: workers hold, confirm, decline, release, buy, cancel and let holds expire on
// several tiers at once, while the clock moves; after every step the store must satisfy every
// guarantee in the snapshot that step left.
func interleaved(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.Show("mix", 30, 6, 4, 9)
	ctx := context.Background()
	var wg sync.WaitGroup
	for worker := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(worker), 7))
			var m mix
			for i := range 40 {
				key := fmt.Sprintf("w%d-%d", worker, i)
				tier := string(rune('a' + r.IntN(3)))
				m.step(w, r, key, r.IntN(10),
					func() (*boxoffice.Response, error) {
						return hold(w, key, "mix", tier, 1+r.IntN(3), fmt.Sprintf("w%d@example.com", worker))
					},
					func() (*boxoffice.Response, error) { return purchase(w, key, "mix", tier, 1+r.IntN(2), "tok_ok") })
				if !w.Check() {
					return
				}
			}
		})
	}
	wg.Wait()
	// Let every hold run out: all tickets not sold come back, exactly once.
	w.Clock.Advance(time.Hour)
	if _, err := w.Svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tier := range []string{"a", "b", "c"} {
		if c := w.Counts("mix", tier); c.Held != 0 {
			t.Errorf("tier %s still holds %d after every hold expired", tier, c.Held)
		}
	}
	w.Check()
	w.checkLedger()
}

// mix is one interleaved worker's holds and orders, for step.
type mix struct{ holds, orders []string }

// step does operation op (0 to 9) of an interleaved workload: hold (0-2, with hold), confirm
// with a good or declined payment (3-4), release (5), buy (6-7, with buy), cancel (8), or move
// the clock and expire what is due (9). Without a hold, 3-5 buy; without an order, 8 expires.
func (m *mix) step(w *World, r *rand.Rand, key string, op int, hold, buy func() (*boxoffice.Response, error)) {
	t, ctx := w.T, context.Background()
	switch {
	case op < 3:
		if res, err := hold(); err == nil && res.Status == 201 {
			m.holds = append(m.holds, Decode[boxoffice.Hold](t, res).ID)
		}
	case op < 5 && len(m.holds) > 0:
		id := m.holds[r.IntN(len(m.holds))]
		token := []string{"tok_ok", "tok_ok", "tok_declined"}[r.IntN(3)]
		in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: token}}
		res, _, err := w.Svc.ConfirmHold(ctx, boxoffice.AdminPrincipal, Idem("confirm "+id, key, in), id, in)
		if err == nil && res.Status == 201 {
			m.orders = append(m.orders, Decode[boxoffice.Order](t, res).ID)
		}
	case op < 6 && len(m.holds) > 0:
		_ = w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, m.holds[r.IntN(len(m.holds))])
	case op < 8:
		if res, err := buy(); err == nil && res.Status == 201 {
			m.orders = append(m.orders, Decode[boxoffice.Order](t, res).ID)
		}
	case op < 9 && len(m.orders) > 0:
		id := m.orders[r.IntN(len(m.orders))]
		if _, _, err := w.Svc.CancelOrder(ctx, boxoffice.AdminPrincipal, Idem("cancel "+id, key, id), id); err != nil {
			t.Errorf("cancel %s: %v", id, err)
		}
	default:
		w.Clock.Advance(time.Duration(r.IntN(20)) * time.Second)
		if _, err := w.Svc.ExpireDue(ctx); err != nil {
			t.Errorf("expire: %v", err)
		}
	}
}

// restart: state made before a restart (holds, orders, counts) is what the strategy works from
// after it; selling on to capacity across restarts never oversells, and expiry after a restart
// returns each hold's tickets once.
func restart(t *testing.T, h Harness) {
	w := NewWorld(t, h)
	w.Show("again", 60, 10)
	buy := func(round int) (n int) {
		for i := range 8 {
			res, err := purchase(w, fmt.Sprintf("r%d-%d", round, i), "again", "a", 1, "tok_ok")
			if err != nil {
				t.Fatal(err)
			}
			if res.Status == 201 {
				n++
			}
		}
		return n
	}
	sold := buy(0)
	res, err := hold(w, "held-before", "again", "a", 2, "h@example.com")
	if err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	w.Restart(h)
	if c := w.Counts("again", "a"); c.Sold != sold || c.Held != 2 {
		t.Fatalf("after restart: %+v, want sold %d held 2", c, sold)
	}
	sold += buy(1) // only 0 left: everything is sold or held
	if sold != 8 {
		t.Fatalf("sold %d of 10 with 2 held, want 8", sold)
	}
	w.Restart(h)
	w.Clock.Advance(2 * time.Minute)
	if n, err := w.Svc.ExpireDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("expire after restart: %d %v", n, err)
	}
	sold += buy(2)
	if c := w.Counts("again", "a"); c.Sold != 10 || sold != 10 || c.Held != 0 {
		t.Fatalf("final: %+v, 201s %d", c, sold)
	}
	w.Check()
	w.checkLedger()
}
