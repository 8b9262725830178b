package nats

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

func (t hidingTx) EventsAt(ctx context.Context, positions []int64) ([]*boxoffice.Event, error) {
	evs, err := t.Tx.EventsAt(ctx, positions)
	return t.h.hide(evs), err
}

func (t hidingTx) ListEvents(ctx context.Context, after int64, limit int) ([]*boxoffice.Event, error) {
	evs, err := t.Tx.ListEvents(ctx, after, limit)
	return t.h.hide(evs), err
}

// hide drops the hidden events from evs.
func (h *hidingStore) hide(evs []*boxoffice.Event) []*boxoffice.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := evs[:0]
	for _, e := range evs {
		if !h.hidden[e.Position] {
			out = append(out, e)
		}
	}
	return out
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
// minute more than the relay's gap wait and sync lag (so a republish after a restart is dropped) and follows a
// change of it, while the dead-letter stream keeps its own wide window.
func TestDuplicateWindowOutlastsTheRelay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range []struct{ gap, lag time.Duration }{{0, 0}, {DefaultGapWait, 0}, {0, EmbeddedSyncLag}, {0, 0}} {
		gap := c.gap
		st, err := EnsureStream(ctx, e.js, StreamOptions{GapWait: gap, SyncLag: c.lag})
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.Config.Duplicates, gap+c.lag+time.Minute; got != want {
			t.Errorf("GapWait %v, SyncLag %v: duplicate window %v, want %v", gap, c.lag, got, want)
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

// TestRelayRepublishesWhatAnUnsyncedStreamLost is the power cut the embedded server's sync
// interval allows: JetStream acked events it had not yet fsync'd and comes back without them. The
// relay's checkpoint trails the acks by SyncLag, so it publishes those events again; the stream
// ends with every event once (the ones it kept are dropped as duplicates).
func TestRelayRepublishesWhatAnUnsyncedStreamLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openStore(t, dir)
	e := &env{store: db, dir: dir}
	start := func() (stop func()) {
		srv, err := StartEmbedded(filepath.Join(dir, "nats"), EmbeddedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		if e.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		if e.st, err = EnsureStream(ctx, e.js, StreamOptions{SyncLag: EmbeddedSyncLag}); err != nil {
			t.Fatal(err)
		}
		return func() { nc.Close(); srv.Shutdown() }
	}
	stopServer := start()
	var want []string
	for i := range 20 {
		want = append(want, e.appendEvent(t, boxoffice.EventHoldCreated, fmt.Sprintf("hld_%d", i), map[string]int{"i": i}).ID)
	}

	// A lag longer than the test: every event is acked, none is durable by the relay's account.
	r := &Relay{Store: db, JS: e.js, SyncLag: time.Hour}
	stop := run(r.Run)
	eventually(t, "all 20 events are in the stream", func() bool { return len(e.streamMessages(t)) == len(want) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := e.checkpoint(t); got != 0 {
		t.Fatalf("checkpoint = %d while every ack is younger than the sync lag; want 0", got)
	}

	// The cut: the stream loses its last 8 messages, and the server comes back from its files.
	info, err := e.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.LastSeq - 7; seq <= info.State.LastSeq; seq++ {
		if err := e.st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	stopServer()
	stopServer = start()
	defer stopServer()
	if got := len(e.streamMessages(t)); got != 12 {
		t.Fatalf("after the cut the stream has %d messages, want 12", got)
	}

	r = &Relay{Store: db, JS: e.js, SyncLag: 50 * time.Millisecond}
	stop = run(r.Run)
	last := e.checkpointOfLast(t)
	eventually(t, "the checkpoint reaches the last event once its ack is old enough", func() bool { return e.checkpoint(t) == last })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range e.streamMessages(t) {
		count[m.ID]++
	}
	for _, id := range want {
		if count[id] != 1 {
			t.Errorf("event %s is in the stream %d times, want once", id, count[id])
		}
	}
	if len(count) != len(want) {
		t.Errorf("stream holds %d distinct events, want %d", len(count), len(want))
	}
	if _, dup := r.Stats(); dup != 12 {
		t.Errorf("duplicates dropped = %d, want the 12 events the stream kept", dup)
	}
}

// TestTrailKeepsTheCheckpointBehindTheLag checks the checkpoint arithmetic of SyncLag on its own.
func TestTrailKeepsTheCheckpointBehindTheLag(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var acked []ackedUpTo
	var got int64
	steps := []struct {
		next int64
		at   time.Duration
		want int64
	}{
		{5, 0, 0},                        // just acked: not durable yet
		{9, 500 * time.Millisecond, 0},   // still younger than the lag
		{9, time.Second, 5},              // 5 is a second old
		{12, 1400 * time.Millisecond, 5}, // 9 is 0.9 s old
		{12, 1600 * time.Millisecond, 9},
		{12, 5 * time.Second, 12},
	}
	for _, s := range steps {
		got, acked = trail(acked, s.next, t0.Add(s.at), time.Second)
		if got != s.want {
			t.Fatalf("at %v with %d acked: durable %d, want %d", s.at, s.next, got, s.want)
		}
	}
	if got, _ := trail(nil, 7, t0, 0); got != 7 {
		t.Errorf("no lag: durable %d, want 7", got)
	}
}

// notDurable is a store whose events past limit are committed but not yet on disk.
type notDurable struct {
	boxoffice.Store
	limit atomic.Int64
}

func (s *notDurable) DurableEventPosition() int64 { return s.limit.Load() }

// TestRelayPublishesOnlyDurableEvents: an event a reader sees before its commit is on disk is not
// published until it is.
func TestRelayPublishesOnlyDurableEvents(t *testing.T) {
	e := newEnv(t)
	store := &notDurable{Store: e.store}
	var evs []*boxoffice.Event
	for i := range 6 {
		evs = append(evs, e.appendEvent(t, boxoffice.EventHoldCreated, fmt.Sprintf("hld_%d", i), map[string]int{"i": i}))
	}
	store.limit.Store(evs[2].Position)
	r := &Relay{Store: store, JS: e.js}
	stop := run(r.Run)
	defer stop()
	eventually(t, "the durable events are published", func() bool { return len(e.streamMessages(t)) == 3 })
	// Several rounds later still only those.
	for range 5 {
		time.Sleep(60 * time.Millisecond)
		if n := len(e.streamMessages(t)); n != 3 {
			t.Fatalf("the stream has %d messages while 3 events are durable", n)
		}
	}
	store.limit.Store(evs[5].Position)
	eventually(t, "the rest once durable", func() bool { return len(e.streamMessages(t)) == 6 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRelayPublishesOnlyWhileLeader runs the relays of two servers over one checkpoint, each
// with a Leader of its own: a relay that is not the leader publishes nothing; the leader publishes
// every event once; leadership handed from one to the other and back resumes each time from the
// checkpoint in the store, publishing nothing twice; and both leading at once (an overlap at a
// change of leader) still leaves every event once in the stream, by its Nats-Msg-Id.
func TestRelayPublishesOnlyWhileLeader(t *testing.T) {
	e := newEnv(t)
	type server struct {
		relay *Relay
		lead  atomic.Bool
		asked atomic.Int32
		stop  func() error
	}
	start := func() *server {
		s := &server{}
		s.relay = &Relay{Store: e.store, JS: e.js, Leader: func() bool {
			s.asked.Add(1)
			return s.lead.Load()
		}}
		s.stop = run(s.relay.Run)
		return s
	}
	// follow takes leadership from s and returns once s has heard of it: its next ask started
	// after the change.
	follow := func(s *server) {
		t.Helper()
		s.lead.Store(false)
		n := s.asked.Load()
		eventually(t, "the relay hears it is no longer the leader", func() bool { return s.asked.Load() > n })
	}
	var events []*boxoffice.Event
	add := func(n int) {
		for i := range n {
			events = append(events, e.appendEvent(t, boxoffice.EventHoldCreated, fmt.Sprintf("hld_%d", len(events)), map[string]int{"i": i}))
		}
	}
	published := func(s *server) int64 { p, _ := s.relay.Stats(); return p }
	duplicates := func(s *server) int64 { _, d := s.relay.Stats(); return d }
	caughtUp := func() {
		t.Helper()
		last := events[len(events)-1].Position
		eventually(t, "the checkpoint reaches the last event", func() bool { return e.checkpoint(t) == last })
	}

	a := start()
	defer func() { _ = a.stop() }()
	add(10)
	// A few rounds asked and refused: nothing goes out.
	eventually(t, "the relay asks whether it leads", func() bool { return a.asked.Load() >= 3 })
	if p := published(a); p != 0 {
		t.Fatalf("a relay that is not the leader published %d events", p)
	}
	if info, err := e.st.Info(context.Background()); err != nil || info.State.Msgs != 0 {
		t.Fatalf("stream %+v (%v): want no message while no relay leads", info, err)
	}
	if pos := e.checkpoint(t); pos != 0 {
		t.Fatalf("checkpoint %d while no relay leads, want 0", pos)
	}

	a.lead.Store(true)
	caughtUp()
	if p, d := published(a), duplicates(a); p != 10 || d != 0 {
		t.Errorf("the leader published %d events (%d duplicates), want 10 and none", p, d)
	}

	// Handover to the other server: it starts from the checkpoint a left.
	follow(a)
	b := start()
	defer func() { _ = b.stop() }()
	b.lead.Store(true)
	add(10)
	caughtUp()
	if p, d := published(b), duplicates(b); p != 10 || d != 0 {
		t.Errorf("the new leader published %d events (%d duplicates), want the 10 new ones only", p, d)
	}
	if p := published(a); p != 10 {
		t.Errorf("the old leader published %d events in all, want its first 10 only", p)
	}

	// And back: a starts again from the checkpoint in the store, not from where it stopped.
	follow(b)
	a.lead.Store(true)
	add(10)
	caughtUp()
	if p, d := published(a), duplicates(a); p != 20 || d != 0 {
		t.Errorf("the leader again published %d events in all (%d duplicates), want 20 and none", p, d)
	}

	// Both lead for a while: the stream drops the copies.
	b.lead.Store(true)
	add(10)
	caughtUp()
	if err := a.stop(); err != nil {
		t.Error(err)
	}
	if err := b.stop(); err != nil {
		t.Error(err)
	}
	got := e.streamMessages(t)
	seen := map[string]int{}
	for _, m := range got {
		seen[m.ID]++
	}
	for _, ev := range events {
		if seen[ev.ID] != 1 {
			t.Errorf("event %s is %d times in the stream, want once", ev.ID, seen[ev.ID])
		}
	}
	if len(got) != len(events) {
		t.Errorf("the stream has %d messages, want %d", len(got), len(events))
	}
}
