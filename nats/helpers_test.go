package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
	"boxoffice/internal/checkfor"
	"boxoffice/sqlite"
)

// env is a real embedded JetStream server with the events stream and a real SQLite store.
type env struct {
	store boxoffice.Store
	js    jetstream.JetStream
	st    jetstream.Stream
	dir   string
	// srv is the embedded server, for a test that plays a second server with a connection of
	// its own (connect).
	srv *Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv over store, or over a new SQLite store when store is nil; store is closed
// when the test ends.
func newEnvWith(t *testing.T, store boxoffice.Store) *env {
	t.Helper()
	dir := t.TempDir()
	srv, err := StartEmbedded(filepath.Join(dir, "nats"), EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, st: st, dir: dir, srv: srv}
	if store == nil {
		db, err := sqlite.Open(ctx, filepath.Join(dir, "boxoffice.db"))
		if err != nil {
			t.Fatal(err)
		}
		store = db
	}
	t.Cleanup(func() { _ = store.Close() })
	e.store = store
	return e
}

// openStore opens a SQLite store in dir, closed when the test ends.
func openStore(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "boxoffice.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// connect opens another connection to the embedded server, as another boxoffice server would
// have, closed when the test ends unless the test closes it first.
func (e *env) connect(t *testing.T) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// appendEvent writes one event to the outbox, as the service would.
func (e *env) appendEvent(t *testing.T, typ, subject string, data any) *boxoffice.Event {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ev := &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, now), Type: typ, CreatedAt: now, Data: b, Subject: subject}
	if err := e.store.Update(context.Background(), func(tx boxoffice.Tx) error { return tx.AppendEvent(context.Background(), ev) }); err != nil {
		t.Fatal(err)
	}
	return ev
}

// streamMessages reads every message of the stream, in order.
func (e *env) streamMessages(t *testing.T) []Message {
	t.Helper()
	ctx := context.Background()
	info, err := e.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []Message
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := e.st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		var m Message
		if err := json.Unmarshal(raw.Data, &m); err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get(jetstream.MsgIDHeader); got != m.ID {
			t.Errorf("message %d has Nats-Msg-Id %q, want the event id %q", seq, got, m.ID)
		}
		out = append(out, m)
	}
	return out
}

// checkpointOfLast is the position of the newest event in the outbox.
func (e *env) checkpointOfLast(t *testing.T) int64 {
	t.Helper()
	var last int64
	if err := e.store.View(context.Background(), func(tx boxoffice.Tx) error {
		evs, err := tx.ListEvents(context.Background(), 0, 100_000)
		if len(evs) > 0 {
			last = evs[len(evs)-1].Position
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return last
}

func (e *env) checkpoint(t *testing.T) int64 {
	t.Helper()
	var pos int64
	if err := e.store.View(context.Background(), func(tx boxoffice.Tx) error {
		var err error
		pos, err = tx.RelayCheckpoint(context.Background(), DefaultRelayName)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return pos
}

// eventually polls cond until it holds, failing the test after a bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	checkfor.Until(t, 20*time.Second, 10*time.Millisecond, what, cond)
}

// run starts fn in a goroutine and returns a stop that cancels it and waits for its result.
func run(fn func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg  sync.WaitGroup
		err error
	)
	wg.Add(1)
	go func() { defer wg.Done(); err = fn(ctx) }()
	return func() error { cancel(); wg.Wait(); return err }
}

var errCrash = fmt.Errorf("simulated crash")
