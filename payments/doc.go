// Package payments holds the payment providers behind boxoffice.Payments. Sim is the built-in
// simulator: it answers to test tokens (tok_ok, tok_declined, tok_slow, tok_flaky) the way a real
// provider would, honours idempotency keys so that no key is ever charged twice, and keeps a
// durable ledger so that this stays true across a kill -9 of the server.
package payments
