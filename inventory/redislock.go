package inventory

import (
	"boxoffice"
	boredis "boxoffice/redis"
)

// newRedisLock returns the redis-lock strategy over store with the servers of opts.Redis (one, or
// three or more for Redlock); see boxoffice/redis.Lock for what it guarantees. With no servers it
// fails with "redis-lock needs --redis".
func newRedisLock(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	l, err := boredis.NewLock(store, opts.Redis, boredis.LockOptions{Logger: opts.Logger})
	if err != nil {
		return nil, err // not a typed nil *Lock inside a non-nil interface
	}
	return l, nil
}
