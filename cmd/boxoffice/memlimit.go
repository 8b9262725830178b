package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultMemoryLimit keeps a big on-sale's server in a small footprint. The collector's default
// (GOGC=100) lets the heap grow to twice what is live before it collects, so a server holding
// 70 MB lived at 140 MB and more; with a soft limit it collects more often near the limit and
// returns memory to the OS instead. What a sale keeps live on the heap does not grow with it:
// about 45–55 MB (JetStream's block caches and duplicate ids, the service), the same at the
// first ticket and the millionth, since the one index that holds every charge lives outside the
// heap (payments' offsets: in the heap it had grown to 27 MB by 716,000 tickets, and the collector,
// left ever less room under this limit, took a third of the server's CPU by the end). So 96 MiB
// leaves the collector room to work without running all the time; the rest of the process
// (SQLite's caches, the mapped binary, that index) is another 60–80 MB. The limit is soft: a heap
// that truly needs more gets it (the runtime caps the collector's share of CPU rather than
// failing), so it cannot cause an out-of-memory of its own.
const defaultMemoryLimit = 96 << 20

// applyMemoryLimit sets the Go heap's soft limit, unless GOMEMLIMIT is set: the runtime has
// applied that one already and an operator who sets it means it. 0 leaves the runtime's default.
func applyMemoryLimit(limit int64) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
}

// byteSize is a flag value in bytes written with an optional binary unit: 134217728, 128MiB, 1GiB.
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"B", 0}}

// String implements flag.Value.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range byteUnits {
		if u.shift > 0 && n != 0 && n%(1<<u.shift) == 0 && n>>u.shift < 1024 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set implements flag.Value.
func (b *byteSize) Set(s string) error {
	num, shift := strings.TrimSpace(s), uint(0)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, shift = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q is not a size such as 134217728, 128MiB or 1GiB", s)
	}
	*b = byteSize(n << shift)
	return nil
}
