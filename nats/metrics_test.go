package nats

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"boxoffice"
)

// scrape reads reg as a Prometheus server would, over HTTP in the text format, and returns every
// sample by its series as the text spells it (name{label="value",...}, labels sorted by name).
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return parseMetrics(t, rec.Body.String())
}

// parseMetrics parses Prometheus' text format: a sample per line, "series value".
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("metrics line %q: not a sample", line)
		}
		out[line[:i]] = v
	}
	return out
}

// putShow writes a show with one tier to the store and sets the tier's counts.
func putShow(t *testing.T, store boxoffice.Store, id, tier string, capacity, held, sold int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	show := &boxoffice.Show{ID: id, Name: id, StartsAt: now.Add(24 * time.Hour), HoldTTLSeconds: 600,
		Tiers:     []boxoffice.Tier{{ID: tier, Name: tier, Capacity: capacity, Price: boxoffice.Money{Amount: 1000, Currency: "EUR"}}},
		CreatedAt: now, UpdatedAt: now}
	err := store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := tx.PutShow(ctx, show); err != nil {
			return err
		}
		_, ok, err := tx.AddTierCounts(ctx, id, tier, held, sold)
		if err == nil && !ok {
			err = fmt.Errorf("counts %d+%d do not fit %d", held, sold, capacity)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAsyncMetrics runs the async side as the server does, with a registry, and reads what a
// scrape shows after a confirmed order's event goes through it: the relay published it and is
// not behind, the email consumer applied it and wrote a receipt, the webhook endpoint (on an
// address it may not reach) dead-lettered it, the dead letter is counted under its consumer, and
// the show's tier shows the store's counts. After Stop the async side's series are gone.
func TestAsyncMetrics(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir)
	putShow(t, db, "gala", "stalls", 100, 3, 7)
	// Private addresses are refused (AllowPrivateWebhooks unset): a permanent failure, so the
	// delivery is dead-lettered on its first attempt.
	ep := putEndpoint(t, db, "partner", "http://127.0.0.1:9/hook", boxoffice.EventOrderConfirmed)
	reg := prometheus.NewRegistry()
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: dir, Store: db, Registry: reg,
		Tuning: &AsyncTuning{WebhookPoll: 20 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			a.Stop()
		}
	}()

	e := &env{store: db}
	e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_1", boxoffice.Order{ID: "ord_1", ShowID: "gala", TierID: "stalls",
		Quantity: 2, Status: boxoffice.OrderConfirmed, Buyer: boxoffice.Buyer{Email: "b@example.com"}})

	hook := WebhookConsumer(ep)
	want := map[string]float64{
		`boxoffice_relay_published_total`: 1,
		`boxoffice_relay_leader`:          1,
		`boxoffice_relay_lag_events`:      0,
		`boxoffice_relay_lag_seconds`:     0,
		`boxoffice_consumer_deliveries_total{consumer="email",outcome="applied"}`:              1,
		`boxoffice_emails_sent_total{via="file"}`:                                              1,
		`boxoffice_consumer_deliveries_total{consumer="` + hook + `",outcome="dead_lettered"}`: 1,
		`boxoffice_dead_letters{consumer="` + hook + `"}`:                                      1,
		`boxoffice_consumer_pending_messages{consumer="email"}`:                                0,
		`boxoffice_consumer_pending_messages{consumer="` + hook + `"}`:                         0,
		`boxoffice_events_stream_messages`:                                                     1,
		`boxoffice_tier_capacity{show="gala",tier="stalls"}`:                                   100,
		`boxoffice_tier_held{show="gala",tier="stalls"}`:                                       3,
		`boxoffice_tier_sold{show="gala",tier="stalls"}`:                                       7,
	}
	var got map[string]float64
	eventually(t, "the scrape to show the event published, applied and dead-lettered", func() bool {
		got = scrape(t, reg)
		for series, v := range want {
			if g, ok := got[series]; !ok || g != v {
				return false
			}
		}
		return true
	})
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}

	a.Stop()
	stopped = true
	for series := range scrape(t, reg) {
		if strings.HasPrefix(series, "boxoffice_") {
			t.Errorf("after Stop the registry still has %s", series)
		}
	}
}

// TestRelayLag: with more events waiting than one batch, the relay's lag after a round is what is
// left — the outbox's newest position beyond the published one, and the creation of the first
// event not yet published — and it is zero once the relay has caught up.
func TestRelayLag(t *testing.T) {
	e := newEnv(t)
	for i := range 10 {
		e.appendEvent(t, boxoffice.EventHoldCreated, fmt.Sprintf("hold_%d", i), map[string]string{"show_id": "s"})
	}
	var events []*boxoffice.Event
	ctx := context.Background()
	if err := e.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		events, err = tx.ListEvents(ctx, 0, 100)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r := &Relay{Store: e.store, JS: e.js}
	r.leading.Store(true)
	if l := r.Lag(); l.Events() != 0 || !l.OldestWaiting.IsZero() {
		t.Fatalf("before any read: lag %+v, want none", l)
	}
	n, head, _, err := r.round(ctx, 0, nil, 4)
	if err != nil || n != 4 {
		t.Fatalf("round = %d, %v; want 4 events", n, err)
	}
	l := r.Lag()
	if l.OutboxPosition != events[9].Position || l.RelayPosition != events[3].Position || l.Events() != 6 {
		t.Errorf("after a batch of 4 of 10: lag %+v (%d events), want outbox at %d, relay at %d, 6 events",
			l, l.Events(), events[9].Position, events[3].Position)
	}
	if !l.OldestWaiting.Equal(events[4].CreatedAt) {
		t.Errorf("oldest waiting %v, want the fifth event's creation %v", l.OldestWaiting, events[4].CreatedAt)
	}
	if l.Seconds(events[4].CreatedAt.Add(3*time.Second)) != 3 {
		t.Errorf("Seconds 3 s after the oldest waiting event = %v, want 3", l.Seconds(events[4].CreatedAt.Add(3*time.Second)))
	}
	for n == 4 {
		if n, head, _, err = r.round(ctx, head, nil, 4); err != nil {
			t.Fatal(err)
		}
	}
	if l := r.Lag(); l.Events() != 0 || !l.OldestWaiting.IsZero() || l.Seconds(time.Now()) != 0 {
		t.Errorf("caught up: lag %+v, want none", l)
	}
	r.leading.Store(false)
	if l := r.Lag(); l != (RelayLag{}) {
		t.Errorf("a relay that does not lead reports %+v, want nothing", l)
	}
}

// TestOutboxTop finds the newest position of outboxes with gaps from guesses above, below and at
// it, and a near guess costs a few lookups.
func TestOutboxTop(t *testing.T) {
	var positions []int64
	for p := int64(1); p <= 5000; p++ {
		if p%7 != 0 && (p < 1000 || p > 1300) { // rolled-back transactions, one long run of them
			positions = append(positions, p)
		}
	}
	top := positions[len(positions)-1]
	for _, known := range []int64{1, 999, 1301, 4000, top} {
		for _, guess := range []int64{0, known, 1200, top - 3, top, top + 1, top + 10_000} {
			lookups := 0
			first := func(after int64) (int64, bool, error) {
				lookups++
				i, _ := slices.BinarySearch(positions, after+1)
				if i == len(positions) {
					return 0, false, nil
				}
				return positions[i], true, nil
			}
			got, err := outboxTop(first, known, guess)
			if err != nil || got != top {
				t.Errorf("outboxTop(known %d, guess %d) = %d, %v; want %d", known, guess, got, err, top)
			}
			if (guess == top || guess == top-3) && lookups > 10 {
				t.Errorf("outboxTop(known %d, guess %d) took %d lookups for a near guess", known, guess, lookups)
			}
		}
	}
}

// TestShowActivityBounded: the tier gauges cover at most limit shows, those with the latest
// events, and none once the relay stops leading.
func TestShowActivityBounded(t *testing.T) {
	a := newShowActivity(3)
	ev := func(show string) *boxoffice.Event {
		return &boxoffice.Event{Data: []byte(`{"id":"x","show_id":"` + show + `"}`)}
	}
	for i := range 20 {
		a.observe(ev(fmt.Sprintf("s%d", i)))
	}
	a.observe(ev("s5"))
	a.observe(&boxoffice.Event{Data: []byte(`not json`)})
	if got, want := a.recent(), []string{"s5", "s19", "s18"}; !slices.Equal(got, want) {
		t.Errorf("recent = %v, want %v", got, want)
	}
	if n := len(a.last); n > 6 {
		t.Errorf("remembers %d shows, want at most twice the limit", n)
	}
	a.reset()
	if got := a.recent(); len(got) != 0 {
		t.Errorf("after reset: %v", got)
	}
}

// TestCheckMaxAge: a retention that would delete messages still being retried, or shorter than
// the duplicate window, is refused; none, or one above both, is fine.
func TestCheckMaxAge(t *testing.T) {
	day := []time.Duration{time.Hour, 23 * time.Hour}
	for _, tc := range []struct {
		maxAge time.Duration
		ok     bool
	}{
		{0, true},
		{-time.Hour, false},
		{30 * time.Second, false},   // under the duplicate window
		{25 * time.Hour, false},     // the schedule's day plus jitter is up to 28.8 h
		{29 * time.Hour, true},      // above it
		{DefaultEventsMaxAge, true}, // a week
	} {
		err := CheckMaxAge(tc.maxAge, DefaultGapWait, EmbeddedSyncLag, day, DefaultEmailBackoff)
		if (err == nil) != tc.ok {
			t.Errorf("CheckMaxAge(%v) = %v, want ok %v", tc.maxAge, err, tc.ok)
		}
	}
	if err := CheckMaxAge(DefaultEventsMaxAge, DefaultGapWait, 0, DefaultWebhookBackoff, DefaultEmailBackoff); err != nil {
		t.Errorf("the default max age with the default schedules: %v", err)
	}
	// StartAsync checks it against the schedules it runs, before it starts anything.
	_, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: t.TempDir(), EventsMaxAge: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "still being retried") {
		t.Errorf("StartAsync with a max age of an hour and the day-long webhook schedule: %v, want a refusal", err)
	}
}

// TestAsyncListenAndMaxAge: with Listen the embedded server takes clients on that loopback
// address, where an outside client (as the nats CLI is) sees the events stream, with the max age
// it was given; an external NATS cannot be told to listen.
func TestAsyncListenAndMaxAge(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := openStore(t, dir)
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: dir, Store: db, Listen: "127.0.0.1:0",
		EventsMaxAge: 48 * time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	u := a.ClientURL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") {
		t.Fatalf("ClientURL = %q, want nats://127.0.0.1:<port>", u)
	}
	nc, err := natsgo.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatalf("an outside client cannot see the stream: %v", err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 48*time.Hour {
		t.Errorf("stream MaxAge = %v, want 48h", got)
	}
	nc.Close()
	a.Stop() // one async side at a time in this process (see shared_test.go)

	if _, err := StartAsync(AsyncConfig{NATS: "nats://127.0.0.1:1", DataDir: t.TempDir(), Store: db, Listen: "127.0.0.1:0"}); err == nil ||
		!strings.Contains(err.Error(), "only the embedded") {
		t.Errorf("Listen with an external NATS: %v, want a refusal", err)
	}
	// Without Listen there is no listener at all.
	b, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: t.TempDir(), Store: db, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	if u := b.ClientURL(); u != "" {
		t.Errorf("ClientURL without Listen = %q, want none", u)
	}
}
