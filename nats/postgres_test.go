package nats

import (
	"context"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRelayPostgresInFlightGap runs the relay on PostgreSQL while a transaction that took a lower
// position is still open: the relay publishes the later event, keeps its checkpoint below the open
// one, and publishes that one too when it commits — nothing is skipped.
func TestRelayPostgresInFlightGap(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, db)

	appended := make(chan *boxoffice.Event, 1)
	release := make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- db.Update(ctx, func(tx boxoffice.Tx) error {
			ev := &boxoffice.Event{ID: "evt_slow", Type: boxoffice.EventHoldCreated, Subject: "hld_slow", CreatedAt: time.Now(), Data: []byte(`{}`)}
			if err := tx.AppendEvent(ctx, ev); err != nil {
				return err
			}
			appended <- ev
			<-release
			return nil
		})
	}()
	slow := <-appended
	fast := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_fast", map[string]int{})
	if fast.Position <= slow.Position {
		t.Fatalf("positions %d then %d: the test needs the in-flight one lower", slow.Position, fast.Position)
	}

	r := &Relay{Store: db, JS: e.js, GapWait: time.Hour}
	stop := run(r.Run)
	defer stop()
	eventually(t, "the committed event is published", func() bool { return len(e.streamMessages(t)) == 1 })
	time.Sleep(100 * time.Millisecond) // some rounds with the gap open
	if cp := e.checkpoint(t); cp >= slow.Position {
		t.Fatalf("checkpoint %d passed the in-flight position %d", cp, slow.Position)
	}
	close(release)
	if err := <-txDone; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the late commit is published", func() bool { return len(e.streamMessages(t)) == 2 })
	eventually(t, "the checkpoint reaches the last event", func() bool { return e.checkpoint(t) == fast.Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.streamMessages(t)
	if msgs[0].ID != fast.ID || msgs[1].ID != slow.ID {
		t.Errorf("stream order %s, %s; want commit order %s, %s", msgs[0].ID, msgs[1].ID, fast.ID, slow.ID)
	}
}

// TestStartAsyncExternal runs the async side against a server reached by URL, as --nats
// nats://… does, and sees a receipt written.
func TestStartAsyncExternal(t *testing.T) {
	dir := t.TempDir()
	srv, err := StartEmbedded(dir+"/ext", EmbeddedOptions{Listen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.ClientURL() == "" {
		t.Fatal("a listening server has no client URL")
	}
	e := newEnv(t)
	a, err := StartAsync(AsyncConfig{NATS: srv.ClientURL(), DataDir: dir, Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ev := e.appendEvent(t, boxoffice.EventOrderConfirmed, "ord_x", boxoffice.Order{ID: "ord_x", Buyer: boxoffice.Buyer{Email: "x@example.com"}})
	eventually(t, "the receipt is written", func() bool { return len(mailFiles(t, dir+"/mail")) == 1 })
	if got := mailFiles(t, dir+"/mail")[0]; got != dir+"/mail/"+ev.ID+".eml" {
		t.Errorf("receipt at %s", got)
	}
}
