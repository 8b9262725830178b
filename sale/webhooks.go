package sale

import (
	"context"
	"fmt"
	"slices"
	"time"

	"boxoffice"
	"boxoffice/internal/netguard"
)

// maxURLLen bounds a webhook URL; browsers and proxies cap URLs near this length anyway.
const maxURLLen = 2048

// PutWebhookEndpoint creates (created=true) or replaces a webhook endpoint. A replaced endpoint
// keeps its secrets (and a rotation's overlap) and creation time, so a partner's verifier keeps
// working, and is enabled again: a PUT is how an operator revives an endpoint that answered 410
// Gone. The answer carries the signing secret, as SPEC §3 has it for the PUT and the GET of an
// endpoint (both admin-only); lists and stored idempotent answers never do, and a rotation is how
// to get a new one.
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
			w.PreviousSecret, w.PreviousSecretExpiresAt = old.PreviousSecret, old.PreviousSecretExpiresAt
		}
		created, err = tx.PutWebhookEndpoint(ctx, w)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return shown(w), created, nil
}

// DefaultSecretOverlap is how long a rotated-out webhook secret keeps signing beside the new one
// when the rotation does not say: a day gives a partner time to deploy the new secret.
const DefaultSecretOverlap = 24 * time.Hour

// maxSecretOverlap bounds a rotation's overlap: an old secret that signs for longer is not
// rotated out in any useful sense.
const maxSecretOverlap = 30 * 24 * time.Hour

// RotateWebhookSecret gives an endpoint a new signing secret and keeps the current one signing
// beside it for in.ExpiresIn (DefaultSecretOverlap when unset): during the overlap every delivery
// carries a signature by each, so the partner can switch verifiers at any moment in it. A
// rotation during an overlap drops the oldest secret. The answer, the endpoint with the new
// secret, is the only place the new secret is shown: the answer stored for a replay of the
// Idempotency-Key leaves it out.
func (s *Service) RotateWebhookSecret(ctx context.Context, idem Idem, id string, in RotateSecretInput) (*boxoffice.Response, bool, error) {
	overlap := DefaultSecretOverlap
	if in.ExpiresIn != nil {
		n := *in.ExpiresIn
		if n < 0 || n > int64(maxSecretOverlap/time.Second) {
			return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "expires_in",
				Message: fmt.Sprintf("must be from 0 to %d seconds", int64(maxSecretOverlap/time.Second))})
		}
		overlap = time.Duration(n) * time.Second
	}
	if !boxoffice.ValidName(id) {
		return nil, false, boxoffice.Errorf(boxoffice.ENOTFOUND, "webhook endpoint %q not found", id)
	}
	if res, rec, err := s.lookup(ctx, idem); res != nil || rec != nil || err != nil {
		return s.answerLookup(res, rec, err)
	}
	var res *boxoffice.Response
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error {
		w, err := tx.GetWebhookEndpoint(ctx, id)
		if err != nil {
			return err
		}
		now := s.now()
		end := now.Add(overlap)
		w.PreviousSecret, w.PreviousSecretExpiresAt = w.Secret, &end
		w.Secret, w.UpdatedAt = boxoffice.NewWebhookSecret(), now
		if _, err := tx.PutWebhookEndpoint(ctx, w); err != nil {
			return err
		}
		res = s.render.Resource(200, shown(w), "")
		return insertRecord(ctx, tx, s.newRecord(idem, s.render.Resource(200, withoutSecret(w), "")))
	})
	return s.finish(ctx, idem, res, err)
}

// shown is w as its answer shows it when the secret is new: the previous secret's end only while
// there is one.
func shown(w *boxoffice.WebhookEndpoint) *boxoffice.WebhookEndpoint {
	c := *w
	if c.PreviousSecret == "" {
		c.PreviousSecretExpiresAt = nil
	}
	return &c
}

// withoutSecret is w as every other answer shows it: without the signing secret.
func withoutSecret(w *boxoffice.WebhookEndpoint) *boxoffice.WebhookEndpoint {
	c := shown(w)
	c.Secret = ""
	return c
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
	types := slices.Clone(in.EventTypes)
	v.check(len(types) > 0, "event_types", `must list at least one event type, or be ["*"] for all`)
	// ["*"] is stored as it is, not as today's list of types, so that the endpoint also gets
	// the types a later version adds (boxoffice.AllEventTypes).
	if len(types) != 1 || types[0] != boxoffice.AllEventTypes {
		seen := map[string]bool{}
		for i, t := range types {
			f := fmt.Sprintf("event_types[%d]", i)
			v.check(slices.Contains(boxoffice.EventTypes, t), f, fmt.Sprintf("%q is not an event type (one of %v, or \"*\" alone)", t, boxoffice.EventTypes))
			v.check(!seen[t], f, "is listed twice")
			seen[t] = true
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	now := s.now()
	return &boxoffice.WebhookEndpoint{ID: id, URL: in.URL, EventTypes: types, Status: boxoffice.WebhookEnabled,
		CreatedAt: now, UpdatedAt: now}, nil
}

// GetWebhookEndpoint returns a webhook endpoint with its signing secret (an admin's read, which
// SPEC §3 gives the secret), or ENOTFOUND.
func (s *Service) GetWebhookEndpoint(ctx context.Context, id string) (*boxoffice.WebhookEndpoint, error) {
	if !boxoffice.ValidName(id) {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "webhook endpoint %q not found", id)
	}
	var w *boxoffice.WebhookEndpoint
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		w, err = tx.GetWebhookEndpoint(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return shown(w), nil
}

// ListWebhookEndpoints returns every webhook endpoint, by id, without their secrets.
func (s *Service) ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error) {
	var list []*boxoffice.WebhookEndpoint
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		list, err = tx.ListWebhookEndpoints(ctx)
		return err
	})
	for i, w := range list {
		list[i] = withoutSecret(w)
	}
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
