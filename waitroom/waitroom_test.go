package waitroom_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/inventory"
	"boxoffice/inventory/inventorytest"
	"boxoffice/payments"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	"boxoffice/sale"
	"boxoffice/sqlite"
	"boxoffice/waitroom"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// store is a store both the sale and the waiting room use.
type store interface {
	boxoffice.Store
	boxoffice.WaitRoomStore
}

// opener opens the same database each time it is called.
type opener func(t *testing.T) store

func sqliteStore(t *testing.T) opener {
	path := t.TempDir() + "/box.db"
	return func(t *testing.T) store {
		db, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
}

func postgresStore(t *testing.T) opener {
	url := pgtest.Start(t)
	return func(t *testing.T) store {
		db, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
}

// eachStore runs test on a SQLite file and on a real PostgreSQL.
func eachStore(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) { test(t, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresStore(t)) })
}

// server is the REST API over a real store, with the sale service asking the waiting room.
type server struct {
	t     *testing.T
	url   string
	clock *inventorytest.Clock
	rooms *waitroom.Service
	store store
	key   string // a client key
	// h2c serves the same handler over HTTP/2 without TLS, as serve does for gRPC.
	h2c string
}

const adminKey = "admin-key-for-the-waiting-room-tests"

var keys atomic.Int64

func newServer(t *testing.T, open opener, clock *inventorytest.Clock) *server {
	t.Helper()
	st := open(t)
	var svc *sale.Service // automatic admission asks it for the tickets left, as serve does
	rooms, err := waitroom.New(context.Background(), waitroom.Config{Store: st, Now: clock.Now,
		Rank: seeded(1), AdmitEvery: time.Hour,
		Available: func(ctx context.Context, id string) (int, error) { return svc.TicketsLeft(ctx, id) }})
	if err != nil {
		t.Fatal(err)
	}
	rooms.Start(false) // the tests admit by hand, at the instants they choose
	t.Cleanup(rooms.Close)
	sim, err := payments.NewSim(payments.SimOptions{LedgerPath: t.TempDir() + "/ledger.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	inv := inventory.NewAtomic(st)
	t.Cleanup(func() { inv.Close() })
	svc = sale.New(sale.Config{Store: st, Inventory: inv, Payments: sim, Renderer: bohttp.Renderer{},
		Now: clock.Now, AdminKey: adminKey, Admission: rooms.Admitted})
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	handler := bohttp.NewHandler(svc, bohttp.Options{WaitRoom: rooms})
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	h2 := httptest.NewUnstartedServer(handler)
	h2.Config.Protocols = new(http.Protocols)
	h2.Config.Protocols.SetUnencryptedHTTP2(true)
	h2.Start()
	t.Cleanup(h2.Close)
	s := &server{t: t, url: hs.URL, clock: clock, rooms: rooms, store: st, h2c: h2.URL}
	var k struct{ Key string }
	// A key of its own per server: a replay of the same Idempotency-Key would answer no secret.
	s.do("POST", "/v1/api-keys", adminKey, `{"role":"client"}`, 201, &k, "Idempotency-Key", fmt.Sprintf("key-%d", keys.Add(1)))
	s.key = k.Key
	return s
}

func seeded(seed uint64) func() int64 {
	r := rand.New(rand.NewPCG(seed, seed))
	return func() int64 { return r.Int64N(1 << 62) }
}

// do sends a request and checks its status; headers are name, value pairs. A 4xx/5xx must be a
// problem+json. out, when set, receives the body.
func (s *server) do(method, path, key, body string, status int, out any, headers ...string) []byte {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		s.t.Fatalf("%s %s: status %d (%s), want %d", method, path, res.StatusCode, b, status)
	}
	if status >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
		s.t.Fatalf("%s %s: %d with Content-Type %q, want a problem", method, path, status, res.Header.Get("Content-Type"))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

// problem sends a request that must fail with status and code.
func (s *server) problem(method, path, key, body string, status int, code string, headers ...string) {
	s.t.Helper()
	var p struct{ Code string }
	s.do(method, path, key, body, status, &p, headers...)
	if p.Code != code {
		s.t.Fatalf("%s %s: code %q, want %q", method, path, p.Code, code)
	}
}

// showWithRoom puts show "gig" and its waiting room, opening in a minute at rate a second.
func (s *server) showWithRoom(rate, ttl int) time.Time {
	s.t.Helper()
	s.do("PUT", "/v1/shows/gig", adminKey, `{"name":"Gig","starts_at":"2027-06-01T20:00:00Z",
		"tiers":[{"id":"ga","name":"GA","capacity":100,"price":{"amount":1000,"currency":"EUR"}}]}`, 201, nil)
	opens := s.clock.Now().Add(time.Minute).UTC()
	s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":%d,"admission_ttl_seconds":%d}`,
		opens.Format(time.RFC3339Nano), rate, ttl), 201, nil)
	return opens
}

func (s *server) join(email string, status int) *waitroom.Ticket {
	s.t.Helper()
	var t waitroom.Ticket
	s.do("POST", "/v1/shows/gig/waiting-room/tickets", s.key, `{"buyer":{"email":"`+email+`"}}`, status, &t,
		"Idempotency-Key", "join-"+email)
	return &t
}

func (s *server) ticket(token string) *waitroom.Ticket {
	s.t.Helper()
	var t waitroom.Ticket
	s.do("GET", "/v1/waiting-room/tickets/"+token, s.key, "", 200, &t)
	return &t
}

func holdBody(email string) string {
	return `{"tier_id":"ga","quantity":1,"buyer":{"email":"` + email + `"}}`
}

// TestAdmittedTokensOnly walks a buyer through the room: a hold needs an admitted token of its
// show and buyer (403 not_admitted otherwise), and the admission runs out unused.
func TestAdmittedTokensOnly(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		opens := s.showWithRoom(10, 120)

		ann := s.join("ann@example.com", 201)
		if ann.Status != "waiting" || ann.Position != nil || !strings.HasPrefix(ann.ID, "qtk_") || ann.Token == "" {
			t.Fatalf("join before the on-sale = %+v", ann)
		}
		again := s.join("ANN@example.com", 200) // the same buyer, whatever the case
		if again.ID != ann.ID {
			t.Fatalf("joining again gave %s, want the same place %s", again.ID, ann.ID)
		}
		s.join("bob@example.com", 201)

		// No token, a waiting token, a forged one: 403 not_admitted, and nothing held.
		s.problem("POST", "/v1/shows/gig/holds", s.key, holdBody("ann@example.com"), 403, boxoffice.ENOTADMITTED, "Idempotency-Key", "h1")
		s.problem("POST", "/v1/shows/gig/holds", s.key, holdBody("ann@example.com"), 403, boxoffice.ENOTADMITTED,
			"Idempotency-Key", "h2", "Queue-Ticket", ann.Token)
		s.problem("POST", "/v1/purchases", s.key, `{"show_id":"gig","tier_id":"ga","quantity":1,"buyer":{"email":"ann@example.com"},"payment":{"token":"tok_ok"}}`,
			403, boxoffice.ENOTADMITTED, "Idempotency-Key", "p1", "Queue-Ticket", ann.Token+"x")

		if n := s.rooms.AdmitOnce(context.Background()); n != 0 {
			t.Fatalf("admitted %d before the on-sale", n)
		}
		clock.Advance(opens.Sub(clock.Now()) + time.Second)
		if n := s.rooms.AdmitOnce(context.Background()); n != 2 {
			t.Fatalf("admitted %d a second after the on-sale at 10/s, want both", n)
		}
		adm := s.ticket(ann.Token)
		if adm.Status != "admitted" || adm.AdmissionExpiresAt == nil || adm.Token == ann.Token {
			t.Fatalf("ticket after admission = %+v", adm)
		}
		// The admitted token opens holds for its buyer only.
		s.problem("POST", "/v1/shows/gig/holds", s.key, holdBody("bob@example.com"), 403, boxoffice.ENOTADMITTED,
			"Idempotency-Key", "h3", "Queue-Ticket", adm.Token)
		s.do("POST", "/v1/shows/gig/holds", s.key, holdBody("ann@example.com"), 201, nil, "Idempotency-Key", "h4", "Queue-Ticket", adm.Token)
		s.do("POST", "/v1/purchases", s.key, `{"show_id":"gig","tier_id":"ga","quantity":1,"buyer":{"email":"Ann@Example.com"},"payment":{"token":"tok_ok"}}`,
			201, nil, "Idempotency-Key", "p2", "Queue-Ticket", adm.Token)

		// Another show, without a room, sells to anyone.
		s.do("PUT", "/v1/shows/free", adminKey, `{"name":"Free","starts_at":"2027-06-01T20:00:00Z",
			"tiers":[{"id":"ga","name":"GA","capacity":5,"price":{"amount":1000,"currency":"EUR"}}]}`, 201, nil)
		s.do("POST", "/v1/shows/free/holds", s.key, holdBody("ann@example.com"), 201, nil, "Idempotency-Key", "h5")
		// And an admitted token of gig opens nothing elsewhere: "free" has no room, so it is not
		// asked, but a room on it would refuse gig's token.
		s.do("PUT", "/v1/shows/free/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":5}`, opens.Format(time.RFC3339)), 201, nil)
		s.problem("POST", "/v1/shows/free/holds", s.key, holdBody("ann@example.com"), 403, boxoffice.ENOTADMITTED,
			"Idempotency-Key", "h6", "Queue-Ticket", adm.Token)

		// Bob's admission runs out unused: his token no longer opens holds, and the ticket says so.
		bob := s.ticket(s.join("bob@example.com", 200).Token)
		if bob.Status != "admitted" {
			t.Fatalf("bob = %+v", bob)
		}
		clock.Advance(121 * time.Second)
		s.problem("POST", "/v1/shows/gig/holds", s.key, holdBody("bob@example.com"), 403, boxoffice.ENOTADMITTED,
			"Idempotency-Key", "h7", "Queue-Ticket", bob.Token)
		if got := s.ticket(bob.Token); got.Status != "expired" {
			t.Fatalf("bob's ticket after the admission window = %+v, want expired", got)
		}
		// A token past its own life reads nothing (410); joining again gives a fresh one.
		clock.Advance(waitroom.DefaultTicketTTL)
		s.problem("GET", "/v1/waiting-room/tickets/"+bob.Token, s.key, "", 410, boxoffice.ETICKETEXPIRED)
		if again := s.join("bob@example.com", 200); again.ID != bob.ID {
			t.Fatalf("bob joined again: %+v", again)
		}
	})
}

// TestPausedRoom: a venue pauses its room mid-sale. Nobody more is let through, the waiting
// tickets say so (and to read again in pollMax), joins still queue in order, the buyers admitted
// before the pause keep buying, and a resume lets the queue through at the rate again.
func TestPausedRoom(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		opens := s.showWithRoom(2, 600)
		var buyers []*waitroom.Ticket
		for i := range 6 {
			buyers = append(buyers, s.join(fmt.Sprintf("b%d@example.com", i), 201))
		}
		clock.Advance(opens.Sub(clock.Now()) + time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 2 {
			t.Fatalf("admitted %d a second into the on-sale at 2/s", n)
		}
		room := func(paused string) string {
			return fmt.Sprintf(`{"opens_at":%q,"admit_per_second":2,"admission_ttl_seconds":600%s}`, opens.Format(time.RFC3339Nano), paused)
		}
		var got boxoffice.WaitRoom
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, room(`,"paused":true`), 200, &got)
		if !got.Paused || got.Admitted != 2 || got.Waiting != 4 {
			t.Fatalf("PUT paused = %+v; want paused, the queue kept", got)
		}
		s.do("GET", "/v1/shows/gig/waiting-room", s.key, "", 200, &got)
		if !got.Paused {
			t.Fatalf("GET = %+v, want paused", got)
		}
		s.problem("PUT", "/v1/shows/gig/waiting-room", adminKey, room(`,"paused":"yes"`), 400, boxoffice.EVALIDATION)

		clock.Advance(10 * time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 0 {
			t.Fatalf("admitted %d while paused", n)
		}
		var waiting, admitted []*waitroom.Ticket
		for _, b := range buyers {
			tk := s.ticket(b.Token)
			switch tk.Status {
			case "admitted":
				if tk.Paused {
					t.Errorf("admitted ticket %+v says paused", tk)
				}
				admitted = append(admitted, tk)
			case "waiting":
				if !tk.Paused || tk.PollAfterSeconds != 5 || tk.Position == nil {
					t.Errorf("waiting ticket while paused = %+v; want paused, its position, poll_after_seconds 5", tk)
				}
				waiting = append(waiting, tk)
			}
		}
		if len(admitted) != 2 || len(waiting) != 4 {
			t.Fatalf("%d admitted, %d waiting; want 2 and 4", len(admitted), len(waiting))
		}
		// The draw ordered them: the head of the queue is the lowest position, not the first to join.
		slices.SortFunc(waiting, func(a, b *waitroom.Ticket) int { return *a.Position - *b.Position })
		// The buyers let through before the pause still buy; the others still may not.
		s.do("POST", "/v1/shows/gig/holds", s.key, holdBody(buyerOf(t, s, admitted[0])), 201, nil,
			"Idempotency-Key", "held-while-paused", "Queue-Ticket", admitted[0].Token)
		s.problem("POST", "/v1/shows/gig/holds", s.key, holdBody(buyerOf(t, s, waiting[0])), 403, boxoffice.ENOTADMITTED,
			"Idempotency-Key", "refused-while-paused", "Queue-Ticket", waiting[0].Token)
		late := s.join("late@example.com", 201)
		if tk := s.ticket(late.Token); !tk.Paused || tk.Position == nil || *tk.Position != 5 {
			t.Fatalf("a join while paused = %+v; want paused, position 5 (behind the 4 waiting)", tk)
		}

		// PUT sets the whole room: without "paused" it resumes, at the rate, from now.
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, room(""), 200, &got)
		if got.Paused {
			t.Fatalf("PUT without paused = %+v, want resumed", got)
		}
		clock.Advance(time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 2 {
			t.Fatalf("admitted %d a second after the resume at 2/s, want 2", n)
		}
		for _, w := range waiting[:2] {
			if tk := s.ticket(w.Token); tk.Status != "admitted" || tk.Paused {
				t.Errorf("after the resume the queue's head = %+v, want admitted", tk)
			}
		}
		if tk := s.ticket(late.Token); tk.Paused || tk.Position == nil || *tk.Position != 3 {
			t.Errorf("the late arrival after the resume = %+v, want position 3, not paused", tk)
		}

		// POST …/pause and …/resume flip the pause alone (an admin's, with an Idempotency-Key
		// like every POST); the settings a PUT would reset stay.
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":2,"admission":"auto","auto_margin_percent":30,"admission_ttl_seconds":90}`,
			opens.Format(time.RFC3339Nano)), 200, nil)
		s.problem("POST", "/v1/shows/gig/waiting-room/pause", adminKey, "", 400, boxoffice.EIDEMMISSING)
		s.problem("POST", "/v1/shows/gig/waiting-room/pause", s.key, "", 403, boxoffice.EFORBIDDEN, "Idempotency-Key", "p1")
		s.problem("POST", "/v1/shows/none/waiting-room/pause", adminKey, "", 404, boxoffice.ENOTFOUND, "Idempotency-Key", "p1")
		s.problem("POST", "/v1/shows/gig/waiting-room/pause", adminKey, `{"paused":true}`, 400, boxoffice.EVALIDATION, "Idempotency-Key", "p1")
		for _, key := range []string{"p1", "p2"} { // a state: again, or under another key, the same
			s.do("POST", "/v1/shows/gig/waiting-room/pause", adminKey, "", 200, &got, "Idempotency-Key", key)
			if !got.Paused || got.Admission != "auto" || got.AutoMarginPercent != 30 || got.AdmissionTTLSeconds != 90 || got.AdmitPerSecond != 2 {
				t.Fatalf("POST pause = %+v; want paused, the settings kept", got)
			}
		}
		clock.Advance(time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 0 {
			t.Fatalf("admitted %d after POST pause", n)
		}
		s.do("POST", "/v1/shows/gig/waiting-room/resume", adminKey, "{}", 200, &got, "Idempotency-Key", "r1")
		if got.Paused || got.Admission != "auto" {
			t.Fatalf("POST resume = %+v", got)
		}
	})
}

// TestSoldOutTickets: once every ticket of the show is sold or held, the tickets still waiting
// say so (and to read again in 5 s), while an admitted one does not; a hold that is released
// puts a ticket back, and they stop saying it.
func TestSoldOutTickets(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		s.do("PUT", "/v1/shows/gig", adminKey, `{"name":"Gig","starts_at":"2027-06-01T20:00:00Z",
			"tiers":[{"id":"ga","name":"GA","capacity":2,"price":{"amount":1000,"currency":"EUR"}}]}`, 201, nil)
		opens := clock.Now().Add(time.Minute).UTC()
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":2}`, opens.Format(time.RFC3339Nano)), 201, nil)
		var tickets []*waitroom.Ticket
		for i := range 4 {
			tickets = append(tickets, s.join(fmt.Sprintf("b%d@example.com", i), 201))
		}
		clock.Advance(opens.Sub(clock.Now()) + time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 2 {
			t.Fatalf("admitted %d", n)
		}
		var admitted, waiting []string // emails
		for i, tk := range tickets {
			got := s.ticket(tk.Token)
			if got.SoldOut {
				t.Fatalf("ticket %+v says sold out with 2 tickets left", got)
			}
			email := fmt.Sprintf("b%d@example.com", i)
			if got.Status == "admitted" {
				admitted = append(admitted, email)
				tickets[i] = got
			} else {
				waiting = append(waiting, email)
			}
		}
		var holds []string
		for i, tk := range tickets {
			if tk.Status != "admitted" {
				continue
			}
			var h struct{ ID string }
			s.do("POST", "/v1/shows/gig/holds", s.key, holdBody(fmt.Sprintf("b%d@example.com", i)), 201, &h,
				"Idempotency-Key", fmt.Sprintf("hold-%d", i), "Queue-Ticket", tk.Token)
			holds = append(holds, h.ID)
		}
		if len(holds) != 2 || len(waiting) != 2 {
			t.Fatalf("%d holds, %d waiting (admitted %v)", len(holds), len(waiting), admitted)
		}
		clock.Advance(waitroom.DefaultRoomCache) // the tickets left are read at most once a second
		for i, tk := range tickets {
			got := s.ticket(tk.Token)
			switch got.Status {
			case "waiting":
				if !got.SoldOut || got.PollAfterSeconds != 5 {
					t.Errorf("buyer %d waiting with every ticket held: %+v; want sold_out, poll_after_seconds 5", i, got)
				}
			case "admitted":
				if got.SoldOut {
					t.Errorf("admitted buyer %d: %+v says sold out", i, got)
				}
			}
		}
		s.do("DELETE", "/v1/holds/"+holds[0], s.key, "", 204, nil)
		clock.Advance(waitroom.DefaultRoomCache)
		for i, tk := range tickets {
			if got := s.ticket(tk.Token); got.SoldOut {
				t.Errorf("buyer %d after a hold was released: %+v; want not sold out", i, got)
			}
		}
	})
}

// TestRoomMetrics: a scrape reports each room's queue, admissions, pause and rate as the store
// has them.
func TestRoomMetrics(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.rooms.Collector())
		if got := gather(t, reg); len(got) != 0 {
			t.Fatalf("no room yet, scrape %v", got)
		}
		opens := s.showWithRoom(2, 600)
		for i := range 5 {
			s.join(fmt.Sprintf("b%d@example.com", i), 201)
		}
		clock.Advance(opens.Sub(clock.Now()) + time.Second)
		if n := s.rooms.AdmitOnce(ctx); n != 2 {
			t.Fatalf("admitted %d", n)
		}
		if _, err := s.rooms.Pause(ctx, "gig", true); err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{
			`boxoffice_waitroom_waiting{show="gig"}`:          3,
			`boxoffice_waitroom_admitted_total{show="gig"}`:   2,
			`boxoffice_waitroom_paused{show="gig"}`:           1,
			`boxoffice_waitroom_admit_per_second{show="gig"}`: 2,
		}
		if got := gather(t, reg); !maps.Equal(got, want) {
			t.Errorf("scrape %v, want %v", got, want)
		}
	})
}

// gather scrapes reg into series (name{label="value",…}) and values.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// buyerOf is the address that joined as ticket tk (the tests' buyers are b0…b5@example.com).
func buyerOf(t *testing.T, s *server, tk *waitroom.Ticket) string {
	t.Helper()
	for i := range 6 {
		email := fmt.Sprintf("b%d@example.com", i)
		if again := s.join(email, 200); again.ID == tk.ID {
			return email
		}
	}
	t.Fatalf("no buyer has ticket %s", tk.ID)
	return ""
}

// TestPositionsAndFairness: positions are hidden before the on-sale, then follow the draw for
// those who came before it and arrival order for the rest, and the queue survives a restart.
func TestPositionsAndFairness(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		opens := s.showWithRoom(1, 300)
		var pre []*waitroom.Ticket
		for i := range 20 {
			pre = append(pre, s.join(fmt.Sprintf("pre%02d@example.com", i), 201))
		}
		clock.Advance(opens.Sub(clock.Now()))
		var post []*waitroom.Ticket
		for i := range 5 {
			post = append(post, s.join(fmt.Sprintf("post%d@example.com", i), 201))
		}
		positions := map[int]bool{}
		inOrder := true
		for i, tk := range pre {
			got := s.ticket(tk.Token)
			if got.Position == nil || *got.Position < 1 || *got.Position > 20 || got.EstimatedWaitSeconds == nil {
				t.Fatalf("pre-on-sale ticket after the on-sale = %+v", got)
			}
			positions[*got.Position] = true
			inOrder = inOrder && *got.Position == i+1
		}
		if len(positions) != 20 || inOrder {
			t.Errorf("pre-on-sale positions %v: want a permutation of 1..20 other than arrival order", positions)
		}
		for i, tk := range post {
			if got := s.ticket(tk.Token); got.Position == nil || *got.Position != 21+i {
				t.Errorf("post-on-sale arrival %d = %+v, want position %d", i, got, 21+i)
			}
		}

		// A restart: a new server on the same database knows every place and every token.
		s2 := newServer(t, open, clock)
		for i, tk := range post {
			if got := s2.ticket(tk.Token); got.Position == nil || *got.Position != 21+i {
				t.Errorf("after a restart post-on-sale arrival %d = %+v, want position %d", i, got, 21+i)
			}
		}
		clock.Advance(time.Second)
		if n := s2.rooms.AdmitOnce(context.Background()); n != 1 {
			t.Fatalf("admitted %d in the first second at 1/s", n)
		}
		for _, tk := range pre {
			if got := s2.ticket(tk.Token); got.Status == "admitted" && got.Position != nil {
				t.Errorf("admitted ticket still has a position: %+v", got)
			}
		}
	})
}

// TestTicketEvents waits on server-sent events instead of polling: one event per read, the
// last one saying admitted. Over HTTP/1.1 the server takes the connection over for the stream;
// over HTTP/2 (which serve speaks without TLS, for gRPC) it cannot, and serves it from the
// request's goroutine.
func TestTicketEvents(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2c"}[h2], func(t *testing.T) {
			clock := inventorytest.NewClock()
			s := newServer(t, sqliteStore(t), clock)
			opens := s.showWithRoom(5, 60)
			tk := s.join("ann@example.com", 201)
			clock.Advance(opens.Sub(clock.Now()) + time.Second)
			url, client := s.url, http.DefaultClient
			if h2 {
				tr := &http.Transport{Protocols: new(http.Protocols)}
				tr.Protocols.SetUnencryptedHTTP2(true)
				t.Cleanup(tr.CloseIdleConnections)
				url, client = s.h2c, &http.Client{Transport: tr}
			}
			req, _ := http.NewRequest("GET", url+"/v1/waiting-room/tickets/"+tk.Token+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+s.key)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" || res.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
				t.Fatalf("events: %s %d %s", res.Proto, res.StatusCode, res.Header.Get("Content-Type"))
			}
			var once sync.Once
			sc := bufio.NewScanner(res.Body)
			var last waitroom.Ticket
			events := 0
			for sc.Scan() {
				data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
				if !ok {
					continue
				}
				events++
				if err := json.Unmarshal(data, &last); err != nil {
					t.Fatal(err)
				}
				once.Do(func() {
					if last.Status != "waiting" || last.Position == nil || *last.Position != 1 {
						t.Errorf("first event = %+v, want waiting at 1", last)
					}
					s.rooms.AdmitOnce(context.Background())
				})
			}
			if last.Status != "admitted" || events < 2 {
				t.Errorf("the stream ended after %d events with %+v, want admitted", events, last)
			}
			s.problem("GET", "/v1/waiting-room/tickets/nope/events", s.key, "", 404, boxoffice.ENOTFOUND)
			if h2 {
				return
			}
			// HEAD answers the stream's headers and ends there: the connection serves the
			// next request.
			host := strings.TrimPrefix(s.url, "http://")
			conn, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			head, _ := http.NewRequest("HEAD", s.url+"/v1/waiting-room/tickets/"+tk.Token+"/events", nil)
			head.Header.Set("Authorization", "Bearer "+s.key)
			get, _ := http.NewRequest("GET", s.url+"/v1/waiting-room/tickets/"+tk.Token, nil)
			get.Header.Set("Authorization", "Bearer "+s.key)
			for _, req := range []*http.Request{head, get} {
				if err := req.Write(conn); err != nil {
					t.Fatal(err)
				}
				res, err := http.ReadResponse(br, req)
				if err != nil || res.StatusCode != 200 {
					t.Fatalf("%s on one connection: %v %v", req.Method, res, err)
				}
				if req.Method == "HEAD" && res.Header.Get("Content-Type") != "text/event-stream" {
					t.Fatalf("HEAD events: %v", res.Header)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
}

// TestBadInput: every refusal is a 4xx problem with a stable code, never a 5xx.
func TestBadInput(t *testing.T) {
	clock := inventorytest.NewClock()
	s := newServer(t, sqliteStore(t), clock)
	s.showWithRoom(5, 60)
	for _, c := range []struct {
		method, path, key, body string
		status                  int
		code                    string
		headers                 []string
	}{
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"admit_per_second":5}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":0}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5,"admission_ttl_seconds":0}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"yesterday","admit_per_second":5}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5,"extra":1}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5,"admission":"fast"}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5,"auto_margin_percent":10}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/gig/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5,"admission":"auto","auto_margin_percent":-1}`, 400, boxoffice.EVALIDATION, nil},
		{"PUT", "/v1/shows/nope/waiting-room", adminKey, `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5}`, 404, boxoffice.ENOTFOUND, nil},
		{"PUT", "/v1/shows/gig/waiting-room", "client", `{"opens_at":"2027-01-01T00:00:00Z","admit_per_second":5}`, 403, boxoffice.EFORBIDDEN, nil},
		{"GET", "/v1/shows/nope/waiting-room", "client", "", 404, boxoffice.ENOTFOUND, nil},
		{"DELETE", "/v1/shows/nope/waiting-room", adminKey, "", 404, boxoffice.ENOTFOUND, nil},
		{"POST", "/v1/shows/gig/waiting-room/tickets", "client", `{"buyer":{"email":"ann@example.com"}}`, 400, boxoffice.EIDEMMISSING, nil},
		{"POST", "/v1/shows/gig/waiting-room/tickets", "client", `{"buyer":{"email":"not an address"}}`, 400, boxoffice.EVALIDATION, []string{"Idempotency-Key", "j1"}},
		{"POST", "/v1/shows/gig/waiting-room/tickets", "client", `{"buyer":{"email":"a@example.com"},"x":1}`, 400, boxoffice.EVALIDATION, []string{"Idempotency-Key", "j2"}},
		{"POST", "/v1/shows/gig/waiting-room/tickets", "client", `{"buyer":{"email":"a@example.com"}}`, 415, boxoffice.EUNSUPPORTEDMEDIA, []string{"Idempotency-Key", "j3", "Content-Type", "text/plain"}},
		{"POST", "/v1/shows/free/waiting-room/tickets", "client", `{"buyer":{"email":"a@example.com"}}`, 404, boxoffice.ENOTFOUND, []string{"Idempotency-Key", "j4"}},
		{"POST", "/v1/shows/BAD/waiting-room/tickets", "client", `{"buyer":{"email":"a@example.com"}}`, 404, boxoffice.ENOTFOUND, []string{"Idempotency-Key", "j5"}},
		{"GET", "/v1/waiting-room/tickets/garbage", "client", "", 404, boxoffice.ENOTFOUND, nil},
		{"GET", "/v1/waiting-room/tickets/" + strings.Repeat("a", 600), "client", "", 404, boxoffice.ENOTFOUND, nil},
		{"GET", "/v1/waiting-room/tickets/abc.def", "", "", 401, boxoffice.EUNAUTHORIZED, nil},
	} {
		key := c.key
		if key == "client" {
			key = s.key
		}
		s.problem(c.method, c.path, key, c.body, c.status, c.code, c.headers...)
	}
	// A tampered token: the same answer as for no ticket at all.
	tk := s.join("ann@example.com", 201)
	payload, mac, _ := strings.Cut(tk.Token, ".")
	s.problem("GET", "/v1/waiting-room/tickets/"+payload+"."+strings.ToUpper(mac), s.key, "", 404, boxoffice.ENOTFOUND)
	// The room goes, its queue with it; the show sells to anyone again.
	s.do("DELETE", "/v1/shows/gig/waiting-room", adminKey, "", 204, nil)
	s.problem("GET", "/v1/waiting-room/tickets/"+tk.Token, s.key, "", 404, boxoffice.ENOTFOUND)
	s.do("POST", "/v1/shows/gig/holds", s.key, holdBody("ann@example.com"), 201, nil, "Idempotency-Key", "h1")
}

// TestAutomaticAdmission: an automatic room lets through no more buyers shopping at once than
// the show has tickets left, plus its margin, at most its rate; a hold ends a buyer's shopping
// and takes its tickets, and tickets that come back let the next buyers through.
func TestAutomaticAdmission(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		clock := inventorytest.NewClock()
		s := newServer(t, open, clock)
		s.do("PUT", "/v1/shows/gig", adminKey, `{"name":"Gig","starts_at":"2027-06-01T20:00:00Z",
			"tiers":[{"id":"ga","name":"GA","capacity":3,"price":{"amount":1000,"currency":"EUR"}}]}`, 201, nil)
		opens := clock.Now().Add(time.Minute).UTC()
		var room boxoffice.WaitRoom
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":100,"admission":"auto","auto_margin_percent":0}`,
			opens.Format(time.RFC3339Nano)), 201, &room)
		if room.Admission != "auto" || room.AutoMarginPercent != 0 {
			t.Fatalf("PUT answered %+v", room)
		}
		var buyers []*waitroom.Ticket
		for i := range 8 {
			buyers = append(buyers, s.join(fmt.Sprintf("b%d@example.com", i), 201))
		}
		clock.Advance(opens.Sub(clock.Now()) + time.Second)
		admit := func(want int) {
			t.Helper()
			if n := s.rooms.AdmitOnce(context.Background()); n != want {
				t.Fatalf("admitted %d, want %d", n, want)
			}
			clock.Advance(time.Second) // a second's budget at 100/s: only the bound limits
		}
		admit(3) // three tickets, three shoppers
		admit(0)
		// Admitted buyers, in the draw's order, are the ones whose tickets say so.
		var admitted []string
		for i, b := range buyers {
			if got := s.ticket(b.Token); got.Status == "admitted" {
				admitted = append(admitted, fmt.Sprintf("b%d@example.com", i))
				buyers[i] = got
			}
		}
		if len(admitted) != 3 {
			t.Fatalf("%d tickets say admitted, want 3", len(admitted))
		}
		token := func(email string) string {
			for i, b := range buyers {
				if fmt.Sprintf("b%d@example.com", i) == email {
					return b.Token
				}
			}
			return ""
		}
		// A hold of two: two tickets fewer, one shopper fewer; the bound is 1 ticket, 2 shopping.
		var h struct{ ID string }
		s.do("POST", "/v1/shows/gig/holds", s.key, `{"tier_id":"ga","quantity":2,"buyer":{"email":"`+admitted[0]+`"}}`, 201, &h,
			"Idempotency-Key", "h1", "Queue-Ticket", token(admitted[0]))
		admit(0)
		// The hold is released: three tickets, two shopping, one more through.
		s.do("DELETE", "/v1/holds/"+h.ID, s.key, "", 204, nil)
		admit(1)
		admit(0)
		// A margin of 100% doubles the bound: six for three tickets, three shopping (the buyer
		// who held is done, even though the hold went).
		s.do("PUT", "/v1/shows/gig/waiting-room", adminKey, fmt.Sprintf(`{"opens_at":%q,"admit_per_second":100,"admission":"auto","auto_margin_percent":100}`,
			opens.Format(time.RFC3339Nano)), 200, nil)
		clock.Advance(2 * time.Second) // past the rooms' cache
		admit(3)
		admit(0)
		// Admissions that run out unused stop counting: after the default 300 s, the last one.
		clock.Advance(301 * time.Second)
		admit(1)
		var got boxoffice.WaitRoom
		s.do("GET", "/v1/shows/gig/waiting-room", s.key, "", 200, &got)
		if got.Admitted != 8 || got.Waiting != 0 {
			t.Fatalf("room at the end = %+v, want all 8 admitted", got)
		}
	})
}

// TestTwoServersAdmitOnce runs two services on one database, each with its admitter ticking
// every 5 ms on the real clock, as two servers would: together they never admit more than the
// rate allows since the on-sale, and every admitted entry has its own admission number.
func TestTwoServersAdmitOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		st := open(t)
		ctx := context.Background()
		putGig(t, st, time.Now())
		const rate = 200
		var services []*waitroom.Service
		for range 2 {
			s, err := waitroom.New(ctx, waitroom.Config{Store: open(t), AdmitEvery: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			s.Start(true) // nothing to admit before the on-sale
			t.Cleanup(s.Close)
			services = append(services, s)
		}
		if _, _, err := services[0].Put(ctx, "gig", waitroom.RoomInput{OpensAt: ptr(time.Now().Add(time.Hour)), AdmitPerSecond: rate}); err != nil {
			t.Fatal(err)
		}
		for i := range 600 {
			in := waitroom.JoinInput{}
			in.Buyer.Email = fmt.Sprintf("b%d@example.com", i)
			if _, _, err := services[i%2].Join(ctx, "gig", in); err != nil {
				t.Fatal(err)
			}
		}
		opens := time.Now().Truncate(time.Microsecond)
		if _, _, err := services[1].Put(ctx, "gig", waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: rate}); err != nil {
			t.Fatal(err)
		}
		for {
			room, err := st.GetWaitRoom(ctx, "gig", true)
			if err != nil {
				t.Fatal(err)
			}
			// Read after the count, so the bound is the loosest the count could have had.
			limit := int(time.Since(opens).Seconds() * rate)
			if room.Admitted > limit {
				t.Fatalf("%d admitted %v after the on-sale at %d/s: over the rate", room.Admitted, time.Since(opens), rate)
			}
			if room.Admitted+room.Waiting != 600 {
				t.Fatalf("room = %+v: %d entries, want 600", room, room.Admitted+room.Waiting)
			}
			if room.Waiting == 0 {
				break
			}
			if time.Since(opens) > time.Minute {
				t.Fatalf("still %d waiting after a minute", room.Waiting)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// putGig stores the show "gig", an hour after now, with ten tickets.
func putGig(t *testing.T, st store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	if err := st.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.PutShow(ctx, &boxoffice.Show{ID: "gig", Name: "Gig", StartsAt: now.Add(time.Hour), HoldTTLSeconds: 60,
			Tiers:     []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 10, Price: boxoffice.Money{Amount: 1, Currency: "EUR"}}},
			CreatedAt: now, UpdatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
}

// countingStore is a real store that counts the queue entries its reads of the queue order
// went through (a count reads the entries it counts, a numbering the whole waiting queue), and
// its reads of single entries.
type countingStore struct {
	store
	read    atomic.Int64
	entries atomic.Int64 // reads of one entry
}

func (c *countingStore) QueueEntry(ctx context.Context, seq int64) (*boxoffice.QueueEntry, int64, error) {
	c.entries.Add(1)
	return c.store.QueueEntry(ctx, seq)
}

func (c *countingStore) QueueAhead(ctx context.Context, showID string, after *boxoffice.QueueKey, before boxoffice.QueueKey) (int64, int64, error) {
	ahead, admitted, err := c.store.QueueAhead(ctx, showID, after, before)
	c.read.Add(ahead)
	return ahead, admitted, err
}

func (c *countingStore) QueuePlaces(ctx context.Context, showID string, joinedAfter time.Time, each func(boxoffice.QueuePlace) error) (int64, error) {
	read := int64(0) // the queue up to the last entry: all of it
	admitted, err := c.store.QueuePlaces(ctx, showID, joinedAfter, func(p boxoffice.QueuePlace) error {
		read = max(read, p.Ahead+1)
		return each(p)
	})
	c.read.Add(read)
	return admitted, err
}

// countedRoom opens a store that counts its reads of the queue, with the gig show, and a service
// on it whose room for the gig opens in a minute and admits 20 a second, when told to (AdmitOnce).
func countedRoom(t *testing.T, open opener) (st *countingStore, rooms *waitroom.Service, clock *inventorytest.Clock, opens time.Time) {
	t.Helper()
	clock = inventorytest.NewClock()
	st = &countingStore{store: open(t)}
	putGig(t, st, clock.Now())
	rooms, err := waitroom.New(context.Background(), waitroom.Config{Store: st, Now: clock.Now, AdmitEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rooms.Start(false)
	t.Cleanup(rooms.Close)
	opens = clock.Now().Add(time.Minute)
	if _, _, err := rooms.Put(context.Background(), "gig", waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: 20}); err != nil {
		t.Fatal(err)
	}
	return st, rooms, clock, opens
}

// joinGig joins buyer i (bi@example.com) to the gig's queue and answers the ticket's token.
func joinGig(t *testing.T, rooms *waitroom.Service, i int) string {
	t.Helper()
	in := waitroom.JoinInput{}
	in.Buyer.Email = fmt.Sprintf("b%d@example.com", i)
	tk, _, err := rooms.Join(context.Background(), "gig", in)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Token
}

// TestPositionsWithoutCounting: a ticket's position is exact as the queue moves and as
// arrivals join, without reading the queue before each ticket on each read. The store reads
// the queue once to number it, then reads only what arrivals add.
func TestPositionsWithoutCounting(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		st, rooms, clock, opens := countedRoom(t, open)
		clock.Advance(time.Minute)
		var tokens []string
		joinOne := func(i int) { tokens = append(tokens, joinGig(t, rooms, i)) }
		// check reads every ticket, newest first (the order that costs most when each read
		// counts the queue before its entry): the first admitted ones have no position, the rest
		// are 1, 2, … in arrival order.
		check := func(admitted int) {
			t.Helper()
			for i := len(tokens) - 1; i >= 0; i-- {
				tk, err := rooms.Status(ctx, tokens[i])
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case i < admitted && (tk.Status != "admitted" || tk.Position != nil):
					t.Fatalf("ticket %d of %d admitted = %+v", i, admitted, tk)
				case i >= admitted && (tk.Position == nil || *tk.Position != i-admitted+1):
					t.Fatalf("ticket %d with %d admitted = %+v, want position %d", i, admitted, tk, i-admitted+1)
				}
			}
		}
		// reads checks the entries read since the last call.
		var last int64
		reads := func(most int, what string) {
			t.Helper()
			n := st.read.Load()
			if n-last > int64(most) {
				t.Fatalf("%s: the store read %d queue entries, want at most %d", what, n-last, most)
			}
			last = n
		}
		const crowd = 300
		for i := range crowd {
			joinOne(i)
		}
		check(0)
		reads(crowd, "numbering the crowd before any admission")
		clock.Advance(time.Second)
		if n := rooms.AdmitOnce(ctx); n != 20 {
			t.Fatalf("admitted %d", n)
		}
		check(20) // numbered again: the places have not settled
		reads(crowd, "a second numbering")
		clock.Advance(10 * time.Second)
		check(20) // settled: numbered once more, and kept
		reads(crowd, "the numbering that settles the places")
		for admitted := 40; admitted <= 100; admitted += 20 {
			clock.Advance(time.Second)
			if n := rooms.AdmitOnce(ctx); n != 20 {
				t.Fatalf("admitted %d", n)
			}
			entries := st.entries.Load()
			check(admitted)
			// A waiting ticket with a settled place reads no entry: only the admitted ones do,
			// for their admission.
			if n := st.entries.Load() - entries; n != int64(admitted) {
				t.Fatalf("reading %d tickets, %d admitted, read %d entries; want %d", len(tokens), admitted, n, admitted)
			}
		}
		reads(0, "the queue moving under settled places")

		// Arrivals between two numberings are each counted from the one before: a count of
		// what stands between them, not of the queue.
		for i := crowd; i < crowd+50; i++ {
			joinOne(i)
			tk, err := rooms.Status(ctx, tokens[i])
			if err != nil || tk.Position == nil || *tk.Position != i-100+1 {
				t.Fatalf("arrival %d = %+v, %v; want position %d", i, tk, err, i-100+1)
			}
		}
		reads(crowd-100+2, "50 arrivals read as they join")
		check(100)
		reads(0, "reading the arrivals again")

		// The next numbering reads the waiting queue once, whatever the crowd polling it.
		clock.Advance(time.Second)
		if n := rooms.AdmitOnce(ctx); n != 20 {
			t.Fatalf("admitted %d", n)
		}
		joinOne(crowd + 50)
		check(120)
		reads(crowd+51-120, "a numbering for one new arrival")

		// The queue drains past every entry numbered before the next numbering: arrivals stand
		// first, counted from the last entry numbered though it was admitted.
		if _, _, err := rooms.Put(ctx, "gig", waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: 1000}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(500 * time.Millisecond)
		if n := rooms.AdmitOnce(ctx); n != crowd+51-120 {
			t.Fatalf("admitted %d, want all %d waiting", n, crowd+51-120)
		}
		for i := range 3 { // admitted before anyone reads them
			joinOne(crowd + 51 + i)
		}
		clock.Advance(100 * time.Millisecond)
		if n := rooms.AdmitOnce(ctx); n != 3 {
			t.Fatalf("admitted %d, want the 3 arrivals", n)
		}
		for i := range 5 {
			joinOne(crowd + 54 + i)
			tk, err := rooms.Status(ctx, tokens[len(tokens)-1])
			if err != nil || tk.Position == nil || *tk.Position != i+1 {
				t.Fatalf("arrival %d after the queue drained = %+v, %v; want position %d", i, tk, err, i+1)
			}
		}
		reads(5, "5 arrivals after the queue drained")
		check(crowd + 54)
	})
}

// TestTicketEventsForACrowd: a crowd waiting on event streams costs the server no goroutine a
// stream (each would hold its stack and its connection's buffers: 34 KB a stream); every stream
// still gets its events, a stream whose client left is closed at its next turn, and stopping
// the waiting rooms ends them all.
func TestTicketEventsForACrowd(t *testing.T) {
	clock := inventorytest.NewClock()
	s := newServer(t, sqliteStore(t), clock)
	opens := s.showWithRoom(1, 60)
	const crowd = 100
	var tokens []string
	for i := range crowd {
		tokens = append(tokens, s.join(fmt.Sprintf("c%d@example.com", i), 201).Token)
	}
	clock.Advance(opens.Sub(clock.Now()) + time.Second)
	host := strings.TrimPrefix(s.url, "http://")
	type stream struct {
		conn net.Conn
		r    *bufio.Reader
	}
	// next reads the stream's next event within a bound, and answers the ticket it carries.
	next := func(st stream) (*waitroom.Ticket, error) {
		_ = st.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			line, err := st.r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var tk waitroom.Ticket
				return &tk, json.Unmarshal([]byte(data), &tk)
			}
		}
	}
	// sockets counts the process's open sockets (its other files come and go: the store's
	// connections are opened as reads need them).
	sockets := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd here")
		}
		n := 0
		for _, e := range ents {
			if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		return n
	}
	runtime.GC()
	goroutines, open := runtime.NumGoroutine(), sockets()
	var streams []stream
	for _, tok := range tokens {
		conn, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET /v1/waiting-room/tickets/%s/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", tok, host, s.key)
		st := stream{conn, bufio.NewReader(conn)}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(st.r, nil)
		if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %v %v", res, err)
		}
		if tk, err := next(st); err != nil || tk.Status != "waiting" || tk.Position == nil {
			t.Fatalf("first event %+v, %v", tk, err)
		}
		streams = append(streams, st)
	}
	// The test's own streams hold no goroutine either: what grew is the server's.
	if grown := runtime.NumGoroutine() - goroutines; grown > crowd/2 {
		t.Fatalf("%d goroutines more with %d streams open", grown, crowd)
	}
	// Half the crowd leaves; the others keep getting their tickets, each with a fresh token.
	left := crowd / 2
	for _, st := range streams[:left] {
		st.conn.Close()
	}
	for i, st := range streams[left:] {
		if tk, err := next(st); err != nil || tk.Status != "waiting" || tk.Position == nil || tk.Token == "" {
			t.Fatalf("stream %d: next event %+v, %v", left+i, tk, err)
		}
	}
	// The server closes the connections of those who left at their next turn (5 s at most
	// apart): the process holds the remaining streams' two ends, and what it held before.
	want := open + 2*(crowd-left)
	for deadline := time.Now().Add(15 * time.Second); sockets() > want && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := sockets(); n > want {
		t.Fatalf("%d sockets open after %d of %d streams' clients left, want %d", n, left, crowd, want)
	}
	// Stopping the waiting rooms ends every stream.
	s.rooms.Close()
	for i, st := range streams[left:] {
		for {
			if _, err := next(st); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("stream %d after the rooms stopped: %v, want its end", left+i, err)
				}
				break
			}
		}
	}
}

// TestPollAfter: a waiting ticket says when to read it again: every 5 s before the on-sale, a
// quarter of its estimated wait after it (1 s near the front, 5 s at most), nothing once admitted.
func TestPollAfter(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		_, rooms, clock, opens := countedRoom(t, open) // 20 admitted a second
		var tokens []string
		for i := range 300 {
			tokens = append(tokens, joinGig(t, rooms, i))
		}
		status := func(i int) *waitroom.Ticket {
			t.Helper()
			tk, err := rooms.Status(ctx, tokens[i])
			if err != nil {
				t.Fatal(err)
			}
			return tk
		}
		if tk := status(0); tk.PollAfterSeconds != 5 {
			t.Fatalf("before the on-sale: %+v, want poll_after_seconds 5", tk)
		}
		clock.Advance(time.Minute + time.Second)
		if n := rooms.AdmitOnce(ctx); n != 20 {
			t.Fatalf("admitted %d", n)
		}
		byPosition := map[int]int{}
		for i := range tokens {
			tk := status(i)
			if tk.Status == "admitted" {
				if tk.PollAfterSeconds != 0 {
					t.Fatalf("admitted ticket %+v says when to poll", tk)
				}
				continue
			}
			if tk.Position == nil || tk.EstimatedWaitSeconds == nil {
				t.Fatalf("waiting ticket %+v without a position", tk)
			}
			byPosition[*tk.Position] = tk.PollAfterSeconds
		}
		// At 20 a second: position 1 waits 1 s, 100 waits 5 s, 200 10 s, 280 14 s.
		for pos, want := range map[int]int{1: 1, 20: 1, 100: 2, 200: 3, 280: 4} {
			if got, ok := byPosition[pos]; !ok || got != want {
				t.Errorf("position %d: poll_after_seconds %d (found %v), want %d", pos, got, ok, want)
			}
		}
		// Far back in a slow queue: at most 5 s between reads.
		if _, _, err := rooms.Put(ctx, "gig", waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: 2}); err != nil {
			t.Fatal(err)
		}
		var last *waitroom.Ticket
		for i := range tokens {
			if tk := status(i); tk.Position != nil && (last == nil || *tk.Position > *last.Position) {
				last = tk
			}
		}
		if last == nil || *last.Position != 280 || *last.EstimatedWaitSeconds != 140 || last.PollAfterSeconds != 5 {
			t.Fatalf("at 2 a second, the last ticket %+v; want position 280, a wait of 140 s and poll_after_seconds 5", last)
		}
	})
}

// TestPositionsPastTheLimits: positions stay exact where a stadium's queue would leave the
// numbering a sample of it to count from, and more waiting than the settled places a server
// keeps: the limits are set low, to a few places, under a queue of a few hundred drawn before the
// on-sale and arriving after it.
func TestPositionsPastTheLimits(t *testing.T) {
	for _, limits := range []struct {
		name           string
		sample, places int
	}{{"sampled", 32, 1 << 20}, {"too many to settle", 32, 50}} {
		t.Run(limits.name, func(t *testing.T) {
			waitroom.SetLimits(t, limits.sample, limits.places)
			eachStore(t, func(t *testing.T, open opener) {
				ctx := context.Background()
				st, rooms, clock, _ := countedRoom(t, open)
				const early, late = 120, 80
				// Counting every ticket's place from the head would read 20,000 entries a check.
				// A numbering reads the queue once, and each place is counted from a sampled one,
				// fewer than 200/32·3 entries before it (TestSampleBoundsRecent).
				const mostReads = 2*(early+late) + (early+late)*20
				var tokens []string
				for i := range early + late {
					if i == early {
						clock.Advance(time.Minute) // the on-sale
					}
					tokens = append(tokens, joinGig(t, rooms, i))
				}
				// check reads every ticket, newest first: the waiting ones stand at 1, 2, …
				// (the early ones in the draw's order, unknown here, all before the late ones,
				// which stand in arrival order), and admitted of them are not waiting.
				check := func(admitted int) {
					t.Helper()
					seen := map[int]int{}
					for i := len(tokens) - 1; i >= 0; i-- {
						tk, err := rooms.Status(ctx, tokens[i])
						if err != nil {
							t.Fatal(err)
						}
						if tk.Position == nil {
							if tk.Status != "admitted" {
								t.Fatalf("ticket %d = %+v: neither waiting nor admitted", i, tk)
							}
							continue
						}
						pos := *tk.Position
						if j, dup := seen[pos]; dup || pos < 1 || pos > early+late-admitted {
							t.Fatalf("ticket %d at position %d (ticket %d there too: %v) with %d admitted", i, pos, j, dup, admitted)
						}
						seen[pos] = i
						if i >= early && pos != i-admitted+1 {
							t.Fatalf("ticket %d, joined after the on-sale, at %d with %d admitted; want %d", i, pos, admitted, i-admitted+1)
						}
						if i < early && pos > early-admitted {
							t.Fatalf("ticket %d, drawn before the on-sale, at %d behind a later arrival", i, pos)
						}
					}
					if len(seen) != early+late-admitted {
						t.Fatalf("%d tickets waiting, want %d", len(seen), early+late-admitted)
					}
					if n := st.read.Swap(0); n > mostReads {
						t.Fatalf("%d admitted: the store read %d queue entries for the positions, want at most %d", admitted, n, mostReads)
					}
				}
				clock.Advance(10 * time.Second) // all joined by the mark, nothing admitted: no place settles
				check(0)
				for admitted := 20; admitted <= 60; admitted += 20 {
					clock.Advance(time.Second)
					if n := rooms.AdmitOnce(ctx); n != 20 {
						t.Fatalf("admitted %d", n)
					}
					check(admitted)
					check(admitted) // read again: from settled places where they are kept
				}
			})
		})
	}
}

// TestRoomMadeAgain: a room deleted and made again starts a new queue, whose entries may reuse
// the old ones' numbers (SQLite's rowids). A server that had settled places of the old queue,
// whether it deleted the room or another server did, must neither answer an old ticket nor give
// a new one an old place.
func TestRoomMadeAgain(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := inventorytest.NewClock()
		st := open(t)
		putGig(t, st, clock.Now())
		var servers []*waitroom.Service
		for range 2 {
			s, err := waitroom.New(ctx, waitroom.Config{Store: open(t), Now: clock.Now, AdmitEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			s.Start(false)
			t.Cleanup(s.Close)
			servers = append(servers, s)
		}
		a := servers[0]
		// queue makes a room open now on a, joins n buyers named prefix, admits the first two
		// and lets every place settle, reading each ticket on both servers; it answers the
		// tokens.
		queue := func(prefix string, n int) []string {
			t.Helper()
			opens := clock.Now()
			if _, _, err := a.Put(ctx, "gig", waitroom.RoomInput{OpensAt: &opens, AdmitPerSecond: 2}); err != nil {
				t.Fatal(err)
			}
			var tokens []string
			for i := range n {
				in := waitroom.JoinInput{}
				in.Buyer.Email = fmt.Sprintf("%s%d@example.com", prefix, i)
				tk, _, err := a.Join(ctx, "gig", in)
				if err != nil {
					t.Fatal(err)
				}
				tokens = append(tokens, tk.Token)
			}
			clock.Advance(time.Second)
			if got := a.AdmitOnce(ctx); got != 2 {
				t.Fatalf("admitted %d", got)
			}
			clock.Advance(10 * time.Second)
			for _, s := range servers {
				for i, tok := range tokens[2:] {
					tk, err := s.Status(ctx, tok)
					if err != nil || tk.Position == nil || *tk.Position != i+1 {
						t.Fatalf("%s ticket %d = %+v, %v; want position %d", prefix, i+2, tk, err, i+1)
					}
				}
			}
			return tokens
		}
		old := queue("old", 8)
		if err := a.Delete(ctx, "gig"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Second) // past b's cache of the room
		fresh := queue("new", 6)
		for _, s := range servers {
			for i, tok := range old {
				if tk, err := s.Status(ctx, tok); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
					t.Fatalf("old ticket %d after the room was made again = %+v, %v; want not found", i, tk, err)
				}
			}
		}
		for _, s := range servers {
			for i, tok := range fresh[2:] {
				if tk, err := s.Status(ctx, tok); err != nil || tk.Position == nil || *tk.Position != i+1 {
					t.Fatalf("new ticket %d = %+v, %v; want position %d", i+2, tk, err, i+1)
				}
			}
		}
	})
}
