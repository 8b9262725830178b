package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"boxoffice"
)

// lockKey and fenceKey name a tier's lock and fencing counter. The show is a hash tag ({…}) so
// that both keys of a tier live in one slot should the servers ever be a Redis Cluster, which the
// acquire script needs (it touches both). Ids match [a-z0-9][a-z0-9_-]*, so they cannot break out
// of the braces.
func lockKey(show, tier string) string  { return "boxoffice:lock:{" + show + "}:" + tier }
func fenceKey(show, tier string) string { return "boxoffice:fence:{" + show + "}:" + tier }

// held is one tier's lock as this holder has it.
type held struct {
	tier  string
	key   string // lock key
	fence string // fencing counter key
	value string // the random value that proves ownership on release
	token int64  // fencing token
	until time.Time
	st    *tierState
}

// tierState is what this process keeps of one tier between lock turns.
type tierState struct {
	// gate is this process's turn at the tier's Redis lock (a channel of one, whose blocked
	// senders queue in order). Without it every waiter in the process would poll Redis: under a
	// stampede thousands of goroutines burning CPU and round trips on SET NX that only one can
	// win, slowing the very holder they wait for. With it each process sends one contender, and
	// Redis arbitrates between processes.
	gate chan struct{}

	// floor is the highest fencing token this process has seen for the tier, drawn or found in
	// the store; see acquireScript.
	floor atomic.Int64

	// The latest counts a holder read inside its transaction, and when: see observe.
	mu     sync.Mutex
	seen   boxoffice.TierCounts
	seenAt time.Time
}

func (l *Lock) tier(key string) *tierState {
	if st, ok := l.tiers.Load(key); ok {
		return st.(*tierState)
	}
	st, _ := l.tiers.LoadOrStore(key, &tierState{gate: make(chan struct{}, 1)})
	return st.(*tierState)
}

// raiseFloor records that the tier's tokens must be above v from now on.
func (st *tierState) raiseFloor(v int64) {
	for {
		cur := st.floor.Load()
		if v <= cur || st.floor.CompareAndSwap(cur, v) {
			return
		}
	}
}

// observe records counts that a holder read inside its transaction, and the time: the Fence had
// written the row first, so the store's write lock (SQLite) or the row lock (PostgreSQL) was held
// and these were the tier's committed counts at that instant.
func (st *tierState) observe(c boxoffice.TierCounts) {
	now := time.Now()
	st.mu.Lock()
	if now.After(st.seenAt) {
		st.seen, st.seenAt = c, now
	}
	st.mu.Unlock()
}

// observed answers a reservation of want tickets, made at call, that ran out of time waiting for
// its turn: if a holder read the tier's counts after call and fewer than want were left then, the
// reservation is sold out as if it had run at that instant. A refusal writes nothing, so it needs
// no exclusion, only a committed state within its own call to point at; that keeps it
// linearizable. It is used only when the wait is over, never to skip the queue, because held
// tickets can come back (a declined payment, a release) before the waiter's own turn.
func (st *tierState) observed(call time.Time, want int) (boxoffice.TierCounts, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if want > 0 && st.seenAt.After(call) && st.seen.Available() < want {
		return st.seen, true
	}
	return boxoffice.TierCounts{}, false
}

// acquireScript takes the lock and draws the fencing token in one step, so that no holder ever
// has a lock without a token and it costs one round trip. The token is INCR of the tier's counter,
// raised above ARGV[3], the highest token this process knows of: a counter that Redis lost (a
// restart without persistence) or that lags the other Redlock members thus catches up. Returns 0
// when the lock is taken.
var acquireScript = goredis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local t = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if t <= floor then
  t = floor + 1
  redis.call('SET', KEYS[2], t)
end
return t
`)

// releaseScript deletes the lock only if it still holds the caller's value: after a lock expired
// and another client took it, the old holder's release must leave the new lock alone.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// unreachableAttempts is how many attempts in a row may fail for want of reachable servers before
// acquire gives up at once instead of waiting out AcquireTimeout: a blip is retried, an outage
// sheds load quickly. Only refused or broken connections count; a server that answers too slowly
// may just be busy (or this process starved of CPU), so timeouts are retried until the deadline.
const unreachableAttempts = 3

// acquireAll takes the locks of tiers in order; on failure it releases those it took.
func (l *Lock) acquireAll(ctx context.Context, show string, tiers []string, call time.Time, want int, deadline time.Time) ([]*held, error) {
	locks := make([]*held, 0, len(tiers))
	for _, t := range tiers {
		h, err := l.acquire(ctx, show, t, call, want, deadline)
		if err != nil {
			l.releaseAll(ctx, locks)
			return nil, err
		}
		locks = append(locks, h)
	}
	return locks, nil
}

// acquire takes one tier's lock: first this process's turn (the gate), then the Redis lock,
// retrying with jittered exponential backoff until deadline.
//
// Fencing token with Redlock: each granting server INCRs its own counter and the token is the
// maximum over the granting majority. Any two majorities share a server, and that server's counter
// grew with every grant, so a later holder's maximum is at least that server's newer value — in the
// common case (counters in step) above every earlier token. When counters diverge (a member
// restarted empty, or missed grants while down) a later holder can draw a lower token; the store's
// Fence then refuses it, which fails safe, and the refusal feeds the store's fence back as a floor
// so the next draw is higher. A consensus counter would avoid the retry but needs more than Redis.
func (l *Lock) acquire(ctx context.Context, show, tier string, call time.Time, want int, deadline time.Time) (*held, error) {
	h := &held{tier: tier, key: lockKey(show, tier), fence: fenceKey(show, tier), value: rand.Text()}
	h.st = l.tier(h.key)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case h.st.gate <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, l.busy(h, show, call, want, nil)
	}
	ok := false
	defer func() {
		if !ok {
			<-h.st.gate
		}
	}()

	ttlMS := l.opts.TTL.Milliseconds()
	const baseDelay, maxDelay = 2 * time.Millisecond, 50 * time.Millisecond
	var lastErr error
	downStreak := 0
	for attempt := 0; ; attempt++ {
		start := time.Now()
		granted, token, failed, down, err := l.tryAll(ctx, h, ttlMS, h.st.floor.Load())
		until := start.Add(l.opts.TTL - l.drift) // = now + (ttl − elapsed − drift)
		if granted >= l.quorum && time.Now().Before(until) {
			h.token, h.until = token, until
			h.st.raiseFloor(token)
			ok = true
			return h, nil
		}
		if granted > 0 || failed > 0 {
			// A minority (or a majority that came too late) blocks others until its TTL unless
			// freed; so may a server whose reply timed out after it set the lock.
			l.releaseRedis(ctx, []*held{h})
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if failed > len(l.servers)-l.quorum {
			lastErr = err
		}
		if down > len(l.servers)-l.quorum {
			if downStreak++; downStreak >= unreachableAttempts {
				l.log.Warn("redis-lock: lock servers unreachable; failing closed", "show", show, "tier", tier, "down", down, "servers", len(l.servers), "err", err)
				return nil, overloaded(ErrUnavailable, err, "the ticket lock service is unavailable; retry later")
			}
		} else {
			downStreak = 0
		}
		now := time.Now()
		if !now.Before(deadline) {
			return nil, l.busy(h, show, call, want, lastErr)
		}
		d := min(baseDelay<<min(attempt, 5), maxDelay)
		d = d/2 + mrand.N(d) // jitter: contenders that collided do not collide again in step
		timer.Reset(min(d, deadline.Sub(now)))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// busy is the answer of a change that waited out AcquireTimeout: sold out when a reservation can
// tell so from counts read during its wait (see observed), else ErrBusy.
func (l *Lock) busy(h *held, show string, call time.Time, want int, cause error) error {
	if c, ok := h.st.observed(call, want); ok {
		l.log.Debug("redis-lock: lock wait timed out; sold out by counts read during the wait", "show", show, "tier", h.tier, "available", c.Available())
		return soldOut(c, want)
	}
	l.log.Info("redis-lock: lock wait timed out", "show", show, "tier", h.tier)
	return overloaded(ErrBusy, cause, fmt.Sprintf("tier %s of show %s is busy; retry", h.tier, show))
}

// tryAll runs the acquire script on every server at once, each bounded by ServerTimeout. It
// returns how many granted the lock, the highest token among them, how many failed to answer, and
// how many of those are down (refused or broke the connection rather than timing out).
func (l *Lock) tryAll(ctx context.Context, h *held, ttlMS, floor int64) (granted int, token int64, failed, down int, err error) {
	try := func(c *goredis.Client) (int64, error) {
		sctx, cancel := context.WithTimeout(ctx, l.opts.ServerTimeout)
		defer cancel()
		return acquireScript.Run(sctx, c, []string{h.key, h.fence}, h.value, ttlMS, floor).Int64()
	}
	if len(l.servers) == 1 {
		t, err := try(l.servers[0])
		switch {
		case err != nil && isTimeout(err):
			return 0, 0, 1, 0, err
		case err != nil:
			return 0, 0, 1, 1, err
		case t > 0:
			return 1, t, 0, 0, nil
		}
		return 0, 0, 0, 0, nil
	}
	type result struct {
		token int64
		err   error
	}
	results := make([]result, len(l.servers))
	var wg sync.WaitGroup
	for i, c := range l.servers {
		wg.Go(func() {
			t, err := try(c)
			results[i] = result{t, err}
		})
	}
	wg.Wait()
	var errs []error
	for i, r := range results {
		switch {
		case r.err != nil:
			failed++
			if !isTimeout(r.err) {
				down++
			}
			errs = append(errs, fmt.Errorf("%s: %w", l.addrs[i], r.err))
		case r.token > 0:
			granted++
			token = max(token, r.token)
		}
	}
	return granted, token, failed, down, errors.Join(errs...)
}

// isTimeout tells a server that did not answer in time from one that is not there.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// releaseAll frees the Redis locks, then this process's turns at them.
func (l *Lock) releaseAll(ctx context.Context, locks []*held) {
	l.releaseRedis(ctx, locks)
	for _, h := range locks {
		<-h.st.gate
	}
}

// releaseRedis deletes the locks on every server (not only those that granted: a grant whose
// reply was lost still holds the lock). It runs even when ctx was cancelled, since a lock left
// behind blocks the tier until its TTL; the compare-and-delete script makes it safe to send
// anywhere.
func (l *Lock) releaseRedis(ctx context.Context, locks []*held) {
	if len(locks) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i, c := range l.servers {
		wg.Go(func() {
			for _, h := range locks {
				sctx, cancel := context.WithTimeout(ctx, l.opts.ServerTimeout)
				err := releaseScript.Run(sctx, c, []string{h.key}, h.value).Err()
				cancel()
				if err != nil {
					// The lock expires by its TTL; the tier is blocked at most that long.
					l.log.Debug("redis-lock: release failed", "addr", l.addrs[i], "key", h.key, "err", err)
				}
			}
		})
	}
	wg.Wait()
}
