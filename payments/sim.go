package payments

import (
	"context"
	"fmt"
	"sync"
	"time"

	"boxoffice"
)

// Test tokens the simulator understands. Any other token is declined, as a real provider declines
// a card it does not know.
const (
	TokenOK       = "tok_ok"       // succeeds at once
	TokenDeclined = "tok_declined" // declined, finally
	TokenSlow     = "tok_slow"     // succeeds SlowDelay after the first attempt with its key
	TokenFlaky    = "tok_flaky"    // fails transiently FlakyFailures times per key, then succeeds
)

// ID prefixes of the simulator's charges and refunds, the same as Stripe's so that logs read alike.
const (
	PrefixCharge = "ch_"
	PrefixRefund = "re_"
)

// SimOptions configures a Sim. The zero value is a memory-only simulator with the defaults of the
// product contract.
type SimOptions struct {
	// LedgerPath is the file every state change is appended to before a call returns, so that a
	// restarted simulator remembers every charge it answered about. Empty keeps state in memory
	// only, which is enough for tests that do not restart. One Sim at a time may use a file.
	LedgerPath string
	// SlowDelay is how long a tok_slow charge takes to settle (default 5s, as the contract says);
	// tests shorten it.
	SlowDelay time.Duration
	// FlakyFailures is how many attempts per key a tok_flaky charge fails before it succeeds
	// (0 means the default, 2; negative means none). The count lives in memory: a restart starts
	// it again, which a caller that retries cannot tell from a provider having a bad minute.
	FlakyFailures int
	// Now is the clock (default time.Now). It stamps ids and records and decides when a tok_slow
	// charge is due, so tests can make one due without waiting.
	Now func() time.Time
}

// Sim is the built-in payment simulator: a boxoffice.Payments that never charges an idempotency
// key twice, also across a kill -9 when it has a ledger. It is safe for concurrent use; calls with
// the same key are serialized, calls with different keys are not.
type Sim struct {
	slowDelay     time.Duration
	flakyFailures int
	now           func() time.Time
	ledger        *ledger // nil when memory-only
	locks         keyLocks

	mu     sync.Mutex // guards the fields below and every charge's fields
	book   *book
	flaky  map[string]*flakyAttempts // by key, until the charge succeeds
	closed bool
	done   chan struct{} // closed by Close, to wake waiters on slow charges
}

type flakyAttempts struct {
	amount   boxoffice.Money
	failures int
}

var _ boxoffice.Payments = (*Sim)(nil)

// NewSim starts a simulator. With a LedgerPath it replays the ledger first, ignoring a torn last
// line, and settles pending charges whose time has come while it was down, so that nothing a
// caller was told about is lost.
func NewSim(opts SimOptions) (*Sim, error) {
	s := &Sim{
		slowDelay:     opts.SlowDelay,
		flakyFailures: opts.FlakyFailures,
		now:           opts.Now,
		flaky:         make(map[string]*flakyAttempts),
		done:          make(chan struct{}),
	}
	if s.slowDelay <= 0 {
		s.slowDelay = 5 * time.Second
	}
	switch {
	case s.flakyFailures == 0:
		s.flakyFailures = 2
	case s.flakyFailures < 0:
		s.flakyFailures = 0
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.book = newBook()
	if opts.LedgerPath != "" {
		l, b, err := openLedger(opts.LedgerPath)
		if err != nil {
			return nil, err
		}
		s.ledger, s.book = l, b
	}

	var overdue []*charge
	s.mu.Lock()
	for _, c := range s.book.order {
		if c.Status != ChargePending {
			continue
		}
		if !c.settleAt.After(s.now()) {
			overdue = append(overdue, c)
		} else {
			s.scheduleLocked(c)
		}
	}
	s.mu.Unlock()
	for _, c := range overdue {
		if err := s.settle(context.Background(), c); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close stops the settle timers and closes the ledger. Calls after it fail; pending charges stay
// pending in the ledger and settle when a simulator opens it again.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, c := range s.book.order {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	s.mu.Unlock()
	if s.ledger != nil {
		return s.ledger.close()
	}
	return nil
}

// Charge takes req.Amount once per req.Key. A retry with the same key returns the first answer:
// the same charge or the same decline. A tok_slow charge answers when it settles or, when ctx ends
// first, with ctx.Err() while it keeps settling; a retry then waits only for what is left.
func (s *Sim) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	if req.Key == "" {
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	}
	if req.Amount.Amount < 0 {
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		c, err := s.charge(ctx, req)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		rec := c.ChargeRecord
		s.mu.Unlock()
		switch rec.Status {
		case ChargeSucceeded:
			return &boxoffice.Charge{ID: rec.ID, Amount: rec.Amount}, nil
		case ChargeDeclined:
			return nil, boxoffice.Errorf(boxoffice.EPAYMENTDECLINED, "%s", rec.Message)
		}
		if err := s.waitSettled(ctx, c); err != nil {
			return nil, err
		}
	}
}

// charge returns the charge for req.Key, creating it on the first attempt. It holds the key's
// lock until the new charge is in the ledger, so that no concurrent attempt sees (and answers
// with) a charge a crash could still lose.
func (s *Sim) charge(ctx context.Context, req boxoffice.ChargeRequest) (*charge, error) {
	unlock, err := s.locks.lock(ctx, "charge:"+req.Key)
	if err != nil {
		return nil, err
	}
	defer unlock()

	s.mu.Lock()
	closed, c, f := s.closed, s.book.charges[req.Key], s.flaky[req.Key]
	s.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if c != nil {
		if c.Amount != req.Amount || c.Token != req.Token {
			return nil, reusedKey(req.Key)
		}
		return c, nil
	}
	if f != nil && (req.Token != TokenFlaky || f.amount != req.Amount) {
		return nil, reusedKey(req.Key)
	}

	now := s.stamp()
	ln := &ledgerLine{
		Op: opCharge, Key: req.Key, ID: boxoffice.NewID(PrefixCharge, now), Token: req.Token,
		Amount: req.Amount, Description: req.Description, Status: ChargeSucceeded, At: now,
	}
	switch req.Token {
	case TokenOK:
	case TokenDeclined:
		ln.Status, ln.Message = ChargeDeclined, "the card was declined"
	case TokenSlow:
		ln.Status, ln.SettleAt = ChargePending, now.Add(s.slowDelay)
	case TokenFlaky:
		if f == nil {
			f = &flakyAttempts{amount: req.Amount}
			s.mu.Lock()
			s.flaky[req.Key] = f
			s.mu.Unlock()
		}
		// f is only touched under the key's lock, which this call holds.
		if f.failures < s.flakyFailures {
			f.failures++
			return nil, boxoffice.Errorf(boxoffice.EPAYMENTUNAVAILABLE,
				"simulated provider failure %d of %d; retry with the same key", f.failures, s.flakyFailures)
		}
	default:
		ln.Status, ln.Message = ChargeDeclined, fmt.Sprintf("unknown payment token %q", req.Token)
	}
	if err := s.log(ln); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.book.apply(ln); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	delete(s.flaky, req.Key)
	c = s.book.charges[req.Key]
	if c.Status == ChargePending && !s.closed {
		s.scheduleLocked(c)
	}
	return c, nil
}

func reusedKey(key string) error {
	return boxoffice.Errorf(boxoffice.EVALIDATION,
		"idempotency key %q was used before with a different request", key)
}

// scheduleLocked arms the timer that settles a pending charge on time even when no caller is
// waiting for it any more. s.mu is held.
func (s *Sim) scheduleLocked(c *charge) {
	d := c.settleAt.Sub(s.now())
	c.timer = time.AfterFunc(max(d, 0), func() {
		// A failure here leaves the charge pending; the next caller to wait for it settles it.
		_ = s.settle(context.Background(), c)
	})
}

// waitSettled waits until a pending charge is due and settles it, or until it was settled by the
// timer, ctx ends, or the simulator closes.
func (s *Sim) waitSettled(ctx context.Context, c *charge) error {
	s.mu.Lock()
	pending, settled, at := c.Status == ChargePending, c.settled, c.settleAt
	s.mu.Unlock()
	if !pending {
		return nil
	}
	if d := at.Sub(s.now()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-settled:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errClosed
		case <-t.C:
		}
	}
	return s.settle(ctx, c)
}

// settle makes a pending charge succeeded, once, whoever gets there first.
func (s *Sim) settle(ctx context.Context, c *charge) error {
	unlock, err := s.locks.lock(ctx, "charge:"+c.Key)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	pending := c.Status == ChargePending
	s.mu.Unlock()
	if !pending {
		return nil
	}
	ln := &ledgerLine{Op: opSettle, Key: c.Key, ID: c.ID, At: s.stamp()}
	if err := s.log(ln); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if err := s.book.apply(ln); err != nil {
		return fmt.Errorf("payments: %w", err)
	}
	return nil
}

// Refund gives back req.Amount (zero means all) of a succeeded charge, once per req.Key and at
// most once per charge. A retry with the same key returns the same refund. A pending charge is
// waited for, as for Charge, since it will succeed.
func (s *Sim) Refund(ctx context.Context, req boxoffice.RefundRequest) (*boxoffice.Refund, error) {
	switch {
	case req.Key == "":
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	case req.ChargeID == "":
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "charge_id", Message: "is required"})
	case req.Amount.Amount < 0:
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		r, pending, err := s.refund(ctx, req)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return &boxoffice.Refund{ID: r.id, ChargeID: r.chargeID}, nil
		}
		if err := s.waitSettled(ctx, pending); err != nil {
			return nil, err
		}
	}
}

// refund returns the refund for req.Key, making it when the charge allows, or the charge to wait
// for when it is still pending. The refund key's lock makes retries of one key answer alike; the
// charge's lock makes two keys race for one charge and only one win.
func (s *Sim) refund(ctx context.Context, req boxoffice.RefundRequest) (*refund, *charge, error) {
	unlock, err := s.locks.lock(ctx, "refund:"+req.Key)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	s.mu.Lock()
	closed, r, c := s.closed, s.book.refunds[req.Key], s.book.byID[req.ChargeID]
	s.mu.Unlock()
	if closed {
		return nil, nil, errClosed
	}
	if r != nil {
		if r.chargeID != req.ChargeID || r.requested != req.Amount {
			return nil, nil, reusedKey(req.Key)
		}
		return r, nil, nil
	}
	if c == nil {
		return nil, nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "no charge %q", req.ChargeID)
	}

	unlockCharge, err := s.locks.lock(ctx, "refund-of:"+c.ID)
	if err != nil {
		return nil, nil, err
	}
	defer unlockCharge()
	s.mu.Lock()
	rec := c.ChargeRecord
	s.mu.Unlock()
	switch {
	case rec.Status == ChargePending:
		return nil, c, nil
	case rec.Status == ChargeDeclined:
		return nil, nil, boxoffice.Errorf(boxoffice.EVALIDATION, "charge %s was declined; there is nothing to refund", rec.ID)
	case rec.Refunded:
		return nil, nil, boxoffice.Errorf(boxoffice.EVALIDATION, "charge %s was refunded already (%s)", rec.ID, rec.RefundID)
	case req.Amount.Currency != "" && req.Amount.Currency != rec.Amount.Currency:
		return nil, nil, boxoffice.Errorf(boxoffice.EVALIDATION, "refund currency %q differs from the charge's %q",
			req.Amount.Currency, rec.Amount.Currency)
	case req.Amount.Amount > rec.Amount.Amount:
		return nil, nil, boxoffice.Errorf(boxoffice.EVALIDATION, "refund of %d exceeds charge %s of %d",
			req.Amount.Amount, rec.ID, rec.Amount.Amount)
	}
	amount := rec.Amount
	if req.Amount.Amount > 0 {
		amount.Amount = req.Amount.Amount
	}
	now := s.stamp()
	ln := &ledgerLine{
		Op: opRefund, Key: req.Key, ID: boxoffice.NewID(PrefixRefund, now), ChargeID: rec.ID,
		Amount: amount, RequestAmount: req.Amount, At: now,
	}
	if err := s.log(ln); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.book.apply(ln); err != nil {
		return nil, nil, fmt.Errorf("payments: %w", err)
	}
	return s.book.refunds[req.Key], nil, nil
}

// stamp is the time recorded in the ledger: UTC and without a monotonic reading, so that the
// live state equals what a replay of the file reads back.
func (s *Sim) stamp() time.Time { return s.now().UTC() }

// log makes ln durable before the state change it describes becomes visible to anyone.
func (s *Sim) log(ln *ledgerLine) error {
	if s.ledger == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return errClosed
		}
		return nil
	}
	return s.ledger.append(ln)
}

// Charges returns every charge the simulator made or declined, in the order it made them, with
// their refunds: what an audit compares with the orders that claim to be paid.
func (s *Sim) Charges() []ChargeRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.book.records()
}
