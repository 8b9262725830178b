package main

import (
	"fmt"
	"log/slog"

	"boxoffice"
	"boxoffice/payments"
)

// paymentProvider is what serve needs of a payment adapter: the contract, and a way to let go of
// its file or connections on shutdown.
type paymentProvider interface {
	boxoffice.Payments
	Close() error
}

// isPaymentsURL reports whether a --payments value names a Stripe-compatible provider by URL.
func isPaymentsURL(v string) bool {
	_, err := payments.ParseBaseURL(v)
	return err == nil
}

// openPayments builds the provider --payments names: the built-in simulator with its ledger under
// --data-dir ("sim"), or the Stripe-compatible HTTP adapter for a base URL, such as a
// `boxoffice payments-sim` or Stripe itself (https://sk_…@api.stripe.com).
func (f *serveFlags) openPayments(log *slog.Logger) (paymentProvider, error) {
	if f.payments == "sim" {
		sim, err := payments.NewSim(payments.SimOptions{LedgerPath: f.ledgerPath()})
		if err != nil {
			return nil, err
		}
		return sim, nil
	}
	h, err := payments.NewHTTP(f.payments, payments.HTTPOptions{})
	if err != nil {
		return nil, fmt.Errorf("--payments: %w", err)
	}
	u, _ := payments.ParseBaseURL(f.payments)
	u.User = nil // an API key in the URL is a secret; the log shows where payments go, not how
	// The key is not "…url": the tests (and operators' scripts) read the first url= as the server's own.
	log.Info("payments go to a Stripe-compatible provider over HTTP", "provider", u.String(),
		"timeout", payments.DefaultHTTPTimeout)
	return h, nil
}

// paymentsName says in the start-up log where payments go, without any secret in a URL.
func (f *serveFlags) paymentsName() string {
	if f.payments == "sim" {
		return "simulator (ledger " + f.ledgerPath() + ")"
	}
	u, err := payments.ParseBaseURL(f.payments)
	if err != nil {
		return "HTTP provider"
	}
	u.User = nil
	return "HTTP " + u.String()
}
