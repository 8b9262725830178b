package boxoffice

import "time"

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
	ID        string     `json:"id"`
	ShowID    string     `json:"show_id"`
	TierID    string     `json:"tier_id"`
	Quantity  int        `json:"quantity"`
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
