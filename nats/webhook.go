package nats

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
	"boxoffice/internal/netguard"
)

// Webhook defaults.
const (
	DefaultWebhookTimeout = 15 * time.Second
	DefaultWebhookPoll    = time.Second
)

const (
	// webhookConsumerPrefix starts the durable consumer name (and inbox key) of every endpoint.
	webhookConsumerPrefix = "webhook_"
	// startSkew moves a new endpoint's consumer start before its created_at, so that a clock
	// difference between the JetStream server (which stamps the stream's messages) and this
	// process cannot skip an event; the handler drops the events older than the endpoint by their
	// own created_at, which this process's clock stamped like the endpoint's.
	startSkew = time.Minute
	// maxResponseBody is how much of a receiver's answer is read (and dropped), so that the
	// connection can be reused without letting a receiver stream to us for ever.
	maxResponseBody = 64 << 10
)

// Webhooks delivers the domain events to the webhook endpoints in the store, per Standard Webhooks:
// each event is POSTed as JSON {"id","type","timestamp","data"} with the headers webhook-id (the
// event id, the same on every retry), webhook-timestamp and webhook-signature (v1, HMAC-SHA256
// with the endpoint's secret; see Sign).
//
// Every enabled endpoint gets its own durable JetStream consumer, filtered by its event types and
// starting when the endpoint was created, and one worker running it (the runner: one message in
// flight, so the events of one order arrive in order; inbox-checked, so an event that a receiver
// acknowledged with a 2xx is not sent again after a crash). A failure is retried along Backoff
// with jitter, honouring a 429 or 503 Retry-After; past the schedule, or when the endpoint's
// address is refused, the event is dead-lettered. A 410 Gone disables the endpoint and hands its
// message back to JetStream, so a PUT enabling the endpoint again resumes from it.
//
// Several servers on one store and one JetStream each run a worker per endpoint, all pulling from
// the endpoint's one durable consumer: its MaxAckPending of 1 holds across them, so the order of
// deliveries stays that of the stream, and a server that dies mid-delivery loses the message to
// another after AckWait (short, see DefaultAckWait) while a slow but live one keeps it.
//
// Endpoints are reread from the store every Poll: a new one starts, one whose event types, URL or
// secret changed restarts with the new settings, a deleted one's consumer is deleted. The consumer
// and the inbox are keyed by the endpoint's id and creation time (WebhookConsumer), so an endpoint
// deleted and created again under the same id starts afresh.
type Webhooks struct {
	// Store holds the endpoints and the inboxes.
	Store boxoffice.Store
	// JS reads the events stream (EnsureStream).
	JS jetstream.JetStream
	// AllowPrivate lets endpoints reach private and loopback addresses (--webhooks-allow-private);
	// unset, such a delivery is refused at once and dead-lettered.
	AllowPrivate bool
	// Timeout bounds one delivery attempt, connection to response; 0 means DefaultWebhookTimeout.
	Timeout time.Duration
	// Backoff is the retry schedule: the pause before each retry (jitter added); after the last
	// one the event is dead-lettered. Empty means about 24 hours in 10 steps from 5 s.
	Backoff []time.Duration
	// Poll is how often the endpoints are reread from the store; 0 means DefaultWebhookPoll.
	Poll time.Duration
	// AckWait is the endpoints' consumers' AckWait; 0 means DefaultAckWait. An attempt may take
	// longer (up to Timeout and a store commit): the runner reports progress while it runs, so
	// JetStream hands the message to another server only when this one stops reporting.
	AckWait time.Duration
	// Logger, when set, gets deliveries that failed and endpoints that started or stopped.
	Logger *slog.Logger

	clientOnce sync.Once
	client     *http.Client

	delivered, failed atomic.Int64
}

// Stats returns how many deliveries a receiver acknowledged with a 2xx and how many attempts
// failed.
func (w *Webhooks) Stats() (delivered, failed int64) { return w.delivered.Load(), w.failed.Load() }

// WebhookConsumer is the name of ep's durable consumer, which is also its inbox key and its dead
// letters' consumer: "webhook_<id>_<created_at in unix milliseconds>". The creation time (at the
// store's precision, which keeps milliseconds) tells an endpoint from an earlier one of the same id.
func WebhookConsumer(ep *boxoffice.WebhookEndpoint) string {
	return webhookConsumerPrefix + ep.ID + "_" + strconv.FormatInt(ep.CreatedAt.UnixMilli(), 10)
}

// NewSecret returns a fresh signing secret for an endpoint: "whsec_" and the base64 of 24 random
// bytes.
func NewSecret() string { return boxoffice.NewWebhookSecret() }

// Sign returns the Standard Webhooks signature header value of a delivery: "v1," and the base64
// of HMAC-SHA256 over id "." unix-seconds(ts) "." body, keyed with the base64-decoded part of
// secret after its "whsec_" prefix.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	raw, ok := strings.CutPrefix(secret, boxoffice.WebhookSecretPrefix)
	if !ok {
		return "", fmt.Errorf("webhook secret does not start with %q", boxoffice.WebhookSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return "", errors.New("webhook secret is not base64 after its prefix")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// SignAll returns the webhook-signature header value of a delivery signed by each of secrets,
// space-separated as the Standard Webhooks spec allows: during a secret rotation's overlap a
// delivery carries a signature by the new and by the previous secret, so a receiver verifying with
// either accepts it.
func SignAll(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, secret := range secrets {
		sig, err := Sign(secret, id, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// webhookPayload is the JSON body of a delivery.
type webhookPayload struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// worker runs the consumer of one endpoint.
type worker struct {
	ep     *boxoffice.WebhookEndpoint
	cancel context.CancelFunc
	done   chan struct{}
	// gone is set when the worker stopped because the endpoint answered 410 and was disabled.
	gone atomic.Bool
}

func (wk *worker) exited() bool {
	select {
	case <-wk.done:
		return true
	default:
		return false
	}
}

// Run delivers until ctx ends, and returns nil then.
func (w *Webhooks) Run(ctx context.Context) error {
	log := w.logger()
	poll := w.Poll
	if poll <= 0 {
		poll = DefaultWebhookPoll
	}
	workers := map[string]*worker{}
	defer func() {
		for _, wk := range workers {
			wk.cancel()
		}
		for _, wk := range workers {
			<-wk.done
		}
	}()
	// keys is the set of endpoint keys at the last garbage collection of consumers; nil forces one.
	var keys []string
	for {
		var eps []*boxoffice.WebhookEndpoint
		err := w.Store.View(ctx, func(tx boxoffice.Tx) error {
			var err error
			eps, err = tx.ListWebhookEndpoints(ctx)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("webhooks: list endpoints", "err", err)
		} else {
			keys = w.reconcile(ctx, eps, workers, keys)
		}
		if !sleep(ctx, poll) {
			return nil
		}
	}
}

// reconcile makes the workers match the endpoints; it returns the endpoint keys it collected
// consumers against, or prev when it did not collect.
func (w *Webhooks) reconcile(ctx context.Context, eps []*boxoffice.WebhookEndpoint, workers map[string]*worker, prev []string) []string {
	log := w.logger()
	byKey := make(map[string]*boxoffice.WebhookEndpoint, len(eps))
	keys := make([]string, 0, len(eps))
	for _, ep := range eps {
		k := WebhookConsumer(ep)
		byKey[k] = ep
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for k, wk := range workers {
		ep := byKey[k]
		switch {
		case ep == nil, ep.Status != boxoffice.WebhookEnabled, !sameDelivery(wk.ep, ep):
			// Deleted (or created anew under a new key), disabled, or changed: stop it; a changed
			// one starts again below with its new settings, from where it stopped.
			wk.cancel()
			<-wk.done
			delete(workers, k)
			if ep == nil {
				log.Info("webhooks: endpoint deleted", "endpoint", wk.ep.ID, "consumer", k)
			}
		case wk.exited() && !wk.gone.Load():
			// Ended by a failure of its own: start it again.
			delete(workers, k)
		}
		// A worker gone by a 410 stays in the map, so that a read of the endpoints that predates
		// its disabling does not start it again; the disabled endpoint removes it next round.
	}
	for k, ep := range byKey {
		if workers[k] != nil || ep.Status != boxoffice.WebhookEnabled || len(ep.EventTypes) == 0 {
			continue
		}
		workers[k] = w.start(ctx, ep)
	}
	if slices.Equal(keys, prev) && prev != nil {
		return prev
	}
	// The set of endpoints changed (or this is the first round): delete the consumers of endpoints
	// that no longer exist, also those deleted while no server ran. A disabled endpoint keeps its
	// consumer, so that enabling it resumes where it stopped.
	if err := w.collect(ctx, byKey); err != nil {
		if ctx.Err() == nil {
			log.Warn("webhooks: delete consumers of deleted endpoints", "err", err)
		}
		return nil // try again next round
	}
	return keys
}

// sameDelivery says whether a worker for a can go on serving b: any write of the endpoint (its
// updated_at moves) restarts the worker, so the new URL, secret or event types apply at once.
func sameDelivery(a, b *boxoffice.WebhookEndpoint) bool {
	return a.UpdatedAt.Equal(b.UpdatedAt) && a.URL == b.URL && a.Secret == b.Secret &&
		a.PreviousSecret == b.PreviousSecret && sameTime(a.PreviousSecretExpiresAt, b.PreviousSecretExpiresAt) &&
		slices.Equal(a.EventTypes, b.EventTypes)
}

// sameTime says whether two optional times are both unset or equal.
func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// collect deletes the webhook consumers whose endpoint is not in byKey.
func (w *Webhooks) collect(ctx context.Context, byKey map[string]*boxoffice.WebhookEndpoint) error {
	st, err := w.JS.Stream(ctx, StreamName)
	if err != nil {
		return err
	}
	names := st.ConsumerNames(ctx)
	var stale []string
	for name := range names.Name() {
		if strings.HasPrefix(name, webhookConsumerPrefix) && byKey[name] == nil {
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil {
		return err
	}
	for _, name := range stale {
		if err := st.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
		w.logger().Info("webhooks: deleted the consumer of a deleted endpoint", "consumer", name)
	}
	return nil
}

// start runs a worker for ep.
func (w *Webhooks) start(ctx context.Context, ep *boxoffice.WebhookEndpoint) *worker {
	wctx, cancel := context.WithCancel(ctx)
	wk := &worker{ep: ep, cancel: cancel, done: make(chan struct{})}
	key := WebhookConsumer(ep)
	log := w.logger().With("endpoint", ep.ID, "consumer", key)
	log.Info("webhooks: endpoint started", "endpoint", ep.ID, "endpoint_url", redact(ep.URL), "event_types", ep.EventTypes)
	r := w.runner(ep)
	go func() {
		defer close(wk.done)
		err := r.loop(wctx, func(ctx context.Context) (jetstream.Consumer, error) { return w.ensureConsumer(ctx, ep) })
		if _, ok := errors.AsType[*stopError](err); ok {
			wk.gone.Store(true)
			log.Warn("webhooks: endpoint disabled", "err", err)
		} else if err != nil {
			log.Error("webhooks: endpoint stopped", "err", err)
		}
	}()
	return wk
}

// ensureConsumer returns ep's durable consumer, creating it, or updating its filter and timings
// when they changed (JetStream keeps its position: the events of the new types are delivered from
// there on).
//
// A new consumer starts at ep's created_at less startSkew, or at the present when created_at lies
// ahead of this process's clock (an endpoint written by a server whose clock is fast): the start
// time is fixed at creation, as JetStream cannot change it.
func (w *Webhooks) ensureConsumer(ctx context.Context, ep *boxoffice.WebhookEndpoint) (jetstream.Consumer, error) {
	subjects := make([]string, 0, len(ep.EventTypes))
	if ep.All() {
		// Every subject of the stream, not today's types: the endpoint gets the types a later
		// version adds without its filter changing, and servers of two versions on one stream
		// do not keep rewriting it to their own list.
		subjects = append(subjects, SubjectPrefix+">")
	} else {
		for _, t := range ep.EventTypes {
			subjects = append(subjects, SubjectPrefix+t)
		}
	}
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	ackWait := w.ackWait()
	name := WebhookConsumer(ep)
	cons, err := w.JS.Consumer(ctx, StreamName, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		start := ep.CreatedAt
		if now := time.Now(); start.After(now) {
			start = now
		}
		start = start.Add(-startSkew).UTC()
		return w.JS.CreateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
			Durable:        name,
			Description:    "boxoffice webhook endpoint " + ep.ID,
			FilterSubjects: subjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			// Not DeliverAll: a new endpoint gets the events from its creation on, not the history.
			DeliverPolicy: jetstream.DeliverByStartTimePolicy,
			OptStartTime:  &start,
			AckWait:       ackWait,
			MaxAckPending: 1,
		})
	}
	if err != nil {
		return nil, err
	}
	cfg := cons.CachedInfo().Config
	have := slices.Clone(cfg.FilterSubjects)
	if cfg.FilterSubject != "" {
		have = append(have, cfg.FilterSubject)
	}
	slices.Sort(have)
	if slices.Equal(have, subjects) && cfg.AckWait == ackWait && cfg.MaxAckPending == 1 {
		return cons, nil
	}
	cfg.FilterSubject, cfg.FilterSubjects = "", subjects
	cfg.AckWait, cfg.MaxAckPending = ackWait, 1
	return w.JS.UpdateConsumer(ctx, StreamName, cfg)
}

// runner is the consumer loop of ep around one delivery attempt, for its worker and for a replay.
func (w *Webhooks) runner(ep *boxoffice.WebhookEndpoint) *runner {
	backoff := w.Backoff
	if len(backoff) == 0 {
		backoff = DefaultWebhookBackoff
	}
	key := WebhookConsumer(ep)
	return &runner{
		store: w.Store, js: w.JS, name: key, backoff: backoff, log: w.logger(), ackWait: w.ackWait(),
		handle: func(ctx context.Context, m *Message) error {
			if m.CreatedAt.Before(ep.CreatedAt) || !ep.Wants(m.Type) {
				// From before the endpoint existed (within the start skew), or of a type it no
				// longer subscribes to (fetched before its filter changed): not for it.
				return nil
			}
			if err := w.deliver(ctx, ep, m); err != nil {
				w.failed.Add(1)
				return err
			}
			w.delivered.Add(1)
			err := w.Store.Update(ctx, func(tx boxoffice.Tx) error {
				return tx.InsertInboxEvent(ctx, key, m.ID, time.Now())
			})
			if boxoffice.ErrorCode(err) == boxoffice.ECONFLICT {
				return nil // recorded by an earlier delivery that raced this one
			}
			if err != nil {
				// The receiver has it; the retry sends it again, which at-least-once allows.
				return fmt.Errorf("record delivery: %w", err)
			}
			return nil
		},
	}
}

func (w *Webhooks) ackWait() time.Duration {
	if w.AckWait > 0 {
		return w.AckWait
	}
	return DefaultAckWait
}

// replay delivers m once to the endpoint whose consumer is consumer, inbox-checked.
func (w *Webhooks) replay(ctx context.Context, consumer string, m *Message) error {
	var eps []*boxoffice.WebhookEndpoint
	err := w.Store.View(ctx, func(tx boxoffice.Tx) error {
		var err error
		eps, err = tx.ListWebhookEndpoints(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, ep := range eps {
		if WebhookConsumer(ep) == consumer {
			_, err := w.runner(ep).apply(ctx, m)
			return err
		}
	}
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "the webhook endpoint of consumer %s no longer exists", consumer)
}

// deliver makes one delivery attempt of m to ep. A 2xx is success; a refused address or an
// unusable endpoint is a PermanentError; a 429 or 503 with Retry-After a RetryAfterError; a 410
// disables the endpoint and is a stopError; the rest are plain failures, retried.
func (w *Webhooks) deliver(ctx context.Context, ep *boxoffice.WebhookEndpoint, m *Message) error {
	if err := netguard.CheckURL(ep.URL, w.AllowPrivate); err != nil {
		return Permanent(fmt.Errorf("endpoint URL %s", err))
	}
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	body, err := json.Marshal(webhookPayload{
		ID: m.ID, Type: m.Type, Timestamp: m.CreatedAt.UTC().Format(time.RFC3339Nano), Data: data,
	})
	if err != nil {
		return Permanent(fmt.Errorf("encode event: %w", err))
	}
	now := time.Now()
	sig, err := SignAll(ep.Secrets(now), m.ID, now, body)
	if err != nil {
		return Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("endpoint URL: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "boxoffice-webhooks/1")
	req.Header.Set("Webhook-Id", m.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("Webhook-Signature", sig)
	resp, err := w.httpClient().Do(req)
	if err != nil {
		// net/http's error quotes the whole URL, query string and all; it is logged and kept
		// with a dead letter.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact(ue.URL)
		}
		if errors.Is(err, netguard.ErrPrivate) {
			return Permanent(err)
		}
		return err
	}
	snippet := drain(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	fail := fmt.Errorf("POST %s: %s%s", redact(ep.URL), resp.Status, snippet)
	switch resp.StatusCode {
	case http.StatusGone:
		if err := w.disable(ctx, ep, now); err != nil {
			return fmt.Errorf("%w; disabling the endpoint failed: %w", fail, err)
		}
		return &stopError{err: fmt.Errorf("%w: endpoint disabled", fail)}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &RetryAfterError{After: after, Err: fail}
		}
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Following a redirect would send the signed event, and the secret's signature, wherever
		// the receiver points; the endpoint's URL must be the final one.
		return fmt.Errorf("%w (redirect to %q not followed)", fail, resp.Header.Get("Location"))
	}
	return fail
}

// errEndpointChanged is the failure of a disabling that found the endpoint changed since its
// worker started: the 410 came from settings that are no longer current.
var errEndpointChanged = errors.New("the endpoint changed meanwhile")

// disable marks ep disabled after a 410 Gone, unless it changed since it was read.
func (w *Webhooks) disable(ctx context.Context, ep *boxoffice.WebhookEndpoint, at time.Time) error {
	return w.Store.Update(ctx, func(tx boxoffice.Tx) error {
		cur, err := tx.GetWebhookEndpoint(ctx, ep.ID)
		if err != nil {
			return err
		}
		if !cur.CreatedAt.Equal(ep.CreatedAt) || !cur.UpdatedAt.Equal(ep.UpdatedAt) {
			return errEndpointChanged
		}
		cur.Status = boxoffice.WebhookDisabled
		cur.DisabledReason = "the endpoint answered 410 Gone at " + at.UTC().Format(time.RFC3339)
		cur.UpdatedAt = at
		_, err = tx.PutWebhookEndpoint(ctx, cur)
		return err
	})
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// drain reads what is left of a response body, up to maxResponseBody, so that the connection can
// be reused, and returns its start as a printable snippet for the error message.
func drain(body io.Reader) string {
	var head [200]byte
	n, _ := io.ReadFull(body, head[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxResponseBody))
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(string(head[:n]), ""))
	if s = strings.Join(strings.Fields(s), " "); s == "" {
		return ""
	}
	return ": " + s
}

func (w *Webhooks) timeout() time.Duration {
	if w.Timeout > 0 {
		return w.Timeout
	}
	return DefaultWebhookTimeout
}

func (w *Webhooks) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// httpClient is the client of every delivery: bounded by Timeout, following no redirect, dialing
// only addresses netguard allows, and ignoring proxy settings (a proxy would dial the receiver for
// us, past that check).
func (w *Webhooks) httpClient() *http.Client {
	w.clientOnce.Do(func() {
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: netguard.Control(w.AllowPrivate)}
		w.client = &http.Client{
			Timeout: w.timeout(),
			Transport: &http.Transport{
				DialContext:            dialer.DialContext,
				ForceAttemptHTTP2:      true,
				TLSHandshakeTimeout:    10 * time.Second,
				ExpectContinueTimeout:  time.Second,
				MaxIdleConns:           100,
				MaxIdleConnsPerHost:    2,
				IdleConnTimeout:        90 * time.Second,
				MaxResponseHeaderBytes: 64 << 10,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return w.client
}
