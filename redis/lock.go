// Package redis is the redis-lock race-condition strategy: every change of a tier's counts runs
// under a lock on that tier held in Redis (one server, or Redlock over three or more), and every
// write presents a fencing token that the store checks in the same transaction.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"boxoffice"
)

// Defaults of LockOptions.
const (
	DefaultTTL            = 5 * time.Second
	DefaultAcquireTimeout = 2 * time.Second
)

// Errors a Lock returns, each wrapped together with a *boxoffice.Error of code EOVERLOADED (503
// with Retry-After): every one of them means "no tickets moved, try again shortly", never a
// domain answer, so the idempotency layer does not store them and a client's retry is safe.
var (
	// ErrUnavailable: too few Redis servers answered to take the lock (a majority with Redlock).
	// The strategy fails closed: without the lock it never sells.
	ErrUnavailable = errors.New("redis-lock: lock servers unreachable")
	// ErrBusy: the lock stayed taken by others until the acquire timeout ran out.
	ErrBusy = errors.New("redis-lock: lock wait timed out")
	// ErrFenced: the store refused the write because a holder with a newer fencing token wrote
	// first, or the lock's validity ran out before the write began. Nothing of the change or of
	// its write was committed.
	ErrFenced = errors.New("redis-lock: lock lost")
)

// LockOptions tune a Lock. Zero values take the defaults.
type LockOptions struct {
	// TTL is how long a lock lives in Redis unless released (PX); it bounds how long a crashed
	// holder blocks a tier. Default 5s.
	TTL time.Duration
	// AcquireTimeout bounds the wait for a busy lock; past it Apply fails with ErrBusy.
	// Default 2s.
	AcquireTimeout time.Duration
	// ServerTimeout bounds one round trip to one server, so a dead or partitioned server costs an
	// attempt little of the lock's validity. Default TTL/50 (100ms for the default TTL), at least
	// 10ms.
	ServerTimeout time.Duration
	// Logger receives retries, unreachable servers and fence refusals. Default: discarded.
	Logger *slog.Logger
	// BeforeWrite, when set, runs after the locks of tierIDs are held and checked to be still
	// valid, right before the store transaction: tests pause a holder here past its TTL, the
	// window a GC pause or a stalled process opens in production.
	BeforeWrite func(showID string, tierIDs []string)
}

// Lock is the redis-lock strategy (Name "redis-lock").
//
// What it guarantees:
//   - Mutual exclusion per tier while a holder's lock is valid: SET key value NX PX ttl on one
//     server, or on a majority of three or more independent servers (Redlock), with the lock
//     counted as held only for ttl − time taken − drift (ttl·1% + 2ms).
//   - A holder deletes only its own lock: release compares the random value it set before
//     deleting, in one Lua script, so a holder whose lock expired never frees its successor's.
//   - Fencing: each acquisition gets a fencing token that grows per tier, and the store takes the
//     write only if no higher token wrote to the tier before (Tx.Fence, in the same transaction as
//     the count change and write). A holder that stalled past its TTL while a successor wrote
//     fails with ErrFenced and commits nothing.
//   - Fail closed: if Redis cannot grant the lock (down, partitioned, no majority), Apply fails
//     with EOVERLOADED and never changes counts without the lock.
//   - No oversell even if all of the above broke: the decision is made on counts read inside the
//     store transaction and applied with the store's conditional AddTierCounts.
//
// How it queues: within one process the changes of a tier take turns in order (an in-process
// gate), so each process sends one contender to Redis and waiters sleep instead of polling; between
// processes, contenders retry SET NX with jittered exponential backoff until AcquireTimeout. A
// reservation that waits that long is answered sold out, rather than overloaded, when a holder
// read the tier during its wait and fewer tickets than it wants were left then (a linearizable
// answer: the tier was in that state at an instant inside the call).
//
// Known failure modes:
//   - A lock is a lease measured by clocks. A holder paused past its TTL (GC, swap, a stalled VM)
//     can still write if no successor has written yet; fencing then orders the writes by token
//     rather than excluding them. Counts stay right because the read, check and write share one
//     store transaction.
//   - Redis is run without persistence here: a restarted server forgets its locks at once (with
//     Redlock, a restarted member can hand a second client a majority while the first still holds
//     it — Redlock's documented weakness; run members with delayed restarts or AOF fsync=always),
//     and forgets its fencing counters: the store then refuses the low token of a holder whose
//     lock is valid, and the strategy retries once with a token above the store's fence.
//   - With Redlock the fencing token is the maximum of per-server counters over the granting
//     majority; it is not a consensus number, so after servers diverge a new holder can draw a
//     token below an old one. The store then refuses the new holder (never the reverse), which
//     costs one retry, not safety.
//   - Every change of a tier waits behind the lock: one Redis round trip to take it, one to
//     release it and a store transaction per change, and no two changes of a tier run at once,
//     so a tier's throughput is bounded by those round trips. Under a stampede waiters past
//     AcquireTimeout get EOVERLOADED (shed load) rather than queueing without bound.
//   - Servers that refuse connections (too many for a majority) three attempts in a row fail
//     the change at once with EOVERLOADED. Servers that do not answer within ServerTimeout
//     (partitioned, overloaded) are retried until AcquireTimeout, so a black-holed Redis costs
//     each change that long before its 503.
type Lock struct {
	store   boxoffice.Store
	servers []*goredis.Client
	addrs   []string // for logs: never shown to clients
	quorum  int
	opts    LockOptions
	log     *slog.Logger
	drift   time.Duration

	// tiers keeps a small state per tier this process changed (its gate, fencing floor, last
	// counts read); it lives as long as the Lock.
	tiers sync.Map // lock key → *tierState
}

// NewLock returns the redis-lock strategy over store with the Redis servers at urls (redis://,
// rediss:// or unix:// URLs; a bare host:port is taken as redis://). One URL is a single-server
// lock; three or more independent servers make it Redlock, where a majority must grant each lock.
// Servers are not required to be up: while they are down Apply fails closed.
func NewLock(store boxoffice.Store, urls []string, opts LockOptions) (*Lock, error) {
	if len(urls) == 0 {
		return nil, errors.New("redis-lock needs --redis: one Redis URL, or three or more for Redlock")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.AcquireTimeout <= 0 {
		opts.AcquireTimeout = DefaultAcquireTimeout
	}
	if opts.ServerTimeout <= 0 {
		opts.ServerTimeout = max(opts.TTL/50, 10*time.Millisecond)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lock{
		store: store, opts: opts, log: opts.Logger,
		quorum: len(urls)/2 + 1,
		// Redlock's allowance for clocks that run at different rates on client and servers.
		drift: opts.TTL/100 + 2*time.Millisecond,
	}
	seen := map[string]bool{}
	for _, u := range urls {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "redis://" + u
		}
		o, err := goredis.ParseURL(u)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("redis-lock: bad --redis URL %q: %w", u, err)
		}
		id := fmt.Sprintf("%s/%d", o.Addr, o.DB)
		if seen[id] {
			l.Close()
			return nil, fmt.Errorf("redis-lock: server %s is listed twice; Redlock needs independent servers", id)
		}
		seen[id] = true
		// The acquire loop does its own bounded retries with jitter and must see failures at once:
		// no client-side command retries, one dial attempt, and the caller's deadlines honoured.
		o.MaxRetries = -1
		o.DialerRetries = 1
		o.DialTimeout = opts.ServerTimeout
		o.ReadTimeout = opts.ServerTimeout
		o.WriteTimeout = opts.ServerTimeout
		o.ContextTimeoutEnabled = true
		o.DisableIdentity = true
		o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		l.servers = append(l.servers, goredis.NewClient(o))
		l.addrs = append(l.addrs, o.Addr)
	}
	if len(urls) == 2 {
		l.log.Warn("redis-lock: two servers must both grant every lock, which tolerates no failure; use one, or three or more for Redlock")
	}
	// A server that is down now is logged, not fatal: the strategy fails closed until it is up,
	// and the rest of the service (reads, health) keeps running meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i, c := range l.servers {
		if err := c.Ping(ctx).Err(); err != nil {
			l.log.Warn("redis-lock: server not reachable at start", "addr", l.addrs[i], "err", err)
		}
	}
	return l, nil
}

// Name is "redis-lock".
func (l *Lock) Name() string { return "redis-lock" }

// Close closes the connections to Redis. Locks still held expire by their TTL.
func (l *Lock) Close() error {
	var errs []error
	for _, c := range l.servers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Apply takes the tier's lock, then in one store transaction checks the fence, reads the counts,
// decides, changes them and runs write. The order follows the atomic strategy: a reservation takes
// its tickets first, so a sold-out tier fails before any other work; every other change runs write
// first, because write checks that the change is still due (the hold still active, the order still
// pending), and a change no longer due must not touch counts.
func (l *Lock) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if c.Held == 0 && c.Sold == 0 {
		// No counts move, so there is nothing to serialise against.
		return l.store.Update(ctx, write)
	}
	call := time.Now()
	want := 0
	if c.Held > 0 {
		want = c.Held + c.Sold
	}
	return l.locked(ctx, c.ShowID, call, want, func() ([]string, error) { return []string{c.TierID}, nil },
		func(tx boxoffice.Tx) error {
			if c.Held > 0 {
				if err := l.addCounts(ctx, tx, c); err != nil {
					return err
				}
				return write(tx)
			}
			if err := write(tx); err != nil {
				return err
			}
			return l.addCounts(ctx, tx, c)
		})
}

// addCounts decides and applies c under the lock. A reservation reads the counts and refuses with
// ESOLDOUT when too few are left; the write itself is still the store's conditional AddTierCounts,
// so even a lock that failed could not oversell. Any other change that does not fit means the counts
// disagree with the holds and orders, which is refused rather than made worse.
func (l *Lock) addCounts(ctx context.Context, tx boxoffice.Tx, c boxoffice.CountChange) error {
	if c.Held > 0 {
		// The Fence before this already wrote the row, which locks it where the store has row
		// locks, so this read cannot go stale before the write below.
		counts, err := tx.TierCounts(ctx, c.ShowID, c.TierID, false)
		if err != nil {
			return err
		}
		l.tier(lockKey(c.ShowID, c.TierID)).observe(counts)
		if counts.Available() < c.Held+c.Sold {
			return soldOut(counts, c.Held)
		}
	}
	counts, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case c.Held > 0:
		return soldOut(counts, c.Held)
	default:
		return fmt.Errorf("tier %s/%s: change %+v does not fit counts held=%d sold=%d", c.ShowID, c.TierID, c, counts.Held, counts.Sold)
	}
}

// soldOut is the error of a reservation that does not fit, carrying what is left.
func soldOut(c boxoffice.TierCounts, want int) error {
	n := max(c.Available(), 0)
	e := boxoffice.Errorf(boxoffice.ESOLDOUT, "only %d tickets of tier %s are left, %d asked", n, c.TierID, want)
	e.Available = &n
	return e
}

// Reconfigure takes the locks of all the show's tiers, in tier id order so that two reconfigures
// cannot each hold what the other waits for, fences them and runs write in one transaction. A tier
// that appears between listing the tiers and the transaction (another reconfigure) is not locked, so
// the transaction notices, gives up and starts again with the new list.
func (l *Lock) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	list := func() ([]string, error) {
		var tiers []string
		err := l.store.View(ctx, func(tx boxoffice.Tx) error {
			s, err := tx.GetShow(ctx, showID)
			if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
				return nil // a new show: no tier exists to be changed concurrently
			}
			if err != nil {
				return err
			}
			for _, t := range s.Tiers {
				tiers = append(tiers, t.ID)
			}
			return nil
		})
		slices.Sort(tiers)
		return tiers, err
	}
	return l.locked(ctx, showID, time.Now(), -1, list, write)
}

// errTiersChanged aborts a Reconfigure transaction that found a tier it did not lock.
var errTiersChanged = errors.New("the show's tiers changed while their locks were taken")

// locked runs fn in a store transaction while holding the locks of the tiers listed, after
// fencing each of them in that transaction. want > 0 is a reservation of that many tickets made at
// call, which may be answered sold out when its wait times out (see tierState.observed); want < 0
// is a Reconfigure: the list must cover every tier of the show, which the transaction checks
// because the list was read before it.
//
// It retries once when the store refused the token of a lock that was still valid: that is not a
// stale holder but a counter that fell behind the store (Redis restarted empty, or Redlock counters
// diverged), and the retry draws a token above the store's fence.
func (l *Lock) locked(ctx context.Context, show string, call time.Time, want int, list func() ([]string, error), fn func(tx boxoffice.Tx) error) error {
	deadline := time.Now().Add(l.opts.AcquireTimeout)
	lagRetries, listRetries := 0, 0
	for {
		tiers, err := list()
		if err != nil {
			return err
		}
		locks, err := l.acquireAll(ctx, show, tiers, call, want, deadline)
		if err != nil {
			return err
		}
		err = l.run(ctx, show, tiers, want < 0, locks, fn)
		l.releaseAll(ctx, locks)
		var lag *lagError
		switch {
		case errors.As(err, &lag) && lagRetries < 1:
			lagRetries++
			l.log.Info("redis-lock: fencing counter behind the store; retrying with a higher token", "show", show, "tier", lag.tier, "token", lag.token, "store", lag.store)
			continue
		case errors.Is(err, errTiersChanged) && listRetries < 3:
			listRetries++
			continue
		case errors.Is(err, errTiersChanged):
			e := boxoffice.Errorf(boxoffice.EOVERLOADED, "show %s is being reconfigured; retry", show)
			e.RetryAfter = time.Second
			return e
		}
		return err
	}
}

// run checks that the locks are still valid, then runs fn in a store transaction that first
// fences every locked tier with its token.
func (l *Lock) run(ctx context.Context, show string, tiers []string, allTiers bool, locks []*held, fn func(tx boxoffice.Tx) error) error {
	// A holder that already knows its lease ran out does not even try: a cheap check that narrows
	// the window, while the fence below is what closes it (a pause can come after this check).
	for _, h := range locks {
		if !time.Now().Before(h.until) {
			l.log.Warn("redis-lock: lock ran out before the write", "show", show, "tier", h.tier, "token", h.token)
			return l.lost(show, h, "its validity ran out before the write")
		}
	}
	if l.opts.BeforeWrite != nil {
		l.opts.BeforeWrite(show, tiers)
	}
	return l.store.Update(ctx, func(tx boxoffice.Tx) error {
		if allTiers {
			if err := checkTiers(ctx, tx, show, locks); err != nil {
				return err
			}
		}
		for _, h := range locks {
			if err := l.fence(ctx, tx, show, h); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// checkTiers fails with errTiersChanged when the show has a tier whose lock is not among locks:
// the Reconfigure's list, read before the transaction, went stale.
func checkTiers(ctx context.Context, tx boxoffice.Tx, show string, locks []*held) error {
	s, err := tx.GetShow(ctx, show)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	for _, t := range s.Tiers {
		if !slices.ContainsFunc(locks, func(h *held) bool { return h.tier == t.ID }) {
			return errTiersChanged
		}
	}
	return nil
}

// fence presents h's token to the store. A refusal means a newer token wrote to the tier: if h's
// lock has run out, h is a stale holder and fails; if it is still valid, the token came from a
// counter behind the store, and the store's fence becomes the floor for the next token.
func (l *Lock) fence(ctx context.Context, tx boxoffice.Tx, show string, h *held) error {
	ok, err := tx.Fence(ctx, show, h.tier, h.token)
	if err != nil {
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
			// The tier does not exist (any more): nothing to fence, and nothing to change — the
			// write or the count change reports the missing tier in its own words.
			return nil
		}
		return err
	}
	if ok {
		return nil
	}
	counts, err := tx.TierCounts(ctx, show, h.tier, false)
	if err != nil {
		return err
	}
	l.tier(h.key).raiseFloor(counts.Fence)
	if time.Now().Before(h.until) {
		return &lagError{tier: h.tier, token: h.token, store: counts.Fence, err: l.lost(show, h, "the fencing counter is behind the store")}
	}
	l.log.Warn("redis-lock: stale holder fenced off", "show", show, "tier", h.tier, "token", h.token, "store", counts.Fence)
	return l.lost(show, h, fmt.Sprintf("a holder with token %d wrote after it", counts.Fence))
}

// lagError is a fence refusal of a holder whose lock was still valid; it carries the error to
// return should the retry be used up.
type lagError struct {
	tier         string
	token, store int64
	err          error
}

func (e *lagError) Error() string { return e.err.Error() }
func (e *lagError) Unwrap() error { return e.err }

// lost is the error of a holder that may not write: ErrFenced with a retryable EOVERLOADED.
func (l *Lock) lost(show string, h *held, why string) error {
	e := boxoffice.Errorf(boxoffice.EOVERLOADED, "the lock on tier %s of show %s was lost before the write; retry", h.tier, show)
	e.RetryAfter = time.Second
	return fmt.Errorf("%w (%s): %w", ErrFenced, why, e)
}

// overloaded wraps sentinel (and its cause, for logs) with a client-safe EOVERLOADED.
func overloaded(sentinel, cause error, msg string) error {
	e := boxoffice.Overloaded(time.Second, "%s", msg)
	if cause != nil {
		return fmt.Errorf("%w (%v): %w", sentinel, cause, e)
	}
	return fmt.Errorf("%w: %w", sentinel, e)
}
