package waitroom

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxCached bounds a cache's keys: show ids come from requests, so a cache must not grow with
// whatever ids a client makes up. Past it the cache starts again empty.
const maxCached = 10000

// readCache keeps one value a show, read through load and trusted for a while: what lets a
// crowd of tickets polling one show cost the store a read a second rather than one a poll.
// Callers that find a value stale together read it once.
type readCache[T any] struct {
	mu    sync.Mutex
	m     map[string]cached[T]
	reads singleflight.Group
}

type cached[T any] struct {
	v  T
	at time.Time
}

// get returns key's value as read at most maxAge before now (a value from the future, after
// a clock step back, is stale), reading it with load otherwise. load runs without the caller's
// cancellation: others may be waiting on the same read.
func (c *readCache[T]) get(ctx context.Context, key string, now time.Time, maxAge time.Duration, load func(ctx context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < maxAge && now.Sub(e.at) >= 0 {
		return e.v, nil
	}
	v, err, _ := c.reads.Do(key, func() (any, error) { return load(context.WithoutCancel(ctx)) })
	if err != nil {
		var zero T
		return zero, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > maxCached {
		c.m = map[string]cached[T]{}
	}
	c.m[key] = cached[T]{v: v.(T), at: now}
	c.mu.Unlock()
	return v.(T), nil
}

// forget drops key's value: the next get reads it.
func (c *readCache[T]) forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
