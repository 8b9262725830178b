package waitroom

import (
	"cmp"
	"slices"
	"unsafe"

	"boxoffice/internal/offheap"
)

// rec is a place as the settled tables keep it: the entry's seq, the entries before it (waiting
// or admitted; -1 once forgotten), and when it joined (µs since the epoch). Three words and no
// pointers, so that a table of them can live in an offheap.Table.
type rec struct {
	seq, before, joined int64
}

// recWords is the size of a rec in the words of an offheap.Table.
const recWords = int(unsafe.Sizeof(rec{}) / 8)

// minRecs is the smallest table recs maps: 24 KB, a few pages.
const minRecs = 1 << 10

// recs is a growable array of recs outside the Go heap. A stadium's queue is a million places:
// as a map on the heap they took 56 MB (53 bytes a place) of the 96 MiB the server's heap is
// limited to, and the collector, scanning them and left with less room, ran several times a
// second through the on-sale (docs/bench/waiting-room.md). Here they take 24 bytes a place, and
// the collector neither counts nor scans them.
type recs struct {
	tab *offheap.Table // nil while nothing was ever added
	n   int
}

// view is the table's first n recs.
func (r *recs) view(n int) []rec {
	if r.tab == nil {
		return nil
	}
	return unsafe.Slice((*rec)(unsafe.Pointer(&r.tab.Words[0])), n)
}

// all is the recs added.
func (r *recs) all() []rec { return r.view(r.n) }

func (r *recs) capacity() int {
	if r.tab == nil {
		return 0
	}
	return len(r.tab.Words) / recWords
}

// reserve makes room for m recs, doubling the table (a new mapping, the old one given back).
func (r *recs) reserve(m int) {
	if m <= r.capacity() {
		return
	}
	t := recs{tab: offheap.New(max(minRecs, 2*r.capacity(), m) * recWords), n: r.n}
	copy(t.view(r.n), r.all())
	r.release()
	*r = t
}

func (r *recs) push(x rec) {
	r.reserve(r.n + 1)
	r.n++
	r.all()[r.n-1] = x
}

// release gives the table back and empties r.
func (r *recs) release() {
	if r.tab != nil {
		r.tab.Release()
	}
	*r = recs{}
}

// settled is a show's settled places sorted by seq, looked up by binary search. Places are
// added in batches, one per numbering: the first after an on-sale is the whole queue, and each
// later one the few arrivals of about a second, whose seqs come after all settled ones (the
// common case: appended in place). A forgotten place keeps its slot until forgotten ones
// outnumber the rest.
type settled struct {
	recs
	live int // recs not forgotten
}

func (s *settled) find(seq int64) (int, bool) {
	return slices.BinarySearchFunc(s.all(), seq, func(r rec, seq int64) int { return cmp.Compare(r.seq, seq) })
}

func (s *settled) get(seq int64) (place, bool) {
	i, ok := s.find(seq)
	if !ok || s.all()[i].before < 0 {
		return place{}, false
	}
	r := s.all()[i]
	return place{before: r.before, joined: r.joined}, true
}

// forget drops seq's place, and reports whether it had one.
func (s *settled) forget(seq int64) bool {
	i, ok := s.find(seq)
	all := s.all()
	if !ok || all[i].before < 0 {
		return false
	}
	all[i].before = -1
	s.live--
	if dead := s.n - s.live; dead >= minRecs && dead > s.live {
		kept := slices.DeleteFunc(all, func(r rec) bool { return r.before < 0 })
		s.n = len(kept)
	}
	return true
}

// merge adds the places of batch (sorted by seq, one place per seq), taking batch's table when
// s is empty and emptying batch either way, and answers how many places s gained. A place s
// already holds is set to batch's (numbering again after places were forgotten as stale).
func (s *settled) merge(batch *recs) (gained int) {
	defer batch.release()
	if s.n == 0 {
		s.release()
		s.recs, *batch = *batch, recs{}
		s.live = s.n
		return s.n
	}
	b, all := batch.all(), s.all()
	k := 0
	for _, x := range b {
		if i, ok := s.find(x.seq); ok {
			if all[i].before < 0 {
				s.live++
				gained++
			}
			all[i] = x
			continue
		}
		b[k] = x
		k++
	}
	b = b[:k]
	if k == 0 {
		return gained
	}
	total := s.n + k
	if b[0].seq > all[len(all)-1].seq {
		s.reserve(total)
		copy(s.view(total)[s.n:], b)
	} else {
		t := recs{}
		t.reserve(total)
		out := t.view(total)
		i, j := 0, 0
		for o := range out {
			if j == len(b) || i < len(all) && all[i].seq < b[j].seq {
				out[o] = all[i]
				i++
			} else {
				out[o] = b[j]
				j++
			}
		}
		s.release()
		s.recs = t
	}
	s.n = total
	s.live += k
	return gained + k
}

// drop forgets every place and gives the table back.
func (s *settled) drop() {
	s.release()
	s.live = 0
}
