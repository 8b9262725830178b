package boxoffice

import (
	"errors"
	"fmt"
	"time"
)

// Stable error codes. Transports map each to a status in one table; clients match on them.
const (
	ECAPACITYCONFLICT   = "capacity_conflict"
	ESOLDOUT            = "sold_out"
	ESEATUNAVAILABLE    = "seat_unavailable" // a chosen seat is held or sold
	EBUYERLIMIT         = "buyer_limit"
	EHOLDCONFIRMED      = "hold_confirmed"
	EHOLDEXPIRED        = "hold_expired"
	EHOLDRELEASED       = "hold_released"
	EPAYMENTDECLINED    = "payment_declined"
	ENOTCANCELLABLE     = "order_not_cancellable"
	ECANCELWINDOW       = "cancel_window_closed"
	EIDEMMISSING        = "idempotency_key_missing"
	EIDEMINVALID        = "idempotency_key_invalid"
	EIDEMREUSED         = "idempotency_key_reused"
	EIDEMINPROGRESS     = "idempotency_request_in_progress"
	EVALIDATION         = "validation_failed"
	ENOTFOUND           = "not_found"
	EUNAUTHORIZED       = "unauthorized"
	EFORBIDDEN          = "forbidden"
	EPAYLOADTOOLARGE    = "payload_too_large"
	EUNSUPPORTEDMEDIA   = "unsupported_media_type"
	EMETHODNOTALLOWED   = "method_not_allowed"
	ERATELIMITED        = "rate_limited"
	EOVERLOADED         = "overloaded"
	EINTERNAL           = "internal"
	EPAYMENTUNAVAILABLE = "payment_unavailable" // a transient provider failure; retried, never shown as final
	ECONFLICT           = "conflict"            // a uniqueness clash inside a store; callers re-read
	// EREPLAYFAILED: a dead letter's consumer failed again (the receiver still answers 500, the
	// SMTP server is down); the dead letter stays, and the problem says why.
	EREPLAYFAILED = "replay_failed"
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a domain error: a stable code, a human message, and the extras some codes carry.
type Error struct {
	Code       string
	Message    string
	Fields     []FieldError  // for EVALIDATION
	Available  *int          // for ESOLDOUT: how many tickets are left
	RetryAfter time.Duration // for EIDEMINPROGRESS, EOVERLOADED
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// SoldOut is the ESOLDOUT error of a reservation of want tickets of tier tierID when available
// are left (a negative count, from counts that disagree, reads as none).
func SoldOut(tierID string, available, want int) *Error {
	available = max(available, 0)
	e := Errorf(ESOLDOUT, "only %d tickets of tier %s are left, %d asked", available, tierID, want)
	e.Available = &available
	return e
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain; internal errors get a
// generic message so that nothing about the inside leaks to a client.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// Validation builds an EVALIDATION error from field errors.
func Validation(fields ...FieldError) *Error {
	msg := "the request is invalid"
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: EVALIDATION, Message: msg, Fields: fields}
}

// NotReadyError says why a server should get no traffic now: Reason is safe to show to whoever
// asks /readyz (a load balancer, an operator), Err is the cause for the log.
type NotReadyError struct {
	Reason string
	Err    error
}

// Error implements error.
func (e *NotReadyError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *NotReadyError) Unwrap() error { return e.Err }

// Overloaded is an EOVERLOADED error: the server cannot take the request now (shed load, a show
// moving between servers, a full disk), a 503 with a Retry-After of retryAfter that no
// idempotency record keeps, so the client's retry with the same key is served afresh.
func Overloaded(retryAfter time.Duration, format string, args ...any) *Error {
	e := Errorf(EOVERLOADED, format, args...)
	e.RetryAfter = retryAfter
	return e
}

// StorageFull is the error of a write the store refused for want of space (a full disk): the
// server's condition, not the client's, and temporary, so Overloaded. cause stays in the chain
// for the log.
func StorageFull(cause error) error {
	return errors.Join(Overloaded(5*time.Second, "the server's storage is full; retry later"), cause)
}
