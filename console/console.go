// Package console is the operator's console at /console: the live sale in a browser (shows and
// tiers with their counts, purchases a second and confirmation latency over the last minute,
// the relay's lag, each consumer's lag and health, the dead letters), order search and cancel, API keys, and the cluster.
//
// It is server-rendered HTML and a small script, all embedded, so it works offline and needs no
// build step. An operator signs in with an admin key once; the browser then holds a session cookie
// (HttpOnly, SameSite=Strict, Path=/console) naming a session kept in this process's memory, never
// the key. Every action is a POST that must carry the session's CSRF token in a header (or, for the
// sign-out form, a hidden field) and, when the browser sends one, a same-origin Origin header.
// Actions go through the sale service (or the dead-letter queue), so the console holds every
// guarantee the API holds: a cancel is idempotent under the key the page made for it, a refund
// happens once.
package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"boxoffice"
	"boxoffice/internal/webpage"
	"boxoffice/sale"
)

// Service is what the console needs of the box office: the methods of *sale.Service it calls.
type Service interface {
	Authenticate(ctx context.Context, key string) (*boxoffice.Principal, error)
	ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, string, error)
	ListEvents(ctx context.Context, after string, limit int) ([]*boxoffice.Event, string, error)
	GetOrder(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Order, error)
	ListOrders(ctx context.Context, p *boxoffice.Principal, showID, after string, limit int) ([]*boxoffice.Order, string, error)
	CancelOrder(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, id string) (*boxoffice.Response, bool, error)
	ListAPIKeys(ctx context.Context, after string, limit int) ([]*boxoffice.APIKey, string, error)
	RevokeAPIKey(ctx context.Context, id string) error
	ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error)
	ExpiringHolds(ctx context.Context, within time.Duration, limit int) ([]*boxoffice.Hold, error)
	OrderCounts(ctx context.Context, limit int) (map[boxoffice.OrderStatus]int, error)
}

var _ Service = (*sale.Service)(nil)

// DeadLetterQueue is the async side's dead-letter queue (nats.Async implements it).
type DeadLetterQueue interface {
	ListDeadLetters(ctx context.Context, limit int) ([]boxoffice.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id string) error
}

// Options configures New. Every field is optional: a part that is nil is not shown.
type Options struct {
	// DeadLetters lists and replays dead letters.
	DeadLetters DeadLetterQueue
	// RelayPosition returns the outbox relay's checkpoint (see RelayCheckpoint), for its lag.
	RelayPosition func(ctx context.Context) (int64, error)
	// Consumers lists the event stream's durable consumers (the async side's Consumers, adapted
	// to this package's type so that the console does not depend on the bus); the console adds
	// each webhook endpoint's state from the store.
	Consumers func(ctx context.Context) ([]Consumer, error)
	// WaitRooms lists the waiting rooms with their counts (the waiting room service's Rooms);
	// nil shows none.
	WaitRooms func(ctx context.Context, limit int) ([]*boxoffice.WaitRoom, error)
	// PauseWaitRoom pauses or resumes a show's waiting room (the waiting room service's Pause);
	// nil: the console offers no such action.
	PauseWaitRoom func(ctx context.Context, showID string, paused bool) (*boxoffice.WaitRoom, error)
	// Cluster returns what GET /v1/cluster answers, shown as it is.
	Cluster func(ctx context.Context) (any, error)
	// Now is the clock of sessions and of the chart; nil is time.Now.
	Now func() time.Time
	// SessionIdle ends a session this long after its last request (default 30 minutes);
	// SessionMax ends it this long after sign-in however active it is (default 12 hours).
	SessionIdle, SessionMax time.Duration
	// Refresh is how often the live view is rebuilt (default one second).
	Refresh time.Duration
	// Logger gets internal errors; nil discards them.
	Logger *slog.Logger
}

//go:embed assets
var assets embed.FS

// pages are the console's HTML templates.
var pages = template.Must(template.ParseFS(assets, "assets/*.html"))

// Console is the console's http.Handler, for /console and everything under it. Close it to end
// its live streams and its sampler.
type Console struct {
	svc      Service
	opts     Options
	log      *slog.Logger
	sessions *sessions
	sampler  *sampler
	mux      *http.ServeMux
	static   http.Handler

	base      context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns the console of svc and starts its sampler, which reads nothing until a page
// watches.
func New(svc Service, opts Options) *Console {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 30 * time.Minute
	}
	if opts.SessionMax <= 0 {
		opts.SessionMax = 12 * time.Hour
	}
	if opts.Refresh <= 0 {
		opts.Refresh = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	base, cancel := context.WithCancel(context.Background())
	c := &Console{svc: svc, opts: opts, log: opts.Logger,
		sessions: newSessions(opts.Now, opts.SessionIdle, opts.SessionMax),
		mux:      http.NewServeMux(), static: http.StripPrefix("/console/static/", http.FileServerFS(static)),
		base: base, cancel: cancel}
	c.sampler = newSampler(c)
	c.routes()
	c.wg.Go(func() { c.sampler.run(base, opts.Refresh) })
	return c
}

// Close ends the live streams (so a server's shutdown does not wait for them) and the sampler.
func (c *Console) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
}

func (c *Console) now() time.Time { return c.opts.Now() }

// routes registers the console's routes. Signed-out requests reach only the page (which then
// offers the sign-in form), the sign-in and the static assets.
func (c *Console) routes() {
	c.mux.HandleFunc("GET /console", c.page)
	c.mux.HandleFunc("GET /console/{$}", c.page)
	c.mux.Handle("GET /console/static/", c.static)
	c.mux.HandleFunc("POST /console/signin", c.signIn)
	c.mux.HandleFunc("POST /console/signout", c.action(c.signOut))
	c.mux.HandleFunc("GET /console/api/state", c.signedIn(c.getState))
	c.mux.HandleFunc("GET /console/api/stream", c.signedIn(c.stream))
	c.mux.HandleFunc("GET /console/api/orders", c.signedIn(c.searchOrders))
	c.mux.HandleFunc("GET /console/api/keys", c.signedIn(c.listKeys))
	c.mux.HandleFunc("POST /console/api/orders/{order_id}/cancel", c.action(c.cancelOrder))
	c.mux.HandleFunc("POST /console/api/dead-letters/{id}/replay", c.action(c.replay))
	c.mux.HandleFunc("POST /console/api/keys/{key_id}/revoke", c.action(c.revokeKey))
	c.mux.HandleFunc("POST /console/api/waiting-rooms/{show_id}/pause", c.action(c.pauseRoom(true)))
	c.mux.HandleFunc("POST /console/api/waiting-rooms/{show_id}/resume", c.action(c.pauseRoom(false)))
	c.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, boxoffice.ENOTFOUND, "no such console resource")
	})
}

// ServeHTTP serves the console. Every answer forbids framing (clickjacking a Cancel button) and
// scripts from anywhere but the console itself; none is cached, as each shows live data.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	webpage.SecureHeaders(w)
	c.mux.ServeHTTP(w, r)
}

// pageData fills the templates.
type pageData struct {
	CSRF  string
	KeyID string
	Error string
}

// page is the console when signed in, else the sign-in form.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	ss := c.sessions.get(r)
	if ss == nil {
		c.render(w, http.StatusOK, "signin.html", pageData{})
		return
	}
	c.render(w, http.StatusOK, "console.html", pageData{CSRF: ss.csrf, KeyID: ss.keyID})
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		c.log.Error("console: render page", "page", name, "err", err)
	}
}

// maxSignInBytes bounds the sign-in form: a key and little else.
const maxSignInBytes = 4 << 10

// signIn checks the admin key from the form (a POST body, so it is in no URL, history or log)
// and, if it is an admin's, starts a session. Anything else answers 401 with the form again and
// sets nothing.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !webpage.SameOrigin(r) {
		writeJSONError(w, http.StatusForbidden, boxoffice.EFORBIDDEN, "cross-origin sign-in refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBytes)
	key := strings.TrimSpace(r.PostFormValue("key"))
	refuse := func(msg string) {
		c.render(w, http.StatusUnauthorized, "signin.html", pageData{Error: msg})
	}
	if key == "" {
		refuse("Enter the admin key.")
		return
	}
	p, err := c.svc.Authenticate(r.Context(), key)
	switch code := boxoffice.ErrorCode(err); {
	case err != nil && code != boxoffice.ENOTFOUND && code != boxoffice.EUNAUTHORIZED:
		c.log.Error("console: sign-in", "err", err)
		c.render(w, http.StatusServiceUnavailable, "signin.html", pageData{Error: "The key could not be checked right now; try again."})
		return
	case err != nil || p == nil:
		refuse("That key is not valid.")
		return
	case p.Role != boxoffice.RoleAdmin:
		refuse("That key is not an admin key; the console needs one.")
		return
	}
	ss := c.sessions.create(p.KeyID)
	setCookie(w, r, ss.id, 0)
	// 303: the browser GETs the console, so a reload does not post the key again.
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// signOut ends the session and clears the cookie.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, ss *session) {
	c.sessions.end(ss.id)
	setCookie(w, r, "", -1)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// signedIn serves h only to a signed-in browser; others get 401.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := c.sessions.get(r)
		if ss == nil {
			writeJSONError(w, http.StatusUnauthorized, boxoffice.EUNAUTHORIZED, "sign in to the console first")
			return
		}
		h(w, r, ss)
	}
}

// csrfHeader carries the session's CSRF token on the console's POSTs; csrfField is the form
// field the sign-out form uses instead (a form cannot set headers).
const (
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf"
)

// action serves h only to a signed-in browser whose request carries the session's CSRF token and
// comes from the console's own origin: a cookie alone never acts.
func (c *Console) action(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return c.signedIn(func(w http.ResponseWriter, r *http.Request, ss *session) {
		token := r.Header.Get(csrfHeader)
		if token == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(w, r.Body, maxSignInBytes)
			token = r.PostFormValue(csrfField)
		}
		if !webpage.SameOrigin(r) || !ss.validCSRF(token) {
			writeJSONError(w, http.StatusForbidden, boxoffice.EFORBIDDEN, "missing or wrong CSRF token")
			return
		}
		h(w, r, ss)
	})
}
