//go:build unix

package payments

import (
	"syscall"
	"unsafe"
)

// tableAlloc returns a zeroed table of n slots outside the Go heap, and the function that gives
// it back: anonymous memory, which the collector neither counts against the heap's limit nor scans
// (offsets says why). The kernel hands out its pages as they are first written. Should the mapping
// fail, the table comes from the heap after all, with nothing to give back.
func tableAlloc(n int) ([]uint64, func([]uint64)) {
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n), nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n), func(t []uint64) {
		_ = syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&t[0])), len(t)*8))
	}
}
