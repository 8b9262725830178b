// Package http is the HTTP transport of the box office (SPEC §3): routing, API-key authentication,
// the Idempotency-Key header and request fingerprints, strict JSON decoding, RFC 9457 problems,
// load shedding, panic recovery and Prometheus metrics. It makes no decision about tickets: every
// outcome comes from the sale service, and stored outcomes are written back byte for byte.
package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"boxoffice"
	"boxoffice/internal/keylimit"
	"boxoffice/internal/prom"
	"boxoffice/sale"
)

// Service is what the transport needs of the box office: exactly the methods of *sale.Service it
// calls, so that tests can put a small fake in its place.
type Service interface {
	Authenticate(ctx context.Context, key string) (*boxoffice.Principal, error)
	CreateAPIKey(ctx context.Context, idem sale.Idem, in sale.APIKeyInput) (*boxoffice.Response, bool, error)
	ListAPIKeys(ctx context.Context, after string, limit int) ([]*boxoffice.APIKey, string, error)
	RevokeAPIKey(ctx context.Context, id string) error
	PutShow(ctx context.Context, id string, in sale.ShowInput) (*boxoffice.Show, bool, error)
	GetShow(ctx context.Context, id string) (*boxoffice.Show, error)
	ListShows(ctx context.Context, after string, limit int) ([]*boxoffice.Show, string, error)
	ShowSeats(ctx context.Context, showID string) (body []byte, etag string, err error)
	CreateHold(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, in sale.HoldInput) (*boxoffice.Response, bool, error)
	GetHold(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Hold, error)
	ReleaseHold(ctx context.Context, p *boxoffice.Principal, id string) error
	ConfirmHold(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, holdID string, in sale.ConfirmInput) (*boxoffice.Response, bool, error)
	Purchase(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, in sale.PurchaseInput) (*boxoffice.Response, bool, error)
	GetOrder(ctx context.Context, p *boxoffice.Principal, id string) (*boxoffice.Order, error)
	ListOrders(ctx context.Context, p *boxoffice.Principal, showID, after string, limit int) ([]*boxoffice.Order, string, error)
	CancelOrder(ctx context.Context, p *boxoffice.Principal, idem sale.Idem, id string) (*boxoffice.Response, bool, error)
	ListEvents(ctx context.Context, after string, limit int) ([]*boxoffice.Event, string, error)
	PutWebhookEndpoint(ctx context.Context, id string, in sale.WebhookInput) (*boxoffice.WebhookEndpoint, bool, error)
	GetWebhookEndpoint(ctx context.Context, id string) (*boxoffice.WebhookEndpoint, error)
	ListWebhookEndpoints(ctx context.Context) ([]*boxoffice.WebhookEndpoint, error)
	DeleteWebhookEndpoint(ctx context.Context, id string) error
	RotateWebhookSecret(ctx context.Context, idem sale.Idem, id string, in sale.RotateSecretInput) (*boxoffice.Response, bool, error)
	RunOnce(ctx context.Context, idem sale.Idem, status int, op func(ctx context.Context) (any, error)) (*boxoffice.Response, bool, error)
	Ready(ctx context.Context) error
}

var _ Service = (*sale.Service)(nil)

// Options configures NewHandler. The zero value is usable.
type Options struct {
	// Logger receives internal errors and recovered panics; nil is slog.Default().
	Logger *slog.Logger
	// MaxInFlight bounds the requests under /v1 served at once; more are shed with 503 overloaded
	// at once instead of queueing, so a stampede costs latency for nobody already admitted.
	// Zero or less means 1024.
	MaxInFlight int
	// Registry receives the HTTP metrics and is served on /metrics; nil makes a new one that also
	// carries the Go runtime and process collectors.
	Registry *prometheus.Registry
	// NoMetrics leaves /metrics off this handler (it answers 404): the registry is served on a
	// listener of its own (boxoffice serve --metrics-addr), away from the API's clients.
	NoMetrics bool
	// DeadLetters is the async side's dead-letter queue, served under /v1/dead-letters; nil
	// answers those routes with 404.
	DeadLetters DeadLetters
	// RateLimit bounds each API key's requests (429 rate_limited past it); nil: no limit. The
	// RPC handler is given the same one, so a key has one budget over both transports.
	RateLimit *keylimit.Limiter
	// Cluster answers GET /v1/cluster (admin): the servers sharing the store, their heartbeats
	// and the leases each holds; nil answers 404.
	Cluster func(ctx context.Context) (any, error)
	// Ready, when set, is checked by /readyz after the service: the parts outside it that
	// requests need (the event bus). Its *boxoffice.NotReadyError's Reason is shown.
	Ready func(ctx context.Context) error
	// WaitRoom, when set, serves the waiting rooms: /v1/shows/{show_id}/waiting-room and
	// /v1/waiting-room/tickets/…; nil answers those routes with 404.
	WaitRoom WaitRoom
	// Console, when set, serves /console and everything under it (the operator's console, which
	// does its own sign-in); nil: those paths are 404s like any unknown one.
	Console http.Handler
	// Shop, when set, serves /shop/ and everything under it (the buyer's page, which signs
	// buyers in by their email); nil: those paths are 404s like any unknown one.
	Shop http.Handler
}

// defaultMaxInFlight is MaxInFlight when Options leave it zero.
const defaultMaxInFlight = 1024

// access is who may call a route.
type access int

const (
	public     access = iota // no key: health and metrics
	clientRole               // a client or an admin key: buy and read
	adminRole                // an admin key only
)

// endpoint serves one route and returns the response to write or the error to render; p is nil on
// public routes. Returning rather than writing keeps the writing (headers, replay marker, Retry-After)
// in one place.
type endpoint func(r *http.Request, p *boxoffice.Principal) (resp *boxoffice.Response, replayed bool, err error)

// handler is the http.Handler that NewHandler returns.
type handler struct {
	svc     Service
	log     *slog.Logger
	render  Renderer
	slots   chan struct{}
	metrics *metrics
	dlq     DeadLetters
	cluster func(ctx context.Context) (any, error)
	ready   func(ctx context.Context) error
	limit   *keylimit.Limiter
	// waitRoom serves the waiting rooms; nil: no such routes.
	waitRoom WaitRoom
	// streams holds the ticket event streams (with waitRoom).
	streams *streamHub
	mux     *http.ServeMux
	// allowed lists the methods of each path template, for the Allow header of a 405.
	allowed map[string][]string
}

// NewHandler returns the HTTP API of svc. Every error it writes, including unknown paths and
// wrong methods, is an application/problem+json body. It panics if opts.Registry already holds a
// different collector under one of its metric names, which is a wiring mistake.
func NewHandler(svc Service, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = defaultMaxInFlight
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	h := &handler{
		svc:      svc,
		log:      opts.Logger,
		slots:    make(chan struct{}, opts.MaxInFlight),
		metrics:  newMetrics(opts.Registry),
		dlq:      opts.DeadLetters,
		cluster:  opts.Cluster,
		ready:    opts.Ready,
		limit:    opts.RateLimit,
		waitRoom: opts.WaitRoom,
		mux:      http.NewServeMux(),
		allowed:  map[string][]string{},
	}
	var metricsHandler http.Handler
	if !opts.NoMetrics {
		metricsHandler = MetricsHandler(opts.Registry)
	}
	h.routes(metricsHandler)
	if opts.Console != nil {
		h.mux.Handle("/console", opts.Console)
		h.mux.Handle("/console/", opts.Console)
	}
	if opts.Shop != nil {
		h.mux.Handle("/shop/", opts.Shop)
	}
	return h
}

// MetricsHandler serves reg in Prometheus' text (or OpenMetrics) format, as /metrics does.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// routes registers every route, then a method-less pattern per path that answers 405 (a pattern
// with a method is more specific, so it only catches the other methods), and "/" for 404. This
// replaces ServeMux's own plain-text 404 and 405.
func (h *handler) routes(metricsHandler http.Handler) {
	if metricsHandler != nil {
		h.raw("GET /metrics", metricsHandler)
	}
	h.handle("GET /healthz", public, h.healthz)
	h.handle("GET /readyz", public, h.readyz)

	h.handle("POST /v1/api-keys", adminRole, h.createAPIKey)
	h.handle("GET /v1/api-keys", adminRole, h.listAPIKeys)
	h.handle("DELETE /v1/api-keys/{key_id}", adminRole, h.revokeAPIKey)
	h.handle("PUT /v1/shows/{show_id}", adminRole, h.putShow)
	h.handle("GET /v1/shows/{show_id}", clientRole, h.getShow)
	h.handle("GET /v1/shows/{show_id}/seats", clientRole, h.getSeats)
	h.handle("GET /v1/shows", clientRole, h.listShows)
	h.handle("POST /v1/shows/{show_id}/holds", clientRole, h.createHold)
	h.handle("GET /v1/holds/{hold_id}", clientRole, h.getHold)
	h.handle("DELETE /v1/holds/{hold_id}", clientRole, h.releaseHold)
	h.handle("POST /v1/holds/{hold_id}/confirm", clientRole, h.confirmHold)
	h.handle("POST /v1/purchases", clientRole, h.purchase)
	h.handle("GET /v1/orders/{order_id}", clientRole, h.getOrder)
	h.handle("GET /v1/orders", clientRole, h.listOrders)
	h.handle("POST /v1/orders/{order_id}/cancel", clientRole, h.cancelOrder)
	// The feed carries every channel's holds and orders, so it is the admin's.
	h.handle("GET /v1/feed", adminRole, h.feed)
	h.handle("PUT /v1/webhook-endpoints/{endpoint_id}", adminRole, h.putWebhook)
	h.handle("GET /v1/webhook-endpoints/{endpoint_id}", adminRole, h.getWebhook)
	h.handle("DELETE /v1/webhook-endpoints/{endpoint_id}", adminRole, h.deleteWebhook)
	h.handle("GET /v1/webhook-endpoints", adminRole, h.listWebhooks)
	h.handle("POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret", adminRole, h.rotateWebhookSecret)
	h.handle("GET /v1/dead-letters", adminRole, h.listDeadLetters)
	h.handle("POST /v1/dead-letters/{dead_letter_id}/replay", adminRole, h.replayDeadLetter)
	h.handle("POST /v1/dead-letters/replay", adminRole, h.replayAllDeadLetters)
	h.handle("GET /v1/cluster", adminRole, h.getCluster)
	if h.waitRoom != nil {
		h.streams = newStreamHub(h.waitRoom)
		h.waitRoomRoutes()
	}

	for path, methods := range h.allowed {
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead) // ServeMux serves HEAD with GET's handler
		}
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			h.writeError(w, r, boxoffice.Errorf(boxoffice.EMETHODNOTALLOWED, "%s is not allowed here; use %s", r.Method, allow))
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	})
}

// raw registers a handler that writes its own response.
func (h *handler) raw(pattern string, hd http.Handler) {
	method, path, _ := strings.Cut(pattern, " ")
	h.allowed[path] = append(h.allowed[path], method)
	h.mux.Handle(pattern, hd)
}

// handle registers an endpoint behind load shedding (for /v1), the body size limit and
// authentication, in that order: shedding first so that an overload costs no store lookup.
func (h *handler) handle(pattern string, acc access, ep endpoint) {
	_, path, _ := strings.Cut(pattern, " ")
	shed := strings.HasPrefix(path, "/v1/")
	h.raw(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shed {
			select {
			case h.slots <- struct{}{}:
				defer func() { <-h.slots }()
			default:
				h.writeError(w, r, &boxoffice.Error{Code: boxoffice.EOVERLOADED,
					Message: "the server is at capacity; retry later", RetryAfter: time.Second})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		// Every answer is one caller's data, and some carry secrets (a new API key, a webhook
		// signing secret): no cache on the way may keep a copy.
		w.Header().Set("Cache-Control", "no-store")
		var p *boxoffice.Principal
		if acc != public {
			var err error
			if p, err = h.authenticate(r, acc); err != nil {
				h.writeError(w, r, err)
				return
			}
			if err := h.limit.Allow(p.KeyID); err != nil {
				h.writeError(w, r, err)
				return
			}
		}
		resp, replayed, err := ep(r, p)
		if err == nil && resp == nil {
			err = errors.New("http: endpoint returned neither a response nor an error")
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeResponse(w, resp, replayed)
	}))
}

// authenticate returns the caller of r if its role may use a route of acc.
func (h *handler) authenticate(r *http.Request, acc access) (*boxoffice.Principal, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "an API key is required: Authorization: Bearer <key>")
	}
	scheme, key, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	key = strings.TrimSpace(key)
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "the Authorization header must be Bearer <key>")
	}
	p, err := h.svc.Authenticate(r.Context(), key)
	if err != nil {
		// A lookup miss is a bad key, not a missing resource; anything else (the store being
		// down) stays what it is so that a client does not throw away a good key.
		if c := boxoffice.ErrorCode(err); c == boxoffice.ENOTFOUND || c == boxoffice.EUNAUTHORIZED {
			return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "unknown API key")
		}
		return nil, err
	}
	if p == nil {
		return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "unknown API key")
	}
	switch {
	case p.Role == boxoffice.RoleAdmin:
	case p.Role == boxoffice.RoleClient && acc == clientRole:
	default:
		return nil, boxoffice.Errorf(boxoffice.EFORBIDDEN, "this API key may not do that")
	}
	return p, nil
}

// ServeHTTP counts and times every request by its route pattern and turns a panic into a 500.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.metrics.inFlight.Inc()
	rec := &recorder{ResponseWriter: w}
	defer func() {
		h.metrics.inFlight.Dec()
		// ServeMux sets r.Pattern on this very request; "" is a request it redirected or
		// refused before routing.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		h.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.statusCode())).Inc()
		h.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}()
	h.serveRecovered(rec, r)
}

// serveRecovered serves r and answers a panic with a 500 problem that tells nothing about it; the
// stack goes to the log. When the response had already begun, the connection is aborted instead,
// so that the client cannot take a cut-off body for a whole one.
func (h *handler) serveRecovered(w *recorder, r *http.Request) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v) // net/http's way to abort a response silently; not ours to swallow
		}
		h.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		if w.wroteHeader {
			panic(http.ErrAbortHandler)
		}
		// Drop whatever headers the handler had set: they described a response that never came.
		clear(w.Header())
		writeResponse(w, h.render.Problem(errors.New("panic")), false)
	}()
	h.mux.ServeHTTP(w, r)
}

// recorder remembers the status written, for the metrics and the panic handler.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

// WriteHeader records the status.
func (w *recorder) WriteHeader(status int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = status, true
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write records an implicit 200.
func (w *recorder) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer (flush, deadlines).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}

// metrics are the transport's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// newMetrics registers the collectors in reg, reusing ones an earlier handler registered there, so
// that two handlers on one registry (tests, a restart in process) share their series.
func newMetrics(reg *prometheus.Registry) *metrics {
	return &metrics{
		requests: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "boxoffice_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"})),
		duration: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "boxoffice_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"})),
		inFlight: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "boxoffice_http_requests_in_flight",
			Help: "HTTP requests being served.",
		})),
	}
}

// getCluster is GET /v1/cluster: the servers that share the store and the leases they hold.
func (h *handler) getCluster(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	if h.cluster == nil {
		return nil, false, boxoffice.Errorf(boxoffice.ENOTFOUND, "this server keeps no cluster status")
	}
	status, err := h.cluster(r.Context())
	if err != nil {
		return nil, false, err
	}
	return h.ok(status)
}
