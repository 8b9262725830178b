package sqlite

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

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
// transaction (an error from one undoes that one only), commits once, and only then answers
// each caller. Every caller still gets a commit that is on disk before Update returns — it is
// simply shared, the way TigerBeetle pays one fsync per batch.
type groupCommit struct {
	queue chan *pendingUpdate
	mu    sync.RWMutex // held for reading to enqueue, for writing by Close
	done  bool
	quit  chan struct{}
	wg    sync.WaitGroup
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
	g.quit = make(chan struct{})
	g.wg.Add(1)
	go g.loop(db)
}

// loop is the writer goroutine: it takes every waiting call, runs them as one batch, repeats.
func (g *groupCommit) loop(db *DB) {
	batch := make([]*pendingUpdate, 0, maxBatch)
	clean := false
	defer func() {
		if clean {
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
			db.runBatch(batch)
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

// Update runs fn in a write transaction and commits when fn returns nil; with synchronous=FULL
// the commit is on disk when Update returns. fn may share its transaction with other callers' fns
// (group commit), each under its own savepoint: an error from fn undoes fn's writes only and is
// returned as is, so that callers see their own domain errors. fn must not call Update.
func (db *DB) Update(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u := &pendingUpdate{ctx: ctx, fn: fn, result: make(chan error, 1)}
	g := &db.gc
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
	return err
}

// runBatch runs a batch in one transaction and answers every caller after the commit. Should a
// statement fail in a way that spoils the transaction (an I/O error, not a constraint), the batch
// is rolled back and every fn runs again alone, so one caller's failure never becomes another's.
func (db *DB) runBatch(batch []*pendingUpdate) {
	if len(batch) == 1 {
		batch[0].result <- db.solo(batch[0])
		return
	}
	results := make([]error, len(batch))
	err := db.inTx(func(t *tx) error {
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
		for _, u := range batch {
			u.result <- db.solo(u)
		}
		return
	}
	for i, u := range batch {
		u.result <- results[i]
	}
}

// solo runs one fn in a transaction of its own.
func (db *DB) solo(u *pendingUpdate) error {
	if err := u.ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := db.inTx(func(t *tx) error {
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
		return fnErr
	}
	return err
}

// inTx runs body in a BEGIN IMMEDIATE transaction on the writer and commits when it returns nil.
// Statements run under a background context: the transaction is the writer's, not a caller's.
func (db *DB) inTx(body func(t *tx) error) (err error) {
	ctx := context.Background()
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
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
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
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
