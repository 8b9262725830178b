package nats

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"boxoffice"
)

// AsyncConfig configures StartAsync.
type AsyncConfig struct {
	// NATS is "embedded" (a server under <DataDir>/nats) or a comma-separated nats:// URL list.
	NATS string
	// DataDir is the server's data dir: the embedded server's storage lives there, and the
	// mail dir unless MailDir says otherwise.
	DataDir string
	// Store holds the outbox, the relay's checkpoint and the inboxes.
	Store boxoffice.Store
	// GapWait is the relay's (see Relay.GapWait): 0 for SQLite, DefaultGapWait for PostgreSQL.
	GapWait time.Duration
	// Replicas is the stream's replication factor on an external cluster; 0 means 1.
	Replicas int
	// SMTP is the --smtp URL the emails are sent to (see ParseSMTP); empty writes them as .eml
	// files under MailDir.
	SMTP string
	// MailDir is where the .eml files go when SMTP is empty (--mail-dir); empty means
	// <DataDir>/mail. Several servers on one store must share one sink, SMTP or one MailDir
	// (a shared filesystem): each receipt is a file named by its event id, written to a temp
	// file in the same directory and renamed over that name, so the redelivery of an event to
	// any server rewrites the same file with the same bytes and there is one receipt per event
	// whichever servers wrote it. A folder per server would hold a second copy of every receipt
	// that a server wrote and did not get to record before it died.
	MailDir string
	// Leader, when set, says whether this server's outbox relay may publish (see Relay.Leader):
	// with several servers on one store, exactly one should relay. Nil means always, for a
	// single server. The consumers run on every server regardless: JetStream spreads their
	// messages.
	Leader func() bool
	// AllowPrivateWebhooks lets webhook endpoints reach private and loopback addresses
	// (--webhooks-allow-private).
	AllowPrivateWebhooks bool
	// Listen, with the embedded server, makes it accept clients such as the nats CLI on this
	// host:port (see EmbeddedOptions.Addr: no authentication, so loopback unless the operator
	// says otherwise); empty: in-process connections only. It is refused with an external NATS.
	Listen string
	// EventsMaxAge is the events stream's MaxAge (see StreamOptions.MaxAge); 0 keeps messages.
	EventsMaxAge time.Duration
	// Registry, when set, receives the async side's metrics (metrics.go): the relay's lag and
	// publishes, each consumer's deliveries by outcome and unfinished messages, the dead letters,
	// the emails sent, the events stream's size, and the tier counts of the busiest shows. Stop
	// unregisters them.
	Registry prometheus.Registerer
	// MetricShows is how many shows the tier gauges cover, those with the latest events;
	// 0 means DefaultMetricShows. It bounds their series at MetricShows × tiers × 3.
	MetricShows int
	// Tuning, when set, replaces the consumers' production timings; tests shorten them.
	Tuning *AsyncTuning
	// Logger gets what started and what failed.
	Logger *slog.Logger
}

// AsyncTuning overrides the consumers' timings; a zero field keeps the default.
type AsyncTuning struct {
	// EmailBackoff and WebhookBackoff are the retry schedules (see Email.Backoff, Webhooks.Backoff).
	EmailBackoff, WebhookBackoff []time.Duration
	// WebhookTimeout and WebhookPoll are Webhooks.Timeout and Webhooks.Poll.
	WebhookTimeout, WebhookPoll time.Duration
	// AckWait is the email and webhook consumers' AckWait (Email.AckWait, Webhooks.AckWait).
	AckWait time.Duration
}

// Async is the running async side: the JetStream server or connection, the relay, the email
// and webhook consumers, and the dead-letter queue (dlq.go).
type Async struct {
	// Mail says where the emails go: "smtp <redacted URL>" or ".eml files under <dir>".
	Mail string
	// Where says what JetStream is: "embedded <dir>" or the redacted URL list.
	Where  string
	srv    *Server
	nc     *natsgo.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// js, email and webhooks serve the dead-letter queue (dlq.go); replayMu runs its replays one
	// at a time.
	js       jetstream.JetStream
	email    *Email
	webhooks *Webhooks
	replayMu sync.Mutex
	relay    *Relay
	metrics  *asyncMetrics
	// ready caches Ready's last look at JetStream (ready.go).
	ready readiness
	// storeFailed is when the embedded server last failed to write a stream (keepJetStream).
	storeFailed atomic.Int64
	// errs has the consumers' last failures on this server, for Consumers (status.go).
	errs consumerErrors
}

// ClientURL is the URL the nats CLI and other clients reach the embedded server at (AsyncConfig.
// Listen); empty when it does not listen or JetStream is external.
func (a *Async) ClientURL() string {
	if a.srv == nil {
		return ""
	}
	return a.srv.ClientURL()
}

// RelayLag is how far this server's relay is behind the outbox (see Relay.Lag).
func (a *Async) RelayLag() RelayLag { return a.relay.Lag() }

// StartAsync starts JetStream (embedded or connected), ensures the streams and runs the relay,
// the email consumer and the webhook deliveries until Stop.
func StartAsync(cfg AsyncConfig) (*Async, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Async{}
	mailDir := cfg.MailDir
	if mailDir == "" {
		mailDir = filepath.Join(cfg.DataDir, "mail")
	}
	a.Mail = ".eml files under " + mailDir
	var smtp *SMTPConfig
	if cfg.SMTP != "" {
		var err error
		// Before anything starts, so that a bad URL leaves nothing to clean up.
		if smtp, err = ParseSMTP(cfg.SMTP); err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		a.Mail = "smtp " + smtp.String()
	}
	var err error
	// An external cluster's ack is as durable as its replicas make it, and the relay takes it as
	// is; the embedded server syncs on a timer, which the relay's checkpoint trails (SyncLag).
	var syncLag time.Duration
	embedded := cfg.NATS == "" || cfg.NATS == "embedded"
	if embedded {
		syncLag = EmbeddedSyncLag
	}
	// Also before anything starts: a retention shorter than a retry schedule loses messages.
	emailBackoff, webhookBackoff := DefaultEmailBackoff, DefaultWebhookBackoff
	if t := cfg.Tuning; t != nil && len(t.EmailBackoff) > 0 {
		emailBackoff = t.EmailBackoff
	}
	if t := cfg.Tuning; t != nil && len(t.WebhookBackoff) > 0 {
		webhookBackoff = t.WebhookBackoff
	}
	if err := CheckMaxAge(cfg.EventsMaxAge, cfg.GapWait, syncLag, emailBackoff, webhookBackoff); err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	if embedded {
		dir := filepath.Join(cfg.DataDir, "nats")
		if a.srv, err = StartEmbedded(dir, EmbeddedOptions{Listen: cfg.Listen != "", Addr: cfg.Listen, Logger: slogLogger{log, &a.storeFailed}}); err != nil {
			return nil, err
		}
		a.Where = "embedded " + dir
		a.nc, err = a.srv.Connect()
	} else if cfg.Listen != "" {
		return nil, fmt.Errorf("listen %s: only the embedded NATS server can listen; an external one is reached at its own URLs", cfg.Listen)
	} else {
		urls := strings.Split(cfg.NATS, ",")
		a.Where = redactURLs(urls)
		a.nc, err = Connect(urls)
	}
	if err != nil {
		a.close()
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		a.close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = EnsureStream(ctx, js, StreamOptions{Replicas: cfg.Replicas, GapWait: cfg.GapWait, SyncLag: syncLag, MaxAge: cfg.EventsMaxAge})
	cancel()
	if err != nil {
		a.close()
		return nil, err
	}
	runCtx, cancelRun := context.WithCancel(withConsumerErrors(context.Background(), &a.errs))
	a.cancel = cancelRun
	relay := &Relay{Store: cfg.Store, JS: js, GapWait: cfg.GapWait, SyncLag: syncLag, Leader: cfg.Leader, Logger: log}
	email := &Email{Store: cfg.Store, JS: js, Dir: mailDir, SMTP: smtp, Logger: log}
	webhooks := &Webhooks{Store: cfg.Store, JS: js, AllowPrivate: cfg.AllowPrivateWebhooks, Logger: log}
	if t := cfg.Tuning; t != nil {
		email.Backoff = t.EmailBackoff
		webhooks.Backoff, webhooks.Timeout, webhooks.Poll = t.WebhookBackoff, t.WebhookTimeout, t.WebhookPoll
		email.AckWait, webhooks.AckWait = t.AckWait, t.AckWait
	}
	a.js, a.email, a.webhooks, a.relay = js, email, webhooks, relay
	if cfg.Registry != nil {
		limit := cfg.MetricShows
		if limit <= 0 {
			limit = DefaultMetricShows
		}
		shows := newShowActivity(limit)
		relay.observe, relay.forget, relay.observeSeed = shows.observe, shows.reset, 4*limit
		via := "file"
		if smtp != nil {
			via = "smtp"
		}
		if a.metrics, err = registerAsyncMetrics(cfg.Registry, relay, email, via, cfg.Store, js, shows, log); err != nil {
			cancelRun()
			a.close()
			return nil, err
		}
		runCtx = withDeliveries(runCtx, a.metrics.deliveries)
	}
	if a.srv != nil {
		a.wg.Go(func() { a.srv.keepJetStream(runCtx, log, &a.storeFailed, &a.ready.mu) })
	}
	for name, run := range map[string]func(context.Context) error{"relay": relay.Run, "email": email.Run, "webhooks": webhooks.Run} {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := run(runCtx); err != nil {
				log.Error("async: "+name+" stopped", "err", err)
			}
		}()
	}
	return a, nil
}

// Stop ends the relay and the consumers, waits for them, and closes the connection and the
// embedded server. What was not relayed yet is relayed at the next start.
func (a *Async) Stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.metrics != nil {
		a.metrics.unregister()
	}
	a.close()
}

func (a *Async) close() {
	if a.nc != nil {
		a.nc.Close()
	}
	if a.srv != nil {
		a.srv.Shutdown()
	}
}

// redactURLs drops passwords from URLs for logs.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redact(u)
	}
	return strings.Join(out, ",")
}

// redact is raw fit for a log line: no password and no query string, where partners put the
// tokens that authenticate a webhook ("?token=…"); a query shows as "?REDACTED".
func redact(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	return u.Redacted()
}
