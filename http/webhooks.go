package http

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"boxoffice"
	"boxoffice/sale"
)

// DeadLetters is the dead-letter queue of the async side: messages a consumer gave up on, and
// their replay. The async side (package nats) implements it.
type DeadLetters interface {
	ListDeadLetters(ctx context.Context, limit int) ([]boxoffice.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id string) error
	ReplayAllDeadLetters(ctx context.Context) (int, error)
}

// maxDeadLetters bounds one listing of the dead-letter queue.
const maxDeadLetters = 1000

// webhookID returns the {endpoint_id} path value if it is a valid name.
func webhookID(r *http.Request) (string, error) {
	id := r.PathValue("endpoint_id")
	if !boxoffice.ValidName(id) {
		return "", notFound()
	}
	return id, nil
}

// putWebhook is PUT /v1/webhook-endpoints/{endpoint_id}: naturally idempotent, like putShow.
func (h *handler) putWebhook(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, false, err
	}
	var in sale.WebhookInput
	if err := decodeJSON(body, &in); err != nil {
		return nil, false, err
	}
	id := r.PathValue("endpoint_id")
	if !boxoffice.ValidName(id) {
		return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "endpoint_id",
			Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
	}
	w, created, err := h.svc.PutWebhookEndpoint(r.Context(), id, in)
	if err != nil {
		return nil, false, err
	}
	if created {
		return h.render.Resource(http.StatusCreated, w, "/v1/webhook-endpoints/"+url.PathEscape(id)), false, nil
	}
	return h.ok(w)
}

// getWebhook is GET /v1/webhook-endpoints/{endpoint_id}.
func (h *handler) getWebhook(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := webhookID(r)
	if err != nil {
		return nil, false, err
	}
	w, err := h.svc.GetWebhookEndpoint(r.Context(), id)
	if err != nil {
		return nil, false, err
	}
	return h.ok(w)
}

// listWebhooks is GET /v1/webhook-endpoints: every endpoint on one page.
func (h *handler) listWebhooks(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	list, err := h.svc.ListWebhookEndpoints(r.Context())
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(list, ""))
}

// deleteWebhook is DELETE /v1/webhook-endpoints/{endpoint_id}: 204, also when it is already gone.
func (h *handler) deleteWebhook(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := webhookID(r)
	if err != nil {
		return nil, false, err
	}
	if err := h.svc.DeleteWebhookEndpoint(r.Context(), id); err != nil {
		return nil, false, err
	}
	return &boxoffice.Response{Status: http.StatusNoContent}, false, nil
}

// rotateWebhookSecret is POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret, body optional
// ({"expires_in": seconds}): the endpoint with its new secret.
func (h *handler) rotateWebhookSecret(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in sale.RotateSecretInput
	idem, err := h.beginPost(r, p, &in, true)
	if err != nil {
		return nil, false, err
	}
	id, err := webhookID(r)
	if err != nil {
		return nil, false, err
	}
	return h.svc.RotateWebhookSecret(r.Context(), idem, id, in)
}

// deadLetters returns the queue, or an error when this server runs without the async side.
func (h *handler) deadLetters() (DeadLetters, error) {
	if h.dlq == nil {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "this server runs no async side, so it has no dead letters")
	}
	return h.dlq, nil
}

// listDeadLetters is GET /v1/dead-letters?limit=: the oldest first.
func (h *handler) listDeadLetters(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	dlq, err := h.deadLetters()
	if err != nil {
		return nil, false, err
	}
	limit := maxDeadLetters
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDeadLetters {
			return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "limit",
				Message: "must be an integer from 1 to " + strconv.Itoa(maxDeadLetters)})
		}
		limit = n
	}
	list, err := dlq.ListDeadLetters(r.Context(), limit)
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(list, ""))
}

// replayed is the answer of a replay: how many dead letters were applied and left the queue.
type replayed struct {
	Replayed int `json:"replayed"`
}

// replayDeadLetter is POST /v1/dead-letters/{dead_letter_id}/replay.
func (h *handler) replayDeadLetter(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id := r.PathValue("dead_letter_id")
	return h.replay(r, p, func(ctx context.Context, dlq DeadLetters) (int, error) {
		if n, err := strconv.ParseUint(id, 10, 64); err != nil || n == 0 {
			return 0, notFound()
		}
		return 1, dlq.ReplayDeadLetter(ctx, id)
	})
}

// replayAllDeadLetters is POST /v1/dead-letters/replay: every dead letter, oldest first; the
// answer counts the ones that went through, and the first failure stops the run.
func (h *handler) replayAllDeadLetters(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	return h.replay(r, p, func(ctx context.Context, dlq DeadLetters) (int, error) {
		return dlq.ReplayAllDeadLetters(ctx)
	})
}

// replay runs a replay POST: the async side must be there, the request is an idempotent POST
// with an empty body, and op's count of replayed dead letters is the answer.
func (h *handler) replay(r *http.Request, p *boxoffice.Principal, op func(context.Context, DeadLetters) (int, error)) (*boxoffice.Response, bool, error) {
	dlq, err := h.deadLetters()
	if err != nil {
		return nil, false, err
	}
	var in struct{}
	idem, err := h.beginPost(r, p, &in, true)
	if err != nil {
		return nil, false, err
	}
	return h.svc.RunOnce(r.Context(), idem, http.StatusOK, func(ctx context.Context) (any, error) {
		n, err := op(ctx, dlq)
		if err != nil {
			return nil, err
		}
		return replayed{Replayed: n}, nil
	})
}
