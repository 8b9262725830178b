package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"boxoffice"
	"boxoffice/redis"
	"boxoffice/redis/redistest"
	"boxoffice/sqlite"
)

// The tests run against real redis-server processes and a real SQLite store. They assert
// invariants (what committed, what the store and Redis hold), never how long something took;
// pauses come from the BeforeWrite hook and channels, not from sleeps that race the scheduler.

func openStore(t *testing.T) boxoffice.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/x.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// putShow creates show id with tiers "a", "b", … of the given capacities.
func putShow(t *testing.T, st boxoffice.Store, id string, capacities ...int) {
	t.Helper()
	now := time.Now().UTC()
	s := &boxoffice.Show{ID: id, Name: "Show " + id, StartsAt: now.Add(24 * time.Hour), HoldTTLSeconds: 600, CreatedAt: now, UpdatedAt: now}
	for i, c := range capacities {
		s.Tiers = append(s.Tiers, boxoffice.Tier{ID: string(rune('a' + i)), Name: "Tier", Capacity: c, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}})
	}
	if err := st.Update(context.Background(), func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), s) }); err != nil {
		t.Fatal(err)
	}
}

func newLock(t *testing.T, st boxoffice.Store, urls []string, opts redis.LockOptions) *redis.Lock {
	t.Helper()
	l, err := redis.NewLock(st, urls, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func counts(t *testing.T, st boxoffice.Store, show, tier string) boxoffice.TierCounts {
	t.Helper()
	var c boxoffice.TierCounts
	err := st.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		c, err = tx.TierCounts(context.Background(), show, tier, false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reserve holds q tickets of show/tier and, in the same transaction, inserts a hold with id — the
// write whose presence afterwards tells whether the change committed.
func reserve(ctx context.Context, l boxoffice.Inventory, show, tier, id string, q int) error {
	return l.Apply(ctx, boxoffice.CountChange{ShowID: show, TierID: tier, Held: q}, func(tx boxoffice.Tx) error {
		now := time.Now().UTC()
		return tx.InsertHold(ctx, &boxoffice.Hold{ID: id, ShowID: show, TierID: tier, Quantity: q,
			Buyer: boxoffice.Buyer{Email: "b@example.com"}, Status: boxoffice.HoldActive,
			ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now})
	})
}

func holdExists(t *testing.T, st boxoffice.Store, id string) bool {
	t.Helper()
	err := st.View(context.Background(), func(tx boxoffice.Tx) error {
		_, err := tx.GetHold(context.Background(), id)
		return err
	})
	switch boxoffice.ErrorCode(err) {
	case "":
		return true
	case boxoffice.ENOTFOUND:
		return false
	}
	t.Fatal(err)
	return false
}

func holdID(n int) string { return fmt.Sprintf("hld_test%04d", n) }

// wantOverloaded checks that err is a 503 with Retry-After and wraps sentinel.
func wantOverloaded(t *testing.T, err, sentinel error) {
	t.Helper()
	e := boxoffice.AsError(err)
	if e == nil || e.Code != boxoffice.EOVERLOADED || e.RetryAfter <= 0 || !errors.Is(err, sentinel) {
		t.Fatalf("want EOVERLOADED with Retry-After wrapping %v, got %v", sentinel, err)
	}
}

// pauser is a BeforeWrite hook that stops the first holder that reaches it until resumed.
type pauser struct {
	once    sync.Once
	paused  chan struct{}
	release chan struct{}
}

func newPauser() *pauser {
	return &pauser{paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pauser) hook(string, []string) {
	p.once.Do(func() {
		close(p.paused)
		<-p.release
	})
}

func rdb(t *testing.T, url string) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewLockNeedsServers(t *testing.T) {
	if _, err := redis.NewLock(nil, nil, redis.LockOptions{}); err == nil || !strings.Contains(err.Error(), "redis-lock needs --redis") {
		t.Fatalf("no URLs: %v", err)
	}
	if _, err := redis.NewLock(nil, []string{"redis://127.0.0.1:1", "127.0.0.1:1"}, redis.LockOptions{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate server: %v", err)
	}
	if _, err := redis.NewLock(nil, []string{"http://x"}, redis.LockOptions{}); err == nil {
		t.Fatal("bad URL accepted")
	}
}

// TestApply: the basic contract on one server — counts and write commit together, a reservation
// that does not fit is ESOLDOUT with what is left and commits nothing, a failing write rolls the
// change back, and giving tickets back runs write first.
func TestApply(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 5)
	l := newLock(t, st, []string{redistest.Start(t)}, redis.LockOptions{})
	if l.Name() != "redis-lock" {
		t.Fatalf("name %q", l.Name())
	}
	ctx := context.Background()
	if err := reserve(ctx, l, "gig", "a", holdID(1), 3); err != nil {
		t.Fatal(err)
	}
	err := reserve(ctx, l, "gig", "a", holdID(2), 3)
	if e := boxoffice.AsError(err); e == nil || e.Code != boxoffice.ESOLDOUT || e.Available == nil || *e.Available != 2 {
		t.Fatalf("want sold_out with 2 available, got %v", err)
	}
	boom := errors.New("boom")
	if err := l.Apply(ctx, boxoffice.CountChange{ShowID: "gig", TierID: "a", Held: 1}, func(boxoffice.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("write error: %v", err)
	}
	// Giving back: write runs first and sees the counts unchanged.
	err = l.Apply(ctx, boxoffice.CountChange{ShowID: "gig", TierID: "a", Held: -3, Sold: 3}, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "a", false)
		if err == nil && (c.Held != 3 || c.Sold != 0) {
			return fmt.Errorf("write ran after the counts changed: %+v", c)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := counts(t, st, "gig", "a"); c.Held != 0 || c.Sold != 3 || c.Fence == 0 {
		t.Fatalf("counts %+v", c)
	}
	if !holdExists(t, st, holdID(1)) || holdExists(t, st, holdID(2)) {
		t.Fatal("holds do not match the committed changes")
	}
}

// TestStaleHolderIsFenced: a holder pauses past its TTL after taking the lock; another process
// takes the lock and writes; the stale holder's write is then refused by the store's fence and
// nothing it wanted is committed.
func TestStaleHolderIsFenced(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 10)
	url := redistest.Start(t)
	p := newPauser()
	stale := newLock(t, st, []string{url}, redis.LockOptions{TTL: 300 * time.Millisecond, BeforeWrite: p.hook})
	// The successor waits as long as needed for the stale lock to expire in Redis.
	next := newLock(t, st, []string{url}, redis.LockOptions{AcquireTimeout: 30 * time.Second})
	ctx := context.Background()

	staleErr := make(chan error, 1)
	go func() { staleErr <- reserve(ctx, stale, "gig", "a", holdID(1), 4) }()
	<-p.paused
	if err := reserve(ctx, next, "gig", "a", holdID(2), 2); err != nil {
		t.Fatalf("successor: %v", err)
	}
	fenceAfterNext := counts(t, st, "gig", "a").Fence
	close(p.release)

	err := <-staleErr
	wantOverloaded(t, err, redis.ErrFenced)
	if !strings.Contains(err.Error(), "wrote after it") {
		t.Fatalf("refused, but not by the store's fence: %v", err) // the clock check runs before the pause
	}
	c := counts(t, st, "gig", "a")
	if c.Held != 2 || c.Sold != 0 || c.Fence != fenceAfterNext {
		t.Fatalf("counts after the stale write %+v, want held 2 and fence %d", c, fenceAfterNext)
	}
	if holdExists(t, st, holdID(1)) || !holdExists(t, st, holdID(2)) {
		t.Fatal("the stale holder's write committed")
	}
}

// TestReleaseKeepsSuccessorsLock: a holder whose lock expired and was taken by another still gets
// to write if the successor has not written yet (the fence orders, it cannot exclude), but its
// release must not delete the successor's lock, and the successor's newer token still writes.
func TestReleaseKeepsSuccessorsLock(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 10)
	url := redistest.Start(t)
	p1, p2 := newPauser(), newPauser()
	first := newLock(t, st, []string{url}, redis.LockOptions{TTL: 300 * time.Millisecond, BeforeWrite: p1.hook})
	second := newLock(t, st, []string{url}, redis.LockOptions{AcquireTimeout: 30 * time.Second, BeforeWrite: p2.hook})
	ctx := context.Background()

	err1, err2 := make(chan error, 1), make(chan error, 1)
	go func() { err1 <- reserve(ctx, first, "gig", "a", holdID(1), 1) }()
	<-p1.paused
	go func() { err2 <- reserve(ctx, second, "gig", "a", holdID(2), 2) }()
	<-p2.paused // second holds the lock now: first's expired

	c := rdb(t, url)
	keys, err := c.Keys(ctx, "boxoffice:lock:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("lock keys %v %v", keys, err)
	}
	owner, err := c.Get(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}

	close(p1.release)
	if err := <-err1; err != nil {
		t.Fatalf("first holder, lock expired but no newer write yet: %v", err)
	}
	if got, err := c.Get(ctx, keys[0]).Result(); err != nil || got != owner {
		t.Fatalf("the expired holder's release touched its successor's lock: %q %v (want %q)", got, err, owner)
	}
	close(p2.release)
	if err := <-err2; err != nil {
		t.Fatalf("successor: %v", err)
	}
	if n, err := c.Exists(ctx, keys[0]).Result(); err != nil || n != 0 {
		t.Fatalf("the successor did not release its own lock: %d %v", n, err)
	}
	if c := counts(t, st, "gig", "a"); c.Held != 3 {
		t.Fatalf("counts %+v", c)
	}
}

// TestRedisDownFailsClosed: with its server stopped the strategy refuses every change with a 503
// and changes nothing; after the server comes back empty (its fencing counter lost), changes go
// through again with tokens above the store's.
func TestRedisDownFailsClosed(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 10)
	srv := redistest.StartServer(t)
	l := newLock(t, st, []string{srv.URL}, redis.LockOptions{})
	ctx := context.Background()
	for i := range 3 {
		if err := reserve(ctx, l, "gig", "a", holdID(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	before := counts(t, st, "gig", "a")

	srv.Stop()
	wrote := false
	err := l.Apply(ctx, boxoffice.CountChange{ShowID: "gig", TierID: "a", Held: 1}, func(boxoffice.Tx) error {
		wrote = true
		return nil
	})
	wantOverloaded(t, err, redis.ErrUnavailable)
	if wrote {
		t.Fatal("write ran without the lock")
	}
	if c := counts(t, st, "gig", "a"); c != before {
		t.Fatalf("counts changed while Redis was down: %+v, was %+v", c, before)
	}

	srv.Restart() // empty: the fencing counter starts again from 0, below the store's fence
	fresh := newLock(t, st, []string{srv.URL}, redis.LockOptions{})
	if err := reserve(ctx, fresh, "gig", "a", holdID(10), 1); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if c := counts(t, st, "gig", "a"); c.Held != before.Held+1 || c.Fence <= before.Fence {
		t.Fatalf("after restart %+v, before %+v", c, before)
	}
	// The instance that saw the outage recovers too, once its connections are back.
	var last error
	for i := range 100 {
		if last = reserve(ctx, l, "gig", "a", holdID(20+i), 1); last == nil {
			break
		}
		wantOverloaded(t, last, redis.ErrUnavailable)
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("old instance after restart: %v", last)
	}
}

// TestRedlock: with three servers the lock needs a majority: it works with one killed and fails
// closed with two killed, leaving no minority lock behind.
func TestRedlock(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 10)
	srvs := redistest.StartN(t, 3)
	l := newLock(t, st, redistest.URLs(srvs), redis.LockOptions{})
	ctx := context.Background()
	if err := reserve(ctx, l, "gig", "a", holdID(1), 1); err != nil {
		t.Fatal(err)
	}
	f1 := counts(t, st, "gig", "a").Fence

	srvs[0].Kill()
	if err := reserve(ctx, l, "gig", "a", holdID(2), 1); err != nil {
		t.Fatalf("one of three down: %v", err)
	}
	if c := counts(t, st, "gig", "a"); c.Held != 2 || c.Fence <= f1 {
		t.Fatalf("one of three down: %+v", c)
	}

	srvs[1].Kill()
	before := counts(t, st, "gig", "a")
	err := reserve(ctx, l, "gig", "a", holdID(3), 1)
	wantOverloaded(t, err, redis.ErrUnavailable)
	if c := counts(t, st, "gig", "a"); c != before || holdExists(t, st, holdID(3)) {
		t.Fatalf("two of three down, yet it wrote: %+v", c)
	}
	// The one live server granted its part each attempt; every such minority lock was given back.
	if n, err := rdb(t, srvs[2].URL).Keys(ctx, "boxoffice:lock:*").Result(); err != nil || len(n) != 0 {
		t.Fatalf("minority locks left behind: %v %v", n, err)
	}
}

// TestMutualExclusion: two processes (two Lock instances) with many goroutines each never have
// two holders of a tier between acquiring and writing, on one server and with Redlock.
func TestMutualExclusion(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", n), func(t *testing.T) {
			st := openStore(t)
			putShow(t, st, "gig", 1000)
			urls := redistest.URLs(redistest.StartN(t, n))
			var inside, overlaps atomic.Int64
			hook := func(string, []string) {
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(time.Millisecond) // widen the window a second holder would show in
				inside.Add(-1)
			}
			opts := redis.LockOptions{AcquireTimeout: 30 * time.Second, BeforeWrite: hook}
			procs := []*redis.Lock{newLock(t, st, urls, opts), newLock(t, st, urls, opts)}
			var wg sync.WaitGroup
			var ok atomic.Int64
			for i := range 40 {
				wg.Go(func() {
					if err := reserve(context.Background(), procs[i%2], "gig", "a", holdID(i), 1); err != nil {
						t.Errorf("reserve %d: %v", i, err)
						return
					}
					ok.Add(1)
				})
			}
			wg.Wait()
			if overlaps.Load() != 0 {
				t.Fatalf("%d times two holders were inside at once", overlaps.Load())
			}
			if c := counts(t, st, "gig", "a"); int64(c.Held) != ok.Load() {
				t.Fatalf("held %d, %d reservations committed", c.Held, ok.Load())
			}
		})
	}
}

// TestReconfigureLocksEveryTier: while a reconfigure holds the show, no change of any of its tiers
// can take a lock; afterwards they can.
func TestReconfigureLocksEveryTier(t *testing.T) {
	st := openStore(t)
	putShow(t, st, "gig", 5, 5, 5)
	url := redistest.Start(t)
	p := newPauser()
	admin := newLock(t, st, []string{url}, redis.LockOptions{BeforeWrite: p.hook})
	other := newLock(t, st, []string{url}, redis.LockOptions{AcquireTimeout: 200 * time.Millisecond})
	ctx := context.Background()

	done := make(chan error, 1)
	go func() {
		done <- admin.Reconfigure(ctx, "gig", func(tx boxoffice.Tx) error {
			s, err := tx.GetShow(ctx, "gig")
			if err != nil {
				return err
			}
			for i := range s.Tiers {
				s.Tiers[i].Capacity = 8
			}
			return tx.PutShow(ctx, s)
		})
	}()
	<-p.paused
	for i, tier := range []string{"a", "b", "c"} {
		wantOverloaded(t, reserve(ctx, other, "gig", tier, holdID(i), 1), redis.ErrBusy)
	}
	close(p.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, tier := range []string{"a", "b", "c"} {
		if err := reserve(ctx, other, "gig", tier, holdID(10+i), 7); err != nil {
			t.Fatalf("after reconfigure, tier %s: %v", tier, err)
		}
	}
}

// TestTimedOutReservationAnsweredFromObservedCounts: a reservation that waits out its acquire
// timeout behind a holder that read the tier during the wait is answered sold out with the
// available count that holder saw, not 503, when that count was too small; it never changes
// anything itself.
func TestTimedOutReservationAnsweredFromObservedCounts(t *testing.T) {
	ctx := context.Background()
	for round := range 3 {
		st := openStore(t)
		putShow(t, st, "gig", 2)
		p := newPauser()
		l := newLock(t, st, []string{redistest.Start(t)}, redis.LockOptions{AcquireTimeout: 300 * time.Millisecond, BeforeWrite: p.hook})
		inWrite, finish := make(chan struct{}), make(chan struct{})
		holder := make(chan error, 1)
		go func() {
			holder <- l.Apply(ctx, boxoffice.CountChange{ShowID: "gig", TierID: "a", Held: 1}, func(tx boxoffice.Tx) error {
				close(inWrite) // the counts (2 available) were read and recorded before this
				<-finish
				return nil
			})
		}()
		<-p.paused // the holder has the lock but has not read the counts yet
		waiter := make(chan error, 1)
		go func() { waiter <- reserve(ctx, l, "gig", "a", holdID(1), 3) }()
		time.Sleep(50 * time.Millisecond) // let the waiter call before the holder reads
		close(p.release)
		<-inWrite
		err := <-waiter
		close(finish)
		if err := <-holder; err != nil {
			t.Fatal(err)
		}
		if c := counts(t, st, "gig", "a"); c.Held != 1 || holdExists(t, st, holdID(1)) {
			t.Fatalf("the waiter changed something: %+v", c)
		}
		if errors.Is(err, redis.ErrBusy) {
			t.Logf("round %d: the waiter called only after the holder read; again", round)
			continue
		}
		if e := boxoffice.AsError(err); e == nil || e.Code != boxoffice.ESOLDOUT || e.Available == nil || *e.Available != 2 {
			t.Fatalf("want sold_out with the 2 the holder saw, got %v", err)
		}
		return
	}
	t.Fatal("the waiter never called before the holder read")
}
