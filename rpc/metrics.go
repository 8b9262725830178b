package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"boxoffice/internal/prom"
)

// metrics are the RPC side's Prometheus collectors. They live in the registry the HTTP side serves
// on /metrics, so one scrape sees both transports; RPCs never reach the HTTP metrics, which count
// REST only.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the collectors in reg, reusing ones an earlier handler registered there, so
// that two handlers on one registry (tests, a restart in process) share their series.
func newMetrics(reg *prometheus.Registry) *metrics {
	return &metrics{
		requests: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "boxoffice_rpc_requests_total",
			Help: `RPCs served (gRPC, gRPC-Web and Connect), by procedure and code ("ok" or the gRPC code, as Connect names it).`,
		}, []string{"procedure", "code"})),
		duration: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "boxoffice_rpc_duration_seconds",
			Help: "Time to serve an RPC, by procedure.",
			// The HTTP histogram's buckets, so that REST and RPC latencies compare bucket by bucket.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"procedure"})),
	}
}

// interceptor counts and times every unary RPC, and counts every stream the server serves. It
// must be the outermost interceptor, so that it sees the answer the client gets: shed RPCs, the
// real code behind logInternal, and recovered panics (connect.WithRecover adds its interceptor
// after ours, so inside it). The procedure label is bounded: connect calls interceptors only for
// the procedures a handler serves. Requests that fail before they reach the interceptors (an
// unreadable or oversized message, a wrong content type) are not counted; connect answers those
// itself.
func (m *metrics) interceptor() connect.Interceptor { return metricsInterceptor{m} }

type metricsInterceptor struct{ m *metrics }

// WrapUnary implements connect.Interceptor.
func (i metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		procedure := req.Spec().Procedure
		i.m.requests.WithLabelValues(procedure, codeLabel(err)).Inc()
		i.m.duration.WithLabelValues(procedure).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

// WrapStreamingHandler implements connect.Interceptor: a stream is counted with the code it ends
// with, but not timed: it lasts as long as its subject (a queue ticket waits minutes), which would
// say nothing in the latency histogram but skew it.
func (i metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		i.m.requests.WithLabelValues(conn.Spec().Procedure, codeLabel(err)).Inc()
		return err
	}
}

// WrapStreamingClient implements connect.Interceptor; the server makes no client streams.
func (metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// codeLabel is the code an RPC ends with: "ok", or the gRPC code in Connect's snake_case names
// (e.g. "permission_denied"). An error that is not a *connect.Error is named as connect will send
// it: a bare context error as canceled or deadline_exceeded, anything else as unknown.
func codeLabel(err error) string {
	var ce *connect.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce):
		return ce.Code().String()
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled.String()
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded.String()
	}
	return connect.CodeUnknown.String()
}
