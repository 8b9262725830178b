//go:build unix

package offheap

import (
	"syscall"
	"unsafe"
)

// canMap: anonymous mmap is there to ask for.
const canMap = true

// alloc maps n zeroed words of anonymous memory, and returns the function that unmaps them; a
// heap slice, with nothing to give back, when the mapping fails.
func alloc(n int) ([]uint64, func([]uint64)) {
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n), nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n), func(w []uint64) {
		_ = syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), len(w)*8))
	}
}
