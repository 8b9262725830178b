package boxoffice

import (
	"context"
	"time"
)

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

// Tx is one transaction of a Store. Lookups of a missing row return an *Error with ENOTFOUND;
// inserts that clash with a unique key return an *Error with ECONFLICT.
type Tx interface {
	// GetShow returns the show with its tiers and their counts.
	GetShow(ctx context.Context, id string) (*Show, error)
	// ListShows returns up to limit shows with ids after after, by id.
	ListShows(ctx context.Context, after string, limit int) ([]*Show, error)
	// PutShow creates or replaces a show and its tiers. Counts of tiers that stay are kept; the
	// caller has checked that capacities fit them. Tiers not in s are deleted.
	PutShow(ctx context.Context, s *Show) error

	// TierCounts returns a tier's counts; forUpdate locks the row until the transaction ends where
	// the store can lock rows (PostgreSQL's FOR UPDATE; SQLite's writer is already exclusive).
	TierCounts(ctx context.Context, showID, tierID string, forUpdate bool) (TierCounts, error)
	// AddTierCounts adds dHeld and dSold to a tier's counts if the result keeps
	// 0 <= held, 0 <= sold and held+sold <= capacity, in one conditional write, and bumps the
	// version. ok is false when it would not fit; c is the counts after the write, or the current
	// ones when it did not fit.
	AddTierCounts(ctx context.Context, showID, tierID string, dHeld, dSold int) (c TierCounts, ok bool, err error)
	// SetTierCounts writes a tier's held and sold if its version is still version, and bumps the
	// version: the compare-and-set of optimistic locking. ok is false when another writer changed
	// the tier since it was read. Counts outside 0 <= held, 0 <= sold, held+sold <= capacity are
	// an error, never written.
	SetTierCounts(ctx context.Context, showID, tierID string, version int64, held, sold int) (ok bool, err error)
	// Fence raises a tier's fencing token to token unless a higher one was seen; ok is false when a
	// writer with a newer token came first, so a lock holder whose lock ran out cannot write after
	// its successor.
	Fence(ctx context.Context, showID, tierID string, token int64) (ok bool, err error)
	// ForEachTier calls fn for every tier's counts.
	ForEachTier(ctx context.Context, fn func(TierCounts) error) error

	// Savepoint starts a nested unit of the transaction; RollbackTo undoes what ran since and
	// ReleaseSavepoint keeps it. Strategies that batch many requests into one transaction use it
	// to undo one request without the others. name is [a-z0-9_]+; anything else is an error.
	Savepoint(ctx context.Context, name string) error
	// RollbackTo undoes everything since Savepoint(name); the savepoint stays and must be released.
	RollbackTo(ctx context.Context, name string) error
	// ReleaseSavepoint ends the savepoint, keeping its work in the transaction.
	ReleaseSavepoint(ctx context.Context, name string) error

	// AppendInventoryEvent appends e to its show's stream at e.Version, which must be one past the
	// stream's last; an event already at that version is an ECONFLICT: another writer appended
	// first (the expected-version append of event sourcing).
	AppendInventoryEvent(ctx context.Context, e *InventoryEvent) error
	// InventoryEvents returns up to limit events of a show's stream after version after, in order.
	InventoryEvents(ctx context.Context, showID string, after int64, limit int) ([]*InventoryEvent, error)
	// InventoryHead returns the last version of a show's stream, 0 when it has none.
	InventoryHead(ctx context.Context, showID string) (int64, error)

	// InsertHold stores a new hold.
	InsertHold(ctx context.Context, h *Hold) error
	// GetHold returns a hold.
	GetHold(ctx context.Context, id string) (*Hold, error)
	// EndHold moves an active hold to status to; ok is false when the hold was not active.
	EndHold(ctx context.Context, id string, to HoldStatus, at time.Time) (ok bool, err error)
	// DueHolds returns up to limit active holds whose expires_at is at or before now and that have
	// no order waiting for its payment, earliest first.
	DueHolds(ctx context.Context, now time.Time, limit int) ([]*Hold, error)
	// NextHoldExpiry returns the earliest expires_at of an active hold; ok is false when none is.
	NextHoldExpiry(ctx context.Context) (t time.Time, ok bool, err error)
	// BuyerTickets returns how many tickets of a show a buyer holds or bought: the quantities of
	// their active and confirmed holds.
	BuyerTickets(ctx context.Context, showID, email string) (int, error)
	// ForEachHold calls fn for every hold.
	ForEachHold(ctx context.Context, fn func(*Hold) error) error

	// InsertOrder stores a new order. At most one order per hold may be pending_payment or
	// confirmed; a second one is an ECONFLICT.
	InsertOrder(ctx context.Context, o *Order) error
	// GetOrder returns an order.
	GetOrder(ctx context.Context, id string) (*Order, error)
	// LiveOrderForHold returns the hold's pending_payment or confirmed order, or ENOTFOUND.
	LiveOrderForHold(ctx context.Context, holdID string) (*Order, error)
	// UpdateOrder writes o's status, tickets, charge and refund ids and updated_at if the stored
	// status is still from; ok is false otherwise.
	UpdateOrder(ctx context.Context, o *Order, from OrderStatus) (ok bool, err error)
	// ListOrders returns up to limit orders that match f, with ids after after, by id.
	ListOrders(ctx context.Context, f OrderFilter, after string, limit int) ([]*Order, error)
	// PendingOrders returns up to limit pending_payment orders, oldest first.
	PendingOrders(ctx context.Context, limit int) ([]*Order, error)
	// ForEachOrder calls fn for every order.
	ForEachOrder(ctx context.Context, fn func(*Order) error) error

	// InsertIdemRecord stores a new record; one that exists for (scope, key) is an ECONFLICT.
	InsertIdemRecord(ctx context.Context, r *IdemRecord) error
	// GetIdemRecord returns the record of (scope, key). Inside Update it locks the record until the
	// transaction ends (PostgreSQL: FOR UPDATE), so that read-then-write of its response is atomic.
	GetIdemRecord(ctx context.Context, scope, key string) (*IdemRecord, error)
	// UpdateIdemRecord writes r's hold and order ids, lease and response.
	UpdateIdemRecord(ctx context.Context, r *IdemRecord) error
	// AnswerIdemRecordForOrder stores res as the response of the record whose request made the
	// order and ends its lease, unless that record has a response already (the request answered
	// 202) or is gone (swept); it reports whether it stored res. It is one conditional write
	// because settling a paid order, the hot path of every sale, answers the record this way.
	AnswerIdemRecordForOrder(ctx context.Context, orderID string, res *Response) (bool, error)
	// SweepIdemRecords deletes up to limit records that expired before now and returns how many.
	SweepIdemRecords(ctx context.Context, now time.Time, limit int) (int, error)
	// ClearIdemLeases ends every lease, for a server that starts and so knows none is working.
	ClearIdemLeases(ctx context.Context) error
	// ForEachIdemRecord calls fn for every record.
	ForEachIdemRecord(ctx context.Context, fn func(*IdemRecord) error) error

	// AppendEvent writes e to the outbox, giving it the next Seq of its subject and the next
	// Position.
	AppendEvent(ctx context.Context, e *Event) error
	// ListEvents returns up to limit events with Position after after, in commit order.
	ListEvents(ctx context.Context, after int64, limit int) ([]*Event, error)

	// RelayCheckpoint returns the position up to which the relay called name has published the
	// outbox, 0 when it has not started.
	RelayCheckpoint(ctx context.Context, name string) (int64, error)
	// SetRelayCheckpoint records that the relay called name has published the outbox up to
	// position. It is kept in the store, beside the outbox, so that it survives what the outbox
	// survives.
	SetRelayCheckpoint(ctx context.Context, name string, position int64) error
	// InsertInboxEvent records that consumer applied the event eventID; one already recorded is an
	// ECONFLICT. A consumer calls it in the transaction of the effect's record, so the effect and
	// "done" commit together and a redelivered event is recognised.
	InsertInboxEvent(ctx context.Context, consumer, eventID string, at time.Time) error
	// InboxHas says whether consumer has applied the event eventID.
	InboxHas(ctx context.Context, consumer, eventID string) (bool, error)

	// PutWebhookEndpoint creates (created=true) or replaces the endpoint with w.ID, writing every
	// field of w as given.
	PutWebhookEndpoint(ctx context.Context, w *WebhookEndpoint) (created bool, err error)
	// GetWebhookEndpoint returns an endpoint.
	GetWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
	// DeleteWebhookEndpoint deletes an endpoint; ok is false when there was none.
	DeleteWebhookEndpoint(ctx context.Context, id string) (ok bool, err error)
	// ListWebhookEndpoints returns every endpoint, by id. Endpoints are few (one per partner), so
	// there is no paging.
	ListWebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error)
	// SweepInbox deletes up to limit inbox rows applied before before and returns how many: the
	// inbox must outlive any redelivery of an event, not the events themselves.
	SweepInbox(ctx context.Context, before time.Time, limit int) (int, error)

	// InsertAPIKey stores a key (its hash only).
	InsertAPIKey(ctx context.Context, k *APIKey) error
	// APIKeyByHash returns the key with that hash, revoked or not.
	APIKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// ListAPIKeys returns up to limit keys with ids after after, by id, revoked ones too.
	ListAPIKeys(ctx context.Context, after string, limit int) ([]*APIKey, error)
	// RevokeAPIKey marks a key revoked at at, unless it is revoked already (the first time stays);
	// a key that does not exist is ENOTFOUND.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error
	// TouchAPIKey sets a key's last_used_at to at if it is before at: callers write it lazily, so
	// two servers touching one key never move it back.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// OrderFilter narrows ListOrders. Empty fields match every order.
type OrderFilter struct {
	// ShowID keeps the orders of one show.
	ShowID string
	// APIKeyID keeps the orders of one sales channel (the key whose hold an order confirms).
	APIKeyID string
}
