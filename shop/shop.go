// Package shop is the buyer's page at /shop/{show_id}: a buyer types their email once, joins the
// show's waiting room when it has one and watches their place, picks seats on the map (or takes
// the best available, or a quantity of an unseated tier), holds them, pays with a test token and
// sees their tickets.
//
// It is server-rendered HTML and one small script, all embedded, so it works offline and needs
// no build step. The page is a backend for its frontend: the browser holds no API key. The
// handler calls the sale service and the waiting rooms in process, as one sales channel of its
// own (Channel), and answers the page's JSON with the very responses the REST API would give
// (rendered by bohttp.Renderer), so a refusal has the same status and code either way.
//
// A buyer is the email in a signed cookie (HttpOnly, SameSite=Strict, Path=/shop), signed with a
// secret kept in the store, so that every server sharing the store accepts it; with a Mailer the
// cookie is given only for the code emailed to the address (signin.go). Every action is a
// POST with a JSON body, an Idempotency-Key the page made for the user's action and, when the
// browser sends one, a same-origin Origin header; a hold or an order of another buyer is
// answered 404, as one that does not exist.
package shop

import (
	"context"
	"crypto/rand"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/internal/webpage"
	"boxoffice/sale"
	"boxoffice/waitroom"

	"golang.org/x/time/rate"
)

// Service is what the shop needs of the box office: the methods of *sale.Service it calls. With
// several servers the service forwards each show's writes to the show's owner itself, so the shop
// calls it the same way on any server.
type Service interface {
	GetShow(ctx context.Context, id string) (*boxoffice.Show, error)
	ShowSeats(ctx context.Context, showID string) (body []byte, etag string, err error)
	CreateHold(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, in sale.HoldInput) (*boxoffice.Response, bool, error)
	GetHold(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Hold, error)
	ReleaseHold(ctx context.Context, p *boxoffice.Principal, id string) error
	ConfirmHold(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, holdID string, in sale.ConfirmInput) (*boxoffice.Response, bool, error)
	GetOrder(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Order, error)
}

var _ Service = (*sale.Service)(nil)

// WaitRoom is what the shop needs of the waiting rooms: the methods of *waitroom.Service it
// calls.
type WaitRoom interface {
	Admitted(ctx context.Context, showID, email string) error
	Join(ctx context.Context, showID string, in waitroom.JoinInput) (*waitroom.Ticket, bool, error)
	Status(ctx context.Context, token string) (*waitroom.Ticket, error)
}

var _ WaitRoom = (*waitroom.Service)(nil)

// Secrets gives the store's shared secrets (boxoffice.WaitRoomStore has it): the one that signs
// the shop's cookies is made once and read by every server on the store.
type Secrets interface {
	Secret(ctx context.Context, name string, candidate []byte) ([]byte, error)
}

// Channel is the sales channel of the holds and orders the page makes. Stored API keys are
// "key_…" and the configured admin key is "admin", so no key an operator makes can be this
// channel: no API client sees or touches the page's holds, and the page sees no one else's.
const Channel = "shop"

// principal is the shop's caller for the sale service.
var principal = &boxoffice.Principal{KeyID: Channel, Role: boxoffice.RoleClient}

// secretName names the cookies' signing key among the store's secrets; the waiting room's is
// another, so that a cookie can never pass for a queue ticket or the other way round.
const secretName = "shop-session"

// Options configures New. Every field is optional.
type Options struct {
	// Secrets, when set, keeps the cookies' signing key in the store, so that a cookie one
	// server signed is good on every server and across restarts. nil: a key made for this
	// process, which signs every buyer out on a restart and is good on this server only (a
	// wiring for one server and tests, not for several).
	Secrets Secrets
	// Now is the clock of sessions; nil is time.Now.
	Now func() time.Time
	// SessionTTL is how long a buyer stays signed in (default 12 hours).
	SessionTTL time.Duration
	// MaxInFlight bounds the page's API requests worked on at once; more answer 503 overloaded
	// at once, as the REST API sheds its own (default 256). The page has no API key, so the
	// REST API's per-key limits do not apply to it.
	MaxInFlight int
	// Logger gets internal errors; nil discards them.
	Logger *slog.Logger
	// Mailer, when set, sends a code to the address a buyer types, and the buyer is signed in
	// only with that code (see sendCode). nil takes the address as typed: a wiring for tests and
	// demos, where anyone may buy as anyone.
	Mailer Mailer
	// CodesPerMinute bounds the sign-in codes this server mails a minute, to all addresses
	// together (default 600, in bursts of up to as many); more answer 429 rate_limited.
	CodesPerMinute int
}

//go:embed assets
var assets embed.FS

// pages are the shop's HTML templates.
var pages = template.Must(template.New("").Funcs(template.FuncMap{"money": money}).ParseFS(assets, "assets/*.html"))

// Shop is the buyer's page's http.Handler, for everything under /shop/.
type Shop struct {
	svc    Service
	rooms  WaitRoom // nil: this server has no waiting rooms, every show sells directly
	opts   Options
	log    *slog.Logger
	secret []byte
	slots  chan struct{}
	mux    *http.ServeMux
	static http.Handler
	shows  showCache
	// codesSent counts the codes sent to each address lately, wrongCodes the wrong codes given
	// for each pending sign-in; codeBudget is the codes this server may still mail, to anyone.
	codesSent, wrongCodes tally
	codeBudget            *rate.Limiter
}

// New returns the shop of svc and rooms (nil when the server has no waiting rooms). It fails
// only when the signing secret cannot be read from the store.
func New(ctx context.Context, svc Service, rooms WaitRoom, opts Options) (*Shop, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.CodesPerMinute <= 0 {
		opts.CodesPerMinute = defaultCodesPerMinute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	candidate := make([]byte, 32)
	_, _ = rand.Read(candidate) // crypto/rand.Read never fails (it crashes the program instead)
	secret := candidate
	if opts.Secrets != nil {
		var err error
		if secret, err = opts.Secrets.Secret(ctx, secretName, candidate); err != nil {
			return nil, err
		}
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	s := &Shop{svc: svc, rooms: rooms, opts: opts, log: opts.Logger, secret: secret,
		slots: make(chan struct{}, opts.MaxInFlight), mux: http.NewServeMux(),
		static:    http.StripPrefix(staticPrefix, http.FileServerFS(static)),
		codesSent: tally{window: codeWindow}, wrongCodes: tally{window: codeTTL},
		codeBudget: rate.NewLimiter(rate.Limit(float64(opts.CodesPerMinute)/60), opts.CodesPerMinute)}
	s.routes()
	return s, nil
}

// staticPrefix serves the script and the style sheet. It starts with "_", which no show id can
// (they match ^[a-z0-9][a-z0-9_-]{0,63}$), so no show's page is ever shadowed by it.
const staticPrefix = "/shop/_static/"

// routes registers the shop's routes.
func (s *Shop) routes() {
	// One route per file: a pattern "/shop/_static/" would overlap "/shop/{show_id}/…" with
	// neither more specific, which ServeMux refuses.
	files, err := fs.Glob(assets, "assets/*")
	if err != nil {
		panic(err) // the pattern is fixed
	}
	for _, f := range files {
		if name := path.Base(f); path.Ext(name) != ".html" {
			s.mux.Handle("GET "+staticPrefix+name, s.static)
		}
	}
	s.mux.HandleFunc("GET /shop/{show_id}", s.page)
	s.mux.HandleFunc("GET /shop/{show_id}/api/state", s.api(s.getState))
	s.mux.HandleFunc("GET /shop/{show_id}/api/seats", s.api(s.getSeats))
	s.mux.HandleFunc("POST /shop/{show_id}/api/session", s.api(s.signIn))
	s.mux.HandleFunc("POST /shop/{show_id}/api/session/code", s.api(s.confirmCode))
	s.mux.HandleFunc("POST /shop/{show_id}/api/signout", s.api(s.signOut))
	s.mux.HandleFunc("POST /shop/{show_id}/api/queue", s.api(s.buyer(s.joinQueue)))
	s.mux.HandleFunc("GET /shop/{show_id}/api/queue", s.api(s.buyer(s.queueStatus)))
	s.mux.HandleFunc("POST /shop/{show_id}/api/holds", s.api(s.buyer(s.createHold)))
	s.mux.HandleFunc("GET /shop/{show_id}/api/holds/{hold_id}", s.api(s.buyer(s.getHold)))
	s.mux.HandleFunc("POST /shop/{show_id}/api/holds/{hold_id}/confirm", s.api(s.buyer(s.confirmHold)))
	s.mux.HandleFunc("POST /shop/{show_id}/api/holds/{hold_id}/release", s.api(s.buyer(s.releaseHold)))
	s.mux.HandleFunc("GET /shop/{show_id}/api/orders/{order_id}", s.api(s.buyer(s.getOrder)))
	s.mux.HandleFunc("/shop/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such page"))
	})
}

// ServeHTTP serves the shop. Every answer forbids framing (a Pay button clickjacked) and scripts
// from anywhere but the shop itself; none is cached, as each shows live seats or one buyer's data.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	webpage.SecureHeaders(w)
	s.mux.ServeHTTP(w, r)
}

// pageData fills the page's template.
type pageData struct {
	Show  *boxoffice.Show
	Error string
}

// page is the buyer's page of a show: the show and its tiers rendered here, the rest (sign-in,
// queue, seats, hold, payment, tickets) driven by the script through the API below.
func (s *Shop) page(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("show_id")
	var show *boxoffice.Show
	var err error = boxoffice.Errorf(boxoffice.ENOTFOUND, "no such show")
	if boxoffice.ValidName(id) {
		show, err = s.show(r.Context(), id)
	}
	switch code := boxoffice.ErrorCode(err); {
	case code == boxoffice.ENOTFOUND:
		s.render(w, http.StatusNotFound, "missing.html", pageData{Error: "There is no such show."})
		return
	case err != nil:
		s.log.Error("shop: page", "show", id, "err", err)
		s.render(w, http.StatusServiceUnavailable, "missing.html", pageData{Error: "The show cannot be read right now; try again in a moment."})
		return
	}
	s.render(w, http.StatusOK, "shop.html", pageData{Show: show})
}

func (s *Shop) render(w http.ResponseWriter, status int, name string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("shop: render page", "page", name, "err", err)
	}
}

// money formats an amount in minor units, as "45.00 EUR".
func money(m boxoffice.Money) string {
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, a/100, a%100, m.Currency)
}

// rendered is the REST API's rendering of the outcomes, so that the page and the API answer a
// refusal with one status and one code.
var rendered bohttp.Renderer
