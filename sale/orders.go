package sale

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"boxoffice"
)

var (
	errHoldGone = errors.New("the hold is no longer active")
	errRetry    = errors.New("the order changed meanwhile")
)

// lease is how long a request owns its idempotency record: it answers within the sync budget, so a
// lease that outlives it by a margin only runs out when the request's process died.
func (s *Service) lease() time.Duration { return leaseFor(s.cfg.SyncBudget) }

func leaseFor(syncBudget time.Duration) time.Duration { return syncBudget + leaseMargin }

// leaseMargin is how long a lease outlives the sync budget: a request answers within the budget,
// so only a request whose process died holds its record that long.
const leaseMargin = 10 * time.Second

// MinIdempotencyTTL is the shortest --idempotency-ttl a server with this sync budget accepts: a
// minute more than a request's lease, so that no key expires while its request or a quick retry
// of it is under way. (The sweep also keeps a record whose lease is live or whose order still
// waits for its payment, whatever its age.)
func MinIdempotencyTTL(syncBudget time.Duration) time.Duration {
	return leaseFor(syncBudget) + time.Minute
}

// ConfirmHold pays for a hold and turns it into an order: 201 when the payment settles within the
// sync budget, else 202 with the order pending; a decline is 402 and leaves the hold active.
// Another channel's hold is ENOTFOUND. The order belongs to the hold's channel, also when the
// admin confirms it.
func (s *Service) ConfirmHold(ctx context.Context, p *boxoffice.Principal, idem Idem, holdID string, in ConfirmInput) (*boxoffice.Response, bool, error) {
	var v validator
	v.token(in.Payment.Token, "payment.token")
	if err := v.err(); err != nil {
		return nil, false, err
	}
	if !strings.HasPrefix(holdID, boxoffice.PrefixHold) {
		return nil, false, holdNotFound(holdID)
	}
	if show := s.showOfHold(ctx, holdID); show != "" {
		if res, replayed, done, err := s.forward(ctx, show, &Call{Op: OpConfirmHold, Principal: p, Idem: idem, ID: holdID, Confirm: &in}); done {
			return res, replayed, err
		}
	}
	res, rec, err := s.lookup(ctx, idem)
	if res != nil || err != nil {
		return res, res != nil, err
	}
	if rec != nil {
		return s.resume(ctx, idem)
	}
	now := s.now()
	var order *boxoffice.Order
	err = s.store.Update(ctx, func(tx boxoffice.Tx) error {
		// The hold first, then the new order and the key's claim: postgres.LockOrder.
		h, err := tx.GetHold(ctx, holdID)
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND || err == nil && !p.Sees(h.APIKeyID) {
			return holdNotFound(holdID)
		} else if err != nil {
			return err
		}
		switch {
		case h.Status == boxoffice.HoldConfirmed:
			return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "hold %s is confirmed", h.ID)
		case h.Status == boxoffice.HoldReleased:
			return boxoffice.Errorf(boxoffice.EHOLDRELEASED, "hold %s was released", h.ID)
		case h.Status == boxoffice.HoldExpired || !now.Before(h.ExpiresAt):
			s.poke()
			return boxoffice.Errorf(boxoffice.EHOLDEXPIRED, "hold %s expired at %s", h.ID, h.ExpiresAt.Format(time.RFC3339))
		}
		if _, err := tx.LiveOrderForHold(ctx, h.ID); err == nil {
			return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "a payment for hold %s is under way", h.ID)
		} else if boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			return err
		}
		show, err := tx.GetShow(ctx, h.ShowID)
		if err != nil {
			return err
		}
		tier := show.Tier(h.TierID)
		if tier == nil {
			return boxoffice.Errorf(boxoffice.EINTERNAL, "hold %s is of a tier that no longer exists", h.ID)
		}
		order = s.newOrder(h, tier, in.Payment.Token, false)
		if err := tx.InsertOrder(ctx, order); boxoffice.ErrorCode(err) == boxoffice.ECONFLICT {
			return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "a payment for hold %s is under way", h.ID)
		} else if err != nil {
			return err
		}
		// The record names only what this request made: the order, not the hold it confirms.
		return insertRecord(ctx, tx, s.leasedRecord(idem, "", order.ID))
	})
	if err != nil {
		return s.finish(ctx, idem, nil, err)
	}
	return s.await(ctx, idem, order)
}

// Purchase holds, pays and confirms in one call; a decline releases the hold at once. The hold and
// the order belong to p's channel.
func (s *Service) Purchase(ctx context.Context, p *boxoffice.Principal, idem Idem, in PurchaseInput) (*boxoffice.Response, bool, error) {
	var v validator
	v.name(in.ShowID, "show_id")
	v.name(in.TierID, "tier_id")
	in.Quantity = v.seats(in.Seats, in.Quantity, s.cfg.MaxQuantity)
	v.quantity(in.Quantity, s.cfg.MaxQuantity, "quantity")
	v.email(in.Buyer.Email, "buyer.email")
	v.token(in.Payment.Token, "payment.token")
	if err := v.err(); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err // the client is gone (a retry may be here already): nothing to do for it
	}
	if err := s.admitted(ctx, in.ShowID, in.Buyer.Email); err != nil {
		return nil, false, err
	}
	if res, replayed, done, err := s.forward(ctx, in.ShowID, &Call{Op: OpPurchase, Principal: p, Idem: idem, Purchase: &in}); done {
		return res, replayed, err
	}
	first, replay, cl, release := s.claims.take(ctx, idem)
	if replay != nil {
		if res, err, ok := s.replayKnown(idem, replay); ok {
			return res, res != nil, err
		}
		first, cl, release = false, &claim{reserved: make(chan struct{})}, func(known) {}
	}
	// Whatever answer this request gets from here on with no error is stored on its key's
	// record (a replay, a refusal, an order's answer, a 202): the claim keeps it for retries.
	var kept known
	defer func() { release(kept) }()
	res, replayed, err := s.purchaseClaimed(ctx, p, idem, in, first, cl)
	if err == nil && res != nil {
		kept = known{fingerprint: idem.Fingerprint, res: res, at: s.now()}
	}
	return res, replayed, err
}

// purchaseClaimed is Purchase once the key is claimed here: first says the key is new to this
// process (purchaseNew may answer it without reading its record).
func (s *Service) purchaseClaimed(ctx context.Context, p *boxoffice.Principal, idem Idem, in PurchaseInput, first bool, cl *claim) (*boxoffice.Response, bool, error) {
	if first {
		if res, replayed, done, err := s.purchaseNew(ctx, p, idem, in, cl); done {
			return res, replayed, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var show *boxoffice.Show
	var refused error
	res, rec, err := s.lookupThen(ctx, idem, func(tx boxoffice.Tx) (err error) {
		show, refused, err = showWithTier(ctx, tx, in.ShowID, in.TierID, in.Quantity)
		return err
	})
	if res != nil || err != nil {
		return res, res != nil, err
	}
	if rec != nil {
		return s.resume(ctx, idem)
	}
	if refused != nil {
		return s.finish(ctx, idem, nil, refused)
	}
	h := s.newHold(p, show, in.TierID, in.Quantity, in.Buyer.Email)
	h.Seats = in.Seats
	order := s.newOrder(h, show.Tier(in.TierID), in.Payment.Token, true)
	err = s.reserve(ctx, show, h, func(tx boxoffice.Tx) error {
		if err := tx.InsertOrder(ctx, order); err != nil {
			return err
		}
		return insertRecord(ctx, tx, s.leasedRecord(idem, h.ID, order.ID))
	})
	if err != nil {
		return s.finish(ctx, idem, nil, err)
	}
	return s.await(ctx, idem, order)
}

func (s *Service) leasedRecord(idem Idem, holdID, orderID string) *boxoffice.IdemRecord {
	rec := s.newRecord(idem, nil)
	rec.HoldID, rec.OrderID, rec.LockedUntil = holdID, orderID, s.now().Add(s.lease())
	return rec
}

func (s *Service) newOrder(h *boxoffice.Hold, tier *boxoffice.Tier, token string, releaseOnFailure bool) *boxoffice.Order {
	now := s.now()
	return &boxoffice.Order{
		ID: boxoffice.NewID(boxoffice.PrefixOrder, now), Status: boxoffice.OrderPendingPayment,
		ShowID: h.ShowID, TierID: h.TierID, HoldID: h.ID, Quantity: h.Quantity,
		Amount:  boxoffice.Money{Amount: tier.Price.Amount * int64(h.Quantity), Currency: tier.Price.Currency},
		Buyer:   h.Buyer,
		Tickets: []boxoffice.Ticket{}, CreatedAt: now, UpdatedAt: now,
		PaymentToken: token, ReleaseOnFailure: releaseOnFailure, APIKeyID: h.APIKeyID,
	}
}

// resume picks up a record whose request died after its first phase (the order exists, the answer
// does not): it takes the lease and waits for the order like the first request would have.
func (s *Service) resume(ctx context.Context, idem Idem) (*boxoffice.Response, bool, error) {
	var res *boxoffice.Response
	var orderID string
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error {
		rec, err := tx.GetIdemRecord(ctx, idem.Scope, idem.Key)
		if err != nil {
			return err
		}
		r, again, err := s.judge(idem, rec)
		if err != nil || r != nil {
			res = r
			return err
		}
		if again.OrderID == "" {
			return boxoffice.Errorf(boxoffice.EINTERNAL, "idempotency record %s has neither order nor response", rec.ID)
		}
		orderID = again.OrderID
		rec.LockedUntil = s.now().Add(s.lease())
		return tx.UpdateIdemRecord(ctx, rec)
	})
	s.countIdem(res, err)
	if err != nil || res != nil {
		return res, res != nil, err
	}
	order, err := s.getOrder(ctx, orderID)
	if err != nil {
		return nil, false, err
	}
	return s.await(ctx, idem, order)
}

// await waits up to the sync budget for the order's payment to settle and answers with what the
// record then says; past the budget it stores and answers 202 with the order pending, and the
// payment settles in the background. No request waits on the payment longer than the budget.
func (s *Service) await(ctx context.Context, idem Idem, order *boxoffice.Order) (*boxoffice.Response, bool, error) {
	d := s.drive(order)
	t := time.NewTimer(s.cfg.SyncBudget)
	defer t.Stop()
	select {
	case <-d.done:
		// Settled in time (the common case): the driver stored the answer on the record in the
		// transaction that settled the order, so it is the record's answer without reading it.
		if d.res != nil {
			return d.res, false, nil
		}
	case <-t.C:
	case <-ctx.Done():
		// The client hung up: nobody reads an answer now. The driver finishes the payment and
		// stores the final answer on the record, which the client's retry replays (until then
		// the retry is told the request is in progress).
		return nil, false, ctx.Err()
	}
	// Settled by another driver, or past the budget: a read finds the answer when it is there
	// without taking the writer.
	var res *boxoffice.Response
	if err := s.store.View(s.base, func(tx boxoffice.Tx) error {
		rec, err := tx.GetIdemRecord(s.base, idem.Scope, idem.Key)
		if err == nil {
			res = rec.Response
		}
		return err
	}); err == nil && res != nil {
		return res, false, nil
	}
	err := s.store.Update(s.base, func(tx boxoffice.Tx) error {
		// The order, then the record: postgres.LockOrder, as settle keeps it.
		o, err := tx.GetOrder(s.base, order.ID)
		if err != nil {
			return err
		}
		pending := o.Status == boxoffice.OrderPendingPayment
		if pending && !o.ReleaseOnFailure {
			// The buyer is told "pending" and leaves; a later decline must give the tickets back.
			o.ReleaseOnFailure = true
			if pending, err = tx.UpdateOrder(s.base, o, boxoffice.OrderPendingPayment); err != nil {
				return err
			}
		}
		rec, err := tx.GetIdemRecord(s.base, idem.Scope, idem.Key)
		if err != nil {
			return err
		}
		if rec.Response != nil {
			res = rec.Response
			return nil
		}
		if !pending {
			return boxoffice.Errorf(boxoffice.EINTERNAL, "order %s settled without its answer", o.ID)
		}
		res = s.render.Resource(202, o, "/v1/orders/"+o.ID)
		rec.Response, rec.LockedUntil = res, time.Time{}
		return tx.UpdateIdemRecord(s.base, rec)
	})
	if err != nil {
		return nil, false, err
	}
	return res, false, nil
}

// driver is one order's payment driver.
type driver struct {
	done chan struct{}       // closed when the driver ends
	res  *boxoffice.Response // set before done closes: the answer the driver stored on the record, if it did
}

// drive starts the order's payment driver unless one runs already, or one ended lately with the
// order's answer stored, and returns it.
func (s *Service) drive(order *boxoffice.Order) *driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.driving[order.ID]; ok {
		return d
	}
	if d, ok := s.driven.get(order.ID); ok {
		// A retry that read the order pending a moment before its driver settled it: the
		// answer is known, and a second driver would only replay the charge and be refused the
		// settle by its conditional writes (which the actor had taken for stale memory).
		return d
	}
	d := &driver{done: make(chan struct{})}
	if s.base.Err() != nil {
		close(d.done)
		return d
	}
	s.driving[order.ID] = d
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.driving, order.ID)
			if d.res != nil {
				s.driven.put(order.ID, d)
			}
			s.mu.Unlock()
			close(d.done)
		}()
		d.res = s.runOrder(order)
	}()
	return d
}

// recentDrivers keeps the last recentDriversKept drivers that stored their order's answer: an
// order with a stored answer is final, so its driver's answer stays the answer. The caller holds
// the Service's mu.
type recentDrivers struct {
	m    map[string]*driver
	ring []string
	next int
}

// recentDriversKept bounds recentDrivers: far more than the orders a retry can race in the
// moment between reading its order pending and asking for its driver.
const recentDriversKept = 1024

func (r *recentDrivers) get(orderID string) (*driver, bool) {
	d, ok := r.m[orderID]
	return d, ok
}

func (r *recentDrivers) put(orderID string, d *driver) {
	if r.m == nil {
		r.m, r.ring = make(map[string]*driver, recentDriversKept), make([]string, recentDriversKept)
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.m, old)
	}
	r.ring[r.next], r.m[orderID] = orderID, d
	r.next = (r.next + 1) % recentDriversKept
}

// runOrder charges the order with its derived key until the provider gives a final answer, then
// settles it. Retries reuse the key, so however often this runs (after a timeout, a crash, in two
// processes) the buyer is charged once. It returns the answer it stored on the order's record, nil
// when it stored none (another driver settled the order, or the service stopped).
func (s *Service) runOrder(order *boxoffice.Order) *boxoffice.Response {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(s.base, 30*time.Second)
		ch, err := s.pay.Charge(ctx, boxoffice.ChargeRequest{
			Key: order.ChargeKey(), Token: order.PaymentToken, Amount: order.Amount,
			Description: itoa(order.Quantity) + " ticket(s) for " + order.ShowID,
		})
		cancel()
		var res *boxoffice.Response
		switch {
		case err == nil:
			res, err = s.settle(order, ch)
		case boxoffice.ErrorCode(err) == boxoffice.EPAYMENTDECLINED:
			res, err = s.failOrder(order, err)
		}
		if err == nil || s.base.Err() != nil {
			return res
		}
		s.log.Debug("payment not settled yet; retrying", "order", order.ID, "err", err)
		// Full jitter keeps a crowd of retrying drivers from hitting the provider in step.
		t := time.NewTimer(time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond)
		select {
		case <-s.base.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// settle confirms a paid order: the hold's tickets become sold, the order gets its tickets and its
// event, and the request's record its answer, in one transaction. It returns the answer it stored.
func (s *Service) settle(order *boxoffice.Order, ch *boxoffice.Charge) (*boxoffice.Response, error) {
	ctx := s.base
	o := *order
	o.Status, o.ChargeID, o.UpdatedAt = boxoffice.OrderConfirmed, ch.ID, s.now()
	o.Tickets = newTickets(o.Quantity)
	// The event names the show (its name, start and the tier's name) for the receipt, which is
	// rendered from the event alone. The purchase has just read the show into the cache, so this
	// costs no read on the hot path and none inside the transaction; a rename by another server
	// within the cache's second reaches receipts that much later.
	show, err := s.showCache.get(ctx, s.store, o.ShowID)
	if err != nil && boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		return nil, err // retried by runOrder, with the same charge key
	}
	event := boxoffice.NewOrderEvent(&o, show)
	// A tier turns seated only while nothing of it is held or sold (putSeats), so the cached show
	// says rightly whether this order's hold has seats.
	seated := show != nil && show.Tier(o.TierID) != nil && show.Tier(o.TierID).Seated
	change := boxoffice.CountChange{ShowID: o.ShowID, TierID: o.TierID, Held: -o.Quantity, Sold: o.Quantity}
	var answered *boxoffice.Response
	err = s.inv.Apply(ctx, change, func(tx boxoffice.Tx) error {
		answered = nil
		// Conditional writes instead of reads first: this is the hot path of every sale, and
		// each write says by its row count whether the state was what settling needs. Hold,
		// order, event, record, then (in the strategy) the tier: postgres.LockOrder, which every
		// writer follows so that two servers settling or buying at once never deadlock.
		ok, err := tx.EndHold(ctx, o.HoldID, boxoffice.HoldConfirmed, o.UpdatedAt)
		if err != nil {
			return err
		}
		if !ok {
			// Rare: the order was settled already (its hold is confirmed), or the hold ended
			// some other way. The order's status tells which.
			cur, err := tx.GetOrder(ctx, o.ID)
			if err != nil {
				return err
			}
			if cur.Status != boxoffice.OrderPendingPayment {
				return errSkip
			}
			return errHoldGone
		}
		// ReleaseOnFailure is written back as this driver knew it; once the order is confirmed
		// nothing reads it again, so a newer value set by a waiting request does not matter.
		if seated {
			// A seated tier's tickets name their seats, best first.
			seats, err := tx.SeatsOfHold(ctx, o.HoldID)
			if err != nil {
				return err
			}
			for i := range o.Tickets {
				if i < len(seats) {
					o.Tickets[i].Seat = seats[i].ID
				}
			}
			event = boxoffice.NewOrderEvent(&o, show)
		}
		if ok, err := tx.UpdateOrder(ctx, &o, boxoffice.OrderPendingPayment); err != nil || !ok {
			return cmpErr(err, errSkip) // rolls the hold back too
		}
		if err := s.appendEvent(ctx, tx, boxoffice.EventOrderConfirmed, o.ID, event); err != nil {
			return err
		}
		return answerRecord(ctx, tx, o.ID, s.render.Resource(201, &o, ""), &answered)
	})
	switch {
	case err == errSkip:
		return nil, nil
	case err == errHoldGone:
		// Holds with a payment under way are neither released nor expired, so this means the store
		// was changed by hand; the buyer paid for tickets we cannot give, so the money goes back.
		s.log.Error("paid order's hold is gone; refunding", "order", o.ID, "hold", o.HoldID)
		if _, err := s.pay.Refund(ctx, boxoffice.RefundRequest{Key: order.RefundKey(), ChargeID: ch.ID, Amount: o.Amount}); err != nil {
			return nil, err
		}
		return s.failOrder(order, boxoffice.Errorf(boxoffice.EHOLDEXPIRED, "hold %s ended before its payment settled; the payment was refunded", o.HoldID))
	}
	return answered, err
}

// failOrder ends an order whose payment failed, giving its hold's tickets back when the order says
// so, and answers the request's record with the failure. It returns the answer it stored.
func (s *Service) failOrder(order *boxoffice.Order, cause error) (*boxoffice.Response, error) {
	ctx := s.base
	for range 3 {
		var cur *boxoffice.Order
		if err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
			cur, err = tx.GetOrder(ctx, order.ID)
			return err
		}); err != nil {
			return nil, err
		}
		if cur.Status != boxoffice.OrderPendingPayment {
			return nil, nil
		}
		release := cur.ReleaseOnFailure
		change := boxoffice.CountChange{ShowID: cur.ShowID, TierID: cur.TierID}
		if release {
			change.Held = -cur.Quantity
		}
		var answered *boxoffice.Response
		err := s.inv.Apply(ctx, change, func(tx boxoffice.Tx) error {
			answered = nil
			o, err := tx.GetOrder(ctx, order.ID)
			if err != nil {
				return err
			}
			if o.Status != boxoffice.OrderPendingPayment {
				return errSkip
			}
			if o.ReleaseOnFailure != release {
				return errRetry
			}
			// The hold is locked before the order (postgres.LockOrder), as settle does: a
			// settle and a failure of one order on two servers then queue instead of deadlocking.
			var h *boxoffice.Hold
			if release {
				if h, err = tx.GetHold(ctx, o.HoldID); err != nil {
					return err
				}
			}
			o.Status, o.UpdatedAt = boxoffice.OrderPaymentFailed, s.now()
			if ok, err := tx.UpdateOrder(ctx, o, boxoffice.OrderPendingPayment); err != nil || !ok {
				return cmpErr(err, errSkip)
			}
			if release {
				if ok, err := tx.EndHold(ctx, h.ID, boxoffice.HoldReleased, o.UpdatedAt); err != nil || !ok {
					return cmpErr(err, errHoldGone)
				}
				if _, err := tx.FreeSeats(ctx, h.ID); err != nil {
					return err
				}
				h.Status, h.UpdatedAt = boxoffice.HoldReleased, o.UpdatedAt
				if err := s.appendEvent(ctx, tx, boxoffice.EventHoldReleased, h.ID, h); err != nil {
					return err
				}
			}
			if err := s.appendEvent(ctx, tx, boxoffice.EventOrderPaymentFailed, o.ID, o); err != nil {
				return err
			}
			return answerRecord(ctx, tx, o.ID, s.render.Problem(cause), &answered)
		})
		switch err {
		case errRetry:
			continue
		case errSkip:
			return nil, nil
		case errHoldGone:
			return s.failOrderKeepHold(order, cause)
		}
		return answered, err
	}
	return nil, errRetry
}

// failOrderKeepHold fails an order whose hold is already gone: no tickets move. It returns the
// answer it stored.
func (s *Service) failOrderKeepHold(order *boxoffice.Order, cause error) (*boxoffice.Response, error) {
	ctx := s.base
	var answered *boxoffice.Response
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error {
		answered = nil
		o, err := tx.GetOrder(ctx, order.ID)
		if err != nil || o.Status != boxoffice.OrderPendingPayment {
			return err
		}
		o.Status, o.UpdatedAt = boxoffice.OrderPaymentFailed, s.now()
		if _, err := tx.UpdateOrder(ctx, o, boxoffice.OrderPendingPayment); err != nil {
			return err
		}
		if err := s.appendEvent(ctx, tx, boxoffice.EventOrderPaymentFailed, o.ID, o); err != nil {
			return err
		}
		return answerRecord(ctx, tx, o.ID, s.render.Problem(cause), &answered)
	})
	return answered, err
}

// answerRecord stores res on the record of the request that made the order, unless that request
// answered already (202) or the record was swept, and when it did sets *answered to res: the
// driver hands that answer to the request waiting for it.
func answerRecord(ctx context.Context, tx boxoffice.Tx, orderID string, res *boxoffice.Response, answered **boxoffice.Response) error {
	stored, err := tx.AnswerIdemRecordForOrder(ctx, orderID, res)
	if stored {
		*answered = res
	}
	return err
}

// CompletePending starts a payment driver for every pending order that has none in this process:
// after a restart these are the purchases a crash interrupted. It returns how many it started.
//
// With a Router, an order is completed by its show's owner (a server that takes a show over
// resumes the orders its dead owner left at once). Without one, on a store other servers may
// share, an order younger than a request's lease is left to the
// process that made it, whose driver is settling it: a second driver on another server would
// settle the same order at once, and the actor's batches of the two, which lock the rows of
// their requests one after the other, could lock two holds in opposite orders and deadlock
// (postgres.LockOrder). Should that process have died, the lease running out is also when a
// retry of the order's key may take it over, so the order waits no longer than its key does.
func (s *Service) CompletePending(ctx context.Context) (int, error) {
	var orders []*boxoffice.Order
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		orders, err = tx.PendingOrders(ctx, 1000)
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	now := s.now()
	for _, o := range orders {
		s.mu.Lock()
		_, running := s.driving[o.ID]
		s.mu.Unlock()
		if s.cfg.Router == nil && !s.cfg.ExclusiveStore && now.Sub(o.CreatedAt) < s.lease() {
			continue
		}
		if !running && s.mine(ctx, o.ShowID) {
			s.drive(o)
			n++
		}
	}
	return n, nil
}

// GetOrder returns an order that p may see: another channel's order is ENOTFOUND, as one that
// does not exist.
func (s *Service) GetOrder(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Order, error) {
	o, err := s.getOrder(ctx, id)
	if err == nil && !p.Sees(o.APIKeyID) {
		return nil, orderNotFound(id)
	}
	return o, err
}

// getOrder returns an order whoever made it, for the service's own work.
func (s *Service) getOrder(ctx context.Context, id string) (*boxoffice.Order, error) {
	if !strings.HasPrefix(id, boxoffice.PrefixOrder) {
		return nil, orderNotFound(id)
	}
	var o *boxoffice.Order
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		o, err = tx.GetOrder(ctx, id)
		return err
	})
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil, orderNotFound(id)
	}
	return o, err
}

// orderNotFound is the answer for an order that does not exist or is another channel's: one
// answer, word for word, as holdNotFound.
func orderNotFound(id string) error {
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "order %q does not exist", id)
}

// ListOrders returns a page of the orders p may see, of one show when showID is set: a channel's
// own, or every order for the admin.
func (s *Service) ListOrders(ctx context.Context, p *boxoffice.Principal, showID, after string, limit int) ([]*boxoffice.Order, string, error) {
	if showID != "" && !boxoffice.ValidName(showID) {
		return nil, "", boxoffice.Validation(boxoffice.FieldError{Field: "show_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
	}
	f := boxoffice.OrderFilter{ShowID: showID, APIKeyID: p.Channel()}
	var orders []*boxoffice.Order
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		orders, err = tx.ListOrders(ctx, f, after, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	orders, next := page(orders, limit, func(o *boxoffice.Order) string { return o.ID })
	return orders, next, nil
}

// CancelOrder cancels a confirmed order: refunds it through the provider (with a derived key, so
// once) and returns its tickets. Cancelling a cancelled order answers the same order again.
// Another channel's order is ENOTFOUND and is neither refunded nor changed.
func (s *Service) CancelOrder(ctx context.Context, p *boxoffice.Principal, idem Idem, id string) (*boxoffice.Response, bool, error) {
	if !strings.HasPrefix(id, boxoffice.PrefixOrder) {
		return nil, false, orderNotFound(id)
	}
	if show := s.showOfOrder(ctx, id); show != "" {
		if res, replayed, done, err := s.forward(ctx, show, &Call{Op: OpCancelOrder, Principal: p, Idem: idem, ID: id}); done {
			return res, replayed, err
		}
	}
	if res, rec, err := s.lookup(ctx, idem); res != nil || rec != nil || err != nil {
		return s.answerLookup(res, rec, err)
	}
	o, err := s.GetOrder(ctx, p, id)
	if err != nil {
		return s.finish(ctx, idem, nil, err)
	}
	switch o.Status {
	case boxoffice.OrderCancelled:
		return s.storeResource(ctx, idem, s.render.Resource(200, o, ""))
	case boxoffice.OrderPendingPayment:
		return s.finish(ctx, idem, nil, boxoffice.Errorf(boxoffice.ENOTCANCELLABLE, "order %s is waiting for its payment", id))
	case boxoffice.OrderPaymentFailed:
		return s.finish(ctx, idem, nil, boxoffice.Errorf(boxoffice.ENOTCANCELLABLE, "order %s was never paid", id))
	}
	show, err := s.GetShow(ctx, o.ShowID)
	if err != nil {
		return nil, false, err
	}
	if closes, ok := show.CancelClosesAt(); ok && !s.now().Before(closes) {
		return s.finish(ctx, idem, nil, boxoffice.Errorf(boxoffice.ECANCELWINDOW,
			"orders of show %s could be cancelled until %s", show.ID, closes.Format(time.RFC3339)))
	}
	ref, err := s.pay.Refund(ctx, boxoffice.RefundRequest{Key: o.RefundKey(), ChargeID: o.ChargeID, Amount: o.Amount})
	if err != nil {
		if boxoffice.AsError(err) == nil {
			err = boxoffice.Errorf(boxoffice.EPAYMENTUNAVAILABLE, "the refund did not go through; retry with the same key")
		}
		return nil, false, err
	}
	c := *o
	c.Status, c.RefundID, c.UpdatedAt = boxoffice.OrderCancelled, ref.ID, s.now()
	res := s.render.Resource(200, &c, "")
	change := boxoffice.CountChange{ShowID: c.ShowID, TierID: c.TierID, Sold: -c.Quantity}
	err = s.inv.Apply(ctx, change, func(tx boxoffice.Tx) error {
		if ok, err := tx.UpdateOrder(ctx, &c, boxoffice.OrderConfirmed); err != nil || !ok {
			return cmpErr(err, errSkip)
		}
		// Its seats, on a seated tier, can be sold again.
		if _, err := tx.FreeSeats(ctx, c.HoldID); err != nil {
			return err
		}
		// The show read above names it in the event, for the cancellation notice (see settle).
		if err := s.appendEvent(ctx, tx, boxoffice.EventOrderCancelled, c.ID, boxoffice.NewOrderEvent(&c, show)); err != nil {
			return err
		}
		return insertRecord(ctx, tx, s.newRecord(idem, res))
	})
	if err == errSkip {
		// Cancelled meanwhile by another request: answer as for a cancelled order.
		if o, err = s.getOrder(ctx, id); err != nil {
			return nil, false, err
		}
		return s.storeResource(ctx, idem, s.render.Resource(200, o, ""))
	}
	return s.finish(ctx, idem, res, err)
}

// storeResource stores a success that needed no change under idem's key.
func (s *Service) storeResource(ctx context.Context, idem Idem, res *boxoffice.Response) (*boxoffice.Response, bool, error) {
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error { return insertRecord(ctx, tx, s.newRecord(idem, res)) })
	return s.finish(ctx, idem, res, err)
}

// newTickets makes n ticket codes, random enough that one cannot be guessed from another.
func newTickets(n int) []boxoffice.Ticket {
	ts := make([]boxoffice.Ticket, n)
	for i := range ts {
		c := strings.ToUpper(boxoffice.RandomString(12))
		ts[i].Code = c[:4] + "-" + c[4:8] + "-" + c[8:]
	}
	return ts
}

// OrderStatuses are the statuses an order can have, in the order of its life.
var OrderStatuses = []boxoffice.OrderStatus{
	boxoffice.OrderPendingPayment, boxoffice.OrderConfirmed, boxoffice.OrderPaymentFailed, boxoffice.OrderCancelled,
}

// OrderCounts returns how many orders have each status, each counted no further than limit (a
// count of limit means at least that many), in one read transaction: a consistent picture for an
// operator at a cost bounded however big the sale.
func (s *Service) OrderCounts(ctx context.Context, limit int) (map[boxoffice.OrderStatus]int, error) {
	counts := make(map[boxoffice.OrderStatus]int, len(OrderStatuses))
	err := s.store.View(ctx, func(tx boxoffice.Tx) error {
		for _, st := range OrderStatuses {
			n, err := tx.CountOrders(ctx, st, limit)
			if err != nil {
				return err
			}
			counts[st] = n
		}
		return nil
	})
	return counts, err
}
