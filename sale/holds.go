package sale

import (
	"context"
	"strings"
	"time"

	"boxoffice"
)

// CreateHold reserves tickets until the show's hold TTL runs out. The hold belongs to p's key: its
// sales channel.
func (s *Service) CreateHold(ctx context.Context, p *boxoffice.Principal, idem Idem, in HoldInput) (*boxoffice.Response, bool, error) {
	var v validator
	v.name(in.TierID, "tier_id")
	in.Quantity = v.seats(in.Seats, in.Quantity, s.cfg.MaxQuantity)
	v.quantity(in.Quantity, s.cfg.MaxQuantity, "quantity")
	v.email(in.Buyer.Email, "buyer.email")
	if err := v.err(); err != nil {
		return nil, false, err
	}
	if err := s.admitted(ctx, in.ShowID, in.Buyer.Email); err != nil {
		return nil, false, err
	}
	if res, replayed, done, err := s.forward(ctx, in.ShowID, &Call{Op: OpCreateHold, Principal: p, Idem: idem, ShowID: in.ShowID, Hold: &in}); done {
		return res, replayed, err
	}
	var show *boxoffice.Show
	var refused error
	res, rec, err := s.lookupThen(ctx, idem, func(tx boxoffice.Tx) (err error) {
		show, refused, err = showWithTier(ctx, tx, in.ShowID, in.TierID, in.Quantity)
		return err
	})
	if res != nil || rec != nil || err != nil {
		return s.answerLookup(res, rec, err)
	}
	if refused != nil {
		return s.finish(ctx, idem, nil, refused)
	}
	h := s.newHold(p, show, in.TierID, in.Quantity, in.Buyer.Email)
	h.Seats = in.Seats
	err = s.reserve(ctx, show, h, func(tx boxoffice.Tx) error {
		// Rendered here, once reserve has given h its seats.
		res = s.render.Resource(201, h, "")
		rec := s.newRecord(idem, res)
		rec.HoldID = h.ID
		return insertRecord(ctx, tx, rec)
	})
	return s.finish(ctx, idem, res, err)
}

// admitted asks Config.Admission whether the request may hold tickets of showID for the buyer.
// It runs before the idempotency lookup, as authentication does, so that its refusal is never
// stored; a forwarded call was asked on the server that took the request, where its token was.
func (s *Service) admitted(ctx context.Context, showID, email string) error {
	if s.cfg.Admission == nil || ctx.Value(forwardedKey{}) != nil {
		return nil
	}
	return s.cfg.Admission(ctx, showID, email)
}

// showWithTier reads a show in tx and checks that it has the tier and, read in the same snapshot,
// that the tier has quantity tickets left. A domain refusal (no such show or tier, sold out) is
// refused, an answer to store; err is a failure of the store.
//
// That last check fails fast when sold out: once a show sells out nearly every request of a
// stampede is refused, and without it each refusal took the writer twice (a reservation that
// fails, then its stored answer). Answering sold_out from a committed snapshot is linearizable:
// at that point, inside the request, the tickets were not there. A snapshot that shows enough
// tickets decides nothing; the strategy's reservation does.
func showWithTier(ctx context.Context, tx boxoffice.Tx, showID, tierID string, quantity int) (show *boxoffice.Show, refused, err error) {
	show, err = tx.GetShow(ctx, showID)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil, err, nil
	} else if err != nil {
		return nil, nil, err
	}
	tier := show.Tier(tierID)
	if tier == nil {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no tier %q", showID, tierID), nil
	}
	if tier.Available < quantity {
		return nil, boxoffice.SoldOut(tierID, tier.Available, quantity), nil
	}
	return show, nil, nil
}

func (s *Service) newHold(p *boxoffice.Principal, show *boxoffice.Show, tierID string, quantity int, email string) *boxoffice.Hold {
	now := s.now()
	return &boxoffice.Hold{
		ID: boxoffice.NewID(boxoffice.PrefixHold, now), ShowID: show.ID, TierID: tierID, Quantity: quantity,
		Buyer: boxoffice.Buyer{Email: email}, Status: boxoffice.HoldActive,
		ExpiresAt: now.Add(ttlOf(show)), CreatedAt: now, UpdatedAt: now, APIKeyID: p.KeyID,
	}
}

// reserve takes h's tickets through the inventory strategy and writes the hold, its event and
// whatever more adds (the idempotency record, an order) in the same transaction. All of these are
// new rows and the record's key is claimed without waiting, so a reservation waits for no row
// another transaction holds, whichever end of postgres.LockOrder its strategy takes the tier at.
//
// On a seated tier h.Seats are the seats asked for (none: the best available), and reserve gives
// h its seats in the same transaction (takeSeats), best first, in h.Seats.
func (s *Service) reserve(ctx context.Context, show *boxoffice.Show, h *boxoffice.Hold, more func(tx boxoffice.Tx) error) error {
	tier := show.Tier(h.TierID)
	seated := tier != nil && tier.Seated
	if !seated && len(h.Seats) > 0 {
		return boxoffice.Validation(boxoffice.FieldError{Field: "seats", Message: "tier " + h.TierID + " is not seated: ask for a quantity"})
	}
	wanted := h.Seats
	for try := 1; ; try++ {
		err := s.reserveOnce(ctx, show, h, seated, wanted, more)
		if err == errSeatRace && try < 5 {
			continue // another reservation took a seat between our read and our claim: choose again
		}
		if err == errSeatRace {
			err = boxoffice.Overloaded(time.Second, "the seats of tier %s are being taken faster than they can be chosen; try again", h.TierID)
		}
		return err
	}
}

func (s *Service) reserveOnce(ctx context.Context, show *boxoffice.Show, h *boxoffice.Hold, seated bool, wanted []string, more func(tx boxoffice.Tx) error) error {
	change := boxoffice.CountChange{ShowID: h.ShowID, TierID: h.TierID, Held: h.Quantity}
	return s.inv.Apply(ctx, change, func(tx boxoffice.Tx) error {
		if seated {
			seats, err := takeSeats(ctx, tx, h, wanted)
			if err != nil {
				return err
			}
			h.Seats = seats
		}
		if show.MaxPerBuyer != nil {
			n, err := tx.BuyerTickets(ctx, h.ShowID, h.Buyer.Email)
			if err != nil {
				return err
			}
			if n+h.Quantity > *show.MaxPerBuyer {
				return boxoffice.Errorf(boxoffice.EBUYERLIMIT, "a buyer may have at most %d tickets of this show and has %d", *show.MaxPerBuyer, n)
			}
		}
		if err := tx.InsertHold(ctx, h); err != nil {
			return err
		}
		if err := s.appendEvent(ctx, tx, boxoffice.EventHoldCreated, h.ID, h); err != nil {
			return err
		}
		return more(tx)
	})
}

// GetHold returns a hold that p may see, with its seats: another channel's hold is ENOTFOUND, the
// same answer as for a hold that does not exist, so that a channel cannot even learn that it
// exists.
func (s *Service) GetHold(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Hold, error) {
	return s.getHold(ctx, p, id, true)
}

// getHold is GetHold; seats says whether to read the hold's seats too (a release does not need
// them).
func (s *Service) getHold(ctx context.Context, p *boxoffice.Principal, id string, seats bool) (*boxoffice.Hold, error) {
	if !strings.HasPrefix(id, boxoffice.PrefixHold) {
		return nil, holdNotFound(id)
	}
	var h *boxoffice.Hold
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		if h, err = tx.GetHold(ctx, id); err != nil || !seats {
			return err
		}
		return holdSeats(ctx, tx, h)
	})
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND || err == nil && !p.Sees(h.APIKeyID) {
		return nil, holdNotFound(id)
	}
	return h, err
}

// holdNotFound is the answer for a hold that does not exist or is another channel's: one answer,
// word for word, so that the detail does not tell the two apart either.
func holdNotFound(id string) error {
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "hold %q does not exist", id)
}

// ReleaseHold gives an active hold's tickets back. Releasing a released or expired hold is fine (the
// tickets are back already); a confirmed hold, or one whose payment is under way, is EHOLDCONFIRMED.
// Another channel's hold is ENOTFOUND and stays as it is.
func (s *Service) ReleaseHold(ctx context.Context, p *boxoffice.Principal, id string) error {
	h, err := s.getHold(ctx, p, id, false)
	if err != nil {
		return err
	}
	if _, _, done, err := s.forward(ctx, h.ShowID, &Call{Op: OpReleaseHold, Principal: p, ID: id}); done {
		return err
	}
	switch h.Status {
	case boxoffice.HoldReleased, boxoffice.HoldExpired:
		return nil
	case boxoffice.HoldConfirmed:
		return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "hold %s is confirmed", id)
	}
	err = s.endHold(ctx, h, boxoffice.HoldReleased, boxoffice.EventHoldReleased)
	if err == errSkip {
		return s.ReleaseHold(ctx, p, id) // it changed meanwhile; answer for its new status
	}
	return err
}

// endHold returns an active hold's tickets (released or expired) unless a payment for it is under
// way. errSkip means the hold was no longer active.
func (s *Service) endHold(ctx context.Context, h *boxoffice.Hold, to boxoffice.HoldStatus, event string) error {
	change := boxoffice.CountChange{ShowID: h.ShowID, TierID: h.TierID, Held: -h.Quantity}
	return s.inv.Apply(ctx, change, func(tx boxoffice.Tx) error {
		// Reading the hold first locks it (on stores with row locks), which orders this against a
		// confirm that is creating an order for it; the hold, then its event, then the tier in
		// the strategy: postgres.LockOrder.
		cur, err := tx.GetHold(ctx, h.ID)
		if err != nil {
			return err
		}
		if cur.Status != boxoffice.HoldActive {
			return errSkip
		}
		if _, err := tx.LiveOrderForHold(ctx, h.ID); err == nil {
			return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "a payment for hold %s is under way", h.ID)
		} else if boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			return err
		}
		now := s.now()
		if ok, err := tx.EndHold(ctx, h.ID, to, now); err != nil || !ok {
			return cmpErr(err, errSkip)
		}
		if _, err := tx.FreeSeats(ctx, h.ID); err != nil {
			return err
		}
		cur.Status, cur.UpdatedAt = to, now
		return s.appendEvent(ctx, tx, event, h.ID, cur)
	})
}

// ExpiringHolds returns up to limit active holds that expire within the next within, soonest
// first, whose payment is not under way: the holds an operator watching an on-sale sees about to
// give their tickets back.
func (s *Service) ExpiringHolds(ctx context.Context, within time.Duration, limit int) ([]*boxoffice.Hold, error) {
	var holds []*boxoffice.Hold
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		holds, err = tx.DueHolds(ctx, s.now().Add(within), limit)
		return err
	})
	return holds, err
}

// ExpireDue expires every active hold whose expires_at has come and that has no payment under way,
// returning how many it expired. The background loop calls it; so can tests that move the clock.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		var due []*boxoffice.Hold
		err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
			due, err = tx.DueHolds(ctx, s.now(), 100)
			return err
		})
		if err != nil {
			return total, err
		}
		n := 0
		for _, h := range due {
			if !s.mine(ctx, h.ShowID) {
				continue // the owner of the show expires it
			}
			err := s.endHold(ctx, h, boxoffice.HoldExpired, boxoffice.EventHoldExpired)
			switch {
			case err == nil:
				n++
			case err == errSkip || boxoffice.ErrorCode(err) == boxoffice.EHOLDCONFIRMED:
			default:
				return total + n, err
			}
		}
		total += n
		if len(due) < 100 || n == 0 {
			return total, nil
		}
	}
}

// cmpErr returns err when set, else alt: for "a conditional write failed or did nothing".
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// holdSeats sets h.Seats from the store: the seats an active or confirmed hold has on a seated
// tier (none on other tiers, and none once the hold ended and its seats were freed).
func holdSeats(ctx context.Context, tx boxoffice.Tx, h *boxoffice.Hold) error {
	if h.Status != boxoffice.HoldActive && h.Status != boxoffice.HoldConfirmed {
		return nil
	}
	seats, err := tx.SeatsOfHold(ctx, h.ID)
	if err != nil {
		return err
	}
	h.Seats = nil
	for _, st := range seats {
		h.Seats = append(h.Seats, st.ID)
	}
	return nil
}
