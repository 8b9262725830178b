package inventory

import (
	"errors"

	"boxoffice"
)

// NewEventLog returns the eventlog strategy over store. (Being written: not usable yet.)
func NewEventLog(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	return nil, errors.New("the eventlog strategy is not built yet")
}
