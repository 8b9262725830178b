package boxoffice

import (
	"context"
	"time"
)

// HoldStatus is where a hold is in its life.
type HoldStatus string

// Hold states: a hold is active until it is confirmed, released by the buyer, or expired.
const (
	HoldActive    HoldStatus = "active"
	HoldConfirmed HoldStatus = "confirmed"
	HoldReleased  HoldStatus = "released"
	HoldExpired   HoldStatus = "expired"
)

// Buyer identifies who holds or buys tickets.
type Buyer struct {
	Email string `json:"email"`
}

// Hold is a two-phase reservation: tickets taken from a tier until ExpiresAt, then confirmed by a
// payment or given back.
type Hold struct {
	ID       string `json:"id"`
	ShowID   string `json:"show_id"`
	TierID   string `json:"tier_id"`
	Quantity int    `json:"quantity"`
	// Seats are the hold's seats on a seated tier, best first; empty on other tiers, and once
	// the hold is released or expired (its seats are free again).
	Seats     []string   `json:"seats,omitempty"`
	Buyer     Buyer      `json:"buyer"`
	Status    HoldStatus `json:"status"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`

	// APIKeyID is the key (the sales channel) that made the hold: "admin" for the configured admin
	// key, "" for holds made before channels existed, which only the admin sees. It is not part of
	// the answer: a channel knows who it is, and another channel must not learn of the hold.
	APIKeyID string `json:"-"`
}

// HoldTx is what a transaction does with holds.
type HoldTx interface {
	// InsertHold stores a new hold.
	InsertHold(ctx context.Context, h *Hold) error
	// GetHold returns a hold.
	GetHold(ctx context.Context, id string) (*Hold, error)
	// EndHold moves an active hold to status to; ok is false when the hold was not active.
	EndHold(ctx context.Context, id string, to HoldStatus, at time.Time) (ok bool, err error)
	// DueHolds returns up to limit active holds whose expires_at is at or before now and that have
	// no order waiting for its payment, earliest first.
	DueHolds(ctx context.Context, now time.Time, limit int) ([]*Hold, error)
	// NextHoldExpiry returns the earliest expires_at of an active hold; ok is false when none is.
	NextHoldExpiry(ctx context.Context) (t time.Time, ok bool, err error)
	// BuyerTickets returns how many tickets of a show a buyer holds or bought: the quantities of
	// their active and confirmed holds. Addresses are compared by BuyerKey, so buyer@x and
	// BUYER@X are one buyer.
	BuyerTickets(ctx context.Context, showID, email string) (int, error)
	// ForEachHold calls fn for every hold.
	ForEachHold(ctx context.Context, fn func(*Hold) error) error
}

// BuyerKey is the form of a buyer's address that max_per_buyer counts by: ASCII letters in lower
// case. Mail systems treat addresses case-insensitively in practice, so buyer@x and BUYER@X are
// one buyer, and one limit; other letters are left as they are, as the stores' lower() leaves them.
func BuyerKey(email string) string {
	b := []byte(email)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
