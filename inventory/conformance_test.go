package inventory_test

import (
	"context"
	"sync"
	"testing"

	"boxoffice"
	"boxoffice/inventory"
	"boxoffice/inventory/inventorytest"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	boredis "boxoffice/redis"
	"boxoffice/redis/redistest"
	"boxoffice/sqlite"
)

// stores are the stores every strategy runs the suite on: how to open the store of a test dir.
// Opening the same dir again gives the same data, as after a restart.
var stores = map[string]func(t *testing.T, dir string) boxoffice.Store{
	"sqlite": func(t *testing.T, dir string) boxoffice.Store {
		st, err := sqlite.Open(context.Background(), dir+"/boxoffice.db")
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	"postgres": func(t *testing.T, dir string) boxoffice.Store {
		st, err := postgres.Open(context.Background(), pgDatabase(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
}

var (
	pgMu  sync.Mutex
	pgDBs = map[string]string{} // test dir → its database, so a reopen finds the same data
)

func pgDatabase(t *testing.T, dir string) string {
	pgMu.Lock()
	defer pgMu.Unlock()
	if url, ok := pgDBs[dir]; ok {
		return url
	}
	url := pgtest.Start(t)
	pgDBs[dir] = url
	return url
}

// redisLock is the redis-lock strategy over urls, wired as cmd/boxoffice wires it.
func redisLock(urls []string) map[string]inventory.Constructor {
	return map[string]inventory.Constructor{"redis-lock": boredis.Strategy(urls)}
}

// TestConformance runs the whole suite for every strategy on every store.
func TestConformance(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, name := range inventory.Names(redisLock(nil)) {
			t.Run(name+"/"+store, func(t *testing.T) {
				var opts inventory.Options
				if name == "redis-lock" {
					// One server for the whole suite, so its fencing counters outlive the suite's restarts.
					opts.More = redisLock([]string{redistest.Start(t)})
				}
				inventorytest.Exercise(t, inventorytest.Harness{
					OpenStore: stores[store],
					NewInventory: func(t *testing.T, st boxoffice.Store) boxoffice.Inventory {
						inv, err := inventory.New(name, st, opts)
						if err != nil {
							t.Fatal(err)
						}
						return inv
					},
				})
			})
		}
	}
}
