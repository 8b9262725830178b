package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"boxoffice"
)

// signIn posts the admin key to the sign-in form with c and returns the CSRF token of the page
// it lands on.
func signIn(t *testing.T, s *server, c *http.Client) string {
	t.Helper()
	resp, err := c.PostForm(s.URL+"/console/signin", url.Values{"key": {adminKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	code, body := get(t, c, s.URL+"/console/")
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("console page after sign-in: %d, no CSRF token in %q", code, body)
	}
	if strings.Contains(body, adminKey) {
		t.Error("the console page contains the admin key")
	}
	return m[1]
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends a console action with the given headers.
func post(t *testing.T, c *http.Client, u string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSignInSessionAndCSRF: without the key nothing is served and nothing is set; a wrong key or
// a client's key is a 401 page without a cookie; the admin key gives a session cookie that is
// HttpOnly, SameSite=Strict, scoped to /console and is not the key; actions need the session's
// CSRF token and the console's own origin; sign-out ends the session.
func TestSignInSessionAndCSRF(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if code := s.api(t, http.MethodPost, "/v1/api-keys", map[string]any{"role": "client", "label": "partner"}, &key); code != http.StatusCreated {
		t.Fatalf("create key: %d", code)
	}
	c := browserClient(t)

	code, body := get(t, c, s.URL+"/console")
	if code != http.StatusOK || !strings.Contains(body, `name="key"`) || strings.Contains(body, "csrf-token") {
		t.Errorf("GET /console signed out: %d %q, want the sign-in form", code, body)
	}
	for _, path := range []string{"/console/api/state", "/console/api/keys", "/console/api/orders?q=a@b.c", "/console/api/stream"} {
		if code, _ := get(t, c, s.URL+path); code != http.StatusUnauthorized {
			t.Errorf("GET %s signed out: %d, want 401", path, code)
		}
	}
	if code, _ := post(t, c, s.URL+"/console/api/keys/"+key.ID+"/revoke", nil); code != http.StatusUnauthorized {
		t.Errorf("revoke signed out: %d, want 401", code)
	}
	for _, k := range []string{"", "wrong-key", key.Key, adminKey + "x"} {
		resp, err := c.PostForm(s.URL+"/console/signin", url.Values{"key": {k}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(string(b), `role="alert"`) {
			t.Errorf("sign-in with %q: %d, cookies %v; want a 401 page that sets nothing", k, resp.StatusCode, resp.Cookies())
		}
	}

	resp, err := c.PostForm(s.URL+"/console/signin", url.Values{"key": {adminKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("sign-in set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console" || len(ck.Value) < 40 ||
		strings.Contains(ck.Value, adminKey) || ck.MaxAge != 0 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console, a random value, no key, a session cookie", ck)
	}
	if loc := resp.Header.Get("Location"); strings.Contains(loc, adminKey) || loc != "/console/" {
		t.Errorf("redirect to %q", loc)
	}
	csrf := signIn(t, s, c)
	if code, body := get(t, c, s.URL+"/console/api/keys"); code != http.StatusOK || !strings.Contains(body, key.ID) {
		t.Errorf("keys: %d %s", code, body)
	}

	revoke := s.URL + "/console/api/keys/" + key.ID + "/revoke"
	for name, h := range map[string]map[string]string{
		"no token":     nil,
		"wrong token":  {"X-CSRF-Token": csrf + "x"},
		"other origin": {"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
	} {
		if code, _ := post(t, c, revoke, h); code != http.StatusForbidden {
			t.Errorf("revoke with %s: %d, want 403", name, code)
		}
	}
	if _, err := s.svc.Authenticate(t.Context(), key.Key); err != nil {
		t.Fatalf("the key was revoked by a refused request: %v", err)
	}
	origin := s.URL
	if code, body := post(t, c, revoke, map[string]string{"X-CSRF-Token": csrf, "Origin": origin}); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if _, err := s.svc.Authenticate(t.Context(), key.Key); boxoffice.ErrorCode(err) != boxoffice.EUNAUTHORIZED {
		t.Errorf("after revoke the key authenticates: %v", err)
	}

	// Pausing a waiting room is an action like the others: refused without the token, a 404 for
	// a show without a room, and a repeat of a pause is the same state.
	s.putShow(t, "queued", "ga", 5)
	opens := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if code := s.api(t, http.MethodPut, "/v1/shows/queued/waiting-room", map[string]any{"opens_at": opens, "admit_per_second": 5}, nil); code != http.StatusCreated {
		t.Fatalf("PUT waiting room: %d", code)
	}
	pause := s.URL + "/console/api/waiting-rooms/queued/pause"
	if code, _ := post(t, c, pause, nil); code != http.StatusForbidden {
		t.Errorf("pause without the token: %d, want 403", code)
	}
	if room, err := s.rooms.Get(t.Context(), "queued"); err != nil || room.Paused {
		t.Fatalf("a refused pause paused the room: %+v, %v", room, err)
	}
	withToken := map[string]string{"X-CSRF-Token": csrf, "Origin": origin}
	for range 2 {
		if code, body := post(t, c, pause, withToken); code != http.StatusOK || !strings.Contains(body, `"paused":true`) {
			t.Fatalf("pause: %d %s", code, body)
		}
	}
	if code, body := post(t, c, s.URL+"/console/api/waiting-rooms/nothing/pause", withToken); code != http.StatusNotFound {
		t.Errorf("pause of a show without a room: %d %s, want 404", code, body)
	}
	if code, body := post(t, c, s.URL+"/console/api/waiting-rooms/queued/resume", withToken); code != http.StatusOK || !strings.Contains(body, `"paused":false`) {
		t.Fatalf("resume: %d %s", code, body)
	}

	// A sign-out without the token is refused; with it the session is gone.
	resp, err = c.PostForm(s.URL+"/console/signout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the token: %d, want 403", resp.StatusCode)
	}
	resp, err = c.PostForm(s.URL+"/console/signout", url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d, want 303", resp.StatusCode)
	}
	if code, _ := get(t, c, s.URL+"/console/api/state"); code != http.StatusUnauthorized {
		t.Errorf("state after sign-out: %d, want 401", code)
	}
}

// state reads the live view once.
func state(t *testing.T, s *server, c *http.Client) (st struct {
	Shows []*boxoffice.Show `json:"shows"`
	Rate  struct {
		Orders  int     `json:"orders"`
		Tickets int     `json:"tickets"`
		P99     float64 `json:"p99_ms"`
	} `json:"rate"`
	Relay *struct {
		Head    int64 `json:"head"`
		Relayed int64 `json:"relayed"`
	} `json:"relay"`
}) {
	t.Helper()
	code, body := get(t, c, s.URL+"/console/api/state")
	if code != http.StatusOK {
		t.Fatalf("state: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLiveViewAndCancel: purchases show in the tier's counts and in the minute's rate; an order
// is found by id and by its buyer's email; a cancel with the page's key goes through the sale
// service once (a retry answers the same) and gives the tickets back.
func TestLiveViewAndCancel(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.putShow(t, "gala", "floor", 10)
	// Orders before the first page: the view starts from the feed's head, found by search, and
	// reads back the last minute, so they are in the chart.
	var orders []*boxoffice.Order
	for i := range 3 {
		orders = append(orders, s.purchase(t, "gala", "floor", fmt.Sprintf("buyer%d@example.com", i), 2))
	}
	c := browserClient(t)
	csrf := signIn(t, s, c)
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st := state(t, s, c)
		if len(st.Shows) != 1 || st.Shows[0].Tiers[0].Sold != 6 || st.Rate.Orders != 3 || st.Rate.Tickets != 6 {
			return fmt.Errorf("state %+v, want 6 sold in 3 orders", st)
		}
		return nil
	})
	// And the ones while it watches.
	orders = append(orders, s.purchase(t, "gala", "floor", "buyer3@example.com", 1))
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st := state(t, s, c)
		if st.Shows[0].Tiers[0].Sold != 7 || st.Rate.Orders != 4 || st.Rate.Tickets != 7 || st.Rate.P99 <= 0 {
			return fmt.Errorf("state %+v, want 7 sold in 4 orders", st)
		}
		return nil
	})

	for _, q := range []string{orders[1].ID, "BUYER1@example.com"} {
		code, body := get(t, c, s.URL+"/console/api/orders?q="+url.QueryEscape(q))
		var res struct{ Orders []*boxoffice.Order }
		_ = json.Unmarshal([]byte(body), &res)
		if code != http.StatusOK || len(res.Orders) != 1 || res.Orders[0].ID != orders[1].ID {
			t.Errorf("search %q: %d %s, want order %s", q, code, body, orders[1].ID)
		}
	}

	cancel := s.URL + "/console/api/orders/" + orders[1].ID + "/cancel"
	if code, _ := post(t, c, cancel, map[string]string{"X-CSRF-Token": csrf}); code != http.StatusBadRequest {
		t.Errorf("cancel without an Idempotency-Key: %d, want 400", code)
	}
	h := map[string]string{"X-CSRF-Token": csrf, "Idempotency-Key": "console-test-1"}
	for i := range 2 {
		code, body := post(t, c, cancel, h)
		var o boxoffice.Order
		_ = json.Unmarshal([]byte(body), &o)
		if code != http.StatusOK || o.Status != boxoffice.OrderCancelled {
			t.Fatalf("cancel %d: %d %s", i, code, body)
		}
	}
	show, err := s.svc.GetShow(t.Context(), "gala")
	if err != nil {
		t.Fatal(err)
	}
	if got := show.Tiers[0].Sold; got != 5 {
		t.Errorf("sold after one cancel = %d, want 5", got)
	}
}

// clock is a settable clock for the console's sessions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestSessionExpires: a session that saw no request for its idle time is gone, and its cookie
// alone gets nothing; one that keeps being used lives on.
func TestSessionExpires(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	s := startServer(t, serverOptions{now: clk.Now})
	c := browserClient(t)
	signIn(t, s, c)
	clk.Add(50 * time.Minute)
	if code, _ := get(t, c, s.URL+"/console/api/keys"); code != http.StatusOK {
		t.Fatalf("keys within the idle time: %d", code)
	}
	clk.Add(50 * time.Minute) // 100 minutes since sign-in, 50 since the last request
	if code, _ := get(t, c, s.URL+"/console/api/keys"); code != http.StatusOK {
		t.Fatalf("keys within the idle time of the last request: %d", code)
	}
	clk.Add(61 * time.Minute)
	if code, _ := get(t, c, s.URL+"/console/api/keys"); code != http.StatusUnauthorized {
		t.Errorf("keys after the idle time: %d, want 401", code)
	}
	if code, body := get(t, c, s.URL+"/console/"); !strings.Contains(body, `name="key"`) {
		t.Errorf("page after the idle time: %d, want the sign-in form", code)
	}
}

// TestConsumersState: with the async side, the live view lists the email consumer and a webhook
// endpoint's consumer; an endpoint that answered 410 Gone shows as disabled with the reason the
// store keeps, its consumer (kept for when it is enabled again) and the 410 as its last error.
func TestConsumersState(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{async: true})
	s.putShow(t, "gala", "floor", 10)
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "we left", http.StatusGone)
	}))
	t.Cleanup(gone.Close)
	if code := s.api(t, http.MethodPut, "/v1/webhook-endpoints/old-partner", map[string]any{"url": gone.URL + "/hook",
		"event_types": []string{boxoffice.EventOrderConfirmed}}, nil); code != http.StatusCreated {
		t.Fatalf("PUT webhook endpoint: %d", code)
	}
	s.purchase(t, "gala", "floor", "fan@example.com", 1)
	c := browserClient(t)
	signIn(t, s, c)

	type row struct {
		Name           string `json:"name"`
		Endpoint       string `json:"endpoint"`
		State          string `json:"state"`
		DisabledReason string `json:"disabled_reason"`
		LastError      string `json:"last_error"`
	}
	var rows []row
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		code, body := get(t, c, s.URL+"/console/api/state")
		var st struct {
			Consumers []row `json:"consumers"`
		}
		if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
			return fmt.Errorf("state: %d %v %s", code, err, body)
		}
		rows = st.Consumers
		if len(rows) != 2 || rows[0].Name != "email" || rows[1].Endpoint != "old-partner" || rows[1].State != "disabled" {
			return fmt.Errorf("consumers %+v, want email and old-partner disabled", rows)
		}
		// The store says disabled as the delivery ends; the runner notes its error just after.
		if !strings.Contains(rows[1].LastError, "410") {
			return fmt.Errorf("old-partner's last error %q, want the 410", rows[1].LastError)
		}
		return nil
	})
	if p := rows[1]; p.Name == "" || p.DisabledReason == "" || !strings.Contains(p.LastError, "410") {
		t.Errorf("disabled endpoint's row %+v: want its consumer, the reason and the 410", p)
	}
}

// TestExpiringHolds: a hold that expires within the minute is listed with its buyer, one that
// expires later is not, and a hold that was confirmed leaves the list.
func TestExpiringHolds(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	for _, show := range []struct {
		id  string
		ttl int
	}{{"soon", 30}, {"later", 600}} {
		body := map[string]any{"name": "Show " + show.id, "starts_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
			"hold_ttl_seconds": show.ttl, "tiers": []map[string]any{{"id": "ga", "name": "GA", "capacity": 10,
				"price": map[string]any{"amount": 5000, "currency": "EUR"}}}}
		if code := s.api(t, http.MethodPut, "/v1/shows/"+show.id, body, nil); code != http.StatusCreated {
			t.Fatalf("PUT show %s: %d", show.id, code)
		}
	}
	hold := func(show, email string) *boxoffice.Hold {
		var h boxoffice.Hold
		if code := s.api(t, http.MethodPost, "/v1/shows/"+show+"/holds", map[string]any{"tier_id": "ga", "quantity": 2,
			"buyer": map[string]any{"email": email}}, &h); code != http.StatusCreated {
			t.Fatalf("hold on %s: %d", show, code)
		}
		return &h
	}
	soon, confirmed := hold("soon", "soon@example.com"), hold("soon", "paid@example.com")
	hold("later", "later@example.com")
	if code := s.api(t, http.MethodPost, "/v1/holds/"+confirmed.ID+"/confirm", map[string]any{"payment": map[string]any{"token": "tok_ok"}}, nil); code != http.StatusCreated {
		t.Fatalf("confirm: %d", code)
	}
	c := browserClient(t)
	signIn(t, s, c)
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body := get(t, c, s.URL+"/console/api/state")
		var st struct {
			Holds []*boxoffice.Hold `json:"expiring_holds"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			return err
		}
		if len(st.Holds) != 1 || st.Holds[0].ID != soon.ID || st.Holds[0].Buyer.Email != "soon@example.com" {
			return fmt.Errorf("expiring holds %+v, want only %s", st.Holds, soon.ID)
		}
		return nil
	})
}
