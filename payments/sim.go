package payments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
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
//
// Its memory does not grow with the charges' contents: a final charge costs an index entry of a
// few dozen bytes, and the rest is read back from the ledger when a retry asks (see book).
type Sim struct {
	slowDelay     time.Duration
	flakyFailures int
	now           func() time.Time
	book          *book
	locks         keyLocks

	mu     sync.Mutex                // guards the fields below
	flaky  map[string]*flakyAttempts // by key, until the charge is made
	closed bool
	done   chan struct{} // closed by Close, to wake waiters on slow charges
}

type flakyAttempts struct {
	amount   boxoffice.Money
	metadata map[string]string
	failures int
}

// Errors the Sim answers with that Stripe gives a code of its own. They come wrapped with a
// boxoffice error (see coded), so callers of Charge and Refund see the same codes as before and
// the HTTP server can still tell these cases apart without reading messages.
var (
	// errKeyReused: an idempotency key came back with different parameters (idempotency_error).
	errKeyReused = errors.New("payments: idempotency key reused with another request")
	// errAlreadyRefunded: a new refund of a charge refunded in full (charge_already_refunded).
	errAlreadyRefunded = errors.New("payments: charge already refunded")
)

// codedError is a boxoffice error that also matches a sentinel above with errors.Is. Its text is
// the boxoffice error's alone.
type codedError struct {
	err  *boxoffice.Error
	kind error
}

func (e *codedError) Error() string   { return e.err.Error() }
func (e *codedError) Unwrap() []error { return []error{e.err, e.kind} }

func coded(kind error, code, format string, args ...any) error {
	return &codedError{err: boxoffice.Errorf(code, format, args...), kind: kind}
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
	s.book = newBook(&memLedger{})
	if opts.LedgerPath != "" {
		b, err := openLedger(opts.LedgerPath)
		if err != nil {
			return nil, err
		}
		s.book = b
	}

	var overdue []*charge
	for _, c := range s.book.pending() {
		if !c.settleAt.After(s.now()) {
			overdue = append(overdue, c)
		} else {
			s.schedule(c)
		}
	}
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
	s.mu.Unlock()
	s.book.stop()
	return s.book.lines.close()
}

// Charge takes req.Amount once per req.Key. A retry with the same key returns the first answer:
// the same charge or the same decline. A tok_slow charge answers when it settles or, when ctx ends
// first, with ctx.Err() while it keeps settling; a retry then waits only for what is left.
func (s *Sim) Charge(ctx context.Context, req boxoffice.ChargeRequest) (*boxoffice.Charge, error) {
	rec, _, err := s.chargeRecord(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	return &boxoffice.Charge{ID: rec.ID, Amount: rec.Amount}, nil
}

// chargeRecord is Charge answering with the whole record, which the HTTP server renders; a
// decline comes with its record too. metadata is kept with a new charge and, like the amount,
// must be the same on a retry. replayed says that the charge was made by an earlier call with the
// key (Stripe's Idempotent-Replayed). The record of a charge made now is built from its ledger
// line, so a new key costs no read of the ledger.
func (s *Sim) chargeRecord(ctx context.Context, req boxoffice.ChargeRequest, metadata map[string]string) (rec ChargeRecord, replayed bool, err error) {
	if req.Key == "" {
		return ChargeRecord{}, false, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	}
	if req.Amount.Amount < 0 {
		return ChargeRecord{}, false, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	if err := ctx.Err(); err != nil {
		return ChargeRecord{}, false, err
	}
	rec, c, replayed, err := s.charge(ctx, req, metadata)
	for err == nil {
		switch rec.Status {
		case ChargeSucceeded:
			return rec, replayed, nil
		case ChargeDeclined:
			return rec, replayed, boxoffice.Errorf(boxoffice.EPAYMENTDECLINED, "%s", rec.Message)
		}
		if err = s.waitSettled(ctx, c); err == nil {
			rec = s.book.snapshot(c)
		}
	}
	return ChargeRecord{}, false, err
}

// chargeLock names the lock a charge is made and settled under. It is the key's hash rather than
// the key, so that charges whose keys collide are made one at a time and newChargeID can make
// sure their ids differ.
func chargeLock(keyHash uint64) string {
	return "charge:" + strconv.FormatUint(keyHash, 16)
}

// charge returns the charge for req.Key, creating it on the first attempt; c is the live charge
// when it is pending, found that an earlier call made it. It holds the key's lock until the new
// charge is in the ledger, so that no concurrent attempt sees (and answers with) a charge a crash
// could still lose.
func (s *Sim) charge(ctx context.Context, req boxoffice.ChargeRequest, metadata map[string]string) (rec ChargeRecord, c *charge, found bool, err error) {
	h := s.book.hash(req.Key)
	unlock, err := s.locks.lock(ctx, chargeLock(h))
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	defer unlock()

	s.mu.Lock()
	closed, f := s.closed, s.flaky[req.Key]
	s.mu.Unlock()
	if closed {
		return ChargeRecord{}, nil, false, errClosed
	}
	rec, c, found, err = s.book.chargeByKey(req.Key)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	if found {
		// Stripe compares a retry's parameters with the first request's; the metadata is one of
		// them (maps.Equal takes nil and empty alike, as "no metadata").
		if rec.Amount != req.Amount || rec.Token != req.Token || !maps.Equal(rec.Metadata, metadata) {
			return ChargeRecord{}, nil, false, reusedKey(req.Key)
		}
		return rec, c, true, nil
	}
	if f != nil && (req.Token != TokenFlaky || f.amount != req.Amount || !maps.Equal(f.metadata, metadata)) {
		return ChargeRecord{}, nil, false, reusedKey(req.Key)
	}

	now := s.stamp()
	ln := &ledgerLine{
		Op: opCharge, Key: req.Key, Token: req.Token, Amount: req.Amount, Description: req.Description,
		Metadata: nonEmpty(metadata), Status: ChargeSucceeded, At: now,
	}
	switch req.Token {
	case TokenOK:
	case TokenDeclined:
		ln.Status, ln.Message = ChargeDeclined, "the card was declined"
	case TokenSlow:
		ln.Status, ln.SettleAt = ChargePending, now.Add(s.slowDelay)
	case TokenFlaky:
		if f == nil {
			f = &flakyAttempts{amount: req.Amount, metadata: metadata}
			s.mu.Lock()
			s.flaky[req.Key] = f
			s.mu.Unlock()
		}
		// f is only touched under the key's lock, which this call holds.
		if f.failures < s.flakyFailures {
			f.failures++
			return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.EPAYMENTUNAVAILABLE,
				"simulated provider failure %d of %d; retry with the same key", f.failures, s.flakyFailures)
		}
	default:
		ln.Status, ln.Message = ChargeDeclined, fmt.Sprintf("unknown payment token %q", req.Token)
	}
	if ln.ID, err = s.book.newChargeID(now, h); err != nil {
		return ChargeRecord{}, nil, false, err
	}
	off, err := s.book.lines.append(ln)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	if c, err = s.book.insert(ln, off); err != nil {
		return ChargeRecord{}, nil, false, fmt.Errorf("payments: %w", err)
	}
	s.mu.Lock()
	delete(s.flaky, req.Key)
	s.mu.Unlock()
	if c != nil {
		s.schedule(c)
	}
	return recordOf(ln), c, false, nil
}

func reusedKey(key string) error {
	return coded(errKeyReused, boxoffice.EVALIDATION,
		"idempotency key %q was used before with a different request", key)
}

// nonEmpty is m, or nil when it is empty, so that a line without metadata carries no field.
func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// refundLock names the lock a refund key's refund is made under: its hash, as for charges, so
// that refunds whose keys collide are made one at a time and newRefundID can make their ids
// differ.
func refundLock(keyHash uint64) string {
	return "refund:" + strconv.FormatUint(keyHash, 16)
}

// schedule arms the timer that settles a pending charge on time even when no caller is waiting
// for it any more.
func (s *Sim) schedule(c *charge) {
	s.book.arm(c, c.settleAt.Sub(s.now()), func() {
		// A failure here leaves the charge pending; the next caller to wait for it settles it.
		_ = s.settle(context.Background(), c)
	})
}

// waitSettled waits until a pending charge is due and settles it, or until it was settled by the
// timer, ctx ends, or the simulator closes.
func (s *Sim) waitSettled(ctx context.Context, c *charge) error {
	pending, settled, at := s.book.pendingState(c)
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
	// Key and ID never change after the charge is made, so they are read without the book's lock.
	unlock, err := s.locks.lock(ctx, chargeLock(s.book.hash(c.Key)))
	if err != nil {
		return err
	}
	defer unlock()
	if pending, _, _ := s.book.pendingState(c); !pending {
		return nil
	}
	ln := &ledgerLine{Op: opSettle, Key: c.Key, ID: c.ID, At: s.stamp()}
	off, err := s.book.lines.append(ln)
	if err != nil {
		return err
	}
	if _, err := s.book.insert(ln, off); err != nil {
		return fmt.Errorf("payments: %w", err)
	}
	return nil
}

// Refund gives back req.Amount (zero means all) of a succeeded charge, once per req.Key and at
// most once per charge. A retry with the same key returns the same refund. A pending charge is
// waited for, as for Charge, since it will succeed.
func (s *Sim) Refund(ctx context.Context, req boxoffice.RefundRequest) (*boxoffice.Refund, error) {
	rec, _, err := s.refundRecord(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	return &boxoffice.Refund{ID: rec.RefundID, ChargeID: rec.ID}, nil
}

// refundRecord is Refund answering with the refunded charge's record, which holds the refund and
// which the HTTP server renders. metadata is kept with a new refund and must be the same on a
// retry; replayed says that an earlier call with the key made the refund.
func (s *Sim) refundRecord(ctx context.Context, req boxoffice.RefundRequest, metadata map[string]string) (rec ChargeRecord, replayed bool, err error) {
	switch {
	case req.Key == "":
		return ChargeRecord{}, false, boxoffice.Validation(boxoffice.FieldError{Field: "key", Message: "an idempotency key is required"})
	case req.ChargeID == "":
		return ChargeRecord{}, false, boxoffice.Validation(boxoffice.FieldError{Field: "charge_id", Message: "is required"})
	case req.Amount.Amount < 0:
		return ChargeRecord{}, false, boxoffice.Validation(boxoffice.FieldError{Field: "amount", Message: "must not be negative"})
	}
	if err := ctx.Err(); err != nil {
		return ChargeRecord{}, false, err
	}
	for {
		rec, pending, replayed, err := s.refund(ctx, req, metadata)
		if err != nil {
			return ChargeRecord{}, false, err
		}
		if pending == nil {
			return rec, replayed, nil
		}
		if err := s.waitSettled(ctx, pending); err != nil {
			return ChargeRecord{}, false, err
		}
	}
}

// refund returns the refunded charge's record for req.Key, making the refund when the charge
// allows, or the charge to wait for when it is still pending; found says an earlier call made the
// refund. The refund key's lock makes retries of one key answer alike; the charge's lock makes two
// keys race for one charge and only one win.
func (s *Sim) refund(ctx context.Context, req boxoffice.RefundRequest, metadata map[string]string) (rec ChargeRecord, pending *charge, found bool, err error) {
	h := s.book.hash(req.Key)
	unlock, err := s.locks.lock(ctx, refundLock(h))
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	defer unlock()

	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ChargeRecord{}, nil, false, errClosed
	}
	r, err := s.book.refundByKey(req.Key)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	if r != nil {
		if r.ChargeID != req.ChargeID || r.RequestAmount != req.Amount || !maps.Equal(r.Metadata, metadata) {
			return ChargeRecord{}, nil, false, reusedKey(req.Key)
		}
		rec, _, found, err := s.book.chargeByID(r.ChargeID)
		switch {
		case err != nil:
			return ChargeRecord{}, nil, false, err
		case !found || rec.RefundID != r.ID:
			return ChargeRecord{}, nil, false, fmt.Errorf("payments: refund %s is not on charge %s", r.ID, r.ChargeID)
		}
		return rec, nil, true, nil
	}

	// The charge is looked at only under its refund lock: another key may be refunding it now.
	unlockCharge, err := s.locks.lock(ctx, "refund-of:"+req.ChargeID)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	defer unlockCharge()
	rec, c, found, err := s.book.chargeByID(req.ChargeID)
	switch {
	case err != nil:
		return ChargeRecord{}, nil, false, err
	case !found:
		return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.ENOTFOUND, "no charge %q", req.ChargeID)
	case rec.Status == ChargePending:
		return ChargeRecord{}, c, false, nil
	case rec.Status == ChargeDeclined:
		return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.EVALIDATION, "charge %s was declined; there is nothing to refund", rec.ID)
	case rec.Refunded && rec.RefundAmount.Amount >= rec.Amount.Amount:
		return ChargeRecord{}, nil, false, coded(errAlreadyRefunded, boxoffice.EVALIDATION,
			"Charge %s has already been refunded (by %s).", rec.ID, rec.RefundID)
	case rec.Refunded:
		// Stripe would take a second partial refund up to the rest; the simulator keeps one
		// refund per charge, which is all boxoffice ever makes.
		return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.EVALIDATION,
			"charge %s was refunded in part already (%s); the simulator takes one refund per charge", rec.ID, rec.RefundID)
	case req.Amount.Currency != "" && req.Amount.Currency != rec.Amount.Currency:
		return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.EVALIDATION, "refund currency %q differs from the charge's %q",
			req.Amount.Currency, rec.Amount.Currency)
	case req.Amount.Amount > rec.Amount.Amount:
		return ChargeRecord{}, nil, false, boxoffice.Errorf(boxoffice.EVALIDATION, "refund of %d exceeds charge %s of %d",
			req.Amount.Amount, rec.ID, rec.Amount.Amount)
	}
	amount := rec.Amount
	if req.Amount.Amount > 0 {
		amount.Amount = req.Amount.Amount
	}
	now := s.stamp()
	ln := &ledgerLine{
		Op: opRefund, Key: req.Key, ChargeID: rec.ID,
		Amount: amount, RequestAmount: req.Amount, Metadata: nonEmpty(metadata), At: now,
	}
	if ln.ID, err = s.book.newRefundID(now, h); err != nil {
		return ChargeRecord{}, nil, false, err
	}
	off, err := s.book.lines.append(ln)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	if _, err := s.book.insert(ln, off); err != nil {
		return ChargeRecord{}, nil, false, fmt.Errorf("payments: %w", err)
	}
	setRefund(&rec, ln)
	return rec, nil, false, nil
}

// stamp is the time recorded in the ledger: UTC and without a monotonic reading, so that the
// live state equals what a replay of the file reads back.
func (s *Sim) stamp() time.Time { return s.now().UTC() }

// Charges returns every charge the simulator made or declined, in the order it made them, with
// their refunds: what an audit compares with the orders that claim to be paid. It reads them back
// from the ledger, so the list is as long as the ledger while nothing else keeps them. It panics
// when the ledger file cannot be read back (a failing disk, or the file removed under the
// simulator): an audit must not pass on a partial list.
func (s *Sim) Charges() []ChargeRecord {
	recs, err := s.book.records()
	if err != nil {
		panic(fmt.Sprintf("payments: list charges: %v", err))
	}
	return recs
}
