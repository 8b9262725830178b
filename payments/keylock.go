package payments

import (
	"context"
	"sync"
)

// keyLocks serializes work per name (an idempotency key, a charge id) without one global lock, so
// that calls about different keys run, and fsync, in parallel while calls about the same key queue.
// Entries are reference-counted and dropped when nobody holds or waits for them, so the map stays
// as small as the number of keys in flight.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // a one-slot semaphore: a select on it can also watch ctx
	refs int
}

// lock takes the lock for name, giving up with ctx.Err() when ctx ends first, and returns the
// function that releases it.
func (l *keyLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*keyLock)
	}
	kl := l.m[name]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[name] = kl
	}
	kl.refs++
	l.mu.Unlock()

	unlock = func() {
		<-kl.ch
		l.release(name, kl)
	}
	// A free lock is taken even when ctx ended meanwhile: select would pick at random between the
	// two, and a caller that got this far should not fail by chance.
	select {
	case kl.ch <- struct{}{}:
		return unlock, nil
	default:
	}
	select {
	case kl.ch <- struct{}{}:
		return unlock, nil
	case <-ctx.Done():
		l.release(name, kl)
		return nil, ctx.Err()
	}
}

func (l *keyLocks) release(name string, kl *keyLock) {
	l.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(l.m, name)
	}
	l.mu.Unlock()
}
