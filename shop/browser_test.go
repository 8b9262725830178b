package shop_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"boxoffice"
	bt "boxoffice/internal/browsertest"
	"boxoffice/internal/checkfor"
	"boxoffice/sale"
)

// browserBudget bounds each browser of a test, start to end.
const browserBudget = 3 * time.Minute

// signIn opens the show's page in the tab and signs in as email through the forms: the address,
// then the code the shop mailed to it.
func signIn(t *testing.T, tab context.Context, s *server, show, email string) {
	t.Helper()
	before := s.codes(t, email)
	bt.Run(t, tab, chromedp.Navigate(s.URL+"/shop/"+show),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.ID("code-input")))
	bt.WaitText(t, tab, "#code-email", email)
	code := s.newCode(t, email, before)
	bt.Run(t, tab, chromedp.SendKeys(chromedp.ID("code-input"), code),
		chromedp.Click(chromedp.ID("code-button")),
		chromedp.WaitVisible(chromedp.ID("buyer")))
	bt.WaitText(t, tab, "#buyer-email", email)
}

// seat is the CSS selector of a seat's button on the map.
func seat(id string) string { return `button.seat[data-seat="` + id + `"]` }

// ticketSeats returns the seats the page's tickets name, in order.
func ticketSeats(t *testing.T, tab context.Context) []string {
	t.Helper()
	js := `Array.from(document.querySelectorAll("#tickets li")).map(li => li.dataset.seat || "")`
	return bt.Value(t, tab, chromedp.Evaluate[[]string](js))
}

// TestBuyInBrowser drives the whole purchase in a real headless chromium against a real server,
// on SQLite and on PostgreSQL: the buyer signs in with their email, joins the show's waiting
// room and sees their place (and, while the venue pauses the room, that it is paused), is let through, picks two seats on the map, holds them (the hold's
// countdown runs), pays with the test token and sees tickets naming those seats; the store has
// exactly those seats sold and nothing held. The session cookie is out of the scripts' reach.
// With BOXOFFICE_SCREENSHOT=1 it saves docs/shop.png.
func TestBuyInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		s := startServer(t, open)
		s.seatedShow(t, "gala", 50)
		s.waitingRoom(t, "gala")

		signIn(t, tab, s, "gala", "ann@example.com")
		bt.Run(t, tab, chromedp.WaitVisible(chromedp.ID("queue")))
		bt.WaitText(t, tab, "#queue-position", "1")
		if bt.Value(t, tab, chromedp.Evaluate[bool](`!document.getElementById("sale").hidden`)) {
			t.Fatal("the sale is open to a buyer still in the queue")
		}
		cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{s.URL + "/shop/gala"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cookies.Cookies {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || !strings.HasPrefix(c.Path, "/shop") {
				t.Errorf("cookie %s: HttpOnly %v SameSite %s Path %s", c.Name, c.HTTPOnly, c.SameSite, c.Path)
			}
		}
		if len(cookies.Cookies) != 2 {
			t.Errorf("cookies: %d, want the session and the queue ticket", len(cookies.Cookies))
		}
		if got := bt.Value(t, tab, chromedp.Evaluate[string](`document.cookie`)); got != "" {
			t.Errorf("scripts read cookies: %q", got)
		}

		// The venue pauses the queue: the page says so and keeps the place, nobody is let
		// through; then it resumes.
		s.putRoom(t, "gala", true)
		bt.WaitContains(t, tab, "#queue-status", "The queue is paused for now; you keep your place.")
		bt.WaitText(t, tab, "#queue-position", "1")
		if n := s.rooms.AdmitOnce(context.Background()); n != 0 {
			t.Fatalf("the paused room admitted %d", n)
		}
		s.putRoom(t, "gala", false)

		// The queue lets one buyer through a second: ann's turn comes, and the page moves on.
		checkfor.Until(t, 10*time.Second, 100*time.Millisecond, "the queue admits ann", func() bool {
			return s.rooms.AdmitOnce(context.Background()) > 0
		})
		bt.Run(t, tab, chromedp.WaitVisible(chromedp.ID("sale")))
		bt.WaitContains(t, tab, "#admission", "Your turn lasts")

		// The seated tier is chosen first; its map shows the marked seats.
		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-3"))))
		if !bt.Value(t, tab, chromedp.Evaluate[bool](`document.querySelector('`+seat("A-1-1")+`').classList.contains("accessible") && `+
			`document.querySelector('`+seat("A-2-6")+`').classList.contains("restricted")`)) {
			t.Error("the accessible and restricted-view seats are not marked")
		}
		bt.Run(t, tab, chromedp.Click(chromedp.CSS(seat("A-1-3"))), chromedp.Click(chromedp.CSS(seat("A-1-4"))))
		bt.WaitText(t, tab, "#selection", "Chosen: A-1-3, A-1-4.")
		if got := bt.Value(t, tab, chromedp.AttributeValue(chromedp.CSS(seat("A-1-3")), "aria-pressed")); got.Value != "true" {
			t.Errorf("a chosen seat's aria-pressed: %+v", got)
		}
		if os.Getenv("BOXOFFICE_SCREENSHOT") == "1" && strings.HasSuffix(t.Name(), "sqlite") {
			screenshot(t, tab)
		}
		bt.Run(t, tab, chromedp.Click(chromedp.ID("hold-selected")), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-3, A-1-4")
		bt.WaitContains(t, tab, "#hold-countdown", ":")
		if got := s.takenSeats(t, "gala", boxoffice.SeatHeld); !slices.Equal(got, []string{"A-1-3", "A-1-4"}) {
			t.Errorf("held seats in the store: %v", got)
		}

		bt.Run(t, tab, chromedp.Click(chromedp.ID("pay")), chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"A-1-3", "A-1-4"}) {
			t.Errorf("the tickets name seats %v", got)
		}
		if got := s.takenSeats(t, "gala", boxoffice.SeatSold); !slices.Equal(got, []string{"A-1-3", "A-1-4"}) {
			t.Errorf("sold seats in the store: %v", got)
		}
		if got := s.takenSeats(t, "gala", boxoffice.SeatHeld); len(got) != 0 {
			t.Errorf("seats still held: %v", got)
		}
		show, err := s.svc.GetShow(context.Background(), "gala")
		if err != nil {
			t.Fatal(err)
		}
		if st := show.Tier("stalls"); st.Sold != 2 || st.Held != 0 {
			t.Errorf("stalls: sold %d held %d, want 2 and 0", st.Sold, st.Held)
		}
	})
}

// TestSoldOutInBrowser: a buyer who joins the queue while every ticket is held is told so on
// the page, keeps the place, and the message goes once the hold is released.
func TestSoldOutInBrowser(t *testing.T) {
	tab := bt.New(t, browserBudget)
	s := startServer(t, sqliteStore)
	ann, h := s.heldOut(t, "tiny")

	signIn(t, tab, s, "tiny", "bob@example.com")
	bt.Run(t, tab, chromedp.WaitVisible(chromedp.ID("queue")))
	bt.WaitContains(t, tab, "#queue-status", "Every ticket is sold or held right now.")
	bt.WaitText(t, tab, "#queue-position", "1")
	if a := ann.do(http.MethodPost, "/holds/"+h.ID+"/release", map[string]string{}); a.status >= 300 {
		t.Fatalf("release: %d %s", a.status, a.body)
	}
	bt.WaitTrue(t, tab, "the page to stop saying sold out",
		`!document.getElementById("queue-status").textContent.includes("sold or held")`)
}

// screenshot saves the page as docs/shop.png, for the README.
func screenshot(t *testing.T, tab context.Context) {
	t.Helper()
	png := bt.Value(t, tab, chromedp.FullScreenshot(100))
	path := filepath.Join("..", "docs", "shop.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}

// outcome reads how a race went for one page: "won" when it shows the hold, "lost" when it says
// the seat was just taken, "" while it has not answered yet.
const outcome = `(() => {
	if (!document.getElementById("hold").hidden) return "won";
	const m = document.getElementById("message");
	return !m.hidden && m.textContent.includes("just taken") ? "lost" : "";
})()`

// TestSeatRaceInBrowser: two buyers in two browsers choose the same seat and click Hold at the
// same moment. Exactly one gets the hold; the other is told the seat was just taken, and its map
// then shows the seat taken (as the server says, not only as the page guessed); the store has the
// seat in exactly one hold, the winner's. The loser then holds another seat.
func TestSeatRaceInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		s := startServer(t, open)
		s.seatedShow(t, "gala", 50)
		tabs := []context.Context{bt.New(t, browserBudget), bt.New(t, browserBudget)}
		const contested = "A-2-3"
		for i, tab := range tabs {
			signIn(t, tab, s, "gala", fmt.Sprintf("buyer%d@example.com", i))
			bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat(contested))),
				chromedp.Click(chromedp.CSS(seat(contested))))
			bt.WaitText(t, tab, "#selection", "Chosen: "+contested+".")
		}

		// Both clicks at once: each page's click is dispatched from its own goroutine.
		var wg sync.WaitGroup
		errs := make([]error, len(tabs))
		for i, tab := range tabs {
			wg.Go(func() {
				_, errs[i] = bt.Eval[bool](tab, `document.getElementById("hold-selected").click(), true`)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		results := make([]string, len(tabs))
		checkfor.CheckFor(t, bt.StepTimeout, 50*time.Millisecond, func() error {
			for i, tab := range tabs {
				r, err := bt.Eval[string](tab, outcome)
				if err != nil {
					return err
				}
				results[i] = r
			}
			if slices.Contains(results, "") {
				return fmt.Errorf("outcomes so far %q", results)
			}
			return nil
		})
		winner, loser := slices.Index(results, "won"), slices.Index(results, "lost")
		if winner < 0 || loser < 0 {
			t.Fatalf("outcomes %q: want one won and one lost", results)
		}
		wtab, ltab := tabs[winner], tabs[loser]
		bt.WaitText(t, wtab, "#hold-seats", contested)
		bt.WaitContains(t, ltab, "#message", "Seat "+contested+" was just taken")
		// The map as the server has it now: the seat is held, and cannot be chosen.
		bt.WaitTrue(t, ltab, "the map shows the seat held", `(b => b && b.dataset.state === "held" && b.disabled)(document.querySelector('`+seat(contested)+`'))`)
		if bt.Value(t, ltab, chromedp.Evaluate[bool](`!document.getElementById("hold").hidden`)) {
			t.Error("the loser shows a hold")
		}

		seats := s.takenSeats(t, "gala", boxoffice.SeatHeld)
		if !slices.Equal(seats, []string{contested}) {
			t.Fatalf("held seats in the store: %v", seats)
		}
		show, err := s.svc.GetShow(context.Background(), "gala")
		if err != nil {
			t.Fatal(err)
		}
		if st := show.Tier("stalls"); st.Held != 1 || st.Sold != 0 {
			t.Errorf("stalls: held %d sold %d, want 1 and 0", st.Held, st.Sold)
		}
		winnerEmail := fmt.Sprintf("buyer%d@example.com", winner)
		var holdID string
		err = s.store.View(context.Background(), func(tx boxoffice.Tx) error {
			ss, err := tx.SeatsByID(context.Background(), "gala", "stalls", []string{contested})
			if err == nil && len(ss) == 1 {
				holdID = ss[0].HoldID
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.svc.GetHold(context.Background(), boxoffice.AdminPrincipal, holdID)
		if err != nil || h.Buyer.Email != winnerEmail || h.Status != boxoffice.HoldActive || !slices.Equal(h.Seats, []string{contested}) {
			t.Errorf("the seat's hold: %+v %v, want an active hold of %s", h, err, winnerEmail)
		}

		// The loser chooses the seat next to it and holds it.
		bt.Run(t, ltab, chromedp.Click(chromedp.CSS(seat("A-2-4"))), chromedp.Click(chromedp.ID("hold-selected")),
			chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, ltab, "#hold-seats", "A-2-4")
		if got := s.takenSeats(t, "gala", boxoffice.SeatHeld); !slices.Equal(got, []string{contested, "A-2-4"}) {
			t.Errorf("held seats after the loser's second try: %v", got)
		}
	})
}

// TestBestAvailableInBrowser: the best available three seats of the seated tier (side by side,
// the accessible seat left for those who ask for it), found again after a reload, paid; then, on the same page, two tickets
// of the unseated tier, declined once and paid with another card. The tickets and the store
// agree with the page.
func TestBestAvailableInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		s := startServer(t, open)
		s.seatedShow(t, "gala", 50)
		signIn(t, tab, s, "gala", "cy@example.com")

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-1"))))
		bt.WaitText(t, tab, "#hold-best", "Hold best available")
		bt.Run(t, tab, chromedp.SetValue(chromedp.ID("quantity"), "3"), chromedp.Click(chromedp.ID("hold-best")),
			chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-2, A-1-3, A-1-4")
		if got := s.takenSeats(t, "gala", boxoffice.SeatHeld); !slices.Equal(got, []string{"A-1-2", "A-1-3", "A-1-4"}) {
			t.Errorf("held seats in the store: %v", got)
		}
		// A reload finds the hold again, signed in still.
		bt.Run(t, tab, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-2, A-1-3, A-1-4")
		bt.WaitText(t, tab, "#buyer-email", "cy@example.com")
		bt.Run(t, tab, chromedp.Click(chromedp.ID("pay")), chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"A-1-2", "A-1-3", "A-1-4"}) {
			t.Errorf("the tickets name seats %v", got)
		}

		// The standing tier: a quantity, no map.
		bt.Run(t, tab, chromedp.Click(chromedp.ID("buy-more")), chromedp.WaitVisible(chromedp.ID("sale")),
			chromedp.Click(chromedp.CSS(`input[name="tier"][value="floor"]`)),
			chromedp.WaitNotVisible(chromedp.ID("seated")))
		bt.WaitText(t, tab, "#hold-best", "Hold tickets")
		bt.Run(t, tab, chromedp.SetValue(chromedp.ID("quantity"), "2"), chromedp.Click(chromedp.ID("hold-best")),
			chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitContains(t, tab, "#hold-summary", "2 × Standing")
		bt.Run(t, tab, chromedp.SetValue(chromedp.ID("pay-token"), "tok_declined"), chromedp.Click(chromedp.ID("pay")))
		bt.WaitContains(t, tab, "#message", "declined")
		bt.Run(t, tab, chromedp.WaitEnabled(chromedp.ID("pay")),
			chromedp.SetValue(chromedp.ID("pay-token"), "tok_ok"), chromedp.Click(chromedp.ID("pay")),
			chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"", ""}) {
			t.Errorf("standing tickets: %q, want two without seats", got)
		}
		show, err := s.svc.GetShow(context.Background(), "gala")
		if err != nil {
			t.Fatal(err)
		}
		if st, fl := show.Tier("stalls"), show.Tier("floor"); st.Sold != 3 || st.Held != 0 || fl.Sold != 2 || fl.Held != 0 {
			t.Errorf("stalls sold %d held %d, floor sold %d held %d; want 3 0 2 0", st.Sold, st.Held, fl.Sold, fl.Held)
		}
	})
}

// recordStatus starts recording, in the page, every status the order's line shows (its
// data-status and its words), so that a test can tell afterwards that the page showed a state it
// has already left, however briefly it lasted, without racing the page to see it.
func recordStatus(t *testing.T, tab context.Context) {
	t.Helper()
	bt.Value(t, tab, chromedp.Evaluate[bool](`(() => {
	const el = document.getElementById("order-status");
	window.statusSeen = [];
	const note = () => {
		const s = (el.dataset.status || "") + ": " + el.textContent;
		if (window.statusSeen.at(-1) !== s) window.statusSeen.push(s);
	};
	new MutationObserver(note).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
	return true;
})()`))
}

// TestSlowPaymentInBrowser: a card that settles after a while (tok_slow, 2s here) outlasts the
// service's sync budget, so the confirm answers 202 with the order pending. The page says the
// payment is being processed, reads the order until it is confirmed and then shows the tickets;
// the store has one order for the hold, confirmed, and the simulator one charge, the order's.
func TestSlowPaymentInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		s := startServerWith(t, open, serverOptions{SyncBudget: 50 * time.Millisecond, SlowDelay: 2 * time.Second})
		s.seatedShow(t, "gala", 50)
		signIn(t, tab, s, "gala", "dee@example.com")

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-5"))), chromedp.Click(chromedp.CSS(seat("A-1-5"))),
			chromedp.Click(chromedp.ID("hold-selected")), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-5")
		recordStatus(t, tab)
		bt.Run(t, tab, chromedp.SetValue(chromedp.ID("pay-token"), "tok_slow"), chromedp.Click(chromedp.ID("pay")),
			chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"A-1-5"}) {
			t.Errorf("the tickets name seats %v", got)
		}
		// The page said the payment was under way before it showed the tickets, and nothing else.
		seen := bt.Value(t, tab, chromedp.Evaluate[[]string](`window.statusSeen`))
		if len(seen) != 2 || !strings.HasPrefix(seen[0], "pending_payment: Your payment is being processed") ||
			!strings.HasPrefix(seen[1], "confirmed: Paid") {
			t.Errorf("the order's status went %q, want pending (being processed) then confirmed", seen)
		}
		if bt.Value(t, tab, chromedp.Evaluate[bool](`!document.getElementById("hold").hidden`)) {
			t.Error("the page still offers to pay")
		}

		// One order for the hold, confirmed, and one charge, which is that order's.
		orders := s.orders(t, "gala")
		if len(orders) != 1 || orders[0].Status != boxoffice.OrderConfirmed || orders[0].ChargeID == "" {
			t.Fatalf("orders: %+v, want one confirmed and charged", orders)
		}
		h, err := s.svc.GetHold(context.Background(), boxoffice.AdminPrincipal, orders[0].HoldID)
		if err != nil || h.Status != boxoffice.HoldConfirmed || !slices.Equal(h.Seats, []string{"A-1-5"}) {
			t.Errorf("the order's hold: %+v %v, want the confirmed hold of A-1-5", h, err)
		}
		charges := s.sim.Charges()
		if len(charges) != 1 || charges[0].ID != orders[0].ChargeID || charges[0].Key != orders[0].ChargeKey() ||
			charges[0].Amount != orders[0].Amount || charges[0].Refunded {
			t.Errorf("charges: %+v, want the order's one charge of %+v", charges, orders[0].Amount)
		}
		if got := s.takenSeats(t, "gala", boxoffice.SeatSold); !slices.Equal(got, []string{"A-1-5"}) {
			t.Errorf("sold seats in the store: %v", got)
		}
	})
}

// seatFree is true when the page's map shows the seat free to choose.
func seatFree(id string) string {
	return `(b => !!b && b.dataset.state === "available" && !b.disabled)(document.querySelector('` + seat(id) + `'))`
}

// TestHoldRunsOutInBrowser: a show whose holds last 3 seconds (the API accepts 1; 3 leaves the
// page time to be seen holding). The page's countdown reaches zero: it tells the buyer the hold
// ran out and shows the map again, where the seat is free once the server has expired the hold.
// Nothing was ordered or charged.
func TestHoldRunsOutInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		s := startServer(t, open)
		in := seatedShowInput("Show brief", 50)
		ttl := 3
		in.HoldTTLSeconds = &ttl
		if _, _, err := s.svc.PutShow(context.Background(), "brief", in); err != nil {
			t.Fatal(err)
		}
		signIn(t, tab, s, "brief", "eve@example.com")

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-2-2"))), chromedp.Click(chromedp.CSS(seat("A-2-2"))),
			chromedp.Click(chromedp.ID("hold-selected")))
		// The hold is shown (for three seconds), then taken away with a sentence that stays.
		bt.WaitContains(t, tab, "#message", "Your hold ran out")
		bt.Run(t, tab, chromedp.WaitNotVisible(chromedp.ID("hold")), chromedp.WaitVisible(chromedp.ID("sale")))
		bt.WaitTrue(t, tab, "the seat is free again on the map", seatFree("A-2-2"))
		if got := s.takenSeats(t, "brief", boxoffice.SeatHeld); len(got) != 0 {
			t.Errorf("seats still held: %v", got)
		}
		if got := s.orders(t, "brief"); len(got) != 0 {
			t.Errorf("orders: %+v, want none", got)
		}
		if got := s.sim.Charges(); len(got) != 0 {
			t.Errorf("charges: %+v, want none", got)
		}
		show, err := s.svc.GetShow(context.Background(), "brief")
		if err != nil {
			t.Fatal(err)
		}
		if st := show.Tier("stalls"); st.Held != 0 || st.Sold != 0 {
			t.Errorf("stalls: held %d sold %d, want 0 and 0", st.Held, st.Sold)
		}
	})
}

// TestPayExpiredHoldInBrowser: the server's clock passes a hold's expiry while the page still
// counts down (the server is the judge of when a hold ends), and the service expires it. Pay is
// refused without a charge: the page says the hold ran out, drops it and shows the map with the
// seats free. The buyer chooses again and pays; only that payment is charged.
func TestPayExpiredHoldInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		clk := &clock{}
		s := startServerWith(t, open, serverOptions{Clock: clk})
		s.seatedShow(t, "gala", 50)       // holds last the default ten minutes
		holdCheckEvery(t, tab, time.Hour) // the page must still show the hold when Pay is pressed
		signIn(t, tab, s, "gala", "fay@example.com")

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-3"))),
			chromedp.Click(chromedp.CSS(seat("A-1-3"))), chromedp.Click(chromedp.CSS(seat("A-1-4"))),
			chromedp.Click(chromedp.ID("hold-selected")), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-3, A-1-4")

		clk.Advance(10*time.Minute + time.Second)
		if _, err := s.svc.ExpireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := s.takenSeats(t, "gala", boxoffice.SeatHeld); len(got) != 0 {
			t.Fatalf("seats still held after the expiry: %v", got)
		}
		if bt.Value(t, tab, chromedp.Evaluate[bool](`document.getElementById("hold").hidden`)) {
			t.Fatal("the page dropped the hold by itself: this test needs it still shown")
		}

		bt.Run(t, tab, chromedp.Click(chromedp.ID("pay")))
		bt.WaitContains(t, tab, "#message", "Your hold ran out")
		bt.Run(t, tab, chromedp.WaitNotVisible(chromedp.ID("hold")), chromedp.WaitVisible(chromedp.ID("sale")))
		bt.WaitTrue(t, tab, "the seats are free again on the map", seatFree("A-1-3")+" && "+seatFree("A-1-4"))
		if got := s.sim.Charges(); len(got) != 0 {
			t.Fatalf("charges after paying an expired hold: %+v", got)
		}
		if got := s.orders(t, "gala"); len(got) != 0 {
			t.Fatalf("orders after paying an expired hold: %+v", got)
		}
		if bt.Value(t, tab, chromedp.Evaluate[string](`sessionStorage.getItem("boxoffice-shop-hold:gala") || ""`)) != "" {
			t.Error("the page keeps the expired hold to resume after a reload")
		}

		// Choose again: the same seat, held and paid.
		bt.Run(t, tab, chromedp.Click(chromedp.CSS(seat("A-1-3"))), chromedp.Click(chromedp.ID("hold-selected")),
			chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-3")
		bt.Run(t, tab, chromedp.Click(chromedp.ID("pay")), chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"A-1-3"}) {
			t.Errorf("the tickets name seats %v", got)
		}
		orders := s.orders(t, "gala")
		charges := s.sim.Charges()
		if len(orders) != 1 || orders[0].Status != boxoffice.OrderConfirmed || len(charges) != 1 || charges[0].ID != orders[0].ChargeID {
			t.Errorf("orders %+v and charges %+v, want one of each, the second hold's", orders, charges)
		}
	})
}

// holdCheckEvery sets how often the page asks the server about the hold it shows, in every
// document the tab opens.
func holdCheckEvery(t *testing.T, tab context.Context, every time.Duration) {
	t.Helper()
	src := fmt.Sprintf("window.boxofficeShopHoldCheckMs = %d;", every.Milliseconds())
	if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		t.Fatal(err)
	}
}

// TestHoldEndedByTheServerInBrowser: the server ends a hold the page shows, first by its own
// clock's expiry and then, for a second hold, by a release made elsewhere (another window, the
// channel's API). Without a click, the page says so, drops the hold and shows the seats free;
// nothing is charged.
func TestHoldEndedByTheServerInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		clk := &clock{}
		s := startServerWith(t, open, serverOptions{Clock: clk})
		s.seatedShow(t, "gala", 50)
		holdCheckEvery(t, tab, 300*time.Millisecond)
		signIn(t, tab, s, "gala", "hal@example.com")

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-1"))), chromedp.Click(chromedp.CSS(seat("A-1-1"))),
			chromedp.Click(chromedp.ID("hold-selected")), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-1")
		clk.Advance(10*time.Minute + time.Second)
		if _, err := s.svc.ExpireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		bt.WaitContains(t, tab, "#message", "Your hold ran out")
		bt.Run(t, tab, chromedp.WaitNotVisible(chromedp.ID("hold")), chromedp.WaitVisible(chromedp.ID("sale")))
		bt.WaitTrue(t, tab, "the seat is free again on the map", seatFree("A-1-1"))

		bt.Run(t, tab, chromedp.Click(chromedp.CSS(seat("A-1-2"))), chromedp.Click(chromedp.ID("hold-selected")),
			chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-2")
		// Released elsewhere: by the admin key, as another window or the channel's API would.
		admin := &boxoffice.Principal{KeyID: boxoffice.AdminKeyID, Role: boxoffice.RoleAdmin}
		if err := s.svc.ReleaseHold(context.Background(), admin, s.seatHold(t, "gala", "A-1-2")); err != nil {
			t.Fatal(err)
		}
		bt.WaitContains(t, tab, "#message", "Your hold was released")
		bt.Run(t, tab, chromedp.WaitNotVisible(chromedp.ID("hold")), chromedp.WaitVisible(chromedp.ID("sale")))
		bt.WaitTrue(t, tab, "the seat is free again on the map", seatFree("A-1-2"))
		if got := s.sim.Charges(); len(got) != 0 {
			t.Fatalf("charges: %+v, want none", got)
		}
		if got := s.orders(t, "gala"); len(got) != 0 {
			t.Fatalf("orders: %+v, want none", got)
		}
	})
}

// fastClock makes the page's clock run eleven minutes ahead of the server's, in every document
// the tab opens, as a buyer's badly set computer does: Date.now and new Date() both.
const fastClock = `(() => {
	const ahead = 11 * 60 * 1000, Real = Date;
	class Fast extends Real {
		constructor(...a) { if (a.length === 0) super(Real.now() + ahead); else super(...a); }
		static now() { return Real.now() + ahead; }
	}
	globalThis.Date = Fast;
})()`

// TestFastClockInBrowser: the buyer's computer runs eleven minutes fast, past the whole of a
// ten-minute hold. The page counts the hold down by the server's time, not the computer's: it
// shows about ten minutes left rather than dropping a hold the server still keeps (whose seats the
// buyer could then neither pay nor choose again), and the buyer pays it.
func TestFastClockInBrowser(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		tab := bt.New(t, browserBudget)
		s := startServer(t, open)
		s.seatedShow(t, "gala", 50)
		if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: fastClock}); err != nil {
			t.Fatal(err)
		}
		signIn(t, tab, s, "gala", "gus@example.com")
		if ahead := bt.Value(t, tab, chromedp.Evaluate[float64](`Date.now() - performance.timeOrigin - performance.now()`)); ahead < 10*60*1000 {
			t.Fatalf("the page's clock is %v ms ahead, want eleven minutes", ahead)
		}

		bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-6"))), chromedp.Click(chromedp.CSS(seat("A-1-6"))),
			chromedp.Click(chromedp.ID("hold-selected")), chromedp.WaitVisible(chromedp.ID("hold")))
		bt.WaitText(t, tab, "#hold-seats", "A-1-6")
		bt.WaitTrue(t, tab, "the countdown shows the server's ten minutes", `/^(10:00|9:[0-5][0-9])$/.test(document.getElementById("hold-countdown").textContent)`)
		if bt.Value(t, tab, chromedp.Evaluate[bool](`document.getElementById("hold").hidden || !document.getElementById("message").hidden`)) {
			t.Fatal("the page dropped the hold or said something about it")
		}
		bt.Run(t, tab, chromedp.Click(chromedp.ID("pay")), chromedp.WaitVisible(chromedp.ID("order")))
		bt.WaitTrue(t, tab, "the order is confirmed", `document.getElementById("order-status").dataset.status === "confirmed"`)
		if got := ticketSeats(t, tab); !slices.Equal(got, []string{"A-1-6"}) {
			t.Errorf("the tickets name seats %v", got)
		}
	})
}

// TestSignInCodeInBrowser: the page asks for the code it mailed, says so when a wrong one is
// typed (and stays signed out), lets the buyer go back for another address or a new code, and
// signs in with the code of the last email.
func TestSignInCodeInBrowser(t *testing.T) {
	tab := bt.New(t, browserBudget)
	s := startServer(t, sqliteStore)
	s.seatedShow(t, "gala", 10)
	before := s.codes(t, "ann@example.com")
	bt.Run(t, tab, chromedp.Navigate(s.URL+"/shop/gala"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), "ann@example.com"),
		chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.ID("code-input")))
	code := s.newCode(t, "ann@example.com", before)
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, code)+1)%1_000_000)
	bt.Run(t, tab, chromedp.SendKeys(chromedp.ID("code-input"), wrong), chromedp.Click(chromedp.ID("code-button")))
	bt.WaitText(t, tab, "#message", "The code is not the code we sent.")
	if bt.Value(t, tab, chromedp.Evaluate[bool](`!document.getElementById("buyer").hidden`)) {
		t.Fatal("a wrong code signed the buyer in")
	}

	// Back for a new code: the first one is spent, the new one signs in.
	before = s.codes(t, "ann@example.com")
	bt.Run(t, tab, chromedp.Click(chromedp.ID("code-again")),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.ID("code-input")))
	fresh := s.newCode(t, "ann@example.com", before)
	// The page empties the field when it asks for a new code.
	bt.Run(t, tab, chromedp.SendKeys(chromedp.ID("code-input"), fresh),
		chromedp.Click(chromedp.ID("code-button")),
		chromedp.WaitVisible(chromedp.ID("buyer")))
	bt.WaitText(t, tab, "#buyer-email", "ann@example.com")
}

// TestSeatMapRepaintsInPlace: the page's map redraws on every change and every few seconds;
// the same seats keep their buttons, only repainted. A seat taken elsewhere turns grey on the
// button the buyer sees, and no other button is replaced — a replaced button had swallowed a
// click whose mousedown and mouseup fell either side of a redraw.
func TestSeatMapRepaintsInPlace(t *testing.T) {
	tab := bt.New(t, browserBudget)
	s := startServerWith(t, sqliteStore, serverOptions{})
	s.seatedShow(t, "gala", 50)
	signIn(t, tab, s, "gala", "ivy@example.com")
	bt.Run(t, tab, chromedp.WaitVisible(chromedp.CSS(seat("A-1-4"))))
	mark := `for (const id of ["A-1-3", "A-1-4"]) document.querySelector('button.seat[data-seat="' + id + '"]').boxofficeMark = id; true`
	if _, err := bt.Eval[bool](tab, mark); err != nil {
		t.Fatal(err)
	}

	admin := &boxoffice.Principal{KeyID: boxoffice.AdminKeyID, Role: boxoffice.RoleAdmin}
	if _, _, err := s.svc.CreateHold(context.Background(), admin, sale.Idem{Scope: "test", Key: "elsewhere", Fingerprint: "f"},
		sale.HoldInput{ShowID: "gala", TierID: "stalls", Seats: []string{"A-1-4"}, Buyer: sale.BuyerInput{Email: "other@example.com"}}); err != nil {
		t.Fatal(err)
	}
	bt.WaitTrue(t, tab, "the seat held elsewhere is shown taken",
		`(b => !!b && b.dataset.state !== "available" && b.disabled)(document.querySelector('`+seat("A-1-4")+`'))`)
	kept := `["A-1-3", "A-1-4"].every(id => document.querySelector('button.seat[data-seat="' + id + '"]').boxofficeMark === id)`
	if ok, err := bt.Eval[bool](tab, kept); err != nil || !ok {
		t.Fatalf("the redraw replaced the seats' buttons (kept: %v, %v)", ok, err)
	}
	// And a click on a free seat still selects it.
	bt.Run(t, tab, chromedp.Click(chromedp.CSS(seat("A-1-3"))))
	bt.WaitContains(t, tab, "#selection", "A-1-3")
}
