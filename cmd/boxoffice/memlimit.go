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
// returns memory to the OS instead. At the end of a 1,000,000-ticket sale about 70 MB is live
// (the simulator's key index, JetStream's duplicate ids, the service), so 96 MiB leaves the
// collector room to work without running all the time; the rest of the process (SQLite's caches,
// the mapped binary) is another 60 MB or so. The limit is soft: a heap that truly needs more gets
// it (the runtime caps the collector's share of CPU rather than failing), so it cannot cause an
// out-of-memory of its own.
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
