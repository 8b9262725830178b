package nats

import (
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
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// testBackoff is a retry schedule of milliseconds: eight retries, then the dead-letter queue.
var testBackoff = []time.Duration{
	10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond,
	100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
}

// testLogger writes to the test's output, shown when it fails or under -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newWebhooks is a Webhooks over e with test timings.
func (e *env) newWebhooks(t *testing.T, allowPrivate bool) *Webhooks {
	return &Webhooks{Store: e.store, JS: e.js, AllowPrivate: allowPrivate, Timeout: 5 * time.Second,
		Backoff: testBackoff, Poll: 20 * time.Millisecond, Logger: testLogger(t)}
}

// putEndpoint writes an endpoint to the store, as the service's PUT does, and returns it as stored.
func putEndpoint(t *testing.T, store boxoffice.Store, id, url string, types ...string) *boxoffice.WebhookEndpoint {
	t.Helper()
	now := time.Now().UTC()
	ep := &boxoffice.WebhookEndpoint{ID: id, URL: url, EventTypes: types, Secret: NewSecret(),
		Status: boxoffice.WebhookEnabled, CreatedAt: now, UpdatedAt: now}
	ctx := context.Background()
	if err := store.Update(ctx, func(tx boxoffice.Tx) error { _, err := tx.PutWebhookEndpoint(ctx, ep); return err }); err != nil {
		t.Fatal(err)
	}
	return getEndpoint(t, store, id)
}

// replaceEndpoint changes an endpoint by change and writes it back enabled, as a PUT does.
func replaceEndpoint(t *testing.T, store boxoffice.Store, id string, change func(ep *boxoffice.WebhookEndpoint)) *boxoffice.WebhookEndpoint {
	t.Helper()
	ep := getEndpoint(t, store, id)
	change(ep)
	ep.Status, ep.DisabledReason, ep.UpdatedAt = boxoffice.WebhookEnabled, "", time.Now().UTC()
	ctx := context.Background()
	if err := store.Update(ctx, func(tx boxoffice.Tx) error { _, err := tx.PutWebhookEndpoint(ctx, ep); return err }); err != nil {
		t.Fatal(err)
	}
	return getEndpoint(t, store, id)
}

func getEndpoint(t *testing.T, store boxoffice.Store, id string) *boxoffice.WebhookEndpoint {
	t.Helper()
	var ep *boxoffice.WebhookEndpoint
	ctx := context.Background()
	if err := store.View(ctx, func(tx boxoffice.Tx) error {
		var err error
		ep, err = tx.GetWebhookEndpoint(ctx, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ep
}

// waitApplied waits until the receiver has every event at path and consumer's inbox records each.
// The inbox row is written after the receiver's 200, so a consumer stopped between the two would
// deliver that event again (at least once); a test that stops it and then checks the inbox must
// wait for both.
func waitApplied(t *testing.T, store boxoffice.Store, rc *receiver, path, consumer string, events []*boxoffice.Event) {
	t.Helper()
	eventually(t, "every event is delivered and in the inbox", func() bool {
		if !rc.hasAll(path, ids(events)) {
			return false
		}
		for _, ev := range events {
			if !inboxHas(t, store, consumer, ev.ID) {
				return false
			}
		}
		return true
	})
}

func inboxHas(t *testing.T, store boxoffice.Store, consumer, eventID string) bool {
	t.Helper()
	var has bool
	ctx := context.Background()
	if err := store.View(ctx, func(tx boxoffice.Tx) error {
		var err error
		has, err = tx.InboxHas(ctx, consumer, eventID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return has
}

// allInInbox says whether the email consumer's inbox has every one of evs.
func allInInbox(t *testing.T, store boxoffice.Store, evs []*boxoffice.Event) bool {
	t.Helper()
	for _, ev := range evs {
		if !inboxHas(t, store, EmailConsumer, ev.ID) {
			return false
		}
	}
	return true
}

// receiver is a webhook receiver on 127.0.0.1 that verifies every delivery as a partner would,
// with its own implementation of the Standard Webhooks signature, and records what it got. Each
// endpoint gets its own path.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// respond, when set, answers a verified delivery: attempt counts this path's requests for
	// the event, from 1. It may set headers and wait; a 2xx status counts as accepted.
	respond atomic.Pointer[func(w http.ResponseWriter, r *http.Request, id string, attempt int) int]

	mu       sync.Mutex
	secrets  map[string]string      // by path
	requests map[string][]string    // path → event ids of every verified request, in order
	accepted map[string][]string    // path → event ids answered 2xx, in order
	times    map[string][]time.Time // path + " " + id → when each request came
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, secrets: map[string]string{}, requests: map[string][]string{},
		accepted: map[string][]string{}, times: map[string][]time.Time{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

func (rc *receiver) setSecret(path, secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets[path] = secret
}

func (rc *receiver) setRespond(f func(w http.ResponseWriter, r *http.Request, id string, attempt int) int) {
	rc.respond.Store(&f)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender gave up
	}
	now := time.Now()
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	rc.mu.Lock()
	secret, known := rc.secrets[r.URL.Path]
	rc.mu.Unlock()
	var p struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	problem := ""
	sec, tsErr := strconv.ParseInt(ts, 10, 64)
	switch {
	case !known:
		problem = "unknown path"
	case r.Method != http.MethodPost:
		problem = "method " + r.Method
	case r.Header.Get("content-type") != "application/json":
		problem = "content-type " + r.Header.Get("content-type")
	case id == "" || tsErr != nil:
		problem = fmt.Sprintf("webhook-id %q, webhook-timestamp %q", id, ts)
	case now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute:
		problem = "webhook-timestamp too far from now: " + ts
	case !verifySignature(secret, id, ts, sig, body):
		problem = "bad signature " + sig
	case json.Unmarshal(body, &p) != nil:
		problem = "body is not JSON: " + string(body)
	case p.ID != id || p.Type == "" || len(p.Data) == 0:
		problem = "body does not match webhook-id " + id + ": " + string(body)
	default:
		if _, err := time.Parse(time.RFC3339, p.Timestamp); err != nil {
			problem = "timestamp is not RFC 3339: " + p.Timestamp
		}
	}
	if problem != "" {
		rc.t.Errorf("receiver %s: %s", r.URL.Path, problem)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.requests[r.URL.Path] = append(rc.requests[r.URL.Path], id)
	key := r.URL.Path + " " + id
	rc.times[key] = append(rc.times[key], now)
	attempt := len(rc.times[key])
	rc.mu.Unlock()
	status := http.StatusOK
	if f := rc.respond.Load(); f != nil {
		status = (*f)(w, r, id, attempt)
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.accepted[r.URL.Path] = append(rc.accepted[r.URL.Path], id)
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

// verifySignature checks a webhook-signature header the way the Standard Webhooks spec tells a
// receiver to, independently of Sign: any space-separated "v1,<base64>" entry that equals the
// HMAC-SHA256 of "id.timestamp.body" under the secret's base64-decoded key.
func verifySignature(secret, id, ts, header string, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := mac.Sum(nil)
	for _, entry := range strings.Fields(header) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(sig); err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func (rc *receiver) acceptedAt(path string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.accepted[path])
}

func (rc *receiver) requestsAt(path string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.requests[path])
}

// hasAll says whether every one of ids was accepted at path.
func (rc *receiver) hasAll(path string, ids []string) bool {
	got := rc.acceptedAt(path)
	for _, id := range ids {
		if !slices.Contains(got, id) {
			return false
		}
	}
	return true
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// checkOrder fails when the first acceptances at a path of the events of one subject are not in
// their seq order.
func checkOrder(t *testing.T, path string, accepted []string, events []*boxoffice.Event) {
	t.Helper()
	byID := map[string]*boxoffice.Event{}
	for _, ev := range events {
		byID[ev.ID] = ev
	}
	last := map[string]int{}
	seen := map[string]bool{}
	for _, id := range accepted {
		ev := byID[id]
		if ev == nil || seen[id] {
			continue
		}
		seen[id] = true
		if ev.Seq <= last[ev.Subject] {
			t.Errorf("%s: event %s of %s (seq %d) arrived after seq %d", path, id, ev.Subject, ev.Seq, last[ev.Subject])
		}
		last[ev.Subject] = ev.Seq
	}
}

func ids(events []*boxoffice.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.ID
	}
	return out
}

func ofTypes(events []*boxoffice.Event, types ...string) []*boxoffice.Event {
	var out []*boxoffice.Event
	for _, ev := range events {
		if slices.Contains(types, ev.Type) {
			out = append(out, ev)
		}
	}
	return out
}

// orderEvents appends, for n orders interleaved, hold.created, order.confirmed and (for every
// other order) order.cancelled.
func orderEvents(t *testing.T, e *env, n int) []*boxoffice.Event {
	t.Helper()
	var out []*boxoffice.Event
	for i := 0; i < n; i++ {
		out = append(out, e.appendEvent(t, boxoffice.EventHoldCreated, fmt.Sprintf("hld_%d", i), map[string]int{"n": i}))
	}
	for i := 0; i < n; i++ {
		out = append(out, e.appendEvent(t, boxoffice.EventOrderConfirmed, fmt.Sprintf("ord_%d", i), map[string]any{"id": fmt.Sprintf("ord_%d", i)}))
	}
	for i := 0; i < n; i += 2 {
		out = append(out, e.appendEvent(t, boxoffice.EventOrderCancelled, fmt.Sprintf("ord_%d", i), map[string]any{"id": fmt.Sprintf("ord_%d", i)}))
	}
	return out
}

// TestWebhooksDeliverSignedEventsInOrder runs three endpoints with different subscriptions: each
// gets every event of its types once, signed, with one distinct webhook-id per event, the events of
// one order in order, nothing of the types it did not subscribe to, and nothing from before it
// existed; every delivery is in its inbox.
func TestWebhooksDeliverSignedEventsInOrder(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	// An event from before the endpoints, published before they exist.
	old := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_old", map[string]string{"id": "ord_old"})
	eventually(t, "the old event is published", func() bool { return e.checkpoint(t) == old.Position })

	all := putEndpoint(t, e.store, "all", rc.url("/all"), boxoffice.EventTypes...)
	orders := putEndpoint(t, e.store, "orders", rc.url("/orders"), boxoffice.EventOrderConfirmed, boxoffice.EventOrderCancelled)
	holds := putEndpoint(t, e.store, "holds", rc.url("/holds"), boxoffice.EventHoldCreated)
	for _, ep := range []*boxoffice.WebhookEndpoint{all, orders, holds} {
		rc.setSecret("/"+ep.ID, ep.Secret)
	}
	events := orderEvents(t, e, 4)
	// Order events come in both orders across subjects: the confirmation of ord_3 after the
	// cancellation of ord_0, and a second cancellation round.
	events = append(events, e.appendEvent(t, boxoffice.EventHoldReleased, "hld_1", map[string]int{"n": 1}))

	w := e.newWebhooks(t, true)
	stop := run(w.Run)
	defer stop()
	want := map[string][]*boxoffice.Event{
		"/all":    events,
		"/orders": ofTypes(events, boxoffice.EventOrderConfirmed, boxoffice.EventOrderCancelled),
		"/holds":  ofTypes(events, boxoffice.EventHoldCreated),
	}
	// Until each consumer has recorded its last delivery too (see waitApplied): stopping it
	// before would leave that delivery to a redelivery, and the inbox checks below without it.
	for _, ep := range []*boxoffice.WebhookEndpoint{all, orders, holds} {
		waitApplied(t, e.store, rc, "/"+ep.ID, WebhookConsumer(ep), want["/"+ep.ID])
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []*boxoffice.WebhookEndpoint{all, orders, holds} {
		path := "/" + ep.ID
		got := rc.acceptedAt(path)
		if len(got) != len(want[path]) {
			t.Errorf("%s got %d deliveries, want %d (one per event): %v", path, len(got), len(want[path]), got)
		}
		for _, ev := range want[path] {
			if n := countOf(got, ev.ID); n != 1 {
				t.Errorf("%s got event %s %d times, want once", path, ev.ID, n)
			}
			if !inboxHas(t, e.store, WebhookConsumer(ep), ev.ID) {
				t.Errorf("the inbox of %s lacks %s", ep.ID, ev.ID)
			}
		}
		if slices.Contains(rc.requestsAt(path), old.ID) {
			t.Errorf("%s got the event from before the endpoint existed", path)
		}
		checkOrder(t, path, got, events)
	}
	if d, f := w.Stats(); d != int64(len(events)+len(want["/orders"])+len(want["/holds"])) || f != 0 {
		t.Errorf("stats: %d delivered, %d failed", d, f)
	}
}

// TestWebhooksRetryUntilDelivered has a receiver that fails each event's first attempts in one of
// three ways: 500 twice, a response slower than the timeout, 429 with Retry-After. Every event
// ends delivered (accepted once, in the inbox), in order, and the retry after a Retry-After came
// no sooner than it asked.
func TestWebhooksRetryUntilDelivered(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	ep := putEndpoint(t, e.store, "flaky", rc.url("/flaky"), boxoffice.EventTypes...)
	rc.setSecret("/flaky", ep.Secret)
	events := orderEvents(t, e, 3)
	kind := map[string]int{}
	for i, ev := range events {
		kind[ev.ID] = i % 3
	}
	rc.setRespond(func(w http.ResponseWriter, r *http.Request, id string, attempt int) int {
		switch kind[id] {
		case 0:
			if attempt <= 2 {
				return http.StatusInternalServerError
			}
		case 1:
			if attempt == 1 {
				select { // slower than the sender's timeout
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return http.StatusServiceUnavailable
			}
		case 2:
			if attempt == 1 {
				w.Header().Set("Retry-After", "1")
				return http.StatusTooManyRequests
			}
		}
		return http.StatusNoContent
	})
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	w := e.newWebhooks(t, true)
	w.Timeout = 300 * time.Millisecond
	stop := run(w.Run)
	defer stop()
	waitApplied(t, e.store, rc, "/flaky", WebhookConsumer(ep), events)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := rc.acceptedAt("/flaky")
	for _, ev := range events {
		if n := countOf(got, ev.ID); n != 1 {
			t.Errorf("event %s accepted %d times, want once", ev.ID, n)
		}
		if !inboxHas(t, e.store, WebhookConsumer(ep), ev.ID) {
			t.Errorf("inbox lacks %s", ev.ID)
		}
		rc.mu.Lock()
		times := rc.times["/flaky "+ev.ID]
		rc.mu.Unlock()
		if kind[ev.ID] == 2 && len(times) >= 2 && times[1].Sub(times[0]) < 900*time.Millisecond {
			t.Errorf("event %s was retried %v after a Retry-After of 1 s", ev.ID, times[1].Sub(times[0]))
		}
	}
	checkOrder(t, "/flaky", got, events)
	if dls, err := ListDeadLetters(context.Background(), e.js, 0); err != nil || len(dls) != 0 {
		t.Errorf("dead letters: %v, %v; want none", dls, err)
	}
	if _, failed := w.Stats(); failed == 0 {
		t.Error("no attempt failed: the receiver's failures did not happen")
	}
}

// TestWebhooksGoneDisablesEndpoint answers 410 to the third of six events of one order: the
// endpoint is disabled in the store, nothing after that event is sent, and a PUT enabling the
// endpoint again delivers the rest, in order, from that event on.
func TestWebhooksGoneDisablesEndpoint(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	ep := putEndpoint(t, e.store, "gone", rc.url("/gone"), boxoffice.EventOrderConfirmed)
	rc.setSecret("/gone", ep.Secret)
	var events []*boxoffice.Event
	for i := 0; i < 6; i++ {
		events = append(events, e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_1", map[string]int{"i": i}))
	}
	var gone atomic.Bool
	gone.Store(true)
	rc.setRespond(func(w http.ResponseWriter, r *http.Request, id string, attempt int) int {
		if gone.Load() && id == events[2].ID {
			return http.StatusGone
		}
		return http.StatusOK
	})
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	w := e.newWebhooks(t, true)
	stop := run(w.Run)
	defer stop()
	eventually(t, "the endpoint is disabled", func() bool {
		return getEndpoint(t, e.store, "gone").Status == boxoffice.WebhookDisabled
	})
	disabled := getEndpoint(t, e.store, "gone")
	if !strings.Contains(disabled.DisabledReason, "410") {
		t.Errorf("disabled reason %q does not tell of the 410", disabled.DisabledReason)
	}
	if !slices.Equal(rc.acceptedAt("/gone"), ids(events[:2])) {
		t.Errorf("accepted before the 410: %v, want the first two events", rc.acceptedAt("/gone"))
	}
	// The worker is stopped: give it a few polls to misbehave.
	time.Sleep(200 * time.Millisecond)
	for _, id := range rc.requestsAt("/gone") {
		if id == events[3].ID || id == events[4].ID || id == events[5].ID {
			t.Fatalf("event %s was sent after the endpoint was disabled", id)
		}
	}

	gone.Store(false)
	replaceEndpoint(t, e.store, "gone", func(*boxoffice.WebhookEndpoint) {})
	eventually(t, "the rest is delivered after the endpoint is enabled again", func() bool {
		return rc.hasAll("/gone", ids(events))
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := rc.acceptedAt("/gone"); !slices.Equal(got, ids(events)) {
		t.Errorf("accepted %v, want every event once in order %v", got, ids(events))
	}
}

// TestWebhooksRestartLosesNothing stops the webhook consumer in the middle of a stream of
// deliveries to a slow receiver, deliveries in flight included, and starts a new one: every event
// is delivered, the events of each order in order, and each is in the inbox.
func TestWebhooksRestartLosesNothing(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	ep := putEndpoint(t, e.store, "slow", rc.url("/slow"), boxoffice.EventTypes...)
	rc.setSecret("/slow", ep.Secret)
	rc.setRespond(func(w http.ResponseWriter, r *http.Request, id string, attempt int) int {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Millisecond):
		}
		return http.StatusOK
	})
	events := orderEvents(t, e, 8)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	for round := 0; round < 2; round++ {
		stop := run(e.newWebhooks(t, true).Run)
		want := (round + 1) * len(events) / 3
		eventually(t, "some events are delivered", func() bool { return len(rc.acceptedAt("/slow")) >= want })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if rc.hasAll("/slow", ids(events)) {
		t.Fatal("every event was delivered before the last restart; the test proves nothing")
	}
	stop := run(e.newWebhooks(t, true).Run)
	defer stop()
	waitApplied(t, e.store, rc, "/slow", WebhookConsumer(ep), events)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, "/slow", rc.acceptedAt("/slow"), events)
}

// TestWebhooksEndpointLifecycle changes an endpoint's event types (its consumer's filter follows),
// deletes it (its consumer goes) and creates it again under the same id: the new one has a consumer
// and an inbox of its own and gets only the events after it.
func TestWebhooksEndpointLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rc := newReceiver(t)
	ep := putEndpoint(t, e.store, "ep", rc.url("/ep"), boxoffice.EventHoldCreated)
	rc.setSecret("/ep", ep.Secret)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	stop := run(e.newWebhooks(t, true).Run)
	defer stop()

	h1 := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_1", map[string]int{"n": 1})
	o1 := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_1", map[string]int{"n": 1})
	eventually(t, "the hold event is delivered", func() bool { return rc.hasAll("/ep", []string{h1.ID}) })

	ep = replaceEndpoint(t, e.store, "ep", func(ep *boxoffice.WebhookEndpoint) {
		ep.EventTypes = []string{boxoffice.EventOrderConfirmed}
	})
	key := WebhookConsumer(ep)
	eventually(t, "the consumer filters the new types", func() bool {
		c, err := e.js.Consumer(ctx, StreamName, key)
		if err != nil {
			return false
		}
		f := c.CachedInfo().Config
		return slices.Equal(append(f.FilterSubjects, f.FilterSubject), []string{"", SubjectPrefix + boxoffice.EventOrderConfirmed}) ||
			slices.Equal(append(f.FilterSubjects, f.FilterSubject), []string{SubjectPrefix + boxoffice.EventOrderConfirmed, ""})
	})
	e.appendEvent(t, boxoffice.EventHoldCreated, "hld_2", map[string]int{"n": 2})
	o2 := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_2", map[string]int{"n": 2})
	eventually(t, "the order event is delivered", func() bool { return rc.hasAll("/ep", []string{o2.ID}) })

	if err := e.store.Update(ctx, func(tx boxoffice.Tx) error { _, err := tx.DeleteWebhookEndpoint(ctx, "ep"); return err }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted endpoint's consumer is deleted", func() bool {
		_, err := e.js.Consumer(ctx, StreamName, key)
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
	o3 := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_3", map[string]int{"n": 3})
	eventually(t, "the event after the deletion is published", func() bool { return e.checkpoint(t) == o3.Position })

	time.Sleep(5 * time.Millisecond) // a new created_at, to the millisecond
	again := putEndpoint(t, e.store, "ep", rc.url("/ep"), boxoffice.EventOrderConfirmed)
	rc.setSecret("/ep", again.Secret)
	if WebhookConsumer(again) == key {
		t.Fatalf("the recreated endpoint has the old consumer %s", key)
	}
	o4 := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_4", map[string]int{"n": 4})
	eventually(t, "the recreated endpoint gets the new event", func() bool { return rc.hasAll("/ep", []string{o4.ID}) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// o1, of a type the endpoint subscribed to after it was published, may or may not come: the
	// consumer keeps its position when its filter changes.
	got := slices.DeleteFunc(rc.requestsAt("/ep"), func(id string) bool { return id == o1.ID })
	if want := []string{h1.ID, o2.ID, o4.ID}; !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v: not h2 (unsubscribed) nor o3 (from before the endpoint was created again)", got, want)
	}
	if inboxHas(t, e.store, WebhookConsumer(again), o2.ID) {
		t.Error("the recreated endpoint inherited the old inbox")
	}
	if _, err := e.js.Consumer(ctx, StreamName, key); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the old consumer is back: %v", err)
	}
}

// TestWebhooksRefusePrivateAddresses runs without AllowPrivate: a loopback receiver is refused
// without a request, at once, into the dead-letter queue; so is a DNS name that resolves to a
// private address (refused when dialled), when this machine has one.
func TestWebhooksRefusePrivateAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rc := newReceiver(t)
	ep := putEndpoint(t, e.store, "loopback", rc.url("/loopback"), boxoffice.EventOrderConfirmed)
	rc.setSecret("/loopback", ep.Secret)
	eps := []*boxoffice.WebhookEndpoint{ep}
	// The host's own name usually resolves to a private or loopback address: a name the URL
	// check lets through, which only the dial-time check can refuse.
	if host, err := os.Hostname(); err == nil {
		if addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host); err == nil && len(addrs) > 0 {
			private := true
			for _, a := range addrs {
				private = private && isPrivateForTest(a)
			}
			if private && !strings.Contains(host, "localhost") && !strings.Contains(host, ".") {
				_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
				eps = append(eps, putEndpoint(t, e.store, "byname", "http://"+host+":"+port+"/byname", boxoffice.EventOrderConfirmed))
			}
		}
	}
	ev := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_1", map[string]int{"n": 1})
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	w := e.newWebhooks(t, false)
	stop := run(w.Run)
	defer stop()
	var dls []boxoffice.DeadLetter
	eventually(t, "the deliveries are dead-lettered", func() bool {
		var err error
		dls, err = ListDeadLetters(ctx, e.js, 0)
		return err == nil && len(dls) == len(eps)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps {
		i := slices.IndexFunc(dls, func(d boxoffice.DeadLetter) bool { return d.Consumer == WebhookConsumer(ep) })
		if i < 0 {
			t.Errorf("no dead letter for %s: %+v", ep.ID, dls)
			continue
		}
		dl := dls[i]
		if dl.EventID != ev.ID || dl.Attempts != 1 || !strings.Contains(dl.Error, "private") {
			t.Errorf("dead letter for %s = %+v; want event %s, 1 attempt, an error about a private address", ep.ID, dl, ev.ID)
		}
		t.Logf("%s: %s", ep.ID, dl.Error)
	}
	if got := rc.requestsAt("/loopback"); len(got) != 0 {
		t.Errorf("the loopback receiver got %v", got)
	}
}

// isPrivateForTest is netguard's predicate for the few addresses a host name resolves to.
func isPrivateForTest(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast()
}

// TestSignMatchesTheStandardWebhooksVector checks Sign against the Standard Webhooks spec's test
// vector, and NewSecret's form.
func TestSignMatchesTheStandardWebhooksVector(t *testing.T) {
	got, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	s1, s2 := NewSecret(), NewSecret()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s1, "whsec_"))
	if !strings.HasPrefix(s1, "whsec_") || err != nil || len(key) != 24 || s1 == s2 {
		t.Errorf("NewSecret = %q, %q: want whsec_ and the base64 of 24 random bytes", s1, s2)
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!"} {
		if _, err := Sign(bad, "id", time.Now(), nil); err == nil {
			t.Errorf("Sign accepted the secret %q", bad)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"99999999", maxRetryAfter, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-5", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestDeliverFollowsNoRedirect answers a delivery with a redirect: the attempt fails (to be
// retried) and the redirect's target never gets the signed event.
func TestDeliverFollowsNoRedirect(t *testing.T) {
	var hit atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Add(1) }))
	defer target.Close()
	redirector := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirector.Close()
	w := &Webhooks{AllowPrivate: true, Timeout: 5 * time.Second}
	ep := &boxoffice.WebhookEndpoint{ID: "r", URL: redirector.URL + "/hook", EventTypes: boxoffice.EventTypes, Secret: NewSecret()}
	m := &Message{ID: "evt_1", Type: boxoffice.EventOrderConfirmed, CreatedAt: time.Now(), Data: json.RawMessage(`{"id":"ord_1"}`)}
	err := w.deliver(context.Background(), ep, m)
	if err == nil || !strings.Contains(err.Error(), "307") || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("deliver to a redirect: %v, want a failure naming the 307", err)
	}
	if _, ok := errors.AsType[*PermanentError](err); ok {
		t.Errorf("a redirect was taken as a permanent failure: %v", err)
	}
	if hit.Load() != 0 {
		t.Error("the redirect was followed")
	}
}

// TestDeliverySignsWithBothSecretsDuringRotation: while a rotated-out secret's overlap lasts, a
// delivery carries one signature by the new secret and one by the previous, space-separated, so a
// receiver that verifies with either accepts it; once the overlap ends, only the new one signs.
func TestDeliverySignsWithBothSecretsDuringRotation(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r.Header.Clone()), append(bodies, b)
		mu.Unlock()
	}))
	defer srv.Close()
	w := &Webhooks{AllowPrivate: true, Timeout: 5 * time.Second, Logger: testLogger(t)}
	oldSecret, newSecret := NewSecret(), NewSecret()
	later := time.Now().Add(time.Hour)
	ep := &boxoffice.WebhookEndpoint{ID: "partner", URL: srv.URL, EventTypes: []string{"*"}, Secret: newSecret,
		PreviousSecret: oldSecret, PreviousSecretExpiresAt: &later, Status: boxoffice.WebhookEnabled}
	m := &Message{ID: "evt_1", Type: boxoffice.EventOrderConfirmed, CreatedAt: time.Now(), Data: json.RawMessage(`{"id":"ord_1"}`)}
	if err := w.deliver(context.Background(), ep, m); err != nil {
		t.Fatal(err)
	}
	ended := time.Now().Add(-time.Second)
	ep.PreviousSecretExpiresAt = &ended
	if err := w.deliver(context.Background(), ep, m); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d deliveries; want 2", len(got))
	}
	during, after := got[0], got[1]
	sigs := strings.Fields(during.Get("webhook-signature"))
	if len(sigs) != 2 {
		t.Fatalf("signature during the overlap %q; want two", during.Get("webhook-signature"))
	}
	for i, secret := range []string{newSecret, oldSecret} {
		// Each signature alone verifies under its own secret only.
		if !verifySignature(secret, "evt_1", during.Get("webhook-timestamp"), sigs[i], bodies[0]) {
			t.Errorf("signature %d does not verify under its secret", i)
		}
		if verifySignature(secret, "evt_1", during.Get("webhook-timestamp"), sigs[1-i], bodies[0]) {
			t.Errorf("signature %d verifies under the other secret", 1-i)
		}
	}
	if sigs := strings.Fields(after.Get("webhook-signature")); len(sigs) != 1 ||
		!verifySignature(newSecret, "evt_1", after.Get("webhook-timestamp"), sigs[0], bodies[1]) {
		t.Errorf("signature after the overlap %q; want the new secret's alone", after.Get("webhook-signature"))
	}
	if verifySignature(oldSecret, "evt_1", after.Get("webhook-timestamp"), after.Get("webhook-signature"), bodies[1]) {
		t.Error("the previous secret still verifies after its overlap")
	}
}

// TestDeliveryErrorsKeepTheQueryOut: a partner's token in the endpoint's query string stays out
// of the errors that are logged and kept with a dead letter, for a failed connection and a failed
// answer alike.
func TestDeliveryErrorsKeepTheQueryOut(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // nothing listens there now
	w := &Webhooks{AllowPrivate: true, Timeout: 5 * time.Second}
	m := &Message{ID: "evt_1", Type: boxoffice.EventOrderConfirmed, CreatedAt: time.Now(), Data: json.RawMessage(`{"id":"ord_1"}`)}
	for _, base := range []string{failing.URL, closedURL} {
		ep := &boxoffice.WebhookEndpoint{ID: "p", URL: base + "/hook?token=s3cret-token", EventTypes: boxoffice.EventTypes, Secret: NewSecret()}
		err := w.deliver(context.Background(), ep, m)
		if err == nil || strings.Contains(err.Error(), "s3cret-token") || !strings.Contains(err.Error(), "REDACTED") {
			t.Errorf("deliver to %s: %v; want a failure without the token", base, err)
		}
	}
	if got := redact("https://u:pw@partner.example/h?token=x#f"); strings.Contains(got, "token") || strings.Contains(got, "pw") {
		t.Errorf("redact = %q", got)
	}
}

// TestWebhooksAllTypesGetsLaterTypes: an endpoint subscribed to ["*"] gets an event of a type
// this version does not know (one a later version adds), while an endpoint that lists every type
// known today does not; the wildcard's consumer filters on the whole stream, so a new type needs
// no change of its filter.
func TestWebhooksAllTypesGetsLaterTypes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rc := newReceiver(t)
	all := putEndpoint(t, e.store, "all", rc.url("/all"), boxoffice.AllEventTypes)
	listed := putEndpoint(t, e.store, "listed", rc.url("/listed"), boxoffice.EventTypes...)
	rc.setSecret("/all", all.Secret)
	rc.setSecret("/listed", listed.Secret)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	stop := run(e.newWebhooks(t, true).Run)
	defer stop()

	const later = "ticket.scanned" // not in boxoffice.EventTypes
	if slices.Contains(boxoffice.EventTypes, later) {
		t.Fatalf("%s is a type of this version; pick one it does not know", later)
	}
	known := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_1", map[string]int{"n": 1})
	added := e.appendEvent(t, later, "tkt_1", map[string]int{"n": 2})
	last := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_1", map[string]int{"n": 3})
	eventually(t, "every event reaches the wildcard endpoint", func() bool {
		return rc.hasAll("/all", []string{known.ID, added.ID, last.ID})
	})
	eventually(t, "the known types reach the listing endpoint", func() bool {
		return rc.hasAll("/listed", []string{known.ID, last.ID})
	})
	// The listing endpoint's consumer has passed the later type's event (the event after it is
	// delivered, in stream order), so not having it means it was filtered out.
	if slices.Contains(rc.requestsAt("/listed"), added.ID) {
		t.Errorf("the endpoint listing today's types got %s", later)
	}
	c, err := e.js.Consumer(ctx, StreamName, WebhookConsumer(all))
	if err != nil {
		t.Fatal(err)
	}
	f := c.CachedInfo().Config
	if got := append(slices.Clone(f.FilterSubjects), f.FilterSubject); !slices.Contains(got, SubjectPrefix+">") || len(slices.DeleteFunc(got, func(s string) bool { return s == "" })) != 1 {
		t.Errorf("the wildcard endpoint's consumer filters %q; want only %s>", got, SubjectPrefix)
	}
	if !all.Wants(later) || listed.Wants(later) {
		t.Errorf("Wants(%s): wildcard %v, listing %v", later, all.Wants(later), listed.Wants(later))
	}
}
