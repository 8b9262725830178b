package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/checkfor"
	"boxoffice/internal/syncbuf"
	"boxoffice/inventory/inventorytest"
	"boxoffice/sale"
)

func newTestActor(t *testing.T, st boxoffice.Store) *Actor {
	t.Helper()
	inv, err := NewActor(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := inv.(*Actor)
	t.Cleanup(func() { a.Close() })
	return a
}

// waitFor polls cond until it holds (bounded, so a bug fails instead of hanging).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	checkfor.Until(t, 15*time.Second, 5*time.Millisecond, what, cond)
}

// queued is how many commands wait in the mailbox of a show's writer.
func (a *Actor) queued(show string) int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if w := a.shows[a.writerOf(show)]; w != nil {
		return len(w.inbox)
	}
	return 0
}

// block occupies the show's writer with a reservation of one ticket whose write waits for the
// returned release func; it returns once the writer is inside that write, so that whatever is sent
// next waits in the mailbox. done receives the blocked reservation's outcome.
func block(t *testing.T, a *Actor, show, tier string) (release func(), done <-chan error) {
	t.Helper()
	entered, gate, res := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		h := newHold(show, tier, 1)
		res <- a.Apply(context.Background(), boxoffice.CountChange{ShowID: show, TierID: tier, Held: 1}, func(tx boxoffice.Tx) error {
			close(entered)
			<-gate
			return tx.InsertHold(context.Background(), h)
		})
	}()
	select {
	case <-entered:
	case err := <-res:
		t.Fatalf("blocking reservation ended early: %v", err)
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release, res
}

var errBoom = errors.New("boom")

// TestActorBatchIsolatesFailures is fault test (3): commands that fail in one batch — a write
// that errors after writing, a write whose statement violates a unique key (which aborts a
// PostgreSQL transaction until it is rolled back to a savepoint), a write that panics, a sold-out
// reservation, a release that is no longer due — each get their own error and leave nothing
// behind, while the good commands of the same batch commit.
func TestActorBatchIsolatesFailures(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			st := sk.open(t)
			putShow(t, st, "s", 10)
			a := newTestActor(t, st)
			var mu sync.Mutex
			var batches []int
			a.afterCommit = func(_ string, n int) { mu.Lock(); batches = append(batches, n); mu.Unlock() }
			ctx := context.Background()

			gone, err := reserve(ctx, a, "s", "a", 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := release(ctx, a, gone); err != nil {
				t.Fatal(err)
			}
			kept, err := reserve(ctx, a, "s", "a", 1)
			if err != nil {
				t.Fatal(err)
			}

			open, blocked := block(t, a, "s", "a")
			var wg sync.WaitGroup
			results := map[string]error{}
			var rmu sync.Mutex
			send := func(name string, f func() error) {
				wg.Go(func() {
					err := f()
					rmu.Lock()
					results[name] = err
					rmu.Unlock()
				})
			}
			var badWrites atomic.Int64
			for i := range 4 {
				send(fmt.Sprintf("good%d", i), func() error { _, err := reserve(ctx, a, "s", "a", 1); return err })
			}
			send("boom", func() error {
				h := newHold("s", "a", 1)
				return a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
					if err := tx.InsertHold(ctx, h); err != nil {
						return err
					}
					return errBoom
				})
			})
			send("duplicate", func() error {
				return a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
					dup := *kept
					return tx.InsertHold(ctx, &dup)
				})
			})
			send("panic", func() (err error) {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("panicked: %v", v)
					}
				}()
				return a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
					panic("write blew up")
				})
			})
			send("soldout", func() error {
				return a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 20}, func(tx boxoffice.Tx) error {
					badWrites.Add(1)
					return nil
				})
			})
			send("notdue", func() error { return release(ctx, a, gone) })
			const sent = 9
			waitFor(t, "every command in the mailbox", func() bool { return a.queued("s") == sent })
			open()
			if err := <-blocked; err != nil {
				t.Fatalf("blocking reservation: %v", err)
			}
			wg.Wait()

			for i := range 4 {
				if err := results[fmt.Sprintf("good%d", i)]; err != nil {
					t.Errorf("good%d: %v", i, err)
				}
			}
			if err := results["boom"]; err != errBoom {
				t.Errorf("boom: got %v, want errBoom", err)
			}
			if code := boxoffice.ErrorCode(results["duplicate"]); code != boxoffice.ECONFLICT {
				t.Errorf("duplicate: got %v, want ECONFLICT", results["duplicate"])
			}
			if err := results["panic"]; err == nil || !strings.Contains(err.Error(), "panicked: write blew up") {
				t.Errorf("panic: got %v, want the write's panic raised in the caller", err)
			}
			if e := boxoffice.AsError(results["soldout"]); e == nil || e.Code != boxoffice.ESOLDOUT || e.Available == nil {
				t.Errorf("soldout: got %v, want ESOLDOUT with Available", results["soldout"])
			} else if badWrites.Load() != 0 {
				t.Error("a sold-out reservation ran its write")
			}
			if err := results["notdue"]; err != errNotDue {
				t.Errorf("notdue: got %v, want errNotDue", err)
			}
			mu.Lock()
			last := batches[len(batches)-1]
			mu.Unlock()
			if last != sent {
				t.Errorf("the last batch had %d commands, want all %d that waited (batches %v)", last, sent, batches)
			}
			// kept, the blocked one and the four good ones; nothing of the failures.
			if c := tierCounts(t, st, "s", "a"); c.Held != 6 {
				t.Errorf("held %d, want 6", c.Held)
			}
			if n := holdCount(t, st); n != 7 { // the six and the released one
				t.Errorf("%d holds, want 7", n)
			}
			verify(t, st)
		})
	}
}

// TestActorCallerGivingUpMidBatch: a caller whose context ends while its write runs in a batch
// (an HTTP client that hung up) makes its statements fail; on PostgreSQL that spoils the whole
// transaction. That command alone may fail: the others of its batch commit all the same.
func TestActorCallerGivingUpMidBatch(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			st := sk.open(t)
			putShow(t, st, "s", 10)
			a := newTestActor(t, st)
			open, blocked := block(t, a, "s", "a")
			var wg sync.WaitGroup
			var good atomic.Int64
			for range 3 {
				wg.Go(func() {
					if _, err := reserve(context.Background(), a, "s", "a", 1); err != nil {
						t.Errorf("reservation next to the one that gave up: %v", err)
						return
					}
					good.Add(1)
				})
			}
			quitter := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithCancel(context.Background())
				h := newHold("s", "a", 1)
				quitter <- a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
					cancel() // the client hangs up while its write runs
					return tx.InsertHold(ctx, h)
				})
			}()
			waitFor(t, "four changes in the mailbox", func() bool { return a.queued("s") == 4 })
			open()
			if err := <-blocked; err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			err := <-quitter
			t.Logf("the change whose caller gave up: %v", err)
			want := 1 + int(good.Load())
			if err == nil {
				want++
			}
			if c := tierCounts(t, st, "s", "a"); c.Held != want {
				t.Errorf("held %d, want %d", c.Held, want)
			}
			verify(t, st)
		})
	}
}

// TestActorMailboxFullSheds is fault test (2): with the writer busy and the mailbox full, a
// further change is shed at once with EOVERLOADED and a Retry-After instead of waiting, and runs
// nothing; the changes that fitted in the mailbox still run.
func TestActorMailboxFullSheds(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 10)
	a := newTestActor(t, st)
	a.mailbox, a.batch = 2, 1
	ctx := context.Background()
	open, blocked := block(t, a, "s", "a")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := reserve(ctx, a, "s", "a", 1); err != nil {
				t.Errorf("queued reservation: %v", err)
			}
		})
	}
	waitFor(t, "a full mailbox", func() bool { return a.queued("s") == 2 })
	shed := make(chan error, 1)
	var ran atomic.Bool
	go func() {
		shed <- a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
			ran.Store(true)
			return nil
		})
	}()
	var err error
	select {
	case err = <-shed:
	case <-time.After(30 * time.Second): // a bound, not a timing: a blocked Apply never returns
		t.Fatal("Apply blocked on a full mailbox")
	}
	if e := boxoffice.AsError(err); e == nil || e.Code != boxoffice.EOVERLOADED || e.RetryAfter <= 0 {
		t.Fatalf("got %v, want EOVERLOADED with a Retry-After", err)
	}
	open()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ran.Load() {
		t.Error("the shed change ran")
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 3 {
		t.Errorf("held %d, want 3", c.Held)
	}
	verify(t, st)
}

// TestActorContextEndsWhileQueued: a caller whose context ends while its change waits gets the
// context's error at once, and the change never runs.
func TestActorContextEndsWhileQueued(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 10)
	a := newTestActor(t, st)
	open, blocked := block(t, a, "s", "a")
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	res := make(chan error, 1)
	go func() {
		res <- a.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
			ran.Store(true)
			return nil
		})
	}()
	waitFor(t, "the change in the mailbox", func() bool { return a.queued("s") == 1 })
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	open()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	// One more change through the writer: by the time it is answered, the abandoned one was met.
	if _, err := reserve(context.Background(), a, "s", "a", 1); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("the abandoned change ran")
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 2 {
		t.Errorf("held %d, want 2", c.Held)
	}
	verify(t, st)
}

// TestActorCloseAnswersPending: Close lets the running batch finish, answers every waiting change
// with EOVERLOADED, waits for the writers, and refuses changes after it.
func TestActorCloseAnswersPending(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 10)
	a := newTestActor(t, st)
	open, blocked := block(t, a, "s", "a")
	errs := make(chan error, 3)
	for range 3 {
		go func() { _, err := reserve(context.Background(), a, "s", "a", 1); errs <- err }()
	}
	waitFor(t, "three changes in the mailbox", func() bool { return a.queued("s") == 3 })
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	waitFor(t, "Close to start", func() bool { a.mu.RLock(); defer a.mu.RUnlock(); return a.closed })
	open()
	if err := <-blocked; err != nil {
		t.Errorf("the running batch: %v", err)
	}
	for range 3 {
		if code := boxoffice.ErrorCode(<-errs); code != boxoffice.EOVERLOADED {
			t.Errorf("waiting change after Close: %s, want %s", code, boxoffice.EOVERLOADED)
		}
	}
	<-closed
	if _, err := reserve(context.Background(), a, "s", "a", 1); boxoffice.ErrorCode(err) != boxoffice.EOVERLOADED {
		t.Errorf("change after Close: %v", err)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 1 {
		t.Errorf("held %d, want 1", c.Held)
	}
	verify(t, st)
}

// TestActorCrashAfterCommit is fault test (1): the show's writer dies right after its first batch
// commits and before it answers anyone. Its callers get an error, but what committed stays: a
// retry with the same idempotency key replays the answer, the writer started again reads the
// counts from the store, so does a new strategy over the same store after a restart, and at no
// point do the counts differ from the holds or go over capacity.
func TestActorCrashAfterCommit(t *testing.T) {
	var crashed atomic.Bool
	h := inventorytest.Harness{
		OpenStore: openSQLiteAt,
		NewInventory: func(t *testing.T, st boxoffice.Store) boxoffice.Inventory {
			inv, err := NewActor(st, Options{})
			if err != nil {
				t.Fatal(err)
			}
			inv.(*Actor).afterCommit = func(string, int) {
				if crashed.CompareAndSwap(false, true) {
					panic("crash between commit and reply")
				}
			}
			return inv
		},
	}
	w := inventorytest.NewWorld(t, h)
	const capacity = 25
	w.Show("crash", 600, capacity)
	ctx := context.Background()
	holdReplay := func(key string) (*boxoffice.Response, bool, error) {
		in := sale.HoldInput{ShowID: "crash", TierID: "a", Quantity: 1, Buyer: sale.BuyerInput{Email: key + "@example.com"}}
		return w.Svc.CreateHold(ctx, boxoffice.AdminPrincipal, inventorytest.Idem("hold crash", key, in), in)
	}
	hold := func(key string) (*boxoffice.Response, error) {
		res, _, err := holdReplay(key)
		return res, err
	}
	var acked sync.Map // key → hold id, for every 201
	var failed []string
	var fmu sync.Mutex
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i)
			res, err := hold(key)
			switch {
			case err != nil:
				fmu.Lock()
				failed = append(failed, key)
				fmu.Unlock()
			case res.Status == 201:
				acked.Store(key, inventorytest.Decode[boxoffice.Hold](t, res).ID)
			case res.Status != 409:
				t.Errorf("hold %s: %d %s", key, res.Status, res.Body)
			}
		})
	}
	wg.Wait()
	if !crashed.Load() || len(failed) == 0 {
		t.Fatalf("the writer did not crash after a commit (crashed=%v, %d failed)", crashed.Load(), len(failed))
	}
	t.Logf("%d callers of the crashed batch got an error", len(failed))
	w.Check()
	// The callers of the crashed batch retry with their keys: what committed replays, the rest runs.
	replays := 0
	for _, key := range failed {
		res, replayed, err := holdReplay(key)
		if err != nil {
			t.Fatalf("retry of %s: %v", key, err)
		}
		if res.Status == 201 {
			acked.Store(key, inventorytest.Decode[boxoffice.Hold](t, res).ID)
			if replayed {
				replays++
			}
		}
	}
	if replays == 0 {
		t.Error("no retry replayed a committed hold: the crash did not come after a commit")
	}
	n := 0
	acked.Range(func(any, any) bool { n++; return true })
	if c := w.Counts("crash", "a"); c.Held != n || n > capacity {
		t.Fatalf("after the crash: %+v, %d holds acknowledged", c, n)
	}
	w.Check()
	// The restarted writer sells on from the store's counts, to exactly the capacity.
	for i := 0; n < capacity; i++ {
		res, err := hold(fmt.Sprintf("more%d", i))
		if err != nil || res.Status != 201 {
			t.Fatalf("hold after the crash: %v %v", res, err)
		}
		n++
	}
	if res, err := hold("one-too-many"); err != nil || res.Status != 409 {
		t.Fatalf("hold past capacity after the crash: %v %v", res, err)
	}
	// A new strategy over the same store (a process restart) rebuilds the same counts, and every
	// acknowledged hold is there.
	w.Restart(h)
	if c := w.Counts("crash", "a"); c.Held != capacity {
		t.Fatalf("after restart: %+v", c)
	}
	acked.Range(func(key, id any) bool {
		got, err := w.Svc.GetHold(ctx, boxoffice.AdminPrincipal, id.(string))
		if err != nil || got.Status != boxoffice.HoldActive {
			t.Errorf("acknowledged hold %s (%s) after restart: %v %v", id, key, got, err)
		}
		return true
	})
	if res, err := hold("after-restart"); err != nil || res.Status != 409 {
		t.Fatalf("hold past capacity after restart: %v %v", res, err)
	}
	w.Check()
}

// TestActorCorrectsStaleMemory: when something other than the actor changes a tier's counts (a
// second server on the same database), the store's check refuses what stale memory allows, and a
// sold-out answer from memory is confirmed against the store first; either way memory is put
// right and no answer is wrong.
func TestActorCorrectsStaleMemory(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 5)
	a := newTestActor(t, st)
	ctx := context.Background()
	if _, err := reserve(ctx, a, "s", "a", 2); err != nil {
		t.Fatal(err)
	}
	// Another writer takes the other three tickets behind the actor's back.
	other := newHold("s", "a", 3)
	if err := NewAtomic(st).Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 3}, func(tx boxoffice.Tx) error {
		return tx.InsertHold(ctx, other)
	}); err != nil {
		t.Fatal(err)
	}
	_, err := reserve(ctx, a, "s", "a", 1)
	if e := boxoffice.AsError(err); e == nil || e.Code != boxoffice.ESOLDOUT || e.Available == nil || *e.Available != 0 {
		t.Fatalf("reservation memory allows but the store does not: got %v, want ESOLDOUT with 0 available", err)
	}
	// The other writer gives them back; memory now says sold out, the store says 3 are free.
	if err := release(ctx, NewAtomic(st), other); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(ctx, a, "s", "a", 3); err != nil {
		t.Fatalf("reservation memory refuses but the store allows: %v", err)
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 5 {
		t.Errorf("held %d, want 5", c.Held)
	}
	verify(t, st)
}

// TestActorRepeatedReleaseIsNotStaleMemory: a release (or a sale) that does not fit the counts in
// memory is a repeat when its conditional write finds nothing to do — a second driver settling
// an order already settled — and is refused alone, with no count changed and without running the
// batch again command by command. When its write does succeed, memory is wrong, and the batch
// runs again on the store's counts.
func TestActorRepeatedReleaseIsNotStaleMemory(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 5)
	var logs syncbuf.Buffer
	inv, err := NewActor(st, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a := inv.(*Actor)
	t.Cleanup(func() { a.Close() })
	ctx := context.Background()
	h, err := reserve(ctx, a, "s", "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := release(ctx, a, h); err != nil {
		t.Fatal(err)
	}
	// The same release again: memory has nothing held, and the hold is released already.
	if err := release(ctx, a, h); !errors.Is(err, errNotDue) {
		t.Fatalf("repeated release: %v, want errNotDue", err)
	}
	if strings.Contains(logs.String(), "differ from memory") {
		t.Fatalf("a repeat was taken for stale memory:\n%s", logs.String())
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 0 || c.Sold != 0 {
		t.Fatalf("counts %+v after a release and its repeat, want nothing held", c)
	}

	// Another writer holds a ticket behind the actor's back, and the actor is asked to release
	// it: memory says nothing is held, the write succeeds, so memory is what was wrong.
	other := newHold("s", "a", 1)
	if err := NewAtomic(st).Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
		return tx.InsertHold(ctx, other)
	}); err != nil {
		t.Fatal(err)
	}
	if err := release(ctx, a, other); err != nil {
		t.Fatalf("release of a hold memory did not know: %v", err)
	}
	if !strings.Contains(logs.String(), "differ from memory") {
		t.Fatal("the release memory did not know was not run again on the store's counts")
	}
	if c := tierCounts(t, st, "s", "a"); c.Held != 0 || c.Sold != 0 {
		t.Fatalf("counts %+v, want nothing held", c)
	}
	verify(t, st)
}

// TestActorIdleWriterRetires: a show's writer ends after a while without commands, and the next
// command starts a new one that reads the counts from the store.
func TestActorIdleWriterRetires(t *testing.T) {
	st := openSQLite(t)
	putShow(t, st, "s", 5)
	a := newTestActor(t, st)
	a.idle = 10 * time.Millisecond
	ctx := context.Background()
	if _, err := reserve(ctx, a, "s", "a", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle writer to retire", func() bool { a.mu.RLock(); defer a.mu.RUnlock(); return len(a.shows) == 0 })
	if _, err := reserve(ctx, a, "s", "a", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(ctx, a, "s", "a", 1); boxoffice.ErrorCode(err) != boxoffice.ESOLDOUT {
		t.Fatalf("got %v, want ESOLDOUT", err)
	}
	verify(t, st)
}

// TestActorReconfigureUnderLoad runs the shared capacity-change stampede on the actor strategy,
// whose Reconfigure runs in the show's writer and makes it read the counts again.
func TestActorReconfigureUnderLoad(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) { reconfigureUnderLoad(t, sk.open(t), "actor") })
	}
}
