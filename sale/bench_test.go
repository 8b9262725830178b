package sale_test

import (
	"fmt"
	"testing"
)

// BenchmarkIdempotentReplay is the path of a retried request: the lookup finds the stored answer
// and returns it without touching the writer.
func BenchmarkIdempotentReplay(b *testing.B) {
	e := newEnv(b, nil)
	e.show("s", 10, nil)
	if res, _, err := e.hold("k", "s", 1, "a@example.com"); err != nil || res.Status != 201 {
		b.Fatalf("%v %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, replayed, err := e.hold("k", "s", 1, "a@example.com"); err != nil || !replayed {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateHold is one reservation through the service, the atomic strategy and SQLite
// with durable commits: the writer's cost of a hold, one at a time (no group commit to share).
func BenchmarkCreateHold(b *testing.B) {
	e := newEnv(b, nil)
	e.show("s", 10_000_000, nil)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if res, _, err := e.hold(fmt.Sprintf("k%d", i), "s", 1, "a@example.com"); err != nil || res.Status != 201 {
			b.Fatalf("%v %v", res, err)
		}
	}
}
