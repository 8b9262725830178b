package waitroom

import (
	"context"
	"slices"
	"sync"
	"time"

	"boxoffice"
)

// placeSettles is how long after a join its place in the order is taken as settled: two join
// writers (and, on PostgreSQL, a sequence handing out numbers before commit) may commit a batch
// of lower numbers after a later one, which then stands before entries already counted. A batch
// is written in milliseconds, so seconds leave a wide margin.
const placeSettles = 5 * time.Second

// numberEvery is how often, at most, a server numbers a show's queue (QueuePlaces). Between
// two numberings, an entry that joined since is placed by counting the few entries between it
// and the nearest one numbered.
const numberEvery = time.Second

// maxPlaces bounds the settled places a server keeps in memory (about 60 bytes each); past it
// they are all dropped and numbered again.
const maxPlaces = 1 << 20

// places tells waiting entries' positions without counting the queue before each one: counting
// reads the queue up to the entry, so a crowd of n buyers polling would read n²/2 entries, and
// with 100,000 buyers polling every second that would be the store's main work.
//
// Admission goes in queue order, so once admission has begun and an entry's place has settled,
// the entries before it are those waiting before it plus those admitted, for as long as it
// waits: the show's settled places keep that number, and a poll subtracts the admissions.
// The numbers come from numbering the show's whole waiting queue in one read (QueuePlaces), at
// most once per numberEvery, and each read after the first returns only the entries that joined
// since the last settled mark. An entry that joined after the last numbering is counted from the
// nearest numbered entry before it, a count of what joined since, not of the queue.
//
// What a server knows of a show's queue belongs to the room it numbered: a room deleted and
// made again (on this server or another) starts a new queue, whose entries may even reuse the
// old numbers (SQLite's rowids), so a room created at another time drops it all.
type places struct {
	mu    sync.Mutex
	count int // settled places kept, over all shows
	gen   int // counts the times they were all dropped
	shows map[string]*numbering
}

// place is a settled entry's: the entries before it (waiting or admitted), and when it joined
// (µs since the epoch), which is all a ticket shows of a waiting entry besides its position.
type place struct {
	before, joined int64
}

// numbering is a show's queue as this server last numbered it.
type numbering struct {
	// room is the creation time of the room whose queue this is; settled is guarded by
	// places.mu, the rest by mu.
	room    time.Time
	settled map[int64]place // entry seq → its settled place

	mu sync.Mutex
	// running is closed when the numbering being read is in; nil when none is.
	running chan struct{}
	at      time.Time // when the last one was taken; zero: never
	// admitted counts the show's admissions in that numbering's snapshot.
	admitted int64
	// settledTo: entries that joined up to it are in settled (unless gen moved on).
	settledTo time.Time
	gen       int
	// recent holds, in queue order, the entries that joined after the settled mark before it
	// (settled or not) and the queue's last entry, each with how many entries waited before it
	// then; and the entries placed since by a count from one of those.
	recent []boxoffice.QueuePlace
}

func newPlaces() places {
	return places{shows: map[string]*numbering{}}
}

// show returns what is known of the queue of room's show, nothing when it was another room's.
func (p *places) show(room *boxoffice.WaitRoom) *numbering {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.shows[room.ShowID]
	if n == nil || !n.room.Equal(room.CreatedAt) {
		if n != nil {
			p.count -= len(n.settled)
		}
		n = &numbering{room: room.CreatedAt, settled: map[int64]place{}, gen: p.gen}
		p.shows[room.ShowID] = n
	}
	return n
}

// get returns the settled place of entry seq of room's show.
func (p *places) get(room *boxoffice.WaitRoom, seq int64) (place, bool) {
	n := p.show(room)
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, ok := n.settled[seq]
	return pl, ok
}

func (p *places) forget(room *boxoffice.WaitRoom, seq int64) {
	n := p.show(room)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := n.settled[seq]; ok {
		delete(n.settled, seq)
		p.count--
	}
}

// forgetShow drops what is known of a show's queue, for a room deleted (and its queue with it).
func (p *places) forgetShow(showID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.shows[showID]; n != nil {
		p.count -= len(n.settled)
		delete(p.shows, showID)
	}
}

// settle keeps the settled places of a numbering of n taken with admitted admissions, and
// answers the generation they belong to.
func (p *places) settle(n *numbering, ps []boxoffice.QueuePlace, admitted int64, mark time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count+len(ps) > maxPlaces {
		for _, m := range p.shows {
			clear(m.settled)
		}
		p.count = 0
		p.gen++
	}
	for _, q := range ps {
		if !q.JoinedAt.After(mark) {
			if _, ok := n.settled[q.Key.Seq]; !ok {
				p.count++
			}
			n.settled[q.Key.Seq] = place{before: q.Ahead + admitted, joined: q.JoinedAt.UnixMicro()}
		}
	}
	return p.gen
}

func (p *places) generation() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// position answers the position of e, a waiting entry of a show past its on-sale that places
// does not hold, with admitted the show's admissions read with it.
func (s *Service) position(ctx context.Context, room *boxoffice.WaitRoom, e *boxoffice.QueueEntry, admitted int64) (int, error) {
	n := s.places.show(room)
	if err := s.number(ctx, e.ShowID, n); err != nil {
		return 0, err
	}
	key := e.Key()
	n.mu.Lock()
	at, then := n.at, n.admitted
	i, found := n.find(key)
	var self, prev boxoffice.QueuePlace
	if found {
		self = n.recent[i]
	}
	if i > 0 {
		prev = n.recent[i-1]
	}
	n.mu.Unlock()
	if found && self.Ahead+then >= admitted {
		return int(self.Ahead + then - admitted + 1), nil
	}
	// e joined after the numbering (or the admissions passed the number it had, which only a
	// late commit before it explains): it stands behind the nearest entry numbered before it,
	// and what waits between the two. If that entry still waits, so do the ones before it that
	// the admissions have not reached; if it was admitted, all before it were (admission goes
	// in order). Reading the queue between the two, and not from the head, matters twice over:
	// an arrival's position is about the queue's length, and the index still holds admitted
	// entries until a vacuum. When nothing numbered stands before e (the queue was empty when
	// numbered, or e's settled place was dropped), the count is from the head.
	var from *boxoffice.QueueKey
	if i > 0 {
		from = &prev.Key
	}
	between, now, err := s.store.QueueAhead(ctx, e.ShowID, from, key)
	if err != nil {
		return 0, err
	}
	ahead := between
	if i > 0 {
		ahead += max(prev.Ahead+then-now+1, 0)
	}
	// e is numbered so, for the next arrival to count from it rather than from the same
	// place: arrivals between two numberings then cost a count of one or two entries each.
	n.mu.Lock()
	if n.at.Equal(at) {
		if j, found := n.find(key); found {
			n.recent[j].Ahead = ahead + now - then
		} else {
			n.recent = slices.Insert(n.recent, j, boxoffice.QueuePlace{Key: key, JoinedAt: e.JoinedAt, Ahead: ahead + now - then})
		}
	}
	n.mu.Unlock()
	return int(ahead + 1), nil
}

// find searches recent for key; n.mu is held.
func (n *numbering) find(key boxoffice.QueueKey) (int, bool) {
	return slices.BinarySearchFunc(n.recent, key, func(p boxoffice.QueuePlace, k boxoffice.QueueKey) int { return p.Key.Compare(k) })
}

// number numbers the show's queue again when the last numbering is numberEvery old and no
// other request is reading one. The others go on with the last, or wait for the first: at the
// on-sale, every poll would otherwise count the whole queue before its entry while the first
// numbering is read.
func (s *Service) number(ctx context.Context, showID string, n *numbering) error {
	now := s.cfg.Now()
	n.mu.Lock()
	if running := n.running; running != nil {
		first := n.at.IsZero()
		n.mu.Unlock()
		if first {
			select {
			case <-running:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	if !n.at.IsZero() && now.Sub(n.at) < numberEvery {
		n.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	n.running = done
	after := n.settledTo
	if n.gen != s.places.generation() {
		after = time.Time{} // the settled places were dropped: number them all again
	}
	n.mu.Unlock()
	// Shared work: it goes on if the request that runs it is cancelled.
	ps, admitted, err := s.store.QueuePlaces(context.WithoutCancel(ctx), showID, after)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.running = nil
	close(done)
	if err != nil {
		return err
	}
	n.at, n.admitted, n.recent = now, admitted, ps
	// The order before an entry is fixed once admission has begun (no more draws are added) and
	// the joins taken before it have surely committed.
	if admitted > 0 {
		mark := now.Add(-placeSettles)
		n.gen = s.places.settle(n, ps, admitted, mark)
		if mark.After(after) {
			n.settledTo = mark
		}
	}
	return nil
}
