package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/internal/mailtest"
	"boxoffice/inventory"
	"boxoffice/nats"
	"boxoffice/payments"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	"boxoffice/sale"
	"boxoffice/shop"
	"boxoffice/sqlite"
	"boxoffice/waitroom"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// adminKey is the test server's admin key.
const adminKey = "test-admin-key-0123456789abcdefghijklmnop"

// store is what the server keeps its state in: the sale's store with the waiting rooms'.
type store interface {
	boxoffice.Store
	boxoffice.WaitRoomStore
}

// opener opens a fresh store for a test.
type opener func(t *testing.T) store

func sqliteStore(t *testing.T) store {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "boxoffice.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func postgresStore(t *testing.T) store {
	url := pgtest.Start(t)
	st, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// eachStore runs test on a SQLite file and on a real PostgreSQL (skipped where PostgreSQL is not
// installed, unless BOXOFFICE_REQUIRE_SERVICES=1).
func eachStore(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, sqliteStore)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, postgresStore)
	})
}

// server is the box office as serve wires it, in process, on a loopback port: the sale service
// on a real store with the server's default inventory strategy, the payment simulator, the
// waiting rooms (admitting only when a test says, so that it sees a buyer wait), and the REST
// handler with the buyer's page mounted.
type server struct {
	URL   string
	mail  string // where the sign-in codes are written, as serve writes them by default
	svc   *sale.Service
	store store
	rooms *waitroom.Service
	shop  *shop.Shop
	sim   *payments.Sim
}

// serverOptions changes what startServerWith wires; the zero value is startServer's server.
type serverOptions struct {
	// SyncBudget is the service's (zero: 2s, the service's default).
	SyncBudget time.Duration
	// SlowDelay is how long a tok_slow charge takes (zero: 300ms).
	SlowDelay time.Duration
	// Clock, when set, is the sale service's clock, so that a test can make holds due without
	// waiting for them; the payment simulator and the sessions keep the real one.
	Clock *clock
	// CodesPerMinute is the shop's (zero: its default).
	CodesPerMinute int
}

// clock is the real time moved on by what a test advanced it, safe for concurrent use.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock on by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func startServer(t *testing.T, open opener) *server {
	t.Helper()
	return startServerWith(t, open, serverOptions{})
}

func startServerWith(t *testing.T, open opener, o serverOptions) *server {
	t.Helper()
	ctx := context.Background()
	st := open(t)
	if o.SlowDelay <= 0 {
		o.SlowDelay = 300 * time.Millisecond
	}
	sim, err := payments.NewSim(payments.SimOptions{LedgerPath: filepath.Join(t.TempDir(), "ledger.jsonl"), SlowDelay: o.SlowDelay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	var svc *sale.Service // the rooms ask it for the tickets left, as serve's do
	rooms, err := waitroom.New(ctx, waitroom.Config{Store: st,
		Available: func(ctx context.Context, id string) (int, error) { return svc.TicketsLeft(ctx, id) }})
	if err != nil {
		t.Fatal(err)
	}
	rooms.Start(false)
	t.Cleanup(rooms.Close)
	inv, err := inventory.New(inventory.Default, st, inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	var now func() time.Time
	if o.Clock != nil {
		now = o.Clock.Now
	}
	svc = sale.New(sale.Config{Store: st, Inventory: inv, Payments: sim, Renderer: bohttp.Renderer{},
		AdminKey: adminKey, ExclusiveStore: true, Admission: rooms.Admitted, Now: now, SyncBudget: o.SyncBudget})
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	mail := filepath.Join(t.TempDir(), "mail")
	if err := os.MkdirAll(mail, 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := shop.New(ctx, svc, rooms, shop.Options{Secrets: st, Mailer: &nats.Email{Dir: mail}, CodesPerMinute: o.CodesPerMinute})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(bohttp.NewHandler(svc, bohttp.Options{WaitRoom: rooms, Shop: sh}))
	t.Cleanup(ts.Close)
	return &server{URL: ts.URL, mail: mail, svc: svc, store: st, rooms: rooms, shop: sh, sim: sim}
}

// seatedShow creates a show with a seated tier "stalls" (section A, rows 1 and 2 of six seats;
// A-1-1 accessible, A-2-6 with a restricted view) and an unseated tier "floor" of capacity
// tickets.
func (s *server) seatedShow(t *testing.T, id string, capacity int) {
	t.Helper()
	if _, _, err := s.svc.PutShow(context.Background(), id, seatedShowInput("Show "+id, capacity)); err != nil {
		t.Fatalf("put show %s: %v", id, err)
	}
}

// seatedShowInput is the show seatedShow puts, named name.
func seatedShowInput(name string, capacity int) sale.ShowInput {
	starts := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	price := func(a int64) *boxoffice.Money { return &boxoffice.Money{Amount: a, Currency: "EUR"} }
	return sale.ShowInput{Name: name, StartsAt: &starts, Tiers: []sale.TierInput{
		{ID: "stalls", Name: "Stalls", Price: price(6500), SeatMap: &sale.SeatMapInput{Sections: []sale.SectionInput{
			{ID: "A", Rows: []sale.RowInput{{ID: "1", Seats: 6, Accessible: []string{"1"}}, {ID: "2", Seats: 6, RestrictedView: []string{"6"}}}},
		}}},
		{ID: "floor", Name: "Standing", Capacity: &capacity, Price: price(3000)},
	}}
}

// orders returns the show's orders, by id.
func (s *server) orders(t *testing.T, showID string) []*boxoffice.Order {
	t.Helper()
	var orders []*boxoffice.Order
	err := s.store.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		orders, err = tx.ListOrders(context.Background(), boxoffice.OrderFilter{ShowID: showID}, "", 100)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return orders
}

// waitingRoom gives the show a waiting room that opened a minute ago and lets one buyer
// through a second, each time a test calls admit.
func (s *server) waitingRoom(t *testing.T, id string) {
	t.Helper()
	s.putRoom(t, id, false)
}

// heldOut makes show id of one standing ticket, held by ann, and then its waiting room (a show
// without a room sells to anyone): every ticket is held while the queue waits. It returns ann's
// client and her hold.
func (s *server) heldOut(t *testing.T, id string) (*buyerClient, boxoffice.Hold) {
	t.Helper()
	starts := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	one := 1
	if _, _, err := s.svc.PutShow(context.Background(), id, sale.ShowInput{Name: "Tiny", StartsAt: &starts,
		Tiers: []sale.TierInput{{ID: "floor", Name: "Standing", Capacity: &one, Price: &boxoffice.Money{Amount: 3000, Currency: "EUR"}}}}); err != nil {
		t.Fatal(err)
	}
	ann := newBuyerAs(t, s, id, "ann@example.com")
	var h boxoffice.Hold
	ann.hold("ann-1", map[string]any{"tier_id": "floor", "quantity": 1}).decode(t, &h)
	s.putRoom(t, id, false)
	return ann, h
}

// putRoom puts the show's waiting room, on sale since a minute ago at a buyer a second, paused
// or not (the tests admit by hand, so nothing is admitted before they ask).
func (s *server) putRoom(t *testing.T, id string, paused bool) {
	t.Helper()
	opens := time.Now().Add(-time.Minute)
	if _, _, err := s.rooms.Put(context.Background(), id, waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: 1, Paused: paused}); err != nil {
		t.Fatal(err)
	}
}

// seats returns the show's seats, sorted by rank.
func (s *server) seats(t *testing.T, showID string) []boxoffice.Seat {
	t.Helper()
	var seats []boxoffice.Seat
	err := s.store.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		seats, err = tx.Seats(context.Background(), showID, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seats
}

// seatHold returns the id of the hold that has the show's seat, failing the test when none has.
func (s *server) seatHold(t *testing.T, showID, seatID string) string {
	t.Helper()
	seats := s.seats(t, showID)
	for _, seat := range seats {
		if seat.ID == seatID && seat.HoldID != "" {
			return seat.HoldID
		}
	}
	t.Fatalf("no hold has seat %s of show %s", seatID, showID)
	return ""
}

// takenSeats returns the ids of the show's seats in state, sorted by rank.
func (s *server) takenSeats(t *testing.T, showID string, state boxoffice.SeatState) []string {
	t.Helper()
	seats := s.seats(t, showID)
	var ids []string
	for _, seat := range seats {
		if seat.State == state {
			ids = append(ids, seat.ID)
		}
	}
	return ids
}

// buyerClient is an HTTP client with a cookie jar, as a browser is, that follows no redirects.
type buyerClient struct {
	t    *testing.T
	s    *server
	base string
	show string
	http *http.Client
}

func newBuyer(t *testing.T, s *server, show string) *buyerClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &buyerClient{t: t, s: s, base: s.URL, show: show, http: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// answer is an HTTP answer with its body decoded as far as the tests look.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(a.body, &p)
	return p.Code
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %d %s: %v", a.status, a.body, err)
	}
}

// do sends a request to the buyer's page's API (path under /shop/{show}/api), with a same-origin
// Origin and a JSON body when body is not nil; headers are name, value pairs.
func (b *buyerClient) do(method, path string, body any, headers ...string) answer {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, ok := body.(string)
		if !ok {
			j, err := json.Marshal(body)
			if err != nil {
				b.t.Fatal(err)
			}
			raw = string(j)
		}
		rd = bytes.NewReader([]byte(raw))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.base+"/shop/"+b.show+"/api"+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", b.base)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: raw}
}

// signIn signs the buyer in as email: the address, then the code the shop mailed to it.
func (b *buyerClient) signIn(email string) {
	b.t.Helper()
	code := b.askCode(email)
	if a := b.do(http.MethodPost, "/session/code", map[string]string{"code": code}); a.status != http.StatusOK {
		b.t.Fatalf("sign in as %s with code %s: %d %s", email, code, a.status, a.body)
	}
}

// askCode asks for a sign-in code for email and returns the code the mail brought.
func (b *buyerClient) askCode(email string) string {
	b.t.Helper()
	before := b.s.codes(b.t, email)
	if a := b.do(http.MethodPost, "/session", map[string]string{"email": email}); a.status != http.StatusAccepted {
		b.t.Fatalf("ask a code for %s: %d %s", email, a.status, a.body)
	}
	return b.s.newCode(b.t, email, before)
}

// newCode returns the one code mailed to email that is not in before (codes' answer earlier).
func (s *server) newCode(t *testing.T, email string, before map[string]string) string {
	t.Helper()
	var fresh []string
	for file, code := range s.codes(t, email) {
		if _, ok := before[file]; !ok {
			fresh = append(fresh, code)
		}
	}
	if len(fresh) != 1 {
		t.Fatalf("%d new codes went to %s, want 1", len(fresh), email)
	}
	return fresh[0]
}

// codes returns the sign-in codes mailed to email so far, by the name of their file.
func (s *server) codes(t *testing.T, email string) map[string]string {
	t.Helper()
	return mailtest.SignInCodes(t, s.mail, email)
}

// hold asks for a hold under the Idempotency-Key key.
func (b *buyerClient) hold(key string, body any) answer {
	b.t.Helper()
	return b.do(http.MethodPost, "/holds", body, "Idempotency-Key", key)
}
