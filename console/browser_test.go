package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"boxoffice"
	bt "boxoffice/internal/browsertest"
)

// consoleCookies returns the browser's cookies for the console.
func consoleCookies(t *testing.T, ctx context.Context, base string) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/console/"}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Cookies
}

// receiver is a webhook endpoint that fails until fixed, then accepts.
type receiver struct {
	fixed    atomic.Bool
	mu       sync.Mutex
	accepted []string // event ids
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rc.fixed.Load() {
		http.Error(w, "partner down", http.StatusInternalServerError)
		return
	}
	var body struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	rc.mu.Lock()
	rc.accepted = append(rc.accepted, body.ID)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestConsoleInBrowser drives the console in a real headless chromium against a real server
// (the sale service on SQLite, the payment simulator, the async side on embedded NATS): refused
// without the key and with a wrong one; signed in with the admin key; a tier's sold rises while
// purchases arrive through the API, without a reload; the failing partner endpoint's consumer
// shows as failing with its last error and dead letters; a dead letter made by it is replayed by
// a click and leaves the list; an order is found and cancelled after a confirmation; a POST
// without the CSRF token is refused; sign-out ends the session. With BOXOFFICE_SCREENSHOT=1 it
// saves docs/console.png.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	ctx := bt.New(t, 2*time.Minute)
	s := startServer(t, serverOptions{async: true})
	s.putShow(t, "gala", "floor", 200)
	rc := &receiver{}
	partner := httptest.NewServer(rc)
	t.Cleanup(partner.Close)
	if code := s.api(t, http.MethodPut, "/v1/webhook-endpoints/partner", map[string]any{"url": partner.URL + "/hook",
		"event_types": []string{boxoffice.EventOrderConfirmed}}, nil); code != http.StatusCreated {
		t.Fatalf("PUT webhook endpoint: %d", code)
	}

	// Without the key: the API under /console refuses, the page offers only the sign-in form.
	bt.Run(t, ctx, chromedp.Navigate(s.URL+"/console/api/state"))
	body := bt.Value(t, ctx, chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(body, "sign in") {
		t.Errorf("state without a session: %q", body)
	}
	bt.Run(t, ctx, chromedp.Navigate(s.URL+"/console"),
		chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), "not-the-admin-key"),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("signin-error")))
	if c := consoleCookies(t, ctx, s.URL); len(c) != 0 {
		t.Errorf("a wrong key set cookies: %+v", c)
	}
	if bt.Value(t, ctx, chromedp.Evaluate[bool](`!!document.querySelector("#shows")`)) {
		t.Error("the console shows its tables after a wrong key")
	}

	bt.Run(t, ctx, chromedp.SendKeys(chromedp.ID("key"), adminKey),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("shows")))
	where := bt.Value(t, ctx, chromedp.Location())
	if strings.Contains(where, adminKey) || strings.Contains(where, "key=") {
		t.Errorf("the key is in the URL: %s", where)
	}
	stored := bt.Value(t, ctx, chromedp.Evaluate[string](`JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`))
	if strings.Contains(stored, adminKey) || strings.Contains(stored, "boxoffice_console") {
		t.Errorf("the key or the session is readable by scripts: %s", stored)
	}
	cookies := consoleCookies(t, ctx, s.URL)
	if len(cookies) != 1 || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteStrict || cookies[0].Path != "/console" {
		t.Errorf("cookies after sign-in: %+v", cookies)
	}

	// A mark in the page's memory: if the page reloaded, it would be gone.
	bt.Value(t, ctx, chromedp.Evaluate[bool](`window.notReloaded = true`))
	sold := `td[data-show="gala"][data-tier="floor"][data-field="sold"]`
	bt.WaitText(t, ctx, sold, "0")
	for i := range 3 {
		s.purchase(t, "gala", "floor", fmt.Sprintf("fan%d@example.com", i), 1)
	}
	bt.WaitText(t, ctx, sold, "3")
	for i := 3; i < 8; i++ {
		s.purchase(t, "gala", "floor", fmt.Sprintf("fan%d@example.com", i), 2)
	}
	bt.WaitText(t, ctx, sold, "13")
	bt.WaitText(t, ctx, `td[data-show="gala"][data-tier="floor"][data-field="available"]`, "187")
	bt.WaitText(t, ctx, "#rate-orders", "8")
	bt.WaitText(t, ctx, `#order-counts td[data-status="confirmed"]`, "8")
	bt.WaitText(t, ctx, `#order-counts td[data-status="cancelled"]`, "0")

	// The waiting rooms: none yet, then a queue that drains as the room admits.
	bt.WaitContains(t, ctx, "#rooms", "No show has a waiting room.")
	s.putShow(t, "queued", "ga", 50)
	opens := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if code := s.api(t, http.MethodPut, "/v1/shows/queued/waiting-room", map[string]any{"opens_at": opens,
		"admit_per_second": 2, "admission": "auto", "auto_margin_percent": 50}, nil); code != http.StatusCreated {
		t.Fatalf("PUT waiting room: %d", code)
	}
	for i := range 5 {
		if code := s.api(t, http.MethodPost, "/v1/shows/queued/waiting-room/tickets",
			map[string]any{"buyer": map[string]string{"email": fmt.Sprintf("q%d@example.com", i)}}, nil); code != http.StatusCreated {
			t.Fatalf("join: %d", code)
		}
	}
	room := `#rooms tr[data-show="queued"]`
	bt.WaitText(t, ctx, room+` td[data-field="waiting"]`, "5")
	bt.WaitText(t, ctx, room+` td[data-field="admitted"]`, "0")
	bt.WaitContains(t, ctx, room, "auto, ≤ 2/s, +50%")
	if n := s.rooms.AdmitOnce(t.Context()); n != 2 {
		t.Fatalf("admitted %d at 2/s, want 2", n)
	}
	bt.WaitText(t, ctx, room+` td[data-field="waiting"]`, "3")
	bt.WaitText(t, ctx, room+` td[data-field="admitted"]`, "2")
	bt.WaitText(t, ctx, room+` td[data-field="state"]`, "admitting")

	// The operator pauses the room after a confirmation: nobody more is let through, its other
	// settings stay; then resumes it.
	bt.Run(t, ctx, chromedp.Click(chromedp.CSS(room+` button.pause`)),
		chromedp.WaitVisible(chromedp.ID("confirm-yes")),
		chromedp.Click(chromedp.ID("confirm-yes")))
	bt.WaitText(t, ctx, room+` td[data-field="state"]`, "paused")
	bt.WaitText(t, ctx, "#rooms-message", "The waiting room of queued is paused.")
	if got, err := s.rooms.Get(t.Context(), "queued"); err != nil || !got.Paused || got.AdmitPerSecond != 2 || got.Admission != "auto" {
		t.Fatalf("the room after the console paused it: %+v, %v; want paused, its settings kept", got, err)
	}
	if n := s.rooms.AdmitOnce(t.Context()); n != 0 {
		t.Fatalf("a paused room admitted %d", n)
	}
	bt.WaitText(t, ctx, room+` button.pause`, "Resume…")
	bt.Run(t, ctx, chromedp.Click(chromedp.CSS(room+` button.pause`)),
		chromedp.WaitVisible(chromedp.ID("confirm-yes")),
		chromedp.Click(chromedp.ID("confirm-yes")))
	bt.WaitText(t, ctx, room+` td[data-field="state"]`, "admitting")
	if got, err := s.rooms.Get(t.Context(), "queued"); err != nil || got.Paused {
		t.Fatalf("the room after the console resumed it: %+v, %v", got, err)
	}

	// Every confirmed order failed at the partner: eight dead letters, listed with their error.
	var dls []boxoffice.DeadLetter
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var err error
		if dls, err = s.async.ListDeadLetters(t.Context(), 0); err != nil || len(dls) != 8 {
			return fmt.Errorf("dead letters %d, %v; want 8", len(dls), err)
		}
		return nil
	})
	bt.WaitText(t, ctx, "#dlq-count", "(8)")
	bt.WaitContains(t, ctx, `#dl-`+dls[0].ID+` td.err`, "500")
	// The partner's consumer shows them, its receiver's answer as its last error, and nothing
	// left behind in the stream; the receipts went out, so email is fine.
	bt.WaitText(t, ctx, `#consumer-partner td[data-field="state"]`, "failing")
	bt.WaitText(t, ctx, `#consumer-partner td[data-field="dead_letters"]`, "8")
	bt.WaitText(t, ctx, `#consumer-partner td[data-field="pending"]`, "0")
	bt.WaitContains(t, ctx, `#consumer-partner td[data-field="last_error"]`, "500")
	bt.WaitText(t, ctx, `#consumer-email td[data-field="state"]`, "ok")
	// The relay's durable checkpoint catches up with the outbox once the stream has synced.
	bt.WaitContains(t, ctx, "#relay", "lag 0 events")

	// Search by email and cancel after the confirmation dialog.
	bt.Run(t, ctx, chromedp.SendKeys(chromedp.ID("order-q"), "fan4@example.com"),
		chromedp.Click(chromedp.ID("order-search-button")),
		chromedp.WaitVisible(chromedp.CSS(`#orders button.cancel`)))
	if os.Getenv("BOXOFFICE_SCREENSHOT") == "1" {
		screenshot(t, ctx)
	}
	bt.Run(t, ctx, chromedp.Click(chromedp.CSS(`#orders button.cancel`)),
		chromedp.WaitVisible(chromedp.ID("confirm-yes")),
		chromedp.Click(chromedp.ID("confirm-yes")))
	bt.WaitText(t, ctx, `#orders td[data-field="status"]`, "cancelled")
	bt.WaitText(t, ctx, sold, "11")
	bt.WaitText(t, ctx, `#order-counts td[data-status="confirmed"]`, "7")
	bt.WaitText(t, ctx, `#order-counts td[data-status="cancelled"]`, "1")

	// The partner is back: replaying the oldest dead letter by a click delivers it and takes it
	// off the list, and it stays off as the view refreshes.
	rc.fixed.Store(true)
	first := dls[0]
	bt.Run(t, ctx, chromedp.Click(chromedp.CSS(`button.replay[data-id="`+first.ID+`"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#dl-`+first.ID)))
	bt.WaitText(t, ctx, "#dlq-count", "(7)")
	rc.mu.Lock()
	accepted := append([]string(nil), rc.accepted...)
	rc.mu.Unlock()
	if len(accepted) != 1 || accepted[0] != first.EventID {
		t.Errorf("the partner accepted %v, want %s once", accepted, first.EventID)
	}
	left, err := s.async.ListDeadLetters(t.Context(), 0)
	if err != nil || len(left) != 7 || left[0].ID == first.ID {
		t.Errorf("dead letters after the replay: %d %v", len(left), err)
	}

	// A POST from the page without the token is refused, and changes nothing.
	status, err := bt.Eval[int](ctx, `fetch("/console/api/dead-letters/`+left[0].ID+`/replay", {method: "POST"}).then(r => r.status)`)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusForbidden {
		t.Errorf("POST without the CSRF token: %d, want 403", status)
	}
	if after, _ := s.async.ListDeadLetters(t.Context(), 0); len(after) != 7 {
		t.Errorf("a refused replay changed the queue: %d dead letters", len(after))
	}

	if !bt.Value(t, ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("the page reloaded while the numbers changed")
	}

	bt.Run(t, ctx, chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("key")))
	if c := consoleCookies(t, ctx, s.URL); len(c) != 0 {
		t.Errorf("cookies after sign-out: %+v", c)
	}
	bt.Run(t, ctx, chromedp.Navigate(s.URL+"/console/api/state"))
	body = bt.Value(t, ctx, chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(body, "sign in") {
		t.Errorf("state after sign-out: %q", body)
	}
}

// screenshot saves the page as docs/console.png, for the README.
func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	bt.Run(t, ctx, chromedp.WaitVisible(chromedp.CSS("#chart-rate polyline")))
	png := bt.Value(t, ctx, chromedp.FullScreenshot(100))
	path := filepath.Join("..", "docs", "console.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}
