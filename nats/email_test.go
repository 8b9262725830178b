package nats

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

func mailFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestEmailExactlyOnceUnderRedelivery crashes the consumer after its inbox commit and before the
// ack (so JetStream redelivers), publishes an event a second time under another message id (a
// duplicate the window did not catch), and restarts the consumer: there is one .eml per event.
func TestEmailExactlyOnceUnderRedelivery(t *testing.T) {
	e := newEnv(t)
	mail := filepath.Join(e.dir, "mail")
	var confirmed []*boxoffice.Event
	for i := 0; i < 6; i++ {
		o := boxoffice.Order{
			ID: "ord_" + string(rune('a'+i)), Status: boxoffice.OrderConfirmed, ShowID: "show1", TierID: "ga",
			Quantity: 2, Amount: boxoffice.Money{Amount: 5000, Currency: "EUR"}, Buyer: boxoffice.Buyer{Email: "b@example.com"},
			Tickets: []boxoffice.Ticket{{Code: "T1"}, {Code: "T2"}},
		}
		e.appendEvent(t, boxoffice.EventHoldCreated, "hld_"+o.ID, nil) // not for email
		confirmed = append(confirmed, e.appendEvent(t, boxoffice.EventOrderConfirmed, o.ID, o))
	}
	cancelled := e.appendEvent(t, boxoffice.EventOrderCancelled, "ord_a", boxoffice.Order{ID: "ord_a", Status: boxoffice.OrderCancelled})
	relay := &Relay{Store: e.store, JS: e.js}
	stopRelay := run(relay.Run)
	defer stopRelay()

	// First run: crash before acking the third email.
	var n atomic.Int32
	em := &Email{Store: e.store, JS: e.js, Dir: mail, AckWait: 300 * time.Millisecond, beforeAck: func(*Message) error {
		if n.Add(1) == 3 {
			return errCrash
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := em.Run(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("email returned %v, want the simulated crash", err)
	}

	// A duplicate that escaped the dedup window: the same event again under a new message id.
	body, _ := json.Marshal(Message{ID: confirmed[0].ID, Type: confirmed[0].Type, Subject: confirmed[0].Subject,
		Seq: confirmed[0].Seq, Position: confirmed[0].Position, CreatedAt: confirmed[0].CreatedAt, Data: confirmed[0].Data})
	msg := natsgo.NewMsg(SubjectPrefix + boxoffice.EventOrderConfirmed)
	msg.Data = body
	if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID("redelivery-"+confirmed[0].ID)); err != nil {
		t.Fatal(err)
	}

	em = &Email{Store: e.store, JS: e.js, Dir: mail, AckWait: 300 * time.Millisecond}
	stop := run(em.Run)
	defer stop()
	want := len(confirmed) + 1
	cons, err := e.js.Consumer(ctx, StreamName, EmailConsumer)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every email message is acked", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && len(mailFiles(t, mail)) == want
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The crashed one comes back (its inbox row committed) and so does the duplicate.
	if _, skipped := em.Stats(); skipped < 2 {
		t.Errorf("the restarted consumer skipped %d redelivered events, want at least 2", skipped)
	}

	files := mailFiles(t, mail)
	if len(files) != want {
		t.Fatalf("%d .eml files, want %d: %v", len(files), want, files)
	}
	for _, ev := range append(confirmed, cancelled) {
		b, err := os.ReadFile(filepath.Join(mail, ev.ID+".eml"))
		if err != nil {
			t.Fatalf("no email for %s: %v", ev.ID, err)
		}
		if ev.Type == boxoffice.EventOrderConfirmed && !strings.Contains(string(b), "T2") {
			t.Errorf("receipt %s lacks the tickets:\n%s", ev.ID, b)
		}
		if ev.Type == boxoffice.EventOrderCancelled && !strings.Contains(string(b), "cancelled") {
			t.Errorf("notice %s is no cancellation:\n%s", ev.ID, b)
		}
		var has bool
		_ = e.store.View(ctx, func(tx boxoffice.Tx) error {
			has, err = tx.InboxHas(ctx, EmailConsumer, ev.ID)
			return err
		})
		if !has {
			t.Errorf("inbox lacks %s", ev.ID)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(mail, ".tmp-*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}
