package sale

import (
	"context"
	"fmt"
	"time"

	"boxoffice"
)

// Bounds of a show definition: generous for real venues, small enough that a mistake is caught.
const (
	maxTiers    = 100
	maxCapacity = 10_000_000
	maxHoldTTL  = 7 * 24 * 3600
	maxNameLen  = 200
)

// PutShow creates (created=true) or replaces a show. A capacity below a tier's held+sold, or
// removing a tier with holds or sales, is ECAPACITYCONFLICT and changes nothing.
func (s *Service) PutShow(ctx context.Context, id string, in ShowInput) (*boxoffice.Show, bool, error) {
	show, maps, err := s.validShow(id, in)
	if err != nil {
		return nil, false, err
	}
	created := false
	err = s.inv.Reconfigure(ctx, id, func(tx boxoffice.Tx) error {
		created = false
		old, err := tx.GetShow(ctx, id)
		switch {
		case boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND:
			created, old = true, nil
		case err != nil:
			return err
		default:
			show.CreatedAt = old.CreatedAt
			for _, t := range old.Tiers {
				nt := show.Tier(t.ID)
				if nt == nil && t.Held+t.Sold > 0 {
					return boxoffice.Errorf(boxoffice.ECAPACITYCONFLICT, "tier %s has %d held and %d sold tickets and cannot be removed", t.ID, t.Held, t.Sold)
				}
				if nt != nil && nt.Capacity < t.Held+t.Sold {
					return boxoffice.Errorf(boxoffice.ECAPACITYCONFLICT, "tier %s has %d held and %d sold tickets, more than a capacity of %d", t.ID, t.Held, t.Sold, nt.Capacity)
				}
			}
		}
		if err := tx.PutShow(ctx, show); err != nil {
			return err
		}
		return putSeats(ctx, tx, show, old, maps)
	})
	s.showCache.forget(id)
	s.forgetSeatMap(id)
	if err != nil {
		return nil, false, err
	}
	show, err = s.GetShow(ctx, id)
	return show, created, err
}

// maxCancelCutoff bounds a show's cancel cutoff: a year before the show.
const maxCancelCutoff = 365 * 24 * 60 * 60

// validShow checks a show's definition and returns the show and the seats of each seated tier
// by tier id.
func (s *Service) validShow(id string, in ShowInput) (*boxoffice.Show, map[string][]boxoffice.Seat, error) {
	var v validator
	v.name(id, "show_id")
	v.text(in.Name, maxNameLen, "name")
	v.check(in.StartsAt != nil, "starts_at", "is required (RFC 3339)")
	ttl := DefaultHoldTTL
	if in.HoldTTLSeconds != nil {
		ttl = *in.HoldTTLSeconds
	}
	v.check(ttl >= 1 && ttl <= maxHoldTTL, "hold_ttl_seconds", fmt.Sprintf("must be between 1 and %d", maxHoldTTL))
	if in.MaxPerBuyer != nil {
		v.check(*in.MaxPerBuyer >= 1, "max_per_buyer", "must be at least 1")
	}
	if in.CancelCutoffSeconds != nil {
		v.check(*in.CancelCutoffSeconds >= 0 && *in.CancelCutoffSeconds <= maxCancelCutoff, "cancel_cutoff_seconds",
			fmt.Sprintf("must be between 0 (until the show starts) and %d", maxCancelCutoff))
	}
	v.check(len(in.Tiers) >= 1 && len(in.Tiers) <= maxTiers, "tiers", fmt.Sprintf("must have 1 to %d tiers", maxTiers))
	seen := map[string]bool{}
	var maps map[string][]boxoffice.Seat
	now := s.now()
	show := &boxoffice.Show{ID: id, Name: in.Name, HoldTTLSeconds: ttl, MaxPerBuyer: in.MaxPerBuyer,
		CancelCutoffSeconds: in.CancelCutoffSeconds, CreatedAt: now, UpdatedAt: now}
	if in.StartsAt != nil {
		show.StartsAt = in.StartsAt.UTC()
	}
	for i, t := range in.Tiers {
		f := fmt.Sprintf("tiers[%d].", i)
		v.name(t.ID, f+"id")
		v.check(!seen[t.ID], f+"id", "is used by another tier")
		seen[t.ID] = true
		v.text(t.Name, maxNameLen, f+"name")
		if t.SeatMap != nil {
			seats := validSeatMap(&v, f, t.SeatMap)
			if t.Capacity == nil {
				t.Capacity = new(len(seats))
			}
			v.check(*t.Capacity == len(seats), f+"capacity", fmt.Sprintf("must be the seat map's number of seats, %d, or left out", len(seats)))
			if maps == nil {
				maps = map[string][]boxoffice.Seat{}
			}
			maps[t.ID] = seats
		}
		v.check(t.Capacity != nil && *t.Capacity >= 0 && *t.Capacity <= maxCapacity, f+"capacity", fmt.Sprintf("is required, 0 to %d", maxCapacity))
		v.check(t.Price != nil && t.Price.Amount >= 0 && t.Price.Amount <= 1e12, f+"price.amount", "is required, 0 or more minor units")
		v.check(t.Price != nil && currencyRE.MatchString(t.Price.Currency), f+"price.currency", "must be an ISO 4217 code such as EUR")
		if t.Capacity != nil && t.Price != nil {
			show.Tiers = append(show.Tiers, boxoffice.Tier{ID: t.ID, Name: t.Name, Capacity: *t.Capacity, Price: *t.Price})
		}
	}
	return show, maps, v.err()
}

// GetShow returns a show with its tiers' counts.
func (s *Service) GetShow(ctx context.Context, id string) (*boxoffice.Show, error) {
	if !boxoffice.ValidName(id) {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %q does not exist", id)
	}
	var show *boxoffice.Show
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		show, err = tx.GetShow(ctx, id)
		return err
	})
	return show, err
}

// TicketsLeft is how many tickets of a show can still be held, over all its tiers: what
// automatic admission of its waiting room lets buyers in for.
func (s *Service) TicketsLeft(ctx context.Context, id string) (int, error) {
	show, err := s.GetShow(ctx, id)
	if err != nil {
		return 0, err
	}
	left := 0
	for _, t := range show.Tiers {
		left += max(0, t.Available)
	}
	return left, nil
}

// ListShows returns a page of shows and the cursor of the next page ("" when last).
func (s *Service) ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, string, error) {
	var shows []*boxoffice.Show
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		shows, err = tx.ListShows(ctx, after, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	shows, next := page(shows, limit, func(s *boxoffice.Show) string { return s.ID })
	return shows, next, nil
}

// ttlOf is a show's hold lifetime.
func ttlOf(show *boxoffice.Show) time.Duration {
	return time.Duration(show.HoldTTLSeconds) * time.Second
}
