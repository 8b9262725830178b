package payments

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v82"

	"boxoffice"
)

// DefaultHTTPTimeout bounds one call to a Stripe-compatible provider when HTTPOptions.Timeout is
// unset: long enough for a slow provider to answer, short enough that a hung connection turns into
// a retry (with the same key) instead of a stuck order.
const DefaultHTTPTimeout = 10 * time.Second

// defaultAPIKey is sent when neither the options nor the URL name a key: the simulator checks none,
// and Stripe's client library wants one.
const defaultAPIKey = "sk_test_boxoffice"

// HTTPOptions configures an HTTP adapter. The zero value suits the payment simulator.
type HTTPOptions struct {
	// APIKey is the secret key sent as a bearer token. Empty takes the user part of the base URL
	// (https://sk_live_…@api.stripe.com), so that one --payments flag can say everything, and
	// else a placeholder that the simulator accepts.
	APIKey string
	// Timeout bounds each Charge and Refund call, on top of the caller's context (default
	// DefaultHTTPTimeout). A call that runs out answers EPAYMENTUNAVAILABLE; the caller retries
	// with the same key, so a charge made meanwhile is found, not repeated.
	Timeout time.Duration
	// HTTPClient sends the requests (default: a client of its own with a connection pool sized
	// for a stampede). Its Timeout, if any, should exceed Timeout.
	HTTPClient *http.Client
}

// HTTP is the Stripe-compatible payment adapter: a boxoffice.Payments that talks to Stripe's API
// (or anything that speaks it, such as NewServer in front of the simulator) through Stripe's
// official Go client. Every charge and refund carries the caller's key as its Idempotency-Key, so
// a retry after a timeout, a reset or a lost answer finds the first charge instead of making a
// second. It is safe for concurrent use.
type HTTP struct {
	client  *stripe.Client
	timeout time.Duration
	hc      *http.Client
	owned   bool // hc is ours to close
}

var _ boxoffice.Payments = (*HTTP)(nil)

// NewHTTP returns an adapter for the Stripe-compatible API at baseURL (http or https, e.g.
// http://127.0.0.1:8090 or https://api.stripe.com; a trailing /v1 is ignored).
//
// Stripe's client retries failed requests by itself, with the same idempotency key, which would be
// safe; it is switched off all the same, because it sleeps between tries without watching the
// context and hides failures from the caller, who retries with backoff anyway and decides when a
// payment goes to the 202 path. Go's transport may still resend a request once on a fresh
// connection when a kept-alive one turns out dead; it resends the Idempotency-Key with it.
func NewHTTP(baseURL string, opts HTTPOptions) (*HTTP, error) {
	u, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	key := opts.APIKey
	if key == "" && u.User != nil {
		key = u.User.Username()
		if key == "" {
			key, _ = u.User.Password()
		}
	}
	if key == "" {
		key = defaultAPIKey
	}
	u.User = nil // the key goes in the Authorization header, never in a logged URL

	h := &HTTP{timeout: opts.Timeout, hc: opts.HTTPClient}
	if h.timeout <= 0 {
		h.timeout = DefaultHTTPTimeout
	}
	if h.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The default of 2 idle connections per host makes a stampede open and close a
		// connection per charge; the sale's drivers run hundreds of charges at once.
		t.MaxIdleConnsPerHost = 128
		h.hc, h.owned = &http.Client{Transport: t}, true
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(u.String()),
		HTTPClient:        h.hc,
		MaxNetworkRetries: stripe.Int64(0),
		// The caller logs the errors it acts on; the library's own logging would print every
		// injected fault a second time, to stderr.
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	h.client = stripe.NewClient(key, stripe.WithBackends(&stripe.Backends{
		API: backend, Connect: backend, Uploads: backend, MeterEvents: backend,
	}))
	return h, nil
}

// ParseBaseURL checks a Stripe-compatible base URL: http or https, with a host, without query or
// fragment. It is the test for whether a --payments value names a provider by URL.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("payments: base URL %q: %w", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("payments: base URL %q: want http:// or https://", raw)
	case u.Host == "":
		return nil, fmt.Errorf("payments: base URL %q has no host", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("payments: base URL %q: want no query or fragment", raw)
	}
	return u, nil
}

// Close lets go of idle connections. Calls after it still work (they open new ones); there is
// nothing else to release.
func (h *HTTP) Close() error {
	if h.owned {
		h.hc.CloseIdleConnections()
	}
	return nil
}

// Charge takes req.Amount once per req.Key. A decline answers EPAYMENTDECLINED; a 5xx, 409 or 429
// answer, a network error or the end of the call's timeout answers EPAYMENTUNAVAILABLE, wrapping
// the cause (so errors.Is still finds context.DeadlineExceeded): retry with the same key.
func (h *HTTP) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	if req.Key == "" {
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	}
	if req.Amount.Amount < 0 {
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	params := &stripe.ChargeCreateParams{
		Amount:   stripe.Int64(req.Amount.Amount),
		Currency: stripe.String(strings.ToLower(req.Amount.Currency)),
		Source:   &stripe.PaymentSourceSourceParams{Token: stripe.String(req.Token)},
	}
	if req.Description != "" {
		params.Description = stripe.String(req.Description)
	}
	params.SetIdempotencyKey(req.Key)
	ch, err := h.client.V1Charges.Create(ctx, params)
	if err != nil {
		return nil, mapError("charge", req.Key, err)
	}
	if ch.Status == stripe.ChargeStatusPending {
		// Stripe answers some charges before they settle, and replays that same answer to every
		// retry with the key, so only a read of the charge tells when it is done.
		if ch, err = h.client.V1Charges.Retrieve(ctx, ch.ID, nil); err != nil {
			return nil, mapError("charge", req.Key, err)
		}
	}
	switch ch.Status {
	case stripe.ChargeStatusSucceeded:
		return &boxoffice.Charge{ID: ch.ID, Amount: boxoffice.Money{Amount: ch.Amount, Currency: strings.ToUpper(string(ch.Currency))}}, nil
	case stripe.ChargeStatusFailed:
		return nil, boxoffice.Errorf(boxoffice.EPAYMENTDECLINED, "%s", declineMessage(ch.FailureMessage))
	case stripe.ChargeStatusPending:
		return nil, boxoffice.Errorf(boxoffice.EPAYMENTUNAVAILABLE, "charge %s is still pending; retry with the same key", ch.ID)
	}
	return nil, fmt.Errorf("payments: charge %s has unknown status %q", ch.ID, ch.Status)
}

// Refund gives back req.Amount (zero means all) of a charge, once per req.Key. Errors map as for
// Charge; an unknown charge answers ENOTFOUND and a charge that cannot be refunded EVALIDATION.
func (h *HTTP) Refund(ctx context.Context, req boxoffice.RefundRequest) (*boxoffice.Refund, error) {
	switch {
	case req.Key == "":
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	case req.ChargeID == "":
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "charge_id", Message: "is required"})
	case req.Amount.Amount < 0:
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	// No currency is sent: a Stripe refund of a charge is in the charge's currency, and Stripe
	// rejects the parameter there.
	params := &stripe.RefundCreateParams{Charge: stripe.String(req.ChargeID)}
	if req.Amount.Amount > 0 {
		params.Amount = stripe.Int64(req.Amount.Amount)
	}
	params.SetIdempotencyKey(req.Key)
	re, err := h.client.V1Refunds.Create(ctx, params)
	if err != nil {
		return nil, mapError("refund", req.Key, err)
	}
	switch re.Status {
	case stripe.RefundStatusFailed, stripe.RefundStatusCanceled:
		// Final at the provider; the same key would replay it. Nothing boxoffice can do
		// automatically, so it is left to an operator (the order stays confirmed).
		return nil, fmt.Errorf("payments: refund %s of charge %s is %s", re.ID, req.ChargeID, re.Status)
	}
	// Succeeded, or pending: a pending refund is accepted and completes at the provider.
	return &boxoffice.Refund{ID: re.ID, ChargeID: req.ChargeID}, nil
}

// mapError turns what Stripe's client returned into the error codes of boxoffice.Payments.
// Anything that may have left the call half done, or that a later try may get past, is
// EPAYMENTUNAVAILABLE, because the caller's answer to it — retry with the same key — is safe.
func mapError(op, key string, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		switch {
		case se.Type == stripe.ErrorTypeCard || se.HTTPStatusCode == http.StatusPaymentRequired:
			return boxoffice.Errorf(boxoffice.EPAYMENTDECLINED, "%s", declineMessage(se.Msg))
		case se.HTTPStatusCode >= 500, se.HTTPStatusCode == http.StatusConflict, se.HTTPStatusCode == http.StatusTooManyRequests:
			return unavailable(op, key, fmt.Errorf("provider answered %d: %s", se.HTTPStatusCode, se.Msg))
		case se.HTTPStatusCode == http.StatusNotFound:
			return boxoffice.Errorf(boxoffice.ENOTFOUND, "%s", se.Msg)
		case se.HTTPStatusCode == http.StatusBadRequest:
			// Includes idempotency_error: the key was used before with other parameters.
			return boxoffice.Errorf(boxoffice.EVALIDATION, "%s", se.Msg)
		}
		// 401, 403 and the like: the configuration is wrong, which no retry mends.
		return fmt.Errorf("payments: %s with key %s: provider answered %d: %s", op, key, se.HTTPStatusCode, se.Msg)
	}
	// Connection refused or reset, EOF where the answer should be (the response was lost after
	// the provider acted), the deadline, a garbled body: the charge may or may not exist.
	return unavailable(op, key, err)
}

// unavailable is EPAYMENTUNAVAILABLE that still wraps its cause, so that ErrorCode finds the code
// and errors.Is finds, say, context.DeadlineExceeded, while a client shown the error sees only the
// message, not the internals.
func unavailable(op, key string, cause error) error {
	return fmt.Errorf("%w: %w", boxoffice.Errorf(boxoffice.EPAYMENTUNAVAILABLE,
		"the payment provider did not complete the %s; retry with the same key", op), fmt.Errorf("key %s: %w", key, cause))
}

func declineMessage(msg string) string {
	if msg == "" {
		return "the card was declined"
	}
	return msg
}
