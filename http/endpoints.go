package http

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"boxoffice"
	"boxoffice/sale"
	"boxoffice/waitroom"
)

// Page sizes of the list endpoints.
const (
	defaultLimit = 20
	maxLimit     = 100
)

// maxServerIDLen bounds a server-made id in a path; real ones are a prefix and 26 characters.
const maxServerIDLen = 64

// page is a list answer. Next is null on the last page, never "", so that clients can test it.
type page[T any] struct {
	Data []T     `json:"data"`
	Next *string `json:"next"`
}

// newPage wraps a service page; an empty page has "data": [], not null.
func newPage[T any](items []T, next string) page[T] {
	if items == nil {
		items = []T{}
	}
	p := page[T]{Data: items}
	if next != "" {
		p.Next = &next
	}
	return p
}

// pageParams reads ?after= and ?limit=. The cursor is opaque here: the service judges it.
func pageParams(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	limit = defaultLimit
	if s := q.Get("limit"); s != "" {
		n, convErr := strconv.Atoi(s)
		if convErr != nil || n < 1 || n > maxLimit {
			return "", 0, boxoffice.Validation(boxoffice.FieldError{Field: "limit",
				Message: "must be an integer from 1 to " + strconv.Itoa(maxLimit)})
		}
		limit = n
	}
	return q.Get("after"), limit, nil
}

// notFound is the answer for an id in a path that no resource can have, the same as for a
// well-formed id that names nothing, so that clients see one behaviour.
func notFound() error { return boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource") }

// showID returns the {show_id} path value if it is a valid name.
func showID(r *http.Request) (string, error) {
	id := r.PathValue("show_id")
	if !boxoffice.ValidName(id) {
		return "", notFound()
	}
	return id, nil
}

// serverID returns the path value name if it has the prefix of the server-made ids it stands for.
func serverID(r *http.Request, name, prefix string) (string, error) {
	id := r.PathValue(name)
	if !strings.HasPrefix(id, prefix) || len(id) <= len(prefix) || len(id) > maxServerIDLen {
		return "", notFound()
	}
	return id, nil
}

// ok renders a read.
func (h *handler) ok(v any) (*boxoffice.Response, bool, error) {
	return h.render.Resource(http.StatusOK, v, ""), false, nil
}

// beginPost does what every POST does before the service sees it, in the order SPEC §3 and the
// brief fix: the Idempotency-Key (auth has run), then the body (type, size, strict decoding into
// in), then the idempotency context (sale.NewIdem): the scope is the key id and the route template
// with its method, e.g. "key_x POST /v1/holds/{hold_id}/confirm", so that keys of two callers or
// two routes never meet, and the fingerprint is of the decoded input, as for every transport.
// bodyOptional allows an empty body; a non-empty one is still decoded strictly.
func (h *handler) beginPost(r *http.Request, p *boxoffice.Principal, in any, bodyOptional bool) (sale.Idem, error) {
	key, err := ParseIdempotencyKey(r.Header.Values(headerIdempotencyKey))
	if err != nil {
		return sale.Idem{}, err
	}
	body, err := readBody(r)
	if err != nil {
		return sale.Idem{}, err
	}
	if body != nil || !bodyOptional {
		if err := decodeJSON(body, in); err != nil {
			return sale.Idem{}, err
		}
	}
	return sale.NewIdem(p.KeyID, r.Pattern, r.URL.Path, key, in)
}

// healthz says the process serves HTTP; it checks nothing else, so a slow store never gets the
// process restarted.
func (h *handler) healthz(*http.Request, *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	return h.ok(map[string]string{"status": "ok"})
}

// readyz says whether the service can serve: a 503 takes the instance out of a load balancer
// without restarting it. The problem names the part that fails (the store's reads or commits,
// the event bus); the cause, which may name files and hosts, goes to the log only.
func (h *handler) readyz(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	err := h.svc.Ready(r.Context())
	if err == nil && h.ready != nil {
		err = h.ready(r.Context())
	}
	if err != nil {
		h.log.WarnContext(r.Context(), "not ready", "err", err)
		reason := "the service is not ready"
		if nr, ok := errors.AsType[*boxoffice.NotReadyError](err); ok {
			reason = "not ready: " + nr.Reason
		}
		return nil, false, boxoffice.Errorf(codeNotReady, "%s", reason)
	}
	return h.ok(map[string]string{"status": "ok"})
}

// createAPIKey is POST /v1/api-keys.
func (h *handler) createAPIKey(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in sale.APIKeyInput
	idem, err := h.beginPost(r, p, &in, false)
	if err != nil {
		return nil, false, err
	}
	return h.svc.CreateAPIKey(r.Context(), idem, in)
}

// listAPIKeys is GET /v1/api-keys: the stored keys without their secrets.
func (h *handler) listAPIKeys(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	after, limit, err := pageParams(r)
	if err != nil {
		return nil, false, err
	}
	keys, next, err := h.svc.ListAPIKeys(r.Context(), after, limit)
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(keys, next))
}

// revokeAPIKey is DELETE /v1/api-keys/{key_id}: 204, also for a key revoked already.
func (h *handler) revokeAPIKey(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := serverID(r, "key_id", boxoffice.PrefixAPIKey)
	if err != nil {
		return nil, false, err
	}
	if err := h.svc.RevokeAPIKey(r.Context(), id); err != nil {
		return nil, false, err
	}
	return &boxoffice.Response{Status: http.StatusNoContent}, false, nil
}

// putShow is PUT /v1/shows/{show_id}: naturally idempotent, so no Idempotency-Key. The id is being
// chosen here, so a malformed one is a validation error rather than a 404.
func (h *handler) putShow(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, false, err
	}
	var in sale.ShowInput
	if err := decodeJSON(body, &in); err != nil {
		return nil, false, err
	}
	id := r.PathValue("show_id")
	if !boxoffice.ValidName(id) {
		return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "show_id",
			Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
	}
	show, created, err := h.svc.PutShow(r.Context(), id, in)
	if err != nil {
		return nil, false, err
	}
	if created {
		return h.render.Resource(http.StatusCreated, show, "/v1/shows/"+url.PathEscape(id)), false, nil
	}
	return h.ok(show)
}

// getShow is GET /v1/shows/{show_id}.
func (h *handler) getShow(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	show, err := h.svc.GetShow(r.Context(), id)
	if err != nil {
		return nil, false, err
	}
	return h.ok(show)
}

// getSeats is GET /v1/shows/{show_id}/seats: the seat map with each seat's state. An
// If-None-Match naming the current ETag is answered 304 without a body, so that a page polling
// the map during an on-sale moves bytes only when a seat changed.
func (h *handler) getSeats(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	body, etag, err := h.svc.ShowSeats(r.Context(), id)
	if err != nil {
		return nil, false, err
	}
	for _, v := range r.Header.Values("If-None-Match") {
		for tag := range strings.SplitSeq(v, ",") {
			if tag = strings.TrimSpace(tag); tag == etag || tag == "W/"+etag || tag == "*" {
				return &boxoffice.Response{Status: http.StatusNotModified, ETag: etag}, false, nil
			}
		}
	}
	return &boxoffice.Response{Status: http.StatusOK, Body: body, ETag: etag}, false, nil
}

// listShows is GET /v1/shows.
func (h *handler) listShows(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	after, limit, err := pageParams(r)
	if err != nil {
		return nil, false, err
	}
	shows, next, err := h.svc.ListShows(r.Context(), after, limit)
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(shows, next))
}

// createHold is POST /v1/shows/{show_id}/holds.
func (h *handler) createHold(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in sale.HoldInput
	idem, err := h.beginPost(r, p, &in, false)
	if err != nil {
		return nil, false, err
	}
	if in.ShowID, err = showID(r); err != nil {
		return nil, false, err
	}
	// A show's waiting room admits by the queue ticket's token (waitroom.Service.Admitted).
	ctx := waitroom.WithToken(r.Context(), r.Header.Get(waitroom.HeaderTicket))
	return h.svc.CreateHold(ctx, p, idem, in)
}

// getHold is GET /v1/holds/{hold_id}.
func (h *handler) getHold(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := serverID(r, "hold_id", boxoffice.PrefixHold)
	if err != nil {
		return nil, false, err
	}
	hold, err := h.svc.GetHold(r.Context(), p, id)
	if err != nil {
		return nil, false, err
	}
	return h.ok(hold)
}

// releaseHold is DELETE /v1/holds/{hold_id}: 204 however often, so no Idempotency-Key.
func (h *handler) releaseHold(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := serverID(r, "hold_id", boxoffice.PrefixHold)
	if err != nil {
		return nil, false, err
	}
	if err := h.svc.ReleaseHold(r.Context(), p, id); err != nil {
		return nil, false, err
	}
	return &boxoffice.Response{Status: http.StatusNoContent}, false, nil
}

// confirmHold is POST /v1/holds/{hold_id}/confirm.
func (h *handler) confirmHold(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in sale.ConfirmInput
	idem, err := h.beginPost(r, p, &in, false)
	if err != nil {
		return nil, false, err
	}
	id, err := serverID(r, "hold_id", boxoffice.PrefixHold)
	if err != nil {
		return nil, false, err
	}
	return h.svc.ConfirmHold(r.Context(), p, idem, id, in)
}

// purchase is POST /v1/purchases.
func (h *handler) purchase(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in sale.PurchaseInput
	idem, err := h.beginPost(r, p, &in, false)
	if err != nil {
		return nil, false, err
	}
	ctx := waitroom.WithToken(r.Context(), r.Header.Get(waitroom.HeaderTicket))
	return h.svc.Purchase(ctx, p, idem, in)
}

// getOrder is GET /v1/orders/{order_id}.
func (h *handler) getOrder(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := serverID(r, "order_id", boxoffice.PrefixOrder)
	if err != nil {
		return nil, false, err
	}
	order, err := h.svc.GetOrder(r.Context(), p, id)
	if err != nil {
		return nil, false, err
	}
	return h.ok(order)
}

// listOrders is GET /v1/orders. A show_id filter that no show can have is a validation error:
// an empty page would hide a client's typo.
func (h *handler) listOrders(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	after, limit, err := pageParams(r)
	if err != nil {
		return nil, false, err
	}
	show := r.URL.Query().Get("show_id")
	if show != "" && !boxoffice.ValidName(show) {
		return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "show_id",
			Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"})
	}
	orders, next, err := h.svc.ListOrders(r.Context(), p, show, after, limit)
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(orders, next))
}

// cancelOrder is POST /v1/orders/{order_id}/cancel. It takes no input, so the body may be empty;
// a non-empty one must be an empty JSON object, as every field in it would be unknown.
func (h *handler) cancelOrder(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in struct{}
	idem, err := h.beginPost(r, p, &in, true)
	if err != nil {
		return nil, false, err
	}
	id, err := serverID(r, "order_id", boxoffice.PrefixOrder)
	if err != nil {
		return nil, false, err
	}
	return h.svc.CancelOrder(r.Context(), p, idem, id)
}

// feed is GET /v1/feed: the domain events in commit order.
func (h *handler) feed(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	after, limit, err := pageParams(r)
	if err != nil {
		return nil, false, err
	}
	events, next, err := h.svc.ListEvents(r.Context(), after, limit)
	if err != nil {
		return nil, false, err
	}
	return h.ok(newPage(events, next))
}
