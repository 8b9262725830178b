package inventory

import (
	"errors"

	"boxoffice"
)

// NewPessimistic returns the pessimistic strategy over store. (Being written: not usable yet.)
func NewPessimistic(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	return nil, errors.New("the pessimistic strategy is not built yet")
}
