package nats

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"boxoffice"
)

// Outcomes of one delivery of a message to a consumer: the outcome label of
// boxoffice_consumer_deliveries_total.
const (
	// OutcomeApplied: the effect was made and recorded (or the event was not for this consumer:
	// a webhook endpoint's event from before it existed), and the message acked.
	OutcomeApplied = "applied"
	// OutcomeDuplicate: the inbox had the event — a redelivery — and the message was acked
	// without a second effect.
	OutcomeDuplicate = "duplicate"
	// OutcomeRetry: the attempt failed and the message goes back to be tried again after a pause
	// (or its dead-letter publish failed, which is retried the same way).
	OutcomeRetry = "retry"
	// OutcomeDeadLettered: past its retry schedule, or failed for good, the message is in the
	// dead-letter stream.
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeStopped: the webhook endpoint answered 410 Gone and was disabled; the message waits
	// for it to be enabled again.
	OutcomeStopped = "stopped"
	// OutcomeInterrupted: the server was stopping; the message was handed back at once.
	OutcomeInterrupted = "interrupted"
)

// DefaultMetricShows is how many shows the tier gauges cover when AsyncConfig.MetricShows is 0.
const DefaultMetricShows = 50

// scrapeTimeout bounds what a scrape asks the store and JetStream, so that an outage of either
// makes /metrics leave those series out rather than hang.
const scrapeTimeout = 2 * time.Second

// deliveriesKey carries the deliveries counter in the context of the consumers' runs. The runners
// are built by the email and webhook consumers (email.go, webhook.go), which know nothing of
// metrics; StartAsync puts the counter in the context it runs them under instead, and a run
// without one (a test's, a dead letter's replay) counts nothing.
type deliveriesKey struct{}

func withDeliveries(ctx context.Context, vec *prometheus.CounterVec) context.Context {
	return context.WithValue(ctx, deliveriesKey{}, vec)
}

// deliveryCounter returns what counts one delivery outcome of consumer in ctx's counter.
func deliveryCounter(ctx context.Context, consumer string) func(outcome string) {
	vec, _ := ctx.Value(deliveriesKey{}).(*prometheus.CounterVec)
	if vec == nil {
		return func(string) {}
	}
	return func(outcome string) { vec.WithLabelValues(consumer, outcome).Inc() }
}

// showActivity remembers which shows had an event most recently, at most limit of them: the
// tier gauges cover those, so that their series stay bounded however many shows there are.
type showActivity struct {
	limit int
	mu    sync.Mutex
	tick  int64
	last  map[string]int64 // show id → tick of its latest event
}

func newShowActivity(limit int) *showActivity {
	return &showActivity{limit: limit, last: make(map[string]int64)}
}

// observe notes the show of a published event. Every event of the outbox is a hold's or an
// order's and carries its show_id.
func (a *showActivity) observe(e *boxoffice.Event) {
	var ref struct {
		ShowID string `json:"show_id"`
	}
	if json.Unmarshal(e.Data, &ref) != nil || ref.ShowID == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tick++
	a.last[ref.ShowID] = a.tick
	// Trimmed in bulk, so that a stream of events of many shows does not sort on every event.
	if len(a.last) > 2*a.limit {
		for _, id := range a.sortedLocked()[a.limit:] {
			delete(a.last, id)
		}
	}
}

// recent returns the shows with the latest events, the latest first, at most limit.
func (a *showActivity) recent() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := a.sortedLocked()
	return ids[:min(len(ids), a.limit)]
}

func (a *showActivity) sortedLocked() []string {
	ids := make([]string, 0, len(a.last))
	for id := range a.last {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y string) int { return cmp.Compare(a.last[y], a.last[x]) })
	return ids
}

// reset forgets every show: this server's relay stopped leading, and the leader reports them.
func (a *showActivity) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.last)
}

// tierCollector reports capacity, held and sold of every tier of the recently active shows, read
// from the store at each scrape (so they are the store's counts, not a tally that could drift).
type tierCollector struct {
	store                boxoffice.Store
	shows                *showActivity
	capacity, held, sold *prometheus.Desc
	log                  *slog.Logger
}

func newTierCollector(store boxoffice.Store, shows *showActivity, log *slog.Logger) *tierCollector {
	labels := []string{"show", "tier"}
	scope := " Only the shows with the latest holds and orders, at most a fixed number, as seen by the server whose relay leads."
	return &tierCollector{
		store: store, shows: shows, log: log,
		capacity: prometheus.NewDesc("boxoffice_tier_capacity", "Tickets of a tier."+scope, labels, nil),
		held:     prometheus.NewDesc("boxoffice_tier_held", "Tickets of a tier held and not yet confirmed or returned."+scope, labels, nil),
		sold:     prometheus.NewDesc("boxoffice_tier_sold", "Tickets of a tier sold."+scope, labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *tierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.capacity
	ch <- c.held
	ch <- c.sold
}

// Collect implements prometheus.Collector.
func (c *tierCollector) Collect(ch chan<- prometheus.Metric) {
	ids := c.shows.recent()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var shows []*boxoffice.Show
	err := c.store.View(ctx, func(tx boxoffice.Tx) error {
		shows = shows[:0]
		for _, id := range ids {
			s, err := tx.GetShow(ctx, id)
			if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
				continue // deleted since its last event
			}
			if err != nil {
				return err
			}
			shows = append(shows, s)
		}
		return nil
	})
	if err != nil {
		c.log.Debug("metrics: read the shows' counts", "err", err)
		return
	}
	for _, s := range shows {
		for _, t := range s.Tiers {
			ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(t.Capacity), s.ID, t.ID)
			ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(t.Held), s.ID, t.ID)
			ch <- prometheus.MustNewConstMetric(c.sold, prometheus.GaugeValue, float64(t.Sold), s.ID, t.ID)
		}
	}
}

// busCollector reports what JetStream holds, asked at each scrape: the dead letters per consumer,
// what each durable consumer has not finished, and the events stream's size and oldest message.
type busCollector struct {
	js                                    jetstream.JetStream
	deadLetters, pending                  *prometheus.Desc
	streamMsgs, streamBytes, streamOldest *prometheus.Desc
	log                                   *slog.Logger
}

func newBusCollector(js jetstream.JetStream, log *slog.Logger) *busCollector {
	return &busCollector{
		js: js, log: log,
		deadLetters: prometheus.NewDesc("boxoffice_dead_letters",
			"Dead letters waiting for a replay, by the consumer that gave up on them (the durable consumer's name: email, or webhook_<endpoint id>_<created ms>).",
			[]string{"consumer"}, nil),
		pending: prometheus.NewDesc("boxoffice_consumer_pending_messages",
			"Messages of the events stream a durable consumer has not finished: not yet delivered, or delivered and not yet acked (in progress or waiting for a retry).",
			[]string{"consumer"}, nil),
		streamMsgs:  prometheus.NewDesc("boxoffice_events_stream_messages", "Messages in the events stream.", nil, nil),
		streamBytes: prometheus.NewDesc("boxoffice_events_stream_bytes", "Bytes of the events stream.", nil, nil),
		streamOldest: prometheus.NewDesc("boxoffice_events_stream_oldest_seconds",
			"Age of the oldest message in the events stream; with --events-max-age it stays below that.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *busCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.deadLetters, c.pending, c.streamMsgs, c.streamBytes, c.streamOldest} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. What JetStream does not answer in time is left out of
// the scrape, and the rest is still reported.
func (c *busCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if err := c.collectDLQ(ctx, ch); err != nil {
		c.log.Debug("metrics: read the dead-letter stream", "err", err)
	}
	if err := c.collectEvents(ctx, ch); err != nil {
		c.log.Debug("metrics: read the events stream", "err", err)
	}
}

func (c *busCollector) collectDLQ(ctx context.Context, ch chan<- prometheus.Metric) error {
	counts, err := deadLetterCounts(ctx, c.js)
	if err != nil {
		return err
	}
	for consumer, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(n), consumer)
	}
	return nil
}

// deadLetterCounts returns how many dead letters wait for a replay, by the consumer that gave up
// on them: one subject per consumer, so the stream's subject counts are the answer in one request.
// The metrics and Async.Consumers both read it.
func deadLetterCounts(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	st, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(DLQSubjectPrefix+">"))
	if err != nil {
		return nil, err
	}
	counts := make(map[string]uint64, len(info.State.Subjects))
	for subject, n := range info.State.Subjects {
		counts[strings.TrimPrefix(subject, DLQSubjectPrefix)] = n
	}
	return counts, nil
}

// consumerInfos returns the state of every durable consumer of st, the events stream: the email
// consumer and one per webhook endpoint. The metrics and Async.Consumers both read it.
func consumerInfos(ctx context.Context, st jetstream.Stream) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	list := st.ListConsumers(ctx)
	for ci := range list.Info() {
		out = append(out, ci)
	}
	return out, list.Err()
}

func (c *busCollector) collectEvents(ctx context.Context, ch chan<- prometheus.Metric) error {
	st, err := c.js.Stream(ctx, StreamName)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(c.streamMsgs, prometheus.GaugeValue, float64(info.State.Msgs))
	ch <- prometheus.MustNewConstMetric(c.streamBytes, prometheus.GaugeValue, float64(info.State.Bytes))
	var oldest float64
	if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
		oldest = max(time.Since(info.State.FirstTime).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.streamOldest, prometheus.GaugeValue, oldest)
	infos, err := consumerInfos(ctx, st)
	for _, ci := range infos {
		n := float64(ci.NumPending) + float64(ci.NumAckPending)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, n, ci.Name)
	}
	return err
}

// asyncMetrics are the async side's collectors, registered by StartAsync and unregistered by Stop.
type asyncMetrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	deliveries *prometheus.CounterVec
}

// registerAsyncMetrics registers the relay's, the consumers' and the bus's collectors in reg.
func registerAsyncMetrics(reg prometheus.Registerer, relay *Relay, email *Email, via string, store boxoffice.Store,
	js jetstream.JetStream, shows *showActivity, log *slog.Logger) (*asyncMetrics, error) {
	m := &asyncMetrics{reg: reg}
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "boxoffice_consumer_deliveries_total",
		Help: "Deliveries of events to a consumer, by the durable consumer's name (email, or webhook_<endpoint id>_<created ms>) and outcome (applied, duplicate, retry, dead_lettered, stopped, interrupted).",
	}, []string{"consumer", "outcome"})
	now := time.Now
	m.collectors = []prometheus.Collector{
		m.deliveries,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "boxoffice_relay_published_total",
			Help: "Outbox events JetStream acknowledged to this server's relay, republished ones included.",
		}, func() float64 { p, _ := relay.Stats(); return float64(p) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "boxoffice_relay_duplicates_total",
			Help: "Of those, the ones JetStream dropped as duplicates: published again after a restart or a change of leader.",
		}, func() float64 { _, d := relay.Stats(); return float64(d) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "boxoffice_relay_leader",
			Help: "1 when this server's relay is the one publishing the outbox; the relay lag and the tier gauges come from it.",
		}, func() float64 { return boolGauge(relay.Lag().Leading) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "boxoffice_relay_lag_events",
			Help: "Outbox positions not yet published to JetStream, at the relay's last read (0 on a server whose relay does not lead).",
		}, func() float64 { return float64(relay.Lag().Events()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "boxoffice_relay_lag_seconds",
			Help: "How long the oldest outbox event not yet published has waited (0 when none waits, or on a server whose relay does not lead).",
		}, func() float64 { return relay.Lag().Seconds(now()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "boxoffice_emails_sent_total",
			Help:        "Receipts and cancellation notices sent over SMTP (via=smtp) or written as .eml files (via=file), replays of dead letters included.",
			ConstLabels: prometheus.Labels{"via": via},
		}, func() float64 { w, _ := email.Stats(); return float64(w) }),
		newBusCollector(js, log),
		newTierCollector(store, shows, log),
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, errors.New("metrics: the registry has the async side's metrics already (one StartAsync per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}

// unregister removes the collectors, so that a stopped async side is not scraped.
func (m *asyncMetrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
