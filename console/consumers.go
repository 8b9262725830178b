package console

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"boxoffice"
)

// Consumer states, as the live view shows them.
const (
	// ConsumerOK: delivering, nothing waits in its dead letters.
	ConsumerOK = "ok"
	// ConsumerFailing: its last delivery on this server failed, or dead letters of it wait.
	ConsumerFailing = "failing"
	// ConsumerDisabled: the webhook endpoint is disabled (a 410 Gone, or an operator); its
	// consumer keeps its place for when it is enabled again.
	ConsumerDisabled = "disabled"
	// ConsumerStarting: the endpoint is enabled and has no consumer yet (the async side creates
	// it within a poll; an endpoint with no event types never gets one).
	ConsumerStarting = "starting"
	// ConsumerDeleted: the consumer's endpoint is gone from the store; the async side deletes
	// the consumer at its next poll.
	ConsumerDeleted = "deleted"
)

// Consumer is one durable consumer of the event stream: the email consumer or a webhook
// endpoint's. Options.Consumers fills all but State and DisabledReason, which the console adds
// from the endpoints in the store.
type Consumer struct {
	// Name is the durable consumer's name, as the dead letters' consumer and the metrics spell
	// it; empty for an endpoint that has no consumer.
	Name string `json:"name"`
	// Endpoint is the webhook endpoint's id; empty for the email consumer.
	Endpoint string `json:"endpoint,omitempty"`
	// Pending is how many events it has not yet been handed: its lag.
	Pending uint64 `json:"pending"`
	// AckPending is how many were handed and not yet acked (applying, or waiting for a retry);
	// Redelivered how many of those were handed more than once.
	AckPending  int `json:"ack_pending"`
	Redelivered int `json:"redelivered"`
	// DeadLetters is how many of its events wait in the dead-letter queue.
	DeadLetters uint64 `json:"dead_letters"`
	// LastError is the last delivery failure the server saw, at LastErrorAt.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Failing says no delivery succeeded since LastError.
	Failing bool `json:"failing"`
	// State is one of the Consumer* states.
	State string `json:"state"`
	// DisabledReason says why a disabled endpoint is.
	DisabledReason string `json:"disabled_reason,omitempty"`
}

// consumers reads the consumers and the webhook endpoints and joins them by endpoint id, so that
// a disabled endpoint shows as such (and one without a consumer still shows). The email consumer
// comes first, then the endpoints by id. Without the endpoints the consumers are still shown,
// with the state their own numbers give, and the error says what is missing.
func (s *sampler) consumers(ctx context.Context, list func(context.Context) ([]Consumer, error)) ([]Consumer, error) {
	rows, err := list(ctx)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []Consumer{} // none yet, which the page tells from "not shown"
	}
	eps, epErr := s.c.svc.ListWebhookEndpoints(ctx)
	byID := make(map[string]*boxoffice.WebhookEndpoint, len(eps))
	for _, ep := range eps {
		byID[ep.ID] = ep
	}
	seen := make(map[string]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		r.State = ConsumerOK
		if r.Failing || r.DeadLetters > 0 {
			r.State = ConsumerFailing
		}
		if r.Endpoint == "" || epErr != nil {
			continue
		}
		seen[r.Endpoint] = true
		switch ep := byID[r.Endpoint]; {
		case ep == nil:
			r.State = ConsumerDeleted
		case ep.Status == boxoffice.WebhookDisabled:
			r.State, r.DisabledReason = ConsumerDisabled, ep.DisabledReason
		}
	}
	for _, ep := range eps {
		if seen[ep.ID] {
			continue
		}
		row := Consumer{Endpoint: ep.ID, State: ConsumerStarting}
		if ep.Status == boxoffice.WebhookDisabled {
			row.State, row.DisabledReason = ConsumerDisabled, ep.DisabledReason
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y Consumer) int {
		return cmp.Or(cmp.Compare(x.Endpoint, y.Endpoint), cmp.Compare(x.Name, y.Name))
	})
	if epErr != nil {
		return rows, fmt.Errorf("webhook endpoints: %w", epErr)
	}
	return rows, nil
}
