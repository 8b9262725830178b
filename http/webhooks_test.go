package http

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"boxoffice"
)

// fakeDLQ is a dead-letter queue in memory: a replay removes the letter unless fail is set.
type fakeDLQ struct {
	mu      sync.Mutex
	letters []boxoffice.DeadLetter
	fail    error
}

func (q *fakeDLQ) ListDeadLetters(_ context.Context, limit int) ([]boxoffice.DeadLetter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]boxoffice.DeadLetter(nil), q.letters[:min(limit, len(q.letters))]...), nil
}

func (q *fakeDLQ) ReplayDeadLetter(_ context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	for i, l := range q.letters {
		if l.ID == id {
			q.letters = append(q.letters[:i], q.letters[i+1:]...)
			return nil
		}
	}
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "dead letter %s not found", id)
}

func (q *fakeDLQ) ReplayAllDeadLetters(context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.letters)
	q.letters = nil
	return n, nil
}

func TestWebhookRoutes(t *testing.T) {
	f := &fakeService{putCreated: true}
	h, _ := newTestHandler(f, 0)
	body := `{"url":"https://partner.example/hook","event_types":["order.confirmed"]}`

	w := serve(t, h, req{method: "PUT", path: "/v1/webhook-endpoints/partner", key: adminKey, body: body})
	if w.Code != 201 || w.Header().Get("Location") != "/v1/webhook-endpoints/partner" {
		t.Fatalf("create: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	var got boxoffice.WebhookEndpoint
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.ID != "partner" || got.Secret == "" {
		t.Fatalf("create body %s: %v", w.Body, err)
	}
	f.putCreated = false
	if w := serve(t, h, req{method: "PUT", path: "/v1/webhook-endpoints/partner", key: adminKey, body: body}); w.Code != 200 {
		t.Fatalf("replace: %d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"bad id on put", req{method: "PUT", path: "/v1/webhook-endpoints/Bad!", key: adminKey, body: body}, 400, boxoffice.EVALIDATION},
		{"unknown field", req{method: "PUT", path: "/v1/webhook-endpoints/partner", key: adminKey, body: `{"url":"https://x.example","events":[]}`}, 400, boxoffice.EVALIDATION},
		{"bad id on get", req{method: "GET", path: "/v1/webhook-endpoints/Bad!", key: adminKey}, 404, boxoffice.ENOTFOUND},
		{"client may not put", req{method: "PUT", path: "/v1/webhook-endpoints/partner", key: clientKey, body: body}, 403, boxoffice.EFORBIDDEN},
		{"client may not read secrets", req{method: "GET", path: "/v1/webhook-endpoints/partner", key: clientKey}, 403, boxoffice.EFORBIDDEN},
		{"client may not list", req{method: "GET", path: "/v1/webhook-endpoints", key: clientKey}, 403, boxoffice.EFORBIDDEN},
		{"post is not allowed", req{method: "POST", path: "/v1/webhook-endpoints/partner", key: adminKey, idem: []string{"k"}, body: body}, 405, boxoffice.EMETHODNOTALLOWED},
	} {
		t.Run(c.name, func(t *testing.T) { decodeProblem(t, serve(t, h, c.r), c.status, c.code) })
	}
	if w := serve(t, h, req{method: "GET", path: "/v1/webhook-endpoints/partner", key: adminKey}); w.Code != 200 {
		t.Errorf("get: %d %s", w.Code, w.Body)
	}
	if w := serve(t, h, req{method: "GET", path: "/v1/webhook-endpoints", key: adminKey}); w.Code != 200 || !strings.Contains(w.Body.String(), `"data":[]`) {
		t.Errorf("list: %d %s", w.Code, w.Body)
	}
	if w := serve(t, h, req{method: "DELETE", path: "/v1/webhook-endpoints/partner", key: adminKey}); w.Code != 204 {
		t.Errorf("delete: %d %s", w.Code, w.Body)
	}
}

func TestDeadLetterRoutes(t *testing.T) {
	q := &fakeDLQ{letters: []boxoffice.DeadLetter{
		{ID: "1", Consumer: "email", EventID: "evt_1", Error: "smtp: 451", Attempts: 10},
		{ID: "2", Consumer: "email", EventID: "evt_2", Error: "smtp: 451", Attempts: 10},
		{ID: "3", Consumer: "email", EventID: "evt_3", Error: "smtp: 451", Attempts: 10},
	}}
	f := &fakeService{}
	h := NewHandler(f, Options{Logger: slog.New(slog.DiscardHandler), DeadLetters: q})

	w := serve(t, h, req{method: "GET", path: "/v1/dead-letters?limit=2", key: adminKey})
	var page struct {
		Data []boxoffice.DeadLetter `json:"data"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); w.Code != 200 || err != nil || len(page.Data) != 2 || page.Data[0].EventID != "evt_1" {
		t.Fatalf("list: %d %s (%v)", w.Code, w.Body, err)
	}
	decodeProblem(t, serve(t, h, req{method: "GET", path: "/v1/dead-letters?limit=0", key: adminKey}), 400, boxoffice.EVALIDATION)
	decodeProblem(t, serve(t, h, req{method: "GET", path: "/v1/dead-letters", key: clientKey}), 403, boxoffice.EFORBIDDEN)
	decodeProblem(t, serve(t, h, req{method: "POST", path: "/v1/dead-letters/1/replay", key: adminKey}), 400, boxoffice.EIDEMMISSING)
	decodeProblem(t, serve(t, h, req{method: "POST", path: "/v1/dead-letters/x1/replay", key: adminKey, idem: []string{"a"}}), 404, boxoffice.ENOTFOUND)
	if len(q.letters) != 3 {
		t.Fatalf("a refused request replayed something: %d left", len(q.letters))
	}

	w = serve(t, h, req{method: "POST", path: "/v1/dead-letters/2/replay", key: adminKey, idem: []string{"b"}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"replayed":1`) {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
	decodeProblem(t, serve(t, h, req{method: "POST", path: "/v1/dead-letters/2/replay", key: adminKey, idem: []string{"c"}}), 404, boxoffice.ENOTFOUND)
	w = serve(t, h, req{method: "POST", path: "/v1/dead-letters/replay", key: adminKey, idem: []string{"d"}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"replayed":2`) || len(q.letters) != 0 {
		t.Fatalf("replay all: %d %s, %d left", w.Code, w.Body, len(q.letters))
	}

	t.Run("without an async side", func(t *testing.T) {
		h, _ := newTestHandler(&fakeService{}, 0)
		decodeProblem(t, serve(t, h, req{method: "GET", path: "/v1/dead-letters", key: adminKey}), 404, boxoffice.ENOTFOUND)
	})
}
