package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
)

// TestRelayPublishesEachEventOnceAcrossCrashes kills the relay between the acks of a round and
// its checkpoint, several times, while events keep coming; every event ends in the stream once,
// in outbox order, and the republished ones were dropped by the duplicate window.
func TestRelayPublishesEachEventOnceAcrossCrashes(t *testing.T) {
	e := newEnv(t)
	var want []*boxoffice.Event
	var mu sync.Mutex
	add := func(n int) {
		for i := 0; i < n; i++ {
			ev := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_"+string(rune('a'+i%5)), map[string]int{"i": i})
			mu.Lock()
			want = append(want, ev)
			mu.Unlock()
		}
	}
	add(40)

	var totalDup int64
	for crash := 0; crash < 3; crash++ {
		var rounds atomic.Int32
		r := &Relay{Store: e.store, JS: e.js, Batch: 7, beforeCheckpoint: func(int64) error {
			if rounds.Add(1) == 3 {
				return errCrash
			}
			return nil
		}}
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background()) }()
		add(10) // events keep coming while the relay runs and dies
		select {
		case err := <-done:
			if !errors.Is(err, errCrash) {
				t.Fatalf("relay returned %v, want the simulated crash", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("relay did not reach its crash")
		}
		_, dup := r.Stats()
		totalDup += dup
	}

	r := &Relay{Store: e.store, JS: e.js, Batch: 7}
	stop := run(r.Run)
	add(10)
	last := want[len(want)-1].Position
	eventually(t, "the checkpoint reaches the last event", func() bool { return e.checkpoint(t) == last })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, dup := r.Stats()
	totalDup += dup
	if totalDup == 0 {
		t.Error("no publish was a duplicate: the crashes did not make the relay publish again")
	}

	got := e.streamMessages(t)
	if len(got) != len(want) {
		t.Fatalf("stream has %d messages, want %d (one per event)", len(got), len(want))
	}
	for i, m := range got {
		w := want[i]
		if m.ID != w.ID || m.Position != w.Position || m.Subject != w.Subject || m.Seq != w.Seq || m.Type != w.Type {
			t.Errorf("message %d = %+v, want event %+v", i, m, w)
		}
	}
}

// hidingStore hides chosen event positions from ListEvents, as PostgreSQL hides the row of a
// transaction that took its position but has not committed yet.
type hidingStore struct {
	boxoffice.Store
	mu     sync.Mutex
	hidden map[int64]bool
}

func (h *hidingStore) setHidden(pos int64, v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hidden[pos] = v
}

func (h *hidingStore) View(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	return h.Store.View(ctx, func(tx boxoffice.Tx) error { return fn(hidingTx{tx, h}) })
}

type hidingTx struct {
	boxoffice.Tx
	h *hidingStore
}

func (t hidingTx) ListEvents(ctx context.Context, after int64, limit int) ([]*boxoffice.Event, error) {
	evs, err := t.Tx.ListEvents(ctx, after, limit)
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	out := evs[:0]
	for _, e := range evs {
		if !t.h.hidden[e.Position] {
			out = append(out, e)
		}
	}
	return out, err
}

// TestRelayWaitsOnPositionGaps: an event that appears late below positions already published (an
// in-flight PostgreSQL transaction) is still published, and the checkpoint never passes it until
// then; a gap older than GapWait is taken as final.
func TestRelayWaitsOnPositionGaps(t *testing.T) {
	e := newEnv(t)
	var evs []*boxoffice.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, e.appendEvent(t, boxoffice.EventHoldCreated, "hld_x"+string(rune('a'+i)), i))
	}
	hs := &hidingStore{Store: e.store, hidden: map[int64]bool{evs[4].Position: true}}
	r := &Relay{Store: hs, JS: e.js, GapWait: time.Hour, Batch: 3}
	stop := run(r.Run)
	eventually(t, "the events past the gap are published", func() bool { return len(e.streamMessages(t)) == 9 })
	// A few more rounds: the checkpoint must stay just below the gap.
	time.Sleep(100 * time.Millisecond)
	if cp := e.checkpoint(t); cp != evs[3].Position {
		t.Fatalf("checkpoint %d with a gap at %d, want %d", cp, evs[4].Position, evs[3].Position)
	}
	hs.setHidden(evs[4].Position, false)
	eventually(t, "the late event is published", func() bool { return len(e.streamMessages(t)) == 10 })
	eventually(t, "the checkpoint passes the filled gap", func() bool { return e.checkpoint(t) == evs[9].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A gap that never fills (a rolled-back transaction) is passed after GapWait.
	more := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_y", 0)
	last := e.appendEvent(t, boxoffice.EventHoldCreated, "hld_z", 0)
	hs.setHidden(more.Position, true)
	r = &Relay{Store: hs, JS: e.js, GapWait: 200 * time.Millisecond}
	stop = run(r.Run)
	eventually(t, "the checkpoint passes the stale gap", func() bool { return e.checkpoint(t) == last.Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestNextWave: a wave has one event per subject, the rest keep their order, and every event
// ends up in exactly one wave.
func TestNextWave(t *testing.T) {
	ev := func(id, subject string) *boxoffice.Event { return &boxoffice.Event{ID: id, Subject: subject} }
	events := []*boxoffice.Event{ev("a1", "a"), ev("b1", "b"), ev("a2", "a"), ev("c1", "c"), ev("a3", "a"), ev("b2", "b")}
	var waves [][]string
	for rest := events; len(rest) > 0; {
		var wave []*boxoffice.Event
		wave, rest = nextWave(rest)
		var ids []string
		for _, e := range wave {
			ids = append(ids, e.ID)
		}
		waves = append(waves, ids)
	}
	want := [][]string{{"a1", "b1", "c1"}, {"a2", "b2"}, {"a3"}}
	if fmt.Sprint(waves) != fmt.Sprint(want) {
		t.Fatalf("waves = %v; want %v", waves, want)
	}
}

// TestDuplicateWindowOutlastsTheRelay checks that the events stream remembers message ids for a
// minute more than the relay's gap wait (so a republish after a restart is dropped) and follows a
// change of it, while the dead-letter stream keeps its own wide window.
func TestDuplicateWindowOutlastsTheRelay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, gap := range []time.Duration{0, DefaultGapWait, 0} {
		st, err := EnsureStream(ctx, e.js, StreamOptions{GapWait: gap})
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.Config.Duplicates, gap+time.Minute; got != want {
			t.Errorf("GapWait %v: duplicate window %v, want %v", gap, got, want)
		}
	}
	dlq, err := e.js.Stream(ctx, DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := dlq.Info(ctx); err != nil || info.Config.Duplicates != dlqDuplicateWindow {
		t.Errorf("dead-letter stream: %+v, %v; want a %v window", info, err, dlqDuplicateWindow)
	}
}
