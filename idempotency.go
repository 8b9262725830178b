package boxoffice

import "time"

// Response is a finished request's answer as stored for replay: status, body and Location, byte
// for byte.
type Response struct {
	Status   int
	Body     []byte
	Location string
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
