// Package inventory holds the race-condition strategies behind boxoffice.Inventory: the ways to
// keep held+sold <= capacity while a crowd buys the last tickets at once. Each is chosen by name
// (--inventory) and every one passes the same conformance suite (package inventorytest).
package inventory

import (
	"fmt"
	"sort"

	"boxoffice"
)

// Default is the strategy a server uses when none is named.
const Default = "atomic"

// constructors maps each strategy's name to how it is made over a store.
var constructors = map[string]func(boxoffice.Store) (boxoffice.Inventory, error){
	"atomic": func(s boxoffice.Store) (boxoffice.Inventory, error) { return NewAtomic(s), nil },
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
func New(name string, store boxoffice.Store) (boxoffice.Inventory, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("unknown inventory strategy %q (known: %v)", name, Names())
	}
	return c(store)
}

// soldOut is the error of a reservation that does not fit, carrying what is left.
func soldOut(c boxoffice.TierCounts, want int) error {
	avail := max(c.Available(), 0)
	e := boxoffice.Errorf(boxoffice.ESOLDOUT, "only %d tickets of tier %s are left, %d asked", avail, c.TierID, want)
	e.Available = &avail
	return e
}
