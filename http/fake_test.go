package http

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/syncbuf"
	"boxoffice/sale"
)

// Keys the fake knows.
const (
	adminKey  = "sk_admin"
	clientKey = "sk_client"
)

// fakeService answers every call with a small fixed outcome unless a test sets the matching
// function, and remembers the last call so tests can see what the transport passed on.
type fakeService struct {
	mu       sync.Mutex
	calls    []string
	lastIdem sale.Idem
	lastIn   any
	lastArgs []any
	// lastCaller is the principal the transport passed with the last call that takes one.
	lastCaller *boxoffice.Principal

	authErr    error
	idemResult func(name string) (*boxoffice.Response, bool, error)
	read       func(name string) error // error for the read/non-idempotent calls
	putCreated bool
	showsNext  string
	ready      error
}

var _ Service = (*fakeService)(nil)

func (f *fakeService) record(name string, idem sale.Idem, in any, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.lastIdem, f.lastIn, f.lastArgs = idem, in, args
}

// caller records the principal of a call.
func (f *fakeService) caller(p *boxoffice.Principal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCaller = p
}

func (f *fakeService) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeService) post(name string, idem sale.Idem, in any, args ...any) (*boxoffice.Response, bool, error) {
	f.record(name, idem, in, args...)
	if f.idemResult != nil {
		return f.idemResult(name)
	}
	return Renderer{}.Resource(http.StatusCreated, map[string]string{"op": name}, ""), false, nil
}

func (f *fakeService) readErr(name string) error {
	if f.read != nil {
		return f.read(name)
	}
	return nil
}

func (f *fakeService) Authenticate(_ context.Context, key string) (*boxoffice.Principal, error) {
	if f.authErr != nil {
		return nil, f.authErr
	}
	switch key {
	case adminKey:
		return &boxoffice.Principal{KeyID: "admin", Role: boxoffice.RoleAdmin}, nil
	case clientKey:
		return &boxoffice.Principal{KeyID: "key_c", Role: boxoffice.RoleClient}, nil
	}
	return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "unknown key")
}

func (f *fakeService) CreateAPIKey(_ context.Context, idem sale.Idem, in sale.APIKeyInput) (*boxoffice.Response, bool, error) {
	return f.post("CreateAPIKey", idem, in)
}

func (f *fakeService) ListAPIKeys(_ context.Context, after string, limit int) ([]*boxoffice.APIKey, string, error) {
	f.record("ListAPIKeys", sale.Idem{}, nil, after, limit)
	if err := f.readErr("ListAPIKeys"); err != nil {
		return nil, "", err
	}
	return []*boxoffice.APIKey{{ID: "key_1", Role: boxoffice.RoleClient, Hash: "secret-hash"}}, "", nil
}

func (f *fakeService) RevokeAPIKey(_ context.Context, id string) error {
	f.record("RevokeAPIKey", sale.Idem{}, nil, id)
	return f.readErr("RevokeAPIKey")
}

func (f *fakeService) RotateWebhookSecret(_ context.Context, idem sale.Idem, id string, in sale.RotateSecretInput) (*boxoffice.Response, bool, error) {
	return f.post("RotateWebhookSecret", idem, in, id)
}

func (f *fakeService) PutShow(_ context.Context, id string, in sale.ShowInput) (*boxoffice.Show, bool, error) {
	f.record("PutShow", sale.Idem{}, in, id)
	if err := f.readErr("PutShow"); err != nil {
		return nil, false, err
	}
	return &boxoffice.Show{ID: id, Name: in.Name}, f.putCreated, nil
}

func (f *fakeService) ShowSeats(_ context.Context, id string) ([]byte, string, error) {
	f.record("ShowSeats", sale.Idem{}, nil, id)
	if err := f.readErr("ShowSeats"); err != nil {
		return nil, "", err
	}
	return []byte(`{"show_id":"` + id + `","seats":[]}`), `"v1"`, nil
}

func (f *fakeService) GetShow(_ context.Context, id string) (*boxoffice.Show, error) {
	f.record("GetShow", sale.Idem{}, nil, id)
	if err := f.readErr("GetShow"); err != nil {
		return nil, err
	}
	return &boxoffice.Show{ID: id}, nil
}

func (f *fakeService) ListShows(_ context.Context, after string, limit int) ([]*boxoffice.Show, string, error) {
	f.record("ListShows", sale.Idem{}, nil, after, limit)
	if err := f.readErr("ListShows"); err != nil {
		return nil, "", err
	}
	return nil, f.showsNext, nil
}

func (f *fakeService) CreateHold(_ context.Context, p *boxoffice.Principal, idem sale.Idem, in sale.HoldInput) (*boxoffice.Response, bool, error) {
	f.caller(p)
	return f.post("CreateHold", idem, in)
}

func (f *fakeService) GetHold(_ context.Context, p *boxoffice.Principal, id string) (*boxoffice.Hold, error) {
	f.caller(p)
	f.record("GetHold", sale.Idem{}, nil, id)
	if err := f.readErr("GetHold"); err != nil {
		return nil, err
	}
	return &boxoffice.Hold{ID: id}, nil
}

func (f *fakeService) ReleaseHold(_ context.Context, p *boxoffice.Principal, id string) error {
	f.caller(p)
	f.record("ReleaseHold", sale.Idem{}, nil, id)
	return f.readErr("ReleaseHold")
}

func (f *fakeService) ConfirmHold(_ context.Context, p *boxoffice.Principal, idem sale.Idem, holdID string, in sale.ConfirmInput) (*boxoffice.Response, bool, error) {
	f.caller(p)
	return f.post("ConfirmHold", idem, in, holdID)
}

func (f *fakeService) Purchase(_ context.Context, p *boxoffice.Principal, idem sale.Idem, in sale.PurchaseInput) (*boxoffice.Response, bool, error) {
	f.caller(p)
	return f.post("Purchase", idem, in)
}

func (f *fakeService) GetOrder(_ context.Context, p *boxoffice.Principal, id string) (*boxoffice.Order, error) {
	f.caller(p)
	f.record("GetOrder", sale.Idem{}, nil, id)
	if err := f.readErr("GetOrder"); err != nil {
		return nil, err
	}
	return &boxoffice.Order{ID: id}, nil
}

func (f *fakeService) ListOrders(_ context.Context, p *boxoffice.Principal, showID, after string, limit int) ([]*boxoffice.Order, string, error) {
	f.caller(p)
	f.record("ListOrders", sale.Idem{}, nil, showID, after, limit)
	if err := f.readErr("ListOrders"); err != nil {
		return nil, "", err
	}
	return []*boxoffice.Order{{ID: "ord_1"}}, "", nil
}

func (f *fakeService) CancelOrder(_ context.Context, p *boxoffice.Principal, idem sale.Idem, id string) (*boxoffice.Response, bool, error) {
	f.caller(p)
	return f.post("CancelOrder", idem, nil, id)
}

func (f *fakeService) ListEvents(_ context.Context, after string, limit int) ([]*boxoffice.Event, string, error) {
	f.record("ListEvents", sale.Idem{}, nil, after, limit)
	if err := f.readErr("ListEvents"); err != nil {
		return nil, "", err
	}
	return []*boxoffice.Event{{ID: "evt_1", Type: boxoffice.EventOrderConfirmed, Data: []byte(`{}`)}}, "42", nil
}

func (f *fakeService) PutWebhookEndpoint(_ context.Context, id string, in sale.WebhookInput) (*boxoffice.WebhookEndpoint, bool, error) {
	f.record("PutWebhookEndpoint", sale.Idem{}, in, id)
	if err := f.readErr("PutWebhookEndpoint"); err != nil {
		return nil, false, err
	}
	return &boxoffice.WebhookEndpoint{ID: id, URL: in.URL, EventTypes: in.EventTypes, Secret: "whsec_x"}, f.putCreated, nil
}

func (f *fakeService) GetWebhookEndpoint(_ context.Context, id string) (*boxoffice.WebhookEndpoint, error) {
	f.record("GetWebhookEndpoint", sale.Idem{}, nil, id)
	if err := f.readErr("GetWebhookEndpoint"); err != nil {
		return nil, err
	}
	return &boxoffice.WebhookEndpoint{ID: id, Secret: "whsec_x"}, nil
}

func (f *fakeService) ListWebhookEndpoints(context.Context) ([]*boxoffice.WebhookEndpoint, error) {
	f.record("ListWebhookEndpoints", sale.Idem{}, nil)
	return nil, f.readErr("ListWebhookEndpoints")
}

func (f *fakeService) DeleteWebhookEndpoint(_ context.Context, id string) error {
	f.record("DeleteWebhookEndpoint", sale.Idem{}, nil, id)
	return f.readErr("DeleteWebhookEndpoint")
}

// RunOnce runs op with no idempotency record, as a fresh key would.
func (f *fakeService) RunOnce(ctx context.Context, idem sale.Idem, status int, op func(ctx context.Context) (any, error)) (*boxoffice.Response, bool, error) {
	f.record("RunOnce", idem, nil, status)
	v, err := op(ctx)
	if err != nil {
		return nil, false, err
	}
	return Renderer{}.Resource(status, v, ""), false, nil
}

func (f *fakeService) Ready(context.Context) error { return f.ready }

// req describes one request of a test.
type req struct {
	method, path string
	key          string            // bearer key; "" sends no Authorization
	idem         []string          // Idempotency-Key values
	ctype        string            // Content-Type; "-" sends none, "" means application/json
	body         string            //
	header       map[string]string // extra headers
}

// serve runs r through h and returns the recorded response.
func serve(t testing.TB, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	for _, v := range r.idem {
		hr.Header.Add("Idempotency-Key", v)
	}
	switch r.ctype {
	case "-":
	case "":
		if r.body != "" {
			hr.Header.Set("Content-Type", "application/json")
		}
	default:
		hr.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

// newTestHandler returns a handler on f whose log goes to the returned buffer.
func newTestHandler(f *fakeService, maxInFlight int) (http.Handler, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return NewHandler(f, Options{
		Logger:      slog.New(slog.NewTextHandler(buf, nil)),
		MaxInFlight: maxInFlight,
	}), buf
}

// waitFor fails the test if ch does not deliver within d, so a broken handler cannot hang it.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
