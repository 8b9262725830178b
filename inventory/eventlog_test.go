package inventory

// Tests of the eventlog strategy beyond the conformance suite (which runs it through
// TestConformance/eventlog): the stream against the tiers rows, the projector against a replay and
// a restart, expected-version conflicts, and the lag the view reports. They are internal tests so
// that they can pause the projector and shorten its timings.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/inventory/inventorytest"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	"boxoffice/sale"
	"boxoffice/sqlite"
)

// elHarness runs the eventlog strategy with cfg over SQLite files in the test's temp dir.
func elHarness(cfg eventLogConfig) inventorytest.Harness {
	return inventorytest.Harness{
		OpenStore: func(t *testing.T, dir string) boxoffice.Store {
			st, err := sqlite.Open(context.Background(), dir+"/x.db")
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		NewInventory: func(t *testing.T, store boxoffice.Store) boxoffice.Inventory {
			return newEventLog(store, Options{}, cfg)
		},
	}
}

// elTestConfig polls often, so that tests that wait for the view do not wait long.
func elTestConfig() eventLogConfig {
	cfg := defaultEventLogConfig
	cfg.poll = 20 * time.Millisecond
	cfg.discover = 100 * time.Millisecond
	cfg.page = 7      // small pages, so that folds cross page boundaries
	cfg.pollBatch = 1 // and polls take turns
	return cfg
}

func elCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func elInv(t *testing.T, w *inventorytest.World) *EventLog {
	t.Helper()
	e, ok := w.Inv.(*EventLog)
	if !ok {
		t.Fatalf("inventory is %T, want *EventLog", w.Inv)
	}
	return e
}

func elHold(w *inventorytest.World, key, show, tier string, q int) (*boxoffice.Response, error) {
	in := sale.HoldInput{ShowID: show, TierID: tier, Quantity: q, Buyer: sale.BuyerInput{Email: key + "@example.com"}}
	res, _, err := w.Svc.CreateHold(context.Background(), boxoffice.AdminPrincipal, inventorytest.Idem("hold "+show, key, in), in)
	return res, err
}

func elPurchase(w *inventorytest.World, key, show, tier string, q int, token string) (*boxoffice.Response, error) {
	in := sale.PurchaseInput{ShowID: show, TierID: tier, Quantity: q, Buyer: sale.BuyerInput{Email: "p@example.com"}, Payment: sale.PaymentInput{Token: token}}
	res, _, err := w.Svc.Purchase(context.Background(), boxoffice.AdminPrincipal, inventorytest.Idem("purchase", key, in), in)
	return res, err
}

// elPutShow sets a show's tiers: id → capacity.
func elPutShow(w *inventorytest.World, show string, ttl int, tiers map[string]int) error {
	starts := time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC)
	in := sale.ShowInput{Name: "Show " + show, StartsAt: &starts, HoldTTLSeconds: &ttl}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if c, ok := tiers[id]; ok {
			in.Tiers = append(in.Tiers, sale.TierInput{ID: id, Name: "Tier " + id, Capacity: &c, Price: &boxoffice.Money{Amount: 5000, Currency: "EUR"}})
		}
	}
	_, _, err := w.Svc.PutShow(context.Background(), show, in)
	return err
}

// elStreamCheck folds the raw stream of a show (independently of the strategy's fold: sums of
// deltas) and compares it with the show's tiers rows, both read in one snapshot. It returns the
// head and a description of every disagreement.
func elStreamCheck(ctx context.Context, store boxoffice.Store, showID string) (head int64, bad []string, err error) {
	type sum struct{ held, sold, capacity int }
	sums := map[string]*sum{}
	err = store.View(ctx, func(tx boxoffice.Tx) error {
		bad, sums = nil, map[string]*sum{}
		var evs []*boxoffice.InventoryEvent
		for {
			page, err := tx.InventoryEvents(ctx, showID, int64(len(evs)), 100)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			evs = append(evs, page...)
		}
		if head, err = tx.InventoryHead(ctx, showID); err != nil {
			return err
		}
		if int64(len(evs)) != head {
			bad = append(bad, fmt.Sprintf("stream has %d events but head %d", len(evs), head))
		}
		for i, ev := range evs {
			if ev.Version != int64(i+1) {
				bad = append(bad, fmt.Sprintf("event %d has version %d", i+1, ev.Version))
			}
			s := sums[ev.TierID]
			if s == nil {
				s = &sum{}
				sums[ev.TierID] = s
			}
			s.held += ev.Held
			s.sold += ev.Sold
			s.capacity = ev.Capacity
			if s.held != ev.HeldAfter || s.sold != ev.SoldAfter {
				bad = append(bad, fmt.Sprintf("v%d tier %s: deltas sum to held=%d sold=%d, event says %d/%d", ev.Version, ev.TierID, s.held, s.sold, ev.HeldAfter, ev.SoldAfter))
			}
			if ev.Capacity == EventLogTierRemoved {
				if s.held != 0 || s.sold != 0 {
					bad = append(bad, fmt.Sprintf("v%d removes tier %s with held=%d sold=%d", ev.Version, ev.TierID, s.held, s.sold))
				}
				delete(sums, ev.TierID)
			}
		}
		show, err := tx.GetShow(ctx, showID)
		if err != nil {
			return err
		}
		for _, t := range show.Tiers {
			s := sums[t.ID]
			if s == nil {
				bad = append(bad, fmt.Sprintf("tier %s is not in the stream", t.ID))
				continue
			}
			if s.held != t.Held || s.sold != t.Sold || s.capacity != t.Capacity {
				bad = append(bad, fmt.Sprintf("tier %s: stream folds to held=%d sold=%d capacity=%d, the row has %d/%d/%d", t.ID, s.held, s.sold, s.capacity, t.Held, t.Sold, t.Capacity))
			}
		}
		if len(sums) != len(show.Tiers) {
			bad = append(bad, fmt.Sprintf("stream has %d live tiers, the show %d", len(sums), len(show.Tiers)))
		}
		return nil
	})
	return head, bad, err
}

func elRequireStreamMatches(t *testing.T, store boxoffice.Store, showID string) int64 {
	t.Helper()
	head, bad, err := elStreamCheck(elCtx(t), store, showID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("show %s: %s", showID, b)
	}
	return head
}

// elSame compares the parts of two views that a fold determines (not the lag, which depends on
// when one looks).
func elSame(t *testing.T, what string, got, want EventLogView) {
	t.Helper()
	g, w := got, want
	g.LagAge, w.LagAge = 0, 0
	if g.ShowID != w.ShowID || g.Version != w.Version || !g.At.Equal(w.At) || g.Head != w.Head || g.Lag != w.Lag ||
		g.Discontinuities != w.Discontinuities || g.Diverged != w.Diverged || fmt.Sprint(g.Tiers) != fmt.Sprint(w.Tiers) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// elRequireViewMatchesShow checks a caught-up view against the show's tiers rows.
func elRequireViewMatchesShow(t *testing.T, w *inventorytest.World, v EventLogView) {
	t.Helper()
	show, err := w.Svc.GetShow(context.Background(), v.ShowID)
	if err != nil {
		t.Fatal(err)
	}
	if len(show.Tiers) != len(v.Tiers) {
		t.Fatalf("view has %d tiers, show %d: %+v", len(v.Tiers), len(show.Tiers), v)
	}
	for _, vt := range v.Tiers {
		st := show.Tier(vt.ID)
		if st == nil || st.Capacity != vt.Capacity || st.Held != vt.Held || st.Sold != vt.Sold || st.Available != vt.Available {
			t.Errorf("view tier %+v, show tier %+v", vt, st)
		}
	}
	if v.Lag != 0 || v.LagAge != 0 || v.Discontinuities != 0 || v.Diverged {
		t.Errorf("caught-up view: %+v", v)
	}
}

// TestEventLogWorkloadReplayRestart runs a mixed workload through the sale service (holds,
// purchases, confirms, declines, releases, cancels, expiry, and capacity and tier changes at the
// same time), checking while it runs that every snapshot's stream folds to its tiers rows and that
// the store keeps every guarantee; then the live view, a replay of the stream and the view of a
// restarted strategy must all be the same and equal the tiers rows.
func TestEventLogWorkloadReplayRestart(t *testing.T) {
	elWorkloadReplayRestart(t, elHarness(elTestConfig()))
}

func elWorkloadReplayRestart(t *testing.T, h inventorytest.Harness) {
	w := inventorytest.NewWorld(t, h)
	ctx := elCtx(t)
	w.Show("mix", 30, 6, 4, 9)
	w.Show("calm", 600, 5)

	stop := make(chan struct{})
	var checker sync.WaitGroup
	checker.Go(func() {
		for checks := 0; ; checks++ {
			for _, show := range []string{"mix", "calm"} {
				_, bad, err := elStreamCheck(ctx, w.Store, show)
				if err != nil {
					t.Errorf("check: %v", err)
					return
				}
				for _, b := range bad {
					t.Errorf("during the workload, show %s: %s", show, b)
				}
			}
			if !w.Check() {
				return
			}
			select {
			case <-stop:
				t.Logf("%d snapshots checked during the workload", checks+1)
				return
			default:
			}
		}
	})

	var wg sync.WaitGroup
	for worker := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(worker), 11))
			var holds, orders []string
			for i := range 40 {
				key := fmt.Sprintf("w%d-%d", worker, i)
				show, tier := "mix", string(rune('a'+r.IntN(3)))
				if r.IntN(5) == 0 {
					show, tier = "calm", "a"
				}
				switch op := r.IntN(10); {
				case op < 3:
					res, err := elHold(w, key, show, tier, 1+r.IntN(3))
					if err == nil && res.Status == 201 {
						holds = append(holds, inventorytest.Decode[boxoffice.Hold](t, res).ID)
					}
				case op < 5 && len(holds) > 0:
					id := holds[r.IntN(len(holds))]
					in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: []string{"tok_ok", "tok_ok", "tok_declined"}[r.IntN(3)]}}
					res, _, err := w.Svc.ConfirmHold(ctx, boxoffice.AdminPrincipal, inventorytest.Idem("confirm "+id, key, in), id, in)
					if err == nil && res.Status == 201 {
						orders = append(orders, inventorytest.Decode[boxoffice.Order](t, res).ID)
					}
				case op < 6 && len(holds) > 0:
					_ = w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, holds[r.IntN(len(holds))])
				case op < 8:
					res, err := elPurchase(w, key, show, tier, 1+r.IntN(2), "tok_ok")
					if err == nil && res.Status == 201 {
						orders = append(orders, inventorytest.Decode[boxoffice.Order](t, res).ID)
					}
				case op < 9 && len(orders) > 0:
					id := orders[r.IntN(len(orders))]
					if _, _, err := w.Svc.CancelOrder(ctx, boxoffice.AdminPrincipal, inventorytest.Idem("cancel "+id, key, id), id); err != nil {
						t.Errorf("cancel %s: %v", id, err)
					}
				default:
					w.Clock.Advance(time.Duration(r.IntN(20)) * time.Second)
					if _, err := w.Svc.ExpireDue(ctx); err != nil {
						t.Errorf("expire: %v", err)
					}
				}
			}
		})
	}
	// Reconfigure meanwhile: resize tier a (a size below what is held and sold is refused) and add
	// and remove tier d, which nobody buys, so that its removal is allowed.
	wg.Go(func() {
		for i := range 12 {
			tiers := map[string]int{"a": []int{10, 6, 12, 3}[i%4], "b": 4, "c": 9}
			if i%2 == 0 {
				tiers["d"] = 5 + i
			}
			if err := elPutShow(w, "mix", 30, tiers); err != nil && boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT {
				t.Errorf("put show: %v", err)
			}
		}
	})
	wg.Wait()
	close(stop)
	checker.Wait()
	w.WaitSettled()
	w.Clock.Advance(time.Hour)
	if _, err := w.Svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	w.Check()

	live := map[string]EventLogView{}
	for _, show := range []string{"mix", "calm"} {
		head := elRequireStreamMatches(t, w.Store, show)
		v, err := elInv(t, w).CatchUp(ctx, show)
		if err != nil {
			t.Fatal(err)
		}
		if v.Version != head || v.Head != head {
			t.Fatalf("caught up to %d (head %d), stream head %d", v.Version, v.Head, head)
		}
		elRequireViewMatchesShow(t, w, v)
		if got, ok := elInv(t, w).View(show); !ok {
			t.Fatal("View says not loaded after CatchUp")
		} else {
			elSame(t, "View after CatchUp", got, v)
		}
		replay, err := ReplayEventLog(ctx, w.Store, show)
		if err != nil {
			t.Fatal(err)
		}
		elSame(t, "replay vs live projector", replay, v)
		live[show] = v
		t.Logf("show %s: %d events, view %+v", show, head, v.Tiers)
	}

	// A new strategy over the same data rebuilds its view from version 0 by itself (discovery,
	// no CatchUp), and gets the same view.
	w.Restart(h)
	for show, want := range live {
		deadline := time.Now().Add(20 * time.Second)
		for {
			v, ok := elInv(t, w).View(show)
			if ok && v.Version == want.Version {
				elSame(t, "restarted projector vs live projector", v, want)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restarted projector did not rebuild show %s: %+v %v", show, v, ok)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// And it carries on from there: one more sale lands once in the stream, the rows and the view.
	if res, err := elPurchase(w, "after-restart", "calm", "a", 1, "tok_ok"); err != nil || (res.Status != 201 && res.Status != 409) {
		t.Fatalf("purchase after restart: %v %v", res, err)
	}
	elRequireStreamMatches(t, w.Store, "calm")
	v, err := elInv(t, w).CatchUp(ctx, "calm")
	if err != nil {
		t.Fatal(err)
	}
	elRequireViewMatchesShow(t, w, v)
	w.Check()
}

// elStaleStore hands out transactions whose InventoryHead reads one version short for the next
// n reads: as if another writer appended the next version between this writer's read of the head
// and its append. The "other writer" is real (the events are in the stream); only the timing is
// staged, which SQLite's exclusive writer could not produce by itself.
type elStaleStore struct {
	boxoffice.Store
	mu   sync.Mutex
	n    int // reads still to serve stale
	lied int
}

func (s *elStaleStore) setStale(n int) { s.mu.Lock(); s.n, s.lied = n, 0; s.mu.Unlock() }

func (s *elStaleStore) lies() int { s.mu.Lock(); defer s.mu.Unlock(); return s.lied }

func (s *elStaleStore) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return s.Store.Update(ctx, func(tx boxoffice.Tx) error { return fn(elStaleTx{Tx: tx, s: s}) })
}

type elStaleTx struct {
	boxoffice.Tx
	s *elStaleStore
}

func (t elStaleTx) InventoryHead(ctx context.Context, showID string) (int64, error) {
	v, err := t.Tx.InventoryHead(ctx, showID)
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if err == nil && v > 0 && t.s.n > 0 {
		t.s.n--
		t.s.lied++
		return v - 1, nil
	}
	return v, err
}

// TestEventLogConflictRetried: an append that loses its version to another writer retries the
// whole transaction from a fresh read, applies the change exactly once, and gives up after the
// bound with a retryable EOVERLOADED that changed nothing.
func TestEventLogConflictRetried(t *testing.T) {
	var stale *elStaleStore
	base := elHarness(elTestConfig())
	h := inventorytest.Harness{
		OpenStore: func(t *testing.T, dir string) boxoffice.Store {
			stale = &elStaleStore{Store: base.OpenStore(t, dir)}
			return stale
		},
		NewInventory: base.NewInventory,
	}
	w := inventorytest.NewWorld(t, h)
	ctx := elCtx(t)
	inv := elInv(t, w)
	w.Show("c", 600, 10)
	// The other writer: a real change that the stale reads will not have seen.
	if res, err := elHold(w, "other", "c", "a", 1); err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	head0 := elRequireStreamMatches(t, w.Store, "c")

	// A reservation straight through Apply, counting how often write runs.
	stale.setStale(3)
	conflicts0 := inv.Conflicts()
	now := w.Clock.Now()
	h1 := &boxoffice.Hold{ID: boxoffice.NewID(boxoffice.PrefixHold, now), ShowID: "c", TierID: "a", Quantity: 2,
		Buyer: boxoffice.Buyer{Email: "r@example.com"}, Status: boxoffice.HoldActive, ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	writes := 0
	err := inv.Apply(ctx, boxoffice.CountChange{ShowID: "c", TierID: "a", Held: 2}, func(tx boxoffice.Tx) error {
		writes++
		return tx.InsertHold(ctx, h1)
	})
	if err != nil {
		t.Fatalf("apply after conflicts: %v", err)
	}
	if got := inv.Conflicts() - conflicts0; got != 3 || stale.lies() != 3 {
		t.Fatalf("%d conflicts after %d stale reads, want 3 and 3", got, stale.lies())
	}
	// A reservation appends before it runs write, so the attempts that lost never ran it.
	if writes != 1 {
		t.Fatalf("write ran %d times, want once", writes)
	}
	head1 := elRequireStreamMatches(t, w.Store, "c")
	if head1 != head0+1 {
		t.Fatalf("head went from %d to %d for one change", head0, head1)
	}
	if c := w.Counts("c", "a"); c.Held != 3 {
		t.Fatalf("held %d after holds of 1 and 2", c.Held)
	}
	w.Check()

	// A release (write runs first) under conflicts: write's effects of the lost attempts are
	// undone with them, and the change lands once.
	stale.setStale(2)
	conflicts0 = inv.Conflicts()
	if err := w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, h1.ID); err != nil {
		t.Fatalf("release after conflicts: %v", err)
	}
	if got := inv.Conflicts() - conflicts0; got != 2 {
		t.Fatalf("%d conflicts, want 2", got)
	}
	head2 := elRequireStreamMatches(t, w.Store, "c")
	if head2 != head1+1 {
		t.Fatalf("head went from %d to %d for one release", head1, head2)
	}
	if c := w.Counts("c", "a"); c.Held != 1 {
		t.Fatalf("held %d after the release, want 1", c.Held)
	}
	var events []*boxoffice.InventoryEvent
	if err := w.Store.View(ctx, func(tx boxoffice.Tx) (err error) {
		events, err = tx.InventoryEvents(ctx, "c", head0, 10)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Held != 2 || events[0].HeldAfter != 3 || events[1].Held != -2 || events[1].HeldAfter != 1 {
		t.Fatalf("events after the other writer's: %+v %+v", events[0], events[1])
	}
	w.Check()

	// Conflicts without end: the change is shed, retryably, and nothing of it is left.
	stale.setStale(1 << 30)
	res, err := elHold(w, "shed", "c", "a", 1)
	var be *boxoffice.Error
	if !errors.As(err, &be) || be.Code != boxoffice.EOVERLOADED || be.RetryAfter <= 0 {
		t.Fatalf("endless conflicts: %v %v, want EOVERLOADED with a RetryAfter", res, err)
	}
	if n := stale.lies(); n != defaultEventLogConfig.attempts {
		t.Fatalf("%d attempts, want %d", n, defaultEventLogConfig.attempts)
	}
	stale.setStale(0)
	if head := elRequireStreamMatches(t, w.Store, "c"); head != head2 {
		t.Fatalf("a shed change moved the head from %d to %d", head2, head)
	}
	if c := w.Counts("c", "a"); c.Held != 1 {
		t.Fatalf("a shed change left held at %d, want 1", c.Held)
	}
	w.Check()
	if res, err := elHold(w, "after", "c", "a", 1); err != nil || res.Status != 201 {
		t.Fatalf("hold once the conflicts stop: %v %v", res, err)
	}
	elRequireStreamMatches(t, w.Store, "c")
	v, err := inv.CatchUp(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	elRequireViewMatchesShow(t, w, v)
}

// TestEventLogLagWhilePaused: while the projector is stopped the view keeps its old counts and says
// how far behind it is; once it runs again it catches up to lag 0.
func TestEventLogLagWhilePaused(t *testing.T) {
	cfg := elTestConfig()
	cfg.poll = time.Hour // only wake-ups drive it, so the pause is the only thing holding it back
	w := inventorytest.NewWorld(t, elHarness(cfg))
	ctx := elCtx(t)
	inv := elInv(t, w)
	w.Show("lag", 600, 10)
	v0, err := inv.CatchUp(ctx, "lag")
	if err != nil {
		t.Fatal(err)
	}
	if v0.Lag != 0 || v0.LagAge != 0 || v0.Version == 0 {
		t.Fatalf("caught-up view: %+v", v0)
	}

	resume := inv.pauseProjector()
	defer resume()
	for i := range 3 {
		if res, err := elHold(w, fmt.Sprintf("k%d", i), "lag", "a", 2); err != nil || res.Status != 201 {
			t.Fatalf("hold: %v %v", res, err)
		}
	}
	time.Sleep(2 * time.Millisecond)
	v, ok := inv.View("lag")
	if !ok {
		t.Fatal("view not loaded")
	}
	if v.Version != v0.Version || v.Head != v0.Version+3 || v.Lag != 3 || v.LagAge < 2*time.Millisecond {
		t.Fatalf("paused view: %+v, want version %d, head %d, lag 3 and an age of at least 2ms", v, v0.Version, v0.Version+3)
	}
	if v.Tiers[0].Held != 0 || v.Tiers[0].Available != 10 {
		t.Fatalf("paused view moved: %+v", v.Tiers)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := inv.CatchUp(short, "lag"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CatchUp with the projector paused: %v, want the deadline", err)
	}
	cancel()

	resume()
	v, err = inv.CatchUp(ctx, "lag")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != v0.Version+3 || v.Lag != 0 || v.LagAge != 0 || v.Tiers[0].Held != 6 {
		t.Fatalf("view after resume: %+v", v)
	}
	elRequireViewMatchesShow(t, w, v)
}

// TestEventLogReconfigureStream: show changes append markers, tombstones and version bumps that
// keep the stream's fold equal to the tiers rows; a refused change appends nothing.
func TestEventLogReconfigureStream(t *testing.T) {
	w := inventorytest.NewWorld(t, elHarness(elTestConfig()))
	ctx := elCtx(t)
	inv := elInv(t, w)
	if err := elPutShow(w, "r", 600, map[string]int{"a": 5, "b": 5}); err != nil {
		t.Fatal(err)
	}
	if head := elRequireStreamMatches(t, w.Store, "r"); head != 2 {
		t.Fatalf("a new show of 2 tiers has head %d, want 2", head)
	}
	// The same show again changes no tier but still takes a version.
	if err := elPutShow(w, "r", 600, map[string]int{"a": 5, "b": 5}); err != nil {
		t.Fatal(err)
	}
	if head := elRequireStreamMatches(t, w.Store, "r"); head != 3 {
		t.Fatalf("an unchanged put left head %d, want 3", head)
	}
	if res, err := elHold(w, "h", "r", "a", 3); err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	// Below held: refused, and nothing appended.
	if err := elPutShow(w, "r", 600, map[string]int{"a": 2, "b": 5}); boxoffice.ErrorCode(err) != boxoffice.ECAPACITYCONFLICT {
		t.Fatalf("capacity below held: %v", err)
	}
	if head := elRequireStreamMatches(t, w.Store, "r"); head != 4 {
		t.Fatalf("a refused put moved head to %d, want 4", head)
	}
	// Resize a, remove b, add c: one event each.
	if err := elPutShow(w, "r", 600, map[string]int{"a": 8, "c": 4}); err != nil {
		t.Fatal(err)
	}
	if head := elRequireStreamMatches(t, w.Store, "r"); head != 7 {
		t.Fatalf("resize+add+remove left head %d, want 7", head)
	}
	v, err := inv.CatchUp(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	elRequireViewMatchesShow(t, w, v)
	if len(v.Tiers) != 2 || v.Tiers[0].ID != "a" || v.Tiers[0].Capacity != 8 || v.Tiers[0].Held != 3 || v.Tiers[1].ID != "c" {
		t.Fatalf("view after the changes: %+v", v.Tiers)
	}
	replay, err := ReplayEventLog(ctx, w.Store, "r")
	if err != nil {
		t.Fatal(err)
	}
	elSame(t, "replay", replay, v)
	// Re-adding a removed tier brings it back at zero.
	if err := elPutShow(w, "r", 600, map[string]int{"a": 8, "b": 2, "c": 4}); err != nil {
		t.Fatal(err)
	}
	elRequireStreamMatches(t, w.Store, "r")
	if v, err = inv.CatchUp(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	elRequireViewMatchesShow(t, w, v)
	w.Check()
}

// TestEventLogSeedsExistingShow: a show sold under another strategy has no stream; the eventlog
// view reports it as diverged until the first change seeds the stream with the show's counts,
// after which the fold equals the rows with no discontinuity.
func TestEventLogSeedsExistingShow(t *testing.T) {
	el := elHarness(elTestConfig())
	atomicH := inventorytest.Harness{
		OpenStore:    el.OpenStore,
		NewInventory: func(t *testing.T, store boxoffice.Store) boxoffice.Inventory { return NewAtomic(store) },
	}
	w := inventorytest.NewWorld(t, atomicH)
	ctx := elCtx(t)
	w.Show("old", 600, 10, 4)
	if res, err := elHold(w, "h", "old", "a", 2); err != nil || res.Status != 201 {
		t.Fatalf("hold: %v %v", res, err)
	}
	if res, err := elPurchase(w, "p", "old", "b", 3, "tok_ok"); err != nil || res.Status != 201 {
		t.Fatalf("purchase: %v %v", res, err)
	}

	w.Restart(el)
	inv := elInv(t, w)
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, ok := inv.View("old")
		if ok {
			if !v.Diverged || v.Version != 0 {
				t.Fatalf("unseeded show: %+v, want diverged at version 0", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the projector never read the show")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res, err := elHold(w, "h2", "old", "a", 1); err != nil || res.Status != 201 {
		t.Fatalf("hold under eventlog: %v %v", res, err)
	}
	if head := elRequireStreamMatches(t, w.Store, "old"); head != 3 {
		t.Fatalf("seed of 2 tiers and one hold: head %d, want 3", head)
	}
	v, err := inv.CatchUp(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	elRequireViewMatchesShow(t, w, v)
	w.Check()
}

// TestEventLogClose: the projector stops, Close is idempotent, changes still work without it, and
// waiting for the view then fails instead of hanging. A strategy without a store is refused.
func TestEventLogClose(t *testing.T) {
	if _, err := NewEventLog(nil, Options{}); err == nil {
		t.Fatal("NewEventLog(nil) succeeded")
	}
	w := inventorytest.NewWorld(t, elHarness(elTestConfig()))
	inv := elInv(t, w)
	w.Show("x", 600, 3)
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inv.done:
	default:
		t.Fatal("projector still running after Close")
	}
	if res, err := elHold(w, "h", "x", "a", 1); err != nil || res.Status != 201 {
		t.Fatalf("hold after Close: %v %v", res, err)
	}
	elRequireStreamMatches(t, w.Store, "x")
	if _, err := inv.CatchUp(elCtx(t), "x"); err == nil {
		t.Fatal("CatchUp after Close succeeded with a stopped projector")
	}
	resume := inv.pauseProjector() // returns at once: there is nothing to pause
	resume()
}

// elPostgresHarness runs the strategy over PostgreSQL, where writers run concurrently and the
// expected-version append really conflicts; one database per World dir, so a restart reopens it.
func elPostgresHarness(cfg eventLogConfig) inventorytest.Harness {
	var mu sync.Mutex
	urls := map[string]string{}
	return inventorytest.Harness{
		OpenStore: func(t *testing.T, dir string) boxoffice.Store {
			mu.Lock()
			url, ok := urls[dir]
			if !ok {
				url = pgtest.Start(t)
				urls[dir] = url
			}
			mu.Unlock()
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		NewInventory: func(t *testing.T, store boxoffice.Store) boxoffice.Inventory {
			return newEventLog(store, Options{}, cfg)
		},
	}
}

// TestEventLogPostgres runs the mixed workload and a stampede across the tiers of one show on
// PostgreSQL: writers of different tiers race for the show's one head, so appends conflict and
// retry for real, and still every ticket is sold once, the stream folds to the rows and the
// projector agrees with a replay. Skipped where PostgreSQL is not installed.
func TestEventLogPostgres(t *testing.T) {
	h := elPostgresHarness(elTestConfig())
	t.Run("WorkloadReplayRestart", func(t *testing.T) { elWorkloadReplayRestart(t, h) })
	t.Run("CrossTierStampede", func(t *testing.T) {
		w := inventorytest.NewWorld(t, h)
		ctx := elCtx(t)
		inv := elInv(t, w)
		const tiers, capacity, buyers = 4, 10, 400
		w.Show("rush", 600, capacity, capacity, capacity, capacity)
		var mu sync.Mutex
		won := map[string]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range buyers {
			wg.Go(func() {
				<-start
				tier := string(rune('a' + i%tiers))
				res, err := elHold(w, fmt.Sprintf("b%d", i), "rush", tier, 1)
				switch {
				case boxoffice.ErrorCode(err) == boxoffice.EOVERLOADED:
					// Shedding under contention is allowed; it must change nothing (checked below).
				case err != nil:
					t.Errorf("hold %d: %v", i, err)
				case res.Status == 201:
					mu.Lock()
					won[tier]++
					mu.Unlock()
				case res.Status != 409:
					t.Errorf("hold %d: %d %s", i, res.Status, res.Body)
				}
			})
		}
		close(start)
		wg.Wait()
		t.Logf("%d expected-version conflicts retried; holds won per tier: %v", inv.Conflicts(), won)
		for i := range tiers {
			tier := string(rune('a' + i))
			if c := w.Counts("rush", tier); c.Held != won[tier] || c.Held > capacity {
				t.Errorf("tier %s: %+v, %d holds won", tier, c, won[tier])
			}
		}
		head := elRequireStreamMatches(t, w.Store, "rush")
		total := 0
		for _, n := range won {
			total += n
		}
		if head != int64(tiers+total) {
			t.Errorf("head %d, want %d tier events and %d holds", head, tiers, total)
		}
		v, err := inv.CatchUp(ctx, "rush")
		if err != nil {
			t.Fatal(err)
		}
		elRequireViewMatchesShow(t, w, v)
		replay, err := ReplayEventLog(ctx, w.Store, "rush")
		if err != nil {
			t.Fatal(err)
		}
		elSame(t, "replay", replay, v)
		w.Check()
	})
}

// TestEventLogPollRoundRobin: polls take the known shows in turns, each one within
// shows/pollBatch ticks, whatever the cursor.
func TestEventLogPollRoundRobin(t *testing.T) {
	e := &EventLog{cfg: eventLogConfig{pollBatch: 3}, shows: map[string]*elShow{}}
	for _, id := range []string{"e", "a", "d", "b", "c", "f", "g"} {
		e.shows[id] = newElShow()
	}
	seen := map[string]int{}
	cursor := ""
	for range 7 { // 7 ticks of 3 cover 7 shows 3 times
		batch, next := e.pollShows(cursor)
		if len(batch) != 3 || next != batch[2] {
			t.Fatalf("batch %v, cursor %q", batch, next)
		}
		for _, id := range batch {
			seen[id]++
		}
		cursor = next
	}
	for id := range e.shows {
		if seen[id] != 3 {
			t.Errorf("show %s polled %d times in 7 ticks, want 3: %v", id, seen[id], seen)
		}
	}
	e.cfg.pollBatch = 10
	if batch, next := e.pollShows("c"); len(batch) != 7 || next != "" {
		t.Fatalf("fewer shows than a batch: %v %q", batch, next)
	}
}
