package boxoffice

import "context"

// SeatState is where a seat is: free, in an active hold, or in a confirmed one.
type SeatState string

// Seat states. A seat's state follows its hold: it is held while the hold is active, sold once
// the hold is confirmed, and available again when the hold is released or expires or its order
// is cancelled.
const (
	SeatAvailable SeatState = "available"
	SeatHeld      SeatState = "held"
	SeatSold      SeatState = "sold"
)

// Seat is one seat of a seated tier. Its id is "<section>-<row>-<label>", unique in its show.
// Rank orders the tier's seats from best to worst (the seat map's order: sections, then rows,
// then seats); Pos is the seat's place in its row, so that seats of one row with consecutive
// Pos are side by side.
type Seat struct {
	ID             string    `json:"id"`
	TierID         string    `json:"tier_id"`
	Section        string    `json:"section"`
	Row            string    `json:"row"`
	Label          string    `json:"label"`
	Accessible     bool      `json:"accessible,omitempty"`
	RestrictedView bool      `json:"restricted_view,omitempty"`
	State          SeatState `json:"state"`
	Rank           int       `json:"-"`
	Pos            int       `json:"-"`
	// HoldID is the hold that has the seat; empty when it is available. Not shown: a seat's
	// holder is no other buyer's business.
	HoldID string `json:"-"`
}

// SeatID is the id of the seat label in row of section.
func SeatID(section, row, label string) string { return section + "-" + row + "-" + label }

// SeatTx is what a transaction does with the seats of seated tiers. Every write of a seat goes
// with a change of its tier's counts in the same transaction (through the inventory strategy), so
// a tier's held+sold is always its seats in active and confirmed holds.
type SeatTx interface {
	// PutSeats replaces a tier's seats with seats (none: the tier is no longer seated) and marks
	// the tier seated or not. The caller has checked that no seat it removes or changes is taken.
	PutSeats(ctx context.Context, showID, tierID string, seats []Seat) error
	// Seats returns a show's seats (of one tier, or of all when tierID is empty) by tier and
	// rank, with their states.
	Seats(ctx context.Context, showID, tierID string) ([]Seat, error)
	// AvailableSeats returns up to limit free seats of a tier, best first.
	AvailableSeats(ctx context.Context, showID, tierID string, limit int) ([]Seat, error)
	// ClaimSeats gives the tier's seats ids that are free to hold holdID, in one conditional
	// write, and returns how many it gave: fewer than len(ids) means some were taken or do not
	// exist, and the caller must abort the transaction.
	ClaimSeats(ctx context.Context, showID, tierID, holdID string, ids []string) (int, error)
	// FreeSeats frees the seats of hold holdID and returns how many it freed.
	FreeSeats(ctx context.Context, holdID string) (int, error)
	// SeatsOfHold returns the seats a hold has, by rank.
	SeatsOfHold(ctx context.Context, holdID string) ([]Seat, error)
	// SeatsByID returns those of the tier's seats ids names that exist, with their states: why a
	// claim of named seats fell short, read without the rest of the tier.
	SeatsByID(ctx context.Context, showID, tierID string, ids []string) ([]Seat, error)
}
