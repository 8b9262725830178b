//go:build !unix

package offheap

// canMap: no anonymous mmap here.
const canMap = false

// alloc returns n zeroed words: where there is no anonymous mmap they are on the heap, still
// without pointers for the collector to scan, and the collector takes them back.
func alloc(n int) ([]uint64, func([]uint64)) { return make([]uint64, n), nil }
