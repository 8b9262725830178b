package nats

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ConsumerStatus is one durable consumer of the events stream as an operator looks at it: how far
// it trails the stream, what is in flight, and what last went wrong.
type ConsumerStatus struct {
	// Name is the durable consumer's name: EmailConsumer, or WebhookConsumer of an endpoint.
	Name string
	// Endpoint is the id of the webhook endpoint the consumer delivers to; empty for email.
	Endpoint string
	// Pending is how many messages of the stream the consumer has not yet delivered: its lag.
	Pending uint64
	// AckPending is how many were delivered and not yet acked: being applied, or waiting out a
	// retry's pause (a consumer takes one at a time, so at most one per consumer).
	AckPending int
	// Redelivered is how many of those were delivered more than once.
	Redelivered int
	// DeadLetters is how many of its messages wait in the dead-letter stream for a replay.
	DeadLetters uint64
	// LastError and LastErrorAt are the last delivery failure this server saw for the consumer
	// (other servers on the same stream see their own); empty when there was none since start.
	LastError   string
	LastErrorAt time.Time
	// Failing says the last delivery this server made failed: no delivery succeeded since
	// LastError.
	Failing bool
}

// Consumers lists the durable consumers of the events stream, the email consumer and one per
// webhook endpoint, sorted by name. The JetStream requests are bounded in time (as a scrape's
// are), so that an outage answers an error rather than holding the caller.
func (a *Async) Consumers(ctx context.Context) ([]ConsumerStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	st, err := a.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	infos, err := consumerInfos(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	dead, err := deadLetterCounts(ctx, a.js)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out := make([]ConsumerStatus, 0, len(infos))
	names := make(map[string]bool, len(infos))
	a.errs.mu.Lock()
	for _, ci := range infos {
		cs := ConsumerStatus{Name: ci.Name, Endpoint: webhookEndpointID(ci.Name), Pending: ci.NumPending,
			AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered, DeadLetters: dead[ci.Name]}
		if e, ok := a.errs.m[ci.Name]; ok {
			cs.LastError, cs.LastErrorAt, cs.Failing = e.msg, e.at, e.failing
		}
		names[ci.Name] = true
		out = append(out, cs)
	}
	// The consumers of deleted endpoints are gone from the stream: forget their errors, so that
	// the map stays as small as the list of endpoints.
	for name := range a.errs.m {
		if !names[name] {
			delete(a.errs.m, name)
		}
	}
	a.errs.mu.Unlock()
	slices.SortFunc(out, func(x, y ConsumerStatus) int { return cmp.Compare(x.Name, y.Name) })
	return out, nil
}

// webhookEndpointID returns the endpoint id in a webhook consumer's name (see WebhookConsumer:
// the id may hold underscores, the creation time after the last one does not); empty for any
// other consumer.
func webhookEndpointID(consumer string) string {
	rest, ok := strings.CutPrefix(consumer, webhookConsumerPrefix)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return ""
	}
	return rest[:i]
}
