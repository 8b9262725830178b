package boxoffice

import "context"

// Store is the durable home of all state. Every change happens inside Update, in one transaction;
// a store adapter (sqlite, postgres) implements it and Tx with the same behaviour.
type Store interface {
	// Update runs fn in a read-write transaction and commits when fn returns nil. The commit is
	// durable when Update returns. fn may run more than once (a store retries a transaction that
	// lost a serialization race, and group commit runs a failed batch's fns again one by one):
	// only the last run's writes commit, and its error is returned as is (compare with
	// errors.Is or ErrorCode). So fn must keep nothing of a run but what it wrote through tx and
	// what the last run sets; the conformance suite runs every fn twice to hold it to that.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// View runs fn in a read-only transaction that sees one consistent snapshot.
	View(ctx context.Context, fn func(tx Tx) error) error
	// Close releases the store.
	Close() error
}

// Tx is one transaction of a Store: what it does with each noun, declared beside the noun.
// Lookups of a missing row return an *Error with ENOTFOUND; inserts that clash with a unique key
// return an *Error with ECONFLICT.
type Tx interface {
	ShowTx
	InventoryTx
	HoldTx
	OrderTx
	IdemTx
	EventTx
	WebhookTx
	APIKeyTx
}

// OrderFilter narrows ListOrders. Empty fields match every order.
type OrderFilter struct {
	// ShowID keeps the orders of one show.
	ShowID string
	// APIKeyID keeps the orders of one sales channel (the key whose hold an order confirms).
	APIKeyID string
}
