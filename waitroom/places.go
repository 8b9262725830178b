package waitroom

import (
	"cmp"
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

// maxPlaces bounds the settled places a server keeps (24 bytes each, off the heap: 48 MB at
// most); past it they are all dropped and numbered again. A stadium's queue of a million fits.
// A variable for the tests.
var maxPlaces = 1 << 21

// sampleMax bounds the places a numbering keeps for counting from (recent) among those that
// have settled or may settle: past it, every other one is dropped, and so on (numbering.recent).
// A variable for the tests.
var sampleMax = 1 << 15

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
	settled settled

	mu sync.Mutex
	// running is closed when the numbering being read is in; nil when none is.
	running chan struct{}
	at      time.Time // when the last one was taken; zero: never
	// admitted counts the show's admissions in that numbering's snapshot.
	admitted int64
	// settledTo: entries that joined up to it are in settled (unless gen moved on).
	settledTo time.Time
	gen       int
	// recent holds, in queue order, numbered entries to count from, each with how many entries
	// waited before it then: the entries that joined after the settled mark (those that have
	// no settled place yet), the queue's last entry, and a sample of the rest (every one of
	// them up to sampleMax, then one in two, one in four, ...): enough to count any entry's
	// place from a numbered one a few entries before it, when it has no settled place (before
	// admission begins, or past maxPlaces), without holding the whole queue on the heap. And
	// the entries placed since by a count from one of those.
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
			p.count -= n.settled.live
			n.settled.drop()
		}
		n = &numbering{room: room.CreatedAt, gen: p.gen}
		p.shows[room.ShowID] = n
	}
	return n
}

// get returns the settled place of entry seq of room's show.
func (p *places) get(room *boxoffice.WaitRoom, seq int64) (place, bool) {
	n := p.show(room)
	p.mu.Lock()
	defer p.mu.Unlock()
	return n.settled.get(seq)
}

func (p *places) forget(room *boxoffice.WaitRoom, seq int64) {
	n := p.show(room)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n.settled.forget(seq) {
		p.count--
	}
}

// forgetShow drops what is known of a show's queue, for a room deleted (and its queue with it).
func (p *places) forgetShow(showID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.shows[showID]; n != nil {
		p.count -= n.settled.live
		n.settled.drop()
		delete(p.shows, showID)
	}
}

// settle keeps batch, places of show's numbering n (sorted by seq), as settled, emptying it, and
// answers the generation n's settled places belong to from now on: one that is not the current
// generation when batch could not be kept, so that the next numbering numbers them all again.
func (p *places) settle(show string, n *numbering, batch *recs) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer batch.release()
	if p.shows[show] != n {
		return -1 // the room was deleted or made again while this numbering was read
	}
	if p.count+batch.n > maxPlaces {
		for _, m := range p.shows {
			m.settled.drop()
		}
		p.count = 0
		p.gen++
		// Whatever the last numberings settled of this show is gone with the rest; batch may
		// be only what joined since. The next numbering reads the queue whole.
		return -1
	}
	p.count += n.settled.merge(batch)
	return p.gen
}

func (p *places) generation() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// sample builds a numbering's recent as its places stream in (numbering.recent says what it
// keeps).
type sample struct {
	mark   time.Time
	places []boxoffice.QueuePlace
	last   boxoffice.QueuePlace // the latest in queue order so far
	any    bool
	// sampled counts the places in places that joined by the mark; every stride-th of those
	// is kept.
	sampled, seen, stride int
}

func (s *sample) add(p boxoffice.QueuePlace) {
	if !s.any || p.Key.Compare(s.last.Key) > 0 {
		s.last, s.any = p, true
	}
	if p.JoinedAt.After(s.mark) {
		s.places = append(s.places, p)
		return
	}
	s.seen++
	if s.seen%s.stride != 0 {
		return
	}
	s.places = append(s.places, p)
	if s.sampled++; s.sampled < sampleMax {
		return
	}
	// Thin out the places joined by the mark: one in two stays.
	odd := false
	s.places = slices.DeleteFunc(s.places, func(q boxoffice.QueuePlace) bool {
		if q.JoinedAt.After(s.mark) {
			return false
		}
		odd = !odd
		return !odd
	})
	s.sampled /= 2
	s.stride *= 2
}

// done answers the places kept, in queue order, the last one among them.
func (s *sample) done() []boxoffice.QueuePlace {
	if s.any && (len(s.places) == 0 || s.places[len(s.places)-1] != s.last) {
		s.places = append(s.places, s.last)
	}
	boxoffice.SortPlaces(s.places)
	return slices.CompactFunc(s.places, func(a, b boxoffice.QueuePlace) bool { return a.Key == b.Key })
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
	// The order before an entry is fixed once admission has begun (no more draws are added) and
	// the joins taken before it have surely committed: the places joined by the mark settle
	// then. They stream from the store into a table off the heap, and the sample keeps what to
	// count the others from.
	mark := now.Add(-placeSettles)
	var batch recs
	defer batch.release()
	smp := sample{mark: mark, stride: 1}
	// Shared work: it goes on if the request that runs it is cancelled.
	admitted, err := s.store.QueuePlaces(context.WithoutCancel(ctx), showID, after, func(q boxoffice.QueuePlace) error {
		if !q.JoinedAt.After(mark) {
			batch.push(rec{seq: q.Key.Seq, before: q.Ahead, joined: q.JoinedAt.UnixMicro()})
		}
		smp.add(q)
		return nil
	})
	recent := smp.done()
	var gen int
	if err == nil && admitted > 0 {
		// before counts the admitted too; sorted by seq for the settled table, outside its lock.
		all := batch.all()
		for i := range all {
			all[i].before += admitted
		}
		slices.SortFunc(all, func(a, b rec) int { return cmp.Compare(a.seq, b.seq) })
		gen = s.places.settle(showID, n, &batch)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.running = nil
	close(done)
	if err != nil {
		return err
	}
	n.at, n.admitted, n.recent = now, admitted, recent
	if admitted > 0 {
		n.gen = gen
		if mark.After(after) {
			n.settledTo = mark
		}
	}
	return nil
}
