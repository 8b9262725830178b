package payments

// Read-only lookups the HTTP server needs to render Stripe objects: Charge and Refund answer with
// ids only (what boxoffice.Payments promises), while a Stripe client expects the whole object.
// A final charge is read back from the ledger (see book); a lookup that fails to read answers
// "not found", since these only render answers and never decide whether money moves.

// recordByKey returns the charge made under an idempotency key.
func (s *Sim) recordByKey(key string) (ChargeRecord, bool) {
	rec, _, found, err := s.book.chargeByKey(key)
	return rec, found && err == nil
}

// recordByID returns the charge with a charge id.
func (s *Sim) recordByID(id string) (ChargeRecord, bool) {
	rec, _, found, err := s.book.chargeByID(id)
	return rec, found && err == nil
}
