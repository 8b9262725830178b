package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// receiver is a webhook receiver that checks every delivery's Standard Webhooks signature with
// its own HMAC code (not the server's Sign), and can be told to fail.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	secret []byte
	// got counts valid deliveries by webhook-id; order lists, per order id, the event types in
	// the order of their first valid delivery.
	got     map[string]int
	types   map[string]string
	order   map[string][]string
	invalid int
	// fail, while positive, makes the next requests fail in turn with 500, 429 + Retry-After
	// and 503, counting down.
	fail atomic.Int64
	// down makes every request fail with 500 (a dead receiver).
	down atomic.Bool
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, got: map[string]int{}, types: map[string]string{}, order: map[string][]string{}}
	var calls atomic.Int64
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if r.down.Load() {
			w.WriteHeader(500)
			return
		}
		if r.fail.Add(-1) >= 0 {
			switch calls.Add(1) % 3 {
			case 0:
				w.WriteHeader(500)
			case 1:
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(429)
			default:
				w.WriteHeader(503)
			}
			return
		}
		id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
		if !r.valid(id, ts, sig, body) {
			r.mu.Lock()
			r.invalid++
			r.mu.Unlock()
			w.WriteHeader(400)
			return
		}
		var p struct {
			ID, Type string
			Data     struct{ ID string }
		}
		if err := json.Unmarshal(body, &p); err != nil || p.ID != id {
			r.mu.Lock()
			r.invalid++
			r.mu.Unlock()
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		if r.got[id] == 0 {
			r.order[p.Data.ID] = append(r.order[p.Data.ID], p.Type)
		}
		r.got[id]++
		r.types[id] = p.Type
		r.mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setSecret(s string) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil || !strings.HasPrefix(s, "whsec_") {
		r.t.Fatalf("secret %q is not whsec_<base64>", s)
	}
	r.mu.Lock()
	r.secret = key
	r.mu.Unlock()
}

// valid checks "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" among the signatures.
func (r *receiver) valid(id, ts, sigs string, body []byte) bool {
	if id == "" || ts == "" {
		return false
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return false
	}
	r.mu.Lock()
	mac := hmac.New(sha256.New, r.secret)
	r.mu.Unlock()
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// snapshot returns the delivered event ids with their types, the per-order type sequences and
// the count of deliveries that failed verification.
func (r *receiver) snapshot() (map[string]string, map[string][]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	types := map[string]string{}
	for k, v := range r.types {
		types[k] = v
	}
	order := map[string][]string{}
	for k, v := range r.order {
		order[k] = append([]string(nil), v...)
	}
	return types, order, r.invalid
}

// TestWebhooksDeliverEveryEventSigned registers an endpoint whose receiver fails (500, 429 with
// Retry-After, 503) before it works, sells and cancels over HTTP, SIGKILLs the server mid-stream
// and restarts it: every order.confirmed and order.cancelled event reaches the receiver with a
// valid signature and a webhook-id of its own, an order's events arrive in order, and nothing
// unsubscribed is sent. Then a dead receiver fills the dead-letter queue, and `boxoffice dlq
// replay --all` delivers those events once it is back.
func TestWebhooksDeliverEveryEventSigned(t *testing.T) {
	dir := t.TempDir()
	retries := []string{"--webhooks-allow-private", "--webhook-retries", "50ms,100ms,200ms,400ms"}
	s := startServer(t, dir, retries...)
	admin := s.client(adminKey)
	rc := newReceiver(t)
	rc.fail.Store(3) // fewer than the attempts of one event, so nothing is dead-lettered yet
	ep := admin.must(201, "PUT", "/v1/webhook-endpoints/partner", map[string]any{
		"url": rc.srv.URL + "/hooks", "event_types": []string{"order.confirmed", "order.cancelled"}}).json(t)
	rc.setSecret(ep["secret"].(string))
	admin.must(201, "PUT", "/v1/shows/hooks", showBody(1000, 60))
	key := s.newClientKey(t)

	buy := func(cl *client, prefix string, n int) []string {
		var ids []string
		for i := range n {
			r, err := cl.do("POST", "/v1/purchases", map[string]any{"show_id": "hooks", "tier_id": "ga", "quantity": 1,
				"buyer": map[string]string{"email": "w@example.com"}, "payment": map[string]string{"token": "tok_ok"}},
				"Idempotency-Key", fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != 201 {
				t.Fatalf("purchase %s-%d: %d %s", prefix, i, r.Status, r.Body)
			}
			ids = append(ids, r.json(t)["id"].(string))
		}
		return ids
	}
	first := buy(s.client(key), "a", 15)
	s.client(key).post(200, "/v1/orders/"+first[0]+"/cancel", "cancel-a", nil)
	s.kill()

	s2 := startServer(t, dir, retries...)
	cl := s2.client(key)
	second := buy(cl, "b", 15)
	cl.post(200, "/v1/orders/"+second[0]+"/cancel", "cancel-b", nil)

	// Every event of the subscribed types, from the feed, must arrive.
	wantTypes := map[string]string{}
	after := ""
	for range 100 {
		pg := s2.client(adminKey).must(200, "GET", "/v1/feed?limit=100&after="+after, nil).json(t)
		for _, e := range pg["data"].([]any) {
			m := e.(map[string]any)
			if typ := m["type"].(string); typ == "order.confirmed" || typ == "order.cancelled" {
				wantTypes[m["id"].(string)] = typ
			}
		}
		if pg["next"] == nil {
			break
		}
		after = pg["next"].(string)
	}
	if len(wantTypes) != len(first)+len(second)+2 {
		t.Fatalf("feed has %d order events; want %d", len(wantTypes), len(first)+len(second)+2)
	}
	eventually(t, "every order event delivered", func() bool {
		got, _, _ := rc.snapshot()
		return len(got) >= len(wantTypes)
	})
	got, order, invalid := rc.snapshot()
	if invalid != 0 {
		t.Errorf("%d deliveries failed signature verification", invalid)
	}
	for id, typ := range wantTypes {
		if got[id] != typ {
			t.Errorf("event %s (%s) delivered as %q", id, typ, got[id])
		}
	}
	for id := range got {
		if _, ok := wantTypes[id]; !ok {
			t.Errorf("delivered event %s (%s) that is not a subscribed event of the feed", id, got[id])
		}
	}
	for _, o := range []string{first[0], second[0]} {
		if seq := order[o]; len(seq) != 2 || seq[0] != "order.confirmed" || seq[1] != "order.cancelled" {
			t.Errorf("order %s events arrived as %v; want confirmed then cancelled", o, seq)
		}
	}

	// A receiver that stays down past the retry schedule: its events become dead letters.
	rc.down.Store(true)
	third := buy(cl, "c", 3)
	var listing string
	eventually(t, "three dead letters", func() bool {
		code, out := runCLI(t, "dlq", "list", "--url", s2.URL, "--admin-key", adminKey)
		listing = out
		return code == 0 && strings.Count(out, "webhook") >= 3
	})
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n")[1:] {
		if !strings.Contains(line, "order.confirmed") || !strings.Contains(line, "500") {
			t.Errorf("dead letter line without its type or error: %q", line)
		}
	}
	rc.down.Store(false)
	code, out := runCLI(t, "dlq", "replay", "--all", "--url", s2.URL, "--admin-key", adminKey)
	if code != 0 || !strings.Contains(out, "replayed 3") {
		t.Fatalf("dlq replay --all: exit %d\n%s", code, out)
	}
	got, _, _ = rc.snapshot()
	if len(got) != len(wantTypes)+len(third) {
		t.Errorf("after the replay %d events delivered; want %d", len(got), len(wantTypes)+len(third))
	}
	if code, out := runCLI(t, "dlq", "list", "--url", s2.URL, "--admin-key", adminKey); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list after the replay: exit %d\n%s", code, out)
	}
	if err := s2.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s2.logs)
	}
}
