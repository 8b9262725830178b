package sale_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/internal/checkfor"
	"boxoffice/inventory"
	"boxoffice/inventory/inventorytest"
	"boxoffice/payments"
	"boxoffice/sale"
	"boxoffice/sqlite"
)

// env is one service over a real SQLite file and the real simulator, with a test clock.
type env struct {
	t     testing.TB
	dir   string
	store boxoffice.Store
	inv   boxoffice.Inventory
	sim   *payments.Sim
	pay   boxoffice.Payments
	svc   *sale.Service
	clock *inventorytest.Clock
	cfg   sale.Config
	// reservations counts the changes that took tickets which reached the strategy.
	reservations atomic.Int64
	// actor makes open use the actor strategy instead of atomic.
	actor bool
	// wrap, when set, is applied by open to the store the service uses (not the strategy's).
	wrap func(boxoffice.Store) boxoffice.Store
}

// countingKeeper is a countingInventory over a strategy that keeps counts in memory.
type countingKeeper struct {
	*countingInventory
	boxoffice.CountsKeeper
}

// countingInventory counts the reservations (changes that take tickets) that reach a strategy.
type countingInventory struct {
	boxoffice.Inventory
	n *atomic.Int64
}

func (c *countingInventory) Apply(ctx context.Context, ch boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if ch.Held > 0 {
		c.n.Add(1)
	}
	return c.Inventory.Apply(ctx, ch, write)
}

func newEnv(t testing.TB, mod func(*sale.Config)) *env {
	t.Helper()
	return newEnvOf(t, false, mod)
}

// newEnvOf is newEnv with the actor strategy when actor is set.
func newEnvOf(t testing.TB, actor bool, mod func(*sale.Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: inventorytest.NewClock(), actor: actor}
	sim, err := payments.NewSim(payments.SimOptions{SlowDelay: 400 * time.Millisecond, LedgerPath: e.dir + "/ledger.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	e.sim, e.pay = sim, sim
	t.Cleanup(func() { sim.Close() })
	e.cfg = sale.Config{Payments: sim, Renderer: bohttp.Renderer{}, Now: e.clock.Now, SyncBudget: 3 * time.Second, AdminKey: "adm"}
	if mod != nil {
		mod(&e.cfg)
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	st, err := sqlite.Open(context.Background(), e.dir+"/boxoffice.db")
	if err != nil {
		e.t.Fatal(err)
	}
	e.store, e.inv = st, &countingInventory{Inventory: inventory.NewAtomic(st), n: &e.reservations}
	if e.actor {
		a, err := inventory.NewActor(st, inventory.Options{})
		if err != nil {
			e.t.Fatal(err)
		}
		counting := &countingInventory{Inventory: a, n: &e.reservations}
		e.inv = countingKeeper{countingInventory: counting, CountsKeeper: a.(boxoffice.CountsKeeper)}
	}
	cfg := e.cfg
	cfg.Store, cfg.Inventory = e.store, e.inv
	if e.wrap != nil {
		cfg.Store = e.wrap(e.store)
	}
	e.svc = sale.New(cfg)
}

func (e *env) close() {
	if e.svc != nil {
		e.svc.Close()
		e.inv.Close()
		e.store.Close()
		e.svc = nil
	}
}

func (e *env) show(id string, capacity int, mod func(*sale.ShowInput)) {
	e.t.Helper()
	in := sale.ShowInput{Name: "Show", StartsAt: ptr(time.Date(2027, 5, 1, 19, 0, 0, 0, time.UTC)), HoldTTLSeconds: ptr(60),
		Tiers: []sale.TierInput{{ID: "ga", Name: "General", Capacity: ptr(capacity), Price: &boxoffice.Money{Amount: 2500, Currency: "EUR"}}}}
	if mod != nil {
		mod(&in)
	}
	if _, _, err := e.svc.PutShow(context.Background(), id, in); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) tier(show string) boxoffice.Tier {
	e.t.Helper()
	s, err := e.svc.GetShow(context.Background(), show)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Tiers[0]
}

func (e *env) verify() {
	e.t.Helper()
	var ledger []sale.LedgerCharge
	for _, c := range e.sim.Charges() {
		ledger = append(ledger, sale.LedgerCharge{Key: c.Key, ChargeID: c.ID, Succeeded: c.Status == payments.ChargeSucceeded, Refunded: c.Refunded})
	}
	if ledger == nil {
		ledger = []sale.LedgerCharge{}
	}
	bad, err := sale.Verify(context.Background(), e.store, ledger)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range bad {
		e.t.Errorf("violation: %s", b)
	}
}

// waitPending waits until n orders wait for their payment.
func (e *env) waitPending(n int) {
	e.t.Helper()
	eventually(e.t, "pending orders", func() bool {
		var got int
		_ = e.store.View(context.Background(), func(tx boxoffice.Tx) error {
			o, err := tx.PendingOrders(context.Background(), 10)
			got = len(o)
			return err
		})
		return got == n
	})
}

func ptr[T any](v T) *T { return &v }

var idem = inventorytest.Idem

func (e *env) hold(key, show string, q int, email string) (*boxoffice.Response, bool, error) {
	in := sale.HoldInput{ShowID: show, TierID: "ga", Quantity: q, Buyer: sale.BuyerInput{Email: email}}
	return e.svc.CreateHold(context.Background(), boxoffice.AdminPrincipal, idem("hold "+show, key, in), in)
}

func (e *env) confirm(key, holdID, token string) (*boxoffice.Response, bool, error) {
	in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: token}}
	return e.svc.ConfirmHold(context.Background(), boxoffice.AdminPrincipal, idem("confirm "+holdID, key, in), holdID, in)
}

func (e *env) purchase(key, show string, q int, token string) (*boxoffice.Response, bool, error) {
	in := sale.PurchaseInput{ShowID: show, TierID: "ga", Quantity: q, Buyer: sale.BuyerInput{Email: "buyer@example.com"}, Payment: sale.PaymentInput{Token: token}}
	return e.svc.Purchase(context.Background(), boxoffice.AdminPrincipal, idem("purchase", key, in), in)
}

func decode[T any](t *testing.T, res *boxoffice.Response) T {
	t.Helper()
	return inventorytest.Decode[T](t, res)
}

func want(t *testing.T, res *boxoffice.Response, err error, status int, code string) {
	t.Helper()
	if err != nil {
		t.Fatalf("want %d %s, got error %v", status, code, err)
	}
	if res.Status != status {
		t.Fatalf("want %d %s, got %d %s", status, code, res.Status, res.Body)
	}
	if code != "" {
		if got := decode[map[string]any](t, res)["code"]; got != code {
			t.Fatalf("want code %s, got %v in %s", code, got, res.Body)
		}
	}
}

// eventually polls cond (bounded in count and time) instead of sleeping a guessed while.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	checkfor.Until(t, 10*time.Second, 20*time.Millisecond, what, cond)
}

func TestReplayIsByteIdentical(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 5, nil)
	first, replayed, err := e.hold("k1", "s", 2, "a@example.com")
	want(t, first, err, 201, "")
	if replayed {
		t.Fatal("first answer marked replayed")
	}
	again, replayed, err := e.hold("k1", "s", 2, "a@example.com")
	want(t, again, err, 201, "")
	if !replayed || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: replayed=%v\n%s\n%s", replayed, first.Body, again.Body)
	}
	if replays, inProgress := e.svc.IdempotencyStats(); replays != 1 || inProgress != 0 {
		t.Errorf("IdempotencyStats = %d replays, %d in progress; want 1 and 0", replays, inProgress)
	}
	if c := e.tier("s"); c.Held != 2 {
		t.Fatalf("a replay took tickets: %+v", c)
	}
	// Same key, different body: refused, nothing changes.
	_, _, err = e.hold("k1", "s", 3, "a@example.com")
	if boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("reused key: %v", err)
	}
	// A final domain answer is stored too: sold_out replays even after tickets come back.
	res, _, err := e.hold("k2", "s", 4, "b@example.com")
	want(t, res, err, 409, boxoffice.ESOLDOUT)
	h := decode[boxoffice.Hold](t, first)
	if err := e.svc.ReleaseHold(context.Background(), boxoffice.AdminPrincipal, h.ID); err != nil {
		t.Fatal(err)
	}
	res2, replayed, err := e.hold("k2", "s", 4, "b@example.com")
	want(t, res2, err, 409, boxoffice.ESOLDOUT)
	if !replayed || string(res2.Body) != string(res.Body) {
		t.Fatal("sold_out was not replayed")
	}
	e.verify()
}

// TestSoldOutFailsFast checks that once a tier is sold out, a request for more tickets than a
// committed snapshot shows left is refused without a reservation (the writer is spared in a
// stampede after the sell-out), with the same stored, replayable answer a refused reservation
// gives, while a request that fits still goes to the strategy. The first refusal comes from the
// strategy: a purchase's first try goes straight to it, without a read.
func TestSoldOutFailsFast(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 3, nil)
	res, _, err := e.purchase("p1", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	before := e.reservations.Load() + 1 // the first refusal's
	for i := range 20 {
		res, _, err = e.purchase(fmt.Sprintf("late-%d", i), "s", 2, "tok_ok")
		want(t, res, err, 409, boxoffice.ESOLDOUT)
		var p struct{ Available *int }
		if json.Unmarshal(res.Body, &p) != nil || p.Available == nil || *p.Available != 1 {
			t.Fatalf("sold_out answer without available=1: %s", res.Body)
		}
	}
	res, _, err = e.hold("h-late", "s", 2, "b@example.com")
	want(t, res, err, 409, boxoffice.ESOLDOUT)
	if n := e.reservations.Load() - before; n != 0 {
		t.Errorf("%d refused requests reached the strategy, want 0", n)
	}
	// The answer is stored: a retry replays it byte for byte.
	again, replayed, err := e.purchase("late-0", "s", 2, "tok_ok")
	if err != nil || !replayed || again.Status != 409 {
		t.Fatalf("retry of a sold_out purchase: %+v replayed=%v %v", again, replayed, err)
	}
	// What fits still sells, through the strategy.
	res, _, err = e.purchase("p2", "s", 1, "tok_ok")
	want(t, res, err, 201, "")
	if n := e.reservations.Load() - before; n != 1 {
		t.Errorf("the fitting purchase made %d reservations, want 1", n)
	}
	if c := e.tier("s"); c.Sold != 3 || c.Held != 0 {
		t.Errorf("tier after the sale: %+v, want 3 sold", c)
	}
	e.verify()
}

func TestValidationChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 5, nil)
	for _, c := range []struct {
		q     int
		email string
	}{{0, "a@example.com"}, {-1, "a@example.com"}, {11, "a@example.com"}, {1, "not-an-email"}, {1, "A <a@example.com>"}, {1, ""},
		// Control and bidirectional-override characters hide or reorder what a person reads.
		{1, "moc.elpmaxe\u202e@example.com"}, {1, "a\u2066b@example.com"}, {1, "a@exa\u202emple.com"}} {
		_, _, err := e.hold("k", "s", c.q, c.email)
		if boxoffice.ErrorCode(err) != boxoffice.EVALIDATION {
			t.Errorf("q=%d email=%q: got %v, want validation_failed", c.q, c.email, err)
		}
	}
	// The key was not used up by the invalid requests.
	res, replayed, err := e.hold("k", "s", 1, "a@example.com")
	want(t, res, err, 201, "")
	if replayed {
		t.Fatal("an invalid request was stored under the key")
	}
}

// gate is a payment provider that waits until opened, then answers as the simulator would.
type gate struct {
	boxoffice.Payments
	open chan struct{}
}

func (g *gate) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Payments.Charge(ctx, req)
}

func TestInProgressThenReplay(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	e := newEnv(t, func(c *sale.Config) { g.Payments = c.Payments; c.Payments = g })
	e.show("s", 5, nil)
	type answer struct {
		res *boxoffice.Response
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, _, err := e.purchase("k", "s", 1, "tok_ok")
		done <- answer{res, err}
	}()
	// Only once the first request is paying may the second one come, else the second would be first.
	e.waitPending(1)
	eventually(t, "the second request to see the first in progress", func() bool {
		_, _, err := e.purchase("k", "s", 1, "tok_ok")
		if be := boxoffice.AsError(err); be != nil && be.Code == boxoffice.EIDEMINPROGRESS {
			// The first request answers within the sync budget (3s here): that is when to retry,
			// not when its lease, which also covers a dead process, runs out.
			if be.RetryAfter < time.Second || be.RetryAfter > 3*time.Second {
				t.Errorf("Retry-After %v, want 1s to the 3s sync budget", be.RetryAfter)
			}
			return true
		}
		return false
	})
	// A different body wins over in-progress: 422 before 409.
	if _, _, err := e.purchase("k", "s", 2, "tok_ok"); boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("mismatch while in flight: %v", err)
	}
	close(g.open)
	a := <-done
	want(t, a.res, a.err, 201, "")
	again, replayed, err := e.purchase("k", "s", 1, "tok_ok")
	want(t, again, err, 201, "")
	if !replayed || string(again.Body) != string(a.res.Body) {
		t.Fatal("not replayed byte for byte")
	}
	// What /metrics counts: the one replay, and the 409s the polling above met (at least one);
	// the 422 is neither.
	if replays, inProgress := e.svc.IdempotencyStats(); replays != 1 || inProgress < 1 {
		t.Errorf("IdempotencyStats = %d replays, %d in progress; want 1 and at least 1", replays, inProgress)
	}
	if n := len(e.sim.Charges()); n != 1 {
		t.Fatalf("%d charges", n)
	}
	e.verify()
}

func TestSlowPaymentAnswers202ThenSettles(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.SyncBudget = 100 * time.Millisecond })
	e.show("s", 5, nil)
	res, _, err := e.purchase("k", "s", 2, "tok_slow")
	want(t, res, err, 202, "")
	o := decode[boxoffice.Order](t, res)
	if o.Status != boxoffice.OrderPendingPayment || res.Location != "/v1/orders/"+o.ID {
		t.Fatalf("202 body %s location %q", res.Body, res.Location)
	}
	eventually(t, "the order to settle", func() bool {
		got, err := e.svc.GetOrder(context.Background(), boxoffice.AdminPrincipal, o.ID)
		return err == nil && got.Status == boxoffice.OrderConfirmed && len(got.Tickets) == 2
	})
	if c := e.tier("s"); c.Sold != 2 || c.Held != 0 {
		t.Fatalf("after settling: %+v", c)
	}
	// The stored answer stays the 202 the client got.
	again, replayed, err := e.purchase("k", "s", 2, "tok_slow")
	if err != nil || !replayed || again.Status != 202 || string(again.Body) != string(res.Body) {
		t.Fatalf("replay after settle: %v %v %v", again, replayed, err)
	}
	e.verify()
}

// declineGate declines once opened.
type declineGate struct{ open chan struct{} }

func (d *declineGate) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	select {
	case <-d.open:
		return nil, boxoffice.Errorf(boxoffice.EPAYMENTDECLINED, "declined")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *declineGate) Refund(ctx context.Context, req boxoffice.RefundRequest) (*boxoffice.Refund, error) {
	return nil, fmt.Errorf("no refunds here")
}

func TestLateDeclineReturnsTickets(t *testing.T) {
	d := &declineGate{open: make(chan struct{})}
	e := newEnv(t, func(c *sale.Config) { c.Payments = d; c.SyncBudget = 50 * time.Millisecond })
	e.show("s", 5, nil)
	res, _, err := e.hold("h", "s", 3, "a@example.com")
	want(t, res, err, 201, "")
	h := decode[boxoffice.Hold](t, res)
	res, _, err = e.confirm("c", h.ID, "tok_any")
	want(t, res, err, 202, "")
	o := decode[boxoffice.Order](t, res)
	close(d.open)
	eventually(t, "the order to fail", func() bool {
		got, err := e.svc.GetOrder(context.Background(), boxoffice.AdminPrincipal, o.ID)
		return err == nil && got.Status == boxoffice.OrderPaymentFailed
	})
	// The buyer was told "pending" and left, so the failure gives the tickets back.
	if c := e.tier("s"); c.Held != 0 || c.Available != 5 {
		t.Fatalf("after late decline: %+v", c)
	}
	e.verify()
}

func TestDeclineKeepsHoldPurchaseDeclineReleases(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 5, nil)
	res, _, err := e.hold("h", "s", 2, "a@example.com")
	want(t, res, err, 201, "")
	h := decode[boxoffice.Hold](t, res)
	res, _, err = e.confirm("c1", h.ID, "tok_declined")
	want(t, res, err, 402, boxoffice.EPAYMENTDECLINED)
	if got, _ := e.svc.GetHold(context.Background(), boxoffice.AdminPrincipal, h.ID); got.Status != boxoffice.HoldActive {
		t.Fatalf("hold after decline: %+v", got)
	}
	res, _, err = e.confirm("c2", h.ID, "tok_ok")
	want(t, res, err, 201, "")
	o := decode[boxoffice.Order](t, res)
	if o.Status != boxoffice.OrderConfirmed || len(o.Tickets) != 2 || o.Amount.Amount != 5000 {
		t.Fatalf("order %s", res.Body)
	}
	res, _, err = e.confirm("c3", h.ID, "tok_ok")
	want(t, res, err, 409, boxoffice.EHOLDCONFIRMED)
	if err := e.svc.ReleaseHold(context.Background(), boxoffice.AdminPrincipal, h.ID); boxoffice.ErrorCode(err) != boxoffice.EHOLDCONFIRMED {
		t.Fatalf("release of a confirmed hold: %v", err)
	}

	res, _, err = e.purchase("p", "s", 3, "tok_declined")
	want(t, res, err, 402, boxoffice.EPAYMENTDECLINED)
	if c := e.tier("s"); c.Held != 0 || c.Sold != 2 {
		t.Fatalf("a declined purchase kept tickets: %+v", c)
	}
	e.verify()
}

func TestFlakyPaymentChargesOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 5, nil)
	res, _, err := e.purchase("k", "s", 1, "tok_flaky")
	want(t, res, err, 201, "")
	if n := len(e.sim.Charges()); n != 1 {
		t.Fatalf("flaky token made %d charges", n)
	}
	e.verify()
}

func TestHoldExpiresAtExpiresAtExactlyOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 3, nil)
	res, _, err := e.hold("h", "s", 3, "a@example.com")
	want(t, res, err, 201, "")
	h := decode[boxoffice.Hold](t, res)
	if !h.ExpiresAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("expires_at %v", h.ExpiresAt)
	}
	e.clock.Advance(time.Minute - time.Millisecond)
	if n, err := e.svc.ExpireDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("expired before expires_at: %d %v", n, err)
	}
	if c := e.tier("s"); c.Available != 0 {
		t.Fatalf("tickets back early: %+v", c)
	}
	e.clock.Advance(time.Millisecond)
	res, _, err = e.confirm("c", h.ID, "tok_ok")
	want(t, res, err, 410, boxoffice.EHOLDEXPIRED)
	if n, err := e.svc.ExpireDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("at expires_at: %d %v", n, err)
	}
	if n, err := e.svc.ExpireDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("expired twice: %d %v", n, err)
	}
	if c := e.tier("s"); c.Available != 3 || c.Held != 0 {
		t.Fatalf("after expiry: %+v", c)
	}
	got, _ := e.svc.GetHold(context.Background(), boxoffice.AdminPrincipal, h.ID)
	if got.Status != boxoffice.HoldExpired {
		t.Fatalf("status %s", got.Status)
	}
	if err := e.svc.ReleaseHold(context.Background(), boxoffice.AdminPrincipal, h.ID); err != nil {
		t.Fatalf("release of an expired hold: %v", err)
	}
	evs, _, err := e.svc.ListEvents(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	expired := 0
	for _, ev := range evs {
		if ev.Type == boxoffice.EventHoldExpired {
			expired++
		}
	}
	if expired != 1 {
		t.Fatalf("%d hold.expired events", expired)
	}
	e.verify()
}

// blockPayments never answers until the context ends, like a provider the process dies waiting on.
type blockPayments struct{ boxoffice.Payments }

func (blockPayments) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCrashMidPurchaseResumes(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.Payments = blockPayments{c.Payments} })
	e.show("s", 4, nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := e.purchase("k", "s", 2, "tok_ok")
		done <- err
	}()
	e.waitPending(1)
	e.close() // the process dies: the answer is never stored
	if err := <-done; err == nil {
		t.Fatal("the purchase answered although its process died")
	}
	// Restart with a working provider: the completer charges with the same key and settles.
	e.cfg.Payments = e.sim
	e.cfg.ExclusiveStore = true
	e.open()
	if err := e.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the crashed purchase to settle", func() bool { return e.tier("s").Sold == 2 })
	res, replayed, err := e.purchase("k", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	if !replayed {
		t.Fatal("the retry after the crash was not a replay")
	}
	if n := len(e.sim.Charges()); n != 1 {
		t.Fatalf("%d charges", n)
	}
	e.verify()
}

func TestCancelRefundsOnceAndReturnsTickets(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 4, nil)
	res, _, err := e.purchase("p", "s", 3, "tok_ok")
	want(t, res, err, 201, "")
	o := decode[boxoffice.Order](t, res)
	cancel := func(key string) (*boxoffice.Response, bool, error) {
		return e.svc.CancelOrder(context.Background(), boxoffice.AdminPrincipal, idem("cancel "+o.ID, key, nil), o.ID)
	}
	c1, _, err := cancel("c1")
	want(t, c1, err, 200, "")
	if got := decode[boxoffice.Order](t, c1); got.Status != boxoffice.OrderCancelled {
		t.Fatalf("cancel: %s", c1.Body)
	}
	c2, _, err := cancel("c2")
	want(t, c2, err, 200, "")
	if string(c2.Body) != string(c1.Body) {
		t.Fatalf("second cancel differs:\n%s\n%s", c1.Body, c2.Body)
	}
	if c := e.tier("s"); c.Sold != 0 || c.Available != 4 {
		t.Fatalf("after cancel: %+v", c)
	}
	refunds := 0
	for _, c := range e.sim.Charges() {
		if c.Refunded {
			refunds++
		}
	}
	if refunds != 1 {
		t.Fatalf("%d refunds", refunds)
	}
	e.verify()
}

// TestCancelWindow: a show that closes its cancel window an hour before it starts refunds a cancel
// until then, and refuses one after with 409 cancel_window_closed, refunding nothing and keeping
// the tickets sold; the refusal replays under its key.
func TestCancelWindow(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 4, func(in *sale.ShowInput) {
		in.StartsAt = ptr(e.clock.Now().Add(2 * time.Hour))
		in.CancelCutoffSeconds = ptr(3600)
	})
	if s, err := e.svc.GetShow(context.Background(), "s"); err != nil || s.CancelCutoffSeconds == nil || *s.CancelCutoffSeconds != 3600 {
		t.Fatalf("show %+v, %v; want the cutoff stored", s, err)
	}
	var orders []boxoffice.Order
	for _, key := range []string{"p1", "p2"} {
		res, _, err := e.purchase(key, "s", 1, "tok_ok")
		want(t, res, err, 201, "")
		orders = append(orders, decode[boxoffice.Order](t, res))
	}
	cancel := func(o boxoffice.Order, key string) (*boxoffice.Response, bool, error) {
		return e.svc.CancelOrder(context.Background(), boxoffice.AdminPrincipal, idem("cancel "+o.ID, key, nil), o.ID)
	}
	res, _, err := cancel(orders[0], "c1")
	want(t, res, err, 200, "")
	e.clock.Advance(time.Hour) // the window closes now
	res, _, err = cancel(orders[1], "c2")
	want(t, res, err, 409, boxoffice.ECANCELWINDOW)
	again, replayed, err := cancel(orders[1], "c2")
	want(t, again, err, 409, boxoffice.ECANCELWINDOW)
	if !replayed || string(again.Body) != string(res.Body) {
		t.Errorf("the refusal did not replay byte for byte")
	}
	refunds := 0
	for _, c := range e.sim.Charges() {
		if c.Refunded {
			refunds++
		}
	}
	if c := e.tier("s"); refunds != 1 || c.Sold != 1 {
		t.Fatalf("%d refunds, tier %+v; want the one cancel in the window refunded", refunds, c)
	}
	_, _, err = e.svc.PutShow(context.Background(), "bad", sale.ShowInput{Name: "B", StartsAt: ptr(e.clock.Now()),
		CancelCutoffSeconds: ptr(-1), Tiers: []sale.TierInput{{ID: "a", Name: "A", Capacity: ptr(1), Price: &boxoffice.Money{Amount: 1, Currency: "EUR"}}}})
	if be := boxoffice.AsError(err); be == nil || be.Code != boxoffice.EVALIDATION || be.Fields[0].Field != "cancel_cutoff_seconds" {
		t.Errorf("a negative cutoff: %v; want validation_failed on cancel_cutoff_seconds", err)
	}
	e.verify()
}

func TestBuyerLimit(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 10, func(in *sale.ShowInput) { in.MaxPerBuyer = ptr(3) })
	res, _, err := e.hold("a", "s", 2, "x@example.com")
	want(t, res, err, 201, "")
	res, _, err = e.hold("b", "s", 2, "x@example.com")
	want(t, res, err, 409, boxoffice.EBUYERLIMIT)
	res, _, err = e.hold("c", "s", 2, "y@example.com")
	want(t, res, err, 201, "")
	if c := e.tier("s"); c.Held != 4 {
		t.Fatalf("held %d", c.Held)
	}
}

func TestPutShowGuardsCounts(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	in := sale.ShowInput{Name: "S", StartsAt: ptr(time.Now()), Tiers: []sale.TierInput{
		{ID: "a", Name: "A", Capacity: ptr(10), Price: &boxoffice.Money{Amount: 1, Currency: "EUR"}},
		{ID: "b", Name: "B", Capacity: ptr(10), Price: &boxoffice.Money{Amount: 1, Currency: "EUR"}},
	}}
	_, created, err := e.svc.PutShow(ctx, "s", in)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	hin := sale.HoldInput{ShowID: "s", TierID: "a", Quantity: 5, Buyer: sale.BuyerInput{Email: "a@example.com"}}
	if res, _, err := e.svc.CreateHold(ctx, boxoffice.AdminPrincipal, idem("h", "k", hin), hin); err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	in.Tiers[0].Capacity = ptr(4)
	if _, _, err := e.svc.PutShow(ctx, "s", in); boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT {
		t.Fatalf("shrink below held: %v", err)
	}
	in.Tiers = in.Tiers[1:]
	if _, _, err := e.svc.PutShow(ctx, "s", in); boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT {
		t.Fatalf("remove a tier with holds: %v", err)
	}
	in.Tiers = []sale.TierInput{{ID: "a", Name: "A2", Capacity: ptr(5), Price: &boxoffice.Money{Amount: 2, Currency: "EUR"}}}
	show, created, err := e.svc.PutShow(ctx, "s", in)
	if err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	if len(show.Tiers) != 1 || show.Tiers[0].Held != 5 || show.Tiers[0].Available != 0 || show.Tiers[0].Name != "A2" {
		t.Fatalf("replaced show: %+v", show.Tiers)
	}
	_, _, err = e.svc.PutShow(ctx, "s", sale.ShowInput{Name: "", Tiers: nil})
	if be := boxoffice.AsError(err); be == nil || be.Code != boxoffice.EVALIDATION || len(be.Fields) < 3 {
		t.Fatalf("invalid show: %v", err)
	}
}

// TestNamesRefuseControlAndBidiCharacters: show and tier names are shown to people, so control
// and bidirectional-override characters are refused, and nothing is stored.
func TestNamesRefuseControlAndBidiCharacters(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tier := func(name string) []sale.TierInput {
		return []sale.TierInput{{ID: "a", Name: name, Capacity: ptr(5), Price: &boxoffice.Money{Amount: 2, Currency: "EUR"}}}
	}
	starts := ptr(time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		in    sale.ShowInput
		field string
	}{
		{sale.ShowInput{Name: "Gala\u202eadmin", StartsAt: starts, Tiers: tier("A")}, "name"},
		{sale.ShowInput{Name: "Gala\nFree tickets", StartsAt: starts, Tiers: tier("A")}, "name"},
		{sale.ShowInput{Name: "Gala", StartsAt: starts, Tiers: tier("Stalls\u2067")}, "tiers[0].name"},
	} {
		_, _, err := e.svc.PutShow(ctx, "bidi", c.in)
		be := boxoffice.AsError(err)
		if be == nil || be.Code != boxoffice.EVALIDATION || len(be.Fields) != 1 || be.Fields[0].Field != c.field {
			t.Errorf("PutShow %+v: %v; want validation_failed on %s", c.in, err, c.field)
		}
	}
	if _, err := e.svc.GetShow(ctx, "bidi"); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		t.Errorf("a refused show was stored: %v", err)
	}
	if _, _, err := e.svc.PutShow(ctx, "bidi", sale.ShowInput{Name: "Gala — «première» ✓", StartsAt: starts, Tiers: tier("Parterre")}); err != nil {
		t.Errorf("a name in plain Unicode was refused: %v", err)
	}
}

func TestVerifyNamesViolations(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 2, nil)
	ctx := context.Background()
	// Corrupt the counts behind the service's back: held without a hold.
	err := e.store.Update(ctx, func(tx boxoffice.Tx) error {
		_, _, err := tx.AddTierCounts(ctx, "s", "ga", 1, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := sale.Verify(ctx, e.store, []sale.LedgerCharge{{Key: "ord_nope/charge", ChargeID: "ch_x", Succeeded: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 2 {
		t.Fatalf("want the held mismatch and the orphan charge, got %q", bad)
	}
}

func TestAPIKeys(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	p, err := e.svc.Authenticate(ctx, "adm")
	if err != nil || p.Role != boxoffice.RoleAdmin {
		t.Fatalf("admin: %v %v", p, err)
	}
	in := sale.APIKeyInput{Role: boxoffice.RoleClient}
	res, _, err := e.svc.CreateAPIKey(ctx, idem("key", "k", in), in)
	want(t, res, err, 201, "")
	k := decode[sale.CreatedAPIKey](t, res)
	p, err = e.svc.Authenticate(ctx, k.Key)
	if err != nil || p.Role != boxoffice.RoleClient || p.KeyID != k.ID {
		t.Fatalf("client: %+v %v", p, err)
	}
	if _, err := e.svc.Authenticate(ctx, k.Key+"x"); boxoffice.ErrorCode(err) != boxoffice.EUNAUTHORIZED {
		t.Fatalf("unknown key: %v", err)
	}
	var raw map[string]any
	_ = json.Unmarshal(res.Body, &raw)
	if raw["role"] != "client" || raw["id"] == "" {
		t.Fatalf("body %s", res.Body)
	}
}

func TestIdempotencyRecordsAreSweptAfterTTL(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.IdempotencyTTL = time.Hour })
	e.show("s", 5, nil)
	first, _, err := e.hold("k", "s", 1, "a@example.com")
	want(t, first, err, 201, "")
	e.clock.Advance(time.Hour - time.Second)
	if n, err := e.svc.SweepIdempotency(context.Background()); err != nil || n != 0 {
		t.Fatalf("swept before the TTL: %d %v", n, err)
	}
	if _, replayed, _ := e.hold("k", "s", 1, "a@example.com"); !replayed {
		t.Fatal("a key within its TTL was not replayed")
	}
	e.clock.Advance(2 * time.Second)
	if n, err := e.svc.SweepIdempotency(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep after the TTL: %d %v", n, err)
	}
	// Past its TTL the key is new again: the same request makes a second hold.
	again, replayed, err := e.hold("k", "s", 1, "a@example.com")
	want(t, again, err, 201, "")
	if replayed || string(again.Body) == string(first.Body) {
		t.Fatal("a swept key still replayed")
	}
}

// TestPurchaseSeesShowChangesAtOnce: the purchase path keeps recently read shows, and a change
// made through the service reaches it before the change's answer does — a new price is charged,
// a removed tier is not found, a tier added is sold.
func TestPurchaseSeesShowChangesAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 10, nil)
	res, _, err := e.purchase("a", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	if o := decode[boxoffice.Order](t, res); o.Amount.Amount != 5000 {
		t.Fatalf("first order amount %d, want 5000", o.Amount.Amount)
	}
	e.show("s", 10, func(in *sale.ShowInput) { in.Tiers[0].Price = &boxoffice.Money{Amount: 3000, Currency: "EUR"} })
	res, _, err = e.purchase("b", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	if o := decode[boxoffice.Order](t, res); o.Amount.Amount != 6000 {
		t.Errorf("order after the price change: amount %d, want 6000", o.Amount.Amount)
	}
	e.show("s", 10, func(in *sale.ShowInput) {
		in.Tiers[0].Capacity = ptr(4) // the 4 sold stay
		in.Tiers = append(in.Tiers, sale.TierInput{ID: "vip", Name: "VIP", Capacity: ptr(2), Price: &boxoffice.Money{Amount: 9000, Currency: "EUR"}})
	})
	res, _, err = e.purchase("c", "s", 1, "tok_ok")
	want(t, res, err, 409, boxoffice.ESOLDOUT)
	in := sale.PurchaseInput{ShowID: "s", TierID: "vip", Quantity: 1, Buyer: sale.BuyerInput{Email: "v@example.com"}, Payment: sale.PaymentInput{Token: "tok_ok"}}
	res, _, err = e.svc.Purchase(context.Background(), boxoffice.AdminPrincipal, idem("purchase", "d", in), in)
	want(t, res, err, 201, "")
	e.verify()
}

// TestSoldOutFromMemory: with the actor on a store this process alone writes, a purchase for more
// than the tier's committed counts leave is refused from memory, without reaching the strategy,
// with the stored, replayable answer; with other writers possible (ExclusiveStore unset) the
// refusal comes from the strategy.
func TestSoldOutFromMemory(t *testing.T) {
	for _, exclusive := range []bool{true, false} {
		t.Run(fmt.Sprintf("exclusive=%v", exclusive), func(t *testing.T) {
			e := newEnvOf(t, true, func(c *sale.Config) { c.ExclusiveStore = exclusive })
			e.show("s", 3, nil)
			res, _, err := e.purchase("p1", "s", 2, "tok_ok")
			want(t, res, err, 201, "")
			before := e.reservations.Load()
			for i := range 10 {
				res, _, err = e.purchase(fmt.Sprintf("late-%d", i), "s", 2, "tok_ok")
				want(t, res, err, 409, boxoffice.ESOLDOUT)
				var p struct{ Available *int }
				if json.Unmarshal(res.Body, &p) != nil || p.Available == nil || *p.Available != 1 {
					t.Fatalf("sold_out answer without available=1: %s", res.Body)
				}
			}
			reached := e.reservations.Load() - before
			if exclusive && reached != 0 {
				t.Errorf("%d refusals reached the strategy; want 0 on a store this process alone writes", reached)
			}
			if !exclusive && reached == 0 {
				t.Error("no refusal reached the strategy although other processes may write the store")
			}
			again, replayed, err := e.purchase("late-0", "s", 2, "tok_ok")
			if err != nil || !replayed || again.Status != 409 {
				t.Fatalf("retry of a sold_out purchase: %+v replayed=%v %v", again, replayed, err)
			}
			res, _, err = e.purchase("p2", "s", 1, "tok_ok")
			want(t, res, err, 201, "")
			if c := e.tier("s"); c.Sold != 3 || c.Held != 0 {
				t.Errorf("tier after the sale: %+v, want 3 sold", c)
			}
			e.verify()
		})
	}
}

// TestRetryAfterSettleGetsTheDriversAnswer: a retry that read its order pending a moment before
// the order's driver settled it asks for the driver after that one has ended. It gets the
// settled answer from the driver that stored it, and no second driver runs (which would replay
// the charge and have its settle refused).
func TestRetryAfterSettleGetsTheDriversAnswer(t *testing.T) {
	e := newEnv(t, nil)
	e.show("s", 5, nil)
	res, _, err := e.purchase("p1", "s", 1, "tok_ok")
	if err != nil || res.Status != 201 {
		t.Fatalf("purchase: %v %+v", err, res)
	}
	o := decode[boxoffice.Order](t, res)
	var order *boxoffice.Order
	if err := e.store.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		order, err = tx.GetOrder(context.Background(), o.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The order as the retry read it: still pending.
	order.Status = boxoffice.OrderPendingPayment
	again := e.svc.DriveAndWait(order)
	if again == nil || again.Status != 201 || !bytes.Equal(again.Body, res.Body) {
		t.Fatalf("the retry's driver answered %+v, want the settled order's 201 %s", again, res.Body)
	}
	e.verify()
}
