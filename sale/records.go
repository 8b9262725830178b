package sale

import (
	"context"
	"sync"

	"boxoffice"
)

// maxRecordBatch bounds how many answers one transaction of the record writer stores: enough
// that a stampede's refusals share a commit, few enough that the transaction does not hold the
// store's writer (which the inventory's batches share) for long.
const maxRecordBatch = 256

// records writes idempotency records that are the whole of their request's transaction: final
// answers with no effect of their own, such as a sold_out refusal. Each used to take a
// transaction of its own; in a sold-out stampede those transactions were most of the server's
// work (a third of the CPU profile: the SQLite writer's statements, commits and WAL writes).
// Now one transaction at a time is under way, and every record that comes meanwhile waits for
// the next, which stores them all: the batch grows with the load, and a record is still on disk
// before its caller answers (SPEC §3: a stored answer is durable like any other).
type records struct {
	mu      sync.Mutex
	queue   []*pendingRecord
	writing bool // a writer goroutine runs; it takes the queue when its transaction ends
}

// pendingRecord is one record waiting for the writer, and the outcome of its insert.
type pendingRecord struct {
	rec  *boxoffice.IdemRecord
	err  error         // errKeyTaken when the key has a record already; set before done closes
	done chan struct{} // closed once the record's transaction committed or failed
}

// storeRecord stores rec in a transaction shared with other such records and returns once it
// is committed (nil), when its key turned out to have a record already (errKeyTaken, nothing
// stored), or with the transaction's error (nothing of it stored).
func (s *Service) storeRecord(rec *boxoffice.IdemRecord) error {
	p := &pendingRecord{rec: rec, done: make(chan struct{})}
	b := &s.records
	b.mu.Lock()
	if s.base.Err() != nil {
		b.mu.Unlock()
		return s.base.Err() // closed: no writer starts after Close waited for the last one
	}
	b.queue = append(b.queue, p)
	start := !b.writing
	b.writing = true
	if start {
		s.wg.Add(1) // Close waits for the writer, so no transaction outlives the service
	}
	b.mu.Unlock()
	if start {
		go s.writeRecords()
	}
	// Wait even when ctx ends (the client timed out): the record is being stored, and once it
	// is, the claim keeps its answer for the retry that is likely on its way.
	<-p.done
	return p.err
}

// writeRecords stores the queued records, a batch per transaction, until the queue is empty.
func (s *Service) writeRecords() {
	defer s.wg.Done()
	b := &s.records
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxRecordBatch)
		if n == 0 {
			b.writing = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = append([]*pendingRecord(nil), b.queue[n:]...)
		b.mu.Unlock()
		s.writeRecordBatch(batch)
	}
}

// batchInserter is a transaction that inserts many idempotency records in few statements. It
// says which it inserted; a record whose key has one already (or an earlier one in recs) is not,
// and the transaction stays intact.
type batchInserter interface {
	InsertIdemRecords(ctx context.Context, recs []*boxoffice.IdemRecord) (inserted []bool, err error)
}

// writeRecordBatch stores batch in one transaction. A key with a record already is a conflict
// that leaves the transaction intact on every store (boxoffice.Tx: an ECONFLICT), so it is that
// record's answer alone; any other error fails the whole batch, as it would each of its records
// alone (a full disk, a closed store). Where the store can (PostgreSQL), the transaction is
// speculative, as the inventory's batches are: its inserts are sent together with COMMIT in one
// round trip instead of one each, and a key found taken there runs the batch again with every
// answer real. (Without this a batch on PostgreSQL took a round trip per record, one batch at a
// time, where each record had been a transaction of its own in parallel with the others.)
func (s *Service) writeRecordBatch(batch []*pendingRecord) {
	results := make([]error, len(batch))
	err := boxoffice.UpdateSpeculative(s.base, s.store, func(tx boxoffice.Tx) error {
		// Every run of fn sets every result: only the last run's count (Store.Update).
		if bi, ok := tx.(batchInserter); ok {
			recs := make([]*boxoffice.IdemRecord, len(batch))
			for i, p := range batch {
				recs[i] = p.rec
			}
			inserted, err := bi.InsertIdemRecords(s.base, recs)
			if err != nil {
				return err
			}
			for i, ok := range inserted {
				results[i] = nil
				if !ok {
					results[i] = errKeyTaken
				}
			}
			return nil
		}
		for i, p := range batch {
			results[i] = insertRecord(s.base, tx, p.rec)
			if results[i] != nil && results[i] != errKeyTaken {
				return results[i]
			}
		}
		return nil
	})
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.err = results[i]
		}
		close(p.done)
	}
}
