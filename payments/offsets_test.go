package payments

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"boxoffice/internal/offheap"
)

// TestOffsetsIsAMultimap holds the compact index to a plain multimap through growth: every
// offset filed under a hash is found, oldest first, and anything else a lookup answers was filed
// under a hash with the same tag (which the callers tell apart by reading the line).
func TestOffsetsIsAMultimap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var o offsets
	ref := map[uint64][]int64{}
	var hashes []uint64
	off := int64(0)
	check := func() {
		t.Helper()
		for _, h := range hashes {
			got := o.appendTo([]int64{-7}, h) // what dst holds already stays first
			if got[0] != -7 {
				t.Fatalf("appendTo overwrote dst: %v", got[:1])
			}
			got = got[1:]
			if !slices.IsSorted(got) {
				t.Fatalf("hash %x: offsets %v not oldest first", h, got)
			}
			var mine []int64
			for _, g := range got {
				if slices.Contains(ref[h], g) {
					mine = append(mine, g)
				} else if !sharesTag(ref, h, g) {
					t.Fatalf("hash %x: offset %d was filed under no hash of its tag", h, g)
				}
			}
			if !slices.Equal(mine, ref[h]) {
				t.Fatalf("hash %x: found %v, want %v", h, mine, ref[h])
			}
		}
	}
	for i := range 20_000 {
		var h uint64
		switch r := rng.IntN(10); {
		case r == 0 && len(hashes) > 0: // the same hash again: a second line of one key
			h = hashes[rng.IntN(len(hashes))]
		case r == 1 && len(hashes) > 0: // another hash of the same tag
			h = hashes[rng.IntN(len(hashes))]&^offsetMask | rng.Uint64()&offsetMask
		default:
			h = rng.Uint64()
		}
		if _, ok := ref[h]; !ok {
			hashes = append(hashes, h)
		}
		ref[h] = append(ref[h], off)
		o.add(h, off)
		off += 1 + rng.Int64N(400)
		if i%2_500 == 0 {
			check()
		}
	}
	check()
	if got := o.appendTo(nil, 0xdeadbeef); len(got) != 0 && !sharesTag(ref, 0xdeadbeef, got[0]) {
		t.Fatalf("a hash never filed found %v", got)
	}
}

// sharesTag reports whether off was filed under a hash with h's tag.
func sharesTag(ref map[uint64][]int64, h uint64, off int64) bool {
	for other, offs := range ref {
		if tagOf(other) == tagOf(h) && slices.Contains(offs, off) {
			return true
		}
	}
	return false
}

// TestOffsetsPastASlot: an offset too big for a slot (a ledger past 64 GiB) is still filed, and
// found in order with the others of its hash.
func TestOffsetsPastASlot(t *testing.T) {
	var o offsets
	big := int64(offsetMax) + 1
	h1, h2 := uint64(42)<<40, uint64(43)<<40 // two tags
	o.add(h1, 10)
	o.add(h1, big)
	o.add(h1, offsetMax)
	o.add(h2, big+1)
	if got, want := o.appendTo(nil, h1), []int64{10, offsetMax, big}; !slices.Equal(got, want) {
		t.Fatalf("appendTo(h1) = %v, want %v", got, want)
	}
	if got := o.appendTo(nil, h2); !slices.Equal(got, []int64{big + 1}) {
		t.Fatalf("appendTo(h2) = %v", got)
	}
}

// TestOffsetsStayOffTheHeap: a million charges' index does not grow the Go heap, whose limit
// and collector would otherwise pay for it through a big sale (see offsets). Where the system has
// no anonymous mmap the table is on the heap, and this does not apply.
func TestOffsetsStayOffTheHeap(t *testing.T) {
	if !offheap.Mapped() {
		t.Skip("no anonymous mmap here: the table is on the heap")
	}
	mapped := offheap.Outstanding()
	before := offheap.HeapAfterGC()
	var o offsets
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 1_000_000 {
		o.add(rng.Uint64(), int64(i)*300)
	}
	grown := int64(offheap.HeapAfterGC()) - int64(before)
	if n := offheap.Count(); n != mapped+1 {
		t.Errorf("%d tables mapped after growing to a million entries, want the last one alone", n-mapped)
	}
	if got := o.appendTo(nil, 1); len(got) > 1 {
		t.Fatalf("a hash never filed found %v", got)
	}
	// A map held these in 20 to 40 MB.
	if grown > 4<<20 {
		t.Fatalf("the heap grew by %d bytes for a million entries", grown)
	}
	runtime.KeepAlive(&o)
	o = offsets{} // unreachable now: the cleanup gives the last table back
	if n := offheap.Outstanding(); n != mapped {
		t.Errorf("%d tables mapped once the index is unreachable, want %d", n, mapped)
	}
}
