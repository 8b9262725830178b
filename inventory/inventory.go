// Package inventory holds the race-condition strategies behind boxoffice.Inventory: the ways to
// keep held+sold <= capacity while a crowd buys the last tickets at once. Each is chosen by name
// (--inventory) and every one passes the same conformance suite (package inventorytest).
package inventory

import (
	"fmt"
	"log/slog"
	"sort"

	"boxoffice"
)

// Default is the strategy a server uses when none is named.
const Default = "atomic"

// Options configure the strategies that need more than a store.
type Options struct {
	// Redis lists the Redis servers of the redis-lock strategy (redis:// URLs); with three or more
	// independent servers the lock follows Redlock.
	Redis []string
	// Logger receives the strategies' own events (shed load, retries, projector lag).
	Logger *slog.Logger
}

// constructors maps each strategy's name to how it is made over a store.
var constructors = map[string]func(boxoffice.Store, Options) (boxoffice.Inventory, error){
	"atomic":      func(s boxoffice.Store, _ Options) (boxoffice.Inventory, error) { return NewAtomic(s), nil },
	"pessimistic": NewPessimistic,
	"optimistic":  NewOptimistic,
	"actor":       NewActor,
	"eventlog":    NewEventLog,
	"redis-lock":  newRedisLock,
}

// Names lists the strategies this build knows, sorted.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns the strategy called name over store.
func New(name string, store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("unknown inventory strategy %q (known: %v)", name, Names())
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return c(store, opts)
}

// soldOut is the error of a reservation that does not fit, carrying what is left.
func soldOut(c boxoffice.TierCounts, want int) error {
	return boxoffice.SoldOut(c.TierID, c.Available(), want)
}

// fits reports whether c applied to cur keeps 0 <= held, 0 <= sold and held+sold <= capacity: the
// check that strategies deciding in Go (pessimistic, optimistic, actor) make before they write.
func fits(cur boxoffice.TierCounts, c boxoffice.CountChange) bool {
	held, sold := cur.Held+c.Held, cur.Sold+c.Sold
	return held >= 0 && sold >= 0 && held+sold <= cur.Capacity
}

// misfit is the error of a change that does not fit cur: ESOLDOUT for a reservation; for any other
// change the counts disagree with the holds and orders, which is refused rather than made worse.
func misfit(cur boxoffice.TierCounts, c boxoffice.CountChange) error {
	if c.Held > 0 {
		return soldOut(cur, c.Held)
	}
	return fmt.Errorf("tier %s/%s: change %+v does not fit counts held=%d sold=%d", c.ShowID, c.TierID, c, cur.Held, cur.Sold)
}
