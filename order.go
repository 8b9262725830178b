package boxoffice

import (
	"context"
	"time"
)

// OrderStatus is where an order is in its life.
type OrderStatus string

// Order states. pending_payment settles by itself into confirmed or payment_failed.
const (
	OrderPendingPayment OrderStatus = "pending_payment"
	OrderConfirmed      OrderStatus = "confirmed"
	OrderPaymentFailed  OrderStatus = "payment_failed"
	OrderCancelled      OrderStatus = "cancelled"
)

// Ticket is one admission.
type Ticket struct {
	Code string `json:"code"`
	// Seat is the ticket's seat on a seated tier (see Seat), empty otherwise.
	Seat string `json:"seat,omitempty"`
}

// Order is the paid (or being paid) conversion of a hold into tickets.
type Order struct {
	ID        string      `json:"id"`
	Status    OrderStatus `json:"status"`
	ShowID    string      `json:"show_id"`
	TierID    string      `json:"tier_id"`
	HoldID    string      `json:"hold_id"`
	Quantity  int         `json:"quantity"`
	Amount    Money       `json:"amount"`
	Buyer     Buyer       `json:"buyer"`
	Tickets   []Ticket    `json:"tickets"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`

	// APIKeyID is the key (the sales channel) whose hold the order confirms, as Hold.APIKeyID.
	APIKeyID string `json:"-"`

	// PaymentToken is kept so that a crashed purchase can be charged again with the same derived
	// key; it never leaves the server.
	PaymentToken string `json:"-"`
	// ChargeID and RefundID are the provider's ids, set when the charge or refund succeeded.
	ChargeID string `json:"-"`
	RefundID string `json:"-"`
	// ReleaseOnFailure says whether a failed payment gives the hold back (a one-shot purchase, or
	// any payment that settles after the request answered 202) or leaves it active (a confirm
	// declined while the buyer is still there).
	ReleaseOnFailure bool `json:"-"`
}

// ChargeKey is the idempotency key for the provider's charge of this order: derived from the order,
// so that any number of retries, by a client or by the server after a crash, charge once.
func (o *Order) ChargeKey() string { return o.ID + "/charge" }

// RefundKey is the idempotency key for the provider's refund of this order.
func (o *Order) RefundKey() string { return o.ID + "/refund" }

// OrderTx is what a transaction does with orders.
type OrderTx interface {
	// InsertOrder stores a new order. At most one order per hold may be pending_payment or
	// confirmed; a second one is an ECONFLICT.
	InsertOrder(ctx context.Context, o *Order) error
	// GetOrder returns an order.
	GetOrder(ctx context.Context, id string) (*Order, error)
	// LiveOrderForHold returns the hold's pending_payment or confirmed order, or ENOTFOUND.
	LiveOrderForHold(ctx context.Context, holdID string) (*Order, error)
	// UpdateOrder writes o's status, tickets, charge and refund ids and updated_at if the stored
	// status is still from; ok is false otherwise.
	UpdateOrder(ctx context.Context, o *Order, from OrderStatus) (ok bool, err error)
	// ListOrders returns up to limit orders that match f, with ids after after, by id.
	ListOrders(ctx context.Context, f OrderFilter, after string, limit int) ([]*Order, error)
	// CountOrders returns how many orders have status, counting no further than limit: an
	// operator's view of a sale whose cost stays bounded however many orders there are.
	CountOrders(ctx context.Context, status OrderStatus, limit int) (int, error)
	// PendingOrders returns up to limit pending_payment orders, oldest first.
	PendingOrders(ctx context.Context, limit int) ([]*Order, error)
	// ForEachOrder calls fn for every order.
	ForEachOrder(ctx context.Context, fn func(*Order) error) error
}

// OrderEvent is the payload of order.confirmed and order.cancelled: the order as the API shows
// it, and the show's name and start and the tier's name as they were when the event was
// committed. The receipt and the cancellation notice are rendered from the event alone, so that
// every redelivery, on any server, renders the same bytes however the show changes afterwards;
// a partner's webhook gets the same names without a read of its own. The names are empty (and
// left out) on events committed before they were added, and when the show could not be found.
type OrderEvent struct {
	Order
	ShowName     string    `json:"show_name,omitempty"`
	ShowStartsAt time.Time `json:"show_starts_at,omitzero"`
	TierName     string    `json:"tier_name,omitempty"`
}

// NewOrderEvent is the payload of an event about o, named after show (nil: ids only).
func NewOrderEvent(o *Order, show *Show) *OrderEvent {
	ev := &OrderEvent{Order: *o}
	if show != nil {
		ev.ShowName, ev.ShowStartsAt = show.Name, show.StartsAt.UTC()
		if t := show.Tier(o.TierID); t != nil {
			ev.TierName = t.Name
		}
	}
	return ev
}
