package redis

import (
	"boxoffice"
	"boxoffice/inventory"
)

// Strategy is the redis-lock strategy over the Redis servers of urls (one, or three or more for
// Redlock), for inventory.Options.More: the caller wires it, so that package inventory imports no
// driver. With no servers it fails with "redis-lock needs --redis".
func Strategy(urls []string) inventory.Constructor {
	return func(store boxoffice.Store, opts inventory.Options) (boxoffice.Inventory, error) {
		l, err := NewLock(store, urls, LockOptions{Logger: opts.Logger})
		if err != nil {
			return nil, err // not a typed nil *Lock inside a non-nil interface
		}
		return l, nil
	}
}
