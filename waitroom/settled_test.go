package waitroom

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/offheap"
)

// TestSettledIsAMap holds the settled table to a plain map through every way a batch can land
// (into an empty table, appended after the last seq, merged among earlier ones, over places it
// holds and over forgotten ones) and through forgetting enough to compact it.
func TestSettledIsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var s settled
	defer s.drop()
	ref := map[int64]place{}
	check := func(step string) {
		t.Helper()
		if s.live != len(ref) {
			t.Fatalf("%s: %d live places, want %d", step, s.live, len(ref))
		}
		all := s.all()
		if !slices.IsSortedFunc(all, func(a, b rec) int { return int(a.seq - b.seq) }) {
			t.Fatalf("%s: the table is out of seq order", step)
		}
		for seq, want := range ref {
			if got, ok := s.get(seq); !ok || got != want {
				t.Fatalf("%s: get(%d) = %+v, %v; want %+v", step, seq, got, ok, want)
			}
		}
		for _, r := range all {
			if _, ok := ref[r.seq]; !ok {
				if _, found := s.get(r.seq); found {
					t.Fatalf("%s: get(%d) found a place forgotten", step, r.seq)
				}
			}
		}
	}
	// batch files seqs (sorted, distinct) with fresh places, as a numbering does.
	batch := func(seqs []int64) {
		t.Helper()
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		var b recs
		want := 0
		for _, seq := range seqs {
			p := place{before: rng.Int64N(1 << 40), joined: rng.Int64N(1 << 52)}
			b.push(rec{seq: seq, before: p.before, joined: p.joined})
			if _, ok := ref[seq]; !ok {
				want++
			}
			ref[seq] = p
		}
		if got := s.merge(&b); got != want {
			t.Fatalf("merge of %d places gained %d, want %d", len(seqs), got, want)
		}
		if b.tab != nil || b.n != 0 {
			t.Fatal("merge left the batch with a table")
		}
	}
	seqRange := func(lo, hi int64, n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = lo + rng.Int64N(hi-lo)
		}
		return out
	}
	batch(seqRange(1, 100_000, 20_000)) // the first numbering: into an empty table
	check("first batch")
	batch(seqRange(100_000, 101_000, 500)) // arrivals after every settled one: appended
	check("appended")
	batch(seqRange(1, 101_000, 3_000)) // among earlier ones, some already held: merged
	check("merged")
	// Forget most of them: the table compacts once forgotten ones outnumber the rest.
	forgotten := 0
	for seq := range ref {
		if forgotten*10 > len(ref)*7 {
			break
		}
		if !s.forget(seq) {
			t.Fatalf("forget(%d) found no place", seq)
		}
		delete(ref, seq)
		forgotten++
		if s.forget(seq) {
			t.Fatalf("forget(%d) twice found a place", seq)
		}
	}
	if s.n > 2*s.live+minRecs {
		t.Fatalf("%d slots for %d live places after forgetting %d: never compacted", s.n, s.live, forgotten)
	}
	check("forgotten")
	// A place forgotten comes back when a numbering settles it again.
	var again []int64
	for _, r := range s.all() {
		if r.before < 0 {
			again = append(again, r.seq)
		}
	}
	batch(append(again, seqRange(1, 200_000, 1_000)...))
	check("settled again")
	if s.forget(-5) || s.forget(1<<50) {
		t.Fatal("forget found a place never settled")
	}
}

// TestSettledStaysOffTheHeap: a stadium's million settled places do not grow the Go heap, and
// their tables go back to the system when grown past and when dropped.
func TestSettledStaysOffTheHeap(t *testing.T) {
	if !offheap.Mapped() {
		t.Skip("no anonymous mmap here: the tables are on the heap")
	}
	mapped := offheap.Outstanding()
	before := offheap.HeapAfterGC()
	var s settled
	for b := range 100 {
		var r recs
		for i := range 10_000 {
			r.push(rec{seq: int64(b*10_000 + i + 1), before: int64(i), joined: int64(i)})
		}
		s.merge(&r)
	}
	grown := int64(offheap.HeapAfterGC()) - int64(before)
	if s.live != 1_000_000 {
		t.Fatalf("%d places settled, want a million", s.live)
	}
	if n := offheap.Count(); n != mapped+1 {
		t.Errorf("%d tables mapped for one settled table, want 1", n-mapped)
	}
	// As a map they took 56 MB.
	if grown > 4<<20 {
		t.Fatalf("the heap grew by %d bytes for a million places", grown)
	}
	s.drop()
	if n := offheap.Count(); n != mapped {
		t.Errorf("%d tables mapped once dropped, want none", n-mapped)
	}
}

// TestSampleBoundsRecent: a numbering of a queue far longer than sampleMax keeps a bounded,
// evenly spread sample of the places joined by the mark, every place joined after it, and the
// last, in queue order.
func TestSampleBoundsRecent(t *testing.T) {
	mark := time.Unix(1000, 0)
	s := sample{mark: mark, stride: 1}
	before, after := 10*sampleMax, 3_000
	for i := range before + after {
		joined := mark.Add(-time.Second)
		if i >= before {
			joined = mark.Add(time.Second)
		}
		s.add(boxoffice.QueuePlace{Key: boxoffice.QueueKey{Lane: 1, Seq: int64(i + 1)}, JoinedAt: joined, Ahead: int64(i)})
	}
	got := s.done()
	if !slices.IsSortedFunc(got, func(a, b boxoffice.QueuePlace) int { return a.Key.Compare(b.Key) }) {
		t.Fatal("the sample is out of queue order")
	}
	if len(got) > sampleMax+after+1 {
		t.Fatalf("kept %d places of %d, want at most %d", len(got), before+after, sampleMax+after+1)
	}
	if got[len(got)-1].Ahead != int64(before+after-1) {
		t.Fatalf("the last place kept is %+v, not the queue's last", got[len(got)-1])
	}
	// Every place joined after the mark is there, and the gaps among the rest are even.
	prev, widest := int64(-1), int64(0)
	for _, p := range got {
		if p.JoinedAt.After(mark) && p.Ahead != prev+1 {
			t.Fatalf("place %d, joined after the mark, is missing", prev+1)
		}
		widest = max(widest, p.Ahead-prev)
		prev = p.Ahead
	}
	// An even spread of sampleMax over the queue leaves gaps of before/sampleMax; thinning as
	// the places stream in mixes two strides, the widest three halves of the larger.
	if even := int64(before / sampleMax); widest > 3*even {
		t.Fatalf("a gap of %d places in the sample of %d (an even spread: %d)", widest, before, even)
	}
}
