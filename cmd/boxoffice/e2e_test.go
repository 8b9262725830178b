package main

import (
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice/postgres/pgtest"

	_ "modernc.org/sqlite"
)

func TestAPIWalkthrough(t *testing.T) {
	s := startServer(t, t.TempDir())
	anon := s.client("")
	anon.must(200, "GET", "/healthz", nil)
	anon.must(200, "GET", "/readyz", nil)
	if m := anon.must(200, "GET", "/metrics", nil); !strings.Contains(string(m.Body), "# TYPE") {
		t.Fatalf("metrics: %s", m.Body)
	}
	if r := anon.must(401, "GET", "/v1/shows", nil); r.code() != "unauthorized" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("401: %s %v", r.Body, r.Header)
	}
	admin := s.client(adminKey)
	cl := s.client(s.newClientKey(t))
	if r := cl.must(403, "PUT", "/v1/shows/gala", showBody(5, 600)); r.code() != "forbidden" {
		t.Fatal(string(r.Body))
	}
	admin.must(201, "PUT", "/v1/shows/gala", showBody(5, 600))
	admin.must(200, "PUT", "/v1/shows/gala", showBody(5, 600))
	tier := cl.must(200, "GET", "/v1/shows/gala", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if tier["available"] != 5.0 || tier["capacity"] != 5.0 || tier["held"] != 0.0 || tier["sold"] != 0.0 {
		t.Fatalf("tier %v", tier)
	}

	holdBody := map[string]any{"tier_id": "ga", "quantity": 2, "buyer": map[string]string{"email": "ann@example.com"}}
	h1 := cl.post(201, "/v1/shows/gala/holds", "h1", holdBody)
	hold := h1.json(t)
	if hold["status"] != "active" || !strings.HasPrefix(hold["id"].(string), "hld_") || hold["expires_at"] == nil {
		t.Fatalf("hold %s", h1.Body)
	}
	again := cl.post(201, "/v1/shows/gala/holds", "h1", holdBody)
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(h1.Body) {
		t.Fatalf("replay: %v %s", again.Header, again.Body)
	}
	if h1.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first answer marked replayed")
	}
	// The same key and body from another client is another request: scopes never mix.
	otherCl := s.client(s.newClientKey(t)) // another sales channel
	other := otherCl.post(201, "/v1/shows/gala/holds", "h1", holdBody)
	if other.json(t)["id"] == hold["id"] {
		t.Fatal("two clients saw one result")
	}
	if r := cl.post(422, "/v1/shows/gala/holds", "h1", map[string]any{"tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "ann@example.com"}}); r.code() != "idempotency_key_reused" {
		t.Fatal(string(r.Body))
	}
	holdID := hold["id"].(string)
	order := cl.post(201, "/v1/holds/"+holdID+"/confirm", "c1", map[string]any{"payment": map[string]string{"token": "tok_ok"}}).json(t)
	if order["status"] != "confirmed" || len(order["tickets"].([]any)) != 2 || order["amount"].(map[string]any)["amount"] != 9000.0 {
		t.Fatalf("order %v", order)
	}
	orderID := order["id"].(string)
	if got := cl.must(200, "GET", "/v1/orders/"+orderID, nil).json(t); got["status"] != "confirmed" {
		t.Fatalf("get order %v", got)
	}
	if r := cl.must(409, "DELETE", "/v1/holds/"+holdID, nil); r.code() != "hold_confirmed" {
		t.Fatal(string(r.Body))
	}
	// The other client's hold is another channel's: not found here, and left as it is.
	otherID := other.json(t)["id"].(string)
	if r := cl.must(404, "DELETE", "/v1/holds/"+otherID, nil); r.code() != "not_found" {
		t.Fatal(string(r.Body))
	}
	if got := otherCl.must(200, "GET", "/v1/holds/"+otherID, nil).json(t); got["status"] != "active" {
		t.Fatalf("another channel's release changed the hold: %v", got)
	}
	// Its own channel releases it twice: 204 both times, tickets back once.
	otherCl.must(204, "DELETE", "/v1/holds/"+otherID, nil)
	otherCl.must(204, "DELETE", "/v1/holds/"+otherID, nil)
	if got := otherCl.must(200, "GET", "/v1/holds/"+otherID, nil).json(t); got["status"] != "released" {
		t.Fatalf("released hold %v", got)
	}
	if r := otherCl.post(409, "/v1/holds/"+otherID+"/confirm", "c2", map[string]any{"payment": map[string]string{"token": "tok_ok"}}); r.code() != "hold_released" {
		t.Fatal(string(r.Body))
	}
	buy := func(key, token string, q int) map[string]any {
		return map[string]any{"show_id": "gala", "tier_id": "ga", "quantity": q, "buyer": map[string]string{"email": "bo@example.com"}, "payment": map[string]string{"token": token}}
	}
	if r := cl.post(402, "/v1/purchases", "p1", buy("p1", "tok_declined", 1)); r.code() != "payment_declined" {
		t.Fatal(string(r.Body))
	}
	p2 := cl.post(201, "/v1/purchases", "p2", buy("p2", "tok_ok", 3)).json(t)
	so := cl.post(409, "/v1/purchases", "p3", buy("p3", "tok_ok", 1))
	if so.code() != "sold_out" || so.json(t)["available"] != 0.0 {
		t.Fatalf("sold out: %s", so.Body)
	}
	c1 := cl.post(200, "/v1/orders/"+p2["id"].(string)+"/cancel", "x1", nil)
	c2 := cl.post(200, "/v1/orders/"+p2["id"].(string)+"/cancel", "x2", nil)
	if string(c1.Body) != string(c2.Body) || c1.json(t)["status"] != "cancelled" {
		t.Fatalf("cancel:\n%s\n%s", c1.Body, c2.Body)
	}
	tier = cl.must(200, "GET", "/v1/shows/gala", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if tier["sold"] != 2.0 || tier["held"] != 0.0 || tier["available"] != 3.0 {
		t.Fatalf("tier after sales %v", tier)
	}
	// Pages: two orders, one per page.
	pg := cl.must(200, "GET", "/v1/orders?show_id=gala&limit=1", nil).json(t)
	if len(pg["data"].([]any)) != 1 || pg["next"] == nil {
		t.Fatalf("page 1 %v", pg)
	}
	pg2 := cl.must(200, "GET", "/v1/orders?show_id=gala&limit=1&after="+pg["next"].(string), nil).json(t)
	if len(pg2["data"].([]any)) != 1 {
		t.Fatalf("page 2 %v", pg2)
	}
	shows := cl.must(200, "GET", "/v1/shows?limit=10", nil).json(t)
	if len(shows["data"].([]any)) != 1 || shows["next"] != nil {
		t.Fatalf("shows %v", shows)
	}
	if r := cl.must(403, "GET", "/v1/feed?limit=100", nil); r.code() != "forbidden" {
		t.Fatalf("a client key read the feed: %s", r.Body)
	}
	feed := admin.must(200, "GET", "/v1/feed?limit=100", nil).json(t)
	types := map[string]int{}
	for _, e := range feed["data"].([]any) {
		types[e.(map[string]any)["type"].(string)]++
	}
	for _, typ := range []string{"hold.created", "hold.released", "order.confirmed", "order.payment_failed", "order.cancelled"} {
		if types[typ] == 0 {
			t.Errorf("feed lacks %s: %v", typ, types)
		}
	}
}

// TestBadInputChangesNothing sends malformed requests; each gets its 4xx problem and code, and the
// show's counts and the event feed are as before.
func TestBadInputChangesNothing(t *testing.T) {
	s := startServer(t, t.TempDir())
	admin := s.client(adminKey)
	admin.must(201, "PUT", "/v1/shows/s1", showBody(10, 600))
	cl := s.client(s.newClientKey(t))
	before := cl.must(200, "GET", "/v1/shows/s1", nil).Body
	feedBefore := admin.must(200, "GET", "/v1/feed?limit=100", nil).Body
	ok := `{"tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"}}`
	holds := "/v1/shows/s1/holds"
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		{"no key", "POST", holds, ok, nil, 400, "idempotency_key_missing"},
		{"empty key", "POST", holds, ok, []string{"Idempotency-Key", `""`}, 400, "idempotency_key_invalid"},
		{"key too long", "POST", holds, ok, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "idempotency_key_invalid"},
		{"key twice", "POST", holds, ok, []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, 400, "idempotency_key_invalid"},
		{"unknown field", "POST", holds, `{"tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"},"x":1}`, nil, 400, "validation_failed"},
		{"trailing data", "POST", holds, ok + `{}`, nil, 400, "validation_failed"},
		{"malformed", "POST", holds, `{"tier_id":`, nil, 400, "validation_failed"},
		{"wrong type", "POST", holds, `{"tier_id":"ga","quantity":"1","buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"zero quantity", "POST", holds, `{"tier_id":"ga","quantity":0,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"negative quantity", "POST", holds, `{"tier_id":"ga","quantity":-2,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"huge quantity", "POST", holds, `{"tier_id":"ga","quantity":1e30,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"too many", "POST", holds, `{"tier_id":"ga","quantity":11,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"bad email", "POST", holds, `{"tier_id":"ga","quantity":1,"buyer":{"email":"nobody"}}`, nil, 400, "validation_failed"},
		{"bad tier id", "POST", holds, `{"tier_id":"GA!","quantity":1,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"unknown tier", "POST", holds, `{"tier_id":"vip","quantity":1,"buyer":{"email":"a@example.com"}}`, nil, 404, "not_found"},
		{"unknown show", "POST", "/v1/shows/nope/holds", ok, nil, 404, "not_found"},
		{"bad show id", "GET", "/v1/shows/Bad%20Id", "", nil, 404, "not_found"},
		{"too large", "POST", holds, `{"tier_id":"` + strings.Repeat("a", 70_000) + `"}`, nil, 413, "payload_too_large"},
		{"not json", "POST", holds, ok, []string{"Content-Type", "", "Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"bad limit", "GET", "/v1/shows?limit=0", "", nil, 400, "validation_failed"},
		{"unknown order", "GET", "/v1/orders/ord_nope", "", nil, 404, "not_found"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "not_found"},
		{"wrong method", "PATCH", "/v1/shows/s1", "{}", nil, 405, "method_not_allowed"},
		{"feed is the admin's", "GET", "/v1/feed?after=x", "", nil, 403, "forbidden"},
		{"duplicate key", "POST", holds, `{"tier_id":"ga","quantity":1,"quantity":2,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"key in another case", "POST", holds, `{"tier_id":"ga","quantity":1,"QUANTITY":2,"buyer":{"email":"a@example.com"}}`, nil, 400, "validation_failed"},
		{"invalid UTF-8", "POST", holds, "{\"tier_id\":\"ga\",\"quantity\":1,\"buyer\":{\"email\":\"a\xff@example.com\"}}", nil, 400, "validation_failed"},
		{"bidi override in email", "POST", holds, "{\"tier_id\":\"ga\",\"quantity\":1,\"buyer\":{\"email\":\"a\u202eb@example.com\"}}", nil, 400, "validation_failed"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.headers
			if c.method == "POST" && c.code != "idempotency_key_missing" && c.code != "idempotency_key_invalid" {
				h = append([]string{"Idempotency-Key", fmt.Sprintf("bad-%d", i)}, h...)
			}
			var body any
			if c.body != "" {
				body = c.body
			}
			r, err := cl.do(c.method, c.path, body, h...)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != c.status || r.code() != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("content type %q", ct)
			}
			p := r.json(t)
			for _, f := range []string{"type", "title", "status", "detail", "code"} {
				if _, ok := p[f]; !ok {
					t.Fatalf("problem lacks %s: %s", f, r.Body)
				}
			}
		})
	}
	if after := cl.must(200, "GET", "/v1/shows/s1", nil).Body; string(after) != string(before) {
		t.Fatalf("bad input changed the show:\n%s\n%s", before, after)
	}
	if after := admin.must(200, "GET", "/v1/feed?limit=100", nil).Body; string(after) != string(feedBefore) {
		t.Fatal("bad input wrote events")
	}
}

// TestOversizedHeadersAreRefused: a header block past 32 KiB is refused (431) before any handler
// runs, instead of the megabyte net/http allows by default; a normal one is served.
func TestOversizedHeadersAreRefused(t *testing.T) {
	s := startServer(t, t.TempDir())
	cl := s.client(adminKey)
	r, err := cl.do("GET", "/v1/shows", nil, "X-Padding", strings.Repeat("p", 40<<10))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 431 {
		t.Fatalf("a 40 KiB header: %d %s, want 431", r.Status, r.Body)
	}
	cl.must(200, "GET", "/v1/shows", nil)
}

// TestStampedeOverHTTP: 64 clients buy the last 100 tickets; a share of requests is sent twice at
// once with one key and a share retried after the answer. Exactly 100 are sold, one order per key.
func TestStampedeOverHTTP(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.client(adminKey).must(201, "PUT", "/v1/shows/hot", showBody(100, 600))
	cl := s.client(s.newClientKey(t))
	const workers, keys = 64, 400
	var next atomic.Int64
	var mu sync.Mutex
	answers := map[string][]string{} // key → order id or code, per answer seen
	record := func(key string, r *reply) {
		v := r.code()
		if r.Status == 201 {
			v = r.json(t)["id"].(string)
		}
		mu.Lock()
		answers[key] = append(answers[key], v)
		mu.Unlock()
	}
	send := func(key string) {
		body := map[string]any{"show_id": "hot", "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": key + "@example.com"}, "payment": map[string]string{"token": "tok_ok"}}
		for range 50 { // a client retries "in progress" after Retry-After; bounded
			r, err := cl.do("POST", "/v1/purchases", body, "Idempotency-Key", key)
			if err != nil {
				t.Errorf("%s: %v", key, err)
				return
			}
			if r.Status == 409 && r.code() == "idempotency_request_in_progress" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if r.Status != 201 && r.Status != 409 {
				t.Errorf("%s: %d %s", key, r.Status, r.Body)
				return
			}
			record(key, r)
			return
		}
		t.Errorf("%s: still in progress after 50 tries", key)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > keys {
					return
				}
				key := fmt.Sprintf("buyer-%d", i)
				if i%5 == 0 { // the same request twice at once: a double click
					var dup sync.WaitGroup
					dup.Go(func() { send(key) })
					send(key)
					dup.Wait()
				} else {
					send(key)
				}
				if i%3 == 0 { // a retry after the answer, as after a lost response
					send(key)
				}
			}
		})
	}
	wg.Wait()
	sold := 0
	for key, got := range answers {
		for _, v := range got[1:] {
			if v != got[0] {
				t.Errorf("key %s got different answers: %v", key, got)
			}
		}
		if strings.HasPrefix(got[0], "ord_") {
			sold++
		} else if got[0] != "sold_out" {
			t.Errorf("key %s: %v", key, got)
		}
	}
	if sold != 100 {
		t.Fatalf("%d keys bought a ticket, want exactly 100", sold)
	}
	tier := cl.must(200, "GET", "/v1/shows/hot", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if tier["sold"] != 100.0 || tier["held"] != 0.0 {
		t.Fatalf("tier %v", tier)
	}
	// One order per key: the orders listed are exactly the ids the keys were answered with.
	orders := map[string]bool{}
	after := ""
	for range 20 {
		pg := cl.must(200, "GET", "/v1/orders?show_id=hot&limit=100&after="+after, nil).json(t)
		for _, o := range pg["data"].([]any) {
			orders[o.(map[string]any)["id"].(string)] = true
		}
		if pg["next"] == nil {
			break
		}
		after = pg["next"].(string)
	}
	if len(orders) != 100 {
		t.Fatalf("%d orders, want 100", len(orders))
	}
	if code, out := runCLI(t, "verify", "--data-dir", s.Dir); code != 0 {
		t.Fatalf("verify: %d\n%s", code, out)
	}
}

// TestKillNineMidSale SIGKILLs the server while buyers buy and hold, restarts it, and checks that no
// acknowledged order is lost, every interrupted key finishes with one effect, and no hold leaks —
// on both stores, with the default strategy.
func TestKillNineMidSale(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killNineMidSale(t) })
	t.Run("postgres", func(t *testing.T) { killNineMidSale(t, "--db", pgtest.Start(t)) })
}

// killNineMidSale is TestKillNineMidSale on the store that args (serve and verify flags) name.
func killNineMidSale(t *testing.T, args ...string) {
	dir := t.TempDir()
	s := startServer(t, dir, args...)
	s.client(adminKey).must(201, "PUT", "/v1/shows/big", showBody(100000, 2))
	key := s.newClientKey(t)
	cl := s.client(key)
	var mu sync.Mutex
	acked := map[string]string{} // purchase key → order id
	var sent []string
	stop := make(chan struct{})
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				sent = append(sent, k)
				mu.Unlock()
				var r *reply
				var err error
				if i%4 == 3 { // a hold never confirmed: it must come back at expiry, also after the crash
					r, err = cl.do("POST", "/v1/shows/big/holds", map[string]any{"tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "h@example.com"}}, "Idempotency-Key", "h-"+k)
					if err == nil && r.Status != 201 {
						t.Errorf("hold: %d %s", r.Status, r.Body)
					}
					continue
				}
				r, err = cl.do("POST", "/v1/purchases", map[string]any{"show_id": "big", "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}, "Idempotency-Key", k)
				if err != nil {
					return // the server died under this request: not acknowledged
				}
				if r.Status == 201 {
					mu.Lock()
					acked[k] = r.json(t)["id"].(string)
					mu.Unlock()
					n.Add(1)
				} else {
					t.Errorf("purchase: %d %s", r.Status, r.Body)
				}
			}
		})
	}
	eventually(t, "some sales before the crash", func() bool { return n.Load() >= 40 })
	s.kill()
	close(stop)
	wg.Wait()

	s2 := startServer(t, dir, args...)
	cl2 := s2.client(key)
	for k, id := range acked {
		o := cl2.must(200, "GET", "/v1/orders/"+id, nil).json(t)
		if o["status"] != "confirmed" {
			t.Fatalf("acknowledged order %s (%s) is %v after the crash", id, k, o["status"])
		}
	}
	// Every purchase key, answered or not, now finishes with exactly one order: a retry replays.
	orders := map[string]string{}
	for _, k := range sent {
		var r *reply
		// Up to 20 s: on a store other servers may share, the killed server's leases are not
		// cleared at start but run out (the sync budget and a 10 s margin).
		for range 400 {
			var err error
			r, err = cl2.do("POST", "/v1/purchases", map[string]any{"show_id": "big", "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}, "Idempotency-Key", k)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != 409 {
				break
			}
			time.Sleep(50 * time.Millisecond) // in progress: the completer is finishing it
		}
		if r.Status != 201 {
			continue // a hold key, never a purchase: it got a fresh purchase above, also fine
		}
		id := r.json(t)["id"].(string)
		if prev, ok := acked[k]; ok && prev != id {
			t.Fatalf("key %s answered %s before the crash and %s after", k, prev, id)
		}
		orders[k] = id
	}
	// Holds made before the crash expire (TTL 2s) and give their tickets back exactly once.
	eventually(t, "every hold to expire", func() bool {
		tier := cl2.must(200, "GET", "/v1/shows/big", nil).json(t)["tiers"].([]any)[0].(map[string]any)
		return tier["held"] == 0.0
	})
	tier := cl2.must(200, "GET", "/v1/shows/big", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if int(tier["sold"].(float64)) != len(orders) {
		t.Fatalf("sold %v, but %d keys own an order", tier["sold"], len(orders))
	}
	if err := s2.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s2.logs)
	}
	if code, out := runCLI(t, append([]string{"verify", "--data-dir", dir}, args...)...); code != 0 {
		t.Fatalf("verify after crash: %d\n%s", code, out)
	}
}

func TestVerifyNamesViolations(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	s.client(adminKey).must(201, "PUT", "/v1/shows/v", showBody(3, 600))
	cl := s.client(s.newClientKey(t))
	cl.post(201, "/v1/purchases", "p", map[string]any{"show_id": "v", "tier_id": "ga", "quantity": 2, "buyer": map[string]string{"email": "a@example.com"}, "payment": map[string]string{"token": "tok_ok"}})
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("verify of a sound store: %d %s", code, out)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "boxoffice.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The schema's CHECK refuses an oversold row outright, so corrupt within capacity: a sold count
	// that no order accounts for.
	if _, err := db.Exec(`UPDATE tiers SET sold = sold + 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out := runCLI(t, "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "VIOLATION") || !strings.Contains(out, "says sold=3 but its confirmed orders have 2") {
		t.Fatalf("verify of a corrupt store: %d\n%s", code, out)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--payment-sync-budget", "1s")
	s.client(adminKey).must(201, "PUT", "/v1/shows/g", showBody(5, 600))
	cl := s.client(s.newClientKey(t))
	res := make(chan *reply, 1)
	go func() {
		r, _ := cl.do("POST", "/v1/purchases", map[string]any{"show_id": "g", "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "a@example.com"}, "payment": map[string]string{"token": "tok_slow"}}, "Idempotency-Key", "slow")
		res <- r
	}()
	eventually(t, "the request to be in flight", func() bool { return pendingOrders(t, dir) == 1 })
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.logs)
	}
	r := <-res
	if r == nil || r.Status != 202 {
		t.Fatalf("in-flight request was not drained: %+v", r)
	}
	// The payment settles after a restart: the order becomes confirmed by itself.
	s2 := startServer(t, dir)
	id := r.json(t)["id"].(string)
	cl2 := s2.client(cl.key)
	eventually(t, "the order to settle after restart", func() bool {
		return cl2.must(200, "GET", "/v1/orders/"+id, nil).json(t)["status"] == "confirmed"
	})
}

// pendingOrders counts orders waiting for payment by reading the store file directly.
func pendingOrders(t *testing.T, dir string) int {
	db, err := sql.Open("sqlite", filepath.Join(dir, "boxoffice.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM orders WHERE status = 'pending_payment'`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func TestGeneratedAdminKey(t *testing.T) {
	dir := t.TempDir()
	s := startServerNoKey(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "admin.key"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key mode %v", st.Mode())
	}
	key := strings.TrimSpace(string(b))
	if !strings.Contains(s.logs.String(), key) {
		t.Fatal("the generated key was not logged")
	}
	s.client(key).must(201, "PUT", "/v1/shows/k", showBody(1, 60))
	s.kill()
	s2 := startServerNoKey(t, dir)
	if strings.Contains(s2.logs.String(), key) {
		t.Fatal("the key was logged again on the second start")
	}
	s2.client(key).must(200, "GET", "/v1/shows/k", nil)
}

func startServerNoKey(t *testing.T, dir string) *server {
	// --admin-key "" is the same as not giving it: the key comes from the data dir.
	return startServer(t, dir, "--admin-key", "")
}

func TestCLIUsage(t *testing.T) {
	if code, out := runCLI(t, "help"); code != 0 || !strings.Contains(out, "boxoffice serve") {
		t.Fatalf("help: %d %s", code, out)
	}
	if code, _ := runCLI(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
	if code, out := runCLI(t, "serve", "--db", "mysql://x", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(out, "--db") {
		t.Fatalf("bad --db: %d %s", code, out)
	}
	if code, _ := runCLI(t, "serve", "--no-such-flag"); code != 2 {
		t.Fatalf("bad flag exit %d", code)
	}
	if code, out := runCLI(t, "verify", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(out, "no store") {
		t.Fatalf("verify of nothing: %d %s", code, out)
	}
}

func TestFlagsReadEnvironment(t *testing.T) {
	t.Setenv("BOXOFFICE_DATA_DIR", "/tmp/from-env")
	t.Setenv("BOXOFFICE_PAYMENT_SYNC_BUDGET", "750ms")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f serveFlags
	f.register(fs)
	fs.DurationVar(&f.syncBudget, "payment-sync-budget", time.Second, "")
	if err := parseFlags(fs, []string{"--db", "sqlite"}); err != nil {
		t.Fatal(err)
	}
	if f.dataDir != "/tmp/from-env" || f.syncBudget != 750*time.Millisecond {
		t.Fatalf("env not read: %+v", f)
	}
	// A flag on the command line wins over the environment.
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	var f2 storeFlags
	f2.register(fs2)
	if err := parseFlags(fs2, []string{"--data-dir", "/tmp/flag"}); err != nil || f2.dataDir != "/tmp/flag" {
		t.Fatalf("flag lost to env: %v %+v", err, f2)
	}
	t.Setenv("BOXOFFICE_PAYMENT_SYNC_BUDGET", "soon")
	fs3 := flag.NewFlagSet("z", flag.ContinueOnError)
	fs3.SetOutput(io.Discard)
	fs3.Duration("payment-sync-budget", time.Second, "")
	if err := parseFlags(fs3, nil); err == nil {
		t.Fatal("a bad env value was accepted")
	}
}

// TestBenchVerifiesARunningServer loads a running server with bench and has it audit the server's
// store afterwards: a sound sale passes with every purchase accounted for, and a store corrupted
// beforehand (a sold count no order accounts for) fails the run with the violation named.
func TestBenchVerifiesARunningServer(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	bench := func() (int, string) {
		return runCLI(t, "bench", "--url", s.URL, "--admin-key", adminKey, "--requests", "150", "--buyers", "8",
			"--duration", "2m", "--verify-data-dir", dir)
	}
	code, out := bench()
	if code != 0 || !strings.Contains(out, "201: 150") || !regexp.MustCompile(`verify +ok`).MatchString(out) {
		t.Fatalf("bench of a sound sale: exit %d\n%s", code, out)
	}

	s.client(adminKey).must(201, "PUT", "/v1/shows/v", showBody(3, 600))
	db, err := sql.Open("sqlite", filepath.Join(dir, "boxoffice.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA busy_timeout = 10000; UPDATE tiers SET sold = sold + 1 WHERE show_id = 'v'`); err != nil {
		t.Fatal(err)
	}
	code, out = bench()
	if code != 1 || !strings.Contains(out, "violation") || !strings.Contains(out, "sold=1 but its confirmed orders have 0") {
		t.Fatalf("bench over a corrupt store: exit %d\n%s", code, out)
	}
}

// TestDataDirIsPrivate: on start the data dir and everything in it, including files an earlier
// run left readable by others, belong to the owner alone (0700 directories, 0600 files), and so
// does what the server writes from then on (the store, the ledger, a receipt).
func TestDataDirIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin.key"), []byte(adminKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mail", "old.eml"), []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	s := startProcess(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir) // the admin key from the file
	admin := s.client(adminKey)
	admin.must(201, "PUT", "/v1/shows/s1", showBody(10, 600))
	cl := s.client(s.newClientKey(t))
	cl.must(201, "POST", "/v1/purchases", `{"show_id":"s1","tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"},"payment":{"token":"tok_ok"}}`, "Idempotency-Key", "p1")
	eventually(t, "the receipt is written", func() bool {
		es, _ := os.ReadDir(filepath.Join(dir, "mail"))
		return len(es) >= 2
	})
	var seen int
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else if !info.Mode().IsRegular() {
			return nil
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 8 {
		t.Fatalf("only %d entries under the data dir", seen)
	}
}

// TestBenchStreams runs bench --mode streams against a running server: every buyer's event
// stream opens and gets its events, and the server holds them without a goroutine a stream.
func TestBenchStreams(t *testing.T) {
	s := startServer(t, t.TempDir())
	const streams = 300
	code, out := runCLI(t, "bench", "--mode", "streams", "--url", s.URL, "--admin-key", adminKey,
		"--requests", strconv.Itoa(streams), "--duration", "9s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("streams     %d open of %d (0 failed)", streams, streams)) {
		t.Fatalf("not every stream opened\n%s", out)
	}
	g := regexp.MustCompile(`goroutines +(\d+) before, (\d+) with them open`).FindStringSubmatch(out)
	e := regexp.MustCompile(`events +(\d+) in 3s`).FindStringSubmatch(out)
	if g == nil || e == nil || !regexp.MustCompile(`memory +server RSS \d+ MB before, \d+ MB with them open: [\d.-]+ KB a stream`).MatchString(out) {
		t.Fatalf("no goroutines, events or memory line\n%s", out)
	}
	before, _ := strconv.Atoi(g[1])
	open, _ := strconv.Atoi(g[2])
	if open-before > streams/2 {
		t.Errorf("%d goroutines more on the server with %d streams open\n%s", open-before, streams, out)
	}
	// 300 streams far back in a queue of one a second read their tickets every 5 s: 180 events in
	// 3 s, give or take the streams' phases.
	if n, _ := strconv.Atoi(e[1]); n < streams/5 {
		t.Errorf("%d events in 3 s from %d streams\n%s", n, streams, out)
	}
}

// TestBenchWaitingRoom runs bench --mode waiting-room against a running server, once as fast as
// the server answers and once with the arrivals paced: every arrival gets a place, the draw and
// first come first served both hold, every purchase is made by an admitted buyer and counted once
// (while the crowd joined or after), and paced joins never run ahead of their rate.
func TestBenchWaitingRoom(t *testing.T) {
	s := startServer(t, t.TempDir())
	joinsRE := regexp.MustCompile(`joins +([\d.]+)/s \((\d+) of (\d+) arrivals`)
	boughtRE := regexp.MustCompile(`purchases +map\[201:(\d+)\] by admitted buyers; p50/p99 \S+ while arrivals joined \((\d+)\), \S+ after \((\d+)\)`)
	for _, c := range []struct {
		name            string
		rate, purchases int
	}{{"closed loop", 0, 40}, {"paced", 400, 30}} {
		t.Run(c.name, func(t *testing.T) {
			code, out := runCLI(t, "bench", "--mode", "waiting-room", "--url", s.URL, "--admin-key", adminKey,
				"--requests", "400", "--buyers", "8", "--admit-rate", "1000", "--purchases", strconv.Itoa(c.purchases),
				"--join-rate", strconv.Itoa(c.rate), "--duration", "2m")
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			j := joinsRE.FindStringSubmatch(out)
			if j == nil || j[2] != "400" || j[3] != "400" {
				t.Fatalf("not every arrival joined\n%s", out)
			}
			if !strings.Contains(out, "fairness    100.00% of post-on-sale arrivals admitted in arrival order; pre-on-sale arrivals all first: true") {
				t.Errorf("admission was not fair\n%s", out)
			}
			b := boughtRE.FindStringSubmatch(out)
			if b == nil {
				t.Fatalf("no purchases line, or a purchase that was not a 201\n%s", out)
			}
			var bought, during, after int
			if _, err := fmt.Sscan(strings.Join(b[1:4], " "), &bought, &during, &after); err != nil {
				t.Fatal(err)
			}
			if bought != c.purchases || during+after != c.purchases {
				t.Errorf("%d purchases answered 201, %d timed while joining and %d after; want %d in all\n%s", bought, during, after, c.purchases, out)
			}
			if c.rate > 0 {
				// Each phase's k-th join is sent k/rate seconds after the phase began at the
				// earliest, so the two phases of 200 take at least 2 × 199/400 s.
				if ps, _ := strconv.ParseFloat(j[1], 64); ps > 400*200/199.0 || !strings.Contains(out, "sent at 400/s") {
					t.Errorf("paced at 400/s, the joins came at %s/s\n%s", j[1], out)
				}
			} else if !regexp.MustCompile(`vs no-op +[\d.]+× the no-op handler`).MatchString(out) || !strings.Contains(out, "/s before the on-sale (joins alone)") {
				t.Errorf("no ratio to the no-op handler, or no rate of each phase\n%s", out)
			}
		})
	}
}
