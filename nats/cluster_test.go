package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
	"boxoffice/nats/natstest"
)

// clusterWait bounds each wait of the cluster test: a leader election after a SIGKILL takes
// seconds, and an event whose publish or ack the dead node swallowed is retried only after the
// relay's ack timeout (30 s) or the consumer's AckWait (DefaultAckWait), so a minute and a half is
// a wide bound, never a measure.
const clusterWait = 90 * time.Second

// TestAsyncSurvivesNodeLoss runs the relay and the email consumer, as StartAsync does, against a
// 3-node JetStream cluster with the events stream at 3 replicas, while a few hundred order events
// go into the outbox. The stream's leader is SIGKILLed mid-stream together with the relay (after
// JetStream acked a round, before the relay's checkpoint), and a new relay publishes that round
// again; events keep coming with the node down; the node comes back and catches up, and then the
// new leader is SIGKILLed under the running relay and consumer, with events still coming. In the
// end every event is in the stream exactly once (the new leader dropped the republished round by
// its Nats-Msg-Ids), every event has exactly one .eml file and an inbox row, and the restarted
// nodes hold current replicas.
func TestAsyncSurvivesNodeLoss(t *testing.T) {
	cluster := natstest.Start(t, 3)
	dir := t.TempDir()
	mail := filepath.Join(dir, "mail")

	nc, err := Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	st, err := EnsureStream(ctx, js, StreamOptions{Replicas: 3})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dir)
	e := &env{store: db, js: js, st: st, dir: dir}

	// Warnings (failed rounds, failed fetches) show what the failovers did when the test fails.
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The first relay dies with the stream's leader (one machine hosting both, say): its hook
	// stops it after the acks of a round and before the checkpoint, hands the moment to the test
	// to kill the leader, and then ends Run as a crash would. The next relay publishes that round
	// again, to the new leader, which must know the ids.
	crashAt := make(chan int64, 1)
	resume := make(chan struct{})
	var resumeOnce sync.Once
	release := func() { resumeOnce.Do(func() { close(resume) }) }
	crashed := false // the hook's own: only the first relay's goroutine touches it
	crashing := &Relay{Store: db, JS: js, GapWait: 0, Logger: log, beforeCheckpoint: func(pos int64) error {
		if crashed || pos < 20 {
			return nil
		}
		crashed = true
		crashAt <- pos
		<-resume
		return errCrash
	}}
	email := &Email{Store: db, JS: js, Dir: mail, Logger: log}
	stopCrashing := run(crashing.Run)
	stopEmail := run(email.Run)
	var relay *Relay // the relay started after the crash
	var stopRelay func() error
	stopped := false
	stopAll := func() {
		if stopped {
			return
		}
		stopped = true
		release() // should the test fail before the kill, the hook may be waiting for it
		if err := stopCrashing(); err != nil && !errors.Is(err, errCrash) {
			t.Errorf("first relay: %v", err)
		}
		if stopRelay != nil {
			if err := stopRelay(); err != nil {
				t.Errorf("relay: %v", err)
			}
		}
		if err := stopEmail(); err != nil {
			t.Errorf("email: %v", err)
		}
	}
	// Before the cleanups close the store and the cluster, and before the log's test ends.
	defer stopAll()

	streamMsgs := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := st.Info(ctx)
		if err != nil {
			return 0 // no leader yet: the caller polls
		}
		return info.State.Msgs
	}
	// leader returns the node that leads the stream, waiting out an election.
	leader := func() int {
		t.Helper()
		deadline := time.Now().Add(clusterWait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			info, err := st.Info(ctx)
			cancel()
			if err == nil && info.Cluster != nil {
				if i := cluster.Index(info.Cluster.Leader); i >= 0 {
					return i
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the stream has no leader after %v (last error: %v)", clusterWait, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// waitFor polls cond until it holds, failing the test after clusterWait.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(clusterWait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting until %s", clusterWait, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Orders are confirmed, and every third one is cancelled right after: both kinds of email,
	// and two events for one subject.
	const orders = 240
	var events []*boxoffice.Event
	appendOrders := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			o := boxoffice.Order{
				ID: fmt.Sprintf("ord_%04d", i), Status: boxoffice.OrderConfirmed, ShowID: "show1", TierID: "ga",
				Quantity: 1, Amount: boxoffice.Money{Amount: 2500, Currency: "EUR"},
				Buyer: boxoffice.Buyer{Email: "b@example.com"}, Tickets: []boxoffice.Ticket{{Code: fmt.Sprintf("T%04d", i)}},
			}
			events = append(events, e.appendEvent(t, boxoffice.EventOrderConfirmed, o.ID, o))
			if i%3 == 0 {
				o.Status = boxoffice.OrderCancelled
				events = append(events, e.appendEvent(t, boxoffice.EventOrderCancelled, o.ID, o))
			}
			// Spread the appends over the relay's rounds, so that a kill lands while it publishes.
			time.Sleep(2 * time.Millisecond)
		}
	}

	// Phase 1: events flow; after a round of acks, kill the stream's leader and the relay with
	// it, and start a relay again (as a restart of the service would) while more events come.
	appendOrders(0, 40)
	var crashPos int64
	select {
	case crashPos = <-crashAt:
	case <-time.After(clusterWait):
		t.Fatalf("the relay did not reach a checkpoint past position 20 in %v", clusterWait)
	}
	first := leader()
	cluster.Kill(first)
	release()
	if err := stopCrashing(); !errors.Is(err, errCrash) {
		t.Fatalf("the first relay returned %v, want the simulated crash", err)
	}
	t.Logf("killed the stream leader %s and the relay before its checkpoint at position %d", cluster.Name(first), crashPos)
	relay = &Relay{Store: db, JS: js, GapWait: 0, Logger: log}
	stopRelay = run(relay.Run)
	appendOrders(40, 120)

	// Phase 2: with one node down the stream still takes events; bring the node back, let it
	// catch up, and kill whichever node leads now, with events still coming.
	before := len(events)
	waitFor("the stream takes events with a node down", func() bool { return streamMsgs() >= uint64(before) })
	cluster.Restart(first)
	second := leader()
	cluster.Kill(second)
	t.Logf("restarted %s, killed the stream leader %s with %d events in the outbox",
		cluster.Name(first), cluster.Name(second), len(events))
	appendOrders(120, orders)

	// Phase 3: everything arrives, once.
	last := events[len(events)-1].Position
	waitFor("the relay's checkpoint reaches the last event", func() bool { return e.checkpoint(t) == last })
	waitFor("the email consumer has acked every event", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Looked up each time: right after the kill, the API answers only once a new leader
		// for the stream and consumer is elected, so a lookup may time out.
		cons, err := js.Consumer(ctx, StreamName, EmailConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && len(mailFiles(t, mail)) >= len(events)
	})
	stopAll()
	published, dup := relay.Stats()
	written, skipped := email.Stats()
	t.Logf("%d events: the second relay published %d (%d duplicates dropped), email wrote %d (%d redeliveries skipped)",
		len(events), published, dup, written, skipped)
	if dup == 0 {
		t.Error("the restarted relay published no duplicate: the round acked before the crash was not published again")
	}

	// The stream: each event once, under its own Nats-Msg-Id.
	got := e.streamMessages(t)
	seen := make(map[string]int, len(got))
	for _, m := range got {
		seen[m.ID]++
	}
	for _, ev := range events {
		if seen[ev.ID] != 1 {
			t.Errorf("event %s (position %d) is %d times in the stream, want once", ev.ID, ev.Position, seen[ev.ID])
		}
		delete(seen, ev.ID)
	}
	for id := range seen {
		t.Errorf("the stream has %s, which is no event of the outbox", id)
	}
	if len(got) != len(events) {
		t.Errorf("the stream has %d messages, want %d (one per event)", len(got), len(events))
	}
	// Each order's events are in the stream in their order, also across the leader elections
	// (the relay publishes a subject's next event only after the previous one's ack), because
	// the consumers apply stream order.
	lastSeq := map[string]int{}
	for _, m := range got {
		if m.Seq < lastSeq[m.Subject] {
			t.Errorf("order %s: event seq %d is in the stream after seq %d", m.Subject, m.Seq, lastSeq[m.Subject])
		}
		lastSeq[m.Subject] = max(lastSeq[m.Subject], m.Seq)
	}

	// The effects: one .eml file and one inbox row per event, nothing half-written.
	files := mailFiles(t, mail)
	if len(files) != len(events) {
		t.Errorf("%d .eml files, want %d (one per event)", len(files), len(events))
	}
	for _, ev := range events {
		b, err := os.ReadFile(filepath.Join(mail, ev.ID+".eml"))
		if err != nil {
			t.Errorf("no email for %s %s: %v", ev.Type, ev.ID, err)
			continue
		}
		if want := "X-Boxoffice-Event: " + ev.Type + " " + ev.ID; !strings.Contains(string(b), want) {
			t.Errorf("email %s lacks %q", ev.ID, want)
		}
		var has bool
		if err := db.View(context.Background(), func(tx boxoffice.Tx) error {
			var err error
			has, err = tx.InboxHas(context.Background(), EmailConsumer, ev.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !has {
			t.Errorf("the email inbox lacks %s", ev.ID)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(mail, ".tmp-*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}

	// The second node comes back too and catches up: every replica of the stream is current.
	cluster.Restart(second)
	waitFor("every replica of the stream is current", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return info.State.Msgs == uint64(len(events))
	})
}
