package sqlite

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"boxoffice"
)

// maxBatch bounds how many Update calls share one transaction: enough to make the fsync of a
// commit cheap per call, small enough that one batch does not hold up the first caller for long.
const maxBatch = 256

// errClosed is the answer to an Update after Close.
var errClosed = errors.New("sqlite store is closed")

// groupCommit runs concurrent Update calls in shared transactions. SQLite has one writer, so
// Update calls run one after another anyway; what costs is the fsync of each commit. The writer
// goroutine takes every call that is waiting, runs each under its own savepoint in one
// transaction (an error from one undoes that one only) and commits once; the syncer goroutine
// then fsyncs the WAL and only then answers each caller. Every caller still gets a commit that
// is on disk before Update returns — it is simply shared, the way TigerBeetle pays one fsync per
// batch — and the writer does not wait for the disk: while one batch is being fsync'd it already
// runs the next, which the syncer's next fsync covers together with any other that committed
// meanwhile. The fsync had been a third of the writer's time in a sold-out stampede.
//
// The price: a reader may see a commit up to one fsync before it is on disk. A kill -9 loses
// nothing of it (the WAL frames are in the OS's page cache once COMMIT returns); a power cut in
// that window can take a commit that a reader saw but whose caller was never answered. The relay
// publishes only durable events (DurableEventPosition), so no event of such a commit leaves.
type groupCommit struct {
	queue chan *pendingUpdate
	// synced carries committed batches from the writer to the syncer.
	synced chan *committed
	mu     sync.RWMutex // held for reading to enqueue, for writing by Close
	done   bool
	quit   chan struct{}
	wg     sync.WaitGroup

	// syncErr is set when an fsync of the WAL failed: what is on disk is then unknown (Linux may
	// have dropped the dirty pages), so every later Update fails rather than build on it.
	syncErr atomic.Pointer[error]
	// durablePos is the highest event position of a commit that is on disk.
	durablePos atomic.Int64
}

// committed is one committed batch waiting for its fsync: the callers, each one's result, and
// the highest event position assigned when it committed.
type committed struct {
	batch   []*pendingUpdate
	results []error
	maxPos  int64
}

// pendingUpdate is one waiting Update call.
type pendingUpdate struct {
	ctx    context.Context
	fn     func(tx boxoffice.Tx) error
	result chan error
}

// panicked carries a panic of fn back to the caller's goroutine, so it surfaces where it would
// have without group commit (and the HTTP layer's recovery sees it).
type panicked struct {
	value any
	stack []byte
}

func (p *panicked) Error() string {
	return fmt.Sprintf("panic in transaction: %v\n%s", p.value, p.stack)
}

func (g *groupCommit) start(db *DB) {
	g.queue = make(chan *pendingUpdate, 4*maxBatch)
	// A few batches may wait for the syncer; past that the writer waits too, so that a slow disk
	// slows the writer down instead of piling up commits nobody was told of.
	g.synced = make(chan *committed, 4)
	g.quit = make(chan struct{})
	g.wg.Add(2)
	go g.loop(db)
	go g.syncer(db)
}

// syncer fsyncs the WAL once for every committed batch waiting (and any that commit while it
// runs, which the next round takes) and answers their callers. It ends when the writer has.
func (g *groupCommit) syncer(db *DB) {
	defer g.wg.Done()
	var round []*committed
	for c := range g.synced {
		round = append(round[:0], c)
	drain:
		for {
			select {
			case c, ok := <-g.synced:
				if !ok {
					break drain
				}
				round = append(round, c)
			default:
				break drain
			}
		}
		err := db.syncWAL()
		if err != nil {
			g.syncErr.CompareAndSwap(nil, &err)
		}
		for _, c := range round {
			if err == nil && c.maxPos > g.durablePos.Load() {
				g.durablePos.Store(c.maxPos)
			}
			for i, u := range c.batch {
				res := c.results[i]
				if res == nil && err != nil {
					res = fmt.Errorf("commit not known to be on disk: %w", err)
				}
				u.result <- res
			}
		}
	}
}

// failed is the sticky fsync failure, or nil.
func (g *groupCommit) failed() error {
	if p := g.syncErr.Load(); p != nil {
		return fmt.Errorf("sqlite store stopped writing after a failed fsync: %w", *p)
	}
	return nil
}

// loop is the writer goroutine: it takes every waiting call, runs them as one batch, repeats.
func (g *groupCommit) loop(db *DB) {
	batch := make([]*pendingUpdate, 0, maxBatch)
	clean := false
	defer func() {
		if clean {
			close(g.synced) // after the last batch: the syncer answers it, then ends
			g.wg.Done()
			return
		}
		// fn ended the goroutine without returning or panicking (runtime.Goexit, as t.FailNow
		// does from a test's fn): answer the batch's callers and carry on in a new writer, so
		// one misbehaving fn cannot stop every later Update.
		for _, u := range batch {
			select {
			case u.result <- errors.New("transaction ended by runtime.Goexit in fn"):
			default:
			}
		}
		go g.loop(db)
	}()
	for {
		select {
		case u := <-g.queue:
			batch = append(batch[:0], u)
		drain:
			for len(batch) < maxBatch {
				select {
				case u := <-g.queue:
					batch = append(batch, u)
				default:
					break drain
				}
			}
			if err := g.failed(); err != nil {
				for _, u := range batch {
					u.result <- err
				}
			} else {
				g.synced <- db.runBatch(batch)
				db.boundWAL()
			}
			batch = batch[:0]
		case <-g.quit:
			// No Update can enqueue any more (done is set); answer those that did.
			for {
				select {
				case u := <-g.queue:
					u.result <- errClosed
				default:
					clean = true
					return
				}
			}
		}
	}
}

func (g *groupCommit) stop() {
	g.mu.Lock()
	if g.done || g.quit == nil {
		g.mu.Unlock()
		return
	}
	g.done = true
	g.mu.Unlock()
	close(g.quit)
	g.wg.Wait()
}

// Update runs fn in a write transaction and commits when fn returns nil; the commit is on disk
// (the WAL fsync'd) when Update returns nil. fn may share its transaction with other callers' fns
// (group commit), each under its own savepoint: an error from fn undoes fn's writes only and is
// returned as is, so that callers see their own domain errors. fn must not call Update.
func (db *DB) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u := &pendingUpdate{ctx: ctx, fn: fn, result: make(chan error, 1)}
	g := &db.gc
	if err := g.failed(); err != nil {
		return err
	}
	g.mu.RLock()
	if g.done {
		g.mu.RUnlock()
		return errClosed
	}
	select {
	case g.queue <- u:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	// Wait for the answer even if ctx ends: fn may be running, and its outcome is the caller's.
	err := <-u.result
	if p, ok := err.(*panicked); ok {
		panic(fmt.Sprintf("%v\n\ntransaction stack:\n%s", p.value, p.stack))
	}
	return storageFull(err)
}

// runBatch runs a batch in one transaction and returns it committed, for the syncer to answer
// once it is on disk. Should a statement fail in a way that spoils the transaction (an I/O error,
// not a constraint), the batch is rolled back and every fn runs again alone, so one caller's
// failure never becomes another's.
func (db *DB) runBatch(batch []*pendingUpdate) *committed {
	c := &committed{batch: append([]*pendingUpdate(nil), batch...), results: make([]error, len(batch))}
	if len(batch) == 1 {
		c.maxPos, c.results[0] = db.solo(batch[0])
		return c
	}
	results := c.results
	maxPos, err := db.inTx(func(t *tx) error {
		for i, u := range batch {
			if err := u.ctx.Err(); err != nil {
				results[i] = err // gave up while queued: nothing of it ran
				continue
			}
			if err := t.savepoint(context.Background(), "SAVEPOINT", "gc"); err != nil {
				return err
			}
			results[i] = call(u.fn, t)
			if t.err != nil {
				return t.err
			}
			if results[i] != nil {
				if err := t.savepoint(context.Background(), "ROLLBACK TO", "gc"); err != nil {
					return err
				}
			}
			if err := t.savepoint(context.Background(), "RELEASE", "gc"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i, u := range batch {
			pos, err := db.solo(u)
			results[i], c.maxPos = err, max(c.maxPos, pos)
		}
		return c
	}
	c.maxPos = maxPos
	return c
}

// solo runs one fn in a transaction of its own; it returns the highest event position when it
// committed and fn's outcome.
func (db *DB) solo(u *pendingUpdate) (int64, error) {
	if err := u.ctx.Err(); err != nil {
		return 0, err
	}
	var fnErr error
	pos, err := db.inTx(func(t *tx) error {
		fnErr = call(u.fn, t)
		if fnErr != nil {
			return fnErr
		}
		if t.err != nil {
			// fn carried on after a failed statement; what SQLite kept of the transaction is
			// not what fn meant to commit.
			return fmt.Errorf("transaction not committed after a failed statement: %w", t.err)
		}
		return nil
	})
	if fnErr != nil {
		return pos, fnErr
	}
	return pos, err
}

// inTx runs body in a BEGIN IMMEDIATE transaction on the writer and commits when it returns nil.
// Statements run under a background context: the transaction is the writer's, not a caller's.
// maxPos is the highest event position assigned as of the commit (AUTOINCREMENT's counter, which
// a rolled-back savepoint's insert does not move), for DurableEventPosition.
func (db *DB) inTx(body func(t *tx) error) (maxPos int64, err error) {
	ctx := context.Background()
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin write transaction: %w", err)
	}
	committed := false
	defer func() {
		// Also on runtime.Goexit from body: the writer connection must not stay inside a
		// transaction, or every later Update would wait for it forever.
		if !committed {
			_ = sqlTx.Rollback()
		}
	}()
	t := &tx{tx: sqlTx, prepared: &db.ws, ctx: ctx}
	if err := body(t); err != nil {
		return 0, err
	}
	if t.appended {
		if err := t.queryRow(ctx, sEventsSeq).Scan(&maxPos); err != nil {
			return 0, fmt.Errorf("read the last event position: %w", err)
		}
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return maxPos, nil
}

// call runs fn, turning a panic into a *panicked error for the caller's goroutine to re-raise.
func call(fn func(tx boxoffice.Tx) error, t *tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicked{value: v, stack: debug.Stack()}
		}
	}()
	return fn(t)
}
