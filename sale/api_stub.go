package sale

import (
	"context"
	"log/slog"
	"time"

	"boxoffice"
)

// Config wires a Service.
type Config struct {
	Store     boxoffice.Store
	Inventory boxoffice.Inventory
	Payments  boxoffice.Payments
	Renderer  Renderer
	// Now is the clock; expiry logic never reads time.Now directly, so tests control time.
	Now func() time.Time
	// SyncBudget is how long confirm and purchase wait for a payment before answering 202.
	SyncBudget time.Duration
	// IdempotencyTTL is how long idempotency records are kept.
	IdempotencyTTL time.Duration
	// MaxQuantity bounds the quantity of one hold.
	MaxQuantity int
	// AdminKey is the plain admin key; it authenticates as the admin role with key id "admin".
	AdminKey string
	Logger   *slog.Logger
}

// Service is the box office: every operation of the API, the same for every transport.
type Service struct{ cfg Config }

// New returns a Service; Start runs its background work.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Start runs the background loops (hold expiry, pending-order completion, idempotency sweeping)
// until ctx ends or Close is called.
func (s *Service) Start(ctx context.Context) error { panic("todo") }

// Close stops the background loops and waits for them.
func (s *Service) Close() {}

// Authenticate returns the principal of a plain API key, or EUNAUTHORIZED.
func (s *Service) Authenticate(ctx context.Context, key string) (*boxoffice.Principal, error) {
	panic("todo")
}

// CreateAPIKey makes a key of a role.
func (s *Service) CreateAPIKey(ctx context.Context, idem Idem, in APIKeyInput) (*boxoffice.Response, bool, error) {
	panic("todo")
}

// PutShow creates (created=true) or replaces a show.
func (s *Service) PutShow(ctx context.Context, id string, in ShowInput) (*boxoffice.Show, bool, error) {
	panic("todo")
}

// GetShow returns a show with its tiers' counts.
func (s *Service) GetShow(ctx context.Context, id string) (*boxoffice.Show, error) { panic("todo") }

// ListShows returns a page of shows and the cursor of the next page ("" when last).
func (s *Service) ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, string, error) {
	panic("todo")
}

// CreateHold reserves tickets.
func (s *Service) CreateHold(ctx context.Context, idem Idem, in HoldInput) (*boxoffice.Response, bool, error) {
	panic("todo")
}

// GetHold returns a hold.
func (s *Service) GetHold(ctx context.Context, id string) (*boxoffice.Hold, error) { panic("todo") }

// ReleaseHold gives an active hold's tickets back; releasing again is fine, a confirmed hold is
// EHOLDCONFIRMED.
func (s *Service) ReleaseHold(ctx context.Context, id string) error { panic("todo") }

// ConfirmHold pays for a hold and turns it into an order.
func (s *Service) ConfirmHold(ctx context.Context, idem Idem, holdID string, in ConfirmInput) (*boxoffice.Response, bool, error) {
	panic("todo")
}

// Purchase holds, pays and confirms in one call.
func (s *Service) Purchase(ctx context.Context, idem Idem, in PurchaseInput) (*boxoffice.Response, bool, error) {
	panic("todo")
}

// GetOrder returns an order.
func (s *Service) GetOrder(ctx context.Context, id string) (*boxoffice.Order, error) { panic("todo") }

// ListOrders returns a page of orders, of one show when showID is set.
func (s *Service) ListOrders(ctx context.Context, showID, after string, limit int) ([]*boxoffice.Order, string, error) {
	panic("todo")
}

// CancelOrder cancels a confirmed order, refunds it and returns its tickets.
func (s *Service) CancelOrder(ctx context.Context, idem Idem, id string) (*boxoffice.Response, bool, error) {
	panic("todo")
}

// ListEvents returns a page of the event feed after a position cursor.
func (s *Service) ListEvents(ctx context.Context, after string, limit int) ([]*boxoffice.Event, string, error) {
	panic("todo")
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error { panic("todo") }
