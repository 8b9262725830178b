package boxoffice

import (
	"context"
	"time"
)

// Money is an amount in minor units of a currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Tier is one price category of a show with its own capacity. Held and Sold are the counts that
// the inventory strategy guards: Held+Sold <= Capacity at every instant.
type Tier struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Capacity  int    `json:"capacity"`
	Price     Money  `json:"price"`
	Held      int    `json:"held"`
	Sold      int    `json:"sold"`
	Available int    `json:"available"`
	// Seated says the tier sells seats (see Seat): its capacity is its number of seats, and a
	// hold names its seats or is given the best available.
	Seated bool `json:"seated,omitempty"`
}

// Show is an event with tiers of tickets for sale.
type Show struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	StartsAt       time.Time `json:"starts_at"`
	HoldTTLSeconds int       `json:"hold_ttl_seconds"`
	MaxPerBuyer    *int      `json:"max_per_buyer"`
	// CancelCutoffSeconds closes the cancel (and refund) window of the show's orders this long
	// before StartsAt; nil leaves it open until any time.
	CancelCutoffSeconds *int      `json:"cancel_cutoff_seconds,omitempty"`
	Tiers               []Tier    `json:"tiers"`
	CreatedAt           time.Time `json:"created_at"`
	UpdatedAt           time.Time `json:"updated_at"`
}

// CancelClosesAt is when the cancel window of the show's orders closes; ok is false when it never
// does.
func (s *Show) CancelClosesAt() (at time.Time, ok bool) {
	if s.CancelCutoffSeconds == nil {
		return time.Time{}, false
	}
	return s.StartsAt.Add(-time.Duration(*s.CancelCutoffSeconds) * time.Second), true
}

// Tier returns the tier with id, or nil.
func (s *Show) Tier(id string) *Tier {
	for i := range s.Tiers {
		if s.Tiers[i].ID == id {
			return &s.Tiers[i]
		}
	}
	return nil
}

// TierCounts is a tier's capacity and counts as one store row holds them. Version grows by one on
// every change, for strategies that write conditionally on it; Fence is the highest fencing token
// a writer presented, for lock-based strategies.
type TierCounts struct {
	ShowID   string
	TierID   string
	Capacity int
	Held     int
	Sold     int
	Version  int64
	Fence    int64
}

// Available is how many tickets can still be held.
func (c TierCounts) Available() int { return c.Capacity - c.Held - c.Sold }

// ShowTx is what a transaction does with shows.
type ShowTx interface {
	// GetShow returns the show with its tiers and their counts.
	GetShow(ctx context.Context, id string) (*Show, error)
	// ListShows returns up to limit shows with ids after after, by id.
	ListShows(ctx context.Context, after string, limit int) ([]*Show, error)
	// PutShow creates or replaces a show and its tiers. Counts of tiers that stay are kept; the
	// caller has checked that capacities fit them. Tiers not in s are deleted.
	PutShow(ctx context.Context, s *Show) error
}
