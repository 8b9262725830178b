// Package offheap hands out tables of 8-byte words outside the Go heap, for the few indexes that
// grow with a stadium's on-sale: a million entries of a map or a slice of structs take tens of MB
// of the heap, which the collector then scans (a map) and, worse, counts against the soft memory
// limit the server runs under (cmd/boxoffice's memlimit), so that every collection has less room
// and the collector ends up taking half the CPU. A table here is anonymous memory: the collector
// neither counts nor scans it, and the kernel hands out its pages as they are first written.
//
// A table holds no Go pointers (nothing in it keeps heap memory alive), and is given back at once
// by Release, or else when its *Table is unreachable.
package offheap

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Table is n zeroed words. Words is valid until Release; nothing may keep a slice of it past that.
type Table struct {
	Words []uint64
	mem   *mem
}

// mem gives a table's memory back once, whichever of Release and the cleanup comes first: a second
// munmap of the range could unmap whatever the system has put there since.
type mem struct {
	once  sync.Once
	words []uint64
	free  func([]uint64) // nil for a table on the heap
}

func (m *mem) release() {
	m.once.Do(func() {
		if m.free != nil {
			m.free(m.words)
			mapped.Add(-1)
		}
	})
}

// mapped counts the tables mapped and not yet given back.
var mapped atomic.Int64

// New returns a table of n zeroed words (n > 0). Should the system refuse the mapping, or have
// none, the table is on the heap after all (still without pointers to scan).
func New(n int) *Table {
	words, free := alloc(n)
	t := &Table{Words: words, mem: &mem{words: words, free: free}}
	if free != nil {
		mapped.Add(1)
		runtime.AddCleanup(t, (*mem).release, t.mem)
	}
	return t
}

// Release gives the table's memory back now rather than when the collector finds the table
// unreachable: an index that grows by doubling would otherwise keep its old tables mapped, each
// half the size of the new one, until the next collections. The table is unusable after it.
func (t *Table) Release() {
	t.mem.release()
	t.Words = nil
}

// Mapped reports whether this system maps tables off the heap at all.
func Mapped() bool { return canMap }

// Count is the number of tables mapped and not given back, now.
func Count() int64 { return mapped.Load() }

// HeapAfterGC is the Go heap in use after a collection, for tests that check an index stays off it.
func HeapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Outstanding counts the tables mapped and not given back once the cleanups of tables already
// unreachable have run: the same count over five collections in a row, within a bound. For tests
// that check an index gives its memory back.
func Outstanding() int64 {
	last, same := mapped.Load(), 0
	for i := 0; i < 200 && same < 5; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if n := mapped.Load(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}
