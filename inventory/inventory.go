// Package inventory holds the race-condition strategies behind boxoffice.Inventory: the ways to
// keep held+sold <= capacity while a crowd buys the last tickets at once. Each is chosen by name
// (--inventory) and every one passes the same conformance suite (package inventorytest).
package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"boxoffice"
)

// Default is the strategy a server uses when none is named.
const Default = "actor"

// Options configure the strategies that need more than a store.
type Options struct {
	// Logger receives the strategies' own events (shed load, retries, projector lag).
	Logger *slog.Logger
	// More are strategies that live in packages of their own because they need a driver
	// (redis-lock in boxoffice/redis), by name. The caller wires them, as cmd/boxoffice does, so
	// that this package imports no driver.
	More map[string]Constructor
	// Fence, when set, is called by the actor's writer in every batch's transaction, once for
	// each show in the batch, before any of its writes: several servers sharing a store own each
	// show by a lease, and the fence (a check of the lease's epoch in the same transaction) keeps
	// a server that lost a show from committing after the show's new owner. Its error fails the
	// whole batch. The other strategies serialise in the store and need none.
	Fence func(ctx context.Context, tx boxoffice.Tx, showID string) error
}

// Constructor makes a strategy over a store.
type Constructor func(store boxoffice.Store, opts Options) (boxoffice.Inventory, error)

// constructors maps each strategy of this package to how it is made over a store.
var constructors = map[string]Constructor{
	"atomic":      func(s boxoffice.Store, _ Options) (boxoffice.Inventory, error) { return NewAtomic(s), nil },
	"pessimistic": NewPessimistic,
	"optimistic":  NewOptimistic,
	"actor":       NewActor,
	"eventlog":    NewEventLog,
}

// Names lists this package's strategies and those of more, sorted.
func Names(more map[string]Constructor) []string {
	names := make([]string, 0, len(constructors)+len(more))
	for n := range constructors {
		names = append(names, n)
	}
	for n := range more {
		if _, ok := constructors[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// New returns the strategy called name over store: one of this package's, or of opts.More.
func New(name string, store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	c, ok := constructors[name]
	if !ok {
		c, ok = opts.More[name]
	}
	if !ok {
		return nil, fmt.Errorf("unknown inventory strategy %q (known: %v)", name, Names(opts.More))
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
