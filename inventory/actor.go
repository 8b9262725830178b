package inventory

import (
	"errors"

	"boxoffice"
)

// NewActor returns the actor strategy over store. (Being written: not usable yet.)
func NewActor(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	return nil, errors.New("the actor strategy is not built yet")
}
