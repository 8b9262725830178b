package main

import (
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"boxoffice/internal/mailtest"
	"boxoffice/nats/natstest"
	"boxoffice/postgres/pgtest"
)

// TestShopAcrossServers runs the buyer's page of `boxoffice serve` on two servers sharing one
// PostgreSQL, as behind a load balancer: the sign-in code one server mailed is good on the other,
// a buyer signed in on one is signed in on the other (the cookies' key is in the store), a hold asked of one server's page and retried on the other's is
// one hold, paying it through the first is one order, and the API's client keys do not see the
// page's channel.
func TestShopAcrossServers(t *testing.T) {
	pg := pgtest.Start(t)
	bus := natstest.Start(t, 3)
	sim := startPaymentsSim(t, "--ledger", filepath.Join(t.TempDir(), "ledger.jsonl"))
	mail := filepath.Join(t.TempDir(), "mail")
	common := []string{"--db", pg, "--nats", strings.Join(bus.URLs(), ","), "--payments", sim.URL, "--mail-dir", mail}
	a := startServer(t, t.TempDir(), common...)
	b := startServer(t, t.TempDir(), common...)
	if !strings.Contains(a.logs.String(), "/shop/{show_id}") {
		t.Errorf("serve does not log the buyer's page:\n%s", a.logs)
	}
	admin := a.client(adminKey)
	admin.must(201, "PUT", "/v1/shows/gala", showBody(100, 600))

	// One cookie jar for both, as one browser behind one address: cookies do not tell ports apart.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := func(s *server) *client { return &client{t: t, base: s.URL, hc: hc} }
	if r := page(b).must(200, "GET", "/shop/gala", nil); !strings.Contains(string(r.Body), "Night at the Opera") {
		t.Fatalf("the page: %s", r.Body)
	}
	page(a).must(202, "POST", "/shop/gala/api/session", map[string]string{"email": "ann@example.com"}, "Origin", a.URL)
	if got := page(a).must(200, "GET", "/shop/gala/api/state", nil).json(t)["buyer"]; got != nil {
		t.Fatalf("signed in as %v before the code", got)
	}
	page(b).must(200, "POST", "/shop/gala/api/session/code", map[string]string{"code": mailedCode(t, mail, "ann@example.com")}, "Origin", b.URL)
	if got := page(a).must(200, "GET", "/shop/gala/api/state", nil).json(t)["buyer"]; got != "ann@example.com" {
		t.Fatalf("server a's buyer: %v", got)
	}

	hold := map[string]any{"tier_id": "ga", "quantity": 2}
	first := page(b).must(201, "POST", "/shop/gala/api/holds", hold, "Origin", b.URL, "Idempotency-Key", "click-1")
	again := page(a).must(201, "POST", "/shop/gala/api/holds", hold, "Origin", a.URL, "Idempotency-Key", "click-1")
	if string(first.Body) != string(again.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the click retried on the other server: %s, then %s", first.Body, again.Body)
	}
	id := first.json(t)["id"].(string)
	order := page(a).must(201, "POST", "/shop/gala/api/holds/"+id+"/confirm", map[string]string{"token": "tok_ok"},
		"Origin", a.URL, "Idempotency-Key", "pay-1").json(t)
	if order["status"] != "confirmed" || len(order["tickets"].([]any)) != 2 {
		t.Fatalf("the order: %v", order)
	}
	page(b).must(200, "GET", "/shop/gala/api/orders/"+order["id"].(string), nil)

	// The page's holds are its channel's: a client key does not see them; the admin does.
	a.client(a.newClientKey(t)).must(404, "GET", "/v1/holds/"+id, nil)
	show := admin.must(200, "GET", "/v1/shows/gala", nil).json(t)
	tier := show["tiers"].([]any)[0].(map[string]any)
	if tier["sold"] != float64(2) || tier["held"] != float64(0) {
		t.Errorf("tier after the page's purchase: %v", tier)
	}
}

// mailedCode returns the one sign-in code mailed to email as an .eml file in dir.
func mailedCode(t *testing.T, dir, email string) string {
	t.Helper()
	codes := mailtest.SignInCodes(t, dir, email)
	if len(codes) != 1 {
		t.Fatalf("%d sign-in codes went to %s, want 1: %v", len(codes), email, codes)
	}
	for _, code := range codes {
		return code
	}
	return ""
}
