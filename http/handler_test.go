package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"boxoffice"
	"boxoffice/sale"
)

// holdBody is a well-formed hold request.
const holdBody = `{"tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`

// decodeProblem checks that w is a problem+json answer with status and code, and returns it.
func decodeProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string) problem {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != contentProblem {
		t.Fatalf("Content-Type = %q, want %q", ct, contentProblem)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", w.Body, err)
	}
	if p.Code != code || p.Status != status || p.Type != problemTypePrefix+code || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem = %+v, want code %s status %d", p, code, status)
	}
	return p
}

// TestServiceErrorsFollowTheTable renders every code the service can return, both as a returned
// error and as a stored response, and checks it against the status table of the brief.
func TestServiceErrorsFollowTheTable(t *testing.T) {
	want := map[string]int{
		boxoffice.ESOLDOUT: 409, boxoffice.EBUYERLIMIT: 409, boxoffice.EHOLDCONFIRMED: 409,
		boxoffice.EHOLDRELEASED: 409, boxoffice.ECAPACITYCONFLICT: 409, boxoffice.EIDEMINPROGRESS: 409,
		boxoffice.ECONFLICT: 409, boxoffice.EHOLDEXPIRED: 410, boxoffice.EPAYMENTDECLINED: 402,
		boxoffice.EIDEMMISSING: 400, boxoffice.EIDEMINVALID: 400, boxoffice.EVALIDATION: 400,
		boxoffice.EIDEMREUSED: 422, boxoffice.ENOTFOUND: 404, boxoffice.EUNAUTHORIZED: 401,
		boxoffice.EFORBIDDEN: 403, boxoffice.EPAYLOADTOOLARGE: 413, boxoffice.EUNSUPPORTEDMEDIA: 415,
		boxoffice.EMETHODNOTALLOWED: 405, boxoffice.ERATELIMITED: 429, boxoffice.EOVERLOADED: 503,
		boxoffice.EINTERNAL: 500, boxoffice.EPAYMENTUNAVAILABLE: 503,
	}
	for code, status := range want {
		if got := StatusOf(code); got != status {
			t.Errorf("StatusOf(%s) = %d, want %d", code, got, status)
		}
		for _, stored := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stored=%v", code, stored), func(t *testing.T) {
				f := &fakeService{}
				err := boxoffice.Errorf(code, "the %s detail", code)
				f.idemResult = func(string) (*boxoffice.Response, bool, error) {
					if stored {
						return Renderer{}.Problem(err), false, nil
					}
					return nil, false, err
				}
				h, _ := newTestHandler(f, 0)
				w := serve(t, h, req{method: "POST", path: "/v1/shows/gala/holds", key: clientKey, idem: []string{"k1"}, body: holdBody})
				p := decodeProblem(t, w, status, code)
				if code != boxoffice.EINTERNAL && p.Detail != "the "+code+" detail" {
					t.Errorf("detail = %q", p.Detail)
				}
			})
		}
	}
}

func TestProblemExtras(t *testing.T) {
	three := 3
	cases := []struct {
		name   string
		err    error
		status int
		code   string
		check  func(t *testing.T, w *httptest.ResponseRecorder, p problem)
	}{
		{"validation fields", boxoffice.Validation(boxoffice.FieldError{Field: "quantity", Message: "must be 1 to 10"}), 400, boxoffice.EVALIDATION,
			func(t *testing.T, _ *httptest.ResponseRecorder, p problem) {
				if len(p.Errors) != 1 || p.Errors[0].Field != "quantity" {
					t.Errorf("errors = %+v", p.Errors)
				}
			}},
		{"validation without fields still has errors", boxoffice.Errorf(boxoffice.EVALIDATION, "bad"), 400, boxoffice.EVALIDATION,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if !strings.Contains(w.Body.String(), `"errors":[]`) {
					t.Errorf("body %s", w.Body)
				}
			}},
		{"sold out available", &boxoffice.Error{Code: boxoffice.ESOLDOUT, Message: "only 3 left", Available: &three}, 409, boxoffice.ESOLDOUT,
			func(t *testing.T, _ *httptest.ResponseRecorder, p problem) {
				if p.Available == nil || *p.Available != 3 {
					t.Errorf("available = %v", p.Available)
				}
			}},
		{"internal hides its message", fmt.Errorf("wrap: %w", boxoffice.Errorf(boxoffice.EINTERNAL, "pq: password=hunter2")), 500, boxoffice.EINTERNAL,
			func(t *testing.T, w *httptest.ResponseRecorder, p problem) {
				if p.Detail != "internal error" || strings.Contains(w.Body.String(), "hunter2") {
					t.Errorf("leak: %s", w.Body)
				}
			}},
		{"plain error is internal", errors.New("dial tcp 10.0.0.1: refused"), 500, boxoffice.EINTERNAL,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if strings.Contains(w.Body.String(), "10.0.0.1") {
					t.Errorf("leak: %s", w.Body)
				}
			}},
		{"unknown code is internal", boxoffice.Errorf("secret_new_code", "inside"), 500, boxoffice.EINTERNAL, nil},
		{"in progress retry after rounds up", &boxoffice.Error{Code: boxoffice.EIDEMINPROGRESS, Message: "busy", RetryAfter: 1500 * time.Millisecond}, 409, boxoffice.EIDEMINPROGRESS,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if got := w.Header().Get("Retry-After"); got != "2" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		{"in progress retry after defaults to 1", boxoffice.Errorf(boxoffice.EIDEMINPROGRESS, "busy"), 409, boxoffice.EIDEMINPROGRESS,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if got := w.Header().Get("Retry-After"); got != "1" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		{"tiny retry after is at least 1", &boxoffice.Error{Code: boxoffice.ERATELIMITED, Message: "slow down", RetryAfter: time.Millisecond}, 429, boxoffice.ERATELIMITED,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if got := w.Header().Get("Retry-After"); got != "1" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		{"sold out has no retry after", boxoffice.Errorf(boxoffice.ESOLDOUT, "gone"), 409, boxoffice.ESOLDOUT,
			func(t *testing.T, w *httptest.ResponseRecorder, _ problem) {
				if got := w.Header().Get("Retry-After"); got != "" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeService{read: func(string) error { return c.err }}
			h, log := newTestHandler(f, 0)
			w := serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey})
			p := decodeProblem(t, w, c.status, c.code)
			if c.check != nil {
				c.check(t, w, p)
			}
			if logged := strings.Contains(log.String(), "request failed"); logged != (c.status == 500) {
				t.Errorf("logged = %v for status %d: %s", logged, c.status, log)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	cases := []struct {
		name   string
		r      req
		auth   string // raw Authorization, overrides r.key
		status int
		code   string
	}{
		{"no key", req{method: "GET", path: "/v1/shows/gala"}, "", 401, boxoffice.EUNAUTHORIZED},
		{"unknown key", req{method: "GET", path: "/v1/shows/gala", key: "nope"}, "", 401, boxoffice.EUNAUTHORIZED},
		{"basic scheme", req{method: "GET", path: "/v1/shows/gala"}, "Basic c2s6", 401, boxoffice.EUNAUTHORIZED},
		{"bearer without key", req{method: "GET", path: "/v1/shows/gala"}, "Bearer ", 401, boxoffice.EUNAUTHORIZED},
		{"lower-case scheme", req{method: "GET", path: "/v1/shows/gala"}, "bearer " + clientKey, 200, ""},
		{"client reads", req{method: "GET", path: "/v1/orders", key: clientKey}, "", 200, ""},
		{"client buys", req{method: "POST", path: "/v1/purchases", key: clientKey, idem: []string{"k"}, body: `{}`}, "", 201, ""},
		{"client may not put shows", req{method: "PUT", path: "/v1/shows/gala", key: clientKey, body: `{}`}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not make keys", req{method: "POST", path: "/v1/api-keys", key: clientKey, idem: []string{"k"}, body: `{"role":"client"}`}, "", 403, boxoffice.EFORBIDDEN},
		{"admin makes keys", req{method: "POST", path: "/v1/api-keys", key: adminKey, idem: []string{"k"}, body: `{"role":"client"}`}, "", 201, ""},
		{"admin buys", req{method: "POST", path: "/v1/purchases", key: adminKey, idem: []string{"k"}, body: `{}`}, "", 201, ""},
		{"401 before missing idempotency key", req{method: "POST", path: "/v1/purchases", body: `{}`}, "", 401, boxoffice.EUNAUTHORIZED},
		{"403 before missing idempotency key", req{method: "POST", path: "/v1/api-keys", key: clientKey, body: `{}`}, "", 403, boxoffice.EFORBIDDEN},
		// The feed and the dead letters carry every channel's objects; keys are the admin's.
		{"client may not read the feed", req{method: "GET", path: "/v1/feed", key: clientKey}, "", 403, boxoffice.EFORBIDDEN},
		{"admin reads the feed", req{method: "GET", path: "/v1/feed", key: adminKey}, "", 200, ""},
		{"client may not list dead letters", req{method: "GET", path: "/v1/dead-letters", key: clientKey}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not replay dead letters", req{method: "POST", path: "/v1/dead-letters/replay", key: clientKey, idem: []string{"k"}}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not replay a dead letter", req{method: "POST", path: "/v1/dead-letters/1/replay", key: clientKey, idem: []string{"k"}}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not list keys", req{method: "GET", path: "/v1/api-keys", key: clientKey}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not revoke keys", req{method: "DELETE", path: "/v1/api-keys/key_c", key: clientKey}, "", 403, boxoffice.EFORBIDDEN},
		{"client may not rotate webhook secrets", req{method: "POST", path: "/v1/webhook-endpoints/p/rotate-secret", key: clientKey, idem: []string{"k"}}, "", 403, boxoffice.EFORBIDDEN},
		{"admin lists keys", req{method: "GET", path: "/v1/api-keys", key: adminKey}, "", 200, ""},
		{"admin revokes keys", req{method: "DELETE", path: "/v1/api-keys/key_c", key: adminKey}, "", 204, ""},
		{"admin rotates webhook secrets", req{method: "POST", path: "/v1/webhook-endpoints/p/rotate-secret", key: adminKey, idem: []string{"k"}}, "", 201, ""},
		{"healthz is public", req{method: "GET", path: "/healthz"}, "", 200, ""},
		{"readyz is public", req{method: "GET", path: "/readyz"}, "", 200, ""},
		{"metrics is public", req{method: "GET", path: "/metrics"}, "", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			if c.auth != "" {
				c.r.header = map[string]string{"Authorization": c.auth}
			}
			w := serve(t, h, c.r)
			if c.code != "" {
				decodeProblem(t, w, c.status, c.code)
			} else if w.Code != c.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.status == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", w.Header().Get("WWW-Authenticate"))
			}
			if c.status == 401 || c.status == 403 {
				if calls := f.called(); len(calls) != 0 {
					t.Errorf("service called: %v", calls)
				}
			}
		})
	}

	t.Run("store down is a 500, not a 401", func(t *testing.T) {
		f := &fakeService{authErr: errors.New("database is locked")}
		h, _ := newTestHandler(f, 0)
		w := serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey})
		decodeProblem(t, w, 500, boxoffice.EINTERNAL)
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		h, _ := newTestHandler(&fakeService{}, 0)
		r := httptest.NewRequest("GET", "/v1/shows/gala", nil)
		r.Header.Add("Authorization", "Bearer "+clientKey)
		r.Header.Add("Authorization", "Bearer "+adminKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		decodeProblem(t, w, 401, boxoffice.EUNAUTHORIZED)
	})
}

func TestIdempotencyKeyHeader(t *testing.T) {
	long := strings.Repeat("k", 255)
	cases := []struct {
		name    string
		values  []string
		status  int
		code    string
		wantKey string
	}{
		{"missing", nil, 400, boxoffice.EIDEMMISSING, ""},
		{"empty", []string{""}, 400, boxoffice.EIDEMINVALID, ""},
		{"repeated", []string{"a", "b"}, 400, boxoffice.EIDEMINVALID, ""},
		{"repeated same", []string{"a", "a"}, 400, boxoffice.EIDEMINVALID, ""},
		{"inner space", []string{"a b"}, 400, boxoffice.EIDEMINVALID, ""},
		{"non-ascii", []string{"clé"}, 400, boxoffice.EIDEMINVALID, ""},
		{"too long", []string{long + "k"}, 400, boxoffice.EIDEMINVALID, ""},
		{"quoted too long", []string{`"` + long + `k"`}, 400, boxoffice.EIDEMINVALID, ""},
		{"unterminated quote", []string{`"abc`}, 400, boxoffice.EIDEMINVALID, ""},
		{"quoted empty", []string{`""`}, 400, boxoffice.EIDEMINVALID, ""},
		{"quoted with space", []string{`"a b"`}, 400, boxoffice.EIDEMINVALID, ""},
		{"quoted with parameter", []string{`"abc";x=1`}, 400, boxoffice.EIDEMINVALID, ""},
		{"bare", []string{"8e03978e-40d5-43e8-bc93-6894a57f9324"}, 201, "", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"255 chars", []string{long}, 201, "", long},
		{"quoted", []string{`"abc"`}, 201, "", "abc"},
		{"quoted with escapes", []string{`"a\"b\\c"`}, 201, "", `a"b\c`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			w := serve(t, h, req{method: "POST", path: "/v1/shows/gala/holds", key: clientKey, idem: c.values, body: holdBody})
			if c.code != "" {
				decodeProblem(t, w, c.status, c.code)
				if len(f.called()) != 0 {
					t.Errorf("service called")
				}
				return
			}
			if w.Code != c.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if f.lastIdem.Key != c.wantKey {
				t.Errorf("key = %q, want %q", f.lastIdem.Key, c.wantKey)
			}
		})
	}
}

func TestEveryPostNeedsAKey(t *testing.T) {
	posts := []req{
		{method: "POST", path: "/v1/api-keys", key: adminKey, body: `{"role":"client"}`},
		{method: "POST", path: "/v1/shows/gala/holds", key: clientKey, body: holdBody},
		{method: "POST", path: "/v1/holds/hld_1/confirm", key: clientKey, body: `{"payment":{"token":"tok_ok"}}`},
		{method: "POST", path: "/v1/purchases", key: clientKey, body: `{}`},
		{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey},
	}
	for _, r := range posts {
		t.Run(r.path, func(t *testing.T) {
			h, _ := newTestHandler(&fakeService{}, 0)
			decodeProblem(t, serve(t, h, r), 400, boxoffice.EIDEMMISSING)
			r.idem = []string{"k"}
			if w := serve(t, h, r); w.Code != 201 {
				t.Fatalf("with a key: %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestRequestBodies(t *testing.T) {
	big := `{"tier_id":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	padded := holdBody + strings.Repeat(" ", maxBodyBytes-len(holdBody)) // exactly the limit
	hold := func(body string) req {
		return req{method: "POST", path: "/v1/shows/gala/holds", key: clientKey, idem: []string{"k"}, body: body}
	}
	cases := []struct {
		name   string
		r      req
		chunk  bool // hide the length, as a chunked body does
		status int
		code   string
		field  string
	}{
		{"too large", hold(big), false, 413, boxoffice.EPAYLOADTOOLARGE, ""},
		{"too large chunked", hold(big), true, 413, boxoffice.EPAYLOADTOOLARGE, ""},
		{"exactly the limit", hold(padded), false, 201, "", ""},
		{"text/plain", func() req { r := hold(holdBody); r.ctype = "text/plain"; return r }(), false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"no content type", func() req { r := hold(holdBody); r.ctype = "-"; return r }(), false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"no content type chunked", func() req { r := hold(holdBody); r.ctype = "-"; return r }(), true, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"415 before 413", func() req { r := hold(big); r.ctype = "text/plain"; return r }(), false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"latin1", func() req { r := hold(holdBody); r.ctype = "application/json; charset=latin1"; return r }(), false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"charset utf-8", func() req { r := hold(holdBody); r.ctype = "application/json; charset=UTF-8"; return r }(), false, 201, "", ""},
		{"missing key before 415", func() req { r := hold(holdBody); r.ctype = "text/plain"; r.idem = nil; return r }(), false, 400, boxoffice.EIDEMMISSING, ""},
		{"empty body", hold(""), false, 400, boxoffice.EVALIDATION, "body"},
		{"whitespace body", hold("  \n"), false, 400, boxoffice.EVALIDATION, "body"},
		{"unknown field", hold(`{"tier_id":"ga","quantity":1,"price":0}`), false, 400, boxoffice.EVALIDATION, "price"},
		{"unknown nested field", hold(`{"tier_id":"ga","buyer":{"email":"a@b.c","vip":true}}`), false, 400, boxoffice.EVALIDATION, "vip"},
		{"trailing data", hold(holdBody + `{"x":1}`), false, 400, boxoffice.EVALIDATION, "body"},
		{"trailing garbage", hold(holdBody + `]`), false, 400, boxoffice.EVALIDATION, "body"},
		{"trailing whitespace is fine", hold(holdBody + "\n\t "), false, 201, "", ""},
		{"wrong type", hold(`{"tier_id":"ga","quantity":"2"}`), false, 400, boxoffice.EVALIDATION, "quantity"},
		{"wrong nested type", hold(`{"tier_id":"ga","quantity":2,"buyer":{"email":7}}`), false, 400, boxoffice.EVALIDATION, "buyer.email"},
		{"fraction", hold(`{"tier_id":"ga","quantity":1.5}`), false, 400, boxoffice.EVALIDATION, "quantity"},
		{"overflow", hold(`{"tier_id":"ga","quantity":1e100}`), false, 400, boxoffice.EVALIDATION, "quantity"},
		{"array body", hold(`[]`), false, 400, boxoffice.EVALIDATION, "body"},
		{"syntax error", hold(`{"tier_id":`), false, 400, boxoffice.EVALIDATION, "body"},
		// encoding/json takes the last of two equal keys and matches names case-insensitively:
		// each of these would decode like another request.
		{"duplicate key", hold(`{"tier_id":"ga","quantity":1,"quantity":2,"buyer":{"email":"a@b.c"}}`), false, 400, boxoffice.EVALIDATION, "quantity"},
		{"key in another case", hold(`{"tier_id":"ga","quantity":1,"QUANTITY":2,"buyer":{"email":"a@b.c"}}`), false, 400, boxoffice.EVALIDATION, "QUANTITY"},
		{"upper-case key alone", hold(`{"Tier_ID":"ga","quantity":1,"buyer":{"email":"a@b.c"}}`), false, 400, boxoffice.EVALIDATION, "Tier_ID"},
		{"kelvin sign", hold("{\"tier_id\":\"ga\",\"quantity\":1,\"buyer\":{\"email\":\"a@b.c\"},\"\u212a\":1}"), false, 400, boxoffice.EVALIDATION, "\u212a"},
		{"duplicate nested key", hold(`{"tier_id":"ga","quantity":1,"buyer":{"email":"a@b.c","email":"z@b.c"}}`), false, 400, boxoffice.EVALIDATION, "email"},
		{"invalid UTF-8", hold("{\"tier_id\":\"ga\",\"quantity\":1,\"buyer\":{\"email\":\"a\xff@b.c\"}}"), false, 400, boxoffice.EVALIDATION, "body"},
		{"equal keys in sibling objects", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: `{"name":"G","starts_at":"2027-01-01T20:00:00Z","tiers":[{"id":"a","name":"A","capacity":1,"price":{"amount":1,"currency":"EUR"}},{"id":"b","name":"B","capacity":1,"price":{"amount":1,"currency":"EUR"}}]}`}, false, 200, "", ""},
		{"bad syntax", hold(`{tier_id:1}`), false, 400, boxoffice.EVALIDATION, "body"},
		{"show tier capacity type", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: `{"name":"G","tiers":[{"id":"ga","capacity":"many"}]}`}, false, 400, boxoffice.EVALIDATION, "tiers.capacity"},
		{"show starts_at", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: `{"name":"G","starts_at":"tomorrow"}`}, false, 400, boxoffice.EVALIDATION, "starts_at"},
		{"show starts_at number", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: `{"name":"G","starts_at":5}`}, false, 400, boxoffice.EVALIDATION, "starts_at"},
		{"show empty body", req{method: "PUT", path: "/v1/shows/gala", key: adminKey}, false, 400, boxoffice.EVALIDATION, "body"},
		{"show text/plain", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, ctype: "text/plain", body: `{}`}, false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
		{"show too large", req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: big}, false, 413, boxoffice.EPAYLOADTOOLARGE, ""},
		{"cancel without body or type", req{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey, idem: []string{"k"}, ctype: "-"}, false, 201, "", ""},
		{"cancel with empty object", req{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey, idem: []string{"k"}, body: `{}`}, false, 201, "", ""},
		{"cancel with a field", req{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey, idem: []string{"k"}, body: `{"reason":"x"}`}, false, 400, boxoffice.EVALIDATION, "reason"},
		{"cancel with text body", req{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey, idem: []string{"k"}, ctype: "text/plain", body: `please`}, false, 415, boxoffice.EUNSUPPORTEDMEDIA, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			var w *httptest.ResponseRecorder
			if c.chunk {
				r := httptest.NewRequest(c.r.method, c.r.path, struct{ *strings.Reader }{strings.NewReader(c.r.body)})
				r.ContentLength = -1
				r.Header.Set("Authorization", "Bearer "+c.r.key)
				r.Header.Set("Idempotency-Key", "k")
				if c.r.ctype != "-" {
					r.Header.Set("Content-Type", "application/json")
				}
				w = httptest.NewRecorder()
				h.ServeHTTP(w, r)
			} else {
				w = serve(t, h, c.r)
			}
			if c.code == "" {
				if w.Code != c.status {
					t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
				}
				return
			}
			p := decodeProblem(t, w, c.status, c.code)
			if c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field || p.Errors[0].Message == "") {
				t.Errorf("errors = %+v, want field %q", p.Errors, c.field)
			}
			if len(f.called()) != 0 {
				t.Errorf("service called: %v", f.called())
			}
		})
	}
}

func TestDecodedInputReachesService(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	w := serve(t, h, req{method: "POST", path: "/v1/shows/gala/holds", key: clientKey, idem: []string{"k1"}, body: holdBody})
	if w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	in := f.lastIn.(sale.HoldInput)
	if in.ShowID != "gala" || in.TierID != "ga" || in.Quantity != 2 || in.Buyer.Email != "a@example.com" {
		t.Errorf("input = %+v", in)
	}
	if f.lastIdem.Scope != "key_c POST /v1/shows/{show_id}/holds" {
		t.Errorf("scope = %q", f.lastIdem.Scope)
	}
	want, _ := sale.NewIdem("key_c", "POST /v1/shows/{show_id}/holds", "/v1/shows/gala/holds", "k1", in)
	if f.lastIdem != want {
		t.Errorf("idempotency context = %+v, want %+v", f.lastIdem, want)
	}

	serve(t, h, req{method: "POST", path: "/v1/holds/hld_abc/confirm", key: adminKey, idem: []string{"k1"}, body: `{"payment":{"token":"tok_ok"}}`})
	if f.lastIdem.Scope != "admin POST /v1/holds/{hold_id}/confirm" || f.lastArgs[0] != "hld_abc" {
		t.Errorf("confirm: scope %q args %v", f.lastIdem.Scope, f.lastArgs)
	}
	if in := f.lastIn.(sale.ConfirmInput); in.Payment.Token != "tok_ok" {
		t.Errorf("confirm input = %+v", in)
	}
}

func TestReplayedResponsesPassThrough(t *testing.T) {
	// Deliberately not what the renderer would write today: the bytes stored are the bytes sent.
	stored := []*boxoffice.Response{
		{Status: 201, Body: []byte("{\"id\":\"hld_1\",  \"z\":1,\"a\":[ ]}\n"), Location: "/v1/holds/hld_1"},
		{Status: 202, Body: []byte(`{"id":"ord_1","status":"pending_payment"}`), Location: "/v1/orders/ord_1"},
		{Status: 409, Body: []byte(`{"type":"urn:boxoffice:problem:sold_out","code":"sold_out","available":0}`)},
		{Status: 402, Body: []byte(`{"code":"payment_declined"}`)},
	}
	for _, resp := range stored {
		for _, replayed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/replayed=%v", resp.Status, replayed), func(t *testing.T) {
				f := &fakeService{idemResult: func(string) (*boxoffice.Response, bool, error) { return resp, replayed, nil }}
				h, _ := newTestHandler(f, 0)
				w := serve(t, h, req{method: "POST", path: "/v1/purchases", key: clientKey, idem: []string{"k"}, body: `{}`})
				if w.Code != resp.Status || !bytes.Equal(w.Body.Bytes(), resp.Body) {
					t.Fatalf("got %d %q, want %d %q", w.Code, w.Body, resp.Status, resp.Body)
				}
				if got := w.Header().Get("Idempotent-Replayed"); (got == "true") != replayed || (!replayed && got != "") {
					t.Errorf("Idempotent-Replayed = %q", got)
				}
				if got := w.Header().Get("Location"); got != resp.Location {
					t.Errorf("Location = %q", got)
				}
				want := contentJSON
				if resp.Status >= 400 {
					want = contentProblem
				}
				if got := w.Header().Get("Content-Type"); got != want {
					t.Errorf("Content-Type = %q", got)
				}
				if w.Header().Get("Retry-After") != "" {
					t.Errorf("a stored answer has no Retry-After")
				}
			})
		}
	}
}

// TestFingerprint: the fingerprint is of what a request asks for — the operation, the path and
// the decoded input — not of its bytes.
func TestFingerprint(t *testing.T) {
	fp := func(op, path string, in any) string {
		t.Helper()
		id, err := sale.NewIdem("key_c", op, path, "k", in)
		if err != nil {
			t.Fatal(err)
		}
		if len(id.Fingerprint) != 64 || id.Scope != "key_c "+op {
			t.Fatalf("idem = %+v", id)
		}
		return id.Fingerprint
	}
	in := sale.PurchaseInput{ShowID: "gala", TierID: "ga", Quantity: 2, Buyer: sale.BuyerInput{Email: "a@b.c"}}
	base := fp("POST /v1/purchases", "/v1/purchases", in)
	other := in
	other.Quantity = 3
	nested := in
	nested.Buyer.Email = "b@b.c"
	for name, got := range map[string]string{
		"value":     fp("POST /v1/purchases", "/v1/purchases", other),
		"nested":    fp("POST /v1/purchases", "/v1/purchases", nested),
		"path":      fp("POST /v1/purchases", "/v1/purchases/x", in),
		"operation": fp("POST /v1/shows/{show_id}/holds", "/v1/purchases", in),
	} {
		if got == base {
			t.Errorf("%s: fingerprint equal", name)
		}
	}
	if fp("POST /v1/purchases", "/v1/purchases", in) != base {
		t.Error("the same request fingerprints differently")
	}
}

func TestFingerprintThroughHandler(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	send := func(path, body string) string {
		w := serve(t, h, req{method: "POST", path: path, key: clientKey, idem: []string{"k"}, body: body})
		if w.Code != 201 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		return f.lastIdem.Fingerprint
	}
	a := send("/v1/shows/gala/holds", `{"tier_id":"ga","quantity":2}`)
	for _, same := range []string{
		"{ \"quantity\": 2,\n \"tier_id\": \"ga\" }",
		`{"tier_id":"\u0067a","quantity":2}`,
		`{"tier_id":"ga","quantity":2,"buyer":{}}`, // decodes alike: the same request
	} {
		if b := send("/v1/shows/gala/holds", same); a != b {
			t.Errorf("%s: fingerprint differs from the same request's", same)
		}
	}
	if b := send("/v1/shows/gala/holds", `{"tier_id":"ga","quantity":3}`); a == b {
		t.Errorf("different value, same fingerprint")
	}
	if b := send("/v1/shows/other/holds", `{"tier_id":"ga","quantity":2}`); a == b {
		t.Errorf("different path, same fingerprint")
	}
}

func TestRoutingProblems(t *testing.T) {
	cases := []struct {
		r      req
		status int
		code   string
		allow  string
	}{
		{req{method: "GET", path: "/nope"}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/nope", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/shows/gala/extra", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/shows/Not_Valid", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/holds/ord_1", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/holds/hld_", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "DELETE", path: "/v1/holds/xyz", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "GET", path: "/v1/orders/hld_1", key: clientKey}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "POST", path: "/v1/orders/x/cancel", key: clientKey, idem: []string{"k"}}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "POST", path: "/v1/holds/x/confirm", key: clientKey, idem: []string{"k"}, body: `{}`}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "POST", path: "/v1/shows/BAD/holds", key: clientKey, idem: []string{"k"}, body: `{}`}, 404, boxoffice.ENOTFOUND, ""},
		{req{method: "DELETE", path: "/v1/shows/gala", key: adminKey}, 405, boxoffice.EMETHODNOTALLOWED, "GET, HEAD, PUT"},
		{req{method: "POST", path: "/healthz"}, 405, boxoffice.EMETHODNOTALLOWED, "GET, HEAD"},
		{req{method: "PATCH", path: "/v1/holds/hld_1", key: clientKey}, 405, boxoffice.EMETHODNOTALLOWED, "DELETE, GET, HEAD"},
		{req{method: "GET", path: "/v1/purchases", key: clientKey}, 405, boxoffice.EMETHODNOTALLOWED, "POST"},
		{req{method: "PUT", path: "/v1/shows/BAD", key: adminKey, body: `{}`}, 400, boxoffice.EVALIDATION, ""},
		{req{method: "GET", path: "/v1/orders?show_id=BAD", key: clientKey}, 400, boxoffice.EVALIDATION, ""},
	}
	for _, c := range cases {
		t.Run(c.r.method+" "+c.r.path, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			w := serve(t, h, c.r)
			decodeProblem(t, w, c.status, c.code)
			if got := w.Header().Get("Allow"); got != c.allow {
				t.Errorf("Allow = %q, want %q", got, c.allow)
			}
			if len(f.called()) != 0 {
				t.Errorf("service called: %v", f.called())
			}
		})
	}
}

func TestReadEndpoints(t *testing.T) {
	t.Run("put show created then replaced", func(t *testing.T) {
		f := &fakeService{putCreated: true}
		h, _ := newTestHandler(f, 0)
		body := `{"name":"Gala","starts_at":"2030-01-01T20:00:00Z","tiers":[{"id":"ga","name":"GA","capacity":100,"price":{"amount":5000,"currency":"EUR"}}]}`
		w := serve(t, h, req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: body})
		if w.Code != 201 || w.Header().Get("Location") != "/v1/shows/gala" || !strings.Contains(w.Body.String(), `"id":"gala"`) {
			t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
		}
		in := f.lastIn.(sale.ShowInput)
		if in.Name != "Gala" || len(in.Tiers) != 1 || *in.Tiers[0].Capacity != 100 || in.StartsAt == nil {
			t.Errorf("input = %+v", in)
		}
		f.putCreated = false
		if w := serve(t, h, req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: body}); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("put show capacity conflict", func(t *testing.T) {
		f := &fakeService{read: func(string) error { return boxoffice.Errorf(boxoffice.ECAPACITYCONFLICT, "below sold") }}
		h, _ := newTestHandler(f, 0)
		decodeProblem(t, serve(t, h, req{method: "PUT", path: "/v1/shows/gala", key: adminKey, body: `{}`}), 409, boxoffice.ECAPACITYCONFLICT)
	})
	t.Run("release is 204 without body", func(t *testing.T) {
		f := &fakeService{}
		h, _ := newTestHandler(f, 0)
		w := serve(t, h, req{method: "DELETE", path: "/v1/holds/hld_1", key: clientKey})
		if w.Code != 204 || w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
			t.Fatalf("%d %v %q", w.Code, w.Header(), w.Body)
		}
	})
	t.Run("release confirmed", func(t *testing.T) {
		f := &fakeService{read: func(string) error { return boxoffice.Errorf(boxoffice.EHOLDCONFIRMED, "confirmed") }}
		h, _ := newTestHandler(f, 0)
		decodeProblem(t, serve(t, h, req{method: "DELETE", path: "/v1/holds/hld_1", key: clientKey}), 409, boxoffice.EHOLDCONFIRMED)
	})
	t.Run("get hold, order, show", func(t *testing.T) {
		f := &fakeService{}
		h, _ := newTestHandler(f, 0)
		for path, id := range map[string]string{"/v1/holds/hld_9": "hld_9", "/v1/orders/ord_9": "ord_9", "/v1/shows/gala": "gala"} {
			w := serve(t, h, req{method: "GET", path: path, key: clientKey})
			if w.Code != 200 || w.Header().Get("Content-Type") != contentJSON || !strings.Contains(w.Body.String(), `"id":"`+id+`"`) {
				t.Errorf("%s: %d %s", path, w.Code, w.Body)
			}
		}
	})
	t.Run("healthz and readyz", func(t *testing.T) {
		f := &fakeService{}
		h, log := newTestHandler(f, 0)
		if w := serve(t, h, req{method: "GET", path: "/healthz"}); w.Code != 200 || w.Body.String() != "{\"status\":\"ok\"}\n" {
			t.Errorf("healthz %d %q", w.Code, w.Body)
		}
		if w := serve(t, h, req{method: "GET", path: "/readyz"}); w.Code != 200 {
			t.Errorf("readyz %d", w.Code)
		}
		f.ready = errors.New("sqlite: disk I/O error")
		w := serve(t, h, req{method: "GET", path: "/readyz"})
		decodeProblem(t, w, 503, codeNotReady)
		if strings.Contains(w.Body.String(), "disk") || !strings.Contains(log.String(), "disk I/O") {
			t.Errorf("body %s, log %s", w.Body, log)
		}
		// A reason the service gives is shown; its cause, which may name files, is not.
		f.ready = &boxoffice.NotReadyError{Reason: "the store does not commit writes", Err: errors.New("write /data/boxoffice.db-wal: no space left on device")}
		w = serve(t, h, req{method: "GET", path: "/readyz"})
		decodeProblem(t, w, 503, codeNotReady)
		if !strings.Contains(w.Body.String(), "not ready: the store does not commit writes") || strings.Contains(w.Body.String(), "boxoffice.db") {
			t.Errorf("body %s", w.Body)
		}
	})
}

func TestPages(t *testing.T) {
	cases := []struct {
		path      string
		status    int
		wantLimit int
		wantAfter string
	}{
		{"/v1/shows", 200, 20, ""},
		{"/v1/shows?limit=1&after=gala", 200, 1, "gala"},
		{"/v1/shows?limit=100", 200, 100, ""},
		{"/v1/shows?limit=", 200, 20, ""},
		{"/v1/shows?limit=0", 400, 0, ""},
		{"/v1/shows?limit=101", 400, 0, ""},
		{"/v1/shows?limit=-1", 400, 0, ""},
		{"/v1/shows?limit=ten", 400, 0, ""},
		{"/v1/shows?limit=1e1", 400, 0, ""},
		{"/v1/orders?limit=0", 400, 0, ""},
		{"/v1/feed?limit=500", 400, 0, ""},
		{"/v1/orders?show_id=gala&limit=5&after=ord_1", 200, 5, "ord_1"},
		{"/v1/feed?after=17", 200, 20, "17"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			key := clientKey
			if strings.HasPrefix(c.path, "/v1/feed") {
				key = adminKey // the feed is the admin's
			}
			w := serve(t, h, req{method: "GET", path: c.path, key: key})
			if c.status == 400 {
				p := decodeProblem(t, w, 400, boxoffice.EVALIDATION)
				if len(p.Errors) != 1 || p.Errors[0].Field != "limit" {
					t.Errorf("errors = %+v", p.Errors)
				}
				return
			}
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			args := f.lastArgs
			if slices.Contains(f.called(), "ListOrders") {
				if args[0] != "gala" {
					t.Errorf("show filter %v", args[0])
				}
				args = args[1:]
			}
			if args[0] != c.wantAfter || args[1] != c.wantLimit {
				t.Errorf("after, limit = %v, want %q %d", args, c.wantAfter, c.wantLimit)
			}
		})
	}

	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	if w := serve(t, h, req{method: "GET", path: "/v1/shows", key: clientKey}); w.Body.String() != "{\"data\":[],\"next\":null}\n" {
		t.Errorf("empty last page = %s", w.Body)
	}
	f.showsNext = "gala"
	if w := serve(t, h, req{method: "GET", path: "/v1/shows", key: clientKey}); w.Body.String() != "{\"data\":[],\"next\":\"gala\"}\n" {
		t.Errorf("page with next = %s", w.Body)
	}
	w := serve(t, h, req{method: "GET", path: "/v1/feed", key: adminKey})
	var feed struct {
		Data []map[string]any `json:"data"`
		Next *string          `json:"next"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &feed); err != nil || len(feed.Data) != 1 || feed.Next == nil || *feed.Next != "42" {
		t.Fatalf("feed %s: %v", w.Body, err)
	}
	for _, k := range []string{"id", "type", "created_at", "data"} {
		if _, ok := feed.Data[0][k]; !ok {
			t.Errorf("event lacks %q: %s", k, w.Body)
		}
	}
}

func TestOverloadSheds(t *testing.T) {
	const slots = 2
	entered := make(chan struct{}, slots)
	release := make(chan struct{})
	f := &fakeService{read: func(name string) error {
		if name == "GetShow" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second): // never hang the test run
			}
		}
		return nil
	}}
	h, _ := newTestHandler(f, slots)

	var wg sync.WaitGroup
	codes := make(chan int, slots)
	for range slots {
		wg.Go(func() {
			codes <- serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey}).Code
		})
	}
	for range slots {
		waitFor(t, entered, 5*time.Second, "a request to fill a slot")
	}

	start := time.Now()
	w := serve(t, h, req{method: "POST", path: "/v1/purchases", key: clientKey, idem: []string{"k"}, body: `{}`})
	decodeProblem(t, w, 503, boxoffice.EOVERLOADED)
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q", w.Header().Get("Retry-After"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("shedding took %v: it queued", d)
	}
	if slices.Contains(f.called(), "Purchase") {
		t.Errorf("a shed request reached the service")
	}
	// Health checks are not under /v1 and must answer while the API is saturated.
	if w := serve(t, h, req{method: "GET", path: "/healthz"}); w.Code != 200 {
		t.Errorf("healthz while overloaded: %d", w.Code)
	}

	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("admitted request got %d", c)
		}
	}
	// Slots are given back.
	if w := serve(t, h, req{method: "GET", path: "/v1/shows/other", key: clientKey}); w.Code != 200 {
		t.Errorf("after the burst: %d", w.Code)
	}
}

func TestPanicRecovery(t *testing.T) {
	f := &fakeService{read: func(string) error { panic("boom: secret=hunter2") }}
	h, log := newTestHandler(f, 1)
	w := serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey})
	decodeProblem(t, w, 500, boxoffice.EINTERNAL)
	if strings.Contains(w.Body.String(), "hunter2") || strings.Contains(w.Body.String(), "boom") {
		t.Errorf("panic leaked: %s", w.Body)
	}
	if !strings.Contains(log.String(), "hunter2") || !strings.Contains(log.String(), "goroutine") {
		t.Errorf("panic not logged with a stack: %s", log)
	}
	// The panic gave its in-flight slot back (MaxInFlight is 1).
	f.read = nil
	if w := serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey}); w.Code != 200 {
		t.Errorf("after a panic: %d %s", w.Code, w.Body)
	}
}

func TestMetrics(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	serve(t, h, req{method: "GET", path: "/v1/shows/gala", key: clientKey})
	serve(t, h, req{method: "GET", path: "/v1/shows/gala"})
	serve(t, h, req{method: "GET", path: "/nowhere"})
	w := serve(t, h, req{method: "GET", path: "/metrics"})
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	body := w.Body.String()
	for _, want := range []string{
		`boxoffice_http_requests_total{code="200",route="GET /v1/shows/{show_id}"} 1`,
		`boxoffice_http_requests_total{code="401",route="GET /v1/shows/{show_id}"} 1`,
		`boxoffice_http_requests_total{code="404",route="/"} 1`,
		`boxoffice_http_request_duration_seconds_count{route="GET /v1/shows/{show_id}"} 2`,
		`boxoffice_http_requests_in_flight 1`, // the /metrics request itself
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHandlersShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &fakeService{}
	h1 := NewHandler(f, Options{Registry: reg})
	h2 := NewHandler(f, Options{Registry: reg}) // shares the collectors instead of panicking
	serve(t, h1, req{method: "GET", path: "/healthz"})
	serve(t, h2, req{method: "GET", path: "/healthz"})
	w := serve(t, h2, req{method: "GET", path: "/metrics"})
	if !strings.Contains(w.Body.String(), `boxoffice_http_requests_total{code="200",route="GET /healthz"} 2`) {
		t.Errorf("metrics:\n%s", w.Body)
	}
	if strings.Contains(w.Body.String(), "go_goroutines") {
		t.Errorf("a given registry got the runtime collectors added")
	}
}

// TestNoMetrics: with the metrics served on a listener of their own, the API port answers /metrics
// like any unknown path, and the registry still gets the HTTP metrics.
func TestNoMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandler(&fakeService{}, Options{Registry: reg, NoMetrics: true})
	if w := serve(t, h, req{method: "GET", path: "/metrics"}); w.Code != 404 || !strings.Contains(w.Body.String(), "not_found") {
		t.Errorf("GET /metrics with NoMetrics: %d %s", w.Code, w.Body)
	}
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `boxoffice_http_requests_total{code="404",route="/"} 1`) {
		t.Errorf("the registry served elsewhere lacks the API's requests:\n%s", rec.Body)
	}
}

func TestRendererResource(t *testing.T) {
	r := Renderer{}.Resource(201, map[string]any{"b": "<x>", "a": 1}, "/v1/x")
	if r.Status != 201 || r.Location != "/v1/x" || string(r.Body) != "{\"a\":1,\"b\":\"<x>\"}\n" {
		t.Errorf("%+v %s", r, r.Body)
	}
	if r := (Renderer{}).Resource(204, map[string]any{}, ""); r.Body != nil {
		t.Errorf("204 body %s", r.Body)
	}
	if r := (Renderer{}).Resource(200, func() {}, ""); r.Status != 500 {
		t.Errorf("unencodable value gave %d", r.Status)
	}
	// Rendering is deterministic: a stored problem equals a fresh one.
	e := boxoffice.Validation(boxoffice.FieldError{Field: "a", Message: "b"})
	if !bytes.Equal(Renderer{}.Problem(e).Body, Renderer{}.Problem(e).Body) {
		t.Errorf("problem rendering not deterministic")
	}
}

// TestOverRealHTTP runs a few answers through a real server and client, where the connection
// handling of net/http (body limits, HEAD, Content-Length) takes part.
func TestOverRealHTTP(t *testing.T) {
	h, _ := newTestHandler(&fakeService{}, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	client.Timeout = 5 * time.Second

	big := strings.NewReader(`{"tier_id":"` + strings.Repeat("x", 2*maxBodyBytes) + `"}`)
	r, _ := http.NewRequest("POST", srv.URL+"/v1/shows/gala/holds", struct{ *strings.Reader }{big}) // chunked
	r.Header.Set("Authorization", "Bearer "+clientKey)
	r.Header.Set("Idempotency-Key", "k")
	r.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != contentProblem {
		t.Errorf("big chunked body: %d %v", resp.StatusCode, resp.Header)
	}

	resp, err = client.Head(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /healthz: %d", resp.StatusCode)
	}

	resp, err = client.Get(srv.URL + "/v1/holds/hld_1/confirm")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || resp.Header.Get("Content-Type") != contentProblem {
		t.Errorf("GET confirm: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestCallerReachesTheService: every hold and order operation hands the service the caller, which
// is what lets the service keep one sales channel from another's objects.
func TestCallerReachesTheService(t *testing.T) {
	for _, r := range []req{
		{method: "GET", path: "/v1/holds/hld_1"},
		{method: "DELETE", path: "/v1/holds/hld_1"},
		{method: "POST", path: "/v1/holds/hld_1/confirm", idem: []string{"k"}, body: `{"payment":{"token":"tok_ok"}}`},
		{method: "POST", path: "/v1/shows/gala/holds", idem: []string{"k"}, body: `{}`},
		{method: "POST", path: "/v1/purchases", idem: []string{"k"}, body: `{}`},
		{method: "GET", path: "/v1/orders/ord_1"},
		{method: "GET", path: "/v1/orders"},
		{method: "POST", path: "/v1/orders/ord_1/cancel", idem: []string{"k"}},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			f := &fakeService{}
			h, _ := newTestHandler(f, 0)
			r.key = clientKey
			if w := serve(t, h, r); w.Code >= 300 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if f.lastCaller == nil || f.lastCaller.KeyID != "key_c" || f.lastCaller.Role != boxoffice.RoleClient {
				t.Errorf("caller = %+v; want the client key's", f.lastCaller)
			}
		})
	}
}

// TestAPIKeyList: the list is a page like the others and never shows a key's hash.
func TestAPIKeyList(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	w := serve(t, h, req{method: "GET", path: "/v1/api-keys?limit=5&after=key_0", key: adminKey})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "secret-hash") || strings.Contains(w.Body.String(), "hash") {
		t.Errorf("the list shows a hash: %s", w.Body)
	}
	if want := `{"data":[{"id":"key_1","role":"client","created_at":"0001-01-01T00:00:00Z","last_used_at":null}],"next":null}` + "\n"; w.Body.String() != want {
		t.Errorf("body = %s; want %s", w.Body, want)
	}
	if got := f.lastArgs; len(got) != 2 || got[0] != "key_0" || got[1] != 5 {
		t.Errorf("after, limit = %v; want key_0 5", got)
	}
	if w := serve(t, h, req{method: "DELETE", path: "/v1/api-keys/admin", key: adminKey}); w.Code != 404 {
		t.Errorf("revoke of a non-key id = %d; want 404", w.Code)
	}
}

// failingBody is a request body whose read fails midway, as a reset or a read timeout does.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"tier_id":`), nil
	}
	return 0, errors.New("read tcp: i/o timeout")
}

// TestFailedBodyReadIsAProblem: when reading the body fails (and the server has cancelled the
// request's context, as net/http does on a broken connection), the answer is still a 400 problem,
// never an empty 200.
func TestFailedBodyReadIsAProblem(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	hr := httptest.NewRequest("POST", "/v1/shows/gala/holds", &failingBody{}).WithContext(ctx)
	hr.ContentLength = 200
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+clientKey)
	hr.Header.Set("Idempotency-Key", "k1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	decodeProblem(t, w, 400, boxoffice.EVALIDATION)
	if got := f.called(); len(got) != 0 {
		t.Errorf("the service was called: %v", got)
	}
}

// TestAnswersAreNotCached: API answers, some of which carry secrets (a new API key, a webhook
// signing secret), tell every cache on the way not to keep them; errors too.
func TestAnswersAreNotCached(t *testing.T) {
	f := &fakeService{}
	h, _ := newTestHandler(f, 0)
	for _, r := range []req{
		{method: "POST", path: "/v1/api-keys", key: adminKey, idem: []string{"k1"}, body: `{"role":"client"}`},
		{method: "GET", path: "/v1/webhook-endpoints/partner", key: adminKey},
		{method: "GET", path: "/v1/shows/gala", key: clientKey},
		{method: "GET", path: "/v1/shows/gala"}, // 401
	} {
		if w := serve(t, h, r); w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: %d with Cache-Control %q, want no-store", r.method, r.path, w.Code, w.Header().Get("Cache-Control"))
		}
	}
}
