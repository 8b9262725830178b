package shop_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/internal/checkfor"
	"boxoffice/sale"
	"boxoffice/shop"
)

// TestPage serves the show's page with its tiers, the embedded script, and a 404 page for a show
// that does not exist; every answer forbids framing and caching.
func TestPage(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	get := func(path string) (int, http.Header, string) {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, body := get("/shop/gala")
	if code != http.StatusOK || !strings.Contains(body, "Show gala") || !strings.Contains(body, `value="stalls"`) ||
		!strings.Contains(body, "65.00 EUR") {
		t.Errorf("page: %d %s", code, body)
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Errorf("page headers: %v", h)
	}
	if code, _, body := get("/shop/_static/shop.js"); code != http.StatusOK || !strings.Contains(body, "Idempotency-Key") {
		t.Errorf("script: %d", code)
	}
	if code, _, body := get("/shop/nope"); code != http.StatusNotFound || !strings.Contains(body, "no such show") {
		t.Errorf("unknown show: %d %s", code, body)
	}
	if code, _, _ := get("/shop/gala/api/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown API path: %d", code)
	}
}

// TestSessionCookie: the session is a signed cookie (HttpOnly, SameSite=Strict, Path=/shop); a
// tampered one, or one signed by a shop with another secret, signs nobody in; one signed by
// another server on the same store does, since the secret lives in the store.
func TestSessionCookie(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	b := newBuyer(t, s, "gala")
	hold := map[string]any{"tier_id": "floor", "quantity": 1}
	if a := b.hold("k1", hold); a.status != http.StatusUnauthorized || a.code() != boxoffice.EUNAUTHORIZED {
		t.Fatalf("hold without a session: %d %s", a.status, a.body)
	}
	if a := b.do(http.MethodPost, "/session", map[string]string{"email": "not an address"}); a.status != http.StatusBadRequest {
		t.Errorf("sign in with a bad address: %d %s", a.status, a.body)
	}
	b.signIn("ann@example.com")
	u, _ := url.Parse(s.URL + "/shop/gala")
	var session *http.Cookie
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "boxoffice_shop" {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie after sign-in")
	}
	// The jar does not tell the attributes back: read them from a fresh sign-in's headers.
	a := b.do(http.MethodPost, "/session/code", map[string]string{"code": b.askCode("ann@example.com")})
	set := strings.Join(a.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"boxoffice_shop=", "Path=/shop;", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(set, want) {
			t.Errorf("Set-Cookie %q lacks %q", set, want)
		}
	}

	// A cookie that names another buyer with the old signature, and one with a flipped MAC.
	payload, mac, _ := strings.Cut(session.Value, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), "ann@", "bob@", 1))) + "." + mac
	first := "A"
	if mac[0] == 'A' {
		first = "B"
	}
	flipped := payload + "." + first + mac[1:]
	for name, value := range map[string]string{"forged": forged, "flipped": flipped, "garbage": "x.y"} {
		tampered := newBuyer(t, s, "gala")
		tampered.http.Jar.SetCookies(u, []*http.Cookie{{Name: "boxoffice_shop", Value: value, Path: "/shop"}})
		if a := tampered.hold("k-"+name, hold); a.status != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d %s", name, a.status, a.body)
		}
		var st struct{ Buyer *string }
		tampered.do(http.MethodGet, "/state", nil).decode(t, &st)
		if st.Buyer != nil {
			t.Errorf("%s cookie signs in %q", name, *st.Buyer)
		}
	}
	if a := b.hold("k-good", hold); a.status != http.StatusCreated {
		t.Errorf("hold with the real cookie: %d %s", a.status, a.body)
	}

	// Another server on the same store accepts the cookie; a shop with a secret of its own does not.
	for _, tc := range []struct {
		name    string
		secrets shop.Secrets
		want    int
	}{{"same store", s.store, http.StatusOK}, {"own secret", nil, http.StatusUnauthorized}} {
		other, err := shop.New(context.Background(), s.svc, s.rooms, shop.Options{Secrets: tc.secrets})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(bohttp.NewHandler(s.svc, bohttp.Options{Shop: other}))
		b2 := newBuyer(t, &server{URL: ts.URL}, "gala")
		ou, _ := url.Parse(ts.URL + "/shop/gala")
		b2.http.Jar.SetCookies(ou, []*http.Cookie{{Name: "boxoffice_shop", Value: session.Value, Path: "/shop"}})
		if a := b2.do(http.MethodGet, "/queue", nil); (a.status == http.StatusUnauthorized) != (tc.want == http.StatusUnauthorized) {
			t.Errorf("%s: the cookie of another server answers %d %s", tc.name, a.status, a.body)
		}
		ts.Close()
	}
}

// TestOtherBuyersHold: a hold or an order of another buyer, or of another sales channel, is 404
// to every route, exactly as one that does not exist, and stays as it was.
func TestOtherBuyersHold(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	s.seatedShow(t, "other", 10)
	ann, bob := newBuyer(t, s, "gala"), newBuyer(t, s, "gala")
	ann.signIn("ann@example.com")
	bob.signIn("bob@example.com")

	var h boxoffice.Hold
	a := ann.hold("ann-1", map[string]any{"tier_id": "stalls", "seats": []string{"A-1-2", "A-1-3"}})
	if a.status != http.StatusCreated {
		t.Fatalf("ann's hold: %d %s", a.status, a.body)
	}
	a.decode(t, &h)
	missing := bob.do(http.MethodGet, "/holds/hld_doesnotexist", nil)
	if missing.status != http.StatusNotFound {
		t.Fatalf("a hold that does not exist: %d", missing.status)
	}
	for name, got := range map[string]answer{
		"get":     bob.do(http.MethodGet, "/holds/"+h.ID, nil),
		"confirm": bob.do(http.MethodPost, "/holds/"+h.ID+"/confirm", map[string]string{"token": "tok_ok"}, "Idempotency-Key", "bob-pay"),
		"release": bob.do(http.MethodPost, "/holds/"+h.ID+"/release", map[string]string{}),
	} {
		if got.status != http.StatusNotFound || got.code() != boxoffice.ENOTFOUND || strings.Contains(string(got.body), "ann@") {
			t.Errorf("bob's %s of ann's hold: %d %s", name, got.status, got.body)
		}
	}
	// The page of another show does not reach it either, even for ann.
	if got := newBuyerAs(t, s, "other", "ann@example.com").do(http.MethodGet, "/holds/"+h.ID, nil); got.status != http.StatusNotFound {
		t.Errorf("ann's hold through another show's page: %d", got.status)
	}
	if got, _ := s.svc.GetHold(context.Background(), boxoffice.AdminPrincipal, h.ID); got.Status != boxoffice.HoldActive {
		t.Errorf("ann's hold after bob's tries: %s", got.Status)
	}

	// Ann pays; her order is hers alone. The address compares as the sale compares buyers.
	pay := ann.do(http.MethodPost, "/holds/"+h.ID+"/confirm", map[string]string{"token": "tok_ok"}, "Idempotency-Key", "ann-pay")
	if pay.status != http.StatusCreated {
		t.Fatalf("ann pays: %d %s", pay.status, pay.body)
	}
	var o boxoffice.Order
	pay.decode(t, &o)
	if got := newBuyerAs(t, s, "gala", "ANN@example.com").do(http.MethodGet, "/orders/"+o.ID, nil); got.status != http.StatusOK {
		t.Errorf("ann's order, address in capitals: %d", got.status)
	}
	if got := bob.do(http.MethodGet, "/orders/"+o.ID, nil); got.status != http.StatusNotFound {
		t.Errorf("bob reads ann's order: %d %s", got.status, got.body)
	}

	// A hold made through the REST API by a client key, for bob's own address, is another
	// channel's: the page does not see it.
	p := &boxoffice.Principal{KeyID: "key_partner", Role: boxoffice.RoleClient}
	idem, _ := sale.NewIdem(p.KeyID, "POST /v1/shows/{show_id}/holds", "/v1/shows/gala/holds", "partner-1", "x")
	res, _, err := s.svc.CreateHold(context.Background(), p, idem, sale.HoldInput{ShowID: "gala", TierID: "floor", Quantity: 1,
		Buyer: sale.BuyerInput{Email: "bob@example.com"}})
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("partner's hold: %v %+v", err, res)
	}
	var ph boxoffice.Hold
	answer{body: res.Body}.decode(t, &ph)
	if got := bob.do(http.MethodGet, "/holds/"+ph.ID, nil); got.status != http.StatusNotFound {
		t.Errorf("bob reads a partner channel's hold through the page: %d", got.status)
	}
}

// newBuyerAs is a new browser signed in as email on the page of show.
func newBuyerAs(t *testing.T, s *server, show, email string) *buyerClient {
	t.Helper()
	b := newBuyer(t, s, show)
	b.signIn(email)
	return b
}

// TestCrossOrigin: an action from another origin, or not in JSON (what another site's form
// sends), is refused and changes nothing, whatever cookies come with it.
func TestCrossOrigin(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	b := newBuyerAs(t, s, "gala", "ann@example.com")
	body := map[string]any{"tier_id": "floor", "quantity": 2}
	if a := b.do(http.MethodPost, "/holds", body, "Idempotency-Key", "x1", "Origin", "http://evil.example"); a.status != http.StatusForbidden {
		t.Errorf("cross-origin hold: %d %s", a.status, a.body)
	}
	if a := b.do(http.MethodPost, "/session", map[string]string{"email": "eve@example.com"}, "Origin", "http://evil.example"); a.status != http.StatusForbidden {
		t.Errorf("cross-origin sign-in: %d %s", a.status, a.body)
	}
	if a := b.do(http.MethodPost, "/holds", `tier_id=floor&quantity=2`, "Idempotency-Key", "x2",
		"Content-Type", "application/x-www-form-urlencoded"); a.status != http.StatusUnsupportedMediaType {
		t.Errorf("form-encoded hold: %d %s", a.status, a.body)
	}
	if a := b.do(http.MethodPost, "/holds", body); a.status != http.StatusBadRequest || a.code() != boxoffice.EIDEMINVALID {
		t.Errorf("hold without an Idempotency-Key: %d %s", a.status, a.body)
	}
	show, err := s.svc.GetShow(context.Background(), "gala")
	if err != nil {
		t.Fatal(err)
	}
	if ft := show.Tier("floor"); ft.Held != 0 {
		t.Errorf("refused requests held %d tickets", ft.Held)
	}
}

// TestIdempotentHold: a click retried with its key answers the same hold, marked replayed, and
// holds once; the key with another body is refused; the same key from another buyer is that
// buyer's own action; a retried Pay charges once.
func TestIdempotentHold(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	ann := newBuyerAs(t, s, "gala", "ann@example.com")
	body := map[string]any{"tier_id": "floor", "quantity": 2}
	first := ann.hold("click-1", body)
	again := ann.hold("click-1", body)
	if first.status != http.StatusCreated || again.status != http.StatusCreated || string(first.body) != string(again.body) {
		t.Fatalf("a retried hold: %d %s, then %d %s", first.status, first.body, again.status, again.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Error("the retry is not marked replayed")
	}
	if a := ann.hold("click-1", map[string]any{"tier_id": "floor", "quantity": 3}); a.status != http.StatusUnprocessableEntity || a.code() != boxoffice.EIDEMREUSED {
		t.Errorf("the key with another body: %d %s", a.status, a.body)
	}
	bob := newBuyerAs(t, s, "gala", "bob@example.com")
	theirs := bob.hold("click-1", body)
	if theirs.status != http.StatusCreated || theirs.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("bob's click with ann's key: %d %s", theirs.status, theirs.body)
	}
	var h, hb boxoffice.Hold
	first.decode(t, &h)
	theirs.decode(t, &hb)
	if hb.ID == h.ID || hb.Buyer.Email != "bob@example.com" {
		t.Errorf("bob got %+v", hb)
	}
	show, _ := s.svc.GetShow(context.Background(), "gala")
	if held := show.Tier("floor").Held; held != 4 {
		t.Errorf("held %d tickets, want 4 (two holds of two)", held)
	}

	pay := func() answer {
		return ann.do(http.MethodPost, "/holds/"+h.ID+"/confirm", map[string]string{"token": "tok_ok"}, "Idempotency-Key", "pay-1")
	}
	p1, p2 := pay(), pay()
	if p1.status != http.StatusCreated || string(p1.body) != string(p2.body) || p2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a retried Pay: %d %s, then %d %s", p1.status, p1.body, p2.status, p2.body)
	}
	show, _ = s.svc.GetShow(context.Background(), "gala")
	if ft := show.Tier("floor"); ft.Sold != 2 || ft.Held != 2 {
		t.Errorf("after a retried Pay: sold %d held %d, want 2 and 2", ft.Sold, ft.Held)
	}
	if a := ann.do(http.MethodPost, "/holds/"+h.ID+"/confirm", map[string]string{"token": "tok_ok"}, "Idempotency-Key", "pay-2"); a.status != http.StatusConflict || a.code() != boxoffice.EHOLDCONFIRMED {
		t.Errorf("a second Pay of a paid hold: %d %s", a.status, a.body)
	}
}

// TestWaitingRoomAPI: on a show with a waiting room, a hold before the queue lets the buyer
// through is 403 not_admitted, as on the REST API; the page's queue shows the place and, once
// admitted, holds with the token the cookie keeps.
func TestWaitingRoomAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	s.waitingRoom(t, "gala")
	s.seatedShow(t, "open", 10)
	ann := newBuyerAs(t, s, "gala", "ann@example.com")
	for show, want := range map[string]bool{"gala": true, "open": false} {
		var st struct {
			WaitingRoom bool `json:"waiting_room"`
		}
		newBuyer(t, s, show).do(http.MethodGet, "/state", nil).decode(t, &st)
		if st.WaitingRoom != want {
			t.Errorf("show %s: waiting_room %v, want %v", show, st.WaitingRoom, want)
		}
	}
	body := map[string]any{"tier_id": "floor", "quantity": 1}
	if a := ann.hold("h1", body); a.status != http.StatusForbidden || a.code() != boxoffice.ENOTADMITTED {
		t.Fatalf("hold before joining: %d %s", a.status, a.body)
	}
	if a := ann.do(http.MethodGet, "/queue", nil); a.status != http.StatusNotFound {
		t.Fatalf("queue before joining: %d %s", a.status, a.body)
	}
	var tk struct {
		Status    string
		Position  *int
		Token     string
		PollAfter int `json:"poll_after_seconds"`
	}
	ann.do(http.MethodPost, "/queue", map[string]any{}).decode(t, &tk)
	if tk.Status != "waiting" || tk.Token != "" {
		t.Fatalf("joined: %+v (the token stays in the cookie)", tk)
	}
	ann.do(http.MethodGet, "/queue", nil).decode(t, &tk)
	// First in the queue: the page reads its place again in a second.
	if tk.Position == nil || *tk.Position != 1 || tk.PollAfter != 1 {
		t.Fatalf("place: %+v", tk)
	}
	if a := ann.hold("h2", body); a.status != http.StatusForbidden {
		t.Fatalf("hold while waiting: %d %s", a.status, a.body)
	}
	admitted := 0
	for range 20 { // the room lets one through a second; a fresh room has earned one already
		if admitted += s.rooms.AdmitOnce(context.Background()); admitted > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if admitted != 1 {
		t.Fatalf("admitted %d", admitted)
	}
	ann.do(http.MethodGet, "/queue", nil).decode(t, &tk)
	if tk.Status != "admitted" {
		t.Fatalf("after admission: %+v", tk)
	}
	if a := ann.hold("h3", body); a.status != http.StatusCreated {
		t.Fatalf("hold once admitted: %d %s", a.status, a.body)
	}
	// Bob, signed in on another browser, is not let through by ann's admission.
	bob := newBuyerAs(t, s, "gala", "bob@example.com")
	if a := bob.hold("h4", body); a.status != http.StatusForbidden {
		t.Errorf("bob's hold on ann's admission: %d %s", a.status, a.body)
	}
}

// TestQueueSoldOut: while every ticket of the show is held, a buyer waiting in its queue is told
// so by the page's queue (sold_out); once the hold is released, no longer.
func TestQueueSoldOut(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	ann, h := s.heldOut(t, "tiny")

	bob := newBuyerAs(t, s, "tiny", "bob@example.com")
	var tk struct {
		Status  string
		SoldOut bool `json:"sold_out"`
	}
	bob.do(http.MethodPost, "/queue", map[string]any{}).decode(t, &tk)
	if tk.Status != "waiting" || !tk.SoldOut {
		t.Fatalf("bob joins with the one ticket held: %+v; want waiting, sold_out", tk)
	}
	if a := ann.do(http.MethodPost, "/holds/"+h.ID+"/release", map[string]string{}); a.status >= 300 {
		t.Fatalf("release: %d %s", a.status, a.body)
	}
	// The tickets left are read at most once a second for all the show's waiting tickets.
	checkfor.Until(t, 5*time.Second, 100*time.Millisecond, "bob's ticket to stop saying sold out", func() bool {
		tk.SoldOut = false // absent when false: decoding would keep the last value
		bob.do(http.MethodGet, "/queue", nil).decode(t, &tk)
		return tk.Status == "waiting" && !tk.SoldOut
	})
}

// TestChannelIsNoKey: the page's sales channel can be no API key's, stored ("key_…") or
// configured ("admin"), so no API client shares its holds.
func TestChannelIsNoKey(t *testing.T) {
	if strings.HasPrefix(shop.Channel, boxoffice.PrefixAPIKey) || shop.Channel == boxoffice.AdminKeyID {
		t.Errorf("channel %q can be an API key's id", shop.Channel)
	}
}

// TestShowCache: the show the pages poll is read from the store at most once a second (by the
// shop's clock), so a crowd of open pages costs one read, and a change shows within that second.
func TestShowCache(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sh, err := shop.New(context.Background(), s.svc, s.rooms, shop.Options{Secrets: s.store, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(bohttp.NewHandler(s.svc, bohttp.Options{Shop: sh}))
	t.Cleanup(ts.Close)
	b := newBuyer(t, &server{URL: ts.URL}, "gala")
	name := func() string {
		var st struct{ Show boxoffice.Show }
		b.do(http.MethodGet, "/state", nil).decode(t, &st)
		return st.Show.Name
	}
	if got := name(); got != "Show gala" {
		t.Fatalf("name %q", got)
	}
	if _, _, err := s.svc.PutShow(context.Background(), "gala", seatedShowInput("Gala, renamed", 10)); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "Show gala" {
		t.Errorf("within the second: %q, want the cached name", got)
	}
	mu.Lock()
	now = now.Add(1100 * time.Millisecond)
	mu.Unlock()
	if got := name(); got != "Gala, renamed" {
		t.Errorf("after the second: %q", got)
	}
}

// TestSignInCode: typing an address signs nobody in; the code mailed to it does, typed with or
// without spaces, and only on the browser that asked for it and only for that address. Wrong
// codes are refused, five end the code, and an address gets five codes a quarter of an hour.
// A cookie whose MAC does not match carries no sign-in.
func TestSignInCode(t *testing.T) {
	t.Parallel()
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	signedIn := func(b *buyerClient) string {
		t.Helper()
		var st struct{ Buyer *string }
		b.do(http.MethodGet, "/state", nil).decode(t, &st)
		if st.Buyer == nil {
			return ""
		}
		return *st.Buyer
	}
	codeRefused := func(b *buyerClient, code, why string) {
		t.Helper()
		a := b.do(http.MethodPost, "/session/code", map[string]string{"code": code})
		var p struct {
			Code   string `json:"code"`
			Errors []struct{ Field, Message string }
		}
		a.decode(t, &p)
		if a.status != http.StatusBadRequest || p.Code != boxoffice.EVALIDATION || len(p.Errors) != 1 || p.Errors[0].Field != "code" {
			t.Fatalf("%s: %d %s, want a refusal of the code", why, a.status, a.body)
		}
	}

	ann := newBuyer(t, s, "gala")
	code := ann.askCode("ann@example.com")
	if who := signedIn(ann); who != "" {
		t.Fatalf("asking a code signed in %q", who)
	}
	if a := ann.hold("k1", map[string]any{"tier_id": "floor", "quantity": 1}); a.status != http.StatusUnauthorized {
		t.Fatalf("hold after asking a code: %d %s", a.status, a.body)
	}
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, code)+1)%1_000_000)
	codeRefused(ann, wrong, "a wrong code")
	// Another browser has no pending sign-in: ann's code is nothing there.
	eve := newBuyer(t, s, "gala")
	codeRefused(eve, code, "ann's code on a browser that did not ask for it")
	// Nor on a browser that asked a code for another address.
	eve.askCode("eve@example.com")
	codeRefused(eve, code, "ann's code on a browser waiting for eve's")
	if who := signedIn(eve); who != "" {
		t.Fatalf("eve's browser is signed in as %q", who)
	}
	// A pending cookie naming another address under the old MAC signs nothing in.
	u, _ := url.Parse(s.URL + "/shop/gala")
	for _, c := range ann.http.Jar.Cookies(u) {
		if c.Name != "boxoffice_shop_signin" {
			continue
		}
		payload, mac, _ := strings.Cut(c.Value, ".")
		raw, err := base64.RawURLEncoding.DecodeString(payload)
		if err != nil {
			t.Fatal(err)
		}
		forged := newBuyer(t, s, "gala")
		forged.http.Jar.SetCookies(u, []*http.Cookie{{Name: "boxoffice_shop_signin", Path: "/shop",
			Value: base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), "ann@", "bob@", 1))) + "." + mac}})
		codeRefused(forged, code, "a forged pending cookie")
	}

	// The right code, as a phone shows it: ann is in, and the pending sign-in is spent.
	if a := ann.do(http.MethodPost, "/session/code", map[string]string{"code": code[:3] + " " + code[3:]}); a.status != http.StatusOK {
		t.Fatalf("the right code: %d %s", a.status, a.body)
	}
	if who := signedIn(ann); who != "ann@example.com" {
		t.Fatalf("signed in as %q after the code, want ann", who)
	}
	codeRefused(ann, code, "the code used a second time")

	// Five wrong codes end a code: the right one is refused after them.
	bob := newBuyer(t, s, "gala")
	code = bob.askCode("bob@example.com")
	wrong = fmt.Sprintf("%06d", (mustAtoi(t, code)+1)%1_000_000)
	for range 5 {
		codeRefused(bob, wrong, "a wrong code")
	}
	codeRefused(bob, code, "the right code after five wrong ones")
	if who := signedIn(bob); who != "" {
		t.Fatalf("signed in as %q after five wrong codes", who)
	}

	// An address gets five codes a quarter of an hour, whoever asks (bob's browser asked one).
	for range 4 {
		newBuyer(t, s, "gala").askCode("bob@example.com")
	}
	before := len(s.codes(t, "bob@example.com"))
	a := newBuyer(t, s, "gala").do(http.MethodPost, "/session", map[string]string{"email": "bob@example.com"})
	if a.status != http.StatusTooManyRequests || a.code() != boxoffice.ERATELIMITED || a.header.Get("Retry-After") == "" {
		t.Fatalf("a sixth code: %d %s (Retry-After %q)", a.status, a.body, a.header.Get("Retry-After"))
	}
	if n := len(s.codes(t, "bob@example.com")); n != before {
		t.Fatalf("the refused sixth code was mailed (%d codes, were %d)", n, before)
	}
}

// TestSignInCodesPerMinute: the codes a server mails are bounded over all addresses together,
// so typing one address after another cannot turn the shop into a mailer for a list; the code
// refused is not mailed, and the address it was for keeps its own five.
func TestSignInCodesPerMinute(t *testing.T) {
	t.Parallel()
	s := startServerWith(t, sqliteStore, serverOptions{CodesPerMinute: 3})
	s.seatedShow(t, "gala", 10)
	for _, who := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		newBuyer(t, s, "gala").askCode(who)
	}
	a := newBuyer(t, s, "gala").do(http.MethodPost, "/session", map[string]string{"email": "d@example.com"})
	if a.status != http.StatusTooManyRequests || a.code() != boxoffice.ERATELIMITED || a.header.Get("Retry-After") == "" {
		t.Fatalf("a fourth code within the minute: %d %s (Retry-After %q)", a.status, a.body, a.header.Get("Retry-After"))
	}
	if n := len(s.codes(t, "d@example.com")); n != 0 {
		t.Fatalf("the refused code was mailed (%d codes to d@)", n)
	}
	// The same for an address that has had a code: the budget, not the address, refuses.
	a = newBuyer(t, s, "gala").do(http.MethodPost, "/session", map[string]string{"email": "a@example.com"})
	if a.status != http.StatusTooManyRequests || !strings.Contains(string(a.body), "too many sign-in codes") {
		t.Fatalf("a second code for a@ past the budget: %d %s", a.status, a.body)
	}
	if n := len(s.codes(t, "a@example.com")); n != 1 {
		t.Fatalf("a@ has %d codes, want the first alone", n)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
