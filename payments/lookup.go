package payments

// Read-only lookups the HTTP server needs to render Stripe objects: Charge and Refund answer with
// ids only (what boxoffice.Payments promises), while a Stripe client expects the whole object.
// They copy under s.mu like Charges does, but find one record instead of copying the whole book.

// recordByKey returns the charge made under an idempotency key.
func (s *Sim) recordByKey(key string) (ChargeRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.book.charges[key]
	if c == nil {
		return ChargeRecord{}, false
	}
	return c.ChargeRecord, true
}

// recordByID returns the charge with a charge id.
func (s *Sim) recordByID(id string) (ChargeRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.book.byID[id]
	if c == nil {
		return ChargeRecord{}, false
	}
	return c.ChargeRecord, true
}
