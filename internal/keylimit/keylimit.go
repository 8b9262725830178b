// Package keylimit limits the request rate of each API key (a token bucket per key, from
// golang.org/x/time/rate), so that one sales channel's runaway client cannot take the capacity
// every other channel shares. Both transports consult the same Limiter, so a key has one budget
// whether it calls over REST or gRPC.
package keylimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"boxoffice"
)

// Limiter holds a token bucket per key. A nil *Limiter allows everything.
type Limiter struct {
	every rate.Limit
	burst int
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

// New returns a limiter of perSecond requests a second per key with bursts of burst (at least 1);
// perSecond <= 0 returns nil: no limit.
func New(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	return &Limiter{every: rate.Limit(perSecond), burst: max(burst, 1), now: time.Now, keys: map[string]*rate.Limiter{}}
}

// Allow takes one request of key's budget; when the budget is spent it returns an ERATELIMITED
// error whose RetryAfter says when the next request fits, and takes nothing.
func (l *Limiter) Allow(key string) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	lim, ok := l.keys[key]
	if !ok {
		lim = rate.NewLimiter(l.every, l.burst)
		l.keys[key] = lim
	}
	l.mu.Unlock()
	now := l.now()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // the request is refused, so it must not use up the tokens it waited for
		e := boxoffice.Errorf(boxoffice.ERATELIMITED, "this API key sends more than %g requests a second; retry later", float64(l.every))
		e.RetryAfter = d
		return e
	}
	return nil
}
