package nats

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// TestEmailWritesInBatches: receipts waiting in the stream are written several at a time (one
// inbox transaction for many), and still once each. A batch also holds the failures of its own
// emails apart: the receipt failing its first write is retried alone, and one already in the
// inbox (a redelivery) is skipped, not written again.
func TestEmailWritesInBatches(t *testing.T) {
	e := newEnv(t)
	evs := e.confirmOrders(t, 40)
	// One of them was applied before (a crash after its inbox commit, before its ack).
	dup := evs[7]
	if err := e.store.Update(context.Background(), func(tx boxoffice.Tx) error {
		return tx.InsertInboxEvent(context.Background(), EmailConsumer, dup.ID, dup.CreatedAt)
	}); err != nil {
		t.Fatal(err)
	}
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	eventually(t, "every event in the stream", func() bool {
		info, err := e.st.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(len(evs))
	})

	flaky := evs[3]
	var failedOnce atomic.Bool
	mail := filepath.Join(e.dir, "mail")
	if err := os.MkdirAll(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]int{}
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Workers: 1, Backoff: testBackoff, Logger: testLogger(t),
		beforeWrite: func(ctx context.Context, m *Message) error {
			if m.ID == dup.ID {
				t.Errorf("the email of %s, in the inbox already, was written again", m.ID)
			}
			if m.ID == flaky.ID && failedOnce.CompareAndSwap(false, true) {
				return errors.New("disk hiccup")
			}
			return nil
		},
		beforeAck: func(m *Message) error {
			mu.Lock()
			acked[m.ID]++
			mu.Unlock()
			return nil
		},
	}
	r := em.runner()
	var batches, largest atomic.Int32
	inner := r.batch
	if inner == nil {
		t.Fatal("the file-writing email consumer does not batch")
	}
	r.batch = func(ctx context.Context, ms []*Message) []error {
		batches.Add(1)
		if n := int32(len(ms)); n > largest.Load() {
			largest.Store(n)
		}
		return inner(ctx, ms)
	}
	stop := run(func(ctx context.Context) error { return r.loop(ctx, em.consumer) })
	defer stop()
	eventually(t, "every receipt in the inbox", func() bool { return allInInbox(t, e.store, evs) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if files := mailFiles(t, mail); len(files) != len(evs)-1 {
		t.Fatalf("%d files for %d receipts to write (one was applied before)", len(files), len(evs)-1)
	}
	if !failedOnce.Load() {
		t.Fatal("the flaky receipt never failed: the test did not test its retry")
	}
	if largest.Load() < 2 || int(batches.Load()) >= len(evs)-1 {
		t.Fatalf("%d batches, the largest of %d emails, for %d emails: not batched", batches.Load(), largest.Load(), len(evs)-1)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range evs {
		if ev.ID != dup.ID && acked[ev.ID] != 1 {
			t.Fatalf("receipt %s applied and acked %d times, want once", ev.ID, acked[ev.ID])
		}
	}
}

// TestEmailBatchAppliesARepeatOnce: an event published twice (the second copy past the stream's
// duplicate window) and fetched in one batch with its original is written once; the repeat is
// acked as skipped.
func TestEmailBatchAppliesARepeatOnce(t *testing.T) {
	e := newEnv(t)
	evs := e.confirmOrders(t, 3)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()
	eventually(t, "every event in the stream", func() bool {
		info, err := e.st.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(len(evs))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	again := evs[0]
	body, err := json.Marshal(Message{ID: again.ID, Type: again.Type, Subject: again.Subject,
		Seq: again.Seq, Position: again.Position, CreatedAt: again.CreatedAt, Data: again.Data})
	if err != nil {
		t.Fatal(err)
	}
	msg := natsgo.NewMsg(SubjectPrefix + again.Type)
	msg.Data = body
	if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID("again-"+again.ID)); err != nil {
		t.Fatal(err)
	}

	mail := filepath.Join(e.dir, "mail")
	if err := os.MkdirAll(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	written, acked := map[string]int{}, map[string]int{}
	em := &Email{Store: e.store, JS: e.js, Dir: mail, Workers: 1, Backoff: testBackoff, Logger: testLogger(t),
		beforeWrite: func(ctx context.Context, m *Message) error {
			mu.Lock()
			written[m.ID]++
			mu.Unlock()
			return nil
		},
		beforeAck: func(m *Message) error {
			mu.Lock()
			acked[m.ID]++
			mu.Unlock()
			return nil
		},
	}
	// All four are in the stream before the consumer starts, so its first pull takes them
	// together; were they split, the inbox would skip the repeat, with the same outcome.
	stop := run(em.Run)
	defer stop()
	eventually(t, "both copies acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked[again.ID] == 2 && acked[evs[1].ID] == 1 && acked[evs[2].ID] == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if written[again.ID] != 1 {
		t.Fatalf("the repeated event's email was written %d times, want once", written[again.ID])
	}
	if _, skipped := em.Stats(); skipped != 1 {
		t.Fatalf("%d skipped, want the repeat", skipped)
	}
}
