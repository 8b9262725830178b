package boxoffice

import (
	"context"
	"time"
)

// Response is a finished request's answer as stored for replay: status, body and Location, byte
// for byte.
type Response struct {
	Status   int
	Body     []byte
	Location string
	// ETag, on an answer to a GET that may be asked again unchanged (a seat map), lets the
	// client ask with If-None-Match and get 304. Never stored with an idempotency record.
	ETag string
}

// IdemRecord is the server's memory of one idempotency key. It is written in the same transaction as
// the first effect of its request (a hold, an order), carries the ids of those effects so that a
// retry or the background completer can resume, and finally the response, written in the same
// transaction as the last effect.
type IdemRecord struct {
	ID          string
	Scope       string // API key id, method and route template
	Key         string
	Fingerprint string
	HoldID      string
	OrderID     string
	// LockedUntil is the lease of the request working on the record; while it lasts another request
	// with the same key gets 409 in progress.
	LockedUntil time.Time
	Response    *Response // nil until the request finished
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// IdemTx is what a transaction does with idempotency records.
type IdemTx interface {
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
}
