package bench

import (
	"testing"
	"time"
)

// TestInOrder: the fairness measure counts an arrival as in order only when it was admitted no
// earlier than every arrival that certainly came before it (answered before it was sent).
func TestInOrder(t *testing.T) {
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	// Arrival i is sent at 10i ms and answered at 10i+5 ms, so each certainly follows the last.
	seq := func(admitted ...int) []*arrival {
		var as []*arrival
		for i, a := range admitted {
			as = append(as, &arrival{sent: at(10 * i), recv: at(10*i + 5), admittedAt: at(1000 + a)})
		}
		return as
	}
	for _, c := range []struct {
		name     string
		arrivals []*arrival
		want     float64
	}{
		{"first come first served", seq(0, 1, 2, 3), 1},
		{"ties are one admission tick", seq(0, 0, 1, 1), 1},
		{"reversed", seq(3, 2, 1, 0), 0.25},
		{"one overtaken", seq(0, 2, 1, 3), 0.75},
		{"none", nil, 1},
	} {
		if got := inOrder(c.arrivals); got != c.want {
			t.Errorf("%s: inOrder = %v, want %v", c.name, got, c.want)
		}
	}
	// Overlapping joins (each sent before the other was answered) are not ordered: either
	// admission order is in order.
	a := &arrival{sent: at(0), recv: at(10), admittedAt: at(1001)}
	b := &arrival{sent: at(5), recv: at(15), admittedAt: at(1000)}
	if got := inOrder([]*arrival{a, b}); got != 1 {
		t.Errorf("overlapping joins: inOrder = %v, want 1", got)
	}
}
