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

// SpeculativeStore is a Store that can also run fn speculatively: writes whose only answer is
// whether they changed a row (inserts, conditional updates, event appends) are not sent when fn
// calls them but answered as the hot path expects — inserted, changed — and sent together with
// the next read or with COMMIT, so a transaction of writes costs one round trip, not one per
// statement. The store checks each guess where it runs the statement; should one be wrong, that
// run is rolled back and fn runs again with every answer real, like Update. Savepoints still
// undo only their part. fn must therefore let a later run correct any decision an answer led to,
// as Update's fn already must; what commits is exactly what Update would commit.
type SpeculativeStore interface {
	Store
	// UpdateSpeculative is Update with fn's blind writes deferred and their answers guessed.
	UpdateSpeculative(ctx context.Context, fn func(tx Tx) error) error
}

// UpdateSpeculative runs fn with UpdateSpeculative where s offers it, else with Update.
func UpdateSpeculative(ctx context.Context, s Store, fn func(tx Tx) error) error {
	if sp, ok := s.(SpeculativeStore); ok {
		return sp.UpdateSpeculative(ctx, fn)
	}
	return s.Update(ctx, fn)
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
	SeatTx
}

// OrderFilter narrows ListOrders. Empty fields match every order.
type OrderFilter struct {
	// ShowID keeps the orders of one show.
	ShowID string
	// APIKeyID keeps the orders of one sales channel (the key whose hold an order confirms).
	APIKeyID string
}

// WriteProber is a store that can prove it commits: ProbeWrite durably rewrites one row of its
// own and returns the error a commit meets (a full disk, a read-only database). Readiness uses
// it, since a store that still answers reads may refuse every write.
type WriteProber interface {
	ProbeWrite(ctx context.Context) error
}
