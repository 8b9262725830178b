package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"boxoffice"
	"boxoffice/sale"
)

// Forwarding goes over NATS request-reply to a subject of the owner's own, forwardPrefix + its
// id, rather than through an HTTP proxy to an advertised URL: every server of a cluster already
// has the NATS connection (several servers need one NATS cluster anyway), a request to an owner
// that has died fails at once with "no responders" instead of a connect timeout, no address
// needs advertising across NAT or containers, and the call is the decoded operation, so REST
// and gRPC are forwarded alike. NATS is the servers' own network: whoever may publish on it is
// trusted as a server, as whoever may publish on the events stream already is.
const forwardPrefix = "boxoffice.fwd."

// forwardSlack is added to the sync budget for a forwarded call's wait: the owner answers within
// its budget (a 202 when the payment is slow) plus the time of the sale's own transactions.
const forwardSlack = 10 * time.Second

// Executor runs a forwarded call: *sale.Service.
type Executor interface {
	Serve(ctx context.Context, c *sale.Call) (*boxoffice.Response, bool, error)
}

// Router is the sale.Router of a server among several: Node's ownership and NATS forwarding.
type Router struct {
	node    *Node
	timeout time.Duration
	// limit bounds the forwarded calls this server runs at once, as --max-in-flight bounds its
	// own requests.
	limit chan struct{}

	mu  sync.Mutex
	nc  *natsgo.Conn
	sub *natsgo.Subscription
	wg  sync.WaitGroup
}

// NewRouter returns the Router of node; calls wait for their owner for at most syncBudget plus
// a margin; at most maxInFlight forwarded calls run here at once. It forwards nothing until
// Attach.
func NewRouter(node *Node, syncBudget time.Duration, maxInFlight int) *Router {
	return &Router{node: node, timeout: syncBudget + forwardSlack, limit: make(chan struct{}, max(1, maxInFlight))}
}

var _ sale.Router = (*Router)(nil)

// Owns implements sale.Router.
func (r *Router) Owns(ctx context.Context, showID string) (bool, error) {
	return r.node.Owns(ctx, showID)
}

// Attach starts serving calls forwarded to this server, run by exec, and forwarding over nc.
func (r *Router) Attach(nc *natsgo.Conn, exec Executor) error {
	sub, err := nc.Subscribe(forwardPrefix+r.node.ID(), func(m *natsgo.Msg) {
		select {
		case r.limit <- struct{}{}:
		default:
			r.reply(m, nil, false, boxoffice.Overloaded(time.Second, "this server is at capacity; retry"))
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.limit }()
			r.serve(m, exec)
		}()
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe for forwarded calls: %w", err)
	}
	// Without pending limits a flood of forwarded calls would queue without bound in the client;
	// the semaphore above sheds them instead, so the subscription needs room only for a burst.
	_ = sub.SetPendingLimits(64*1024, 256<<20)
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cluster: subscribe for forwarded calls: %w", err)
	}
	r.mu.Lock()
	r.nc, r.sub = nc, sub
	r.mu.Unlock()
	return nil
}

// Detach stops taking forwarded calls and waits for those running.
func (r *Router) Detach() {
	r.mu.Lock()
	sub := r.sub
	r.sub, r.nc = nil, nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Drain()
	}
	r.wg.Wait()
}

// wire is a forwarded call's answer.
type wire struct {
	Status   int        `json:"status,omitempty"`
	Body     []byte     `json:"body,omitempty"`
	Location string     `json:"location,omitempty"`
	Replayed bool       `json:"replayed,omitempty"`
	Err      *wireError `json:"error,omitempty"`
}

type wireError struct {
	Code       string                 `json:"code"`
	Message    string                 `json:"message"`
	Fields     []boxoffice.FieldError `json:"fields,omitempty"`
	Available  *int                   `json:"available,omitempty"`
	RetryAfter time.Duration          `json:"retry_after,omitempty"`
}

func (r *Router) serve(m *natsgo.Msg, exec Executor) {
	var c sale.Call
	if err := json.Unmarshal(m.Data, &c); err != nil {
		r.reply(m, nil, false, fmt.Errorf("decode forwarded call: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	res, replayed, err := exec.Serve(ctx, &c)
	r.reply(m, res, replayed, err)
}

func (r *Router) reply(m *natsgo.Msg, res *boxoffice.Response, replayed bool, err error) {
	var w wire
	if res != nil {
		w.Status, w.Body, w.Location = res.Status, res.Body, res.Location
	}
	w.Replayed = replayed
	if err != nil {
		var e *boxoffice.Error
		if errors.As(err, &e) {
			w.Err = &wireError{Code: e.Code, Message: e.Message, Fields: e.Fields, Available: e.Available, RetryAfter: e.RetryAfter}
		} else {
			r.node.log.Error("cluster: forwarded call failed", "err", err)
			w.Err = &wireError{Code: boxoffice.EINTERNAL, Message: "the server that owns the show failed"}
		}
	}
	data, _ := json.Marshal(&w)
	_ = m.Respond(data)
}

// Forward implements sale.Router: it sends c to the server that owns showID and returns its
// answer. An owner that is gone or silent is a retryable EOVERLOADED; the client's retry, with
// the same Idempotency-Key, is routed afresh and has one effect.
func (r *Router) Forward(ctx context.Context, showID string, c *sale.Call) (*boxoffice.Response, bool, error) {
	r.mu.Lock()
	nc := r.nc
	r.mu.Unlock()
	owner := r.node.owner(showID)
	if nc == nil || owner == "" {
		return nil, false, moving(showID)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, forwardPrefix+owner, data)
	if err != nil {
		if errors.Is(err, natsgo.ErrNoResponders) {
			r.node.forget(showID)
		}
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, false, ctx.Err() // the client is gone
		}
		r.node.log.Warn("cluster: forward failed", "show", showID, "owner", owner, "err", err)
		return nil, false, moving(showID)
	}
	var w wire
	if err := json.Unmarshal(m.Data, &w); err != nil {
		return nil, false, fmt.Errorf("decode forwarded answer: %w", err)
	}
	if w.Err != nil {
		return nil, false, &boxoffice.Error{Code: w.Err.Code, Message: w.Err.Message, Fields: w.Err.Fields,
			Available: w.Err.Available, RetryAfter: w.Err.RetryAfter}
	}
	if w.Status == 0 {
		return nil, w.Replayed, nil // ReleaseHold answers no body
	}
	return &boxoffice.Response{Status: w.Status, Body: w.Body, Location: w.Location}, w.Replayed, nil
}
