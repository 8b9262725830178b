package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// Message is the body of a published event: the outbox row, with the subject (hold or order id)
// and its per-subject sequence that consumers use to apply one subject's events in order.
type Message struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Subject   string          `json:"subject"`
	Seq       int             `json:"seq"`
	Position  int64           `json:"position"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`

	// inboxChecked is set by the runner when it has just found the consumer's inbox without
	// this event, so that a handler need not read it again.
	inboxChecked bool
}

// Relay defaults.
const (
	DefaultRelayName = "nats"
	DefaultGapWait   = time.Minute
	// FollowerPoll is how often a relay that is not the leader (Relay.Leader) asks again: a
	// leadership change costs at most this much on top of the leader's own detection.
	FollowerPoll = 250 * time.Millisecond
)

// Relay publishes the outbox to JetStream in position order. Each event goes out with
// Nats-Msg-Id = its id, and the checkpoint in the store moves only after JetStream acked every
// event up to it; after a crash the relay publishes again from the checkpoint and the stream's
// duplicate window drops what had already arrived.
//
// Position gaps: SQLite numbers events in commit order, so a gap there is final (GapWait 0).
// PostgreSQL numbers them at insert, so a gap may be a transaction still in flight that will
// commit a lower position after higher ones were read; skipping it would lose that event. The
// relay therefore publishes what it sees past a gap at once (the commit order it observes) but
// keeps its checkpoint before the gap and re-reads the gap every round, publishing the event when
// it appears; only a gap older than GapWait is taken as final (a rolled-back transaction, whose
// sequence value is never reused). GapWait must exceed the longest transaction that appends an
// event: the service's transactions take milliseconds, so the minute default is a wide bound.
type Relay struct {
	// Store holds the outbox and the checkpoint.
	Store boxoffice.Store
	// JS publishes; the stream must exist (EnsureStream).
	JS jetstream.JetStream
	// Name keys the checkpoint; DefaultRelayName if empty.
	Name string
	// GapWait is how long a position gap may stay open before the relay takes it as final; 0
	// takes every gap as final at once, which is right only for stores that number in commit
	// order (SQLite).
	GapWait time.Duration
	// SyncLag is how long after JetStream's ack a message may still be lost in a crash of the
	// machine: the server's fsync interval (EmbeddedSyncLag for the embedded server, 0 where acks
	// are durable at once). The checkpoint in the store moves only to events acked at least that
	// long ago, so after any crash the relay publishes again everything the stream may have lost;
	// the duplicate window drops the copies the stream did keep, and the consumers' inboxes any
	// copy past it.
	SyncLag time.Duration
	// Batch is the most events read and published in one round; 0 means 256.
	Batch int
	// Poll is the pause after a round that found nothing new; 0 means 50 ms.
	Poll time.Duration
	// Leader, when set, says whether this relay may publish: several servers on one store each
	// run a relay over the one checkpoint, and only the one whose Leader returns true publishes.
	// It is asked before every round; while it returns false the relay publishes nothing and
	// asks again every FollowerPoll, and when it returns true again the relay starts over from
	// the checkpoint in the store, which the leader meanwhile moved on. Nil means always (a
	// single server).
	//
	// Leadership need not be exact: two relays publishing for a while, around a change of leader
	// (the old one finishing the round it began, or not yet knowing it lost), publish the same
	// events under the same Nats-Msg-Ids, which the stream's duplicate window drops, and a copy
	// past the window is skipped by the consumers' inboxes; a checkpoint the old leader writes
	// last may move the stored one back a little, which only means such copies after the next
	// change of leader. What Leader must give is that some
	// server's returns true soon after the previous leader's stops: until then nothing is relayed.
	Leader func() bool
	// Logger, when set, gets warnings about failures and skipped gaps.
	Logger *slog.Logger

	// beforeCheckpoint, in tests, runs after the acks of a round and before its checkpoint is
	// written; an error ends Run there, as a crash would.
	beforeCheckpoint func(pos int64) error

	// observe, when set, is told of every event JetStream acked for this relay (the metrics'
	// per-show activity); observeSeed is how many events before the checkpoint it is also told
	// of when the relay starts leading, so that a restarted server or a new leader knows which
	// shows were busy; forget is called when the relay stops leading, as the new leader reports
	// them then.
	observe     func(*boxoffice.Event)
	forget      func()
	observeSeed int

	published  atomic.Int64
	duplicates atomic.Int64
	// leading, outboxPos, relayedPos and oldestWaiting (unix nanoseconds, 0 when nothing waits)
	// are what the relay last saw: see Lag.
	leading       atomic.Bool
	outboxPos     atomic.Int64
	relayedPos    atomic.Int64
	oldestWaiting atomic.Int64
}

// Stats returns how many events the relay published and how many of them JetStream reported as
// duplicates (published again after a restart and dropped by the duplicate window).
func (r *Relay) Stats() (published, duplicates int64) {
	return r.published.Load(), r.duplicates.Load()
}

// RelayLag is how far the relay is behind the outbox, as of its last read of it.
type RelayLag struct {
	// Leading says this relay publishes (Relay.Leader); a follower's other fields are zero.
	Leading bool
	// OutboxPosition is the newest position in the outbox; RelayPosition the newest the relay has
	// published. Positions count rolled-back transactions' gaps too (PostgreSQL), so their
	// difference may exceed the events waiting by those few.
	OutboxPosition, RelayPosition int64
	// OldestWaiting is when the oldest event not yet published was created; zero when none waits.
	OldestWaiting time.Time
}

// Events is how many positions the relay is behind the outbox.
func (l RelayLag) Events() int64 { return max(l.OutboxPosition-l.RelayPosition, 0) }

// Seconds is how long the oldest waiting event has waited at now; 0 when none waits.
func (l RelayLag) Seconds(now time.Time) float64 {
	if l.OldestWaiting.IsZero() {
		return 0
	}
	return max(now.Sub(l.OldestWaiting).Seconds(), 0)
}

// Lag returns how far the relay is behind. It is measured on each read of the outbox (every
// round, at most Poll apart while the relay is idle), not on demand: a relay whose rounds fail
// keeps the oldest waiting event, so Seconds grows while it is stuck.
func (r *Relay) Lag() RelayLag {
	l := RelayLag{Leading: r.leading.Load()}
	if !l.Leading {
		return l
	}
	l.OutboxPosition, l.RelayPosition = r.outboxPos.Load(), r.relayedPos.Load()
	if ns := r.oldestWaiting.Load(); ns != 0 {
		l.OldestWaiting = time.Unix(0, ns)
	}
	return l
}

// durableEvents is a store whose readers may see a commit before it is on disk (the SQLite
// store, which fsyncs after COMMIT); it says up to which position the events are durable.
type durableEvents interface {
	DurableEventPosition() int64
}

// ackedUpTo is a position up to which every event was acked, and when that became so.
type ackedUpTo struct {
	pos int64
	at  time.Time
}

// trail records that every event up to next is acked as of now and returns the highest such
// position acked at least lag ago (0 if none is yet), with the entries still younger than lag.
// With no lag it is next itself: the ack is durable.
func trail(acked []ackedUpTo, next int64, now time.Time, lag time.Duration) (int64, []ackedUpTo) {
	if lag <= 0 {
		return next, nil
	}
	if n := len(acked); n == 0 || acked[n-1].pos < next {
		acked = append(acked, ackedUpTo{pos: next, at: now})
	}
	if now.Sub(acked[0].at) < lag {
		return 0, acked
	}
	// Keep the newest entry that is old enough at the head: it is the answer until a later one is.
	i := 0
	for i+1 < len(acked) && now.Sub(acked[i+1].at) >= lag {
		i++
	}
	return acked[i].pos, acked[i:]
}

// gap is one missing position and when the relay first noticed it.
type gap struct {
	pos  int64
	seen time.Time
}

// Run relays until ctx ends, and returns nil then. Failures of the store or of JetStream are
// logged and the round is tried again after a pause, from the same checkpoint.
func (r *Relay) Run(ctx context.Context) error {
	name := r.Name
	if name == "" {
		name = DefaultRelayName
	}
	batch := r.Batch
	if batch <= 0 {
		batch = 256
	}
	poll := r.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defer r.leading.Store(false)
	var checkpoint int64
	// head is the highest position published; gaps are the missing positions at or below it
	// that are not yet taken as final, lowest first. The checkpoint is head when there are none,
	// else just below the lowest.
	var head int64
	var gaps []gap
	// acked holds the positions the checkpoint may move to, each with when it became so, oldest
	// first; with a SyncLag, one is written once it is that old.
	var acked []ackedUpTo
	// leading says that the state above is this relay's own, read from the store when it last
	// became the leader; a relay that is not leading reads the checkpoint again first, since
	// another server's relay may have moved it.
	leading := false
	backoff := poll
	for ctx.Err() == nil {
		if r.Leader != nil && !r.Leader() {
			if leading {
				log.Info("relay: no longer the leader; pausing", "checkpoint", checkpoint)
				// The new leader reports lag and the busy shows; two servers reporting them
				// would count them twice in a sum.
				r.leading.Store(false)
				if r.forget != nil {
					r.forget()
				}
			}
			leading = false
			if !sleep(ctx, FollowerPoll) {
				return nil
			}
			continue
		}
		if !leading {
			var ok bool
			if checkpoint, ok = r.readCheckpoint(ctx, name, log); !ok {
				return nil
			}
			head, gaps, acked = checkpoint, nil, nil
			leading = true
			r.relayedPos.Store(checkpoint)
			r.outboxPos.Store(max(r.outboxPos.Load(), checkpoint))
			r.leading.Store(true)
			r.seedObserver(ctx, checkpoint, log)
			if r.Leader != nil {
				log.Info("relay: leading; publishing from the checkpoint", "checkpoint", checkpoint)
			}
		}
		n, newHead, newGaps, err := r.round(ctx, head, gaps, batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("relay: round failed; retrying from the last checkpoint", "err", err, "checkpoint", checkpoint)
			// Publish again from the durable checkpoint: what was acked is deduplicated.
			head, gaps, acked = checkpoint, nil, nil
			backoff = min(2*backoff, 5*time.Second)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = poll
		head, gaps = newHead, newGaps
		// Drop the gaps that are final.
		now := time.Now()
		for len(gaps) > 0 && (r.GapWait <= 0 || now.Sub(gaps[0].seen) >= r.GapWait) {
			if r.GapWait > 0 {
				log.Warn("relay: position gap older than the gap wait; taking it as a rolled-back transaction",
					"position", gaps[0].pos, "gap_wait", r.GapWait)
			}
			gaps = gaps[1:]
		}
		next := head
		if len(gaps) > 0 {
			next = gaps[0].pos - 1
		}
		next, acked = trail(acked, next, now, r.SyncLag)
		if next > checkpoint {
			if r.beforeCheckpoint != nil {
				if err := r.beforeCheckpoint(next); err != nil {
					return err
				}
			}
			err := r.Store.Update(ctx, func(tx boxoffice.Tx) error { return tx.SetRelayCheckpoint(ctx, name, next) })
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("relay: write checkpoint", "err", err)
			} else {
				checkpoint = next
			}
		}
		if n < batch && !sleep(ctx, poll) {
			return nil
		}
	}
	return nil
}

// readCheckpoint reads the relay's checkpoint, retrying a failed read every second; ok is false
// when ctx ended first.
func (r *Relay) readCheckpoint(ctx context.Context, name string, log *slog.Logger) (pos int64, ok bool) {
	for {
		err := r.Store.View(ctx, func(tx boxoffice.Tx) error {
			var err error
			pos, err = tx.RelayCheckpoint(ctx, name)
			return err
		})
		if err == nil {
			return pos, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		log.Warn("relay: read checkpoint", "err", err)
		if !sleep(ctx, time.Second) {
			return 0, false
		}
	}
}

// seedObserver tells observe of up to observeSeed events before the checkpoint, without publishing
// them. A failure only leaves the observer to learn from what is published next.
func (r *Relay) seedObserver(ctx context.Context, checkpoint int64, log *slog.Logger) {
	if r.observe == nil || r.observeSeed <= 0 {
		return
	}
	var evs []*boxoffice.Event
	err := r.Store.View(ctx, func(tx boxoffice.Tx) error {
		var err error
		evs, err = tx.ListEvents(ctx, max(checkpoint-int64(r.observeSeed), 0), r.observeSeed)
		return err
	})
	if err != nil {
		log.Debug("relay: read recent events for the metrics", "err", err)
		return
	}
	for _, e := range evs {
		if e.Position <= checkpoint {
			r.observe(e)
		}
	}
}

// round reads the events in the open gaps and up to batch events after head, publishes them and
// waits for every ack. It returns how many new events it read after head, the new head and the
// gaps still open.
func (r *Relay) round(ctx context.Context, head int64, gaps []gap, batch int) (int, int64, []gap, error) {
	var filled, fresh []*boxoffice.Event
	// top is the outbox's newest position; after is when the first event past this round's
	// batch was created (zero when the batch holds every waiting event).
	var top int64
	var after time.Time
	err := r.Store.View(ctx, func(tx boxoffice.Tx) error {
		filled, fresh, top, after = nil, nil, head, time.Time{}
		if len(gaps) > 0 {
			// A lookup per open gap: reading every event since the oldest gap instead cost
			// PostgreSQL a fifth of its time, where rolled-back inserts leave gaps that stay
			// open for GapWait.
			at := make([]int64, len(gaps))
			for i, g := range gaps {
				at[i] = g.pos
			}
			evs, err := tx.EventsAt(ctx, at)
			if err != nil {
				return err
			}
			filled = evs
		}
		var err error
		fresh, err = tx.ListEvents(ctx, head, batch)
		if err != nil || len(fresh) == 0 {
			return err
		}
		top = fresh[len(fresh)-1].Position
		if len(fresh) < batch {
			return nil
		}
		// More may wait than one batch: find how many, in this snapshot, from where the outbox
		// ended last time (a few index lookups: see outboxTop), and when the next one was made.
		next, err := tx.ListEvents(ctx, top, 1)
		if err != nil || len(next) == 0 {
			return err
		}
		after = next[0].CreatedAt
		top, err = outboxTop(func(p int64) (int64, bool, error) {
			evs, err := tx.ListEvents(ctx, p, 1)
			if err != nil || len(evs) == 0 {
				return 0, false, err
			}
			return evs[0].Position, true, nil
		}, next[0].Position, r.outboxPos.Load())
		return err
	})
	if err != nil {
		return 0, head, gaps, err
	}
	// Lag as of this read, before the publish: a round that then fails leaves it standing, and
	// the next read of the same events finds the same oldest one, so a stuck relay's lag grows.
	// A gap's event, when it appears, is not counted: it is younger than the fresh ones around it.
	r.outboxPos.Store(top)
	if len(fresh) > 0 {
		r.oldestWaiting.Store(fresh[0].CreatedAt.UnixNano())
	} else {
		r.oldestWaiting.Store(0)
	}
	read := fresh
	if d, ok := r.Store.(durableEvents); ok {
		// Events a reader sees before their commit is on disk wait for the next round: one that
		// left and then vanished in a power cut would be a receipt for an order that never was.
		limit := d.DurableEventPosition()
		for i, e := range fresh {
			if e.Position > limit {
				fresh = fresh[:i]
				break
			}
		}
	}
	var toPublish []*boxoffice.Event
	open := make(map[int64]gap, len(gaps))
	for _, g := range gaps {
		open[g.pos] = g
	}
	for _, e := range filled {
		if _, ok := open[e.Position]; ok {
			delete(open, e.Position)
			toPublish = append(toPublish, e)
		}
	}
	now := time.Now()
	newHead := head
	for _, e := range fresh {
		for p := newHead + 1; p < e.Position; p++ {
			open[p] = gap{pos: p, seen: now}
		}
		newHead = e.Position
		toPublish = append(toPublish, e)
	}
	if err := r.publish(ctx, toPublish); err != nil {
		return 0, head, gaps, err
	}
	// What waits now is the first event the durability limit held back, else the first past the
	// batch, else nothing that this read saw.
	r.relayedPos.Store(newHead)
	switch {
	case len(fresh) < len(read):
		r.oldestWaiting.Store(read[len(fresh)].CreatedAt.UnixNano())
	case !after.IsZero():
		r.oldestWaiting.Store(after.UnixNano())
	default:
		r.oldestWaiting.Store(0)
	}
	newGaps := make([]gap, 0, len(open))
	for _, g := range open {
		newGaps = append(newGaps, g)
	}
	sort.Slice(newGaps, func(i, j int) bool { return newGaps[i].pos < newGaps[j].pos })
	return len(fresh), newHead, newGaps, nil
}

// publish sends the events and waits for their acks, in waves: a wave holds at most one event of
// each subject (hold or order), and the next wave goes out only after every ack of this one.
// Publishes in flight together may land in any order — the client retries a publish that found
// no stream leader on a timer of its own, so around a leader election a later event can overtake
// an earlier one — and consumers apply a subject's events in stream order, so a subject's next
// event must not be in flight before its previous one is stored. Most rounds carry one event per
// subject and so are one wave. A failed wave ends the round before later events of its subjects
// are sent; the next round starts again from the checkpoint.
func (r *Relay) publish(ctx context.Context, events []*boxoffice.Event) error {
	for len(events) > 0 {
		var wave []*boxoffice.Event
		wave, events = nextWave(events)
		if err := r.publishWave(ctx, wave); err != nil {
			return err
		}
	}
	return nil
}

// nextWave splits events into the first event of each subject and the rest, both in order.
func nextWave(events []*boxoffice.Event) (wave, rest []*boxoffice.Event) {
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		if seen[e.Subject] {
			rest = append(rest, e)
			continue
		}
		seen[e.Subject] = true
		wave = append(wave, e)
	}
	return wave, rest
}

// publishWave sends the events asynchronously and waits for all their acks.
func (r *Relay) publishWave(ctx context.Context, events []*boxoffice.Event) error {
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, e := range events {
		body, err := json.Marshal(Message{
			ID: e.ID, Type: e.Type, Subject: e.Subject, Seq: e.Seq, Position: e.Position,
			CreatedAt: e.CreatedAt, Data: e.Data,
		})
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		msg := natsgo.NewMsg(SubjectPrefix + e.Type)
		msg.Data = body
		msg.Header.Set("Boxoffice-Subject", e.Subject)
		msg.Header.Set("Boxoffice-Seq", strconv.Itoa(e.Seq))
		f, err := r.JS.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID))
		if err != nil {
			return fmt.Errorf("publish event %s: %w", e.ID, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			r.published.Add(1)
			if ack.Duplicate {
				r.duplicates.Add(1)
			}
			if r.observe != nil {
				r.observe(events[i])
			}
		case err := <-f.Err():
			return fmt.Errorf("publish event %s: %w", events[i].ID, err)
		case <-timeout.C:
			return errors.New("publish: no ack in 30s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// outboxTop returns the outbox's newest position, given first, which answers the position of the
// first event after a position (ok false when there is none), known, a position that exists, and
// guess, where the newest was last time. "An event after p exists" only turns from true to false as
// p grows, whatever gaps there are, so it gallops from the guess — up while events exist, down
// while none does — with doubling steps, then bisects: a few lookups when the guess is near, as it
// is round after round, instead of a read of every waiting event.
func outboxTop(first func(after int64) (pos int64, ok bool, err error), known, guess int64) (int64, error) {
	const step0 = 64
	lo, hi := known, int64(-1) // an event exists at lo; none after hi once hi >= 0
	g := max(guess, known)
	if p, ok, err := first(g); err != nil {
		return 0, err
	} else if ok {
		lo = p
		for step := int64(step0); hi < 0; step *= 2 {
			q, ok, err := first(lo + step)
			if err != nil {
				return 0, err
			}
			if ok {
				lo = q
			} else {
				hi = lo + step
			}
		}
	} else {
		hi = g
		for step := int64(step0); hi-step > lo; step *= 2 {
			q, ok, err := first(hi - step)
			if err != nil {
				return 0, err
			}
			if ok {
				lo = q
				break
			}
			hi -= step
		}
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		q, ok, err := first(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = q
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
