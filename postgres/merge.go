package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"boxoffice"
)

// maxMerge bounds how many UpdateSpeculative calls share one transaction.
const maxMerge = 64

// mergedTimeout bounds a merged transaction's wait for a connection.
const mergedTimeout = 30 * time.Second

// merger group-commits UpdateSpeculative calls: calls that arrive while a merged transaction is
// in flight wait, and the first of them then runs all that waited as one transaction — one
// pipeline and one COMMIT for the batches of many shows' writers, where each alone would be a
// transaction of a command or two once a crowd spreads over many shows. There is no goroutine
// of its own: the lead passes from call to call.
type merger struct {
	mu      sync.Mutex
	queue   []*mergeCall
	leading bool
}

// mergeCall is one waiting UpdateSpeculative call.
type mergeCall struct {
	ctx  context.Context
	fn   func(tx boxoffice.Tx) error
	lead chan struct{} // signalled when this call is to run the next merged transaction
	done chan struct{} // closed once err is set
	err  error
}

// errUnmerge ends a merged transaction that cannot give each call its own outcome: every call
// then runs in a transaction of its own.
var errUnmerge = errors.New("the merged transaction runs as separate ones")

// UpdateSpeculative implements boxoffice.SpeculativeStore: Update, with fn's blind writes
// deferred (see tx.deferring) until the next read or COMMIT, all in one round trip, and fn's
// transaction shared with other UpdateSpeculative calls waiting at the time (see merger). If a
// deferred write did not do what fn was told it did, fn runs again in a transaction of its
// own, without deferring, where each answer is real.
func (db *DB) UpdateSpeculative(ctx context.Context, fn func(tx boxoffice.Tx) error) error {
	c := &mergeCall{ctx: ctx, fn: fn, lead: make(chan struct{}, 1), done: make(chan struct{})}
	m := &db.merge
	m.mu.Lock()
	m.queue = append(m.queue, c)
	if !m.leading {
		m.leading = true
		c.lead <- struct{}{}
	}
	m.mu.Unlock()
	// Wait for the outcome even if ctx ends: fn may be running, and its outcome is the caller's.
	select {
	case <-c.done:
	case <-c.lead:
		db.leadMerged()
		<-c.done
	}
	return c.err
}

// leadMerged runs the calls waiting (the leader's own first among them) and passes the lead on.
func (db *DB) leadMerged() {
	m := &db.merge
	m.mu.Lock()
	n := min(len(m.queue), maxMerge)
	calls := append([]*mergeCall(nil), m.queue[:n]...)
	m.queue = append(m.queue[:0], m.queue[n:]...)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if len(m.queue) > 0 {
			m.queue[0].lead <- struct{}{}
		} else {
			m.leading = false
		}
		m.mu.Unlock()
	}()
	if len(calls) == 1 || !db.runMerged(calls) {
		for _, c := range calls {
			c.err = db.update(c.ctx, true, c.fn)
			close(c.done)
		}
	}
}

// runMerged runs calls in one transaction and answers them; false means it answered none and
// each must run on its own. A call's error stands when it wrote nothing yet (its deferred
// writes, if any, are dropped, as a savepoint's rollback would); one that had, or a panic, a
// deferred write that did not do as assumed, or a failed commit unmerges.
func (db *DB) runMerged(calls []*mergeCall) (answered bool) {
	results := make([]error, len(calls))
	// The transaction is no one caller's: it gets a bound of its own for taking a connection.
	ctx, cancel := context.WithTimeout(context.Background(), mergedTimeout)
	defer cancel()
	retry, missed, err := db.run(ctx, beginWrite, true, func(btx boxoffice.Tx) (err error) {
		t := btx.(*tx)
		defer func() {
			if v := recover(); v != nil {
				err = errUnmerge // each call runs again alone, where its panic is its caller's
			}
		}()
		for i, c := range calls {
			if err := c.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			mark := t.queued
			t.marks = nil
			results[i] = c.fn(t)
			if t.missed || t.err != nil {
				return errUnmerge
			}
			if results[i] != nil {
				if t.queued > mark || t.sent > mark {
					return errUnmerge
				}
				if t.retry {
					return errUnmerge
				}
			}
		}
		return nil
	})
	if err != nil || missed || retry {
		return false
	}
	for i, c := range calls {
		c.err = results[i]
		close(c.done)
	}
	return true
}
