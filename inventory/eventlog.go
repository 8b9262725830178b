package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"boxoffice"
)

// EventLogTierRemoved is the Capacity of the tombstone event that Reconfigure appends when a
// show's tier is deleted: the stream has no other way to say that a tier is gone, and a real
// capacity is never negative. Its deltas take the tier's counts (zero: a tier with holds or sales
// cannot be removed) back to zero, so the sum of a tier's deltas is still its counts.
const EventLogTierRemoved = -1

// EventLog is the event-sourcing strategy (--inventory eventlog). Every count change of a show is
// an InventoryEvent appended to the show's append-only stream with an expected-version append:
// Apply reads the stream's head v, decides (a reservation that does not fit is ESOLDOUT, carrying
// what is left) and appends at v+1; if another writer appended v+1 first (PostgreSQL runs writers
// concurrently; SQLite's writer is exclusive, so there it never happens) the whole transaction is
// retried from a fresh read, with jittered backoff, a bounded number of times, then EOVERLOADED
// (503 with Retry-After). In the same transaction the tier's counts get the same change
// (AddTierCounts), so the store's tiers row is the synchronous projection of the stream, always
// exactly its fold: GET /v1/shows and `boxoffice verify` read it and stay exact.
//
// A single projector goroutine per EventLog tails every show's stream (a poll, plus a wake-up
// after each local commit) and folds it into an in-memory availability view, read with View: the
// asynchronous read model of event sourcing, which says how far it lags. A new EventLog rebuilds
// the view by replaying each stream from version 0 (ReplayEventLog does the same fold in one
// call), so a restart or a second process yields the same view.
//
// Use it when the history of every count change matters (audit, replays, feeding other read
// models) or to demonstrate the pattern; the tiers row still guards the invariant, so it never
// oversells even if the stream is misused. Known failure modes: every change of a show, whatever
// its tier, contends for the show's one head — writers of one tier queue on the tier's row lock
// before they read it, but writers of different tiers race for it — so on PostgreSQL a stampede
// across a show's tiers turns into conflicts and retries (Conflicts counts them) and, past the
// retry bound, 503s (SQLite serialises writers and never conflicts); the stream grows by one row per change and is never compacted; and counts changed
// outside this strategy (the same data served with another --inventory) leave the stream behind
// the tiers row — the view then reports Diverged or Discontinuities, and the decisions stay safe
// because AddTierCounts re-checks the capacity.
type EventLog struct {
	store boxoffice.Store
	log   *slog.Logger
	cfg   eventLogConfig

	mu      sync.Mutex
	shows   map[string]*elShow // every show the projector tails
	dirty   map[string]bool    // shows with local commits since the projector last looked
	changed chan struct{}      // closed and replaced after every projector cycle, for CatchUp

	conflicts atomic.Int64 // expected-version conflicts seen by Apply and Reconfigure

	wake      chan struct{} // buffered 1: a local commit or CatchUp asks for a cycle
	pauses    chan elPause  // test hook: stop the projector between cycles
	quit      chan struct{}
	done      chan struct{} // closed when the projector has returned
	cancel    context.CancelFunc
	closeOnce sync.Once
}

var _ boxoffice.Inventory = (*EventLog)(nil)

// eventLogConfig holds the strategy's tunables; tests shorten or lengthen them.
type eventLogConfig struct {
	poll        time.Duration // how often the projector polls shows' heads without a wake-up
	pollBatch   int           // shows polled per tick, round robin, so many quiet shows cost little
	discover    time.Duration // how often it lists the store's shows, to tail those other processes made
	page        int           // events read per query
	maxPerCycle int           // events folded per show per cycle, so one long stream cannot starve the others
	attempts    int           // transactions tried per change before EOVERLOADED
	backoff     time.Duration // first backoff after a conflict; doubles per attempt, with full jitter
	maxBackoff  time.Duration
	retryAfter  time.Duration // the Retry-After of the EOVERLOADED that ends the retries
}

var defaultEventLogConfig = eventLogConfig{
	poll:        250 * time.Millisecond,
	pollBatch:   256,
	discover:    5 * time.Second,
	page:        512,
	maxPerCycle: 8192,
	attempts:    12,
	backoff:     time.Millisecond,
	maxBackoff:  50 * time.Millisecond,
	retryAfter:  time.Second,
}

// NewEventLog returns the eventlog strategy over store and starts its projector, which rebuilds
// the view of every show in the store from its stream; Close stops it. The returned Inventory is an
// *EventLog, whose View, CatchUp and ReplayEventLog read the projection.
func NewEventLog(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	if store == nil {
		return nil, errors.New("the eventlog strategy needs a store")
	}
	return newEventLog(store, opts, defaultEventLogConfig), nil
}

func newEventLog(store boxoffice.Store, opts Options, cfg eventLogConfig) *EventLog {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &EventLog{
		store:   store,
		log:     log.With("inventory", "eventlog"),
		cfg:     cfg,
		shows:   map[string]*elShow{},
		dirty:   map[string]bool{},
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		pauses:  make(chan elPause),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		cancel:  cancel,
	}
	go e.project(ctx)
	return e
}

// Name is "eventlog".
func (e *EventLog) Name() string { return "eventlog" }

// Apply appends c to its show's stream as one event and applies it to the tier's counts, and runs
// write, all in one transaction. A reservation appends first, so a sold-out tier fails before any
// other work; every other change runs write first, because write is what checks that the change
// is still due (the hold still active, the order still pending), and a change that is no longer
// due must append nothing. A change of zero appends nothing either: there is no count change to
// record. An expected-version conflict retries the whole transaction (write included) from fresh
// reads; after the bound it is EOVERLOADED with a RetryAfter, having changed nothing.
func (e *EventLog) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	return e.update(ctx, c.ShowID, func(tx boxoffice.Tx, out *[]elAppended) error {
		if c.Held == 0 && c.Sold == 0 {
			return write(tx)
		}
		if c.Held > 0 {
			if err := e.appendChange(ctx, tx, c, out); err != nil {
				return err
			}
			return write(tx)
		}
		if err := write(tx); err != nil {
			return err
		}
		return e.appendChange(ctx, tx, c, out)
	})
}

// appendChange decides c against the tier's state at the stream's head, appends its event at the
// next version and applies it to the tiers row.
func (e *EventLog) appendChange(ctx context.Context, tx boxoffice.Tx, c boxoffice.CountChange, out *[]elAppended) error {
	// The tier's row first: on PostgreSQL it is locked (FOR UPDATE) until the commit, so writers of
	// one tier queue here and then read a head that already has their predecessor's event, instead
	// of all reading the same head and all but one conflicting. The row is the stream's fold at the
	// head (every append changes it in the same transaction), i.e. the aggregate's snapshot: it
	// gives the tier's state without replaying the stream.
	counts, err := tx.TierCounts(ctx, c.ShowID, c.TierID, true)
	if err != nil {
		return err
	}
	s := &elStream{tx: tx, show: c.ShowID, now: elNow(), out: out}
	if err := s.readHead(ctx); err != nil {
		return err
	}
	held, sold := counts.Held+c.Held, counts.Sold+c.Sold
	if held < 0 || sold < 0 || held+sold > counts.Capacity {
		if c.Held > 0 {
			return soldOut(counts, c.Held)
		}
		// Not a reservation, so it is the holds and orders that say it is due: the counts disagree
		// with them, and that is refused rather than made worse.
		return fmt.Errorf("tier %s/%s: change %+v does not fit counts held=%d sold=%d capacity=%d", c.ShowID, c.TierID, c, counts.Held, counts.Sold, counts.Capacity)
	}
	if err := s.append(ctx, c.TierID, c.Held, c.Sold, held, sold, counts.Capacity); err != nil {
		return err
	}
	got, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
	if err != nil {
		return err
	}
	if !ok || got.Held != held || got.Sold != sold {
		// Cannot happen while the row is locked (or the writer exclusive) from the read to here;
		// if it does, committing would make the stream lie, so nothing is committed.
		return fmt.Errorf("tier %s/%s changed under the inventory stream: want held=%d sold=%d, the store has held=%d sold=%d", c.ShowID, c.TierID, held, sold, got.Held, got.Sold)
	}
	return nil
}

// Reconfigure runs write (a change of the show's tiers or capacities) in a transaction that also
// appends to the show's stream: an event with zero deltas and the new Capacity per added or
// resized tier, a tombstone (Capacity EventLogTierRemoved) per removed tier, and, when nothing of
// that changed, one zero-delta marker all the same. The marker is the point: the transaction takes
// a version, so a count change that read the head before it conflicts and retries against the
// new capacities instead of interleaving with them. The show's tier rows are locked before the
// head is read and write runs (Apply takes its tier's lock before the head too), so on PostgreSQL
// no count change commits between write's checks (a capacity below held+sold is
// ECAPACITYCONFLICT) and the commit; a change that raced anyway loses the version and the whole
// transaction, write included, runs again. A show whose stream is empty (made before this
// strategy served it) is seeded with one event per tier whose deltas are its counts, so the
// stream's fold equals the tiers rows from then on.
func (e *EventLog) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return e.update(ctx, showID, func(tx boxoffice.Tx, out *[]elAppended) error {
		// Lock the show's tiers first (PostgreSQL; SQLite's writer is exclusive anyway), in id
		// order so that two reconfigurations cannot deadlock. Apply locks its tier before it reads
		// the head, so from here no count change of the show can commit until this does: write's
		// own check (a capacity below held+sold) then reads counts that stay true until the
		// commit, instead of failing on a change that got in between.
		if err := elLockTiers(ctx, tx, showID); err != nil {
			return err
		}
		s := &elStream{tx: tx, show: showID, now: elNow(), out: out}
		head, err := tx.InventoryHead(ctx, showID)
		if err != nil {
			return err
		}
		s.head = head
		before, err := elGetShow(ctx, tx, showID)
		if err != nil {
			return err
		}
		if err := write(tx); err != nil {
			return err
		}
		after, err := elGetShow(ctx, tx, showID)
		if err != nil || after == nil || len(after.Tiers) == 0 {
			return err // no show, no tiers: nothing for a stream to say
		}
		if head == 0 {
			return s.seed(ctx, after)
		}
		for _, t := range after.Tiers {
			var old *boxoffice.Tier
			if before != nil {
				old = before.Tier(t.ID)
			}
			if old == nil || old.Capacity != t.Capacity {
				if err := s.append(ctx, t.ID, 0, 0, t.Held, t.Sold, t.Capacity); err != nil {
					return err
				}
			}
		}
		if before != nil {
			for _, t := range before.Tiers {
				if after.Tier(t.ID) == nil {
					if err := s.append(ctx, t.ID, -t.Held, -t.Sold, 0, 0, EventLogTierRemoved); err != nil {
						return err
					}
				}
			}
		}
		if s.head == head {
			t := after.Tiers[0]
			return s.append(ctx, t.ID, 0, 0, t.Held, t.Sold, t.Capacity)
		}
		return nil
	})
}

// Conflicts returns how many expected-version appends this instance lost to another writer (and
// retried, or shed as EOVERLOADED) since it started: always 0 on SQLite, whose writer is
// exclusive; on PostgreSQL it grows with concurrent changes of one show, whatever their tiers —
// the strategy's price, worth exporting as a metric.
func (e *EventLog) Conflicts() int64 { return e.conflicts.Load() }

// Close stops the projector and waits for it. Apply and Reconfigure keep working afterwards (they
// need only the store), but the view no longer advances. Close is safe to call more than once.
func (e *EventLog) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		close(e.quit)
		<-e.done
	})
	return nil
}

// update runs fn in a store transaction, retrying it from scratch after an expected-version
// conflict with full-jitter exponential backoff, and tells the projector what it appended once the
// transaction has committed (never before: a fold of an uncommitted event could be undone).
func (e *EventLog) update(ctx context.Context, showID string, fn func(tx boxoffice.Tx, out *[]elAppended) error) error {
	var out []elAppended
	backoff := e.cfg.backoff
	for attempt := 1; ; attempt++ {
		err := e.store.Update(ctx, func(tx boxoffice.Tx) error {
			// The store may run fn more than once (a group commit that failed, a deadlock retry);
			// only the run that committed counts.
			out = out[:0]
			return fn(tx, &out)
		})
		var conflict *elConflict
		if !errors.As(err, &conflict) {
			if err == nil {
				e.notify(showID, out)
			}
			return err
		}
		e.conflicts.Add(1)
		if attempt >= e.cfg.attempts {
			e.log.Warn("inventory stream stays contended; shedding the change", "show", showID, "attempts", attempt, "err", err)
			oe := boxoffice.Errorf(boxoffice.EOVERLOADED, "show %s is changing too fast to take this change now; retry", showID)
			oe.RetryAfter = e.cfg.retryAfter
			return oe
		}
		// Full jitter: writers that conflicted together must not retry together.
		t := time.NewTimer(time.Duration(rand.Int64N(int64(backoff) + 1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, e.cfg.maxBackoff)
	}
}

// elConflict is an expected-version append that lost: another writer appended that version. It is
// its own type so that only it is retried, never an ECONFLICT of write's own inserts.
type elConflict struct {
	show    string
	version int64
	err     error
}

func (c *elConflict) Error() string {
	return fmt.Sprintf("inventory stream of show %s: version %d was appended by another writer: %v", c.show, c.version, c.err)
}

func (c *elConflict) Unwrap() error { return c.err }

// elAppended is one event a transaction appended, for the projector's lag bookkeeping.
type elAppended struct {
	version int64
	at      time.Time
}

// elStream appends to one show's stream inside one transaction, tracking the head.
type elStream struct {
	tx   boxoffice.Tx
	show string
	head int64
	now  time.Time
	out  *[]elAppended
}

// readHead reads the head; an empty stream of a show that exists is seeded first.
func (s *elStream) readHead(ctx context.Context) error {
	head, err := s.tx.InventoryHead(ctx, s.show)
	if err != nil {
		return err
	}
	s.head = head
	if head > 0 {
		return nil
	}
	show, err := elGetShow(ctx, s.tx, s.show)
	if err != nil || show == nil {
		return err
	}
	return s.seed(ctx, show)
}

// seed gives an empty stream one event per tier whose deltas are the tier's counts, so that the
// stream's fold equals the tiers row of a show that had counts before this strategy served it.
func (s *elStream) seed(ctx context.Context, show *boxoffice.Show) error {
	for _, t := range show.Tiers {
		if err := s.append(ctx, t.ID, t.Held, t.Sold, t.Held, t.Sold, t.Capacity); err != nil {
			return err
		}
	}
	return nil
}

// append appends one event at the next version. Losing the version to another writer is an
// *elConflict, which update retries.
func (s *elStream) append(ctx context.Context, tier string, dHeld, dSold, heldAfter, soldAfter, capacity int) error {
	ev := &boxoffice.InventoryEvent{
		ShowID: s.show, Version: s.head + 1, TierID: tier, Held: dHeld, Sold: dSold,
		HeldAfter: heldAfter, SoldAfter: soldAfter, Capacity: capacity, CreatedAt: s.now,
	}
	if err := s.tx.AppendInventoryEvent(ctx, ev); err != nil {
		if boxoffice.ErrorCode(err) == boxoffice.ECONFLICT {
			return &elConflict{show: s.show, version: ev.Version, err: err}
		}
		return err
	}
	s.head = ev.Version
	*s.out = append(*s.out, elAppended{version: ev.Version, at: ev.CreatedAt})
	return nil
}

// elGetShow is GetShow with a missing show as nil.
func elGetShow(ctx context.Context, tx boxoffice.Tx, id string) (*boxoffice.Show, error) {
	show, err := tx.GetShow(ctx, id)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil, nil
	}
	return show, err
}

// elLockTiers locks every tier row of a show (FOR UPDATE where the store has row locks), in id
// order.
func elLockTiers(ctx context.Context, tx boxoffice.Tx, showID string) error {
	show, err := elGetShow(ctx, tx, showID)
	if err != nil || show == nil {
		return err
	}
	ids := make([]string, len(show.Tiers))
	for i, t := range show.Tiers {
		ids[i] = t.ID
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, err := tx.TierCounts(ctx, showID, id, true); err != nil && boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			return err
		}
	}
	return nil
}

// elNow is an event's CreatedAt: UTC at the stores' microsecond precision, so that what a
// transaction remembers of its event equals what a later read of it returns.
func elNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// The projector.

// EventLogView is the projector's availability view of one show: the fold of the show's stream up
// to Version, and how far that is behind. It is the read model of event sourcing — cheap to read
// and never blocking a writer, but possibly stale, and saying by how much; decisions never use it
// (Apply decides from the stream's head in its transaction), and the audited counts are the tiers
// rows, which never lag.
type EventLogView struct {
	ShowID string
	// Version is the last stream version folded in; Tiers are exactly the counts as of it.
	Version int64
	// At is when the event at Version was appended; zero for an empty stream.
	At time.Time
	// Head is the newest version this instance knows the stream has: its own commits at once,
	// other processes' at the projector's next poll. Lag is Head-Version, 0 when caught up.
	Head int64
	Lag  int64
	// LagAge is how long the oldest event not yet folded in has waited (0 when Lag is 0): exact
	// when the projector has read that event, otherwise an upper bound.
	LagAge time.Duration
	// Tiers are the show's tiers by id.
	Tiers []EventLogTier
	// Discontinuities counts events whose deltas did not lead from the tier's previous state to
	// their own after-counts: the stream missed changes made outside this strategy. The view
	// follows the after-counts, so it heals at a tier's next event; 0 in normal operation.
	Discontinuities int
	// Diverged says that, at the last head the projector reached, its fold disagreed with the
	// tiers rows of the same snapshot: counts or capacities changed outside this strategy, or a
	// show made before it served the data, whose stream is empty until its first change seeds it.
	Diverged bool
}

// EventLogTier is one tier in an EventLogView.
type EventLogTier struct {
	ID        string
	Capacity  int
	Held      int
	Sold      int
	Available int
	// Version is the stream version of the tier's last event.
	Version int64
}

// View returns the projector's view of a show; ok is false until the projector has read the
// show's stream once (shortly after start or after the show's first change). It reads memory only
// and never waits; use CatchUp to wait for the view to reach the stream's current head.
func (e *EventLog) View(showID string) (v EventLogView, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.shows[showID]
	if st == nil || !st.loaded {
		return EventLogView{}, false
	}
	return st.view(showID, time.Now()), true
}

// CatchUp reads the show's current stream head from the store and waits until the view has folded
// it in, then returns the view: read-your-writes for a caller that just changed the show. It fails
// when ctx ends first or the EventLog is closed; while the projector is stalled (a store that
// fails reads) it waits until ctx ends. A show without a stream returns an empty view at once.
func (e *EventLog) CatchUp(ctx context.Context, showID string) (EventLogView, error) {
	var head int64
	err := e.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		head, err = tx.InventoryHead(ctx, showID)
		return err
	})
	if err != nil {
		return EventLogView{}, err
	}
	for {
		e.mu.Lock()
		st := e.shows[showID]
		if st == nil && head == 0 {
			// Not tailed and nothing to tail: answering without registering keeps lookups of
			// shows that do not exist from growing the projector's work.
			e.mu.Unlock()
			return EventLogView{ShowID: showID}, nil
		}
		st = e.showLocked(showID)
		if st.loaded && st.applied >= head {
			v := st.view(showID, time.Now())
			e.mu.Unlock()
			return v, nil
		}
		e.dirty[showID] = true
		changed := e.changed
		e.mu.Unlock()
		e.signal()
		select {
		case <-changed:
		case <-ctx.Done():
			return EventLogView{}, ctx.Err()
		case <-e.done:
			return EventLogView{}, errors.New("the eventlog strategy is closed")
		}
	}
}

// ReplayEventLog folds a show's stream from version 0 in one read transaction, with the same fold
// as the projector, and returns the view as of the stream's head: what a projector that restarts
// rebuilds, without needing one. It also checks the fold against the tiers rows of the same
// snapshot (Diverged). Its cost is the length of the stream.
func ReplayEventLog(ctx context.Context, store boxoffice.Store, showID string) (EventLogView, error) {
	var st *elShow
	err := store.View(ctx, func(tx boxoffice.Tx) error {
		st = newElShow() // from scratch, should the store run fn again
		for {
			evs, err := tx.InventoryEvents(ctx, showID, st.applied, defaultEventLogConfig.page)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				if !st.fold(ev) {
					return fmt.Errorf("inventory stream of show %s: version %d follows %d", showID, ev.Version, st.applied)
				}
			}
		}
		show, err := elGetShow(ctx, tx, showID)
		if err != nil {
			return err
		}
		st.diverged = !st.matches(show)
		return nil
	})
	if err != nil {
		return EventLogView{}, err
	}
	st.loaded, st.head = true, st.applied
	return st.view(showID, time.Now()), nil
}

// elShow is the projector's state of one show.
type elShow struct {
	loaded   bool // the projector has read the show's stream at least once
	applied  int64
	at       time.Time
	tiers    map[string]elTier
	breaks   int
	diverged bool
	head     int64     // the newest version known: projector reads and local commits
	oldest   time.Time // CreatedAt of the oldest unapplied event known; zero when caught up
}

type elTier struct {
	capacity, held, sold int
	version              int64
}

func newElShow() *elShow { return &elShow{tiers: map[string]elTier{}} }

// fold applies the next event; false (and no change) when ev is not the next version. The
// after-counts are the tier's new state; the deltas only check that the stream missed nothing.
func (st *elShow) fold(ev *boxoffice.InventoryEvent) bool {
	if ev.Version != st.applied+1 {
		return false
	}
	prev := st.tiers[ev.TierID] // zero for a tier the stream did not know
	if prev.held+ev.Held != ev.HeldAfter || prev.sold+ev.Sold != ev.SoldAfter {
		st.breaks++
	}
	if ev.Capacity == EventLogTierRemoved {
		delete(st.tiers, ev.TierID)
	} else {
		st.tiers[ev.TierID] = elTier{capacity: ev.Capacity, held: ev.HeldAfter, sold: ev.SoldAfter, version: ev.Version}
	}
	st.applied, st.at = ev.Version, ev.CreatedAt
	return true
}

// matches reports whether the fold has exactly show's tiers with their capacities and counts.
func (st *elShow) matches(show *boxoffice.Show) bool {
	if show == nil {
		return len(st.tiers) == 0
	}
	if len(show.Tiers) != len(st.tiers) {
		return false
	}
	for _, t := range show.Tiers {
		v, ok := st.tiers[t.ID]
		if !ok || v.capacity != t.Capacity || v.held != t.Held || v.sold != t.Sold {
			return false
		}
	}
	return true
}

func (st *elShow) view(showID string, now time.Time) EventLogView {
	v := EventLogView{
		ShowID: showID, Version: st.applied, At: st.at, Head: max(st.head, st.applied),
		Discontinuities: st.breaks, Diverged: st.diverged,
		Tiers: make([]EventLogTier, 0, len(st.tiers)),
	}
	v.Lag = v.Head - v.Version
	if v.Lag > 0 && !st.oldest.IsZero() {
		v.LagAge = max(now.Sub(st.oldest), 0)
	}
	for id, t := range st.tiers {
		v.Tiers = append(v.Tiers, EventLogTier{ID: id, Capacity: t.capacity, Held: t.held, Sold: t.sold,
			Available: t.capacity - t.held - t.sold, Version: t.version})
	}
	sort.Slice(v.Tiers, func(i, j int) bool { return v.Tiers[i].ID < v.Tiers[j].ID })
	return v
}

// showLocked returns the state of a show, creating it; e.mu is held.
func (e *EventLog) showLocked(id string) *elShow {
	st := e.shows[id]
	if st == nil {
		st = newElShow()
		e.shows[id] = st
	}
	return st
}

// notify records a committed transaction's appends (so the view knows its lag before the
// projector reads them) and wakes the projector.
func (e *EventLog) notify(showID string, out []elAppended) {
	if len(out) == 0 {
		return
	}
	e.mu.Lock()
	st := e.showLocked(showID)
	for _, a := range out {
		st.head = max(st.head, a.version)
		if a.version > st.applied && (st.oldest.IsZero() || a.at.Before(st.oldest)) {
			st.oldest = a.at
		}
	}
	e.dirty[showID] = true
	e.mu.Unlock()
	e.signal()
}

// signal wakes the projector without ever blocking: one pending wake-up covers any number.
func (e *EventLog) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// elPause is a request to stop the projector between cycles until resume is closed.
type elPause struct{ ack, resume chan struct{} }

// pauseProjector (a test hook) returns once the projector is between cycles and stays there until
// resume is called: the view then lags behind every commit, as a slow projector's would.
func (e *EventLog) pauseProjector() (resume func()) {
	p := elPause{ack: make(chan struct{}), resume: make(chan struct{})}
	select {
	case e.pauses <- p:
		<-p.ack
	case <-e.done:
	}
	return sync.OnceFunc(func() { close(p.resume) })
}

// project is the projector: the one goroutine that folds streams into the view, so the view
// changes in stream order with no locking between folds of one show. It polls cfg.pollBatch of
// the known shows each cfg.poll, round robin (commits of other processes reach the view within
// shows/pollBatch polls), and folds the shows with local commits at once when woken.
func (e *EventLog) project(ctx context.Context) {
	defer close(e.done)
	e.discover(ctx)
	e.cycle(ctx, e.knownShows())
	poll := time.NewTicker(e.cfg.poll)
	defer poll.Stop()
	discovered := time.Now()
	cursor := "" // the last show polled
	for {
		var shows []string
		select {
		case <-e.quit:
			return
		case p := <-e.pauses:
			close(p.ack)
			select {
			case <-p.resume:
			case <-e.quit:
				return
			}
			continue
		case <-e.wake:
			shows = e.takeDirty()
		case <-poll.C:
			if time.Since(discovered) >= e.cfg.discover {
				e.discover(ctx)
				discovered = time.Now()
			}
			shows, cursor = e.pollShows(cursor)
		}
		e.cycle(ctx, shows)
	}
}

// discover adds every show in the store to the shows the projector tails, so that a new instance
// rebuilds all of them and this one follows shows that other processes changed.
func (e *EventLog) discover(ctx context.Context) {
	var ids []string
	err := e.store.View(ctx, func(tx boxoffice.Tx) error {
		ids = ids[:0]
		after := ""
		for {
			shows, err := tx.ListShows(ctx, after, 500)
			if err != nil {
				return err
			}
			for _, s := range shows {
				ids = append(ids, s.ID)
			}
			if len(shows) < 500 {
				return nil
			}
			after = shows[len(shows)-1].ID
		}
	})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("eventlog projector could not list shows", "err", err)
		}
		return
	}
	e.mu.Lock()
	for _, id := range ids {
		e.showLocked(id)
	}
	e.mu.Unlock()
}

// pollShows returns the next cfg.pollBatch shows after cursor, wrapping round, and the new cursor.
func (e *EventLog) pollShows(cursor string) ([]string, string) {
	ids := e.knownShows()
	if len(ids) <= e.cfg.pollBatch {
		return ids, ""
	}
	sort.Strings(ids)
	i := sort.SearchStrings(ids, cursor)
	if i < len(ids) && ids[i] == cursor {
		i++
	}
	batch := make([]string, 0, e.cfg.pollBatch)
	for len(batch) < e.cfg.pollBatch {
		batch = append(batch, ids[i%len(ids)])
		i++
	}
	return batch, batch[len(batch)-1]
}

func (e *EventLog) knownShows() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.shows))
	for id := range e.shows {
		ids = append(ids, id)
	}
	return ids
}

func (e *EventLog) takeDirty() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.dirty))
	for id := range e.dirty {
		ids = append(ids, id)
	}
	clear(e.dirty)
	return ids
}

// cycle folds what the given shows' streams have past the view, in one read snapshot, then wakes
// CatchUp's waiters. A show still behind after its per-cycle share goes round again at once.
func (e *EventLog) cycle(ctx context.Context, shows []string) {
	if len(shows) == 0 {
		return
	}
	var behind []string
	err := e.store.View(ctx, func(tx boxoffice.Tx) error {
		behind = behind[:0]
		for _, id := range shows {
			more, err := e.tail(ctx, tx, id)
			if err != nil {
				return err
			}
			if more {
				behind = append(behind, id)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		// The next poll tries again; meanwhile the view reports its lag.
		e.log.Warn("eventlog projector could not read the streams", "err", err)
	}
	e.mu.Lock()
	for _, id := range behind {
		e.dirty[id] = true
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if len(behind) > 0 {
		e.signal()
	}
}

// tail folds one show's new events, read in tx; more says it stopped short of the head. Only the
// projector goroutine changes applied and tiers, so it reads them without the lock and takes it
// only to write (View and notify run concurrently).
func (e *EventLog) tail(ctx context.Context, tx boxoffice.Tx, id string) (more bool, err error) {
	head, err := tx.InventoryHead(ctx, id)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	st := e.showLocked(id)
	if head < st.applied {
		// The stream is shorter than what was folded: the store was replaced or restored. The
		// view of the old stream means nothing now; rebuild it.
		e.log.Error("inventory stream went back; rebuilding its view", "show", id, "head", head, "folded", st.applied)
		*st = *newElShow()
	}
	loaded := st.loaded
	e.mu.Unlock()

	folded, gap := 0, false
	for st.applied < head && folded < e.cfg.maxPerCycle && !gap {
		evs, err := tx.InventoryEvents(ctx, id, st.applied, min(e.cfg.page, e.cfg.maxPerCycle-folded))
		if err != nil {
			return false, err
		}
		if len(evs) == 0 {
			break
		}
		e.mu.Lock()
		for _, ev := range evs {
			if !st.fold(ev) {
				// Streams have no gaps by contract; folding past one would invent a state. Stop
				// here: the view reports the lag, and the next poll looks again.
				e.log.Error("inventory stream has a gap; the view stops before it", "show", id, "version", ev.Version, "folded", st.applied)
				gap = true
				break
			}
			folded++
		}
		e.mu.Unlock()
	}
	var next time.Time // CreatedAt of the first event not folded, for LagAge
	if st.applied < head {
		evs, err := tx.InventoryEvents(ctx, id, st.applied, 1)
		if err != nil {
			return false, err
		}
		if len(evs) > 0 {
			next = evs[0].CreatedAt
		}
	}
	checked, diverged := false, false
	if st.applied == head && (folded > 0 || !loaded) {
		// At the head of this snapshot the fold must equal the tiers rows of the same snapshot.
		show, err := elGetShow(ctx, tx, id)
		if err != nil {
			return false, err
		}
		checked, diverged = true, !st.matches(show)
	}
	e.mu.Lock()
	st.loaded = true
	st.head = max(st.head, head)
	switch {
	case st.applied >= st.head:
		st.oldest = time.Time{}
	case !next.IsZero():
		st.oldest = next
	}
	if checked {
		if diverged && !st.diverged {
			e.log.Warn("inventory stream disagrees with the tiers' counts (changed outside the eventlog strategy?)", "show", id, "version", st.applied)
		}
		st.diverged = diverged
	}
	e.mu.Unlock()
	return st.applied < head && !gap, nil
}
