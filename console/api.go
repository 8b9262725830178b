package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

// Bounds of the live stream and the searches.
const (
	// streamMax ends a stream after a while; the page's EventSource reconnects at once, and the
	// reconnect checks the session again, so no stream outlives its session by much.
	streamMax = 5 * time.Minute
	// keepAlive is how often an idle stream sends a comment, so that proxies keep it open.
	keepAlive = 15 * time.Second
	// writeWait bounds one write to a stream: a browser that stopped reading is let go.
	writeWait = 10 * time.Second
	// maxScan bounds the orders a search by email reads; the answer says when it stopped there.
	maxScan    = 20000
	maxResults = 100
)

// principal is the session's caller for the service.
func (ss *session) principal() *boxoffice.Principal {
	return &boxoffice.Principal{KeyID: ss.keyID, Role: boxoffice.RoleAdmin}
}

// getState is GET /console/api/state: the live view once, for a page without EventSource.
func (c *Console) getState(w http.ResponseWriter, r *http.Request, _ *session) {
	body, _, changed := c.sampler.want()
	if body == nil {
		// The first refresh after an idle spell is under way (want poked it): wait for it.
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Second):
		}
		body, _, _ = c.sampler.want()
	}
	if body == nil {
		writeJSONError(w, http.StatusServiceUnavailable, boxoffice.EINTERNAL, "the live view is not ready yet")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// stream is GET /console/api/stream: server-sent events, a "state" event with the whole live
// view each time it is rebuilt (once a second while pages watch), and "signedout" when the
// session ends. The whole view rather than changes: it is small, and a page that missed one
// event is right again at the next.
func (c *Console) stream(w http.ResponseWriter, r *http.Request, _ *session) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no") // a buffering proxy would hold the events back
	w.WriteHeader(http.StatusOK)
	write := func(s string) bool {
		// The server's WriteTimeout counts from the request's start; a stream lives longer, so
		// each write gets its own deadline instead.
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write("retry: 2000\n\n") {
		return
	}
	end := time.NewTimer(streamMax)
	defer end.Stop()
	idle := time.NewTicker(keepAlive)
	defer idle.Stop()
	var sent uint64
	for {
		body, version, changed := c.sampler.want()
		if body != nil && version != sent {
			if !write("event: state\ndata: " + string(body) + "\n\n") {
				return
			}
			sent = version
		}
		select {
		case <-changed:
		case <-idle.C:
			if !write(": keep-alive\n\n") {
				return
			}
		case <-r.Context().Done():
			return
		case <-c.base.Done():
			return
		case <-end.C:
			return
		}
		if c.sessions.get(r) == nil {
			write("event: signedout\ndata: {}\n\n")
			return
		}
	}
}

// orderSearch is the answer of a search.
type orderSearch struct {
	Orders []*boxoffice.Order `json:"orders"`
	// Scanned is how many orders a search by email read; Truncated says it stopped at maxScan
	// or at maxResults matches, so more may match.
	Scanned   int  `json:"scanned"`
	Truncated bool `json:"truncated"`
}

// searchOrders is GET /console/api/orders?q=: an order by id (ord_…), or the orders of a buyer's
// email (the oldest maxScan orders are searched, oldest first).
func (c *Console) searchOrders(w http.ResponseWriter, r *http.Request, ss *session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	p := ss.principal()
	res := orderSearch{Orders: []*boxoffice.Order{}}
	switch {
	case strings.HasPrefix(q, boxoffice.PrefixOrder):
		o, err := c.svc.GetOrder(r.Context(), p, q)
		if err != nil && boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			c.writeError(w, err)
			return
		}
		if o != nil {
			res.Orders = append(res.Orders, o)
		}
		res.Scanned = 1
	case strings.Contains(q, "@"):
		after := ""
		for res.Scanned < maxScan {
			page, next, err := c.svc.ListOrders(r.Context(), p, "", after, 500)
			if err != nil {
				c.writeError(w, err)
				return
			}
			res.Scanned += len(page)
			for _, o := range page {
				if strings.EqualFold(o.Buyer.Email, q) {
					res.Orders = append(res.Orders, o)
				}
			}
			if len(res.Orders) >= maxResults {
				res.Orders, res.Truncated = res.Orders[:maxResults], true
				break
			}
			if next == "" {
				break
			}
			after = next
			res.Truncated = res.Scanned >= maxScan
		}
	default:
		writeJSONError(w, http.StatusBadRequest, boxoffice.EVALIDATION, "search by an order id (ord_…) or a buyer's email")
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// listKeys is GET /console/api/keys: every stored API key (the configured admin key is not one).
func (c *Console) listKeys(w http.ResponseWriter, r *http.Request, _ *session) {
	keys := []*boxoffice.APIKey{}
	after := ""
	for range 20 { // 2000 keys: far more channels than a box office has
		page, next, err := c.svc.ListAPIKeys(r.Context(), after, 100)
		if err != nil {
			c.writeError(w, err)
			return
		}
		keys = append(keys, page...)
		if next == "" {
			break
		}
		after = next
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// cancelOperation and cancelPath are the REST route's, so that the console's cancel and the API's
// share one idempotency scope and fingerprint: a key is one cancel, whichever way it came.
const cancelOperation = "POST /v1/orders/{order_id}/cancel"

// cancelOrder is POST /console/api/orders/{order_id}/cancel with an Idempotency-Key that the page
// made when the operator confirmed: a double click or a retry after a lost answer cancels and
// refunds once, through the sale service like any cancel.
func (c *Console) cancelOrder(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("order_id")
	key := r.Header.Get("Idempotency-Key")
	if !validIdemKey(key) {
		writeJSONError(w, http.StatusBadRequest, boxoffice.EIDEMINVALID, "a cancel needs an Idempotency-Key of 1 to 200 visible ASCII characters")
		return
	}
	idem, err := sale.NewIdem(ss.keyID, cancelOperation, "/v1/orders/"+id+"/cancel", key, struct{}{})
	if err != nil {
		c.writeError(w, err)
		return
	}
	res, _, err := c.svc.CancelOrder(r.Context(), ss.principal(), idem, id)
	if err != nil {
		c.writeError(w, err)
		return
	}
	c.sampler.ordersStale.Store(true)
	c.sampler.poke()
	ct := "application/json"
	if res.Status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// validIdemKey reports whether k is 1–200 visible ASCII characters (the API allows 255).
func validIdemKey(k string) bool {
	if len(k) == 0 || len(k) > 200 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// replay is POST /console/api/dead-letters/{id}/replay: the dead letter applied once more through
// its consumer (inbox-checked, so an event applied meanwhile is not applied twice); on success it
// leaves the queue.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, _ *session) {
	dlq := c.opts.DeadLetters
	if dlq == nil {
		writeJSONError(w, http.StatusNotFound, boxoffice.ENOTFOUND, "this server runs no async side, so it has no dead letters")
		return
	}
	id := r.PathValue("id")
	if err := dlq.ReplayDeadLetter(r.Context(), id); err != nil {
		c.writeError(w, err)
		return
	}
	c.sampler.poke()
	writeJSON(w, http.StatusOK, map[string]any{"replayed": 1, "id": id})
}

// revokeKey is POST /console/api/keys/{key_id}/revoke.
func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, _ *session) {
	id := r.PathValue("key_id")
	if err := c.svc.RevokeAPIKey(r.Context(), id); err != nil {
		c.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": id})
}

// pauseRoom is POST /console/api/waiting-rooms/{show_id}/pause (paused) or …/resume: the room
// stops letting the queue through, or starts again at its rate. Both are states, so a repeat
// changes nothing.
func (c *Console) pauseRoom(paused bool) func(w http.ResponseWriter, r *http.Request, _ *session) {
	return func(w http.ResponseWriter, r *http.Request, _ *session) {
		if c.opts.PauseWaitRoom == nil {
			writeJSONError(w, http.StatusNotFound, boxoffice.ENOTFOUND, "this server has no waiting rooms")
			return
		}
		room, err := c.opts.PauseWaitRoom(r.Context(), r.PathValue("show_id"), paused)
		if err != nil {
			c.writeError(w, err)
			return
		}
		c.sampler.poke()
		writeJSON(w, http.StatusOK, room)
	}
}

// statuses maps the error codes the console meets to HTTP statuses; others are 500.
var statuses = map[string]int{
	boxoffice.ENOTFOUND:           http.StatusNotFound,
	boxoffice.EVALIDATION:         http.StatusBadRequest,
	boxoffice.EIDEMINVALID:        http.StatusBadRequest,
	boxoffice.ENOTCANCELLABLE:     http.StatusConflict,
	boxoffice.ECANCELWINDOW:       http.StatusConflict,
	boxoffice.EIDEMINPROGRESS:     http.StatusConflict,
	boxoffice.ECONFLICT:           http.StatusConflict,
	boxoffice.EIDEMREUSED:         http.StatusUnprocessableEntity,
	boxoffice.EUNAUTHORIZED:       http.StatusUnauthorized,
	boxoffice.EFORBIDDEN:          http.StatusForbidden,
	boxoffice.EREPLAYFAILED:       http.StatusBadGateway,
	boxoffice.EPAYMENTUNAVAILABLE: http.StatusServiceUnavailable,
	boxoffice.EOVERLOADED:         http.StatusServiceUnavailable,
}

// writeError writes a domain error with its message, which is meant for people; any other error
// is logged and answered without detail.
func (c *Console) writeError(w http.ResponseWriter, err error) {
	var e *boxoffice.Error
	if errors.As(err, &e) && e.Code != boxoffice.EINTERNAL {
		status, ok := statuses[e.Code]
		if !ok {
			status = http.StatusInternalServerError
		}
		writeJSONError(w, status, e.Code, e.Message)
		return
	}
	c.log.Error("console", "err", err)
	writeJSONError(w, http.StatusInternalServerError, boxoffice.EINTERNAL, "internal error; the server log has it")
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
