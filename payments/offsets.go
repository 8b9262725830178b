package payments

import (
	"math/bits"
	"slices"

	"boxoffice/internal/offheap"
)

// offsets is a multimap from a 64-bit hash to ledger offsets: the book's index, with an entry
// for every charge the ledger ever took. A stadium's on-sale is a million of them, so the index is
// built for size and for the collector. It is one open-addressing table of 8-byte slots, each
// packing the hash's top 28 bits (a tag) and the offset plus one (36 bits; 0 is an empty slot),
// probed linearly and doubled at three quarters full: 11 to 21 bytes an entry, where a
// map[uint64]int64 took 20 to 40. The table lives outside the Go heap where the system allows
// (package offheap): over a 1,000,000-ticket sale the map had grown to 27 MB of a 96 MiB heap limit, and
// the collector, left less and less room, ran ever more often until the runtime capped it at half
// the CPU, halving the sale's rate in its last minutes. Off the heap, the heap a sale needs stays
// the same from its first ticket to its last.
//
// A lookup answers every offset whose slot carries the hash's tag along its probe chain, so it may
// answer an offset of another hash (one in 268 million a slot): every caller reads the line back
// and checks it, as it did for two keys of one 64-bit hash.
type offsets struct {
	// tab is the table of slots, nil until the first add. Every use of it is through its
	// offsets, under the book's lock, and none keeps a slice of it past a grow.
	tab *offheap.Table
	n   int // slots in use
	// huge holds the entries whose offset needs more than 36 bits (a ledger past 64 GiB, some
	// 200 million charges), which a slot cannot hold.
	huge map[uint64][]int64
}

const (
	offsetBits   = 36
	offsetMask   = 1<<offsetBits - 1
	offsetMax    = offsetMask - 1 // the largest offset a slot holds (stored plus one)
	minSlots     = 1 << 10
	mixHash      = 0x9e3779b97f4a7c15 // Fibonacci hashing: spreads hashes whose high bits agree
	offsetsLoadN = 3                  // grow past offsetsLoadN/offsetsLoadD full
	offsetsLoadD = 4
)

// tagOf is the part of hash h a slot keeps.
func tagOf(h uint64) uint64 { return h >> offsetBits }

// slotOf packs an entry.
func slotOf(h uint64, off int64) uint64 { return tagOf(h)<<offsetBits | uint64(off+1) }

// home is where the probe chain of tag starts in a table of len(slots) (a power of two) slots.
// It depends on the tag alone, as the whole hash is gone once an entry is stored.
func home(tag uint64, slots []uint64) int {
	shift := 64 - bits.TrailingZeros(uint(len(slots)))
	return int((tag * mixHash) >> shift)
}

func (o *offsets) add(h uint64, off int64) {
	if off < 0 || off > offsetMax {
		if o.huge == nil {
			o.huge = make(map[uint64][]int64)
		}
		o.huge[h] = append(o.huge[h], off)
		return
	}
	if o.tab == nil || (o.n+1)*offsetsLoadD > len(o.tab.Words)*offsetsLoadN {
		o.grow()
	}
	put(o.tab.Words, slotOf(h, off))
	o.n++
}

// put stores slot s in the first empty slot of its tag's chain.
func put(slots []uint64, s uint64) {
	mask := len(slots) - 1
	for i := home(s>>offsetBits, slots); ; i = (i + 1) & mask {
		if slots[i] == 0 {
			slots[i] = s
			return
		}
	}
}

// grow moves the entries to a table twice the size, and gives the old one back at once rather
// than when the collector finds it unreachable: at a million charges the two are 8 and 16 MB.
func (o *offsets) grow() {
	old := o.tab
	var slots []uint64
	if old != nil {
		slots = old.Words
	}
	t := offheap.New(max(minSlots, 2*len(slots)))
	for _, s := range slots {
		if s != 0 {
			put(t.Words, s)
		}
	}
	o.tab = t
	if old != nil {
		old.Release()
	}
}

// appendTo appends the offsets filed under h to dst, oldest first (smallest first: the ledger only
// grows), with the rare offset of another hash that shares h's tag.
func (o *offsets) appendTo(dst []int64, h uint64) []int64 {
	start := len(dst)
	if o.tab != nil {
		slots := o.tab.Words
		tag, mask := tagOf(h), len(slots)-1
		for i := home(tag, slots); slots[i] != 0; i = (i + 1) & mask {
			if s := slots[i]; s>>offsetBits == tag {
				dst = append(dst, int64(s&offsetMask)-1)
			}
		}
	}
	dst = append(dst, o.huge[h]...)
	slices.Sort(dst[start:])
	return dst
}
