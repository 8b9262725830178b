package nats

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"boxoffice"
)

// TestAsyncConsumers runs the async side as the server does, with a webhook endpoint whose
// receiver answers 500 and a retry an hour away: its consumer is listed under the endpoint's id
// (which holds an underscore) with the failed event in flight, the next one pending behind it
// (one at a time), and the receiver's answer as its last error; the email consumer is listed too.
func TestAsyncConsumers(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := openStore(t, dir)
	putShow(t, db, "gala", "stalls", 100, 0, 2)
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "partner down", http.StatusInternalServerError)
	}))
	t.Cleanup(partner.Close)
	ep := putEndpoint(t, db, "partner_eu", partner.URL+"/hook", boxoffice.EventOrderConfirmed)
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: dir, Store: db, AllowPrivateWebhooks: true,
		Tuning: &AsyncTuning{WebhookPoll: 20 * time.Millisecond, WebhookBackoff: []time.Duration{time.Hour}},
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)

	e := &env{store: db}
	for _, id := range []string{"ord_1", "ord_2"} {
		e.appendEvent(t, boxoffice.EventOrderConfirmed, id, boxoffice.Order{ID: id, ShowID: "gala", TierID: "stalls",
			Quantity: 1, Status: boxoffice.OrderConfirmed, Buyer: boxoffice.Buyer{Email: "b@example.com"}})
	}

	hook := WebhookConsumer(ep)
	var got map[string]ConsumerStatus
	eventually(t, "the endpoint's consumer to show one event failed and in flight, one pending", func() bool {
		list, err := a.Consumers(ctx)
		if err != nil {
			t.Logf("consumers: %v", err)
			return false
		}
		got = map[string]ConsumerStatus{}
		for _, c := range list {
			got[c.Name] = c
		}
		c := got[hook]
		return c.AckPending == 1 && c.Pending == 1 && c.LastError != ""
	})
	c := got[hook]
	if c.Endpoint != "partner_eu" {
		t.Errorf("endpoint of %s = %q, want partner_eu", hook, c.Endpoint)
	}
	if !strings.Contains(c.LastError, "500") || !c.Failing || c.LastErrorAt.IsZero() {
		t.Errorf("webhook consumer %+v: want failing with the receiver's 500 and its time", c)
	}
	if c.DeadLetters != 0 {
		t.Errorf("webhook consumer has %d dead letters, want 0: its retry is an hour away", c.DeadLetters)
	}
	if em, ok := got[EmailConsumer]; !ok || em.Endpoint != "" {
		t.Errorf("email consumer %+v (listed %v), want it listed with no endpoint", em, ok)
	}
}

// TestConsumerErrorsRecovery: a success after a failure keeps the last error to be read but no
// longer counts the consumer as failing; a run without the record (nil) records nothing.
func TestConsumerErrorsRecovery(t *testing.T) {
	var ce consumerErrors
	ce.succeeded("email") // nothing failed yet: nothing to note
	if len(ce.m) != 0 {
		t.Fatalf("a success alone made entries: %+v", ce.m)
	}
	ce.failed("email", errors.New("smtp: 451 try later"))
	if e := ce.m["email"]; !e.failing || e.msg != "smtp: 451 try later" {
		t.Fatalf("after a failure: %+v", e)
	}
	ce.succeeded("email")
	if e := ce.m["email"]; e.failing || e.msg != "smtp: 451 try later" {
		t.Errorf("after a success: %+v, want the error kept and not failing", e)
	}
	var none *consumerErrors
	none.failed("email", errors.New("x"))
	none.succeeded("email")
}
