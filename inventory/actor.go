package inventory

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"boxoffice"
)

// Defaults of the actor strategy.
const (
	// actorMailbox bounds the commands waiting for one show's writer; a full mailbox sheds load
	// at once rather than queueing callers without end. It is larger than any stampede the
	// conformance suite sends at one show, and at a few milliseconds per batch of actorBatch it
	// drains in well under a second.
	actorMailbox = 4096
	// actorBatch bounds the commands of one transaction: enough that a commit's fsync is shared
	// by many buyers, few enough that the first of them does not wait long for the last.
	actorBatch = 256
	// actorRetryAfter is what a caller shed by a full mailbox or a closing strategy is told to
	// wait.
	actorRetryAfter = time.Second
	// actorIdle is how long a show's writer waits for a command before it ends; the next command
	// starts a new one, which reads the counts afresh.
	actorIdle = 5 * time.Minute
	// actorBatchTimeout bounds one batch's transaction, so a store that hangs cannot hold a show's
	// writer forever.
	actorBatchTimeout = 30 * time.Second
)

// Actor is the one-writer-per-show strategy (TigerBeetle's shape): every count change of a show
// goes through that show's one writer goroutine (a writer per four cores, each writing the shows
// whose ids hash to it), which keeps the tier counts in memory, takes the commands waiting in its
// bounded mailbox as one batch, decides each on memory, runs them in one transaction — each
// under its own savepoint, so one command's failure undoes that command only — with one
// compare-and-set of each tier's counts for the whole batch, commits once and only then answers
// each caller.
//
// Use it for hot on-sales: a show's changes never contend on a lock or lose a race, a sold-out
// tier answers from memory without a write, and one commit (one fsync) is shared by up to 256
// buyers, so throughput on one hot show grows with the crowd instead of collapsing; it is the
// default strategy.
//
// It guarantees held+sold <= capacity because one goroutine decides every change of a show in
// order, and the store's own conditional write still checks each change (a second line of
// defence: should another process have changed the counts, the change is refused, the memory
// corrected from the store, and a sold-out answer is always confirmed against the store first).
// Nothing is answered before it is committed, and the counts in memory change only after a
// commit, so a crash between commit and answer loses nothing: a new writer reads the counts
// from the store, and the caller's retry with the same idempotency key replays its answer.
//
// Its known failure modes: a full mailbox (4096 commands) sheds requests with EOVERLOADED and a
// Retry-After; a batch whose transaction fails fails every command in it, not just the one to
// blame; a caller whose context ends after its command joined a running batch still waits for
// that batch; and it is built for one server per database — several servers each running actors
// for one show stay correct (the store's check) but serialise on the tier row and often correct
// their memory.
type Actor struct {
	store boxoffice.Store
	log   *slog.Logger
	fence func(ctx context.Context, tx boxoffice.Tx, showID string) error

	// Limits; unexported so tests can tighten them before first use.
	mailbox      int
	batch        int
	retryAfter   time.Duration
	idle         time.Duration
	batchTimeout time.Duration
	// afterCommit, when set, runs in a show's writer after each batch commits and before any of
	// its callers is answered: the test hook for a crash at exactly that point.
	afterCommit func(showID string, commands int)

	mu     sync.RWMutex // read-held to send to a writer; write-held to start, retire or close one
	closed bool
	shows  map[string]*showWriter // by writerOf
	quit   chan struct{}
	// shards is how many writers share the shows (each show hashed to one), or 0 for a writer
	// per show. A writer per show commits a batch per show: when a crowd spreads over many shows
	// those batches are a command or two each, and 16 shows sold at two thirds of one show's
	// rate. A writer for many shows gathers their commands into one batch instead; every show
	// still has exactly one writer, which decides each of its changes in order. The store commits
	// one transaction at a time anyway (SQLite's one writer, PostgreSQL's merged transactions),
	// so more writers only split batches: measured on two cores, 16 shows on PostgreSQL sold at
	// 1,140/s with two writers and 1,340/s with one, as fast as one show. A writer per four cores
	// keeps the deciding itself, which is Go code on one goroutine, off the critical path on big
	// machines.
	shards int
	wg     sync.WaitGroup
}

// NewActor returns the one-writer-per-show strategy over store: mailboxes of 4096 commands,
// batches of up to 256 per transaction, writers started on a show's first change and ended after
// 5 minutes without one.
func NewActor(store boxoffice.Store, opts Options) (boxoffice.Inventory, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Actor{
		store: store, log: log, fence: opts.Fence,
		mailbox: actorMailbox, batch: actorBatch, retryAfter: actorRetryAfter,
		idle: actorIdle, batchTimeout: actorBatchTimeout,
		shows: make(map[string]*showWriter), shards: max(1, runtime.GOMAXPROCS(0)/4),
		quit: make(chan struct{}),
	}, nil
}

// Name is "actor".
func (a *Actor) Name() string { return "actor" }

// Apply sends the change to its show's writer and waits for the answer, which comes after the
// batch it joined has committed (or failed). A full mailbox is EOVERLOADED at once. When ctx ends
// while the change still waits in the mailbox, Apply returns ctx.Err() and the change never runs;
// once its batch has started it runs to the end and Apply returns its outcome. A reservation that
// does not fit is refused before write runs; every other change runs write first and changes no
// count when write fails. A change of no count runs write in a transaction of its own.
func (a *Actor) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if c.Held == 0 && c.Sold == 0 {
		return a.store.Update(ctx, write)
	}
	return a.do(ctx, c.ShowID, &command{ctx: ctx, change: c, write: write})
}

// Reconfigure runs write through the show's writer, alone in a transaction of its own, so that no
// count change of the show interleaves with it; afterwards the writer reads the counts again.
func (a *Actor) Reconfigure(ctx context.Context, showID string, write func(tx boxoffice.Tx) error) error {
	return a.do(ctx, showID, &command{ctx: ctx, write: write, reconfigure: true})
}

// Close stops every show's writer: a batch that runs finishes, commands still waiting are answered
// with EOVERLOADED, and Close returns when every writer has ended.
func (a *Actor) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.quit)
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

// command is one Apply or Reconfigure waiting for, or being run by, a show's writer.
type command struct {
	ctx         context.Context // the caller's; a batch's own statements run under the batch's
	change      boxoffice.CountChange
	write       func(tx boxoffice.Tx) error
	reconfigure bool

	state atomic.Int32 // queued → started (by the writer) or abandoned (by the caller)
	reply chan error   // buffered: the writer answers each command once and never waits
	// answered is the writer's own note that it answered, so that recovery answers only the rest.
	answered bool
}

// States of a command.
const (
	queued int32 = iota
	started
	abandoned
)

// start claims a command for a batch; false means its caller gave up and it must not run.
func (c *command) start() bool { return c.state.CompareAndSwap(queued, started) }

// do sends cmd to the writer of showID and waits for its answer.
func (a *Actor) do(ctx context.Context, showID string, cmd *command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cmd.reply = make(chan error, 1)
	if err := a.send(showID, cmd); err != nil {
		return err
	}
	var err error
	select {
	case err = <-cmd.reply:
	case <-ctx.Done():
		if cmd.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err()
		}
		err = <-cmd.reply // it is running: its outcome is the caller's
	}
	if p, ok := err.(*writePanic); ok {
		panic(fmt.Sprintf("%v\n\nwriter stack:\n%s", p.value, p.stack))
	}
	return err
}

// send puts cmd in the mailbox of showID's writer, starting the writer if the show has none.
func (a *Actor) send(showID string, cmd *command) error {
	key := a.writerOf(showID)
	a.mu.RLock()
	w := a.shows[key]
	if w != nil && !a.closed {
		err := a.offer(w, cmd)
		a.mu.RUnlock()
		return err
	}
	a.mu.RUnlock()

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return a.overloaded("the actor strategy is shutting down")
	}
	w = a.shows[key]
	if w == nil {
		w = &showWriter{a: a, id: key, inbox: make(chan *command, a.mailbox)}
		a.shows[key] = w
		a.wg.Add(1)
		go w.run()
	}
	return a.offer(w, cmd)
}

// offer puts cmd in w's mailbox, or sheds it when the mailbox is full. The caller holds a.mu, so
// the writer cannot retire between the look-up and the send.
func (a *Actor) offer(w *showWriter, cmd *command) error {
	select {
	case w.inbox <- cmd:
		return nil
	default:
		a.log.Warn("actor: mailbox full; shedding", "writer", w.id, "mailbox", cap(w.inbox))
		return a.overloaded(fmt.Sprintf("the writer of this show has %d requests waiting; retry shortly", cap(w.inbox)))
	}
}

func (a *Actor) overloaded(msg string) error {
	return boxoffice.Overloaded(a.retryAfter, "%s", msg)
}

// writePanic carries a panic of a command's write back to its caller's goroutine, where it would
// have surfaced without the actor (and where the HTTP layer's recovery sees it).
type writePanic struct {
	value any
	stack []byte
}

func (p *writePanic) Error() string { return fmt.Sprintf("panic in write: %v", p.value) }

// txFailed marks an error that spoils a batch's whole transaction (a savepoint statement failed),
// as opposed to one command's own error.
type txFailed struct{ err error }

// showWriter is one show's writer goroutine and its state. Everything but inbox belongs to the
// goroutine.
type showWriter struct {
	a     *Actor
	id    string
	inbox chan *command

	// counts are the show's tier counts as of the last commit; a tier missing is read from the
	// store inside the next batch's transaction, and nil forgets them all.
	counts map[tierRef]boxoffice.TierCounts
	// committed publishes counts to other goroutines (Committed); a published map is never
	// changed, since every batch works on a copy.
	committed atomic.Pointer[map[tierRef]boxoffice.TierCounts]
	pending   *command   // a Reconfigure met while draining a batch, to run next
	inflight  []*command // the commands being run, for recovery to answer
	buf       []*command
}

// tierRef names a tier of a show: a writer keeps the counts of every show it writes.
type tierRef struct{ show, tier string }

func refOf(c boxoffice.CountChange) tierRef { return tierRef{show: c.ShowID, tier: c.TierID} }

// compareRefs orders tiers by show, then tier: the order a batch writes their counts in.
func compareRefs(a, b tierRef) int {
	if c := strings.Compare(a.show, b.show); c != 0 {
		return c
	}
	return strings.Compare(a.tier, b.tier)
}

// writerOf returns the key of the writer of showID: the show itself, or with shards set, the
// shard the show's id hashes to.
func (a *Actor) writerOf(showID string) string {
	if a.shards <= 0 {
		return showID
	}
	h := fnv.New32a()
	h.Write([]byte(showID))
	return "shard-" + strconv.Itoa(int(h.Sum32()%uint32(a.shards)))
}

// setCounts sets the counts as of the last commit, and publishes them.
func (w *showWriter) setCounts(counts map[tierRef]boxoffice.TierCounts) {
	w.counts = counts
	if counts == nil {
		w.committed.Store(nil)
		return
	}
	w.committed.Store(&counts)
}

// Committed implements boxoffice.CountsKeeper: the counts of the show's writer's last commit.
func (a *Actor) Committed(showID, tierID string) (boxoffice.TierCounts, bool) {
	a.mu.RLock()
	w := a.shows[a.writerOf(showID)]
	a.mu.RUnlock()
	if w == nil {
		return boxoffice.TierCounts{}, false
	}
	m := w.committed.Load()
	if m == nil {
		return boxoffice.TierCounts{}, false
	}
	c, ok := (*m)[tierRef{show: showID, tier: tierID}]
	return c, ok
}

// run is the writer goroutine: it runs the loop, and runs it again with the counts forgotten
// after a panic outside any command's write (a bug, or the test hook), like a supervisor would.
func (w *showWriter) run() {
	defer w.a.wg.Done()
	for {
		if w.loop() {
			return
		}
	}
}

// loop serves the mailbox until Close or idleness (true) or a panic (false).
func (w *showWriter) loop() (stop bool) {
	defer func() {
		if v := recover(); v != nil {
			w.a.log.Error("actor: writer crashed; restarting it from the store", "writer", w.id, "panic", v, "stack", string(debug.Stack()))
			err := boxoffice.Errorf(boxoffice.EINTERNAL, "a show's writer (%s) crashed; retry with the same idempotency key", w.id)
			for _, cmd := range w.inflight {
				w.answer(cmd, err)
			}
			w.inflight = nil
			w.setCounts(nil)
			stop = false
		}
	}()
	idle := time.NewTimer(w.a.idle)
	defer idle.Stop()
	for {
		select {
		case <-w.a.quit: // Close comes before more work
			w.drain()
			return true
		default:
		}
		cmd := w.pending
		w.pending = nil
		if cmd == nil {
			select {
			case cmd = <-w.inbox:
			case <-w.a.quit:
				w.drain()
				return true
			case <-idle.C:
				if w.retire() {
					return true
				}
				idle.Reset(w.a.idle)
				continue
			}
		}
		if cmd.reconfigure {
			w.reconfigure(cmd)
		} else {
			w.group(cmd)
		}
		idle.Reset(w.a.idle)
	}
}

// answer sends a command its outcome, once.
func (w *showWriter) answer(cmd *command, err error) {
	if !cmd.answered {
		cmd.answered = true
		cmd.reply <- err
	}
}

// drain answers every command still waiting, after Close.
func (w *showWriter) drain() {
	err := w.a.overloaded("the actor strategy is shutting down")
	if w.pending != nil {
		w.answer(w.pending, err)
		w.pending = nil
	}
	for {
		select {
		case cmd := <-w.inbox:
			w.answer(cmd, err)
		default:
			return
		}
	}
}

// retire ends an idle writer: with a.mu held no command can be sent to it, so an empty mailbox
// stays empty, and the next command starts a new writer.
func (w *showWriter) retire() bool {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	if len(w.inbox) > 0 {
		return false
	}
	delete(w.a.shows, w.id)
	return true
}

// reconfigure runs a Reconfigure alone in its own transaction and forgets the counts, which it may
// have changed (capacities, tiers).
func (w *showWriter) reconfigure(cmd *command) {
	if !cmd.start() {
		return
	}
	w.inflight = []*command{cmd}
	err := w.a.store.Update(cmd.ctx, func(tx boxoffice.Tx) error { return callWrite(cmd.write, tx) })
	w.setCounts(nil)
	w.answer(cmd, err)
	w.inflight = nil
}

// group runs first and the commands waiting behind it, up to the batch limit, as one batch. A
// Reconfigure met while draining ends the batch and runs after it.
func (w *showWriter) group(first *command) {
	batch := w.buf[:0]
	if first.start() {
		batch = append(batch, first)
	}
drain:
	for len(batch) < w.a.batch {
		select {
		case cmd := <-w.inbox:
			if cmd.reconfigure {
				w.pending = cmd
				break drain
			}
			if cmd.start() {
				batch = append(batch, cmd)
			}
		default:
			break drain
		}
	}
	w.buf = batch[:0]
	w.runBatch(batch)
	w.inflight = nil
	clear(batch) // let the commands go; not deferred, for recovery from a panic answers them
}

// runBatch runs a batch and answers its commands once it has committed or failed. It runs it
// netted first (see commit); should the store's counts not be what memory says, it reads them
// again and runs the batch carefully, one conditional write per command.
func (w *showWriter) runBatch(batch []*command) {
	careful := false
	for len(batch) > 0 {
		w.inflight = batch
		results, counts, culprit, err := w.commit(batch, careful)
		if errors.Is(err, errStale) && !careful {
			w.a.log.Warn("actor: the store's counts differ from memory; running the batch again command by command", "writer", w.id, "commands", len(batch))
			w.setCounts(nil)
			careful = true
			continue
		}
		if err != nil && culprit >= 0 && batch[culprit].ctx.Err() != nil && len(batch) > 1 {
			// The transaction broke in the write of a caller that has given up (on PostgreSQL a
			// statement under an ended context spoils the transaction): nothing committed, so
			// that command fails alone and the others run again without it.
			w.answer(batch[culprit], err)
			batch = append(batch[:culprit:culprit], batch[culprit+1:]...)
			continue
		}
		if err != nil {
			w.a.log.Warn("actor: batch failed; reading the counts again", "writer", w.id, "commands", len(batch), "err", err)
			w.setCounts(nil) // what the store has is unknown until read again
			for _, cmd := range batch {
				w.answer(cmd, err)
			}
			return
		}
		if w.a.afterCommit != nil {
			w.a.afterCommit(w.id, len(batch))
		}
		w.setCounts(counts)
		for i, cmd := range batch {
			w.answer(cmd, results[i])
		}
		return
	}
}

// errStale says the store's counts are not what the writer's memory says: another writer
// changed them. The batch then runs again, carefully, on counts read afresh.
var errStale = errors.New("the store's tier counts differ from the writer's memory")

// commit runs a batch in one transaction and returns each command's outcome and the counts after
// the commit. err is a failure of the transaction as a whole; culprit is the index of the command
// whose step broke it, or -1.
//
// Unless careful, the batch is netted: each command is decided on the counts in memory and the
// store's counts change once per tier at the end, by a compare-and-set from the version memory
// started from (one statement per tier per batch rather than per command); and the store may
// defer the commands' writes and that compare-and-set to COMMIT (UpdateSpeculative), so on
// PostgreSQL a batch costs one round trip however many commands it has. Should the store's
// counts differ from memory, commit fails with errStale and nothing commits. careful runs one
// conditional write per command, as the way to find which command the store refuses.
func (w *showWriter) commit(batch []*command, careful bool) (results []error, counts map[tierRef]boxoffice.TierCounts, culprit int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.a.batchTimeout)
	defer cancel()
	update := w.a.store.Update
	if !careful {
		update = func(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
			return boxoffice.UpdateSpeculative(ctx, w.a.store, fn)
		}
	}
	err = update(ctx, func(tx boxoffice.Tx) error {
		// A store may run fn more than once (a retried transaction), so each run starts afresh
		// from the committed counts.
		results, culprit = make([]error, len(batch)), -1
		counts = maps.Clone(w.counts)
		if counts == nil {
			counts = make(map[tierRef]boxoffice.TierCounts)
		}
		confirmed := make(map[tierRef]bool)
		var net map[tierRef]boxoffice.CountChange
		start := make(map[tierRef]boxoffice.TierCounts) // each tier's counts before this batch
		if !careful {
			net = make(map[tierRef]boxoffice.CountChange)
		}
		if err := w.fenced(ctx, tx, batch); err != nil {
			return err
		}
		for i, cmd := range batch {
			err := w.step(ctx, tx, counts, start, confirmed, net, cmd.change, cmd.write)
			if f, ok := err.(txFailed); ok {
				culprit = i
				return f.err
			}
			results[i] = err
		}
		return w.settleNet(ctx, tx, counts, start, net)
	})
	return results, counts, culprit, err
}

// fenced checks, in tx, that this server still owns each show of the batch (Options.Fence), in
// show order so that two batches' checks never wait on each other in a cycle.
func (w *showWriter) fenced(ctx context.Context, tx boxoffice.Tx, batch []*command) error {
	if w.a.fence == nil {
		return nil
	}
	shows := make([]string, 0, 1)
	for _, cmd := range batch {
		shows = append(shows, cmd.change.ShowID)
	}
	slices.Sort(shows)
	for _, show := range slices.Compact(shows) {
		if err := w.a.fence(ctx, tx, show); err != nil {
			return err
		}
	}
	return nil
}

// settleNet writes a netted batch's count changes, one compare-and-set per tier in tier order
// (the lock order of Reconfigure): the counts memory reached, where the tier's version is still
// the one memory started the batch from. A write whose answer is only "changed one row" needs no
// round trip of its own on a store that defers such writes, so on PostgreSQL the whole batch
// goes with its COMMIT. A version that moved on is errStale: another writer changed the tier.
func (w *showWriter) settleNet(ctx context.Context, tx boxoffice.Tx, counts, start map[tierRef]boxoffice.TierCounts, net map[tierRef]boxoffice.CountChange) error {
	for _, ref := range slices.SortedFunc(maps.Keys(net), compareRefs) {
		c := net[ref]
		if c.Held == 0 && c.Sold == 0 {
			continue
		}
		from, after := start[ref], counts[ref]
		ok, err := tx.SetTierCounts(ctx, ref.show, ref.tier, from.Version, after.Held, after.Sold)
		if err != nil {
			return err
		}
		if !ok {
			return errStale
		}
		after.Version = from.Version + 1
		counts[ref] = after
	}
	return nil
}

// step runs one command of a batch under its own savepoint and returns its outcome; a txFailed
// means the transaction itself is spoilt. counts are the batch's counts so far, changed only by
// a command that succeeded; confirmed lists the tiers whose counts this batch has read from the
// store; start gets each tier's counts before the batch changed them. With net (a netted batch)
// the command's change is added to net instead of written.
func (w *showWriter) step(ctx context.Context, tx boxoffice.Tx, counts, start map[tierRef]boxoffice.TierCounts, confirmed map[tierRef]bool, net map[tierRef]boxoffice.CountChange, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	cur, ok := counts[refOf(c)]
	if !ok {
		var err error
		if cur, err = tx.TierCounts(ctx, c.ShowID, c.TierID, false); err != nil {
			return readFailed(err)
		}
		counts[refOf(c)] = cur
		confirmed[refOf(c)] = true // read in this transaction: nothing to confirm
	}
	if c.Held > 0 && !fits(cur, c) && !confirmed[refOf(c)] {
		// Sold out by memory: confirm with the store before saying so, since an answer of
		// sold_out is final for the buyer, and memory is wrong should a writer outside this
		// actor have given tickets back.
		fresh, err := tx.TierCounts(ctx, c.ShowID, c.TierID, true)
		if err != nil {
			return readFailed(err)
		}
		confirmed[refOf(c)] = true
		if net != nil {
			// The store has the counts as of the batch's start: memory less the batch's net.
			n := net[refOf(c)]
			if fresh.Held != cur.Held-n.Held || fresh.Sold != cur.Sold-n.Sold || fresh.Capacity != cur.Capacity {
				return txFailed{errStale}
			}
		} else if fresh != cur {
			w.a.log.Warn("actor: counts in memory differ from the store; taking the store's", "show", c.ShowID, "tier", c.TierID)
			cur = fresh
			counts[refOf(c)] = fresh
		}
	}
	if c.Held > 0 && !fits(cur, c) {
		return soldOut(cur, c.Held)
	}
	if net != nil {
		if _, ok := start[refOf(c)]; !ok {
			start[refOf(c)] = cur
		}
		return w.stepNet(ctx, tx, counts, net, cur, c, write)
	}
	var after boxoffice.TierCounts
	err := underSavepoint(ctx, tx, func() error {
		if err := callWrite(write, tx); err != nil {
			return err
		}
		var err error
		after, ok, err = tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
		if err == nil && !ok {
			after, err = w.refused(ctx, tx, counts, confirmed, c)
		}
		return err
	})
	if err != nil {
		return err
	}
	counts[refOf(c)] = after
	return nil
}

// commandSavepoint names the savepoint of each command of a batch.
const commandSavepoint = "c"

// underSavepoint runs a command's part of a batch under a savepoint of its own: an error from
// part undoes its writes only and is returned as is; a savepoint statement that fails spoils the
// whole transaction (txFailed). Every command's savepoint has the same name, commandSavepoint:
// each is released before the next is made, and a store may keep the statements of one name
// compiled (SQLite parsed four a purchase otherwise).
func underSavepoint(ctx context.Context, tx boxoffice.Tx, part func() error) error {
	sp := commandSavepoint
	if err := tx.Savepoint(ctx, sp); err != nil {
		return txFailed{err}
	}
	if err := part(); err != nil {
		if rerr := tx.RollbackTo(ctx, sp); rerr != nil {
			return txFailed{rerr}
		}
		if rerr := tx.ReleaseSavepoint(ctx, sp); rerr != nil {
			return txFailed{rerr}
		}
		return err
	}
	if err := tx.ReleaseSavepoint(ctx, sp); err != nil {
		return txFailed{err}
	}
	return nil
}

// stepNet runs a command of a netted batch: its change, decided on memory, goes into net.
func (w *showWriter) stepNet(ctx context.Context, tx boxoffice.Tx, counts map[tierRef]boxoffice.TierCounts, net map[tierRef]boxoffice.CountChange, cur boxoffice.TierCounts, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	if !fits(cur, c) {
		// Only a reservation may not fit (sold out, answered above). A release or a sale that
		// does not fit is either a repeat whose conditional write finds nothing left to do (a
		// second driver settling an order settled already: its write says so, and it changes no
		// count) or a sign that memory is wrong. The write tells them apart; judged on memory
		// alone, every repeat had made the whole batch run again command by command.
		if err := underSavepoint(ctx, tx, func() error { return callWrite(write, tx) }); err != nil {
			return err
		}
		return txFailed{errStale}
	}
	if err := underSavepoint(ctx, tx, func() error { return callWrite(write, tx) }); err != nil {
		return err
	}
	cur.Held, cur.Sold = cur.Held+c.Held, cur.Sold+c.Sold
	counts[refOf(c)] = cur
	n := net[refOf(c)]
	n.Held, n.Sold = n.Held+c.Held, n.Sold+c.Sold
	net[refOf(c)] = n
	return nil
}

// refused handles a change the store's conditional write refused although memory allowed it:
// another writer changed the tier. It takes the store's counts, read under a lock so that they
// cannot move before the answer (the counts a refused write returns are read afterwards, and may
// be newer than what refused it), and tries the change once more on them.
func (w *showWriter) refused(ctx context.Context, tx boxoffice.Tx, counts map[tierRef]boxoffice.TierCounts, confirmed map[tierRef]bool, c boxoffice.CountChange) (boxoffice.TierCounts, error) {
	w.a.log.Warn("actor: the store refused a change memory allowed; taking the store's counts", "show", c.ShowID, "tier", c.TierID)
	fresh, err := tx.TierCounts(ctx, c.ShowID, c.TierID, true)
	if err != nil {
		return fresh, err
	}
	counts[refOf(c)] = fresh
	confirmed[refOf(c)] = true
	if !fits(fresh, c) {
		return fresh, misfit(fresh, c)
	}
	after, ok, err := tx.AddTierCounts(ctx, c.ShowID, c.TierID, c.Held, c.Sold)
	if err == nil && !ok {
		err = fmt.Errorf("tier %s/%s: the store refused change %+v on counts it has locked", c.ShowID, c.TierID, c)
	}
	return after, err
}

// callWrite runs write, turning a panic into a *writePanic for the caller's goroutine to raise.
func callWrite(write func(tx boxoffice.Tx) error, tx boxoffice.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &writePanic{value: v, stack: debug.Stack()}
		}
	}()
	return write(tx)
}

func (f txFailed) Error() string { return f.err.Error() }

// readFailed is the outcome of a failed read of a tier's counts: a tier that does not exist (any
// more) fails the command; anything else has likely spoilt the transaction.
func readFailed(err error) error {
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return err
	}
	return txFailed{err}
}
