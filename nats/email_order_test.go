package nats

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
)

// orderOfEmails appends, in stream order, ord_a's receipt, ord_a's cancellation and the receipts
// of ord_b and ord_c, and returns them in that order.
func (e *env) orderOfEmails(t *testing.T) []*boxoffice.Event {
	t.Helper()
	order := func(id string, status boxoffice.OrderStatus) boxoffice.Order {
		return boxoffice.Order{ID: id, Status: status, ShowID: "show1", TierID: "ga", Quantity: 1,
			Amount: boxoffice.Money{Amount: 2500, Currency: "EUR"}, Buyer: boxoffice.Buyer{Email: "b@example.com"},
			Tickets: []boxoffice.Ticket{{Code: "T-" + id}}}
	}
	return []*boxoffice.Event{
		e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_a", order("ord_a", boxoffice.OrderConfirmed)),
		e.appendEvent(t, boxoffice.EventOrderCancelled, "ord_a", order("ord_a", boxoffice.OrderCancelled)),
		e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_b", order("ord_b", boxoffice.OrderConfirmed)),
		e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_c", order("ord_c", boxoffice.OrderConfirmed)),
	}
}

// TestEmailFailingReceiptDoesNotBlock fails ord_a's receipt until the receipts behind it have gone
// out: they do go out meanwhile, ord_a's cancellation notice, which comes before them in the
// stream, does not (it waits for its order's receipt), and once ord_a's receipt goes through the
// notice follows it. Each email is written once.
func TestEmailFailingReceiptDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	evs := e.orderOfEmails(t)
	receiptA, cancelA, receiptB, receiptC := evs[0], evs[1], evs[2], evs[3]
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	var fixed atomic.Bool
	var mu sync.Mutex
	var applied []string // event ids in the order their inbox rows committed
	var waited atomic.Int32
	mail := filepath.Join(e.dir, "mail")
	backoff := slices.Repeat([]time.Duration{30 * time.Millisecond}, 1000) // never dead-letters here
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Backoff: backoff, Logger: testLogger(t),
		beforeWrite: func(ctx context.Context, m *Message) error {
			if m.ID == receiptA.ID && !fixed.Load() {
				return errors.New("mailbox over quota")
			}
			return nil
		},
		beforeAck: func(m *Message) error {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, m.ID)
			return nil
		},
	}
	// The cancellation is refused while it waits; count it to show the wait happened.
	wrapped := em.runner()
	inner := wrapped.handle
	wrapped.handle = func(ctx context.Context, m *Message) error {
		err := inner(ctx, m)
		if _, ok := errors.AsType[*WaitingForReceiptError](err); ok {
			waited.Add(1)
		}
		return err
	}
	innerBatch := wrapped.batch
	wrapped.batch = func(ctx context.Context, ms []*Message) []error {
		errs := innerBatch(ctx, ms)
		for _, err := range errs {
			if _, ok := errors.AsType[*WaitingForReceiptError](err); ok {
				waited.Add(1)
			}
		}
		return errs
	}
	if err := os.MkdirAll(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- wrapped.loop(ctx, em.consumer) }()

	eventually(t, "the receipts behind the failing one go out", func() bool {
		return inboxHas(t, e.store, EmailConsumer, receiptB.ID) && inboxHas(t, e.store, EmailConsumer, receiptC.ID)
	})
	if inboxHas(t, e.store, EmailConsumer, cancelA.ID) {
		t.Fatal("ord_a's cancellation notice went out before its receipt")
	}
	if _, err := os.Stat(filepath.Join(mail, cancelA.ID+".eml")); err == nil {
		t.Fatal("ord_a's cancellation notice was written before its receipt")
	}
	eventually(t, "the cancellation has waited for the receipt", func() bool { return waited.Load() > 0 })
	fixed.Store(true)
	eventually(t, "ord_a's receipt and notice go out", func() bool {
		return inboxHas(t, e.store, EmailConsumer, cancelA.ID)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	pos := func(id string) int { return slices.Index(applied, id) }
	if len(applied) != 4 || pos(receiptA.ID) < 0 || pos(cancelA.ID) < pos(receiptA.ID) ||
		pos(receiptB.ID) > pos(receiptA.ID) || pos(receiptC.ID) > pos(receiptA.ID) {
		t.Fatalf("emails applied in the order %v; want ord_b's and ord_c's receipts before ord_a's, "+
			"and ord_a's notice after its receipt (a=%s, cancel=%s)", applied, receiptA.ID, cancelA.ID)
	}
	if files := mailFiles(t, mail); len(files) != 4 {
		t.Fatalf("%d emails written, want 4: %v", len(files), files)
	}
}

// TestEmailCancellationFollowsADeadLetteredReceipt: a receipt refused for good is dead-lettered at
// once; its order's cancellation notice then waits out its own schedule and is dead-lettered too,
// saying why, with no email written. Replayed out of order, the notice is refused again; the
// receipt first, then the notice, both go out.
func TestEmailCancellationFollowsADeadLetteredReceipt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	evs := e.orderOfEmails(t)
	receiptA, cancelA := evs[0], evs[1]
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	var fixed atomic.Bool
	mail := filepath.Join(e.dir, "mail")
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Backoff: testBackoff, Logger: testLogger(t),
		beforeWrite: func(ctx context.Context, m *Message) error {
			if m.ID == receiptA.ID && !fixed.Load() {
				return Permanent(errors.New("550 no such mailbox"))
			}
			return nil
		},
	}
	stop := run(em.Run)
	defer stop()
	eventually(t, "ord_a's receipt and notice are dead-lettered, the others sent", func() bool {
		dls, err := ListDeadLetters(ctx, e.js, 0)
		return err == nil && len(dls) == 2 && inboxHas(t, e.store, EmailConsumer, evs[3].ID)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls, _ := ListDeadLetters(ctx, e.js, 0)
	byEvent := map[string]boxoffice.DeadLetter{}
	for _, dl := range dls {
		byEvent[dl.EventID] = dl
	}
	if dl, ok := byEvent[cancelA.ID]; !ok || !strings.Contains(dl.Error, "waiting for the receipt of order ord_a") ||
		dl.Attempts != len(testBackoff)+1 {
		t.Fatalf("dead letters %+v; want ord_a's notice after its whole schedule, waiting for the receipt", dls)
	}
	if _, err := os.Stat(filepath.Join(mail, cancelA.ID+".eml")); err == nil {
		t.Fatal("the notice was written although its receipt never went out")
	}

	replay := func(ev *boxoffice.Event) error {
		var m Message
		if err := json.Unmarshal(byEvent[ev.ID].Payload, &m); err != nil {
			t.Fatal(err)
		}
		_, err := em.runner().apply(ctx, &m)
		return err
	}
	fixed.Store(true)
	if _, ok := errors.AsType[*WaitingForReceiptError](replay(cancelA)); !ok {
		t.Fatal("the notice replayed before its receipt was not refused")
	}
	if err := replay(receiptA); err != nil {
		t.Fatalf("replay of the receipt: %v", err)
	}
	if err := replay(cancelA); err != nil {
		t.Fatalf("replay of the notice after its receipt: %v", err)
	}
	if files := mailFiles(t, mail); len(files) != 4 {
		t.Fatalf("%d emails written, want 4: %v", len(files), files)
	}
}

// TestEmailWorkersSendSideBySide: with three workers, three emails are being written at the same
// moment (each write waits until the three have started), and every receipt is still written once.
func TestEmailWorkersSendSideBySide(t *testing.T) {
	e := newEnv(t)
	evs := e.confirmOrders(t, 9)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	const workers = 3
	var inWrite, most atomic.Int32
	arrived := make(chan struct{}, 100)
	release := make(chan struct{})
	var once sync.Once
	mail := filepath.Join(e.dir, "mail")
	// One email a batch, so that each worker takes one and the three are written side by side.
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Workers: workers, batch: 1, Backoff: testBackoff, Logger: testLogger(t),
		beforeWrite: func(ctx context.Context, m *Message) error {
			n := inWrite.Add(1)
			defer inWrite.Add(-1)
			for {
				if cur := most.Load(); n <= cur || most.CompareAndSwap(cur, n) {
					break
				}
			}
			arrived <- struct{}{}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
	go func() {
		for range workers {
			select {
			case <-arrived:
			case <-time.After(20 * time.Second):
				return // the test below fails on the count
			}
		}
		once.Do(func() { close(release) })
	}()
	stop := run(em.Run)
	defer stop()
	eventually(t, "every receipt is written", func() bool { return len(mailFiles(t, mail)) == len(evs) })
	// A receipt's file is written before its inbox row commits: stopping at once could cancel a
	// worker between the two (its message is then simply delivered again).
	eventually(t, "every receipt is in the inbox", func() bool { return allInInbox(t, e.store, evs) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := most.Load(); got != workers {
		t.Fatalf("at most %d emails were being written at once, want %d", got, workers)
	}
	if written, _ := em.Stats(); written != int64(len(evs)) {
		t.Errorf("%d emails written, want %d", written, len(evs))
	}
}
