package http

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

// Media types of the responses. Problems get their own type so that clients can tell an error body
// from a resource without looking at the status.
const (
	contentJSON    = "application/json"
	contentProblem = "application/problem+json"
)

// codeNotReady is the code of the /readyz answer when the service does not answer. It is not a
// domain code (nothing in the service returns it) but it lives in the same table so that every
// problem the transport writes comes from one place.
const codeNotReady = "not_ready"

// problemKind is one row of the status table: the HTTP status and the title of a problem code.
type problemKind struct {
	status int
	title  string
}

// problemKinds is the one table from error codes to statuses. A code missing here is rendered as
// internal, so that a new code added inside never leaks out under a status nobody chose.
var problemKinds = map[string]problemKind{
	boxoffice.ESOLDOUT:            {http.StatusConflict, "Sold out"},
	boxoffice.ESEATUNAVAILABLE:    {http.StatusConflict, "Seat unavailable"},
	boxoffice.EBUYERLIMIT:         {http.StatusConflict, "Buyer limit reached"},
	boxoffice.EHOLDCONFIRMED:      {http.StatusConflict, "Hold already confirmed"},
	boxoffice.EHOLDRELEASED:       {http.StatusConflict, "Hold released"},
	boxoffice.ECAPACITYCONFLICT:   {http.StatusConflict, "Capacity conflict"},
	boxoffice.EIDEMINPROGRESS:     {http.StatusConflict, "Request in progress"},
	boxoffice.ECANCELWINDOW:       {http.StatusConflict, "Cancel window closed"},
	boxoffice.ECONFLICT:           {http.StatusConflict, "Conflict"},
	boxoffice.EHOLDEXPIRED:        {http.StatusGone, "Hold expired"},
	boxoffice.EPAYMENTDECLINED:    {http.StatusPaymentRequired, "Payment declined"},
	boxoffice.EIDEMMISSING:        {http.StatusBadRequest, "Idempotency-Key missing"},
	boxoffice.EIDEMINVALID:        {http.StatusBadRequest, "Idempotency-Key invalid"},
	boxoffice.EVALIDATION:         {http.StatusBadRequest, "Validation failed"},
	boxoffice.EIDEMREUSED:         {http.StatusUnprocessableEntity, "Idempotency-Key reused"},
	boxoffice.ENOTFOUND:           {http.StatusNotFound, "Not found"},
	boxoffice.EUNAUTHORIZED:       {http.StatusUnauthorized, "Unauthorized"},
	boxoffice.EFORBIDDEN:          {http.StatusForbidden, "Forbidden"},
	boxoffice.ENOTADMITTED:        {http.StatusForbidden, "Not admitted"},
	boxoffice.ETICKETEXPIRED:      {http.StatusGone, "Queue ticket expired"},
	boxoffice.EPAYLOADTOOLARGE:    {http.StatusRequestEntityTooLarge, "Payload too large"},
	boxoffice.EUNSUPPORTEDMEDIA:   {http.StatusUnsupportedMediaType, "Unsupported media type"},
	boxoffice.EMETHODNOTALLOWED:   {http.StatusMethodNotAllowed, "Method not allowed"},
	boxoffice.ERATELIMITED:        {http.StatusTooManyRequests, "Rate limited"},
	boxoffice.EOVERLOADED:         {http.StatusServiceUnavailable, "Overloaded"},
	boxoffice.EPAYMENTUNAVAILABLE: {http.StatusServiceUnavailable, "Payment provider unavailable"},
	boxoffice.EREPLAYFAILED:       {http.StatusBadGateway, "Replay failed"},
	codeNotReady:                  {http.StatusServiceUnavailable, "Not ready"},
	boxoffice.EINTERNAL:           {http.StatusInternalServerError, "Internal error"},
}

// StatusOf returns the HTTP status of an error code, as the problem table has it; unknown codes
// are internal errors.
func StatusOf(code string) int {
	if k, ok := problemKinds[code]; ok {
		return k.status
	}
	return http.StatusInternalServerError
}

// problemTypePrefix makes a problem's "type" a URI that never changes for a code, as RFC 9457
// asks, without promising a documentation page behind it.
const problemTypePrefix = "urn:boxoffice:problem:"

// problem is the RFC 9457 body. Field order is fixed by the struct, so that stored problems are
// byte-identical however often they are rendered. Errors is omitzero, not omitempty: a
// validation problem always carries the array, even an empty one, while other codes have none.
type problem struct {
	Type      string                 `json:"type"`
	Title     string                 `json:"title"`
	Status    int                    `json:"status"`
	Detail    string                 `json:"detail"`
	Code      string                 `json:"code"`
	Errors    []boxoffice.FieldError `json:"errors,omitzero"`
	Available *int                   `json:"available,omitempty"`
}

// Renderer renders the service's outcomes as HTTP responses. The service stores what it returns
// next to the effect and replays it on a retry, so rendering lives in one place and is
// deterministic: the same outcome always gives the same bytes.
type Renderer struct{}

var _ sale.Renderer = Renderer{}

// Resource renders a success with v as the JSON body; a 204 or a nil v has no body.
func (Renderer) Resource(status int, v any, location string) *boxoffice.Response {
	resp := &boxoffice.Response{Status: status, Location: location}
	if status == http.StatusNoContent || v == nil {
		return resp
	}
	body, err := encodeJSON(v)
	if err != nil {
		// Only a programming error (an unencodable type) gets here; answer 500 rather than
		// store half a body.
		return Renderer{}.Problem(err)
	}
	resp.Body = body
	return resp
}

// Problem renders err as an RFC 9457 problem. The status comes from the one code table; internal
// errors, and codes the table does not know, get a fixed detail so that nothing about the inside
// reaches a client.
func (Renderer) Problem(err error) *boxoffice.Response {
	code := boxoffice.ErrorCode(err)
	kind, ok := problemKinds[code]
	if !ok || code == boxoffice.EINTERNAL {
		code, kind = boxoffice.EINTERNAL, problemKinds[boxoffice.EINTERNAL]
	}
	p := problem{
		Type:   problemTypePrefix + code,
		Title:  kind.title,
		Status: kind.status,
		Code:   code,
		Detail: boxoffice.ErrorMessage(err),
	}
	if code == boxoffice.EINTERNAL {
		p.Detail = "internal error"
	}
	if p.Detail == "" {
		p.Detail = kind.title
	}
	if e := boxoffice.AsError(err); e != nil {
		switch code {
		case boxoffice.EVALIDATION:
			p.Errors = e.Fields
			if p.Errors == nil {
				// Clients iterate over "errors" for this code; never leave it out.
				p.Errors = []boxoffice.FieldError{}
			}
		case boxoffice.ESOLDOUT:
			p.Available = e.Available
		}
	}
	body, encErr := encodeJSON(p)
	if encErr != nil {
		// A problem of strings and ints always encodes; keep a body anyway.
		body = []byte(`{"type":"urn:boxoffice:problem:internal","title":"Internal error","status":500,"detail":"internal error","code":"internal"}` + "\n")
		p.Status = http.StatusInternalServerError
	}
	return &boxoffice.Response{Status: p.Status, Body: body}
}

// encodeJSON encodes v the one way every body of this transport is encoded: encoding/json with a
// trailing newline, HTML characters left as they are (no browser renders these bodies).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeResponse writes a rendered (possibly stored) response byte for byte. Headers are derived
// from the stored status and Location only, so a replay cannot differ from the first answer.
func writeResponse(w http.ResponseWriter, resp *boxoffice.Response, replayed bool) {
	h := w.Header()
	if len(resp.Body) > 0 {
		if resp.Status >= 400 {
			h.Set("Content-Type", contentProblem)
		} else {
			h.Set("Content-Type", contentJSON)
		}
		h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	}
	if resp.Location != "" {
		h.Set("Location", resp.Location)
	}
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	if resp.ETag != "" {
		// A public map that changes by the second: stored, but revalidated every time.
		h.Set("ETag", resp.ETag)
		h.Set("Cache-Control", "no-cache")
	}
	w.WriteHeader(resp.Status)
	if len(resp.Body) > 0 {
		_, _ = w.Write(resp.Body)
	}
}

// writeError renders an error that was returned, not stored: the same problem as a stored one,
// plus the headers that only make sense live (Retry-After, WWW-Authenticate). Internal errors are
// logged here, with the real error, because the client only sees "internal error".
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	resp := h.render.Problem(err)
	code := boxoffice.ErrorCode(err)
	switch _, known := problemKinds[code]; {
	case r.Context().Err() != nil:
		// The client hung up (or its body timed out) first: nothing failed on our side. The work
		// it started finishes and is stored for the client's retry. The problem is still written:
		// a handler that ends without a status answers an empty 200 to a client that can still
		// read, as one whose body read timed out can.
		h.log.LogAttrs(context.Background(), slog.LevelDebug, "client went away",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	case !known || code == boxoffice.EINTERNAL:
		h.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	if after := retryAfter(err, code); after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(after))
	}
	if code == boxoffice.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="boxoffice"`)
	}
	writeResponse(w, resp, false)
}

// retryAfter returns the whole seconds to put in Retry-After, at least 1, or 0 for none. Codes that
// promise a Retry-After get one even when the service did not say how long.
func retryAfter(err error, code string) int {
	var d time.Duration
	if e := boxoffice.AsError(err); e != nil {
		d = e.RetryAfter
	}
	if d <= 0 {
		switch code {
		case boxoffice.EIDEMINPROGRESS, boxoffice.EOVERLOADED, boxoffice.ERATELIMITED, boxoffice.EPAYMENTUNAVAILABLE:
			d = time.Second
		default:
			return 0
		}
	}
	secs := int((d + time.Second - 1) / time.Second)
	return max(secs, 1)
}
