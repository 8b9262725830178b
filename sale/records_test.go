package sale_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

// countingStore counts the transactions the service opens; while gate is set, the first Update
// waits for it to close.
type countingStore struct {
	boxoffice.Store
	updates, views atomic.Int64
	gate           chan struct{}
}

func (c *countingStore) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	if c.updates.Add(1) == 1 && c.gate != nil {
		<-c.gate
	}
	return c.Store.Update(ctx, fn)
}

func (c *countingStore) View(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, fn)
}

func (c *countingStore) transactions() int64 { return c.updates.Load() + c.views.Load() }

// soldOutEnv is an actor-strategy service on a store it alone writes, whose show "s" is sold out,
// with the service's transactions counted from then on.
func soldOutEnv(t *testing.T, gate chan struct{}) (*env, *countingStore) {
	e := newEnvOf(t, true, func(c *sale.Config) { c.ExclusiveStore = true })
	cs := &countingStore{}
	e.close()
	e.wrap = func(s boxoffice.Store) boxoffice.Store { cs.Store = s; return cs }
	e.open()
	e.show("s", 3, nil)
	res, _, err := e.purchase("buys-all", "s", 3, "tok_ok")
	want(t, res, err, 201, "")
	cs.updates.Store(0)
	cs.views.Store(0)
	cs.gate = gate
	return e, cs
}

// TestReplayOfARecentKeyTouchesNoStore: a retry of a key this process answered lately is
// answered from memory — the same bytes, replayed — without a transaction, and a different
// request under the key is refused as reused, also without one; after a restart (memory gone)
// the store gives the same answers, so the memory only ever said what the store says.
func TestReplayOfARecentKeyTouchesNoStore(t *testing.T) {
	e, cs := soldOutEnv(t, nil)
	first, replayed, err := e.purchase("late", "s", 2, "tok_ok")
	want(t, first, err, 409, boxoffice.ESOLDOUT)
	if replayed {
		t.Fatal("the first answer is marked replayed")
	}
	bought, _, err := e.purchase("buys-all", "s", 3, "tok_ok")
	want(t, bought, err, 201, "")

	before := cs.transactions()
	for range 3 {
		again, replayed, err := e.purchase("late", "s", 2, "tok_ok")
		if err != nil || !replayed || again.Status != 409 || !bytes.Equal(again.Body, first.Body) {
			t.Fatalf("replay of the refusal: %+v replayed=%v %v; first %s", again, replayed, err, first.Body)
		}
		again, replayed, err = e.purchase("buys-all", "s", 3, "tok_ok")
		if err != nil || !replayed || again.Status != 201 || !bytes.Equal(again.Body, bought.Body) {
			t.Fatalf("replay of the purchase: %+v replayed=%v %v", again, replayed, err)
		}
	}
	_, _, err = e.purchase("late", "s", 1, "tok_ok")
	if boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("the key with another request: %v, want %s", err, boxoffice.EIDEMREUSED)
	}
	if n := cs.transactions() - before; n != 0 {
		t.Errorf("replays of recent keys opened %d store transactions, want 0", n)
	}

	e.close()
	e.open()
	again, replayed, err := e.purchase("late", "s", 2, "tok_ok")
	if err != nil || !replayed || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("replay after a restart: %+v replayed=%v %v", again, replayed, err)
	}
	if _, _, err := e.purchase("late", "s", 1, "tok_ok"); boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("the key with another request after a restart: %v", err)
	}
}

// TestRecentAnswerForgottenWithItsRecord: the memory of a key's answer does not outlive its
// record by the service's clock, so a key swept after its TTL is new again here too.
func TestRecentAnswerForgottenWithItsRecord(t *testing.T) {
	e := newEnvOf(t, true, func(c *sale.Config) { c.ExclusiveStore = true; c.IdempotencyTTL = time.Hour })
	e.show("s", 5, nil)
	first, _, err := e.purchase("k", "s", 1, "tok_ok")
	want(t, first, err, 201, "")
	e.clock.Advance(time.Hour + time.Second)
	if n, err := e.svc.SweepIdempotency(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep after the TTL: %d %v", n, err)
	}
	again, replayed, err := e.purchase("k", "s", 1, "tok_ok")
	want(t, again, err, 201, "")
	if replayed || bytes.Equal(again.Body, first.Body) {
		t.Fatal("a swept key was replayed from memory")
	}
}

// TestSoldOutRefusalsShareATransaction: a stampede's sold-out refusals are answered from the
// strategy's counts without reading the store, and their records — durable before each answer —
// share transactions: while one is being written, every refusal that comes waits for the next,
// which writes them all. Each key then replays its own refusal, also after a restart.
func TestSoldOutRefusalsShareATransaction(t *testing.T) {
	gate := make(chan struct{})
	e, cs := soldOutEnv(t, gate)
	const n = 40
	answers := make([]*boxoffice.Response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	purchase := func(i int) {
		defer wg.Done()
		answers[i], _, errs[i] = e.purchase(fmt.Sprintf("late-%d", i), "s", 1, "tok_ok")
	}
	wg.Add(1)
	go purchase(0) // its record's transaction waits at the gate
	eventually(t, "the first refusal's transaction to start", func() bool { return cs.updates.Load() == 1 })
	for i := 1; i < n; i++ {
		wg.Add(1)
		go purchase(i)
	}
	eventually(t, "the other refusals to queue", func() bool { return e.svc.QueuedRecords() == n-1 })
	close(gate)
	wg.Wait()
	for i := range n {
		want(t, answers[i], errs[i], 409, boxoffice.ESOLDOUT)
	}
	if got := cs.updates.Load(); got != 2 {
		t.Errorf("%d refusals took %d transactions, want 2 (the first, then all that queued behind it)", n, got)
	}
	if got := cs.views.Load(); got != 0 {
		t.Errorf("sold-out refusals read the store %d times, want 0", got)
	}

	e.close()
	e.open()
	for i := range n {
		again, replayed, err := e.purchase(fmt.Sprintf("late-%d", i), "s", 1, "tok_ok")
		if err != nil || !replayed || !bytes.Equal(again.Body, answers[i].Body) {
			t.Fatalf("late-%d after a restart: %+v replayed=%v %v", i, again, replayed, err)
		}
	}
	if c := e.tier("s"); c.Sold != 3 || c.Held != 0 {
		t.Errorf("tier after the stampede: %+v, want 3 sold", c)
	}
}

// TestSoldOutAnswersFollowTheCounts: refusals from memory are rendered once per (tier, tickets
// left, tickets asked) and kept; each answer still says what is left and what was asked at the
// time, as a refusal rendered afresh would.
func TestSoldOutAnswersFollowTheCounts(t *testing.T) {
	e := newEnvOf(t, true, func(c *sale.Config) { c.ExclusiveStore = true })
	e.show("s", 3, nil)
	res, _, err := e.purchase("p1", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	check := func(key string, quantity, available int) {
		t.Helper()
		res, _, err := e.purchase(key, "s", quantity, "tok_ok")
		want(t, res, err, 409, boxoffice.ESOLDOUT)
		p := decode[struct {
			Available *int
			Detail    string
		}](t, res)
		wantDetail := fmt.Sprintf("only %d tickets of tier ga are left, %d asked", available, quantity)
		if p.Available == nil || *p.Available != available || p.Detail != wantDetail {
			t.Fatalf("%s: %s; want available %d and %q", key, res.Body, available, wantDetail)
		}
	}
	check("a", 2, 1)
	check("b", 2, 1)
	check("c", 3, 1)
	res, _, err = e.purchase("p2", "s", 1, "tok_ok")
	want(t, res, err, 201, "")
	check("d", 2, 0)
	check("e", 1, 0)
}
