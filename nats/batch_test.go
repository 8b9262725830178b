package nats

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

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
