package inventory

import (
	"errors"

	"boxoffice"
)

// NewOptimistic returns the optimistic strategy over store. (Being written: not usable yet.)
func NewOptimistic(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	return nil, errors.New("the optimistic strategy is not built yet")
}
