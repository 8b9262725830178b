//go:build !unix

package payments

// tableAlloc returns a zeroed table of n slots: where there is no anonymous mmap it is on the heap,
// still without pointers for the collector to scan, and the collector takes it back.
func tableAlloc(n int) ([]uint64, func([]uint64)) { return make([]uint64, n), nil }
