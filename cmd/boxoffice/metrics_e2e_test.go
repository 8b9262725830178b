package main

import (
	"bufio"
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	bonats "boxoffice/nats"
)

var (
	metricsURLRE = regexp.MustCompile(`metrics_url=(http://127\.0\.0\.1:\d+/metrics)`)
	natsURLRE    = regexp.MustCompile(`nats_url=(nats://127\.0\.0\.1:\d+)`)
)

// scrapeMetrics GETs a /metrics URL and parses Prometheus' text format into samples by series,
// as the text spells them: name{label="value",...}, labels sorted by name.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
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
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServeMetricsAndBusListeners runs serve with --metrics-addr and --nats-listen on loopback:
// /metrics leaves the API port for its own listener, where a purchase shows as sold in its tier,
// published by the relay, applied by the email consumer and mailed, and a retried purchase as an
// idempotency replay; and an outside NATS client, as the nats CLI is, reaches the embedded
// JetStream and finds the events stream with the retention --events-max-age gave it.
func TestServeMetricsAndBusListeners(t *testing.T) {
	s := startServer(t, t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--events-max-age", "72h")
	m := metricsURLRE.FindStringSubmatch(s.logs.String())
	n := natsURLRE.FindStringSubmatch(s.logs.String())
	if m == nil || n == nil {
		t.Fatalf("serve did not log metrics_url and nats_url:\n%s", s.logs)
	}
	metricsURL, natsURL := m[1], n[1]
	admin := s.client(adminKey)
	if r := admin.must(404, "GET", "/metrics", nil); r.code() != "not_found" {
		t.Errorf("/metrics on the API port with --metrics-addr: %d %s", r.Status, r.Body)
	}

	admin.must(201, "PUT", "/v1/shows/gala", showBody(100, 60))
	// A waiting room on another show, paused before its on-sale: the scrape reports it as the
	// store has it.
	admin.must(201, "PUT", "/v1/shows/queued", showBody(10, 60))
	admin.must(201, "PUT", "/v1/shows/queued/waiting-room", map[string]any{"opens_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"admit_per_second": 7, "paused": true})
	cl := s.client(s.newClientKey(t))
	buy := map[string]any{"show_id": "gala", "tier_id": "ga", "quantity": 2,
		"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}
	cl.post(201, "/v1/purchases", "buy-1", buy)
	if r := cl.post(201, "/v1/purchases", "buy-1", buy); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retried purchase was not a replay: %v", r.Header)
	}

	want := map[string]float64{
		`boxoffice_tier_sold{show="gala",tier="ga"}`:                              2,
		`boxoffice_tier_held{show="gala",tier="ga"}`:                              0,
		`boxoffice_tier_capacity{show="gala",tier="ga"}`:                          100,
		`boxoffice_consumer_deliveries_total{consumer="email",outcome="applied"}`: 1,
		`boxoffice_emails_sent_total{via="file"}`:                                 1,
		`boxoffice_idempotency_replays_total`:                                     1,
		`boxoffice_relay_lag_events`:                                              0,
		`boxoffice_relay_leader`:                                                  1,
		`boxoffice_waitroom_paused{show="queued"}`:                                1,
		`boxoffice_waitroom_admit_per_second{show="queued"}`:                      7,
		`boxoffice_waitroom_waiting{show="queued"}`:                               0,
	}
	var got map[string]float64
	eventually(t, "the scrape to show the purchase sold, published, mailed and replayed", func() bool {
		got = scrapeMetrics(t, metricsURL)
		for series, v := range want {
			if got[series] != v {
				return false
			}
		}
		return true
	})
	// The purchase's events (hold, order) went out; the HTTP metrics are on the same listener.
	if got["boxoffice_relay_published_total"] < 2 || got[`boxoffice_http_requests_total{code="201",route="POST /v1/purchases"}`] != 2 {
		t.Errorf("published %v events, %v purchases counted; want at least 2 and 2", got["boxoffice_relay_published_total"],
			got[`boxoffice_http_requests_total{code="201",route="POST /v1/purchases"}`])
	}

	nc, err := natsgo.Connect(natsURL, natsgo.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect to --nats-listen %s: %v", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bonats.StreamName)
	if err != nil {
		t.Fatalf("stream %s over --nats-listen: %v", bonats.StreamName, err)
	}
	info := st.CachedInfo()
	if info.Config.MaxAge != 72*time.Hour || info.State.Msgs < 2 {
		t.Errorf("stream: max age %v, %d messages; want 72h and the purchase's events", info.Config.MaxAge, info.State.Msgs)
	}
	if err := s.stop(); err != nil {
		t.Errorf("stop: %v\n%s", err, s.logs)
	}
}
