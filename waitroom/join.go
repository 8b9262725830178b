package waitroom

import (
	"boxoffice"
)

// pendingJoin is one Join waiting for its batch to be written.
type pendingJoin struct {
	join  boxoffice.QueueJoin
	entry *boxoffice.QueueEntry
	err   error
	done  chan struct{}
}

// writeJoins writes the joins that queue up while the previous batch is being written as one
// store call, as the group commit does for transactions: under a crowd each write carries
// hundreds of joins, and alone a join waits for nothing.
func (s *Service) writeJoins() {
	for {
		var first *pendingJoin
		select {
		case first = <-s.joins:
		case <-s.base.Done():
			s.drainJoins()
			return
		}
		batch := []*pendingJoin{first}
	more:
		for len(batch) < s.cfg.BatchMax {
			select {
			case p := <-s.joins:
				batch = append(batch, p)
			default:
				break more
			}
		}
		joins := make([]boxoffice.QueueJoin, len(batch))
		for i, p := range batch {
			joins[i] = p.join
		}
		entries, err := s.store.JoinQueue(s.base, joins)
		for i, p := range batch {
			if err != nil {
				p.err = err
			} else {
				p.entry = entries[i]
			}
			close(p.done)
		}
	}
}

// drainJoins answers the joins still queued at Close.
func (s *Service) drainJoins() {
	for {
		select {
		case p := <-s.joins:
			p.err = errClosed
			close(p.done)
		default:
			return
		}
	}
}
