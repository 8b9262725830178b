package boxoffice

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"time"
)

// WebhookStatus says whether an endpoint receives deliveries.
type WebhookStatus string

// Webhook endpoint statuses. An endpoint is disabled when its receiver answers 410 Gone; a PUT of
// the endpoint enables it again.
const (
	WebhookEnabled  WebhookStatus = "enabled"
	WebhookDisabled WebhookStatus = "disabled"
)

// EventTypes lists every domain event type, the ones a webhook endpoint may subscribe to.
var EventTypes = []string{
	EventHoldCreated, EventHoldReleased, EventHoldExpired,
	EventOrderConfirmed, EventOrderPaymentFailed, EventOrderCancelled,
}

// WebhookEndpoint is a partner's URL that receives the domain events of EventTypes, signed per the
// Standard Webhooks spec with Secret ("whsec_" + base64 of the key bytes). The secret stays the
// same when the endpoint is replaced, so a partner's verifier keeps working across a PUT; it
// changes by a rotation, after which the previous one also signs until PreviousSecretExpiresAt,
// so the partner can switch without losing a delivery.
type WebhookEndpoint struct {
	ID         string   `json:"id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	// Secret is shown when it is new (the PUT that creates the endpoint, a rotation) and left
	// out of every other answer.
	Secret string        `json:"secret,omitempty"`
	Status WebhookStatus `json:"status"`
	// PreviousSecret is the secret before the last rotation; it never leaves the server.
	PreviousSecret string `json:"-"`
	// PreviousSecretExpiresAt is when PreviousSecret stops signing; nil when there is none.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	// DisabledReason says why a disabled endpoint is; empty when enabled.
	DisabledReason string    `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// AllEventTypes, alone in an endpoint's EventTypes, subscribes it to every event type: those of
// EventTypes today and those a later version adds. It is stored as given, not expanded, so
// that an endpoint made before a type existed also gets that type.
const AllEventTypes = "*"

// All says whether the endpoint subscribes to every event type (EventTypes is ["*"]).
func (w *WebhookEndpoint) All() bool {
	return len(w.EventTypes) == 1 && w.EventTypes[0] == AllEventTypes
}

// Wants says whether the endpoint subscribes to events of type typ.
func (w *WebhookEndpoint) Wants(typ string) bool {
	return w.All() || slices.Contains(w.EventTypes, typ)
}

// Secrets returns the secrets that sign a delivery at now: the current one, and the previous one
// while its overlap lasts.
func (w *WebhookEndpoint) Secrets(now time.Time) []string {
	s := []string{w.Secret}
	if w.PreviousSecret != "" && w.PreviousSecretExpiresAt != nil && now.Before(*w.PreviousSecretExpiresAt) {
		s = append(s, w.PreviousSecret)
	}
	return s
}

// WebhookSecretPrefix starts every webhook signing secret, as the Standard Webhooks spec has it.
const WebhookSecretPrefix = "whsec_"

// NewWebhookSecret returns a fresh signing secret: the prefix and the base64 of 24 random bytes,
// the key that HMAC-SHA256 signatures are made with.
func NewWebhookSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// WebhookTx is what a transaction does with webhook endpoints.
type WebhookTx interface {
	// PutWebhookEndpoint creates (created=true) or replaces the endpoint with w.ID, writing every
	// field of w as given.
	PutWebhookEndpoint(ctx context.Context, w *WebhookEndpoint) (created bool, err error)
	// GetWebhookEndpoint returns an endpoint.
	GetWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
	// DeleteWebhookEndpoint deletes an endpoint; ok is false when there was none.
	DeleteWebhookEndpoint(ctx context.Context, id string) (ok bool, err error)
	// ListWebhookEndpoints returns every endpoint, by id. Endpoints are few (one per partner), so
	// there is no paging.
	ListWebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error)
}
