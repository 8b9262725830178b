package waitroom

import (
	"sync"
	"time"
)

// placeSettles is how long after a join its place in the order is taken as settled: two join
// writers (and, on PostgreSQL, a sequence handing out numbers before commit) may commit a batch
// of lower numbers after a later one, which then stands before entries already counted. A batch
// is written in milliseconds, so seconds leave a wide margin.
const placeSettles = 5 * time.Second

// maxPlaces bounds the places a server keeps in memory (about 50 bytes each); past it they are
// all dropped and counted again once each.
const maxPlaces = 1 << 20

// places keeps, for waiting entries whose place in the order is settled, how many entries
// (waiting or admitted) stand before them. Admission goes in queue order, so an entry's position
// is that number minus the show's admissions so far, which a poll reads with the entry: a poll
// then costs two row reads instead of a count of the queue before the entry, which with 100,000
// buyers polling every second would be the store's main work (16 polling buyers already cost a
// sixth of the server's CPU in a bench). Each server counts an entry at most once after it
// settles.
type places struct {
	mu     sync.Mutex
	before map[int64]int64 // entry seq → entries before it
}

func (p *places) get(seq int64) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.before[seq]
	return n, ok
}

func (p *places) put(seq, before int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.before) >= maxPlaces {
		clear(p.before)
	}
	p.before[seq] = before
}

func (p *places) forget(seq int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.before, seq)
}
