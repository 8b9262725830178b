package sale

import (
	"time"

	"boxoffice"
)

// ShowInput is the body of PUT /v1/shows/{id}. Pointers tell a missing field from a zero one.
type ShowInput struct {
	Name           string     `json:"name"`
	StartsAt       *time.Time `json:"starts_at"`
	HoldTTLSeconds *int       `json:"hold_ttl_seconds"`
	MaxPerBuyer    *int       `json:"max_per_buyer"`
	// CancelCutoffSeconds closes the cancel (and refund) window of the show's orders this many
	// seconds before it starts (0: when it starts); unset leaves it open.
	CancelCutoffSeconds *int        `json:"cancel_cutoff_seconds"`
	Tiers               []TierInput `json:"tiers"`
}

// TierInput is one tier of a ShowInput.
type TierInput struct {
	ID       string           `json:"id"`
	Name     string           `json:"name"`
	Capacity *int             `json:"capacity"`
	Price    *boxoffice.Money `json:"price"`
	// SeatMap makes the tier seated: its capacity is its number of seats (capacity may then be
	// left out, or must be that number).
	SeatMap *SeatMapInput `json:"seat_map,omitempty"`
}

// SeatMapInput is a seated tier's seats: sections, best first, each of rows, best first.
type SeatMapInput struct {
	Sections []SectionInput `json:"sections"`
}

// SectionInput is one section of a seat map.
type SectionInput struct {
	ID   string     `json:"id"`
	Rows []RowInput `json:"rows"`
}

// RowInput is one row of a section: Seats seats labelled 1 to Seats, or the seats Labels names,
// in their order along the row; Accessible and RestrictedView flag some of them by label.
type RowInput struct {
	ID             string   `json:"id"`
	Seats          int      `json:"seats,omitempty"`
	Labels         []string `json:"labels,omitempty"`
	Accessible     []string `json:"accessible,omitempty"`
	RestrictedView []string `json:"restricted_view,omitempty"`
}

// BuyerInput names the buyer.
type BuyerInput struct {
	Email string `json:"email"`
}

// PaymentInput carries the payment method.
type PaymentInput struct {
	Token string `json:"token"`
}

// HoldInput is the body of POST /v1/shows/{show_id}/holds; ShowID comes from the path.
type HoldInput struct {
	ShowID   string `json:"-"`
	TierID   string `json:"tier_id"`
	Quantity int    `json:"quantity"`
	// Seats, on a seated tier, names the seats to hold, all or none (quantity may then be left
	// out); without it a seated tier gives the best available.
	Seats []string   `json:"seats,omitempty"`
	Buyer BuyerInput `json:"buyer"`
}

// ConfirmInput is the body of POST /v1/holds/{hold_id}/confirm.
type ConfirmInput struct {
	Payment PaymentInput `json:"payment"`
}

// PurchaseInput is the body of POST /v1/purchases: hold, pay and confirm in one call.
type PurchaseInput struct {
	ShowID   string `json:"show_id"`
	TierID   string `json:"tier_id"`
	Quantity int    `json:"quantity"`
	// Seats are as in HoldInput.
	Seats   []string     `json:"seats,omitempty"`
	Buyer   BuyerInput   `json:"buyer"`
	Payment PaymentInput `json:"payment"`
}

// APIKeyInput is the body of POST /v1/api-keys.
type APIKeyInput struct {
	Role boxoffice.Role `json:"role"`
	// Label names the key for people, e.g. the sales channel it is for; optional.
	Label string `json:"label,omitempty"`
}

// CreatedAPIKey is the answer to POST /v1/api-keys: the only time the plain key is shown. Key is
// empty, and left out, in the answer stored for replays.
type CreatedAPIKey struct {
	ID        string         `json:"id"`
	Key       string         `json:"key,omitempty"`
	Role      boxoffice.Role `json:"role"`
	Label     string         `json:"label,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
}

// RotateSecretInput is the body of POST /v1/webhook-endpoints/{id}/rotate-secret.
type RotateSecretInput struct {
	// ExpiresIn is how many seconds the previous secret keeps signing beside the new one; nil
	// means DefaultSecretOverlap, 0 ends it at once.
	ExpiresIn *int64 `json:"expires_in,omitempty"`
}

// Idem is the idempotency context of a POST: the scope (API key id, method and route template),
// the client's key, and the request's fingerprint (method, path and canonical body).
type Idem struct {
	Scope       string
	Key         string
	Fingerprint string
}

// Renderer turns an outcome into the response that is stored for replay, so a transport gets the
// same bytes back on every retry.
type Renderer interface {
	// Resource renders a success: status, the resource as the body, and an optional Location.
	Resource(status int, v any, location string) *boxoffice.Response
	// Problem renders a domain error.
	Problem(err error) *boxoffice.Response
}

// WebhookInput is the body of PUT /v1/webhook-endpoints/{id}.
type WebhookInput struct {
	URL string `json:"url"`
	// EventTypes are the event types to deliver; ["*"] means all of them.
	EventTypes []string `json:"event_types"`
}
