package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/console"
	bohttp "boxoffice/http"
	"boxoffice/inventory"
	bonats "boxoffice/nats"
	"boxoffice/payments"
	"boxoffice/sale"
	"boxoffice/sqlite"
	"boxoffice/waitroom"
)

// adminKey is the test server's admin key.
const adminKey = "test-admin-key-0123456789abcdefghijklmnop"

// server is the box office as serve wires it, in process: the sale service on a SQLite file in a
// temp dir, the payment simulator, optionally the async side on an embedded NATS server, and the
// REST handler with the console mounted, on a loopback port.
type server struct {
	URL     string
	svc     *sale.Service
	store   boxoffice.Store
	async   *bonats.Async
	rooms   *waitroom.Service
	console *console.Console
}

// serverOptions says which parts a test needs.
type serverOptions struct {
	// async starts the async side with a one-retry schedule, so that a failing webhook
	// dead-letters in milliseconds.
	async bool
	// now, when set, is the console's clock.
	now func() time.Time
}

func startServer(t *testing.T, o serverOptions) *server {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	sim, err := payments.NewSim(payments.SimOptions{LedgerPath: filepath.Join(dir, "ledger.jsonl"), SlowDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	st, err := sqlite.Open(ctx, filepath.Join(dir, "boxoffice.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	inv := inventory.NewAtomic(st)
	t.Cleanup(func() { inv.Close() })
	// The waiting rooms admit only when a test asks (AdmitOnce), at the instant it chooses.
	rooms, err := waitroom.New(ctx, waitroom.Config{Store: st, AdmitEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rooms.Start(false)
	t.Cleanup(rooms.Close)
	svc := sale.New(sale.Config{Store: st, Inventory: inv, Payments: sim, Renderer: bohttp.Renderer{},
		AdminKey: adminKey, ExclusiveStore: true, AllowPrivateWebhooks: true, Admission: rooms.Admitted})
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	s := &server{svc: svc, store: st, rooms: rooms}
	opts := console.Options{RelayPosition: console.RelayCheckpoint(st, bonats.DefaultRelayName),
		Refresh: 100 * time.Millisecond, Now: o.now, SessionIdle: time.Hour, WaitRooms: rooms.Rooms, PauseWaitRoom: rooms.Pause}
	hopts := bohttp.Options{WaitRoom: rooms}
	if o.async {
		s.async, err = bonats.StartAsync(bonats.AsyncConfig{NATS: "embedded", DataDir: dir, Store: st, AllowPrivateWebhooks: true,
			Tuning: &bonats.AsyncTuning{WebhookBackoff: []time.Duration{5 * time.Millisecond},
				WebhookPoll: 20 * time.Millisecond, WebhookTimeout: 5 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.async.Stop)
		opts.DeadLetters, hopts.DeadLetters = s.async, s.async
		opts.Consumers = consumersOf(s.async)
	}
	s.console = console.New(svc, opts)
	hopts.Console = s.console
	ts := httptest.NewServer(bohttp.NewHandler(svc, hopts))
	// Cleanups run last first: the console ends its streams before the server waits for them.
	t.Cleanup(ts.Close)
	t.Cleanup(s.console.Close)
	s.URL = ts.URL
	return s
}

// consumersOf adapts the async side's consumers to the console's rows, as serve does.
func consumersOf(a *bonats.Async) func(context.Context) ([]console.Consumer, error) {
	return func(ctx context.Context) ([]console.Consumer, error) {
		list, err := a.Consumers(ctx)
		out := make([]console.Consumer, len(list))
		for i, c := range list {
			out[i] = console.Consumer{Name: c.Name, Endpoint: c.Endpoint, Pending: c.Pending, AckPending: c.AckPending,
				Redelivered: c.Redelivered, DeadLetters: c.DeadLetters, LastError: c.LastError, LastErrorAt: c.LastErrorAt,
				Failing: c.Failing}
		}
		return out, err
	}
}

// api sends a REST request with the admin key and decodes a JSON answer into out (if not nil).
func (s *server) api(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", boxoffice.RandomString(20))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// putShow creates a show with one tier of capacity tickets.
func (s *server) putShow(t *testing.T, id, tier string, capacity int) {
	t.Helper()
	body := map[string]any{"name": "Show " + id, "starts_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"tiers": []map[string]any{{"id": tier, "name": "Tier " + tier, "capacity": capacity,
			"price": map[string]any{"amount": 5000, "currency": "EUR"}}}}
	if code := s.api(t, http.MethodPut, "/v1/shows/"+id, body, nil); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("PUT show %s: %d", id, code)
	}
}

// purchase buys quantity tickets through the REST API and returns the order.
func (s *server) purchase(t *testing.T, show, tier, email string, quantity int) *boxoffice.Order {
	t.Helper()
	var o boxoffice.Order
	code := s.api(t, http.MethodPost, "/v1/purchases", map[string]any{"show_id": show, "tier_id": tier, "quantity": quantity,
		"buyer": map[string]any{"email": email}, "payment": map[string]any{"token": "tok_ok"}}, &o)
	if code != http.StatusCreated || o.Status != boxoffice.OrderConfirmed {
		t.Fatalf("purchase: %d %+v", code, o)
	}
	return &o
}

// browserClient is an HTTP client with a cookie jar, as a browser is, that follows no redirects
// so a test sees each answer.
func browserClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// checkFor calls fn every `every` until it returns nil or wait has passed, then fails with its
// last error: a condition polled, never a sleep guessed.
func checkFor(t *testing.T, wait, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", wait, err)
		}
		time.Sleep(every)
	}
}
