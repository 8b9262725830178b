package nats

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// TestDeadLetterRoundTrip runs the async side as the server does, with a tiny retry schedule,
// against a receiver that always fails: both events end in the dead-letter queue with their
// payload, error and attempts; a replay while the receiver still fails keeps the dead letter; once
// the receiver is fixed a replay delivers the event once and removes its dead letter, and a
// replay of everything delivers the other one.
func TestDeadLetterRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := openStore(t, dir)
	backoff := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: dir, Store: db, AllowPrivateWebhooks: true,
		Tuning: &AsyncTuning{WebhookBackoff: backoff, WebhookPoll: 20 * time.Millisecond, WebhookTimeout: 5 * time.Second},
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()

	rc := newReceiver(t)
	ep := putEndpoint(t, db, "partner", rc.url("/partner"), boxoffice.EventOrderConfirmed)
	rc.setSecret("/partner", ep.Secret)
	var fixed atomic.Bool
	rc.setRespond(func(w http.ResponseWriter, r *http.Request, id string, attempt int) int {
		if fixed.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	e := &env{store: db}
	var events []*boxoffice.Event
	for _, id := range []string{"ord_a", "ord_b"} {
		events = append(events, e.appendEvent(t, boxoffice.EventOrderConfirmed, id, boxoffice.Order{ID: id,
			Status: boxoffice.OrderConfirmed, Buyer: boxoffice.Buyer{Email: "b@example.com"}}))
	}

	var dls []boxoffice.DeadLetter
	eventually(t, "both events are dead-lettered", func() bool {
		dls, err = a.ListDeadLetters(ctx, 0)
		return err == nil && len(dls) == 2
	})
	for i, dl := range dls {
		var m Message
		if err := json.Unmarshal(dl.Payload, &m); err != nil {
			t.Fatalf("dead letter %s: payload %s: %v", dl.ID, dl.Payload, err)
		}
		if _, err := strconv.ParseUint(dl.ID, 10, 64); err != nil {
			t.Errorf("dead letter id %q is not a stream sequence", dl.ID)
		}
		if dl.Consumer != WebhookConsumer(ep) || dl.EventID != events[i].ID || m.ID != events[i].ID ||
			dl.EventType != boxoffice.EventOrderConfirmed || dl.Attempts != len(backoff)+1 ||
			!strings.Contains(dl.Error, "500") || dl.FailedAt.IsZero() {
			t.Errorf("dead letter %d = %+v; want event %s for %s after %d attempts with the 500", i, dl, events[i].ID,
				WebhookConsumer(ep), len(backoff)+1)
		}
	}
	if got, _ := a.ListDeadLetters(ctx, 1); len(got) != 1 || got[0].ID != dls[0].ID {
		t.Errorf("ListDeadLetters(1) = %+v, want the oldest", got)
	}

	// Still failing: the replay says why and keeps the dead letter.
	err = a.ReplayDeadLetter(ctx, dls[0].ID)
	if !errors.Is(err, ErrReplayFailed) || !strings.Contains(err.Error(), "500") {
		t.Errorf("replay against a failing receiver: %v, want ErrReplayFailed with the 500", err)
	}
	if got, _ := a.ListDeadLetters(ctx, 0); len(got) != 2 {
		t.Errorf("after a failed replay %d dead letters, want 2", len(got))
	}

	fixed.Store(true)
	if err := a.ReplayDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got := rc.acceptedAt("/partner"); !slices.Equal(got, []string{events[0].ID}) {
		t.Errorf("after one replay the receiver accepted %v, want %s once", got, events[0].ID)
	}
	if got, _ := a.ListDeadLetters(ctx, 0); len(got) != 1 || got[0].ID != dls[1].ID {
		t.Errorf("after one replay the dead letters are %+v, want only %s", got, dls[1].ID)
	}
	for _, id := range []string{dls[0].ID, "0", "999", "nope", ""} {
		if err := a.ReplayDeadLetter(ctx, id); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			t.Errorf("replay of %q: %v, want not_found", id, err)
		}
	}

	n, err := a.ReplayAllDeadLetters(ctx)
	if err != nil || n != 1 {
		t.Fatalf("replay all = %d, %v; want 1", n, err)
	}
	if got, _ := a.ListDeadLetters(ctx, 0); len(got) != 0 {
		t.Errorf("dead letters left: %+v", got)
	}
	if got := rc.acceptedAt("/partner"); !slices.Equal(got, ids(events)) {
		t.Errorf("the receiver accepted %v, want each event once: %v", got, ids(events))
	}
	for _, ev := range events {
		if !inboxHas(t, db, WebhookConsumer(ep), ev.ID) {
			t.Errorf("inbox lacks %s", ev.ID)
		}
	}
	if n, err := a.ReplayAllDeadLetters(ctx); err != nil || n != 0 {
		t.Errorf("replay all of nothing = %d, %v", n, err)
	}
}

// TestConsumerDeadLettersUndecodableAtOnce publishes a message that is not an event on an email
// subject: the email consumer dead-letters it at the first attempt, and the events behind it are
// applied.
func TestConsumerDeadLettersUndecodableAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	msg := natsgo.NewMsg(SubjectPrefix + boxoffice.EventOrderConfirmed)
	msg.Data = []byte("not json")
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	ev := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_a", boxoffice.Order{ID: "ord_a", Buyer: boxoffice.Buyer{Email: "b@example.com"}})
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	em := &Email{Store: e.store, JS: e.js, Dir: filepath.Join(e.dir, "mail"), Backoff: testBackoff, Logger: testLogger(t)}
	stop := run(em.Run)
	defer stop()
	eventually(t, "the event behind the bad message is applied", func() bool { return inboxHas(t, e.store, EmailConsumer, ev.ID) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls, err := ListDeadLetters(ctx, e.js, 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v; want one", dls, err)
	}
	dl := dls[0]
	var payload string
	if dl.Consumer != EmailConsumer || dl.Attempts != 1 || !strings.Contains(dl.Error, "undecodable") ||
		json.Unmarshal(dl.Payload, &payload) != nil || payload != "not json" {
		t.Errorf("dead letter = %+v; want the email consumer's, at the first attempt, with the bytes", dl)
	}
}

// TestConsumersActOnlyOnTheStoresEvents: anyone who can publish to an external bus could forge an
// order.confirmed; the consumers check each message against the store's outbox, so a message with
// an id the store never committed, or a real id with other data (another buyer), sends no email
// and is dead-lettered at once, while the real event behind them is applied as the store has it.
func TestConsumersActOnlyOnTheStoresEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ev := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_a", boxoffice.Order{ID: "ord_a", Buyer: boxoffice.Buyer{Email: "b@example.com"},
		Tickets: []boxoffice.Ticket{{Code: "REAL-CODE"}}})
	forge := func(id string, o boxoffice.Order) {
		data, _ := json.Marshal(o)
		body, _ := json.Marshal(Message{ID: id, Type: boxoffice.EventOrderConfirmed, Subject: o.ID, Seq: 1, Position: ev.Position, CreatedAt: time.Now(), Data: data})
		msg := natsgo.NewMsg(SubjectPrefix + boxoffice.EventOrderConfirmed)
		msg.Data = body
		if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID("forged-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	forge("evt_06h1nsm8xwqzxmzfrvec4xgtpw", boxoffice.Order{ID: "ord_x", Buyer: boxoffice.Buyer{Email: "victim@example.com"}})
	forge(ev.ID, boxoffice.Order{ID: "ord_a", Buyer: boxoffice.Buyer{Email: "attacker@example.com"}})

	mail := filepath.Join(e.dir, "mail")
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Backoff: testBackoff, Logger: testLogger(t)}
	stop := run(em.Run)
	defer stop()
	eventually(t, "both forged messages are dead-lettered", func() bool {
		dls, err := ListDeadLetters(ctx, e.js, 0)
		return err == nil && len(dls) == 2
	})
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	eventually(t, "the real event is applied", func() bool { return inboxHas(t, e.store, EmailConsumer, ev.ID) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(mail)
	if err != nil || len(files) != 1 {
		t.Fatalf("mail dir: %v %v; want the real receipt only", files, err)
	}
	b, err := os.ReadFile(filepath.Join(mail, files[0].Name()))
	if err != nil || !strings.Contains(string(b), "b@example.com") || strings.Contains(string(b), "attacker") || !strings.Contains(string(b), "REAL-CODE") {
		t.Fatalf("receipt %s (%v): want the store's buyer and codes", b, err)
	}
	dls, _ := ListDeadLetters(ctx, e.js, 0)
	for _, dl := range dls {
		if dl.Consumer != EmailConsumer || dl.Attempts != 1 || !strings.Contains(dl.Error, "store") {
			t.Errorf("dead letter %+v: want the email consumer's, at once, saying why", dl)
		}
	}
}
