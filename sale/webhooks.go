package sale

import (
	"context"
	"fmt"
	"slices"

	"boxoffice"
	"boxoffice/internal/netguard"
)

// maxURLLen bounds a webhook URL; browsers and proxies cap URLs near this length anyway.
const maxURLLen = 2048

// PutWebhookEndpoint creates (created=true) or replaces a webhook endpoint. A replaced endpoint
// keeps its secret and creation time, so a partner's verifier keeps working, and is enabled again:
// a PUT is how an operator revives an endpoint that answered 410 Gone.
func (s *Service) PutWebhookEndpoint(ctx context.Context, id string, in WebhookInput) (*boxoffice.WebhookEndpoint, bool, error) {
	w, err := s.validWebhook(id, in)
	if err != nil {
		return nil, false, err
	}
	var created bool
	err = s.store.Update(ctx, func(tx boxoffice.Tx) error {
		old, err := tx.GetWebhookEndpoint(ctx, id)
		switch {
		case boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND:
			w.Secret = boxoffice.NewWebhookSecret()
		case err != nil:
			return err
		default:
			w.Secret, w.CreatedAt = old.Secret, old.CreatedAt
		}
		created, err = tx.PutWebhookEndpoint(ctx, w)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return w, created, nil
}

func (s *Service) validWebhook(id string, in WebhookInput) (*boxoffice.WebhookEndpoint, error) {
	var v validator
	v.name(id, "webhook_endpoint_id")
	switch {
	case in.URL == "":
		v.check(false, "url", "is required")
	case len(in.URL) > maxURLLen:
		v.check(false, "url", fmt.Sprintf("must be at most %d characters", maxURLLen))
	default:
		if err := netguard.CheckURL(in.URL, s.cfg.AllowPrivateWebhooks); err != nil {
			v.check(false, "url", err.Error())
		}
	}
	types := in.EventTypes
	if len(types) == 1 && types[0] == "*" {
		types = slices.Clone(boxoffice.EventTypes)
	}
	v.check(len(types) > 0, "event_types", `must list at least one event type, or be ["*"] for all`)
	seen := map[string]bool{}
	for i, t := range types {
		f := fmt.Sprintf("event_types[%d]", i)
		v.check(slices.Contains(boxoffice.EventTypes, t), f, fmt.Sprintf("%q is not an event type (one of %v, or \"*\" alone)", t, boxoffice.EventTypes))
		v.check(!seen[t], f, "is listed twice")
		seen[t] = true
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	now := s.now()
	return &boxoffice.WebhookEndpoint{ID: id, URL: in.URL, EventTypes: types, Status: boxoffice.WebhookEnabled,
		CreatedAt: now, UpdatedAt: now}, nil
}

// GetWebhookEndpoint returns a webhook endpoint, or ENOTFOUND.
func (s *Service) GetWebhookEndpoint(ctx context.Context, id string) (*boxoffice.WebhookEndpoint, error) {
	if !boxoffice.ValidName(id) {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "webhook endpoint %q not found", id)
	}
	var w *boxoffice.WebhookEndpoint
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		w, err = tx.GetWebhookEndpoint(ctx, id)
		return err
	})
	return w, err
}

// ListWebhookEndpoints returns every webhook endpoint, by id.
func (s *Service) ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error) {
	var list []*boxoffice.WebhookEndpoint
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		list, err = tx.ListWebhookEndpoints(ctx)
		return err
	})
	return list, err
}

// DeleteWebhookEndpoint deletes a webhook endpoint; deleting one that is gone succeeds, like a
// released hold's DELETE, so a retried DELETE is harmless. Deliveries queued for it stop.
func (s *Service) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	if !boxoffice.ValidName(id) {
		return nil
	}
	return s.store.Update(ctx, func(tx boxoffice.Tx) error {
		_, err := tx.DeleteWebhookEndpoint(ctx, id)
		return err
	})
}
