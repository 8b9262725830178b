// Package rpc is the protobuf transport of the box office: the boxoffice.v1.BoxOfficeService of
// proto/boxoffice/v1/boxoffice.proto served with connectrpc.com/connect, so that gRPC, gRPC-Web
// and Connect clients all work, next to the standard gRPC health service and server reflection.
//
// Like the REST transport it makes no decision about tickets: every RPC calls the same service
// layer, and every answer is the service's rendered response (the REST JSON body, stored for
// replays) decoded into the proto message, so both transports give the same answers. Failures
// carry a gRPC code from one table and a boxoffice.v1.Problem detail with the SPEC code.
package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"connectrpc.com/connect"
	connectv2 "connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect/v2"
	"github.com/prometheus/client_golang/prometheus"

	"boxoffice"
	"boxoffice/gen/boxoffice/v1/boxofficev1connect"
	bohttp "boxoffice/http"
	"boxoffice/internal/keylimit"
)

// Options configures NewHandler. The zero value is usable.
type Options struct {
	// Logger receives internal errors and recovered panics; nil is slog.Default().
	Logger *slog.Logger
	// MaxInFlight bounds the RPCs served at once; more are shed with UNAVAILABLE (overloaded) at
	// once. Zero or less means 1024.
	MaxInFlight int
	// Registry receives the RPC metrics (boxoffice_rpc_requests_total by procedure and code,
	// boxoffice_rpc_duration_seconds by procedure). Pass the registry the HTTP handler serves on
	// /metrics, since this handler serves none; nil records no RPC metrics.
	Registry *prometheus.Registry
	// RateLimit bounds each API key's requests (RESOURCE_EXHAUSTED, rate_limited, past it); give
	// it the REST handler's, so a key has one budget over both transports. nil: no limit.
	RateLimit *keylimit.Limiter
	// WaitRoom, when set, serves the waiting room RPCs and is the REST handler's, so that both
	// transports serve one set of queues; nil answers those RPCs not_found. Holds and purchases
	// are admitted by the sale service whether or not it is set.
	WaitRoom bohttp.WaitRoom
}

// maxMessageBytes bounds a request message, as REST bounds a body (payload_too_large).
const maxMessageBytes = 64 << 10

// Handler serves the RPC paths: the box office service, health and reflection.
type Handler struct {
	mux      *http.ServeMux
	prefixes []string
}

// NewHandler returns the protobuf API of svc, the same service the REST handler is given.
func NewHandler(svc bohttp.Service, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	s := &server{svc: svc, limit: opts.RateLimit, rooms: opts.WaitRoom, log: opts.Logger}
	shed := make(chan struct{}, opts.MaxInFlight)
	// Metrics come first, outermost, so that they count what the client gets, shed RPCs included.
	var measure []connect.Interceptor
	if opts.Registry != nil {
		measure = append(measure, newMetrics(opts.Registry).interceptor())
	}
	handlerOpts := append(codecs(),
		connect.WithReadMaxBytes(maxMessageBytes),
		connect.WithInterceptors(append(measure, shedding(shed), logInternal(opts.Logger))...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, v any) error {
			opts.Logger.LogAttrs(ctx, slog.LevelError, "panic serving RPC",
				slog.String("procedure", spec.Procedure), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			return toError(errors.New("panic"))
		}),
	)
	h := &Handler{mux: http.NewServeMux()}
	mount := func(path string, hd http.Handler) {
		h.mux.Handle(path, hd)
		h.prefixes = append(h.prefixes, path)
	}
	path, service := boxofficev1connect.NewBoxOfficeServiceHandler(s, handlerOpts...)
	mount(path, refuseOversize(withDeadlines(service), connect.NewErrorWriter(handlerOpts...)))
	// Health checks are counted too: a failing probe shows in the same metrics as the service.
	mount(grpchealth.NewHandler(&checker{svc: svc}, connect.WithReadMaxBytes(maxMessageBytes), connect.WithInterceptors(measure...)))

	services := []string{boxofficev1connect.BoxOfficeServiceName, grpchealth.HealthV1ServiceName,
		grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName}
	refl := connectv2.NewServer()
	grpcreflect.Register(refl, grpcreflect.WithNamer(grpcreflect.NamerFunc(func() []string { return services })))
	connecthttp.Mount(prefixMux{h}, refl)
	return h
}

// refuseOversize answers a request whose announced length is past maxMessageBytes (plus the
// 5-byte envelope of gRPC framing) with the payload_too_large problem in the caller's protocol,
// as REST answers a body past 64 KiB. One whose length is not announced (a gRPC stream) meets
// connect's own bound, RESOURCE_EXHAUSTED without the problem detail.
func refuseOversize(next http.Handler, ew *connect.ErrorWriter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxMessageBytes+5 && ew.IsSupported(r) {
			_ = ew.Write(w, r, toError(boxoffice.Errorf(boxoffice.EPAYLOADTOOLARGE,
				"the request message is larger than %d bytes", maxMessageBytes)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// prefixMux records the paths connecthttp mounts, so that Handles knows them.
type prefixMux struct{ h *Handler }

// Handle implements connecthttp.ServeMux.
func (m prefixMux) Handle(pattern string, hd http.Handler) {
	m.h.mux.Handle(pattern, hd)
	if strings.HasSuffix(pattern, "/") {
		m.h.prefixes = append(m.h.prefixes, pattern)
	}
}

// Handles reports whether r is an RPC this handler serves (by its path), so that one listener can
// serve RPCs and REST side by side.
func (h *Handler) Handles(r *http.Request) bool {
	for _, p := range h.prefixes {
		if strings.HasPrefix(r.URL.Path, p) {
			return true
		}
	}
	return false
}

// ServeHTTP serves an RPC.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Mount returns a handler that serves the RPC paths with rpc and everything else with rest.
func Mount(rpc *Handler, rest http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rpc.Handles(r) {
			rpc.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// shedding refuses an RPC at once with overloaded when max are being served, as REST does, so a
// stampede costs latency for nobody already admitted.
func shedding(slots chan struct{}) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			default:
				return nil, toError(&boxoffice.Error{Code: boxoffice.EOVERLOADED, Message: "the server is at capacity; retry later"})
			}
			return next(ctx, req)
		}
	}
}

// logInternal logs the real error behind an INTERNAL answer; the client only sees "internal
// error".
func logInternal(log *slog.Logger) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			var ie *internalError
			if errors.As(err, &ie) {
				if ctx.Err() == nil {
					log.LogAttrs(ctx, slog.LevelError, "RPC failed",
						slog.String("procedure", req.Spec().Procedure), slog.Any("err", ie.cause))
				}
				return resp, ie.answer
			}
			return resp, err
		}
	}
}

// internalError carries the cause of an internal error to logInternal, and the answer to give.
type internalError struct {
	cause  error
	answer *connect.Error
}

func (e *internalError) Error() string { return e.answer.Error() }

// checker answers the standard health service: SERVING when the store answers.
type checker struct{ svc bohttp.Service }

// Check implements grpchealth.Checker for the whole server ("") and the box office service.
func (c *checker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && req.Service != boxofficev1connect.BoxOfficeServiceName {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("unknown service"))
	}
	if err := c.svc.Ready(ctx); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
